"""Benchmarks: single small syscalls from Python, and their floors (the same loops calling
the compiled core's _floor_* twins, vmo only; n/a where the core has none).

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["sys_commit", "sys_lookup", "sys_get_size", "sys_read_64"])
def test_syscalls(bench_case, key, contender):
    bench_case(key, contender)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["floor_commit", "floor_lookup", "floor_get_size",
                                 "floor_read_64"])
def test_floors(bench_case, key, contender):
    bench_case(key, contender)
