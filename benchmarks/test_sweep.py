"""Benchmarks: the size sweep of COMMIT (fresh VMO) and LOOKUP, 1 MiB to 4 GiB, to show the
per-page cost staying flat (tablize.py prints it per page). The host runs up to 1 GiB, the
reference model up to 16 MiB. The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS, SWEEP_KEYS, SWEEP_SIZES, fmt_size


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("size", SWEEP_SIZES,
                         ids=[fmt_size(s).replace(" ", "") for s in SWEEP_SIZES])
@pytest.mark.parametrize("key", SWEEP_KEYS)
def test_sweep(bench_case, key, size, contender):
    bench_case(key, contender, size=size, sweep=True)
