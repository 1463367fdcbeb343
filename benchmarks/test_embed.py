"""Benchmarks: what a device model does (physical access, pinned views) and contiguous runs
on a fragmented memory (64 GiB by default).

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["phys_view", "view_write", "phys_write", "phys_read",
                                 "pin_unpin"])
def test_physical_access(bench_case, key, contender):
    bench_case(key, contender)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["contiguous_fit", "contiguous_nofit", "contiguous_page"])
def test_contiguous(bench_case, key, contender):
    bench_case(key, contender)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["lookup_runs_one", "lookup_runs_scattered", "notify_none",
                                 "notify_one"])
def test_machine_services(bench_case, key, contender):
    bench_case(key, contender)
