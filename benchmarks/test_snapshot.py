"""Benchmarks: the machine services of docs/semantics.md "The dirty log" and "Snapshots".

Reading the dirty log; taking a snapshot, restoring it after 1, 50 and 5,000 pages were
written since and after one COMMIT or one DECOMMIT of one page (a page-table leaf saved),
the first COMMIT after a snapshot, and a fuzzer's whole snapshot/write/restore cycle, on a
kernel with 1 GiB committed in one VMO; next to a full copy of 1 GiB of written memory
(what saving a machine costs without snapshots). The dirty log's cost on the write paths is
the io, object and embed rows, before and after (docs/semantics.md "The dirty log").

The cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["dirty_log_1000", "snapshot_take", "restore_1", "restore_50",
                                 "restore_5000", "restore_commit_1", "restore_decommit_1",
                                 "first_commit", "snapshot_cycle_50", "full_copy"])
def test_snapshot(bench_case, key, contender):
    bench_case(key, contender)
