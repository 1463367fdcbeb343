"""The memory rows: RSS and metadata per page of the compiled core, the reference model and the
host, each measured in a fresh Python process (`measure_memory`) that reads /proc/self/statm."""

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

from .common import (
    COMMIT,
    DECOMMIT,
    PAGE,
    BenchError,
    MiB,
    Target,
    TiB,
    Unavailable,
    kernel_class,
    kernel_memory,
    new_vmo,
    ok,
)
from .hostops import host_ops


def _rss():
    """Resident set size of this process in bytes, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _mem_kernel(contender, size):
    """RSS growth of creating a kernel of `size` bytes of physical memory (host: an mmap
    reservation of that size)."""
    if contender == "host":
        H = host_ops()
        H.require()
        rss0 = _rss()
        p = H.map(size)
        rss1 = _rss()
        H.call("unmap", p, size)
        return {"value": rss1 - rss0}
    K = kernel_class(contender)
    K(memory_size=MiB).close()  # first-use costs of the code paths are not the kernel's
    rss0 = _rss()
    k = K(memory_size=size)
    rss1 = _rss()
    k.close()
    return {"value": rss1 - rss0}


def _mem_commit(contender, size):
    """RSS growth per page of committing `size` bytes that are never written (host: what
    MADV_POPULATE_WRITE makes resident)."""
    pages = size // PAGE
    if contender == "host":
        H = host_ops()
        H.require()
        p = H.map(size)
        rss0 = _rss()
        H.call("prefault", p, size)
        rss1 = _rss()
        H.call("unmap", p, size)
    else:
        K = kernel_class(contender)
        warm = K(memory_size=16 * MiB)
        ok(warm.vmo_op_range(new_vmo(warm, MiB), COMMIT, 0, MiB), "COMMIT")
        warm.close()
        k = K(memory_size=kernel_memory(size))
        h = new_vmo(k, size)
        _malloc_trim()  # so heap the process freed earlier cannot hide new allocations
        rss0 = _rss()
        ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
        rss1 = _rss()
        k.close()
    return {"value": (rss1 - rss0) / pages, "extra": {"rss_growth": rss1 - rss0,
                                                       "pages": pages}}


def _malloc_trim():
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _mem_metadata(contender, size):
    """Bytes of metadata per committed page, as allocated (not as resident): page-table
    nodes (counted by vmo._pagetable.node_bytes) plus the per-frame bitmaps of the frames
    committed (held: 1 bit; the two word summaries: 2 bits per 64 frames)."""
    if contender != "vmo":
        raise Unavailable("counts the compiled core's own allocations")
    from .. import Kernel
    from .._pagetable import node_bytes
    pages = size // PAGE
    k = Kernel(memory_size=kernel_memory(size))
    h = new_vmo(k, size)
    before = node_bytes()
    ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    tables = node_bytes() - before
    k.close()
    bitmaps = pages / 8 + 2 * pages / 64 / 8
    return {"value": (tables + bitmaps) / pages,
            "extra": {"page_table_bytes": tables, "bitmap_bytes": bitmaps, "pages": pages}}


def _mem_return(contender, size):
    """Percentage of the RSS that writing `size` bytes added which DECOMMIT gives back."""
    if contender == "host":
        H = host_ops()
        H.require()
        p = H.map(size)
        rss0 = _rss()
        H.call("fill", p, size, 0xA5)
        rss1 = _rss()
        H.call("dontneed", p, size)
        rss2 = _rss()
        H.call("unmap", p, size)
    else:
        K = kernel_class(contender)
        k = K(memory_size=kernel_memory(size))
        h = new_vmo(k, size)
        chunk = b"\xa5" * min(size, MiB)
        rss0 = _rss()
        for off in range(0, size, len(chunk)):
            ok(k.vmo_write(h, chunk, off)[0], "vmo_write")
        rss1 = _rss()
        ok(k.vmo_op_range(h, DECOMMIT, 0, size), "DECOMMIT")
        rss2 = _rss()
        k.close()
    grown = rss1 - rss0
    return {"value": 100.0 * (rss1 - rss2) / grown if grown > 0 else None,
            "extra": {"rss_growth_written": grown, "rss_returned": rss1 - rss2}}


class MemoryCase:
    """A memory row: `measure(contender, size)` runs in a fresh subprocess and returns
    {"value": ..., "extra": {...}}; `value_unit` is "bytes", "B/page" or "%"."""

    kind = "memory"
    group = "memory"
    unit = None
    rounds = "memory"

    def __init__(self, key, title, value_unit, measure, *, scale, size=None, target=None,
                 ratios=True, host_doc=None):
        self.key = key
        self.title = title
        self.value_unit = value_unit
        self.measure = measure
        self.scale = scale
        self.size = size
        self.target = target
        self.ratios = ratios
        self.host_doc = host_doc

    def size_for(self, contender, profile):
        if self.scale == "mem":
            return profile.ref_mem if contender == "reference" else profile.mem
        return self.size


_MEMORY_LIST = [
    MemoryCase("mem_kernel", "RSS of creating Kernel(memory_size=1 TiB)", "bytes", _mem_kernel,
               scale="fixed", size=TiB, target=Target("<=", 64 * MiB, "<= 64 MiB"),
               ratios=False, host_doc="mmap of 1 TiB, MAP_NORESERVE"),
    MemoryCase("mem_commit", "RSS growth per committed page, nothing written", "B/page",
               _mem_commit, scale="mem", target=Target("<=", 8, "<= 8 B/page"),
               host_doc="MADV_POPULATE_WRITE (makes each page resident)"),
    MemoryCase("mem_metadata", "metadata per committed page, as allocated", "B/page",
               _mem_metadata, scale="mem", target=Target("<=", 8, "<= 8 B/page"),
               ratios=False, host_doc="(Linux: 64 B struct page per frame; Zircon 32-48)"),
    MemoryCase("mem_return", "RSS returned by DECOMMIT after writing every byte", "%",
               _mem_return, scale="mem", target=Target(">=", 90, ">= 90 %"), ratios=False,
               host_doc="memset, then MADV_DONTNEED"),
]

MEMORY_CASES = {case.key: case for case in _MEMORY_LIST}


def child_main(argv):
    """Entry point of the subprocess of one memory measurement: prints one JSON line."""
    key, contender, size = argv[0], argv[1], int(argv[2])
    try:
        result = MEMORY_CASES[key].measure(contender, size)
    except Unavailable as exc:
        result = {"unavailable": str(exc)}
    except Exception as exc:  # noqa: BLE001  (reported in the row; the run goes on)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")


def measure_memory(case, contender, size):
    """Run `case` for `contender` in a fresh Python process; its result dict."""
    if contender == "host":
        host_ops().require()  # build (or find) the helper here, not in the child
    package_parent = str(Path(__file__).resolve().parents[2])  # holds vmo/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent,
                                                      env.get("PYTHONPATH")]))
    code = "import sys; from vmo.bench.memory import child_main; child_main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, case.key, contender, str(size)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise BenchError(f"memory subprocess failed: {tail}")
    result = json.loads(lines[-1])
    if "unavailable" in result:
        raise Unavailable(result["unavailable"])
    if "error" in result:
        raise BenchError(result["error"])
    return result


