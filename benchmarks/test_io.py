"""Benchmarks: vmo_read and vmo_write of 4 KiB and 1 MiB.

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["read_4k", "write_4k", "read_1m", "write_1m"])
def test_io(bench_case, key, contender):
    bench_case(key, contender)
