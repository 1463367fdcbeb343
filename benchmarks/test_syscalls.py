"""Benchmarks: single small syscalls from Python.

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["sys_commit", "sys_lookup", "sys_get_size", "sys_read_64"])
def test_syscalls(bench_case, key, contender):
    bench_case(key, contender)
