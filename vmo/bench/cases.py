"""The benchmarked operations: each Case says how the compiled core, the reference model and
the host kernel set up, run and tear down one round of it (the Job builders), its unit and
the project's target; CASES holds every row, the memory rows included, in table order."""

import ctypes
from array import array
from time import perf_counter_ns

from ..constants import Op
from .common import (
    COMMIT,
    DECOMMIT,
    INDEX,
    LOOKUP,
    PAGE,
    BenchError,
    Job,
    KiB,
    MiB,
    PiB,
    Skipped,
    State,
    Target,
    fill,
    fmt_size,
    kernel_memory,
    new_vmo,
    ok,
    timed,
)
from .memory import MEMORY_CASES


# -- kernel jobs (vmo and reference: the same syscall API) ------------------------------------
def _k_commit_fresh(K, size, calls):
    st = State()

    def setup():
        st.k = K(memory_size=kernel_memory(size))
        st.h = new_vmo(st.k, size)

    def run():
        ns, status = timed(st.k.vmo_op_range, st.h, COMMIT, 0, size)
        ok(status, "COMMIT")
        return ns

    def teardown():
        st.k.close()

    return Job(run, size // PAGE, setup, teardown)


def _k_recommit(K, size, calls):
    st = State()
    st.k = K(memory_size=kernel_memory(size))

    def setup():
        st.h = new_vmo(st.k, size)
        ok(st.k.vmo_op_range(st.h, COMMIT, 0, size), "COMMIT")
        ok(st.k.vmo_op_range(st.h, DECOMMIT, 0, size), "DECOMMIT")

    def run():
        ns, status = timed(st.k.vmo_op_range, st.h, COMMIT, 0, size)
        ok(status, "COMMIT")
        return ns

    def teardown():
        ok(st.k.handle_close(st.h), "handle_close")

    return Job(run, size // PAGE, setup, teardown, st.k.close)


def _k_decommit_clean(K, size, calls):
    st = State()
    st.k = K(memory_size=kernel_memory(size))

    def setup():
        st.h = new_vmo(st.k, size)
        ok(st.k.vmo_op_range(st.h, COMMIT, 0, size), "COMMIT")

    def run():
        ns, status = timed(st.k.vmo_op_range, st.h, DECOMMIT, 0, size)
        ok(status, "DECOMMIT")
        return ns

    def teardown():
        ok(st.k.handle_close(st.h), "handle_close")

    return Job(run, size // PAGE, setup, teardown, st.k.close)


def _k_decommit_commit_1in64(K, size, calls):
    st = State()
    st.k = K(memory_size=kernel_memory(size))
    one = b"\x01"

    def setup():
        k = st.k
        st.h = h = new_vmo(k, size)
        ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
        for off in range(0, size, 64 * PAGE):
            ok(k.vmo_write(h, one, off)[0], "vmo_write")

    def run():
        k, h = st.k, st.h
        t0 = perf_counter_ns()
        s1 = k.vmo_op_range(h, DECOMMIT, 0, size)
        s2 = k.vmo_op_range(h, COMMIT, 0, size)
        ns = perf_counter_ns() - t0
        ok(s1, "DECOMMIT")
        ok(s2, "COMMIT")
        return ns

    def teardown():
        ok(st.k.handle_close(st.h), "handle_close")

    return Job(run, size // PAGE, setup, teardown, st.k.close)


def _k_lookup(K, size, calls):
    k = K(memory_size=kernel_memory(size))
    h = new_vmo(k, size)
    ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    buf = array("Q", bytes(8 * (size // PAGE)))

    def run():
        ns, status = timed(k.vmo_op_range, h, LOOKUP, 0, size, buf)
        ok(status, "LOOKUP")
        return ns

    return Job(run, size // PAGE, close=k.close)


def _k_cache(op):
    op = int(op)

    def make(K, size, calls):
        k = K(memory_size=kernel_memory(size))
        h = new_vmo(k, size)
        ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")

        def run():
            ns, status = timed(k.vmo_op_range, h, op, 0, size)
            ok(status, Op(op).name)
            return ns

        return Job(run, size // PAGE, close=k.close)

    return make


_SPARSE_PAGES = 16


def _sparse_vmo(K, size):
    """A kernel and a VMO of `size` bytes holding 16 pages spread evenly over it."""
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, size)
    offsets = [i * (size // _SPARSE_PAGES) // PAGE * PAGE for i in range(_SPARSE_PAGES)]

    def commit_pages():
        for off in offsets:
            ok(k.vmo_op_range(h, COMMIT, off, PAGE), "COMMIT")

    return k, h, commit_pages


def _k_sparse_cache(K, size, calls):
    k, h, commit_pages = _sparse_vmo(K, size)
    commit_pages()
    op = int(Op.CACHE_CLEAN_INVALIDATE)

    def run():
        ns, status = timed(k.vmo_op_range, h, op, 0, size)
        ok(status, "CACHE_CLEAN_INVALIDATE")
        return ns

    return Job(run, 1, close=k.close)


def _k_sparse_decommit(K, size, calls):
    k, h, commit_pages = _sparse_vmo(K, size)

    def run():
        ns, status = timed(k.vmo_op_range, h, DECOMMIT, 0, size)
        ok(status, "DECOMMIT")
        return ns

    return Job(run, 1, setup=commit_pages, close=k.close)


def _k_sparse_shrink(K, size, calls):
    k, h, commit_pages = _sparse_vmo(K, size)

    def setup():
        ok(k.vmo_set_size(h, size), "vmo_set_size")
        commit_pages()

    def run():
        ns, status = timed(k.vmo_set_size, h, PAGE)
        ok(status, "vmo_set_size")
        return ns

    return Job(run, 1, setup=setup, close=k.close)


def _k_read(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, size)
    fill(k, h, size)
    buf = bytearray(size)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_read(h, buf, 0)
        ns = perf_counter_ns() - t0
        ok(res[0], "vmo_read")
        return ns

    return Job(run, calls, close=k.close)


def _k_write(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, size)
    fill(k, h, size)
    data = b"\x5a" * size
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_write(h, data, 0)
        ns = perf_counter_ns() - t0
        ok(res[0], "vmo_write")
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
        ok(status, "vmo_create")
        return ns

    return Job(run, calls, close=k.close)


def _k_clone_write(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, size)
    fill(k, h, size)
    one = b"\x01"
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            status, c = k.vmo_clone(h, 1, 0, size)
            k.vmo_write(c, one, 0)
            k.handle_close(c)
        ns = perf_counter_ns() - t0
        ok(status, "vmo_clone")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_commit(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, size)
    ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            status = k.vmo_op_range(h, COMMIT, 0, size)
        ns = perf_counter_ns() - t0
        ok(status, "COMMIT")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_lookup(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, size)
    ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    buf = array("Q", [0])
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            status = k.vmo_op_range(h, LOOKUP, 0, size, buf)
        ns = perf_counter_ns() - t0
        ok(status, "LOOKUP")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_get_size(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, PAGE)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_get_size(h)
        ns = perf_counter_ns() - t0
        ok(res[0], "vmo_get_size")
        return ns

    return Job(run, calls, close=k.close)


def _k_sys_read(K, size, calls):
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, PAGE)
    fill(k, h, PAGE)
    buf = bytearray(size)
    r = range(calls)

    def run():
        t0 = perf_counter_ns()
        for _ in r:
            res = k.vmo_read(h, buf, 0)
        ns = perf_counter_ns() - t0
        ok(res[0], "vmo_read")
        return ns

    return Job(run, calls, close=k.close)


# -- embedding: physical access and contiguous runs ------------------------------------------
def _phys_page(K):
    """A kernel, a one-page contiguous VMO holding data, and the page's physical address."""
    k = K(memory_size=64 * MiB)
    status, h = k.vmo_create_contiguous(PAGE)
    ok(status, "vmo_create_contiguous")
    fill(k, h, PAGE)
    entry = array("Q", [0])
    ok(k.vmo_op_range(h, LOOKUP, 0, PAGE, entry), "LOOKUP")
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
    h = new_vmo(k, size)
    ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
    pages = size // PAGE
    x, i, n = 12345, 0, 0
    while i < pages:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        i += 1 + (x >> 4) % 8
        n += 1
        free = 256 if n % 1024 == 50 else 1 + (x >> 12) % 8
        free = min(free, pages - i)
        if free > 0:
            ok(k.vmo_op_range(h, DECOMMIT, i * PAGE, free * PAGE), "DECOMMIT")
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


# -- host jobs ----------------------------------------------------------------------------------
def _h_commit_fresh(H, size, calls):
    H.require(populate=True)
    st = State()

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
        return max(1, int(self.calls[INDEX[contender]] * profile.call_scale))

    def rounds_for(self, contender, profile, sweep=False):
        """(rounds, warmup rounds) of this contender under `profile` (in the sweep or not)."""
        kind = "sweep" if sweep else self.rounds
        table = {"big": profile.rounds_big, "call": profile.rounds_call,
                 "sparse": profile.rounds_sparse, "sweep": profile.rounds_sweep}[kind]
        warmup = profile.warmup_call if self.rounds == "call" else 0
        return table[INDEX[contender]], warmup


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

CASES = {case.key: case for case in _CASE_LIST + list(MEMORY_CASES.values())}
GROUPS = tuple(dict.fromkeys(case.group for case in CASES.values())) + ("sweep",)

# The operations of the size sweep (`pytest benchmarks/` parametrises them over the default
# profile's sizes).
SWEEP_KEYS = ("commit_fresh", "lookup")


def sweep_size_for(contender, size, profile):
    """The size a contender runs at in the sweep row of `size`; raises Skipped above its
    limit (the host stops at 1 GiB, the reference model at 16 MiB by default)."""
    if contender == "host" and size > profile.host_sweep_max:
        raise Skipped(f"host sweep stops at {fmt_size(profile.host_sweep_max)}")
    if contender == "reference" and size > profile.ref_sweep_max:
        raise Skipped(f"reference sweep stops at {fmt_size(profile.ref_sweep_max)}")
    return size
