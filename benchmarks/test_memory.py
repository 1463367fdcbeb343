"""Memory: RSS of Kernel(memory_size=1 TiB), RSS growth per committed page (nothing written),
and the share of RSS that DECOMMIT gives back after writing every byte. Each measurement runs
in a fresh subprocess; the value is in extra_info["value"] (tablize.py shows it), the
benchmark's time is only the subprocess's. The cases are defined in vmo/bench/cases.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["mem_kernel", "mem_commit", "mem_return"])
def test_memory(bench_memory, key, contender):
    bench_memory(key, contender)
