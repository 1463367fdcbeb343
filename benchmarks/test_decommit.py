"""Benchmarks: DECOMMIT of never-written pages, and DECOMMIT + COMMIT with 1 page in 64 written.

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["decommit_clean", "decommit_commit_1in64"])
def test_decommit(bench_case, key, contender):
    bench_case(key, contender)
