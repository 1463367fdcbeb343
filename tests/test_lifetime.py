"""Lifetime and resource tests: nothing leaks, nothing recurses, memory goes back to the host.

Through the public `vmo.Kernel` and, where the property is one of the model and not of the
compiled core's host memory, also `vmo._reference.Kernel` (the `impl` fixture):

- long seeded random call sequences, then every handle closed: all frames free, no VMO, no
  handle, `_check()` clean (docs/semantics.md "Objects");
- clone chains 5,000 deep destroyed root-first, leaf-first and by dropping the only handle
  (one cascade up the whole chain) or closing the kernel: no RecursionError, all frames back;
- error paths (bad handles, read-only / non-contiguous buffers, out-of-range integers,
  TypeErrors) leave the reference counts of buffers, integers and the kernel unchanged, keep
  no buffer export alive, and allocate nothing that stays (tracemalloc over 10,000 calls);
- host memory (core only): `close()`, DECOMMIT and closing a VMO give written memory back
  (RSS from /proc/self/statm), a 1 TiB kernel costs no RSS to create, radix nodes of far-apart
  pages are freed with their pages;
- the handle table's 262,144-slot limit (docs/semantics.md "Handles").

Nothing here is timed.
"""

import array
import gc
import os
import random
import sys
import tracemalloc

import pytest

import vmo
from vmo import Status

PAGE = 4096
MiB = 1 << 20
MAX_HANDLES = 1 << 18
SAME = vmo.MX_RIGHT_SAME_RIGHTS
COW = vmo.MX_VMO_CLONE_COPY_ON_WRITE
OK = Status.NO_ERROR


def _reference_kernel():
    from vmo._reference import Kernel
    return Kernel


@pytest.fixture(params=["core", "reference"])
def impl(request):
    """The kernel class: the compiled core, or the reference model."""
    return vmo.Kernel if request.param == "core" else _reference_kernel()


def ok(result):
    """The value of a successful (status, value) call."""
    assert result[0] is OK, result
    return result[1]


def assert_all_free(k):
    """Every frame free, no object, no handle, invariants hold."""
    k._check()
    s = k.stats()
    assert s["free_frames"] == s["total_frames"], s
    assert s["committed_frames"] == 0, s
    assert s["vmos"] == 0, s
    assert s["handles"] == 0, s
    next_fresh, stack = k._allocator_state()
    assert sorted(stack) == list(range(next_fresh))


# AddressSanitizer quarantines freed memory instead of reusing it, so RSS measurements mean
# nothing on a VMO_ASAN=1 build: those tests are skipped there (leaks are its own business).
_asan = pytest.mark.skipif(vmo._kernel.BUILD["asan"],
                           reason="RSS is not meaningful under AddressSanitizer's quarantine")


def rss():
    """Resident bytes of this process (/proc/self/statm, second field)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")


# -- random sequences: no leaked frames or handles -------------------------------------------------

def _random_session(k, rng, steps):
    """Drive `k` with `steps` random calls; returns the set of live handles."""
    live = []          # handles we hold (VMOs, clones, duplicates, events)
    vmos = []          # the VMO ones among them
    total = k.stats()["total_frames"] * PAGE

    def pick(seq):
        return rng.choice(seq) if seq else rng.choice([0, 2, 12345, (1 << 31) - 1])

    def size():
        return rng.choice([0, 1, PAGE - 1, PAGE, 3 * PAGE + 5, 16 * PAGE, total // 2,
                           1 << 40, vmo.MX_VMO_MAX_SIZE, (1 << 64) - 1])

    def offset(h):
        status, sz = k.vmo_get_size(h)
        if status is not OK or sz == 0:
            return rng.choice([0, PAGE, 1 << 63])
        return rng.choice([0, rng.randrange(sz) // PAGE * PAGE, rng.randrange(sz),
                           max(sz - PAGE, 0), sz])

    def remember(h, is_vmo):
        live.append(h)
        if is_vmo:
            vmos.append(h)

    def forget(h):
        live.remove(h)
        if h in vmos:
            vmos.remove(h)

    # op:        0  1   2  3  4  5  6  7  8  9  10  11 12 13
    weights = [8, 12, 6, 8, 5, 5, 6, 7, 7, 6, 10, 10, 3, 4]
    for step in range(steps):
        op = rng.choices(range(14), weights)[0]
        if op == 0 or not vmos:
            status, h = k.vmo_create(size())
            if status is OK:
                remember(h, True)
        elif op == 1:
            h = pick(vmos)
            n = rng.choice([1, 100, PAGE, 5 * PAGE + 3])
            k.vmo_write(h, bytes([rng.randrange(1, 256)]) * n, offset(h))
        elif op == 2:
            h = pick(vmos)
            k.vmo_read(h, bytearray(rng.choice([0, 10, 2 * PAGE])), offset(h))
        elif op == 3:
            h = pick(vmos)
            status, c = k.vmo_clone(h, COW, offset(h) // PAGE * PAGE, size())
            if status is OK:
                remember(c, True)
        elif op == 4:
            h = pick(live)
            status, d = k.handle_duplicate(h, rng.choice([SAME, SAME, 0x3, 0x7, 0xF]))
            if status is OK:
                remember(d, h in vmos)
        elif op == 5:
            h = pick(live)
            was_vmo = h in vmos
            status, r = k.handle_replace(h, rng.choice([SAME, SAME, 0x1, 0x3F, 1 << 12]))
            if status is OK:
                forget(h)
                remember(r, was_vmo)
        elif op == 6:
            h = pick(vmos)
            k.vmo_set_size(h, rng.choice([0, PAGE, 3 * PAGE + 1, 40 * PAGE, 1 << 30]))
        elif op in (7, 8):
            h = pick(vmos)
            k.vmo_op_range(h, rng.choice([vmo.MX_VMO_OP_COMMIT, vmo.MX_VMO_OP_DECOMMIT]),
                           offset(h), rng.choice([1, PAGE, 8 * PAGE, 64 * PAGE, 1 << 40]))
        elif op == 9:
            h = pick(vmos)
            buf = array.array("Q", [0] * rng.choice([0, 1, 8, 64]))
            k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, offset(h), len(buf) * PAGE or 1, buf)
        elif op in (10, 11):
            if live:
                h = rng.choice(live)
                assert k.handle_close(h) is OK
                forget(h)
            else:
                assert k.handle_close(rng.choice([0, 1, 3])) is Status.ERR_BAD_HANDLE
        elif op == 12:
            status, e = k.event_create(0)
            if status is OK:
                remember(e, False)
        else:
            k.object_get_info(pick(live), rng.choice([1, 2, 3, 99]))
        if step % 250 == 0:
            k._check()
            assert k.stats()["handles"] == len(live)
    return live


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences_leave_nothing_behind(impl, seed):
    rng = random.Random(seed)
    k = impl(memory_size=64 * PAGE)          # small: ERR_NO_MEMORY happens often
    try:
        live = _random_session(k, rng, 3000)
        k._check()
        assert k.stats()["handles"] == len(live)
        rng.shuffle(live)
        for h in live:
            assert k.handle_close(h) is OK
        assert_all_free(k)
        # The kernel is still fully usable afterwards.
        h = ok(k.vmo_create(4 * PAGE))
        assert k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, 0, 4 * PAGE) is OK
        assert k.handle_close(h) is OK
        assert_all_free(k)
    finally:
        k.close()


def test_random_sequence_then_kernel_close(impl):
    """Closing the kernel with everything still open tears it all down; afterwards every
    call raises ValueError and closing again is harmless."""
    k = impl(memory_size=64 * PAGE)
    _random_session(k, random.Random(99), 600)
    k.close()
    assert k.closed
    k.close()
    with pytest.raises(ValueError):
        k.vmo_create(PAGE)
    with pytest.raises(ValueError):
        k.stats()


def test_core_matches_reference_after_a_random_session():
    """Same seed, same calls: both kernels end with the same allocator state and stats."""
    results = []
    for cls in (vmo.Kernel, _reference_kernel()):
        k = cls(memory_size=64 * PAGE)
        try:
            live = _random_session(k, random.Random(7), 1000)
            s = k.stats()
            results.append((sorted(live), k._allocator_state(),
                            {key: s[key] for key in ("free_frames", "vmos", "handles")}))
        finally:
            k.close()
    assert results[0] == results[1]


class _ShallowRecursion:
    """Lower the recursion limit to a little above the current depth, so that a teardown
    that recursed once per clone level would raise RecursionError."""

    def __enter__(self):
        depth = 0
        frame = sys._getframe()
        while frame is not None:
            depth += 1
            frame = frame.f_back
        self.old = sys.getrecursionlimit()
        sys.setrecursionlimit(depth + 100)

    def __exit__(self, *exc):
        sys.setrecursionlimit(self.old)


# -- deep clone chains ----------------------------------------------------------------------------

DEPTH = 5000


def _chain(k, depth=DEPTH, write_leaf=True):
    """A root with one written page and `depth` nested clones; returns [root, ..., leaf]."""
    root = ok(k.vmo_create(2 * PAGE))
    assert k.vmo_write(root, b"root", 0) == (OK, 4)
    handles = [root]
    for _ in range(depth):
        handles.append(ok(k.vmo_clone(handles[-1], COW, 0, 2 * PAGE)))
    if write_leaf:
        # Copies the root's page into every clone on the way down (docs/semantics.md).
        assert k.vmo_write(handles[-1], b"leaf", 0) == (OK, 4)
    return handles


@pytest.mark.parametrize("order", ["root_first", "leaf_first", "random"])
def test_deep_clone_chain_destroyed(impl, order):
    k = impl(memory_size=32 * MiB)
    try:
        handles = _chain(k)
        s = k.stats()
        assert s["vmos"] == DEPTH + 1 and s["handles"] == DEPTH + 1
        assert s["committed_frames"] == DEPTH + 1
        k._check()
        buf = bytearray(4)
        assert k.vmo_read(handles[-1], buf, 0) == (OK, 4) and buf == b"leaf"
        assert k.vmo_read(handles[DEPTH // 2], buf, 0) == (OK, 4) and buf == b"root"
        if order == "root_first":
            seq = handles
        elif order == "leaf_first":
            seq = handles[::-1]
        else:
            seq = handles[:]
            random.Random(5).shuffle(seq)
        for i, h in enumerate(seq):
            assert k.handle_close(h) is OK
            if i == DEPTH // 2:
                k._check()
        assert_all_free(k)
    finally:
        k.close()


def test_deep_clone_chain_held_only_by_its_leaf(impl):
    """Every handle but the leaf's is closed while building: closing the leaf destroys the
    whole chain in one cascade (a loop, not recursion)."""
    k = impl(memory_size=32 * MiB)
    try:
        h = ok(k.vmo_create(PAGE))
        assert k.vmo_write(h, b"x", 0) == (OK, 1)
        for _ in range(DEPTH):
            c = ok(k.vmo_clone(h, COW, 0, PAGE))
            assert k.handle_close(h) is OK
            h = c
        s = k.stats()
        assert (s["vmos"], s["handles"], s["committed_frames"]) == (DEPTH + 1, 1, 1)
        buf = bytearray(1)
        assert k.vmo_read(h, buf, 0) == (OK, 1) and buf == b"x"
        k._check()
        with _ShallowRecursion():
            assert k.handle_close(h) is OK
        assert_all_free(k)
    finally:
        k.close()


@pytest.mark.parametrize("how", ["close", "del"])
def test_deep_clone_chain_torn_down_with_the_kernel(impl, how):
    k = impl(memory_size=32 * MiB)
    handles = _chain(k)
    for h in handles[:-1]:            # only the leaf keeps the chain alive
        assert k.handle_close(h) is OK
    with _ShallowRecursion():
        if how == "close":
            k.close()
            assert k.closed
        else:
            del k
            gc.collect()


def test_deep_chain_with_duplicates_and_replacements(impl):
    """Duplicates and replaced handles count as references exactly like the originals."""
    k = impl(memory_size=8 * MiB)
    try:
        handles = _chain(k, depth=1000, write_leaf=False)
        extra = [ok(k.handle_duplicate(h, SAME)) for h in handles[::7]]
        for i in range(0, len(handles), 3):
            handles[i] = ok(k.handle_replace(handles[i], SAME))
        for h in handles[::-1]:
            assert k.handle_close(h) is OK
        k._check()
        assert k.stats()["handles"] == len(extra)
        for h in extra:
            assert k.handle_close(h) is OK
        assert_all_free(k)
    finally:
        k.close()


# -- error paths: no leaked references, exports or allocations ------------------------------------

def _error_calls(k, h, hbig, ev, bufs, ints):
    """Calls that fail (statuses) and calls that raise TypeError, over `bufs` and `ints`."""
    ba, by, strided, arr, small_arr = bufs
    big, neg, flt = ints
    status_calls = [
        lambda: k.vmo_read(12345, ba, 0),                      # bad handle
        lambda: k.vmo_read(0, ba, 0),
        lambda: k.vmo_read(h, by, 0),                          # read-only buffer
        lambda: k.vmo_read(h, strided, 0),                     # non-contiguous
        lambda: k.vmo_read(h, ba, 0, len(ba) + 1),             # length > buffer
        lambda: k.vmo_read(h, ba, big),                        # offset beyond uint64
        lambda: k.vmo_read(h, ba, neg),
        lambda: k.vmo_read(h, ba, 3 * PAGE),                   # offset > size
        lambda: k.vmo_read(ev, ba, 0),                         # wrong type
        lambda: k.vmo_read(big, ba, 0),
        lambda: k.vmo_write(h, ba, 0, len(ba) + 1),
        lambda: k.vmo_write(h, strided, 0),
        lambda: k.vmo_write(h, by, 3 * PAGE),
        lambda: k.vmo_write(12345, by, 0),
        lambda: k.vmo_write(h, by, big, neg),
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, by),      # read-only
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, strided),
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, arr, big),
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, arr, 10 ** 6),
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, small_arr),  # too small
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 0, arr),              # size 0
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, arr),       # uncommitted
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, PAGE, 2 * PAGE, arr),    # out of range
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, None),
        lambda: k.vmo_op_range(h, big, 0, PAGE, arr),
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, big, PAGE),
        lambda: k.vmo_op_range(hbig, vmo.MX_VMO_OP_COMMIT, 0, 1 << 30),         # no memory
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, 3 * PAGE, PAGE),         # out of range
        lambda: k.vmo_create(big),
        lambda: k.vmo_create(vmo.MX_VMO_MAX_SIZE + 1),
        lambda: k.vmo_clone(h, COW, big, PAGE),
        lambda: k.vmo_clone(h, 0, 0, PAGE),
        lambda: k.vmo_set_size(h, neg),
        lambda: k.handle_duplicate(h, big),
        lambda: k.handle_duplicate(h, 1 << 12),
        lambda: k.handle_replace(h, 1 << 12),
        lambda: k.handle_close(big),
        lambda: k.handle_close(0),
        lambda: k.object_get_info(h, big),
        lambda: k.object_get_info(h, 99),
        lambda: k.object_get_info(12345, vmo.MX_INFO_HANDLE_BASIC),
        lambda: k.event_create(1),
    ]
    type_error_calls = [
        lambda: k.vmo_read(h, ba, flt),
        lambda: k.vmo_read(h, object(), 0),
        lambda: k.vmo_read(h, ba, 0, "1"),
        lambda: k.vmo_read(flt, ba, 0),
        lambda: k.vmo_write(h, flt, 0),
        lambda: k.vmo_write(h, by, big, flt),                  # TypeError beats the status
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, PAGE, arr, flt),
        lambda: k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, PAGE, object()),
        lambda: k.vmo_create(None),
        lambda: k.vmo_clone(h, COW, flt, PAGE),
        lambda: k.handle_close(flt),
        lambda: k.handle_duplicate(h, "x"),
    ]
    return status_calls, type_error_calls


def _run_error_calls(status_calls, type_error_calls):
    for call in status_calls:
        result = call()
        status = result[0] if isinstance(result, tuple) else result
        assert isinstance(status, Status) and status is not OK, result
    for call in type_error_calls:
        with pytest.raises(TypeError):
            call()


def _setup_error_kernel(impl):
    """A kernel with an uncommitted 2-page VMO, a 1 TiB VMO and an event, plus the buffers
    and integer objects the failing calls use; returns (kernel, bufs, ints, calls)."""
    k = impl(memory_size=16 * PAGE)
    h = ok(k.vmo_create(2 * PAGE))
    hbig = ok(k.vmo_create(1 << 40))
    ev = ok(k.event_create(0))
    bufs = (bytearray(100), bytes(100), memoryview(bytearray(200))[::2],
            array.array("Q", [0] * 4), array.array("Q", [0]))
    ints = (2 ** 70 + 1, -(2 ** 70) - 3, float("1.5"))   # objects of their own
    return k, bufs, ints, _error_calls(k, h, hbig, ev, bufs, ints)


def test_error_paths_leak_no_references(impl):
    k, bufs, ints, (status_calls, type_error_calls) = _setup_error_kernel(impl)
    try:
        _run_error_calls(status_calls, type_error_calls)       # warm caches
        gc.collect()
        watched = [k, *bufs, *ints]
        before = [sys.getrefcount(o) for o in watched]
        for _ in range(500):
            _run_error_calls(status_calls, type_error_calls)
        gc.collect()
        after = [sys.getrefcount(o) for o in watched]
        assert after == before
        # No buffer export left behind: resizing or releasing would fail with BufferError.
        ba, _by, strided, arr, small_arr = bufs
        ba.extend(b"x")
        del ba[:]
        arr.append(1)
        small_arr.pop()
        strided.release()
        k._check()
        assert k.stats()["handles"] == 3 and k.stats()["free_frames"] == 16
    finally:
        k.close()


def test_success_paths_leak_no_references(impl):
    k = impl(memory_size=16 * PAGE)
    try:
        h = ok(k.vmo_create(2 * PAGE))
        ba = bytearray(2 * PAGE)
        data = bytes(range(256)) * 16
        arr = array.array("Q", [0] * 2)
        offset = 2 ** 12 + 0   # an int object of its own
        assert k.vmo_write(h, data, offset) == (OK, PAGE)
        watched = [k, ba, data, arr, offset]
        before = [sys.getrefcount(o) for o in watched]
        for _ in range(500):
            assert k.vmo_write(h, data, 0) == (OK, PAGE)
            assert k.vmo_read(h, ba, 0) == (OK, 2 * PAGE)
            assert k.vmo_read(h, ba, offset, 10) == (OK, 10)
            assert k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, 2 * PAGE, arr) is OK
            assert k.vmo_read_bytes(h, 0, 16)[0] is OK
            d = ok(k.handle_duplicate(h, SAME))
            assert k.handle_close(d) is OK
        gc.collect()
        assert [sys.getrefcount(o) for o in watched] == before
        ba.extend(b"x")
        arr.append(0)
    finally:
        k.close()


def test_numpy_buffers_leak_no_references(impl):
    np = pytest.importorskip("numpy")
    k = impl(memory_size=16 * PAGE)
    try:
        h = ok(k.vmo_create(2 * PAGE))
        ro = np.zeros(64, dtype=np.uint8)
        ro.setflags(write=False)
        strided = np.zeros(128, dtype=np.uint8)[::2]
        good = np.zeros(4, dtype=np.uint64)
        watched = [ro, strided, good]
        before = [sys.getrefcount(o) for o in watched]
        for _ in range(300):
            assert k.vmo_read(h, ro, 0)[0] is Status.ERR_INVALID_ARGS
            assert k.vmo_read(h, strided, 0)[0] is Status.ERR_INVALID_ARGS
            assert k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, PAGE, ro) is \
                Status.ERR_INVALID_ARGS
            assert k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, 0, PAGE, good) is \
                Status.ERR_NO_MEMORY
            assert k.vmo_read(h, good, 3 * PAGE)[0] is Status.ERR_OUT_OF_RANGE
        gc.collect()
        assert [sys.getrefcount(o) for o in watched] == before
    finally:
        k.close()


def test_failing_calls_do_not_grow_traced_memory(impl):
    k, _bufs, _ints, (status_calls, type_error_calls) = _setup_error_kernel(impl)
    try:
        calls = status_calls + type_error_calls
        for _ in range(20):
            _run_error_calls(status_calls, type_error_calls)
        gc.collect()
        tracemalloc.start()
        try:
            gc.collect()
            start = tracemalloc.get_traced_memory()[0]
            n = 0
            while n < 10_000:
                _run_error_calls(status_calls, type_error_calls)
                n += len(calls)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        assert grown < 16 * 1024, "%d bytes still allocated after %d failing calls" % (grown, n)
    finally:
        k.close()


# -- host memory (the compiled core's arena) -------------------------------------------------------

CHUNK = b"\xa5" * MiB
WRITTEN = 64 * MiB


def _write_64mib(k):
    h = ok(k.vmo_create(WRITTEN))
    for off in range(0, WRITTEN, MiB):
        assert k.vmo_write(h, CHUNK, off) == (OK, MiB)
    return h


@_asan
def test_close_gives_host_memory_back():
    gc.collect()
    base = rss()
    k = vmo.Kernel(memory_size=128 * MiB)
    _write_64mib(k)
    written = rss()
    added = written - base
    assert added >= WRITTEN * 3 // 4, "writing 64 MiB added only %d bytes of RSS" % added
    k.close()
    after = rss()
    assert written - after >= added // 2, \
        "close() gave back %d of the %d bytes the writes added" % (written - after, added)


@_asan
def test_decommit_gives_long_dirty_runs_back_to_the_host():
    gc.collect()
    base = rss()
    with vmo.Kernel(memory_size=128 * MiB) as k:
        h = _write_64mib(k)
        written = rss()
        added = written - base
        assert added >= WRITTEN * 3 // 4, "writing 64 MiB added only %d bytes of RSS" % added
        runs = k.stats()["released_runs"]
        assert k.vmo_op_range(h, vmo.MX_VMO_OP_DECOMMIT, 0, WRITTEN) is OK
        after = rss()
        assert written - after >= added * 9 // 10, \
            "DECOMMIT gave back %d of the %d bytes the writes added" % (written - after, added)
        s = k.stats()
        assert s["released_runs"] > runs
        assert s["free_frames"] == s["total_frames"]
        # The frames come back as zeros without being zeroed by hand.
        zeroed = s["zeroed_frames"]
        assert k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, 0, WRITTEN) is OK
        assert k.vmo_read_bytes(h, WRITTEN - 8, 8) == (OK, bytes(8))
        assert k.vmo_read_bytes(h, 12345, 8) == (OK, bytes(8))
        assert k.stats()["zeroed_frames"] == zeroed
        k._check()


@_asan
def test_closing_a_written_vmo_gives_host_memory_back():
    gc.collect()
    base = rss()
    with vmo.Kernel(memory_size=128 * MiB) as k:
        h = _write_64mib(k)
        written = rss()
        added = written - base
        assert added >= WRITTEN * 3 // 4
        assert k.handle_close(h) is OK
        assert written - rss() >= added * 9 // 10
        assert_all_free(k)


@_asan
def test_terabyte_kernel_costs_no_rss():
    gc.collect()
    base = rss()
    k = vmo.Kernel(memory_size=1 << 40)
    try:
        assert rss() - base < 64 * MiB
        s = k.stats()
        assert s["total_frames"] == (1 << 40) // PAGE and s["free_frames"] == s["total_frames"]
        # A little use touches only a little.
        h = ok(k.vmo_create(1 << 40))
        assert k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, 0, 16 * MiB) is OK
        assert k.vmo_write(h, b"end", (1 << 40) - 3) == (OK, 3)
        assert rss() - base < 64 * MiB
        k._check()
    finally:
        k.close()


@_asan
def test_page_table_nodes_are_freed():
    """Pages far apart each need their own chain of radix nodes (host heap, not the arena);
    DECOMMIT, shrink and destruction must free those nodes, or 20,000 rounds would keep
    hundreds of MiB."""
    rng = random.Random(11)
    top = vmo.MX_VMO_MAX_SIZE // PAGE
    with vmo.Kernel(memory_size=64 * PAGE) as k:
        h = ok(k.vmo_create(vmo.MX_VMO_MAX_SIZE))
        for _ in range(200):                     # warm the allocator
            off = rng.randrange(top) * PAGE
            k.vmo_write(h, b"z", off)
            k.vmo_op_range(h, vmo.MX_VMO_OP_DECOMMIT, off, 1)
        gc.collect()
        base = rss()
        for _ in range(10_000):
            off = rng.randrange(top) * PAGE
            assert k.vmo_write(h, b"z", off) == (OK, 1)
            assert k.vmo_op_range(h, vmo.MX_VMO_OP_DECOMMIT, off, 1) is OK
        for i in range(1_000):
            v = ok(k.vmo_create(vmo.MX_VMO_MAX_SIZE))
            for _ in range(8):
                assert k.vmo_write(v, b"z", rng.randrange(top) * PAGE) == (OK, 1)
            if i % 2:
                assert k.vmo_set_size(v, 0) is OK
            assert k.handle_close(v) is OK
        grown = rss() - base
        assert grown < 32 * MiB, "RSS grew by %d bytes" % grown
        assert k.vmo_committed_bytes(h) == (OK, 0)
        assert k.stats()["handles"] == 1 and k.stats()["vmos"] == 1
        k._check()


# -- the handle table limit -----------------------------------------------------------------------

def test_handle_table_limit(impl):
    """262,144 live handles fill the table: every creating call gives ERR_NO_MEMORY (value
    0) while handle_replace (which frees its slot first) still works; one close makes room
    for exactly one more handle."""
    k = impl(memory_size=16 * PAGE)
    try:
        first = ok(k.vmo_create(PAGE))
        handles = [first]
        for i in range(MAX_HANDLES - 1):
            status, h = k.vmo_create(0) if i % 2 else k.event_create(0)
            assert status is OK, (i, status)
            handles.append(h)
        assert k.stats()["handles"] == MAX_HANDLES
        full = Status.ERR_NO_MEMORY
        assert k.vmo_create(PAGE) == (full, 0)
        assert k.vmo_clone(first, COW, 0, PAGE) == (full, 0)
        assert k.handle_duplicate(first, SAME) == (full, 0)
        assert k.event_create(0) == (full, 0)
        # Argument errors still come first.
        assert k.vmo_create(PAGE, 1)[0] is Status.ERR_INVALID_ARGS
        stale = (((5 << 18) | 7) << 1) | 1          # slot 7 with a generation never used
        assert k.handle_duplicate(stale, SAME)[0] is Status.ERR_BAD_HANDLE
        # handle_replace frees the old slot first, so it works on a full table.
        replaced = ok(k.handle_replace(first, SAME))
        assert k.vmo_write(replaced, b"ok", 0) == (OK, 2)
        handles[0] = first = replaced
        assert k.stats()["handles"] == MAX_HANDLES
        # One close: each creating call works once, then the table is full again.
        for make in (lambda: k.vmo_create(PAGE),
                     lambda: k.vmo_clone(first, COW, 0, PAGE),
                     lambda: k.handle_duplicate(first, SAME),
                     lambda: k.event_create(0)):
            assert k.handle_close(handles.pop()) is OK
            handles.append(ok(make()))
            assert make() == (full, 0)
        assert k.stats()["handles"] == MAX_HANDLES
        k._check()
        for h in handles:
            assert k.handle_close(h) is OK
        assert_all_free(k)
    finally:
        k.close()
