"""Benchmarks: the cache ops over a committed range (the host has no equivalent on x86-64).

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize(
    "key", ["cache_sync", "cache_invalidate", "cache_clean", "cache_clean_invalidate"])
def test_cache(bench_case, key, contender):
    bench_case(key, contender)
