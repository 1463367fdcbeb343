"""The benchmark suite of vmo: every case, defined once, and the `python -m vmo bench` runner.

Three contenders do the same work side by side:

* ``vmo``: the compiled core (`vmo.Kernel`), timed from Python with `time.perf_counter_ns`
  around the call(s), so per-call numbers include the Python call (and the loop around it);
* ``reference``: the pure-Python reference model (`vmo._reference.Kernel`), timed the same
  way, at smaller sizes where it would be slow (the table marks the size it ran at);
* ``host``: the Linux kernel doing the equivalent work with system calls (`vmo/_hostops.c`,
  compiled at run time with gcc, loaded with ctypes), timed in C with
  clock_gettime(CLOCK_MONOTONIC) around the system call(s) only.

A case (`Case`) says how each contender sets up, runs and tears down one round of one
operation, and the unit it is reported in (per page of the range, or per call). The runner
here (`python -m vmo bench`) and `benchmarks/test_*.py` (pytest-benchmark, through
`benchmarks/conftest.py`) both build their rounds from these definitions. Memory rows
(`MemoryCase`) run each measurement in a fresh subprocess and read /proc/self/statm.

Every number in the output is measured by the run; only the targets (the project's goals,
issue 3) are written here, to be compared against.
"""

import argparse
import ctypes
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from array import array
from pathlib import Path
from time import perf_counter_ns

from .constants import Op

__all__ = [
    "CASES", "CONTENDERS", "PROFILES", "SWEEP_KEYS", "SWEEP_SIZES", "BenchError", "Case", "Job",
    "MemoryCase", "Profile", "Skipped", "Unavailable", "host_ops", "main", "make_job",
    "make_row", "measure", "measure_memory", "render_table", "run_bench", "run_job",
    "sweep_size_for", "sweep_summary",
]

PAGE = 4096
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PiB = 1 << 50

COMMIT = int(Op.COMMIT)
DECOMMIT = int(Op.DECOMMIT)
LOOKUP = int(Op.LOOKUP)

CONTENDERS = ("vmo", "reference", "host")
_INDEX = {name: i for i, name in enumerate(CONTENDERS)}


class Unavailable(Exception):
    """This contender cannot run this case here; the message says why (shown as n/a)."""


class Skipped(Exception):
    """This contender is deliberately not run at this size (shown as '-')."""


class BenchError(Exception):
    """A call under benchmark failed (a status other than NO_ERROR, or a host errno)."""


def _ok(status, what):
    if status:
        raise BenchError(f"{what} returned {status!r}")


# -- profiles -----------------------------------------------------------------------------------
class Profile:
    """Sizes, rounds and calls per round of one kind of run. Round counts are per contender,
    in the order of CONTENDERS (vmo, reference, host)."""

    def __init__(self, name, *, big, ref_big, mem, ref_mem, rounds_big, rounds_call,
                 rounds_sparse, rounds_sweep, call_scale, warmup_call, sweep, host_sweep_max,
                 ref_sweep_max, frag=64 * (1 << 30), ref_frag=64 * (1 << 20)):
        self.name = name
        self.frag = frag                # physical memory fragmented for contiguous runs
        self.ref_frag = ref_frag
        self.big = big                  # range of COMMIT/DECOMMIT/LOOKUP/cache ops (vmo, host)
        self.ref_big = ref_big          # the same for the reference model
        self.mem = mem                  # bytes committed/written by the memory rows
        self.ref_mem = ref_mem
        self.rounds_big = rounds_big
        self.rounds_call = rounds_call
        self.rounds_sparse = rounds_sparse
        self.rounds_sweep = rounds_sweep
        self.call_scale = call_scale    # multiplies each case's calls per round
        self.warmup_call = warmup_call  # untimed rounds before the per-call cases
        self.sweep = sweep              # sizes of the COMMIT/LOOKUP sweep; () = none
        self.host_sweep_max = host_sweep_max
        self.ref_sweep_max = ref_sweep_max

    def as_dict(self):
        return dict(vars(self))


PROFILES = {
    "default": Profile(
        "default", big=GiB, ref_big=64 * MiB, mem=GiB, ref_mem=64 * MiB,
        rounds_big=(9, 5, 5), rounds_call=(9, 5, 9), rounds_sparse=(21, 9, 9),
        rounds_sweep=(5, 3, 3),
        call_scale=1.0, warmup_call=1,
        sweep=(MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, GiB, 4 * GiB),
        host_sweep_max=GiB, ref_sweep_max=16 * MiB),
    "quick": Profile(
        "quick", big=64 * MiB, ref_big=4 * MiB, mem=256 * MiB, ref_mem=16 * MiB,
        rounds_big=(5, 3, 3), rounds_call=(5, 3, 5), rounds_sparse=(9, 5, 5),
        rounds_sweep=(3, 3, 3),
        call_scale=0.1, warmup_call=1, sweep=(),
        host_sweep_max=GiB, ref_sweep_max=16 * MiB, frag=4 * GiB, ref_frag=16 * MiB),
}

# The size sweep of `pytest benchmarks/` (parametrised) and of the default profile.
SWEEP_SIZES = PROFILES["default"].sweep
SWEEP_KEYS = ("commit_fresh", "lookup")


def sweep_size_for(contender, size, profile):
    """The size a contender runs at in the sweep row of `size`; raises Skipped above its
    limit (the host stops at 1 GiB, the reference model at 16 MiB by default)."""
    if contender == "host" and size > profile.host_sweep_max:
        raise Skipped(f"host sweep stops at {fmt_size(profile.host_sweep_max)}")
    if contender == "reference" and size > profile.ref_sweep_max:
        raise Skipped(f"reference sweep stops at {fmt_size(profile.ref_sweep_max)}")
    return size


# -- targets ------------------------------------------------------------------------------------
class Target:
    """A goal from issue 3 (written in, not measured): `value` is in the row's base unit
    (ns per page or call, bytes, bytes per page, percent)."""

    def __init__(self, op, value, text):
        self.op = op
        self.value = value
        self.text = text

    def met(self, measured):
        if measured is None:
            return None
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def as_dict(self):
        return {"op": self.op, "value": self.value, "text": self.text}


# -- jobs ---------------------------------------------------------------------------------------
class Job:
    """One contender of one case at one size, ready to run rounds.

    ``setup()`` before each round and ``teardown()`` after it are untimed; ``run()`` does one
    round and returns the nanoseconds it measured around the work alone; ``units`` is the pages
    (or calls) a round does; ``close()`` releases everything (idempotent, also tears down).
    """

    def __init__(self, run, units, setup=None, teardown=None, close=None):
        self.run = run
        self.units = units
        self._setup = setup
        self._teardown = teardown
        self._close = close
        self._armed = False

    def setup(self):
        self.teardown()
        if self._setup is not None:
            self._setup()
        self._armed = True

    def teardown(self, *_ignored):
        if self._armed:
            self._armed = False
            if self._teardown is not None:
                self._teardown()

    def close(self):
        try:
            self.teardown()
        finally:
            close, self._close = self._close, None
            if close is not None:
                close()


class _State:
    """Mutable state shared by the closures of one job."""


def _timed(fn, *args):
    """Call `fn(*args)` once between two perf_counter_ns readings: (elapsed ns, result)."""
    t0 = perf_counter_ns()
    result = fn(*args)
    return perf_counter_ns() - t0, result


def _kernel_memory(size):
    """Physical memory for a kernel that commits `size` bytes: twice that, at least 64 MiB
    (only reserved, never populated)."""
    return max(64 * MiB, 2 * ((size + PAGE - 1) // PAGE) * PAGE)


def _new_vmo(k, size):
    status, handle = k.vmo_create(size)
    _ok(status, "vmo_create")
    return handle


def _fill(k, h, size, byte=0xA5):
    """Write every byte of [0, size) so each page holds data (dirty frames)."""
    chunk = bytes([byte]) * min(size, MiB)
    for off in range(0, size, len(chunk)):
        status, _ = k.vmo_write(h, chunk[:size - off], off)
        _ok(status, "vmo_write")


# -- kernel jobs (vmo and reference: the same syscall API) ------------------------------------
def _k_commit_fresh(K, size, calls):
    st = _State()

    def setup():
        st.k = K(memory_size=_kernel_memory(size))
        st.h = _new_vmo(st.k, size)

    def run():
        ns, status = _timed(st.k.vmo_op_range, st.h, COMMIT, 0, size)
        _ok(status, "COMMIT")
        return ns

    def teardown():
        st.k.close()

    return Job(run, size // PAGE, setup, teardown)


def _k_recommit(K, size, calls):
    st = _State()
    st.k = K(memory_size=_kernel_memory(size))

    def setup():
        st.h = _new_vmo(st.k, size)
        _ok(st.k.vmo_op_range(st.h, COMMIT, 0, size), "COMMIT")
        _ok(st.k.vmo_op_range(st.h, DECOMMIT, 0, size), "DECOMMIT")

    def run():
        ns, status = _timed(st.k.vmo_op_range, st.h, COMMIT, 0, size)
        _ok(status, "COMMIT")
        return ns

    def teardown():
        _ok(st.k.handle_close(st.h), "handle_close")

    return Job(run, size // PAGE, setup, teardown, st.k.close)


def _k_decommit_clean(K, size, calls):
    st = _State()
    st.k = K(memory_size=_kernel_memory(size))

    def setup():
        st.h = _new_vmo(st.k, size)
        _ok(st.k.vmo_op_range(st.h, COMMIT, 0, size), "COMMIT")

    def run():
        ns, status = _timed(st.k.vmo_op_range, st.h, DECOMMIT, 0, size)
        _ok(status, "DECOMMIT")
        return ns

    def teardown():
        _ok(st.k.handle_close(st.h), "handle_close")

    return Job(run, size // PAGE, setup, teardown, st.k.close)


def _k_decommit_commit_1in64(K, size, calls):
    st = _State()
    st.k = K(memory_size=_kernel_memory(size))
    one = b"\x01"

    def setup():
        k = st.k
        st.h = h = _new_vmo(k, size)
        _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
        for off in range(0, size, 64 * PAGE):
            _ok(k.vmo_write(h, one, off)[0], "vmo_write")

    def run():
        k, h = st.k, st.h
        t0 = perf_counter_ns()
        s1 = k.vmo_op_range(h, DECOMMIT, 0, size)
        s2 = k.vmo_op_range(h, COMMIT, 0, size)
        ns = perf_counter_ns() - t0
        _ok(s1, "DECOMMIT")
        _ok(s2, "COMMIT")
        return ns

    def teardown():
        _ok(st.k.handle_close(st.h), "handle_close")

    return Job(run, size // PAGE, setup, teardown, st.k.close)


def _k_lookup(K, size, calls):
    k = K(memory_size=_kernel_memory(size))
    h = _new_vmo(k, size)
    _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    buf = array("Q", bytes(8 * (size // PAGE)))

    def run():
        ns, status = _timed(k.vmo_op_range, h, LOOKUP, 0, size, buf)
        _ok(status, "LOOKUP")
        return ns

    return Job(run, size // PAGE, close=k.close)


def _k_cache(op):
    op = int(op)

    def make(K, size, calls):
        k = K(memory_size=_kernel_memory(size))
        h = _new_vmo(k, size)
        _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")

        def run():
            ns, status = _timed(k.vmo_op_range, h, op, 0, size)
            _ok(status, Op(op).name)
            return ns

        return Job(run, size // PAGE, close=k.close)

    return make


_SPARSE_PAGES = 16


def _sparse_vmo(K, size):
    """A kernel and a VMO of `size` bytes holding 16 pages spread evenly over it."""
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, size)
    offsets = [i * (size // _SPARSE_PAGES) // PAGE * PAGE for i in range(_SPARSE_PAGES)]

    def commit_pages():
        for off in offsets:
            _ok(k.vmo_op_range(h, COMMIT, off, PAGE), "COMMIT")

    return k, h, commit_pages


def _k_sparse_cache(K, size, calls):
    k, h, commit_pages = _sparse_vmo(K, size)
    commit_pages()
    op = int(Op.CACHE_CLEAN_INVALIDATE)

    def run():
        ns, status = _timed(k.vmo_op_range, h, op, 0, size)
        _ok(status, "CACHE_CLEAN_INVALIDATE")
        return ns

    return Job(run, 1, close=k.close)


def _k_sparse_decommit(K, size, calls):
    k, h, commit_pages = _sparse_vmo(K, size)

    def run():
        ns, status = _timed(k.vmo_op_range, h, DECOMMIT, 0, size)
        _ok(status, "DECOMMIT")
        return ns

    return Job(run, 1, setup=commit_pages, close=k.close)


def _k_sparse_shrink(K, size, calls):
    k, h, commit_pages = _sparse_vmo(K, size)

    def setup():
        _ok(k.vmo_set_size(h, size), "vmo_set_size")
        commit_pages()

    def run():
        ns, status = _timed(k.vmo_set_size, h, PAGE)
        _ok(status, "vmo_set_size")
        return ns

    return Job(run, 1, setup=setup, close=k.close)


def _k_read(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, size)
    _fill(k, h, size)
    buf = bytearray(size)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_read(h, buf, 0)
        ns = perf_counter_ns() - t0
        _ok(res[0], "vmo_read")
        return ns

    return Job(run, calls, close=k.close)


def _k_write(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, size)
    _fill(k, h, size)
    data = b"\x5a" * size
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_write(h, data, 0)
        ns = perf_counter_ns() - t0
        _ok(res[0], "vmo_write")
        return ns

    return Job(run, calls, close=k.close)


def _k_create_close(K, size, calls):
    k = K(memory_size=64 * MiB)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            status, h = k.vmo_create(size)
            k.handle_close(h)
        ns = perf_counter_ns() - t0
        _ok(status, "vmo_create")
        return ns

    return Job(run, calls, close=k.close)


def _k_clone_write(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, size)
    _fill(k, h, size)
    one = b"\x01"
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            status, c = k.vmo_clone(h, 1, 0, size)
            k.vmo_write(c, one, 0)
            k.handle_close(c)
        ns = perf_counter_ns() - t0
        _ok(status, "vmo_clone")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_commit(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, size)
    _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            status = k.vmo_op_range(h, COMMIT, 0, size)
        ns = perf_counter_ns() - t0
        _ok(status, "COMMIT")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_lookup(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, size)
    _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    buf = array("Q", [0])
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            status = k.vmo_op_range(h, LOOKUP, 0, size, buf)
        ns = perf_counter_ns() - t0
        _ok(status, "LOOKUP")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_get_size(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, PAGE)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_get_size(h)
        ns = perf_counter_ns() - t0
        _ok(res[0], "vmo_get_size")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_read(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = _new_vmo(k, PAGE)
    _fill(k, h, PAGE)
    buf = bytearray(size)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_read(h, buf, 0)
        ns = perf_counter_ns() - t0
        _ok(res[0], "vmo_read")
        return ns

    return Job(run, calls, close=k.close)


# -- embedding: physical access and contiguous runs (issue 4) ---------------------------------
def _phys_page(K):
    """A kernel, a one-page contiguous VMO holding data, and the page's physical address."""
    k = K(memory_size=64 * MiB)
    status, h = k.vmo_create_contiguous(PAGE)
    _ok(status, "vmo_create_contiguous")
    _fill(k, h, PAGE)
    entry = array("Q", [0])
    _ok(k.vmo_op_range(h, LOOKUP, 0, PAGE, entry), "LOOKUP")
    return k, entry[0]


def _k_phys_view(K, size, calls):
    k, paddr = _phys_page(K)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            k.phys_view(paddr, size).release()
        return perf_counter_ns() - t0

    return Job(run, calls, close=k.close)


def _k_view_write(K, size, calls):
    k, paddr = _phys_page(K)
    view = k.phys_view(paddr, size)
    data = b"\x5a" * size
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            view[:] = data
        return perf_counter_ns() - t0

    def close():
        view.release()
        k.close()

    return Job(run, calls, close=close)


def _k_phys_write(K, size, calls):
    k, paddr = _phys_page(K)
    data = b"\x5a" * size
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            k.phys_write(paddr, data)
        return perf_counter_ns() - t0

    return Job(run, calls, close=k.close)


def _k_phys_read(K, size, calls):
    k, paddr = _phys_page(K)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            k.phys_read(paddr, size)
        return perf_counter_ns() - t0

    return Job(run, calls, close=k.close)


def _fragmented(K, size):
    """A kernel of `size` bytes whose memory is all committed to one VMO, then about half
    decommitted in runs: held runs of 1-8 pages between free runs of 1-8 pages, and one free
    run in 1024 of 256 pages, the first after some 450 pages (a deterministic pseudo-random
    pattern)."""
    k = K(memory_size=size)
    h = _new_vmo(k, size)
    _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    pages = size // PAGE
    x, i, n = 12345, 0, 0
    while i < pages:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        i += 1 + (x >> 4) % 8
        n += 1
        free = 256 if n % 1024 == 50 else 1 + (x >> 12) % 8
        free = min(free, pages - i)
        if free > 0:
            _ok(k.vmo_op_range(h, DECOMMIT, i * PAGE, free * PAGE), "DECOMMIT")
        i += free
    return k


def _k_contiguous(run_bytes, alignment_log2):
    def make(K, size, calls):
        k = _fragmented(K, size)
        r = range(calls)

        def run():
            t0 = perf_counter_ns()
            for _ in r:
                status, h = k.vmo_create_contiguous(run_bytes, alignment_log2)
                if status == 0:
                    k.handle_close(h)
            ns = perf_counter_ns() - t0
            expect = 0 if run_bytes <= 256 * PAGE else -4  # the longest free run: 256 pages
            if int(status) != expect:
                raise BenchError(f"vmo_create_contiguous returned {status!r}")
            return ns

        return Job(run, calls, close=k.close)

    return make


# -- the host helper ----------------------------------------------------------------------------
_HOST_FUNCS = {
    # name: (restype, argtypes)
    "abi": (ctypes.c_int64, ()),
    "map": (ctypes.c_void_p, (ctypes.c_uint64,)),
    "unmap": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "probe_populate": (ctypes.c_int64, ()),
    "populate": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "dontneed": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "dontneed_populate": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "prefault": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64)),
    "touch": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int)),
    "fill": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int)),
    "open_pagemap": (ctypes.c_int64, ()),
    "close": (ctypes.c_int64, (ctypes.c_int64,)),
    "pagemap": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
                                 ctypes.c_void_p)),
    "pagemap_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)),
    "populate_loop": (ctypes.c_int64, (ctypes.c_void_p, ctypes.c_int64)),
    "memfd": (ctypes.c_int64, (ctypes.c_uint64, ctypes.c_int)),
    "pread_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
                                    ctypes.c_uint64, ctypes.c_int64)),
    "pwrite_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
                                     ctypes.c_uint64, ctypes.c_int64)),
    "memfd_cycle": (ctypes.c_int64, (ctypes.c_int64,)),
    "cow_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_int64)),
    "fstat_loop": (ctypes.c_int64, (ctypes.c_int64, ctypes.c_int64)),
}
_HOST_SOURCE = Path(__file__).with_name("_hostops.c")
_HOST_CFLAGS = ["-O2", "-shared", "-fPIC", "-std=gnu11"]


class HostOps:
    """The compiled host helper (or why there is none). Methods raise BenchError on a host
    errno; `require()` raises Unavailable when the helper could not be built."""

    def __init__(self, lib=None, reason=None, path=None, compiler=None):
        self.lib = lib
        self.reason = reason
        self.path = path
        self.compiler = compiler
        self.populate_reason = None
        if lib is not None:
            err = lib.vh_probe_populate()
            if err < 0:
                self.populate_reason = ("MADV_POPULATE_WRITE unavailable here "
                                        f"({os.strerror(-err)}; it needs Linux >= 5.14)")

    @property
    def available(self):
        return self.lib is not None

    def require(self, populate=False):
        if self.lib is None:
            raise Unavailable(self.reason)
        if populate and self.populate_reason:
            raise Unavailable(self.populate_reason)

    def call(self, name, *args):
        result = getattr(self.lib, "vh_" + name)(*args)
        if result < 0:
            raise BenchError(f"host {name}: {os.strerror(-result)}")
        return result

    def map(self, size):
        p = self.lib.vh_map(size)
        if not p:
            raise BenchError(f"host mmap of {fmt_size(size)} failed")
        return p

    def as_dict(self):
        return {"available": self.available, "reason": self.reason, "library": self.path,
                "compiler": self.compiler, "populate_write": self.available
                and self.populate_reason is None, "populate_reason": self.populate_reason}


_HOST = None


def _cache_dir():
    base = os.environ.get("VMO_BENCH_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "vmo-bench"


def _build_host():
    if not sys.platform.startswith("linux"):
        return HostOps(reason="the host contender needs Linux")
    if not _HOST_SOURCE.is_file():
        return HostOps(reason="vmo/_hostops.c is not installed")
    cc = shutil.which("gcc")
    if cc is None:
        return HostOps(reason="gcc not found (the host helper is compiled at run time)")
    source = _HOST_SOURCE.read_bytes()
    tag = hashlib.sha256(source + " ".join([cc, platform.machine()] + _HOST_CFLAGS).encode())
    name = f"hostops-{tag.hexdigest()[:16]}.so"
    so = None
    for directory in (_cache_dir(), None):
        try:
            if directory is None:
                directory = Path(tempfile.mkdtemp(prefix="vmo-bench-"))
            candidate = directory / name
            if not candidate.is_file():
                directory.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(prefix="vmo-bench-build-") as tmp:
                    out = Path(tmp) / name
                    proc = subprocess.run([cc, *_HOST_CFLAGS, "-o", str(out), str(_HOST_SOURCE)],
                                          capture_output=True, text=True, check=False)
                    if proc.returncode:
                        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                        return HostOps(reason=f"gcc failed on vmo/_hostops.c: {last}")
                    partial = directory / f"{name}.{os.getpid()}.tmp"
                    shutil.copyfile(out, partial)
                    os.replace(partial, candidate)
            so = candidate
            break
        except OSError:
            continue
    if so is None:
        return HostOps(reason="no writable directory for the host helper")
    try:
        lib = ctypes.CDLL(str(so))
        for fname, (restype, argtypes) in _HOST_FUNCS.items():
            fn = getattr(lib, "vh_" + fname)
            fn.restype = restype
            fn.argtypes = argtypes
    except (OSError, AttributeError) as exc:
        return HostOps(reason=f"cannot load the host helper: {exc}")
    version = subprocess.run([cc, "-dumpfullversion", "-dumpversion"], capture_output=True,
                             text=True, check=False).stdout.strip()
    return HostOps(lib, path=str(so), compiler=f"gcc {version}")


def host_ops():
    """The host helper, built (or loaded from the cache) on first use."""
    global _HOST
    if _HOST is None:
        _HOST = _build_host()
    return _HOST


# -- host jobs ----------------------------------------------------------------------------------
def _h_commit_fresh(H, size, calls):
    H.require(populate=True)
    st = _State()

    def setup():
        st.p = H.map(size)

    def run():
        return H.call("populate", st.p, size)

    def teardown():
        H.call("unmap", st.p, size)

    return Job(run, size // PAGE, setup, teardown)


def _h_recommit(H, size, calls):
    H.require(populate=True)
    p = H.map(size)
    try:
        H.call("prefault", p, size)
    except BaseException:
        H.call("unmap", p, size)
        raise

    def setup():  # every page populated (by prepare or the last round), then dropped
        H.call("dontneed", p, size)

    def run():
        return H.call("populate", p, size)

    return Job(run, size // PAGE, setup, close=lambda: H.call("unmap", p, size))


def _h_decommit_clean(H, size, calls):
    H.require()
    p = H.map(size)

    def setup():
        H.call("prefault", p, size)

    def run():
        return H.call("dontneed", p, size)

    return Job(run, size // PAGE, setup, close=lambda: H.call("unmap", p, size))


def _h_decommit_commit_1in64(H, size, calls):
    H.require(populate=True)
    p = H.map(size)
    try:
        H.call("prefault", p, size)
    except BaseException:
        H.call("unmap", p, size)
        raise

    def setup():  # every page populated (by prepare or the last round); write 1 in 64
        H.call("touch", p, size, 64 * PAGE, 1)

    def run():
        return H.call("dontneed_populate", p, size)

    return Job(run, size // PAGE, setup, close=lambda: H.call("unmap", p, size))


def _h_lookup(H, size, calls):
    H.require()
    p = H.map(size)
    try:
        H.call("prefault", p, size)
        fd = H.call("open_pagemap")
    except BaseException:
        H.call("unmap", p, size)
        raise
    out = ctypes.create_string_buffer(8 * (size // PAGE))

    def run():
        return H.call("pagemap", fd, p, size, out)

    def close():
        H.call("close", fd)
        H.call("unmap", p, size)

    return Job(run, size // PAGE, close=close)


def _h_memfd(H, fd_size):
    """A memfd of `fd_size` bytes, every byte written: (fd, a function closing it)."""
    H.require()
    fd = H.call("memfd", fd_size, 0xA5)
    return fd, (lambda: H.call("close", fd))


def _h_read(H, size, calls):
    fd, close = _h_memfd(H, size)
    buf = ctypes.create_string_buffer(size)
    return Job(lambda: H.call("pread_loop", fd, buf, size, 0, calls), calls, close=close)


def _h_write(H, size, calls):
    fd, close = _h_memfd(H, size)
    buf = ctypes.create_string_buffer(b"\x5a" * size, size)
    return Job(lambda: H.call("pwrite_loop", fd, buf, size, 0, calls), calls, close=close)


def _h_create_close(H, size, calls):
    H.require()
    return Job(lambda: H.call("memfd_cycle", calls), calls)


def _h_clone_write(H, size, calls):
    fd, close = _h_memfd(H, size)
    return Job(lambda: H.call("cow_loop", fd, calls), calls, close=close)


def _h_sys_commit(H, size, calls):
    H.require(populate=True)
    p = H.map(size)
    H.call("prefault", p, size)
    return Job(lambda: H.call("populate_loop", p, calls), calls,
               close=lambda: H.call("unmap", p, size))


def _h_sys_lookup(H, size, calls):
    H.require()
    p = H.map(size)
    H.call("prefault", p, size)
    fd = H.call("open_pagemap")

    def close():
        H.call("close", fd)
        H.call("unmap", p, size)

    return Job(lambda: H.call("pagemap_loop", fd, p, calls), calls, close=close)


def _h_sys_get_size(H, size, calls):
    fd, close = _h_memfd(H, PAGE)
    return Job(lambda: H.call("fstat_loop", fd, calls), calls, close=close)


def _h_sys_read(H, size, calls):
    fd, close = _h_memfd(H, PAGE)
    buf = ctypes.create_string_buffer(size)
    return Job(lambda: H.call("pread_loop", fd, buf, size, 0, calls), calls, close=close)


# -- the cases ----------------------------------------------------------------------------------
_NO_CACHE_SYSCALL = "x86-64 Linux has no cache-maintenance system call"
_NO_PIB_MAPPING = "no 1 PiB mapping on the host (47-bit user address space)"
_NO_PHYS = "user space has no access to physical memory on the host"


class Case:
    """One benchmarked operation.

    `kernel(K, size, calls)` builds the Job of the vmo and reference contenders (K is the
    kernel class), `host(H, size, calls)` the host's, or `host_na` says why the host has no
    equivalent. `scale` is "range" (vmo and host at profile.big, the reference at
    profile.ref_big), "range_all" (everyone at profile.big) or "fixed" (everyone at `size`). `unit` is "page" (round time / pages of
    the range) or "call" (round time / calls in the round); `calls` gives the calls per round
    of (vmo, reference, host) at the default profile.
    """

    kind = "time"

    def __init__(self, key, group, title, unit, kernel, host=None, *, host_doc=None,
                 host_na=None, scale="range", size=None, calls=None, rounds="big",
                 target=None):
        self.key = key
        self.group = group
        self.title = title
        self.unit = unit
        self.kernel = kernel
        self.host = host
        self.host_doc = host_doc
        self.host_na = host_na
        self.scale = scale
        self.size = size
        self.calls = calls
        self.rounds = rounds
        self.target = target

    @property
    def value_unit(self):
        return "ns/" + self.unit

    def size_for(self, contender, profile):
        if self.scale == "range":
            return profile.ref_big if contender == "reference" else profile.big
        if self.scale == "range_all":
            return profile.big
        if self.scale == "frag":
            return profile.ref_frag if contender == "reference" else profile.frag
        return self.size

    def calls_for(self, contender, profile):
        if self.unit != "call" or self.calls is None:
            return 1
        return max(1, int(self.calls[_INDEX[contender]] * profile.call_scale))

    def rounds_for(self, contender, profile, sweep=False):
        """(rounds, warmup rounds) of this contender under `profile` (in the sweep or not)."""
        kind = "sweep" if sweep else self.rounds
        table = {"big": profile.rounds_big, "call": profile.rounds_call,
                 "sparse": profile.rounds_sparse, "sweep": profile.rounds_sweep}[kind]
        warmup = profile.warmup_call if self.rounds == "call" else 0
        return table[_INDEX[contender]], warmup


def _kernel_class(contender):
    if contender == "vmo":
        from . import Kernel
        return Kernel
    if contender == "reference":
        from ._reference import Kernel
        return Kernel
    raise ValueError(f"not a kernel contender: {contender!r}")


def make_job(case, contender, size, profile, host=None):
    """The Job of `contender` for `case` at `size` bytes. Raises Unavailable when the
    contender has no equivalent here."""
    calls = case.calls_for(contender, profile)
    if contender == "host":
        if case.host is None:
            raise Unavailable(case.host_na or "no host equivalent")
        return case.host(host or host_ops(), size, calls)
    return case.kernel(_kernel_class(contender), size, calls)


_CASE_LIST = [
    Case("commit_fresh", "commit", "COMMIT, fresh VMO", "page", _k_commit_fresh,
         _h_commit_fresh, host_doc="madvise(MADV_POPULATE_WRITE) on a fresh anonymous mapping",
         target=Target("<=", 10, "<= 10 ns/page")),
    Case("recommit", "commit", "COMMIT onto recycled clean frames", "page", _k_recommit,
         _h_recommit, host_doc="MADV_POPULATE_WRITE again after MADV_DONTNEED",
         target=Target("<=", 10, "<= 10 ns/page")),
    Case("decommit_clean", "decommit", "DECOMMIT, never-written pages", "page",
         _k_decommit_clean, _h_decommit_clean, host_doc="madvise(MADV_DONTNEED)",
         target=Target("<=", 10, "<= 10 ns/page")),
    Case("decommit_commit_1in64", "decommit", "DECOMMIT + COMMIT, 1 page in 64 written",
         "page", _k_decommit_commit_1in64, _h_decommit_commit_1in64,
         host_doc="MADV_DONTNEED + MADV_POPULATE_WRITE",
         target=Target("<=", 40, "<= 40 ns/page")),
    Case("lookup", "lookup", "LOOKUP into array('Q')", "page", _k_lookup, _h_lookup,
         host_doc="pread of the range's /proc/self/pagemap entries (8 bytes per page)",
         target=Target("<=", 2, "<= 2 ns/page")),
] + [
    # The reference model runs these at full size too: they cost it O(1) (validation only),
    # so per-page numbers at two sizes would not compare.
    Case("cache_" + op.name.lower()[len("cache_"):], "cache", op.name + ", committed range",
         "page", _k_cache(op), host_na=_NO_CACHE_SYSCALL, scale="range_all")
    for op in (Op.CACHE_SYNC, Op.CACHE_INVALIDATE, Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE)
] + [
    Case("sparse_cache", "sparse", "CACHE_CLEAN_INVALIDATE whole range, 16 pages held", "call",
         _k_sparse_cache, host_na=_NO_PIB_MAPPING, scale="fixed", size=PiB, rounds="sparse",
         target=Target("<=", 5e6, "<= 5 ms")),
    Case("sparse_decommit", "sparse", "DECOMMIT whole range, 16 pages held", "call",
         _k_sparse_decommit, host_na=_NO_PIB_MAPPING, scale="fixed", size=PiB,
         rounds="sparse", target=Target("<=", 5e6, "<= 5 ms")),
    Case("sparse_shrink", "sparse", "vmo_set_size shrink to 1 page, 16 pages held", "call",
         _k_sparse_shrink, host_na=_NO_PIB_MAPPING, scale="fixed", size=PiB, rounds="sparse",
         target=Target("<=", 5e6, "<= 5 ms")),
    Case("read_4k", "io", "vmo_read", "call", _k_read, _h_read, scale="fixed", size=4 * KiB,
         calls=(20000, 1000, 10000), rounds="call", host_doc="pread from a memfd"),
    Case("write_4k", "io", "vmo_write", "call", _k_write, _h_write, scale="fixed",
         size=4 * KiB, calls=(20000, 1000, 10000), rounds="call",
         host_doc="pwrite to a memfd"),
    Case("read_1m", "io", "vmo_read", "call", _k_read, _h_read, scale="fixed", size=MiB,
         calls=(300, 5, 300), rounds="call", host_doc="pread from a memfd"),
    Case("write_1m", "io", "vmo_write", "call", _k_write, _h_write, scale="fixed", size=MiB,
         calls=(300, 5, 300), rounds="call", host_doc="pwrite to a memfd"),
    Case("create_close", "object", "vmo_create + handle_close", "call", _k_create_close,
         _h_create_close, scale="fixed", size=PAGE, calls=(20000, 2000, 10000), rounds="call",
         host_doc="memfd_create + close", target=Target("<=", 800, "<= 800 ns")),
    Case("clone_write", "object", "vmo_clone + first write + handle_close", "call",
         _k_clone_write, _h_clone_write, scale="fixed", size=PAGE,
         calls=(10000, 500, 5000), rounds="call",
         host_doc="mmap MAP_PRIVATE of a written memfd page + write 1 byte + munmap"),
    Case("sys_commit", "syscall", "COMMIT of a committed page", "call", _k_sys_commit,
         _h_sys_commit, scale="fixed", size=PAGE, calls=(50000, 2000, 10000), rounds="call",
         host_doc="MADV_POPULATE_WRITE of one populated page",
         target=Target("<=", 200, "<= 200 ns")),
    Case("sys_lookup", "syscall", "LOOKUP of one page", "call", _k_sys_lookup, _h_sys_lookup,
         scale="fixed", size=PAGE, calls=(50000, 2000, 10000), rounds="call",
         host_doc="pread of 8 bytes of /proc/self/pagemap",
         target=Target("<=", 200, "<= 200 ns")),
    Case("sys_get_size", "syscall", "vmo_get_size", "call", _k_sys_get_size, _h_sys_get_size,
         scale="fixed", size=None, calls=(50000, 2000, 10000), rounds="call",
         host_doc="fstat of a memfd", target=Target("<=", 200, "<= 200 ns")),
    Case("sys_read_64", "syscall", "vmo_read", "call", _k_sys_read, _h_sys_read,
         scale="fixed", size=64, calls=(50000, 2000, 10000), rounds="call",
         host_doc="pread of 64 bytes from a memfd", target=Target("<=", 200, "<= 200 ns")),
    Case("phys_view", "embed", "phys_view + release (pin and unpin a page)", "call",
         _k_phys_view, host_na=_NO_PHYS, scale="fixed", size=PAGE,
         calls=(20000, 1000, 0), rounds="call"),
    Case("view_write", "embed", "device write through a live phys_view", "call",
         _k_view_write, host_na=_NO_PHYS, scale="fixed", size=PAGE,
         calls=(50000, 5000, 0), rounds="call"),
    Case("phys_write", "embed", "phys_write", "call", _k_phys_write, host_na=_NO_PHYS,
         scale="fixed", size=PAGE, calls=(20000, 1000, 0), rounds="call"),
    Case("phys_read", "embed", "phys_read", "call", _k_phys_read, host_na=_NO_PHYS,
         scale="fixed", size=PAGE, calls=(20000, 1000, 0), rounds="call"),
    Case("contiguous_fit", "contiguous",
         "create_contiguous 64 KiB, 64 KiB aligned + close, fragmented memory", "call",
         _k_contiguous(16 * PAGE, 16), host_na=_NO_PHYS, scale="frag",
         calls=(200, 20, 0), rounds="call"),
    Case("contiguous_nofit", "contiguous",
         "create_contiguous 4 MiB: no fit, whole fragmented memory searched", "call",
         _k_contiguous(1024 * PAGE, 22), host_na=_NO_PHYS, scale="frag",
         calls=(10, 3, 0), rounds="call"),
    Case("contiguous_page", "contiguous",
         "create_contiguous 1 page + close, fragmented memory", "call",
         _k_contiguous(PAGE, 0), host_na=_NO_PHYS, scale="frag",
         calls=(2000, 50, 0), rounds="call"),
]


# -- memory rows (each measurement in a fresh subprocess) --------------------------------------
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
    K = _kernel_class(contender)
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
        K = _kernel_class(contender)
        warm = K(memory_size=16 * MiB)
        _ok(warm.vmo_op_range(_new_vmo(warm, MiB), COMMIT, 0, MiB), "COMMIT")
        warm.close()
        k = K(memory_size=_kernel_memory(size))
        h = _new_vmo(k, size)
        _malloc_trim()  # so heap the process freed earlier cannot hide new allocations
        rss0 = _rss()
        _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
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
    from . import Kernel
    from ._pagetable import node_bytes
    pages = size // PAGE
    k = Kernel(memory_size=_kernel_memory(size))
    h = _new_vmo(k, size)
    before = node_bytes()
    _ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
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
        K = _kernel_class(contender)
        k = K(memory_size=_kernel_memory(size))
        h = _new_vmo(k, size)
        chunk = b"\xa5" * min(size, MiB)
        rss0 = _rss()
        for off in range(0, size, len(chunk)):
            _ok(k.vmo_write(h, chunk, off)[0], "vmo_write")
        rss1 = _rss()
        _ok(k.vmo_op_range(h, DECOMMIT, 0, size), "DECOMMIT")
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

CASES = {case.key: case for case in _CASE_LIST + _MEMORY_LIST}
GROUPS = tuple(dict.fromkeys(case.group for case in CASES.values())) + ("sweep",)


def _memory_child_main(argv):
    """Entry point of the subprocess of one memory measurement: prints one JSON line."""
    key, contender, size = argv[0], argv[1], int(argv[2])
    try:
        result = CASES[key].measure(contender, size)
    except Unavailable as exc:
        result = {"unavailable": str(exc)}
    except Exception as exc:  # noqa: BLE001  (reported in the row; the run goes on)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")


def measure_memory(case, contender, size):
    """Run `case` for `contender` in a fresh Python process; its result dict."""
    if contender == "host":
        host_ops().require()  # build (or find) the helper here, not in the child
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent,
                                                      env.get("PYTHONPATH")]))
    code = "import sys; from vmo._bench import _memory_child_main; _memory_child_main(sys.argv[1:])"
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


# -- running ------------------------------------------------------------------------------------
def run_job(job, rounds, warmup=0):
    """Run `rounds` timed rounds (after `warmup` untimed ones) of `job`, closing it at the
    end; the per-unit nanoseconds of each timed round. The cyclic GC is off meanwhile."""
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup + rounds):
            job.setup()
            try:
                ns = job.run()
            finally:
                job.teardown()
            if i >= warmup:
                samples.append(ns / job.units)
    finally:
        try:
            job.close()
        finally:
            if gc_was_enabled:
                gc.enable()
    return samples


def _summary(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": samples}


def measure(case, contender, size, profile, rounds_override=None, sweep=False):
    """One cell of the table: a result dict with "status" ok / n/a / skipped / error."""
    base = {"size": size}
    try:
        if case.kind == "memory":
            result = measure_memory(case, contender, size)
            return dict(base, status="ok", median=result["value"], rounds=1,
                        extra=result.get("extra", {}))
        job = make_job(case, contender, size, profile)
        rounds, warmup = case.rounds_for(contender, profile, sweep)
        if rounds_override:
            rounds = rounds_override
        units = job.units
        samples = run_job(job, rounds, warmup)
        return dict(base, status="ok", rounds=rounds, units_per_round=units, **_summary(samples))
    except Unavailable as exc:
        return dict(base, status="n/a", reason=str(exc))
    except Skipped as exc:
        return dict(base, status="skipped", reason=str(exc))
    except Exception as exc:  # noqa: BLE001  (one failing cell must not stop the run)
        return dict(base, status="error", reason=f"{type(exc).__name__}: {exc}")


class _Spec:
    """One row to run: a case, the row size, and each contender's size (or a Skipped)."""

    def __init__(self, case, group, size, sizes, sweep=False):
        self.case = case
        self.group = group
        self.size = size
        self.sizes = sizes
        self.sweep = sweep


def _specs(profile, only=None):
    specs = []
    for case in CASES.values():
        if only and case.group not in only and case.key not in only:
            continue
        sizes = {c: case.size_for(c, profile) for c in CONTENDERS}
        specs.append(_Spec(case, case.group, sizes["vmo"], sizes))
    if profile.sweep and (not only or "sweep" in only):
        for key in SWEEP_KEYS:
            for size in profile.sweep:
                sizes = {}
                for c in CONTENDERS:
                    try:
                        sizes[c] = sweep_size_for(c, size, profile)
                    except Skipped as exc:
                        sizes[c] = exc
                specs.append(_Spec(CASES[key], "sweep", size, sizes, sweep=True))
    return specs


def _ratio(results, num, den, per_page=True):
    a, b = results.get(num), results.get(den)
    if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
        return None
    if not per_page and a.get("size") != b.get("size"):
        return None  # a per-call cost at two different sizes does not compare
    if a["median"] is None or b["median"] is None or b["median"] <= 0 or a["median"] < 0:
        return None
    return a["median"] / b["median"]


def make_row(case, group, size, results, sweep=False):
    """A table row (a dict, as in --json) from the contenders' results."""
    target = None if sweep else case.target
    vmo = results.get("vmo", {})
    vmo_value = vmo.get("median") if vmo.get("status") == "ok" else None
    with_ratios = getattr(case, "ratios", True)
    per_page = getattr(case, "unit", None) == "page" or case.kind == "memory"
    return {
        "key": case.key, "group": group, "operation": case.title, "size": size,
        "kind": case.kind, "unit": case.value_unit, "sweep": sweep,
        "results": results,
        "ratios": {"host/vmo": _ratio(results, "host", "vmo", per_page) if with_ratios
                   else None,
                   "ref/vmo": _ratio(results, "reference", "vmo", per_page) if with_ratios
                   else None},
        "target": target.as_dict() if target else None,
        "met": target.met(vmo_value) if target else None,
    }


class Progress:
    """Progress on stderr: one updating line on a terminal, one line per cell otherwise."""

    def __init__(self, total, stream=None, enabled=True):
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.t0 = time.monotonic()

    def _emit(self, text, final):
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        line = f"[{self.done:3d}/{self.total} {elapsed:5.1f}s] {text}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\033[K" + line[:width])
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, text):
        self._emit(text + " ...", False)

    def finish(self, text):
        self.done += 1
        self._emit(text, True)

    def note(self, text):
        if self.enabled:
            self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
            self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_bench(profile, only=None, contenders=CONTENDERS, rounds=None, progress=True):
    """Run every selected row; the report (the --json document)."""
    t0 = time.monotonic()
    specs = _specs(profile, only)
    prog = Progress(len(specs) * len(contenders), enabled=progress)
    host = host_ops() if "host" in contenders else None
    if host is not None:
        prog.note("host helper: %s" % (host.path if host.available else f"n/a ({host.reason})"))
    rows = []
    for spec in specs:
        case = spec.case
        results = {}
        for contender in CONTENDERS:
            size = spec.sizes[contender]
            if contender not in contenders:
                results[contender] = {"size": None, "status": "skipped",
                                      "reason": "not selected (--contenders)"}
                continue
            label = "{} {}/{} @{}".format("sweep" if spec.sweep else spec.group, case.key,
                                      contender, fmt_size(size) if isinstance(size, int)
                                      else "-")
            if isinstance(size, Skipped):
                results[contender] = {"size": None, "status": "skipped", "reason": str(size)}
                prog.finish(label + ": skipped")
                continue
            prog.start(label)
            results[contender] = res = measure(case, contender, size, profile, rounds,
                                               spec.sweep)
            prog.finish(f"{label}: {_cell_brief(case, res)}")
        rows.append(make_row(case, spec.group, spec.size, results, spec.sweep))
    prog.close()
    return {
        "vmo_bench": 1,
        "command": "python -m vmo bench" + (" --quick" if profile.name == "quick" else ""),
        "profile": profile.as_dict(),
        "machine": machine_info(),
        "vmo": vmo_info(),
        "host_helper": host.as_dict() if host is not None else None,
        "elapsed_s": round(time.monotonic() - t0, 2),
        "rows": rows,
        "sweep_summary": sweep_summary(rows),
    }


def _cell_brief(case, res):
    if res["status"] != "ok":
        return "{} ({})".format(res["status"], res.get("reason", ""))
    value, unit = _scaled(res["median"], case.value_unit, res["median"])
    return f"{fmt_num(value)} {unit}"


def sweep_summary(rows):
    """Per sweep operation, from the vmo medians: ns/page by size, max/min over all sizes
    and over sizes from 16 MiB (where the per-call fixed part is small), and a fit of the
    time per call as fixed + slope * pages (least squares on relative errors)."""
    by_key = {}
    for row in rows:
        res = row["results"].get("vmo", {})
        if row["sweep"] and res.get("status") == "ok":
            by_key.setdefault(row["key"], {})[row["size"]] = res["median"]
    summary = {}
    for key, by_size in by_key.items():
        values = list(by_size.values())
        large = [v for size, v in by_size.items() if size >= 16 * MiB]
        entry = {"ns_per_page_by_size": {str(s): v for s, v in by_size.items()},
                 "max_over_min": max(values) / min(values) if min(values) > 0 else None,
                 "max_over_min_from_16MiB": max(large) / min(large)
                 if large and min(large) > 0 else None,
                 "fit_ns_per_page": None, "fit_fixed_ns": None}
        if len(by_size) >= 2:
            # Weighted least squares with relative errors (weights 1 / t**2), so that the
            # small sizes, where the fixed part shows, count as much as the large ones.
            xs = [size / PAGE for size in by_size]
            ts = [v * x for v, x in zip(by_size.values(), xs)]
            ws = [1.0 / (t * t) if t > 0 else 0.0 for t in ts]
            sw = sum(ws)
            if sw > 0:
                mx = sum(w * x for w, x in zip(ws, xs)) / sw
                mt = sum(w * t for w, t in zip(ws, ts)) / sw
                sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs))
                if sxx > 0:
                    slope = sum(w * (x - mx) * (t - mt) for w, x, t in zip(ws, xs, ts)) / sxx
                    entry["fit_ns_per_page"] = slope
                    entry["fit_fixed_ns"] = mt - slope * mx
        summary[key] = entry
    return summary


# -- machine and version info -------------------------------------------------------------------
def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    thp = None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read().strip()
    except OSError:
        pass
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "usable_cores": usable, "machine": platform.machine(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "os": f"{platform.system()} {platform.release()}",
            "transparent_hugepage": thp}


def vmo_info():
    from . import __version__
    pkg = Path(__file__).resolve().parent
    info = {"version": __version__, "path": str(pkg), "git_commit": None, "git_dirty": None}
    root = pkg.parent
    if (root / ".git").exists() and shutil.which("git"):
        try:
            head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                  capture_output=True, text=True, timeout=10, check=False)
            if head.returncode == 0:
                info["git_commit"] = head.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                        "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=10,
                                       check=False)
                info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 \
                    else None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


# -- the table ----------------------------------------------------------------------------------
def fmt_size(n):
    if n is None:
        return "-"
    for unit, name in ((PiB, "PiB"), (TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    return f"{n} B"


def fmt_num(x):
    if x is None:
        return "-"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2g}"


def fmt_ratio(r):
    if r is None:
        return "-"
    if r >= 10:
        return f"{r:,.0f}x"
    if r >= 1:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def _scaled(value, unit, anchor):
    """`value` in the display unit chosen for a row whose typical value is `anchor`."""
    if unit.startswith("ns/"):
        per = unit[3:]
        if anchor is not None and anchor >= 1e6:
            return value / 1e6, "ms/" + per
        if anchor is not None and anchor >= 1e4:
            return value / 1e3, "us/" + per
        return value, unit
    if unit == "bytes":
        if anchor is not None and anchor >= MiB:
            return value / MiB, "MiB"
        return value / KiB, "KiB"
    return value, unit


def _row_cells(row):
    results = row["results"]
    vmo = results.get("vmo", {})
    ok_values = [r["median"] for r in results.values()
                 if r.get("status") == "ok" and r.get("median") is not None]
    anchor = vmo.get("median") if vmo.get("status") == "ok" else (min(ok_values)
                                                                    if ok_values else None)
    _, unit = _scaled(0.0, row["unit"], anchor)
    cells = []
    for c in CONTENDERS:
        r = results.get(c, {"status": "skipped"})
        if r["status"] == "ok" and r.get("median") is not None:
            text = fmt_num(_scaled(r["median"], row["unit"], anchor)[0])
            if r.get("size") != row["size"] and r.get("size") is not None:
                text += " @" + fmt_size(r["size"])
        elif r["status"] == "ok":
            text = "-"
        else:
            text = {"n/a": "n/a", "skipped": "-", "error": "error"}[r["status"]]
        cells.append(text)
    met = row["met"]
    target = row["target"]["text"] if row["target"] else ""
    return [row["group"], row["operation"], fmt_size(row["size"]), unit, *cells,
            fmt_ratio(row["ratios"]["host/vmo"]), fmt_ratio(row["ratios"]["ref/vmo"]), target,
            "" if met is None else ("ok" if met else "MISS")]


_HEADERS = ["group", "operation", "size", "unit", "vmo", "reference", "host", "host/vmo",
            "ref/vmo", "target", "met"]
_RIGHT = {2, 4, 5, 6, 7, 8}


def _format_grid(headers, body):
    widths = [max(len(str(r[i])) for r in [headers] + body) for i in range(len(headers))]

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            out.append(str(cell).rjust(widths[i]) if i in _RIGHT else
                       str(cell).ljust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(headers), rule]
    previous = None
    for cells in body:
        if previous is not None and cells[0] != previous:
            lines.append("")
        previous = cells[0]
        lines.append(line(cells))
    return "\n".join(lines)


def render_table(report, legend=True):
    """The plain-text table of a report (run_bench's, or one tablize.py builds)."""
    m, v = report["machine"], report["vmo"]
    commit = v.get("git_commit")
    commit = (commit[:12] + (" (dirty)" if v.get("git_dirty") else "")) if commit else "n/a"
    title = report.get("title") or "{}  [{} profile, {:.1f} s]".format(
        report.get("command", "vmo bench"), report["profile"]["name"], report["elapsed_s"])
    out = [title,
           "vmo {}(commit {}) | {} | {}, {} cores | {} | THP {}".format(
               v["version"] + " " if v.get("version") else "", commit, m.get("python"),
               m.get("cpu"), m.get("cores"), m.get("os"),
               m.get("transparent_hugepage") or "n/a"),
           ""]
    body = [_row_cells(row) for row in report["rows"]]
    out.append(_format_grid(_HEADERS, body))
    failures = [(row, c, r) for row in report["rows"] for c, r in row["results"].items()
                if r["status"] in ("error",)]
    missed = [row for row in report["rows"] if row["met"] is False]
    out.append("")
    if report.get("sweep_summary"):
        for key, e in report["sweep_summary"].items():
            sizes = sorted(int(x) for x in e["ns_per_page_by_size"])
            out.append("sweep {}, vmo ns/page at {}: {}".format(
                key, " .. ".join((fmt_size(sizes[0]), fmt_size(sizes[-1]))),
                ", ".join(fmt_num(e["ns_per_page_by_size"][str(x)]) for x in sizes)))
            fit = ""
            if e.get("fit_ns_per_page") is not None:
                fit = "; fit: {} ns/page + {} ns per call".format(
                    fmt_num(e["fit_ns_per_page"]), fmt_num(e["fit_fixed_ns"]))
            out.append("    max/min {} over all sizes, {} from 16 MiB{}".format(
                fmt_ratio(e["max_over_min"]), fmt_ratio(e["max_over_min_from_16MiB"]), fit))
        out.append("")
    targets = [row for row in report["rows"] if row["met"] is not None]
    missed_text = ", ".join("{} ({})".format(row["key"], row["target"]["text"])
                            for row in missed)
    out.append(f"targets: {len(targets) - len(missed)} of {len(targets)} met"
               + (f"; missed: {missed_text}" if missed else ""))
    for row, c, r in failures:
        out.append("error: {} / {}: {}".format(row["key"], c, r.get("reason")))
    if legend:
        out.append(_legend(report))
    return "\n".join(out)


def _legend(report):
    na = {}
    for row in report["rows"]:
        for c, r in row["results"].items():
            if r["status"] in ("n/a", "skipped") and r.get("reason"):
                text = "{} {}: {}".format(c, r["status"], r["reason"])
                na.setdefault(text, []).append(row["key"])
    host = report.get("host_helper") or {}
    paragraphs = [
        "Each number is the median over the rounds of this run (--json has every round).",
    ] + list(report.get("notes", [])) + [
        ("ns/page: round time / pages in the range; ns/call (us/, ms/): round time / calls in "
        "the round. vmo and reference are timed from Python with perf_counter_ns around the "
        "call(s), so per-call numbers include the Python call and its loop "
        "(`for _ in range(N): k.vmo_get_size(h)`). host: Linux doing the equivalent work, "
        "timed in C (clock_gettime) around the system call(s) only, on 4 KiB pages."),
        ("'n @64 MiB': that contender ran at another size than the row's (per-page numbers "
        "stay comparable). host/vmo, ref/vmo: ratio of the medians (above 1x: vmo is faster, "
        "or uses less memory). Memory rows: one fresh subprocess per cell, RSS from "
        "/proc/self/statm. target: issue 3's goal for the vmo median; met: ok or MISS. "
        "'-': not run at this size; n/a: no equivalent here (reasons below)."),
    ]
    lines = ["", "Legend:"]
    for text in paragraphs:
        lines += textwrap.wrap(text, 92, initial_indent="  ", subsequent_indent="  ")
    lines.append("  Host equivalents:")
    for case in CASES.values():
        if case.host_doc:
            lines.append(f"    {case.key:<22} {case.host_doc}")
    if host and not host.get("available"):
        lines.append("  host helper: n/a ({})".format(host.get("reason")))
    for text, keys in na.items():
        lines += textwrap.wrap("{} [{}]".format(text, ", ".join(dict.fromkeys(keys))), 92,
                               initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------
def _parser():
    cases = "\n".join(f"  {c.key:<22} {c.group:<9} {c.title}"
                      + (f" [target {c.target.text}]" if c.target else "")
                      for c in CASES.values())
    p = argparse.ArgumentParser(
        prog="python -m vmo bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Benchmark vmo (the compiled core) against the pure-Python reference model and\n"
            "the host Linux kernel doing the equivalent work, and print a table: operation,\n"
            "size, vmo, reference model, host kernel, the ratios host/vmo and ref/vmo, and\n"
            "the project's target for each row with whether the vmo median meets it.\n"
            "Every number comes from the run; progress goes to stderr, the table to stdout."),
        epilog=(
            "profiles:\n"
            "  default  COMMIT/DECOMMIT/LOOKUP/cache ops over 1 GiB (reference: 64 MiB), memory\n"
            "           rows at 1 GiB, a COMMIT and LOOKUP size sweep 1 MiB .. 4 GiB (host up\n"
            "           to 1 GiB, reference up to 16 MiB); under a minute.\n"
            "  --quick  every operation at 64 MiB (reference 4 MiB), fewer rounds and calls,\n"
            "           memory rows at 256 MiB, no sweep; seconds.\n"
            "\n"
            "contenders:\n"
            "  vmo        vmo.Kernel, timed from Python (per-call numbers include the call)\n"
            "  reference  vmo._reference.Kernel, the executable spec, timed the same way\n"
            "  host       vmo/_hostops.c compiled with gcc at run time (cached in\n"
            "             $XDG_CACHE_HOME/vmo-bench or ~/.cache/vmo-bench, or $VMO_BENCH_CACHE),\n"
            "             timed in C; 'n/a' with the reason where it cannot run\n"
            "\n"
            "cases (key, group, operation):\n" + cases + "\n"
            "  sweep: commit_fresh and lookup at each sweep size\n"
            "\n"
            "The same cases run under pytest-benchmark: pytest benchmarks/ (see\n"
            "benchmarks/conftest.py; benchmarks/tablize.py turns --benchmark-json into a table)."),
    )
    p.add_argument("--quick", action="store_true", help="the quick profile (seconds)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (machine, versions, every row with all "
                        "rounds, medians, units, sizes, ratios, target, met) instead of the "
                        "table")
    p.add_argument("--only", metavar="NAMES",
                   help="comma-separated groups or case keys to run (groups: "
                        + ", ".join(GROUPS) + ")")
    p.add_argument("--contenders", metavar="NAMES", default=",".join(CONTENDERS),
                   help="comma-separated subset of: " + ", ".join(CONTENDERS)
                        + " (default: all)")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="timed rounds per cell for every contender (default: the profile's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


def bench_main(argv):
    args = _parser().parse_args(argv)
    if args.list:
        for c in CASES.values():
            print(f"{c.key:<22} {c.group:<8} {c.title}")
        return 0
    profile = PROFILES["quick" if args.quick else "default"]
    only = None
    if args.only:
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = only - set(GROUPS) - set(CASES)
        if unknown:
            _parser().error("unknown group or case: {}".format(", ".join(sorted(unknown))))
    contenders = tuple(x.strip() for x in args.contenders.split(",") if x.strip())
    bad = set(contenders) - set(CONTENDERS)
    if bad or not contenders:
        _parser().error("unknown contender: {}".format(", ".join(sorted(bad))))
    if args.rounds is not None and args.rounds < 1:
        _parser().error("--rounds must be at least 1")
    report = run_bench(profile, only, contenders, args.rounds, progress=not args.quiet)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_table(report) + "\n")
    return 0


def main(argv=None):
    """`python -m vmo COMMAND ...`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = ("usage: python -m vmo bench [--quick] [--json] [--help] ...\n\n"
             "commands:\n"
             "  bench   benchmark vmo against the reference model and the host kernel\n"
             "          (python -m vmo bench --help for everything)\n")
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0 if argv else 2
    if argv[0] != "bench":
        sys.stderr.write(f"python -m vmo: unknown command {argv[0]!r}\n\n{usage}")
        return 2
    try:
        return bench_main(argv[1:])
    except BrokenPipeError:  # e.g. `python -m vmo bench | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
