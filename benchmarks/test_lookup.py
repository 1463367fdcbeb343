"""Benchmarks: LOOKUP of a committed range into an array('Q').

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["lookup"])
def test_lookup(bench_case, key, contender):
    bench_case(key, contender)
