"""Benchmarks: COMMIT: fresh VMO and onto recycled clean frames.

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["commit_fresh", "recommit"])
def test_commit(bench_case, key, contender):
    bench_case(key, contender)
