"""Benchmarks: vmo_create + handle_close; vmo_clone + first write + handle_close.

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["create_close", "clone_write"])
def test_objects(bench_case, key, contender):
    bench_case(key, contender)
