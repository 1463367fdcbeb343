"""Benchmarks: whole-range ops on a 1 PiB VMO holding 16 pages.

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["sparse_cache", "sparse_decommit", "sparse_shrink"])
def test_sparse(bench_case, key, contender):
    bench_case(key, contender)
