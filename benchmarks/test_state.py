"""Benchmarks: save and load of a whole kernel with 64 MiB written, and a pickle round trip
(group "state", in MiB/s; docs/state-format.md).

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["save", "load", "pickle"])
def test_state(bench_case, key, contender):
    bench_case(key, contender)
