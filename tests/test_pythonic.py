"""The Pythonic layer of docs/api.md ("Pythonic layer"), on both implementations.

`k.create_vmo(size) -> vmo.Vmo`; failures raise `vmo.MxError` whose `.status` is the `Status`
and whose message names it; every `Vmo` method and property; context managers; `size=None`
meaning "to the end of the VMO"; `k.stats()`.

Citations "spec X.Y" are sections of docs/magenta.md (so "spec 3.6.4" is docs/magenta.md
3.6.4).
"""

import sys
from array import array

import pytest
from conftest import BASE, MAX, PAGE, U64, paddr

import vmo

S = vmo.Status
Op = vmo.Op
R = vmo.Rights


def raises_mx(status):
    """pytest.raises for an MxError with exactly ``status``."""
    return pytest.raises(vmo.MxError, match=status.name)


def check_error(excinfo, status):
    err = excinfo.value
    assert isinstance(err, Exception)
    assert isinstance(err.status, vmo.Status)
    assert err.status is status
    assert status.name in str(err)


def consistent(stats):
    assert stats["free_frames"] + stats["committed_frames"] == stats["total_frames"]
    return stats


# -- create_vmo, MxError ------------------------------------------------------------------------
def test_create_vmo(k):
    """docs/api.md "Pythonic layer": "k.create_vmo(size) -> vmo.Vmo"; "A Vmo owns one handle
    (.handle)"."""
    v = k.create_vmo(5000)
    assert isinstance(v, vmo.Vmo)
    assert v.handle == 1
    assert v.size == 5000
    assert v.committed_bytes == 0
    w = k.create_vmo(0)
    assert w.handle == 3 and w.size == 0
    assert k.vmo_get_size(v.handle) == (S.NO_ERROR, 5000)


def test_mxerror_carries_status_and_names_it(k):
    """docs/api.md "Pythonic layer": "Failures raise vmo.MxError, whose .status is the Status and
    whose message names it" -- oversize create is ERR_NO_MEMORY (spec 3.1 step 3)."""
    with raises_mx(S.ERR_NO_MEMORY) as excinfo:
        k.create_vmo(MAX + 1)
    check_error(excinfo, S.ERR_NO_MEMORY)
    assert k.stats()["handles"] == 0
    v = k.create_vmo(PAGE)
    with raises_mx(S.ERR_OUT_OF_RANGE) as excinfo:
        v.read(PAGE + 1, 1)
    check_error(excinfo, S.ERR_OUT_OF_RANGE)
    with raises_mx(S.ERR_NOT_SUPPORTED) as excinfo:
        v.op_range(Op.LOCK, 0, PAGE)
    check_error(excinfo, S.ERR_NOT_SUPPORTED)


def test_mxerror_is_exported():
    """docs/api.md "Constants": vmo.MxError is the exception; vmo.Status the IntEnum."""
    err = vmo.MxError(S.ERR_BAD_HANDLE)
    assert err.status is S.ERR_BAD_HANDLE
    assert "ERR_BAD_HANDLE" in str(err)
    assert issubclass(vmo.MxError, Exception)


# -- size ---------------------------------------------------------------------------------------
def test_size_property(k):
    """docs/api.md "Pythonic layer": "size (property, settable)"; byte-granular (spec 2.6); >
    MX_VMO_MAX_SIZE -> ERR_OUT_OF_RANGE (spec 3.5 step 2); needs WRITE."""
    v = k.create_vmo(PAGE)
    v.size = 12345
    assert v.size == 12345
    v.size = MAX
    assert v.size == MAX
    with raises_mx(S.ERR_OUT_OF_RANGE) as excinfo:
        v.size = MAX + 1
    check_error(excinfo, S.ERR_OUT_OF_RANGE)
    v.size = 0
    assert v.size == 0
    ro = v.duplicate(R.READ | R.DUPLICATE)
    assert ro.size == 0
    with raises_mx(S.ERR_ACCESS_DENIED):
        ro.size = 10


# -- data ---------------------------------------------------------------------------------------
def test_read_write(k):
    """docs/api.md "Pythonic layer": "read(offset, length) -> bytes", "write(data, offset=0) ->
    int"; short at the end (spec 3.2/3.3); reads zero where nothing was written and never commit."""
    v = k.create_vmo(3 * PAGE + 10)
    assert v.read(0, 3 * PAGE + 10) == bytes(3 * PAGE + 10)
    assert type(v.read(0, 4)) is bytes
    assert v.committed_bytes == 0
    assert v.write(b"hello") == 5
    assert v.write(b"world", PAGE - 2) == 5
    assert v.read(0, 5) == b"hello"
    assert v.read(PAGE - 2, 5) == b"world"
    assert v.committed_bytes == 2 * PAGE
    assert v.write(b"0123456789abcdef", 3 * PAGE) == 10
    assert v.read(3 * PAGE, 100) == b"0123456789"
    assert v.read(3 * PAGE + 10, 100) == b""
    assert v.read(0, 0) == b""
    with raises_mx(S.ERR_OUT_OF_RANGE):
        v.read(3 * PAGE + 11, 0)
    with raises_mx(S.ERR_OUT_OF_RANGE):
        v.write(b"x", 3 * PAGE + 11)


def test_read_into(k):
    """docs/api.md "Pythonic layer": "read_into(buffer, offset) -> int": fills the buffer from
    offset, returns the bytes read (short at the end); a read-only buffer -> ERR_INVALID_ARGS."""
    v = k.create_vmo(100)
    v.write(bytes(range(100)))
    buf = bytearray(b"\xff" * 64)
    assert v.read_into(buf, 10) == 64
    assert buf == bytes(range(10, 74))
    buf = bytearray(b"\xff" * 64)
    assert v.read_into(buf, 90) == 10
    assert buf == bytes(range(90, 100)) + b"\xff" * 54
    with raises_mx(S.ERR_INVALID_ARGS):
        v.read_into(bytes(8), 0)
    assert v.read_into(bytearray(0), 100) == 0


def test_write_needs_write_right_read_needs_read(k):
    """Spec 3.2/3.3 rights through the Pythonic layer: ERR_ACCESS_DENIED."""
    v = k.create_vmo(PAGE)
    ro = v.duplicate(R.READ)
    wo = v.duplicate(R.WRITE)
    with raises_mx(S.ERR_ACCESS_DENIED) as excinfo:
        ro.write(b"x")
    check_error(excinfo, S.ERR_ACCESS_DENIED)
    with raises_mx(S.ERR_ACCESS_DENIED):
        wo.read(0, 1)
    with raises_mx(S.ERR_ACCESS_DENIED):
        wo.read_into(bytearray(1), 0)
    assert wo.write(b"x") == 1
    assert ro.read(0, 2) == b"x\x00"


# -- op_range family ----------------------------------------------------------------------------
def test_op_range(k):
    """docs/api.md "Pythonic layer": "op_range(op, offset, size, buffer=None)" raising MxError;
    returns None."""
    v = k.create_vmo(2 * PAGE)
    assert v.op_range(Op.COMMIT, 0, 2 * PAGE) is None
    buf = array("Q", [0, 0])
    assert v.op_range(Op.LOOKUP, 0, 2 * PAGE, buf) is None
    assert list(buf) == [paddr(0), paddr(1)]
    with raises_mx(S.ERR_INVALID_ARGS):
        v.op_range(Op.LOOKUP, 0, 2 * PAGE)
    with raises_mx(S.ERR_BUFFER_TOO_SMALL):
        v.op_range(Op.LOOKUP, 0, 2 * PAGE, array("Q", [0]))
    with raises_mx(S.ERR_INVALID_ARGS):
        v.op_range(0, 0, PAGE)
    with raises_mx(S.ERR_INVALID_ARGS):
        v.op_range(vmo.MX_VMO_OP_CACHE_SYNC, 0, 0)


def test_commit_decommit_size_none_means_to_end(k):
    """docs/api.md "Pythonic layer": "commit(offset=0, size=None)", "decommit(offset=0, size=None)";
    "size=None means to the end of the VMO"."""
    v = k.create_vmo(4 * PAGE + 1)
    v.commit(2 * PAGE)
    assert v.committed_bytes == 3 * PAGE
    v.commit()
    assert v.committed_bytes == 5 * PAGE
    v.decommit(3 * PAGE + 5)  # start rounded down (docs/api.md exception 1): pages 3 and 4
    assert v.committed_bytes == 3 * PAGE
    v.decommit(0, PAGE)
    assert v.committed_bytes == 2 * PAGE
    v.decommit()
    assert v.committed_bytes == 0
    v.commit(PAGE, 1)
    assert v.committed_bytes == PAGE
    with raises_mx(S.ERR_OUT_OF_RANGE):
        v.commit(4 * PAGE + 2)
    with raises_mx(S.ERR_OUT_OF_RANGE):
        v.decommit(4 * PAGE + 2, 1)


@pytest.mark.memory_size(8 * 4096)
def test_commit_no_memory(k):
    """Spec 3.6.1 step 5 through commit(): MxError(ERR_NO_MEMORY), nothing kept."""
    v = k.create_vmo(9 * PAGE)
    with raises_mx(S.ERR_NO_MEMORY) as excinfo:
        v.commit()
    check_error(excinfo, S.ERR_NO_MEMORY)
    assert v.committed_bytes == 0
    assert k.stats()["free_frames"] == 8


def test_lookup(k):
    """docs/api.md "Pythonic layer": "lookup(offset=0, size=None) -> array('Q')" of the pages
    touching the range; MxError ERR_NO_MEMORY when a page is not committed, ERR_INVALID_ARGS for
    size 0, ERR_OUT_OF_RANGE past the end."""
    v = k.create_vmo(3 * PAGE)
    with raises_mx(S.ERR_NO_MEMORY) as excinfo:
        v.lookup()
    check_error(excinfo, S.ERR_NO_MEMORY)
    v.commit()
    addrs = v.lookup()
    assert isinstance(addrs, array) and addrs.typecode == "Q"
    assert list(addrs) == [BASE, BASE + PAGE, BASE + 2 * PAGE]
    assert list(v.lookup(PAGE + 1)) == [BASE + PAGE, BASE + 2 * PAGE]
    assert list(v.lookup(PAGE - 1, 2)) == [BASE, BASE + PAGE]
    assert list(v.lookup(2 * PAGE, 1)) == [BASE + 2 * PAGE]
    with raises_mx(S.ERR_INVALID_ARGS):
        v.lookup(0, 0)
    with raises_mx(S.ERR_INVALID_ARGS):
        v.lookup(3 * PAGE)  # to the end = size 0
    with raises_mx(S.ERR_OUT_OF_RANGE):
        v.lookup(0, 3 * PAGE + 1)


@pytest.mark.parametrize("name", ["cache_sync", "cache_invalidate", "cache_clean",
                                  "cache_clean_invalidate"])
def test_cache_ops(k, name):
    """docs/api.md "Pythonic layer":
    "cache_sync/cache_invalidate/cache_clean/cache_clean_invalidate(offset, size)" (spec 3.6.5: size
    0 -> ERR_INVALID_ARGS, strict range, nothing committed)."""
    v = k.create_vmo(2 * PAGE)
    method = getattr(v, name)
    assert method(0, 2 * PAGE) is None
    assert method(5, 100) is None
    assert v.committed_bytes == 0
    with raises_mx(S.ERR_INVALID_ARGS):
        method(0, 0)
    with raises_mx(S.ERR_OUT_OF_RANGE):
        method(0, 2 * PAGE + 1)


# -- handles ------------------------------------------------------------------------------------
def test_clone(k):
    """docs/api.md "Pythonic layer": "clone(offset=0, size=None) -> Vmo" (size None: to the end); a
    live COW view (spec 3.7); clone rights = source | WRITE | EXECUTE | MAP."""
    v = k.create_vmo(4 * PAGE)
    v.write(b"A" * PAGE + b"B" * PAGE + b"C" * PAGE + b"D" * PAGE)
    c = v.clone(PAGE)
    assert isinstance(c, vmo.Vmo)
    assert c.size == 3 * PAGE
    assert c.read(0, 1) == b"B"
    assert c.committed_bytes == 0
    c.write(b"x", PAGE)
    assert c.read(PAGE, 2) == b"xC"
    assert v.read(2 * PAGE, 1) == b"C"
    assert c.committed_bytes == PAGE
    full = v.clone()
    assert full.size == 4 * PAGE
    part = v.clone(0, 10)
    assert part.size == 10
    assert part.info().rights == 0x3F
    with raises_mx(S.ERR_INVALID_ARGS):
        v.clone(1)
    ro = v.duplicate(R.READ | R.DUPLICATE)
    assert ro.clone().info().rights == 0x3D


def test_duplicate_and_replace(k):
    """docs/api.md "Pythonic layer": "duplicate(rights=MX_RIGHT_SAME_RIGHTS) -> Vmo",
    "replace(rights) -> Vmo" (spec 3.9/3.10): same object; replace closes the old handle; non-subset
    -> ERR_INVALID_ARGS."""
    v = k.create_vmo(PAGE)
    d = v.duplicate()
    assert isinstance(d, vmo.Vmo) and d.handle != v.handle
    assert d.info().rights == 0x3F
    assert d.info().koid == v.info().koid
    d.write(b"same")
    assert v.read(0, 4) == b"same"
    r = d.duplicate(R.READ | R.DUPLICATE)
    assert r.info().rights == R.READ | R.DUPLICATE
    with raises_mx(S.ERR_INVALID_ARGS):
        r.duplicate(R.WRITE)
    old = d.handle
    n = d.replace(R.READ)
    assert isinstance(n, vmo.Vmo)
    assert n.info().rights == R.READ
    assert n.info().koid == v.info().koid
    assert k.handle_close(old) == S.ERR_BAD_HANDLE
    with raises_mx(S.ERR_INVALID_ARGS):
        n.replace(R.WRITE)
    assert n.read(0, 4) == b"same"  # still valid after a failed replace
    with raises_mx(S.ERR_ACCESS_DENIED):
        n.duplicate()


def test_info(k):
    """docs/api.md "Pythonic layer": "info()": a record with koid, rights, type, related_koid, props
    (spec 3.11)."""
    v = k.create_vmo(PAGE)
    info = v.info()
    assert info.koid == 1024
    assert info.rights == 0x3F
    assert info.type == vmo.MX_OBJ_TYPE_VMEM
    assert info.related_koid == 0
    assert info.props == vmo.MX_OBJ_PROP_WAITABLE


def test_committed_bytes(k):
    """docs/api.md "Pythonic layer": "committed_bytes (pages this VMO itself holds x PAGE_SIZE)" --
    a clone's un-copied pages are not counted."""
    v = k.create_vmo(3 * PAGE)
    v.write(b"x", 2 * PAGE + 5)
    assert v.committed_bytes == PAGE
    c = v.clone()
    assert c.committed_bytes == 0
    c.write(b"y", 0)
    assert c.committed_bytes == PAGE and v.committed_bytes == PAGE
    c.commit()
    assert c.committed_bytes == 3 * PAGE and v.committed_bytes == PAGE
    assert c.read(2 * PAGE + 5, 1) == b"x"  # copied by COMMIT (docs/api.md exception 2)


def test_close_and_context_manager(k):
    """docs/api.md "Pythonic layer": "close(), and the context-manager protocol": leaving the block
    closes the handle (also on an exception)."""
    with k.create_vmo(PAGE) as v:
        assert isinstance(v, vmo.Vmo)
        handle = v.handle
        v.write(b"x")
    assert k.handle_close(handle) == S.ERR_BAD_HANDLE
    assert k.stats()["vmos"] == 0
    with pytest.raises(RuntimeError), k.create_vmo(PAGE) as v:
        handle = v.handle
        raise RuntimeError("boom")
    assert k.handle_close(handle) == S.ERR_BAD_HANDLE
    v = k.create_vmo(PAGE)
    handle = v.handle
    v.close()
    assert k.vmo_get_size(handle)[0] is S.ERR_BAD_HANDLE
    v.close()  # closing again is harmless
    assert k.stats()["handles"] == 0


def test_kernel_context_manager(kernel_cls):
    """docs/api.md "The kernel": "k.close() (also with vmo.Kernel() as k:) releases the arena; any
    call after close raises ValueError"."""
    with kernel_cls(memory_size=16 * PAGE) as kk:
        v = kk.create_vmo(PAGE)
        v.write(b"abc")
        assert v.read(0, 3) == b"abc"
        kk._check()
    with pytest.raises(ValueError):
        kk.create_vmo(PAGE)
    with pytest.raises(ValueError):
        kk.stats()
    with pytest.raises(ValueError):
        v.read(0, 3)


def test_kernel_context_manager_on_exception(kernel_cls):
    """docs/api.md "The kernel": the kernel's context manager closes it even when the block
    raises."""
    with pytest.raises(KeyError), kernel_cls(memory_size=16 * PAGE) as kk:
        kk.create_vmo(PAGE)
        raise KeyError("x")
    with pytest.raises(ValueError):
        kk.vmo_create(PAGE)


# -- numpy --------------------------------------------------------------------------------------
def test_numpy_buffers(k):
    """docs/api.md "Buffers": "Buffers are any object with the buffer protocol (... numpy arrays)";
    LOOKUP writes native uint64 "so array('Q') and numpy uint64 buffers work directly"."""
    np = pytest.importorskip("numpy")
    v = k.create_vmo(2 * PAGE)
    src = np.arange(PAGE // 4, dtype=np.uint32)
    assert v.write(src, 100) == PAGE
    out = np.zeros(PAGE // 4, dtype=np.uint32)
    assert v.read_into(out, 100) == PAGE
    assert np.array_equal(out, src)
    assert v.read(100, PAGE) == src.tobytes()
    assert k.vmo_read(v.handle, out, 0) == (S.NO_ERROR, PAGE)
    assert out.tobytes() == bytes(100) + src.tobytes()[:PAGE - 100]
    entries = np.full(3, 7, dtype=np.uint64)
    v.op_range(Op.LOOKUP, 0, 2 * PAGE, entries)
    assert entries.tolist() == [BASE, BASE + PAGE, 7]
    assert v.write(np.frombuffer(b"\x01\x02", dtype=np.uint8), 0) == 2
    two_d = np.zeros((2, PAGE // 2), dtype=np.uint8)
    assert v.read_into(two_d, 0) == PAGE
    assert two_d[0, 0] == 1 and two_d[0, 1] == 2


def test_numpy_read_only_and_strided(k):
    """docs/api.md "Buffers": a read-only buffer where one is written -> ERR_INVALID_ARGS;
    semantics: a non-contiguous exporter too."""
    np = pytest.importorskip("numpy")
    v = k.create_vmo(PAGE)
    ro = np.zeros(16, dtype=np.uint8)
    ro.flags.writeable = False
    with raises_mx(S.ERR_INVALID_ARGS):
        v.read_into(ro, 0)
    with raises_mx(S.ERR_INVALID_ARGS):
        v.read_into(np.zeros(32, dtype=np.uint8)[::2], 0)
    assert v.write(ro) == 16  # a read-only buffer is fine as write's source


def test_numpy_integers_as_arguments(k):
    """Semantics: "Integer arguments are converted with operator.index: int, bool, numpy
    integers work"."""
    np = pytest.importorskip("numpy")
    v = k.create_vmo(np.uint64(3 * PAGE))
    assert v.size == 3 * PAGE
    assert v.write(b"np", np.int64(PAGE)) == 2
    assert v.read(np.uint32(PAGE), np.int16(2)) == b"np"
    v.commit(np.int32(0), np.uint64(PAGE))
    assert k.vmo_get_size(np.uint32(v.handle)) == (S.NO_ERROR, 3 * PAGE)


# -- stats and lifetimes ------------------------------------------------------------------------
def test_stats(make_kernel):
    """docs/api.md "stats()": "k.stats() returns a dict with at least total_frames, free_frames,
    committed_frames, vmos, handles"; semantics: vmos counts live VMO objects (clones and
    parents kept alive by clones), handles counts live handles of any type."""
    k = make_kernel(memory_size=32 * PAGE)
    s = consistent(k.stats())
    assert isinstance(s, dict)
    assert (s["total_frames"], s["free_frames"], s["committed_frames"], s["vmos"],
            s["handles"]) == (32, 32, 0, 0, 0)
    v = k.create_vmo(4 * PAGE)
    v.commit(0, 2 * PAGE)
    d = v.duplicate()
    c = v.clone()
    c.write(b"z", 3 * PAGE)
    k.event_create()
    s = consistent(k.stats())
    assert (s["free_frames"], s["committed_frames"], s["vmos"], s["handles"]) == (29, 3, 2, 4)
    v.close()
    d.close()
    s = consistent(k.stats())
    assert (s["committed_frames"], s["vmos"], s["handles"]) == (3, 2, 2)
    c.close()
    s = consistent(k.stats())
    assert (s["free_frames"], s["committed_frames"], s["vmos"], s["handles"]) == (32, 0, 0, 1)


def test_clone_keeps_parent_alive(k):
    """Spec 3.7: "closing all parent handles does not change what the clone sees"; semantics
    "Objects": a parent lives while it has a live clone child."""
    parent = k.create_vmo(2 * PAGE)
    parent.write(b"P" * 2 * PAGE)
    child = parent.clone()
    grandchild = child.clone(PAGE)
    parent.close()
    child.close()
    assert k.stats()["vmos"] == 3 and k.stats()["handles"] == 1
    assert grandchild.read(0, PAGE) == b"P" * PAGE
    assert grandchild.committed_bytes == 0
    grandchild.write(b"g")
    assert grandchild.read(0, 2) == b"gP"
    grandchild.close()
    s = consistent(k.stats())
    assert s["vmos"] == 0 and s["free_frames"] == s["total_frames"]


def test_closing_every_handle_returns_every_frame(make_kernel):
    """Semantics "Objects": when an object's last reference goes its pages are freed, then its
    parent reference is dropped -- closing every handle gives back every frame."""
    k = make_kernel(memory_size=64 * PAGE)
    a = k.create_vmo(10 * PAGE)
    a.commit()
    b = a.clone(2 * PAGE, 10 * PAGE)
    b.write(b"b" * 3 * PAGE, 5)
    c = b.clone()
    c.commit(0, 4 * PAGE)
    d = c.duplicate(R.READ | R.DUPLICATE)
    e = k.create_vmo(7)
    e.write(b"1234567")
    e.size = 3
    f = d.clone(PAGE, 3)
    f.commit()
    assert k.stats()["free_frames"] < 64
    for v in (a, c, f, e, b, d):
        v.close()
    s = consistent(k.stats())
    assert s == {**s, "free_frames": 64, "committed_frames": 0, "vmos": 0, "handles": 0}


def test_calls_after_close_raise_value_error(kernel_cls):
    """docs/api.md "The kernel": "any call after close raises ValueError" -- the syscall layer, the
    Pythonic layer and stats()."""
    kk = kernel_cls(memory_size=16 * PAGE)
    v = kk.create_vmo(PAGE)
    h = v.handle
    kk.close()
    calls = [
        lambda: kk.vmo_create(PAGE), lambda: kk.vmo_read(h, bytearray(1), 0),
        lambda: kk.vmo_write(h, b"x", 0), lambda: kk.vmo_get_size(h),
        lambda: kk.vmo_set_size(h, 0), lambda: kk.vmo_op_range(h, Op.COMMIT, 0, PAGE),
        lambda: kk.vmo_clone(h, 1, 0, PAGE), lambda: kk.handle_close(h),
        lambda: kk.handle_duplicate(h, 0), lambda: kk.handle_replace(h, 0),
        lambda: kk.object_get_info(h, 2), lambda: kk.event_create(),
        lambda: kk.create_vmo(PAGE), lambda: kk.stats(),
        lambda: v.size, lambda: v.read(0, 1), lambda: v.write(b"x"), lambda: v.commit(),
        lambda: v.lookup(), lambda: v.clone(), lambda: v.info(), lambda: v.committed_bytes,
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_kernel_constructor_validation(kernel_cls):
    """docs/api.md "The kernel": memory_size and memory_base must be page multiples, else
    ValueError; a base of 0 is allowed (a PC has RAM at 0)."""
    for kwargs in ({"memory_size": PAGE + 1}, {"memory_size": 100},
                   {"memory_size": 16 * PAGE, "memory_base": 0x100001},
                   {"memory_size": 16 * PAGE, "memory_base": 123}):
        with pytest.raises(ValueError):
            kernel_cls(**kwargs)
    with kernel_cls(memory_size=16 * PAGE, memory_base=0) as k:
        assert k.memory_base == 0


def test_kernel_defaults(kernel_cls):
    """docs/api.md "The kernel": "vmo.Kernel(memory_size=1 << 30, *, memory_base=0x100000)": 262144
    frames, first frame at 0x100000; memory_base is keyword-only."""
    kk = kernel_cls()
    try:
        assert kk.stats()["total_frames"] == (1 << 30) // PAGE
        v = kk.create_vmo(PAGE)
        v.commit()
        assert list(v.lookup()) == [0x100000]
        kk._check()
    finally:
        kk.close()
    with pytest.raises(TypeError):
        kernel_cls(16 * PAGE, 0x100000)


def test_kernels_are_independent(make_kernel):
    """docs/api.md "The kernel": "Kernels are independent of each other"."""
    k1 = make_kernel(memory_size=8 * PAGE)
    k2 = make_kernel(memory_size=8 * PAGE, memory_base=0x200000)
    a = k1.create_vmo(PAGE)
    b = k2.create_vmo(2 * PAGE)
    assert a.handle == b.handle == 1
    a.write(b"one")
    b.write(b"two")
    assert a.read(0, 3) == b"one" and b.read(0, 3) == b"two"
    assert list(a.lookup()) == [0x100000] and list(b.lookup(0, 1)) == [0x200000]
    a.close()
    assert b.size == 2 * PAGE
    assert k1.stats()["vmos"] == 0 and k2.stats()["vmos"] == 1


def test_native_endianness_of_lookup(k):
    """docs/api.md "Buffers": LOOKUP writes "native-endian uint64 physical addresses at byte offsets
    0, 8, 16, ..."."""
    v = k.create_vmo(PAGE)
    v.commit()
    buf = bytearray(16)
    v.op_range(Op.LOOKUP, 0, PAGE, buf)
    assert buf == BASE.to_bytes(8, sys.byteorder) + bytes(8)
    assert U64 > BASE
