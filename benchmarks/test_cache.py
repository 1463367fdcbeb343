"""Benchmarks: the cache ops over a committed range (the host has no equivalent on x86-64),
and the cache model (docs/cache-model.md): 64-byte vmo_read/vmo_write on a coherent and a
non-coherent kernel, CACHE_CLEAN over 1 GiB with 10, 1,000 and 10,000 dirty lines, and the
cache's memory per line.

The timed cases are defined in vmo/bench/cases.py; see conftest.py.
"""

import pytest

from vmo.bench import CONTENDERS


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize(
    "key", ["cache_sync", "cache_invalidate", "cache_clean", "cache_clean_invalidate"])
def test_cache(bench_case, key, contender):
    bench_case(key, contender)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["read_64", "read_64_nc", "write_64", "write_64_nc"])
def test_cache_model_io(bench_case, key, contender):
    bench_case(key, contender)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("key", ["clean_1g_10", "clean_1g_1000", "clean_1g_10000"])
def test_cache_model_clean(bench_case, key, contender):
    bench_case(key, contender)


@pytest.mark.parametrize("lines", [1000, 10000, 100000])
def test_cache_memory_per_line(benchmark, lines):
    """Host bytes the cache holds per cached line (64-byte lines: the line, its record and
    its share of the two tables), after caching `lines` lines, and after dropping them."""
    import vmo

    k = vmo.Kernel(memory_size=1 << 30, coherent=False)
    h = k.vmo_create(lines * 64)[1]
    k.vmo_write(h, b"\x01" * (lines * 64), 0)
    assert k.stats()["cache_lines"] == lines
    per_line = k._cache_bytes() / lines
    k.vmo_op_range(h, 9, 0, lines * 64)          # CLEAN_INVALIDATE: every line goes
    left = k._cache_bytes()
    benchmark.extra_info.update(bytes_per_line=per_line, bytes_after_drop=left)
    benchmark.pedantic(lambda: None, rounds=1)
    k.close()
    assert per_line < 400 and left < 4096
