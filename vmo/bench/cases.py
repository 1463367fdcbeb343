"""The benchmarked operations: each Case says how the compiled core, the reference model and
the host kernel set up, run and tear down one round of it (the Job builders), its unit and
the project's target; CASES holds every row, the memory rows included, in table order.

The Job builders are few and parametrised: `_k_range` (one op_range over a whole VMO per
round), `_k_sparse` (whole-range ops on a huge VMO holding 16 pages), `_k_loop` (a call
repeated N times per round), and on the host side `_h_mapping` and `_h_memfd`."""

import ctypes
import textwrap
from array import array
from functools import cache
from time import perf_counter_ns

from ..constants import Op
from ..errors import Status
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
    Unavailable,
    fill,
    fmt_size,
    kernel_memory,
    new_vmo,
    ok,
    timed,
)
from .memory import MEMORY_CASES
from .threads import THREADS_CASES


# -- kernel jobs (vmo and reference: the same syscall API) ------------------------------------
def _k_range(*ops, fresh=None, prepare=(), entries=False):
    """The builder of a job timing `ops` (vmo_op_range over the whole VMO, back to back; one
    or two) per round, on a VMO of the row's size in a kernel of twice that memory.

    fresh: "kernel" (a new kernel and VMO every round), "vmo" (a new VMO every round in one
    kernel) or None (one VMO for the whole job). prepare: what is done to each new VMO before
    it is timed, in order: "commit", "decommit", "write_1in64" (one byte every 64 pages).
    entries: LOOKUP's output, an array('Q') of one entry per page, is passed.
    """
    def make(K, size, calls):
        st = State()

        def new_vmo_prepared():
            k = st.k
            st.h = h = new_vmo(k, size)
            for step in prepare:
                if step == "write_1in64":
                    for off in range(0, size, 64 * PAGE):
                        ok(k.vmo_write(h, b"\x01", off)[0], "vmo_write")
                else:
                    op = COMMIT if step == "commit" else DECOMMIT
                    ok(k.vmo_op_range(h, op, 0, size), Op(op).name)

        def new_kernel():
            st.k = K(memory_size=kernel_memory(size))

        if len(ops) == 1:
            op, = ops
            what = Op(op).name
            buf = (array("Q", bytes(8 * (size // PAGE))),) if entries else ()

            def run():
                ns, status = timed(st.k.vmo_op_range, st.h, op, 0, size, *buf)
                ok(status, what)
                return ns
        else:
            first, second = ops

            def run():
                k, h = st.k, st.h
                t0 = perf_counter_ns()
                s1 = k.vmo_op_range(h, first, 0, size)
                s2 = k.vmo_op_range(h, second, 0, size)
                ns = perf_counter_ns() - t0
                ok(s1, Op(first).name)
                ok(s2, Op(second).name)
                return ns

        units = size // PAGE
        if fresh == "kernel":
            def setup():
                new_kernel()
                new_vmo_prepared()
            return Job(run, units, setup, lambda: st.k.close())
        new_kernel()
        if fresh == "vmo":
            return Job(run, units, new_vmo_prepared,
                       lambda: ok(st.k.handle_close(st.h), "handle_close"), st.k.close)
        try:
            new_vmo_prepared()
        except BaseException:
            st.k.close()
            raise
        return Job(run, units, close=st.k.close)

    return make


_SPARSE_PAGES = 16


def _k_sparse(op):
    """The builder of a job timing one whole-range call on a VMO of the row's size (1 PiB)
    holding 16 pages spread evenly over it: `op` is an op_range op or "shrink" (vmo_set_size
    to one page). The pages are committed once for a cache op, before every round for the
    others (they drop them)."""
    def make(K, size, calls):
        k = K(memory_size=64 * MiB)
        h = new_vmo(k, size)
        offsets = [i * (size // _SPARSE_PAGES) // PAGE * PAGE for i in range(_SPARSE_PAGES)]

        def commit_pages():
            for off in offsets:
                ok(k.vmo_op_range(h, COMMIT, off, PAGE), "COMMIT")

        setup = commit_pages
        if op == "shrink":
            fn, args, what = k.vmo_set_size, (h, PAGE), "vmo_set_size"

            def setup():
                ok(k.vmo_set_size(h, size), "vmo_set_size")
                commit_pages()
        else:
            fn, args, what = k.vmo_op_range, (h, op, 0, size), Op(op).name
            if op != DECOMMIT:
                commit_pages()
                setup = None

        def run():
            ns, status = timed(fn, *args)
            ok(status, what)
            return ns

        return Job(run, 1, setup=setup, close=k.close)

    return make


# The timed loop of a per-call job is the statement a user writes (`k.vmo_get_size(h)`, the
# attribute lookup and the call), repeated N times between two perf_counter_ns readings, over
# names bound once (closure cells). A loop over a function object would add a call or drop
# the lookup, so, as timeit does, the loop is compiled from the statement's source.
_LOOP = """
def factory({names}):
    def run():
        {status} = None
        t0 = perf_counter_ns()
        for _ in r:
{body}
        ns = perf_counter_ns() - t0
        return ns, {status_expr}
    return run
"""
_LOOP_GLOBALS = {"perf_counter_ns": perf_counter_ns, "COMMIT": COMMIT, "DECOMMIT": DECOMMIT,
                 "LOOKUP": LOOKUP}


@cache
def _loop_factory(body, names, status, status_expr):
    source = _LOOP.format(names=", ".join(names), status=status, status_expr=status_expr,
                          body=textwrap.indent(textwrap.dedent(body).strip(), " " * 12))
    namespace = {}
    exec(compile(source, f"<vmo.bench loop: {body.strip()[:40]}>", "exec"),  # noqa: S102
         dict(_LOOP_GLOBALS), namespace)
    return namespace["factory"]


def _k_loop(setup, body, status="res", status_expr=None, check=None, needs=None):
    """The builder of a job running the statement(s) `body` `calls` times per round, over the
    names `setup(K, size)` returns (a dict; "k" is the kernel, "close" an optional closer)
    plus `size` and the range `r`. After the round, `check(last)` sees the last value of
    `status_expr` (default: the variable `status`) and raises BenchError if it is wrong.
    `needs`: a method the kernel class must have (else Unavailable, shown as n/a)."""
    def make(K, size, calls):
        if needs is not None and getattr(K, needs, None) is None:
            raise Unavailable(f"{K.__module__}.{K.__qualname__} has no {needs} in this build")
        env = setup(K, size)
        close = env.pop("close", None) or env["k"].close
        env.update(size=size, r=range(calls))
        names = tuple(sorted(env))
        loop = _loop_factory(body, names, status, status_expr or status)(**env)

        def run():
            ns, last = loop()
            if check is not None:
                check(last)
            return ns

        return Job(run, calls, close=close)

    return make


def _expect_ok(what):
    return lambda status: ok(status, what)


_BUFFERS = {  # kind: (name in the loop, the object for a row of `size` bytes)
    "into": ("buf", bytearray),                        # where vmo_read puts its bytes
    "from": ("data", lambda size: b"\x5a" * size),     # what vmo_write writes
    "byte": ("one", lambda size: b"\x01"),             # a first write
    "entry": ("buf", lambda size: array("Q", [0])),    # one LOOKUP entry
}


def _on_vmo(vmo_size=None, *, written=False, committed=False, buffer=None):
    """Loop names: a kernel of 64 MiB `k`, a VMO `h` of `vmo_size` bytes (default: the row's
    size), every byte written or its pages committed, and a buffer of _BUFFERS."""
    def setup(K, size):
        n = size if vmo_size is None else vmo_size
        k = K(memory_size=64 * MiB)
        h = new_vmo(k, n)
        if written:
            fill(k, h, n)
        if committed:
            ok(k.vmo_op_range(h, COMMIT, 0, n), "COMMIT")
        env = {"k": k, "h": h}
        if buffer is not None:
            name, make = _BUFFERS[buffer]
            env[name] = make(size)
        return env

    return setup


def _on_cached_vmo(coherent, buffer):
    """Loop names for the cache model's 64-byte rows: a kernel built with `coherent`, a VMO of
    one written page `h` (on a non-coherent kernel its lines are cached and dirty: the loop
    runs on hits), and a buffer of _BUFFERS."""
    def setup(K, size):
        k = K(memory_size=64 * MiB, coherent=coherent)
        h = new_vmo(k, PAGE)
        fill(k, h, PAGE)
        name, make = _BUFFERS[buffer]
        return {"k": k, "h": h, name: make(size)}

    return setup


def _k_clean_dirty(nlines):
    """The builder of a job timing one CACHE_CLEAN over a VMO of the row's size (1 GiB) on a
    non-coherent kernel holding `nlines` dirty lines, one per page spread evenly over the
    range (so `nlines` committed pages too); the lines are written again before every round
    (untimed), so each round writes `nlines` lines back."""
    def make(K, size, calls):
        k = K(memory_size=256 * MiB, coherent=False)
        h = new_vmo(k, size)
        offsets = [i * (size // nlines) // PAGE * PAGE for i in range(nlines)]

        def dirty_lines():
            for off in offsets:
                ok(k.vmo_write(h, b"\x01", off)[0], "vmo_write")

        def run():
            ns, status = timed(k.vmo_op_range, h, int(Op.CACHE_CLEAN), 0, size)
            ok(status, "CACHE_CLEAN")
            return ns

        return Job(run, 1, setup=dirty_lines, close=k.close)

    return make


def _kernel_only(K, size):
    return {"k": K(memory_size=64 * MiB)}


# -- embedding: physical access and contiguous runs -------------------------------------------
def _on_phys_page(view=False):
    """Loop names: a kernel `k`, the physical address `paddr` of a one-page contiguous VMO
    holding data, the bytes `data` of the row's size, and with `view` a live phys_view
    `view` of the row's size over it."""
    def setup(K, size):
        k = K(memory_size=64 * MiB)
        status, h = k.vmo_create_contiguous(PAGE)
        ok(status, "vmo_create_contiguous")
        fill(k, h, PAGE)
        entry = array("Q", [0])
        ok(k.vmo_op_range(h, LOOKUP, 0, PAGE, entry), "LOOKUP")
        env = {"k": k, "paddr": entry[0], "data": b"\x5a" * size}
        if view:
            env["view"] = v = k.phys_view(entry[0], size)

            def close():
                v.release()
                k.close()

            env["close"] = close
        return env

    return setup


def _on_runs(scattered):
    """Loop names: a kernel `k` and a VMO `h` of the row's size, every page committed: to
    consecutive fresh frames (one run), or, `scattered`, to recycled frames, which come
    back last-freed first (one run per page)."""
    def setup(K, size):
        k = K(memory_size=64 * MiB)
        h = new_vmo(k, size)
        if scattered:
            ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
            ok(k.vmo_op_range(h, DECOMMIT, 0, size), "DECOMMIT")
        ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
        return {"k": k, "h": h}

    return setup


def _on_watched_page(subscribers):
    """Loop names: a kernel `k` and a one-page VMO `h`, committed, with `subscribers` no-op
    change subscriptions on it."""
    def setup(K, size):
        k = K(memory_size=64 * MiB)
        h = new_vmo(k, size)
        ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
        for _ in range(subscribers):
            k.vmo(h).on_change(lambda offset, length: None)
        return {"k": k, "h": h}

    return setup


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
    expect = 0 if run_bytes <= 256 * PAGE else -4  # the longest free run: 256 pages

    def check(status):
        if int(status) != expect:
            raise BenchError(f"vmo_create_contiguous returned {status!r}")

    return _k_loop(
        lambda K, size: {"k": _fragmented(K, size), "run_bytes": run_bytes,
                         "alignment_log2": alignment_log2},
        """
        status, h = k.vmo_create_contiguous(run_bytes, alignment_log2)
        if status == 0:
            k.handle_close(h)
        """, status="status", check=check)


# -- host jobs ----------------------------------------------------------------------------------
def _h_mapping(run, *, populate=False, fresh=False, prefault=True, each_round=None,
               pagemap=False, per="page"):
    """The builder of a host job over an anonymous mapping `m.p` of the row's size `m.size`:
    `run(H, m)` times one round in C (`m.calls` calls for a per-call job). fresh: a new
    mapping every round; otherwise one, prefaulted unless told not to, with `each_round(H, m)`
    before every round. pagemap: /proc/self/pagemap open as `m.fd` (and for a per-page job
    `m.out` takes 8 bytes per page). populate: needs MADV_POPULATE_WRITE."""
    def make(H, size, calls):
        H.require(populate=populate)
        m = State()
        m.size, m.calls, m.fd = size, calls, None
        units = size // PAGE if per == "page" else calls
        if fresh:
            def setup():
                m.p = H.map(size)

            return Job(lambda: run(H, m), units, setup, lambda: H.call("unmap", m.p, size))
        m.p = H.map(size)
        try:
            if prefault:
                H.call("prefault", m.p, size)
            if pagemap:
                m.fd = H.call("open_pagemap")
        except BaseException:
            H.call("unmap", m.p, size)
            raise
        if pagemap and per == "page":
            m.out = ctypes.create_string_buffer(8 * (size // PAGE))

        def close():
            if m.fd is not None:
                H.call("close", m.fd)
            H.call("unmap", m.p, size)

        setup = (lambda: each_round(H, m)) if each_round is not None else None
        return Job(lambda: run(H, m), units, setup, close=close)

    return make


def _h_memfd(loop, fd_size=None, buffer=None):
    """The builder of a host job calling the C loop `loop` on a memfd of `fd_size` bytes
    (default: the row's size), every byte written: with a buffer of the row's size ("into"
    or "from") as loop(fd, buf, size, 0, calls), else as loop(fd, calls)."""
    def make(H, size, calls):
        H.require()
        fd = H.call("memfd", size if fd_size is None else fd_size, 0xA5)
        buf = None
        if buffer == "into":
            buf = ctypes.create_string_buffer(size)
        elif buffer == "from":
            buf = ctypes.create_string_buffer(b"\x5a" * size, size)
        args = (fd, buf, size, 0, calls) if buffer else (fd, calls)
        return Job(lambda: H.call(loop, *args), calls, close=lambda: H.call("close", fd))

    return make


def _h_create_close(H, size, calls):
    H.require()
    return Job(lambda: H.call("memfd_cycle", calls), calls)


# -- the per-call jobs ---------------------------------------------------------------------------
_K_READ = _k_loop(_on_vmo(written=True, buffer="into"), "res = k.vmo_read(h, buf, 0)",
                  status_expr="res[0]", check=_expect_ok("vmo_read"))
_K_WRITE = _k_loop(_on_vmo(written=True, buffer="from"), "res = k.vmo_write(h, data, 0)",
                   status_expr="res[0]", check=_expect_ok("vmo_write"))
_K_CREATE_CLOSE = _k_loop(_kernel_only, """
    status, h = k.vmo_create(size)
    k.handle_close(h)
    """, status="status", check=_expect_ok("vmo_create"))
_K_CLONE_WRITE = _k_loop(_on_vmo(written=True, buffer="byte"), """
    status, c = k.vmo_clone(h, 1, 0, size)
    k.vmo_write(c, one, 0)
    k.handle_close(c)
    """, status="status", check=_expect_ok("vmo_clone"))
_K_PHYS_VIEW = _k_loop(_on_phys_page(), "k.phys_view(paddr, size).release()")
_K_VIEW_WRITE = _k_loop(_on_phys_page(view=True), "view[:] = data")
_K_PHYS_WRITE = _k_loop(_on_phys_page(), "k.phys_write(paddr, data)")
_K_PHYS_READ = _k_loop(_on_phys_page(), "k.phys_read(paddr, size)")
_K_PIN = _k_loop(_on_phys_page(), "k.pin(paddr, size).unpin()")
_K_RUNS_ONE = _k_loop(_on_runs(False), "res = k.vmo_lookup_runs(h, 0, size)",
                      status_expr="res[0]", check=_expect_ok("vmo_lookup_runs"))
_K_RUNS_SCATTERED = _k_loop(_on_runs(True), "res = k.vmo_lookup_runs(h, 0, size)",
                            status_expr="res[0]", check=_expect_ok("vmo_lookup_runs"))
_NOTIFY_BODY = """
    k.vmo_op_range(h, DECOMMIT, 0, size)
    status = k.vmo_op_range(h, COMMIT, 0, size)
    """
_K_NOTIFY_NONE = _k_loop(_on_watched_page(0), _NOTIFY_BODY, status="status",
                         check=_expect_ok("COMMIT"))
_K_NOTIFY_ONE = _k_loop(_on_watched_page(1), _NOTIFY_BODY, status="status",
                        check=_expect_ok("COMMIT"))

# The single small syscalls: (setup, the statement with the method as {m}, the method, its
# floor (the compiled core's twin that converts the same arguments and returns the same
# shape without the work), the variable holding the status, its expression, what to call it
# in an error). A floor row runs its syscall's very loop with the floor method.
_SYSCALLS = {
    "sys_commit": (_on_vmo(committed=True), "status = k.{m}(h, COMMIT, 0, size)",
                   "vmo_op_range", "_floor_op_range", "status", None, "COMMIT"),
    "sys_lookup": (_on_vmo(committed=True, buffer="entry"),
                   "status = k.{m}(h, LOOKUP, 0, size, buf)", "vmo_op_range",
                   "_floor_op_range", "status", None, "LOOKUP"),
    "sys_get_size": (_on_vmo(PAGE), "res = k.{m}(h)", "vmo_get_size", "_floor_get_size",
                     "res", "res[0]", "vmo_get_size"),
    "sys_read_64": (_on_vmo(PAGE, written=True, buffer="into"), "res = k.{m}(h, buf, 0)",
                    "vmo_read", "_floor_read", "res", "res[0]", "vmo_read"),
}


def _k_syscall(key, floor=False):
    setup, body, method, floor_method, status, status_expr, what = _SYSCALLS[key]
    if floor:
        return _k_loop(setup, body.format(m=floor_method), status, status_expr,
                       _expect_ok(floor_method), needs=floor_method)
    return _k_loop(setup, body.format(m=method), status, status_expr, _expect_ok(what))


def _populate(H, m):
    return H.call("populate", m.p, m.size)


def _dontneed(H, m):
    return H.call("dontneed", m.p, m.size)


def _prefault(H, m):
    return H.call("prefault", m.p, m.size)


def _dontneed_populate(H, m):
    return H.call("dontneed_populate", m.p, m.size)


def _touch_1in64(H, m):  # every page populated (by prepare or the last round); write 1 in 64
    return H.call("touch", m.p, m.size, 64 * PAGE, 1)


def _pagemap(H, m):
    return H.call("pagemap", m.fd, m.p, m.size, m.out)


def _populate_loop(H, m):
    return H.call("populate_loop", m.p, m.calls)


def _pagemap_loop(H, m):
    return H.call("pagemap_loop", m.fd, m.p, m.calls)


_H_READ = _h_memfd("pread_loop", buffer="into")
_H_WRITE = _h_memfd("pwrite_loop", buffer="from")


# -- the cases ----------------------------------------------------------------------------------
_NO_CACHE_SYSCALL = "x86-64 Linux has no cache-maintenance system call"
_NO_PIB_MAPPING = "no 1 PiB mapping on the host (47-bit user address space)"
_NO_PHYS = "user space has no access to physical memory on the host"
_FLOOR_ONLY_VMO = "a floor instruments the compiled core's own call path"


class Case:
    """One benchmarked operation.

    `kernel(K, size, calls)` builds the Job of the vmo and reference contenders (K is the kernel
    class), `host(H, size, calls)` the host's, or `host_na` says why the host has no equivalent
    (`ref_na`: why the reference model does not run it). `scale` is "range" (vmo and host at
    profile.big, the reference at profile.ref_big), "range_all" (everyone at profile.big),
    "frag" (profile.frag, the reference at profile.ref_frag) or "fixed" (everyone at `size`).
    `unit` is "page" (round time / pages of the range) or "call" (round time / calls in the
    round); `calls` gives the calls per round of (vmo, reference, host) at the default profile.
    `floor` names the row of this row's floor and `floor_target` bounds the percentage the vmo
    median may be above it (the second target of the row).
    """

    kind = "time"

    def __init__(self, key, group, title, unit, kernel, host=None, *, host_doc=None,
                 host_na=None, ref_na=None, scale="range", size=None, calls=None,
                 rounds="big", target=None, floor=None, floor_target=None):
        self.key = key
        self.group = group
        self.title = title
        self.unit = unit
        self.kernel = kernel
        self.host = host
        self.host_doc = host_doc
        self.host_na = host_na
        self.ref_na = ref_na
        self.scale = scale
        self.size = size
        self.calls = calls
        self.rounds = rounds
        self.target = target
        self.floor = floor
        self.floor_target = floor_target

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


# -- traces and batches (group "trace"): one-page COMMIT / LOOKUP / DECOMMIT ------------------
_NO_TRACE_HOST = "host: no recording or batching of madvise calls to compare with"
_NO_TRACE_REF = "reference: its trace writer and batch runner are another module's row"
_MIX = """
k.vmo_op_range(h, COMMIT, 0, 4096)
k.vmo_op_range(h, LOOKUP, 0, 4096, buf)
k.vmo_op_range(h, DECOMMIT, 0, 4096)
"""
_LOOP_GLOBALS["DECOMMIT"] = DECOMMIT


def _k_mix_loop(recorded):
    """The Python loop of the mix, 3 calls an iteration (`calls` counts calls); `recorded`:
    inside ``k.record()`` to a temporary file (the recording's overhead)."""
    def make(K, size, calls):
        import os
        import tempfile
        if recorded and getattr(K, "record", None) is None:
            raise Unavailable("this kernel has no record()")
        k = K(memory_size=64 * MiB)
        rec = path = None
        if recorded:
            fd, path = tempfile.mkstemp(suffix=".trace")
            os.close(fd)
            rec = k.record(path)
            rec.__enter__()
        h = new_vmo(k, 16 * PAGE)
        loop = _loop_factory(_MIX, ("buf", "h", "k", "r"), "res", "res")(
            buf=array("Q", [0]), h=h, k=k, r=range(max(1, calls // 3)))

        def run():
            ns, _ = loop()
            return ns

        def close():
            if rec is not None:
                rec.__exit__(None, None, None)
                os.unlink(path)
            k.close()

        return Job(run, 3 * max(1, calls // 3), close=close)

    return make


def _k_replay(whole):
    """vmo.replay of a recording of the mix (`calls` calls); time per call replayed: the
    replay loop's own (`ReplayResult.seconds`: blocks read, decoded and run), or with `whole`
    the whole call (the file opened, the kernel built and closed)."""
    return lambda K, size, calls: _k_replay_job(K, calls, whole)


def _k_replay_job(K, calls, whole):
    import os
    import tempfile

    from .. import replay
    if getattr(K, "record", None) is None:
        raise Unavailable("this kernel has no record()")
    fd, path = tempfile.mkstemp(suffix=".trace")
    os.close(fd)
    k = K(memory_size=64 * MiB)
    with k.record(path):
        h = new_vmo(k, 16 * PAGE)
        buf = array("Q", [0])
        for _ in range(max(1, calls // 3)):
            k.vmo_op_range(h, COMMIT, 0, PAGE)
            k.vmo_op_range(h, LOOKUP, 0, PAGE, buf)
            k.vmo_op_range(h, DECOMMIT, 0, PAGE)
    k.close()
    ops = 1 + 3 * max(1, calls // 3)

    def run():
        t0 = perf_counter_ns()
        result = replay(path)
        ns = perf_counter_ns() - t0
        if result.mismatches or result.ops != ops:
            raise BenchError(f"replay: {result!r}")
        return ns if whole else int(result.seconds * 1e9)

    return Job(run, ops, close=lambda: os.unlink(path))


def _k_batch(K, size, calls):
    """k.run of a 1,000-call batch of the mix (~333 iterations), built once in Python."""
    from ..batch import Batch
    if getattr(K, "run", None) is None:
        raise Unavailable("this kernel has no run()")
    k = K(memory_size=64 * MiB)
    h = new_vmo(k, 16 * PAGE)
    b = Batch()
    while len(b) + 3 <= 1000:
        b.commit(h, 0, PAGE)
        b.lookup(h, 0, PAGE)
        b.decommit(h, 0, PAGE)
    b.get_size(h)
    rounds = max(1, calls // len(b))

    def run():
        t0 = perf_counter_ns()
        for _ in range(rounds):
            res = k.run(b)
        ns = perf_counter_ns() - t0
        if any(res.statuses):
            raise BenchError("batch: a call failed")
        return ns

    return Job(run, rounds * len(b), close=k.close)


# -- save and load (group "state"): a kernel with the row's size written, in MiB/s -------------
def _state_kernel(K, size):
    """A kernel with `size` bytes written in one VMO (every frame dirty: the whole size is
    in the file)."""
    k = K(memory_size=kernel_memory(size))
    fill(k, new_vmo(k, size), size)
    return k


def _state_dir():
    import tempfile
    return tempfile.mkdtemp(prefix="vmo-bench-state-")


def _remove_dir(directory):
    import shutil
    shutil.rmtree(directory, ignore_errors=True)


def _k_save(K, size, calls):
    """k.save(path) of the kernel, atomically (temporary file, fsync, rename) over the last
    round's file; per MiB of frame contents."""
    import os
    if getattr(K, "save", None) is None:
        raise Unavailable("this kernel has no save()")
    k = _state_kernel(K, size)
    directory = _state_dir()
    path = os.path.join(directory, "kernel.state")

    def close():
        k.close()
        _remove_dir(directory)

    return Job(lambda: timed(k.save, path)[0], size / MiB, close=close)


def _k_load(K, size, calls):
    """Kernel.load(path) of a saved kernel (the loaded kernel is closed untimed); per MiB."""
    import os
    if getattr(K, "load", None) is None:
        raise Unavailable("this kernel has no load()")
    k = _state_kernel(K, size)
    directory = _state_dir()
    path = os.path.join(directory, "kernel.state")
    k.save(path)
    k.close()
    st = State()
    st.loaded = None

    def run():
        ns, st.loaded = timed(K.load, path)
        return ns

    def teardown():
        if st.loaded is not None:
            st.loaded.close()
            st.loaded = None

    return Job(run, size / MiB, teardown=teardown, close=lambda: _remove_dir(directory))


def _k_pickle(K, size, calls):
    """pickle.loads(pickle.dumps(k)): the kernel through memory (as to a worker process);
    per MiB."""
    import pickle
    k = _state_kernel(K, size)
    st = State()
    st.copy = None

    def run():
        t0 = perf_counter_ns()
        st.copy = pickle.loads(pickle.dumps(k))
        return perf_counter_ns() - t0

    def teardown():
        if st.copy is not None:
            st.copy.close()
            st.copy = None

    return Job(run, size / MiB, teardown=teardown, close=k.close)


def _h_save(H, size, calls):
    """The host writing the same bytes from memory to a new file, fsync, rename over the
    last one (what an atomic save of the memory costs at the least)."""
    import os
    directory = _state_dir()
    path = os.path.join(directory, "memory")
    data = b"\xa5" * size

    def run():
        t0 = perf_counter_ns()
        with open(path + ".tmp", "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(path + ".tmp", path)
        return perf_counter_ns() - t0

    return Job(run, size / MiB, close=lambda: _remove_dir(directory))


def _h_load(H, size, calls):
    """The host reading such a file into a preallocated buffer (readinto)."""
    import os
    directory = _state_dir()
    path = os.path.join(directory, "memory")
    with open(path, "wb") as file:
        file.write(b"\xa5" * size)
    buf = bytearray(size)

    def run():
        t0 = perf_counter_ns()
        with open(path, "rb", buffering=0) as file:
            view = memoryview(buf)
            got = 0
            while got < size:
                got += file.readinto(view[got:])
        return perf_counter_ns() - t0

    return Job(run, size / MiB, close=lambda: _remove_dir(directory))


_STATE_SIZE = 64 * MiB


# -- machine services (group "snapshot"): the dirty log, snapshots and restore ----------------
# docs/semantics.md "Snapshots": a restore costs the pages changed since the snapshot, not the
# memory committed. Measured on a kernel with 1 GiB committed in one VMO (COMMIT only: its
# frames are untouched until written), next to a full copy of 1 GiB of written memory.
GiB = 1 << 30
_NO_SNAPSHOT_HOST = "host: no snapshot of an address space to compare with (see full_copy)"
_NO_SNAPSHOT_REF = "reference: a snapshot is a deep copy of 1 GiB of page tables there"


def _committed_gib(K):
    k = K(memory_size=GiB + 64 * MiB)
    h = new_vmo(k, GiB)
    ok(k.vmo_op_range(h, COMMIT, 0, GiB), "COMMIT")
    return k, h


def _spread(pages):
    """Offsets of `pages` pages spread evenly over the 1 GiB VMO."""
    stride = (GiB // PAGE) // pages * PAGE
    return [i * stride for i in range(pages)]


def _k_restore(pages):
    """k.restore(snapshot) after `pages` pages were written since the snapshot: only the
    restore is timed (the writes, which save the pages' pre-images, are not)."""
    def make(K, size, calls):
        if getattr(K, "snapshot", None) is None:
            raise Unavailable("this kernel has no snapshot()")
        k, h = _committed_gib(K)
        state = {"snap": k.snapshot()}
        data = b"\x5a" * PAGE
        offsets = _spread(pages)

        def run():
            snap = state["snap"]
            total = 0
            for _ in range(calls):
                for off in offsets:
                    k.vmo_write(h, data, off)
                t0 = perf_counter_ns()
                k.restore(snap)
                total += perf_counter_ns() - t0
            if k.vmo_read_bytes(h, offsets[-1], 1) != (Status.NO_ERROR, b"\0"):
                raise BenchError("restore: a page kept its new bytes")
            return total

        def close():
            state.clear()
            k.close()

        return Job(run, calls, close=close)

    return make


def _k_restore_op(op):
    """k.restore(snapshot) after one COMMIT (of a page decommitted before the snapshot) or
    one DECOMMIT of one page of the 1 GiB-committed VMO: only the restore is timed. The
    page table's pre-image is one leaf (docs/semantics.md "Snapshots")."""
    def make(K, size, calls):
        if getattr(K, "snapshot", None) is None:
            raise Unavailable("this kernel has no snapshot()")
        k, h = _committed_gib(K)
        off = GiB // 2 + 5 * PAGE
        if op == COMMIT:
            ok(k.vmo_op_range(h, DECOMMIT, off, PAGE), "DECOMMIT")
        state = {"snap": k.snapshot()}

        def run():
            snap = state["snap"]
            total = 0
            for _ in range(calls):
                ok(k.vmo_op_range(h, op, off, PAGE), "op_range")
                t0 = perf_counter_ns()
                k.restore(snap)
                total += perf_counter_ns() - t0
            if k.vmo_committed_bytes(h) != (Status.NO_ERROR, GiB - (PAGE if op == COMMIT else 0)):
                raise BenchError("restore: the page table kept its change")
            return total

        def close():
            state.clear()
            k.close()

        return Job(run, calls, close=close)

    return make


def _k_first_commit(K, size, calls):
    """The first COMMIT of one page after a snapshot, in the 1 GiB-committed VMO (the page
    was decommitted before): it saves its leaf's pre-image. Only the COMMIT is timed (the
    snapshot, the restore and the drop around it are not)."""
    if getattr(K, "snapshot", None) is None:
        raise Unavailable("this kernel has no snapshot()")
    k, h = _committed_gib(K)
    off = GiB // 2 + 5 * PAGE
    ok(k.vmo_op_range(h, DECOMMIT, off, PAGE), "DECOMMIT")

    def run():
        total = 0
        for _ in range(calls):
            snap = k.snapshot()
            t0 = perf_counter_ns()
            ok(k.vmo_op_range(h, COMMIT, off, PAGE), "COMMIT")
            total += perf_counter_ns() - t0
            k.restore(snap)
            del snap
        return total

    return Job(run, calls, close=k.close)


def _k_snapshot_take(K, size, calls):
    """k.snapshot() and dropping it, on the 1 GiB-committed kernel."""
    if getattr(K, "snapshot", None) is None:
        raise Unavailable("this kernel has no snapshot()")
    k, h = _committed_gib(K)

    def run():
        t0 = perf_counter_ns()
        for _ in range(calls):
            snap = k.snapshot()
            del snap
        return perf_counter_ns() - t0

    return Job(run, calls, close=k.close)


def _k_snapshot_cycle(pages):
    """A fuzzer's iteration: snapshot, write `pages` pages (their pre-images are saved),
    restore, drop the snapshot. The whole cycle is timed."""
    def make(K, size, calls):
        if getattr(K, "snapshot", None) is None:
            raise Unavailable("this kernel has no snapshot()")
        k, h = _committed_gib(K)
        data = b"\x5a" * PAGE
        offsets = _spread(pages)

        def run():
            t0 = perf_counter_ns()
            for _ in range(calls):
                snap = k.snapshot()
                for off in offsets:
                    k.vmo_write(h, data, off)
                k.restore(snap)
                del snap
            return perf_counter_ns() - t0

        return Job(run, calls, close=k.close)

    return make


def _k_full_copy(K, size, calls):
    """What saving the machine costs without snapshots: a copy of 1 GiB of written memory
    (vmo_read of the whole VMO into a buffer)."""
    k = K(memory_size=GiB + 64 * MiB)
    h = new_vmo(k, GiB)
    chunk = b"\x5a" * (64 * MiB)
    for off in range(0, GiB, len(chunk)):
        ok(k.vmo_write(h, chunk, off)[0], "vmo_write")
    buf = bytearray(GiB)

    def run():
        t0 = perf_counter_ns()
        for _ in range(calls):
            ok(k.vmo_read(h, buf, 0)[0], "vmo_read")
        return perf_counter_ns() - t0

    def close():
        k.close()

    return Job(run, calls, close=close)


def _k_dirty_log(frames):
    """k.dirty_log() after `frames` pages were written (in a scattered order, so the log's
    list is not already sorted): only the read, which sorts and clears, is timed."""
    def make(K, size, calls):
        if getattr(K, "dirty_log", None) is None:
            raise Unavailable("this kernel has no dirty_log()")
        k = K(memory_size=64 * MiB)
        h = new_vmo(k, frames * PAGE)
        offsets = [((i * 7919) % frames) * PAGE for i in range(frames)]

        def run():
            total = 0
            for _ in range(calls):
                for off in offsets:
                    k.vmo_write(h, b"\x01", off)
                t0 = perf_counter_ns()
                log = k.dirty_log()
                total += perf_counter_ns() - t0
                if len(log) != frames:
                    raise BenchError("dirty_log: %d frames, not %d" % (len(log), frames))
            return total

        return Job(run, calls, close=k.close)

    return make


_SNAPSHOT_CASES = [
    Case("dirty_log_1000", "snapshot", "dirty_log(), 1,000 frames logged (sort + clear)",
         "call", _k_dirty_log(1000), host_na=_NO_SNAPSHOT_HOST, scale="fixed",
         size=1000 * PAGE, calls=(100, 5, 0), rounds="call"),
    Case("snapshot_take", "snapshot", "snapshot() + drop, 1 GiB committed", "call",
         _k_snapshot_take, host_na=_NO_SNAPSHOT_HOST, ref_na=_NO_SNAPSHOT_REF, scale="fixed",
         size=GiB, calls=(2000, 0, 0), rounds="call"),
] + [
    Case(f"restore_{n}", "snapshot", f"restore(), {n:,} page{'s' if n > 1 else ''} written since, "
         "1 GiB committed", "call", _k_restore(n), host_na=_NO_SNAPSHOT_HOST,
         ref_na=_NO_SNAPSHOT_REF, scale="fixed", size=GiB, calls=(calls, 0, 0), rounds="call",
         target=Target("<=", 20_000, "<= 20 us") if n == 50 else None)
    for n, calls in ((1, 2000), (50, 500), (5000, 10))
] + [
    Case("restore_commit_1", "snapshot",
         "restore(), 1 COMMIT of one page since (one leaf saved), 1 GiB committed", "call",
         _k_restore_op(COMMIT), host_na=_NO_SNAPSHOT_HOST, ref_na=_NO_SNAPSHOT_REF,
         scale="fixed", size=GiB, calls=(2000, 0, 0), rounds="call"),
    Case("restore_decommit_1", "snapshot",
         "restore(), 1 DECOMMIT of one page since (one leaf saved), 1 GiB committed", "call",
         _k_restore_op(DECOMMIT), host_na=_NO_SNAPSHOT_HOST, ref_na=_NO_SNAPSHOT_REF,
         scale="fixed", size=GiB, calls=(2000, 0, 0), rounds="call"),
    Case("first_commit", "snapshot",
         "the first COMMIT of one page after a snapshot (saves its leaf), 1 GiB committed",
         "call", _k_first_commit, host_na=_NO_SNAPSHOT_HOST, ref_na=_NO_SNAPSHOT_REF,
         scale="fixed", size=GiB, calls=(2000, 0, 0), rounds="call"),
    Case("snapshot_cycle_50", "snapshot",
         "snapshot + 50 page writes + restore + drop, 1 GiB committed", "call",
         _k_snapshot_cycle(50), host_na=_NO_SNAPSHOT_HOST, ref_na=_NO_SNAPSHOT_REF,
         scale="fixed", size=GiB, calls=(500, 0, 0), rounds="call"),
    Case("full_copy", "snapshot", "full copy of 1 GiB of written memory (vmo_read)", "call",
         _k_full_copy, host_na=_NO_SNAPSHOT_HOST,
         ref_na="reference: 1 GiB of written memory is not its scale", scale="fixed",
         size=GiB, calls=(1, 0, 0), rounds="call"),
]

_SYSCALL_CALLS = (50000, 2000, 10000)
# The project's target for the per-call syscall rows: the call costs at most 20% more than
# its floor (the argument conversion and the call themselves).
_FLOOR_TARGET = Target("<=", 20, "floor +20%")

_CASE_LIST = [
    Case("commit_fresh", "commit", "COMMIT, fresh VMO", "page",
         _k_range(COMMIT, fresh="kernel"),
         _h_mapping(_populate, populate=True, fresh=True),
         host_doc="madvise(MADV_POPULATE_WRITE) on a fresh anonymous mapping",
         target=Target("<=", 10, "<= 10 ns/page")),
    Case("recommit", "commit", "COMMIT onto recycled clean frames", "page",
         _k_range(COMMIT, fresh="vmo", prepare=("commit", "decommit")),
         _h_mapping(_populate, populate=True, each_round=_dontneed),
         host_doc="MADV_POPULATE_WRITE again after MADV_DONTNEED",
         target=Target("<=", 10, "<= 10 ns/page")),
    Case("decommit_clean", "decommit", "DECOMMIT, never-written pages", "page",
         _k_range(DECOMMIT, fresh="vmo", prepare=("commit",)),
         _h_mapping(_dontneed, prefault=False, each_round=_prefault),
         host_doc="madvise(MADV_DONTNEED)",
         target=Target("<=", 10, "<= 10 ns/page")),
    Case("decommit_commit_1in64", "decommit", "DECOMMIT + COMMIT, 1 page in 64 written",
         "page",
         _k_range(DECOMMIT, COMMIT, fresh="vmo", prepare=("commit", "write_1in64")),
         _h_mapping(_dontneed_populate, populate=True, each_round=_touch_1in64),
         host_doc="MADV_DONTNEED + MADV_POPULATE_WRITE",
         target=Target("<=", 40, "<= 40 ns/page")),
    Case("lookup", "lookup", "LOOKUP into array('Q')", "page",
         _k_range(LOOKUP, prepare=("commit",), entries=True),
         _h_mapping(_pagemap, pagemap=True),
         host_doc="pread of the range's /proc/self/pagemap entries (8 bytes per page)",
         target=Target("<=", 2, "<= 2 ns/page")),
] + [
    # The reference model runs these at full size too: they cost it O(1) (validation only),
    # so per-page numbers at two sizes would not compare.
    Case("cache_" + op.name.lower()[len("cache_"):], "cache", op.name + ", committed range",
         "page", _k_range(int(op), prepare=("commit",)), host_na=_NO_CACHE_SYSCALL,
         scale="range_all")
    for op in (Op.CACHE_SYNC, Op.CACHE_INVALIDATE, Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE)
] + [
    # The cache model (docs/cache-model.md): 64-byte CPU accesses on a coherent kernel and on
    # a non-coherent one (cache hits: the target is at most 2x the coherent time), and
    # CACHE_CLEAN over 1 GiB with 10, 1,000 and 10,000 dirty lines (cost: the lines and
    # committed pages, not the range).
    Case(f"{op}_64{suffix}", "cache", f"vmo_{op} 64 B, {title}", "call",
         _k_loop(_on_cached_vmo(coherent, buffer), f"res = k.vmo_{op}(h, {name}, 0)",
                 status_expr="res[0]", check=_expect_ok(f"vmo_{op}")),
         host_na="the host has no CPU cache model", scale="fixed", size=64,
         calls=(20000, 1000, 10000), rounds="call")
    for op, buffer, name in (("read", "into", "buf"), ("write", "from", "data"))
    for suffix, title, coherent in (("", "coherent", True),
                                    ("_nc", "coherent=False (line cached)", False))
] + [
    Case(f"clean_1g_{n}", "cache", f"CACHE_CLEAN over 1 GiB, {n:,} dirty lines", "call",
         _k_clean_dirty(n), host_na=_NO_CACHE_SYSCALL, scale="fixed", size=1 << 30,
         rounds="sparse")
    for n in (10, 1000, 10000)
] + [
    Case("sparse_cache", "sparse", "CACHE_CLEAN_INVALIDATE whole range, 16 pages held", "call",
         _k_sparse(int(Op.CACHE_CLEAN_INVALIDATE)), host_na=_NO_PIB_MAPPING, scale="fixed",
         size=PiB, rounds="sparse", target=Target("<=", 5e6, "<= 5 ms")),
    Case("sparse_decommit", "sparse", "DECOMMIT whole range, 16 pages held", "call",
         _k_sparse(DECOMMIT), host_na=_NO_PIB_MAPPING, scale="fixed", size=PiB,
         rounds="sparse", target=Target("<=", 5e6, "<= 5 ms")),
    Case("sparse_shrink", "sparse", "vmo_set_size shrink to 1 page, 16 pages held", "call",
         _k_sparse("shrink"), host_na=_NO_PIB_MAPPING, scale="fixed", size=PiB, rounds="sparse",
         target=Target("<=", 5e6, "<= 5 ms")),
    Case("read_4k", "io", "vmo_read", "call", _K_READ, _H_READ, scale="fixed", size=4 * KiB,
         calls=(20000, 1000, 10000), rounds="call", host_doc="pread from a memfd"),
    Case("write_4k", "io", "vmo_write", "call", _K_WRITE, _H_WRITE, scale="fixed",
         size=4 * KiB, calls=(20000, 1000, 10000), rounds="call",
         host_doc="pwrite to a memfd"),
    Case("read_1m", "io", "vmo_read", "call", _K_READ, _H_READ, scale="fixed", size=MiB,
         calls=(300, 5, 300), rounds="call", host_doc="pread from a memfd"),
    Case("write_1m", "io", "vmo_write", "call", _K_WRITE, _H_WRITE, scale="fixed", size=MiB,
         calls=(300, 5, 300), rounds="call", host_doc="pwrite to a memfd"),
    Case("create_close", "object", "vmo_create + handle_close", "call", _K_CREATE_CLOSE,
         _h_create_close, scale="fixed", size=PAGE, calls=(20000, 2000, 10000), rounds="call",
         host_doc="memfd_create + close", target=Target("<=", 800, "<= 800 ns")),
    Case("clone_write", "object", "vmo_clone + first write + handle_close", "call",
         _K_CLONE_WRITE, _h_memfd("cow_loop"), scale="fixed", size=PAGE,
         calls=(10000, 500, 5000), rounds="call",
         host_doc="mmap MAP_PRIVATE of a written memfd page + write 1 byte + munmap"),
    Case("sys_commit", "syscall", "COMMIT of a committed page", "call",
         _k_syscall("sys_commit"), _h_mapping(_populate_loop, populate=True, per="call"),
         scale="fixed", size=PAGE, calls=_SYSCALL_CALLS, rounds="call",
         host_doc="MADV_POPULATE_WRITE of one populated page",
         target=Target("<=", 200, "<= 200 ns"), floor="floor_commit",
         floor_target=_FLOOR_TARGET),
    Case("sys_lookup", "syscall", "LOOKUP of one page", "call", _k_syscall("sys_lookup"),
         _h_mapping(_pagemap_loop, pagemap=True, per="call"),
         scale="fixed", size=PAGE, calls=_SYSCALL_CALLS, rounds="call",
         host_doc="pread of 8 bytes of /proc/self/pagemap",
         target=Target("<=", 200, "<= 200 ns"), floor="floor_lookup",
         floor_target=_FLOOR_TARGET),
    Case("sys_get_size", "syscall", "vmo_get_size", "call", _k_syscall("sys_get_size"),
         _h_memfd("fstat_loop", PAGE),
         scale="fixed", size=None, calls=_SYSCALL_CALLS, rounds="call",
         host_doc="fstat of a memfd", target=Target("<=", 200, "<= 200 ns"),
         floor="floor_get_size", floor_target=_FLOOR_TARGET),
    Case("sys_read_64", "syscall", "vmo_read", "call", _k_syscall("sys_read_64"),
         _h_memfd("pread_loop", PAGE, "into"),
         scale="fixed", size=64, calls=_SYSCALL_CALLS, rounds="call",
         host_doc="pread of 64 bytes from a memfd", target=Target("<=", 200, "<= 200 ns"),
         floor="floor_read_64", floor_target=_FLOOR_TARGET),
] + [
    # The floor of each syscall row: its loop, at its size and calls, calling the compiled
    # core's _floor_* twin of the method (same arguments converted, same result shape, no
    # work). vmo only.
    Case(key, "floor", f"{title}: floor ({_SYSCALLS[twin][3]})", "call",
         _k_syscall(twin, floor=True), host_na=_FLOOR_ONLY_VMO, ref_na=_FLOOR_ONLY_VMO,
         scale="fixed", size=size, calls=_SYSCALL_CALLS, rounds="call")
    for key, twin, title, size in (
        ("floor_commit", "sys_commit", "COMMIT of a committed page", PAGE),
        ("floor_lookup", "sys_lookup", "LOOKUP of one page", PAGE),
        ("floor_get_size", "sys_get_size", "vmo_get_size", None),
        ("floor_read_64", "sys_read_64", "vmo_read", 64))
] + [
    Case("phys_view", "embed", "phys_view + release (pin and unpin a page)", "call",
         _K_PHYS_VIEW, host_na=_NO_PHYS, scale="fixed", size=PAGE,
         calls=(20000, 1000, 0), rounds="call"),
    Case("view_write", "embed", "device write through a live phys_view", "call",
         _K_VIEW_WRITE, host_na=_NO_PHYS, scale="fixed", size=PAGE,
         calls=(50000, 5000, 0), rounds="call"),
    Case("phys_write", "embed", "phys_write", "call", _K_PHYS_WRITE, host_na=_NO_PHYS,
         scale="fixed", size=PAGE, calls=(20000, 1000, 0), rounds="call"),
    Case("phys_read", "embed", "phys_read", "call", _K_PHYS_READ, host_na=_NO_PHYS,
         scale="fixed", size=PAGE, calls=(20000, 1000, 0), rounds="call"),
    Case("pin_unpin", "embed", "k.pin + unpin of a page (a Pin: host address, view)", "call",
         _K_PIN, host_na=_NO_PHYS, scale="fixed", size=PAGE,
         calls=(20000, 1000, 0), rounds="call"),
    Case("lookup_runs_one", "embed",
         "vmo_lookup_runs of 64 committed pages on consecutive frames (1 run)", "call",
         _K_RUNS_ONE, host_na=_NO_PHYS, scale="fixed", size=64 * PAGE,
         calls=(20000, 500, 0), rounds="call"),
    Case("lookup_runs_scattered", "embed",
         "vmo_lookup_runs of 64 committed pages on recycled frames (64 runs)", "call",
         _K_RUNS_SCATTERED, host_na=_NO_PHYS, scale="fixed", size=64 * PAGE,
         calls=(5000, 200, 0), rounds="call"),
    Case("notify_none", "embed", "DECOMMIT + COMMIT of a page, no subscriber", "call",
         _K_NOTIFY_NONE, host_na=_NO_PHYS, scale="fixed", size=PAGE,
         calls=(20000, 1000, 0), rounds="call"),
    Case("notify_one", "embed",
         "DECOMMIT + COMMIT of a page, one on_change subscriber (one callback a round trip)",
         "call", _K_NOTIFY_ONE, host_na=_NO_PHYS, scale="fixed", size=PAGE,
         calls=(20000, 1000, 0), rounds="call"),
    Case("trace_loop", "trace", "one-page COMMIT / LOOKUP / DECOMMIT from a Python loop",
         "call", _k_mix_loop(False), host_na=_NO_TRACE_HOST, scale="fixed", size=PAGE,
         calls=(60000, 3000, 0), rounds="call"),
    Case("trace_recorded", "trace", "the same loop inside k.record() (overhead: vs its floor)",
         "call", _k_mix_loop(True), host_na=_NO_TRACE_HOST, ref_na=_NO_TRACE_REF,
         scale="fixed", size=PAGE, calls=(60000, 3000, 0), rounds="call", floor="trace_loop",
         floor_target=Target("<=", 30, "recording +30%")),
    Case("trace_replay", "trace",
         "vmo.replay of a recording of that loop: the replay loop (ReplayResult.seconds)",
         "call", _k_replay(False), host_na=_NO_TRACE_HOST, ref_na=_NO_TRACE_REF,
         scale="fixed", size=PAGE, calls=(300000, 3000, 0), rounds="call",
         target=Target("<=", 1e9 / 30e6, "<= 33 ns (30 M calls/s)")),
    Case("trace_replay_call", "trace",
         "the same, the whole vmo.replay call (file opened, kernel built and closed)", "call",
         _k_replay(True), host_na=_NO_TRACE_HOST, ref_na=_NO_TRACE_REF, scale="fixed",
         size=PAGE, calls=(300000, 3000, 0), rounds="call"),
    Case("trace_batch", "trace", "k.run of a 1,000-call batch of that mix, built once", "call",
         _k_batch, host_na=_NO_TRACE_HOST, ref_na=_NO_TRACE_REF, scale="fixed", size=PAGE,
         calls=(100000, 3000, 0), rounds="call"),
    Case("save", "state", "k.save(path): whole kernel, 64 MiB written (atomic: fsync, rename)",
         "MiB", _k_save, _h_save, scale="fixed", size=_STATE_SIZE,
         host_doc="write + fsync + rename of the same bytes from memory"),
    Case("load", "state", "Kernel.load(path) of that file", "MiB", _k_load, _h_load,
         scale="fixed", size=_STATE_SIZE,
         host_doc="readinto a preallocated buffer of the same bytes from a file"),
    Case("pickle", "state", "pickle.loads(pickle.dumps(k)) of that kernel", "MiB", _k_pickle,
         host_na="host: no kernel to pickle", scale="fixed", size=_STATE_SIZE),
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

CASES = {case.key: case for case in
         _CASE_LIST + _SNAPSHOT_CASES + list(MEMORY_CASES.values())
         + list(THREADS_CASES.values())}
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
