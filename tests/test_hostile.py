"""Hostile input never crashes, and gives exactly the status docs/semantics.md fixes.

docs/api.md "Syscall layer": the syscall layer "never raise[s] for anything a C caller could pass:
an integer outside its C type's range (negative, or above 2**64-1 / 2**32-1) gives
ERR_INVALID_ARGS". Semantics ("Python-specific argument rules"): non-integers where integers are due
raise TypeError; objects without the buffer protocol raise TypeError; unwritable / non-contiguous
buffers where one is written and lengths past the buffer are ERR_INVALID_ARGS. Small sizes
throughout; the huge-VMO cases must answer without walking 2**52 pages.

Citations "spec X.Y" are sections of docs/magenta.md (so "spec 3.6.4" is docs/magenta.md
3.6.4).
"""

from array import array

import pytest
from conftest import (
    ANY,
    IGNORE,
    MAX,
    PAGE,
    SENTINEL,
    U64,
    clone,
    expect,
    lookup,
    make_event,
    make_vmo,
    read,
    stats,
    write,
)

import vmo

S = vmo.Status
Op = vmo.Op
R = vmo.Rights
SAME = vmo.MX_RIGHT_SAME_RIGHTS

BAD_U64 = [-1, -(2 ** 63), 2 ** 64, 2 ** 64 + PAGE, 2 ** 70]
BAD_U32 = [-1, -(2 ** 63), 2 ** 32, 2 ** 32 + 1, 2 ** 64, 2 ** 70]

# name -> (kind of the argument, call(k, handle, value)); `handle` is a valid VMO handle
INT_ARGS = {
    "vmo_create.size": ("u64", lambda k, h, x: k.vmo_create(x, 0)),
    "vmo_create.options": ("u32", lambda k, h, x: k.vmo_create(PAGE, x)),
    "vmo_read.handle": ("u32", lambda k, h, x: k.vmo_read(x, bytearray(8), 0)),
    "vmo_read.offset": ("u64", lambda k, h, x: k.vmo_read(h, bytearray(8), x)),
    "vmo_read.length": ("u64", lambda k, h, x: k.vmo_read(h, bytearray(8), 0, x)),
    "vmo_write.handle": ("u32", lambda k, h, x: k.vmo_write(x, b"abc", 0)),
    "vmo_write.offset": ("u64", lambda k, h, x: k.vmo_write(h, b"abc", x)),
    "vmo_write.length": ("u64", lambda k, h, x: k.vmo_write(h, b"abc", 0, x)),
    "vmo_get_size.handle": ("u32", lambda k, h, x: k.vmo_get_size(x)),
    "vmo_set_size.handle": ("u32", lambda k, h, x: k.vmo_set_size(x, PAGE)),
    "vmo_set_size.size": ("u64", lambda k, h, x: k.vmo_set_size(h, x)),
    "vmo_op_range.handle": ("u32", lambda k, h, x: k.vmo_op_range(x, Op.COMMIT, 0, PAGE)),
    "vmo_op_range.op": ("u32", lambda k, h, x: k.vmo_op_range(h, x, 0, PAGE)),
    "vmo_op_range.offset": ("u64", lambda k, h, x: k.vmo_op_range(h, Op.COMMIT, x, PAGE)),
    "vmo_op_range.size": ("u64", lambda k, h, x: k.vmo_op_range(h, Op.COMMIT, 0, x)),
    "vmo_op_range.lookup_offset": (
        "u64", lambda k, h, x: k.vmo_op_range(h, Op.LOOKUP, x, PAGE, bytearray(64))),
    "vmo_op_range.lookup_size": (
        "u64", lambda k, h, x: k.vmo_op_range(h, Op.LOOKUP, 0, x, bytearray(64))),
    "vmo_op_range.buffer_size": (
        "u64", lambda k, h, x: k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(64), x)),
    "vmo_op_range.cache_offset": (
        "u64", lambda k, h, x: k.vmo_op_range(h, Op.CACHE_SYNC, x, PAGE)),
    "vmo_clone.handle": ("u32", lambda k, h, x: k.vmo_clone(x, 1, 0, PAGE)),
    "vmo_clone.options": ("u32", lambda k, h, x: k.vmo_clone(h, x, 0, PAGE)),
    "vmo_clone.offset": ("u64", lambda k, h, x: k.vmo_clone(h, 1, x, PAGE)),
    "vmo_clone.size": ("u64", lambda k, h, x: k.vmo_clone(h, 1, 0, x)),
    "handle_close.handle": ("u32", lambda k, h, x: k.handle_close(x)),
    "handle_duplicate.handle": ("u32", lambda k, h, x: k.handle_duplicate(x, SAME)),
    "handle_duplicate.rights": ("u32", lambda k, h, x: k.handle_duplicate(h, x)),
    "handle_replace.handle": ("u32", lambda k, h, x: k.handle_replace(x, SAME)),
    "handle_replace.rights": ("u32", lambda k, h, x: k.handle_replace(h, x)),
    "object_get_info.handle": ("u32", lambda k, h, x: k.object_get_info(x, 2)),
    "object_get_info.topic": ("u32", lambda k, h, x: k.object_get_info(h, x)),
    "event_create.options": ("u32", lambda k, h, x: k.event_create(x)),
}
OUT_OF_RANGE_CASES = [(name, value) for name, (kind, _) in INT_ARGS.items()
                      for value in (BAD_U32 if kind == "u32" else BAD_U64)]


def expect_failure(result, status, name=""):
    """expect() for a failing call: a tuple result must carry value 0 (docs/api.md "Syscall layer"),
    except object_get_info's, whose failure value is tested once in test_check_order."""
    expect(result, status, IGNORE if name.startswith("object_get_info") else ANY)


def snapshot(k, h):
    """What a rejected call must not change."""
    return stats(k), k.vmo_get_size(h), read(k, h, 0, 2 * PAGE), lookup(k, h, 0, PAGE)


@pytest.fixture
def victim(k):
    """A 2-page VMO (handle 1) with page 0 written, and a clone of it."""
    h = make_vmo(k, 2 * PAGE)
    write(k, h, b"\xab" * 100, 0)
    clone(k, h, 0, PAGE)
    return h


# -- integers outside their C type --------------------------------------------------------------
@pytest.mark.parametrize("name,value", OUT_OF_RANGE_CASES,
                         ids=[f"{name}={value}" for name, value in OUT_OF_RANGE_CASES])
def test_out_of_range_integer_is_invalid_args(k, victim, name, value):
    """Semantics: "An integer outside its C type returns ERR_INVALID_ARGS before anything else
    is looked at: handles, options, ops, rights, topics ... are uint32; sizes, offsets and
    lengths are uint64" (docs/api.md "Syscall layer": negative, or above 2**64-1 / 2**32-1). Nothing
    changes."""
    before = snapshot(k, victim)
    result = INT_ARGS[name][1](k, victim, value)
    expect_failure(result, S.ERR_INVALID_ARGS, name)
    assert snapshot(k, victim) == before


@pytest.mark.parametrize("name", [n for n in INT_ARGS if not n.endswith(".handle")
                                  and not n.startswith(("vmo_create", "event_create"))])
def test_out_of_range_integer_before_handle(k, name):
    """Semantics: "... returns ERR_INVALID_ARGS before anything else is looked at" -- even with
    a handle that does not exist (0), the out-of-range integer wins over ERR_BAD_HANDLE."""
    value = -1
    result = INT_ARGS[name][1](k, 0, value)
    expect_failure(result, S.ERR_INVALID_ARGS, name)


def test_integer_boundaries(k, victim):
    """The largest in-range values are not ERR_INVALID_ARGS (semantics: "a handle in [2**31,
    2**32) is ERR_BAD_HANDLE"; 2**64-1 is a valid uint64); 2**32+1 is not truncated to 1."""
    h = victim
    expect(k.vmo_get_size(2 ** 32 - 1), S.ERR_BAD_HANDLE, 0)
    expect(k.vmo_get_size(2 ** 31), S.ERR_BAD_HANDLE, 0)
    expect(k.handle_close(2 ** 31 + 1), S.ERR_BAD_HANDLE)
    expect(k.vmo_read(h, bytearray(8), U64), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_set_size(h, U64), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_create(U64), S.ERR_NO_MEMORY, 0)
    expect(k.vmo_op_range(h, Op.COMMIT, U64, 0), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, 2 ** 32 - 1, 0, PAGE), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, 2 ** 32 + 1, 0, PAGE), S.ERR_INVALID_ARGS)  # not COMMIT
    assert stats(k)["committed_frames"] == 1
    expect(k.vmo_clone(h, 2 ** 32 + 1, 0, PAGE), S.ERR_INVALID_ARGS, 0)  # not COW
    expect(k.vmo_clone(h, 2 ** 32 - 1, 0, PAGE), S.NO_ERROR)
    expect(k.object_get_info(h, 2 ** 32 + 1), S.ERR_INVALID_ARGS, IGNORE)  # not HANDLE_VALID
    expect(k.object_get_info(h, 2 ** 32 - 1), S.ERR_NOT_SUPPORTED, IGNORE)
    expect(k.handle_duplicate(h, 2 ** 32 + SAME), S.ERR_INVALID_ARGS, 0)  # not SAME_RIGHTS
    expect(k.handle_duplicate(h, 2 ** 32 - 1), S.ERR_INVALID_ARGS, 0)  # not a subset


def test_bool_and_index_objects_are_integers(k, victim):
    """Semantics: "Integer arguments are converted with operator.index: int, bool, numpy
    integers work"."""
    class Index:
        def __index__(self):
            return 1

    expect(k.vmo_get_size(True), S.NO_ERROR, 2 * PAGE)  # handle 1
    expect(k.vmo_get_size(Index()), S.NO_ERROR, 2 * PAGE)
    expect(k.vmo_read(victim, bytearray(4), False), S.NO_ERROR, 4)
    expect(k.vmo_op_range(victim, True, 0, PAGE), S.NO_ERROR)  # op 1 = COMMIT


# -- non-integers -------------------------------------------------------------------------------
NON_INTS = [1.0, 0.0, float("nan"), "1", b"1", 1j, [1]]
TYPE_CASES = [(name, bad) for name in INT_ARGS for bad in NON_INTS + [None]
              if not (bad is None and name in ("vmo_read.length", "vmo_write.length",
                                               "vmo_op_range.buffer_size"))]


@pytest.mark.parametrize("name,bad", TYPE_CASES,
                         ids=[f"{name}={bad!r}" for name, bad in TYPE_CASES])
def test_non_integer_raises_type_error(k, victim, name, bad):
    """Semantics: "anything else (float, str, None where an integer is due) raises TypeError"
    (None is a legal value only for the optional length/buffer_size). Nothing changes."""
    before = snapshot(k, victim)
    with pytest.raises(TypeError):
        INT_ARGS[name][1](k, victim, bad)
    assert snapshot(k, victim) == before


def test_none_length_means_buffer_size(k, victim):
    """docs/api.md "Buffers": "length (and LOOKUP's buffer_size) default to the buffer's size in
    bytes"."""
    expect(k.vmo_read(victim, bytearray(10), 0, None), S.NO_ERROR, 10)
    expect(k.vmo_write(victim, b"xyz", 0, None), S.NO_ERROR, 3)
    buf = array("Q", [SENTINEL] * 2)
    expect(k.vmo_op_range(victim, Op.LOOKUP, 0, PAGE, buf, None), S.NO_ERROR)
    assert buf[1] == SENTINEL


# -- buffers ------------------------------------------------------------------------------------
NOT_BUFFERS = ["abcd", [0] * 8, 12, 1.5, object(), {1: 2}, (1, 2)]


@pytest.mark.parametrize("obj", NOT_BUFFERS, ids=repr)
def test_non_buffer_objects_raise_type_error(k, victim, obj):
    """Semantics: "A buffer is any object with the buffer protocol. An object without it raises
    TypeError" -- for vmo_read, vmo_write and LOOKUP. Nothing changes."""
    before = snapshot(k, victim)
    with pytest.raises(TypeError):
        k.vmo_read(victim, obj, 0)
    with pytest.raises(TypeError):
        k.vmo_write(victim, obj, 0)
    with pytest.raises(TypeError):
        k.vmo_op_range(victim, Op.LOOKUP, 0, PAGE, obj)
    assert snapshot(k, victim) == before


def read_only_buffers():
    out = [bytes(64), memoryview(bytes(64)), memoryview(bytearray(64)).toreadonly()]
    try:
        import numpy as np
    except ImportError:
        return out
    arr = np.zeros(8, dtype=np.uint64)
    arr.flags.writeable = False
    return out + [arr]


@pytest.mark.parametrize("buf", read_only_buffers(), ids=lambda b: type(b).__name__)
def test_read_only_buffer_is_invalid_args(k, victim, buf):
    """docs/api.md "Buffers": "a read-only buffer where one is written" is ERR_INVALID_ARGS --
    vmo_read's output (value 0, checked before the range: semantics) and LOOKUP's buffer."""
    expect(k.vmo_read(victim, buf, 0), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_read(victim, buf, 0, 1), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_read(victim, buf, 100 * PAGE), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_op_range(victim, Op.LOOKUP, 0, PAGE, buf), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(victim, Op.LOOKUP, 0, 0, buf), S.ERR_INVALID_ARGS)
    expect(k.vmo_read(victim, buf, 0, 0), S.NO_ERROR, 0)  # length 0 touches nothing
    assert bytes(memoryview(buf)) == bytes(64)
    expect(k.vmo_write(victim, buf, PAGE), S.NO_ERROR, 64)  # fine as a source


def strided_buffers():
    out = [memoryview(bytearray(128))[::2]]
    try:
        import numpy as np
    except ImportError:
        return out
    return out + [np.zeros(16, dtype=np.uint64)[::2], np.zeros((8, 16), dtype=np.uint8)[:, :8]]


@pytest.mark.parametrize("buf", strided_buffers(), ids=lambda b: type(b).__name__)
def test_non_contiguous_buffer_is_invalid_args(k, victim, buf):
    """Semantics: "Where the buffer will be written, an exporter that refuses a writable
    contiguous view (read-only, non-contiguous) is ERR_INVALID_ARGS"."""
    expect(k.vmo_read(victim, buf, 0), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_op_range(victim, Op.LOOKUP, 0, PAGE, buf), S.ERR_INVALID_ARGS)
    expect(k.vmo_read(victim, buf, 0, 0), S.NO_ERROR, 0)
    assert not any(bytes(memoryview(buf).tobytes()))


def test_length_past_buffer_is_invalid_args(k, victim):
    """docs/api.md "Buffers": "length (and LOOKUP's buffer_size) ... a value larger than the buffer
    is ERR_INVALID_ARGS (C's invalid pointer)" -- lengths are in bytes, not items."""
    h = victim
    before = snapshot(k, h)
    expect(k.vmo_read(h, bytearray(8), 0, 9), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_read(h, bytearray(8), 0, U64), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_read(h, None, 0, 1), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_write(h, b"abc", 0, 4), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_write(h, b"abc", 100 * PAGE, 4), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_write(h, None, 0, 1), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(8), 9), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(8), U64), S.ERR_INVALID_ARGS)
    words = array("I", [0] * 4)  # 16 bytes
    expect(k.vmo_read(h, words, 0, 17), S.ERR_INVALID_ARGS, 0)
    assert snapshot(k, h) == before
    expect(k.vmo_read(h, words, 0), S.NO_ERROR, 16)
    expect(k.vmo_read(h, words, 0, 16), S.NO_ERROR, 16)
    assert words.tobytes() == b"\xab" * 16


def test_none_buffer_is_a_null_pointer(k, victim):
    """Semantics: "None is accepted as an empty buffer, like a C null pointer": zero-length
    reads and writes succeed; LOOKUP with None is ERR_INVALID_ARGS."""
    expect(k.vmo_read(victim, None, 0), S.NO_ERROR, 0)
    expect(k.vmo_write(victim, None, 0), S.NO_ERROR, 0)
    expect(k.vmo_read(victim, None, 2 * PAGE + 1), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_op_range(victim, Op.LOOKUP, 0, PAGE, None), S.ERR_INVALID_ARGS)


def test_sliced_views_touch_only_their_slice(k, victim):
    """A writable contiguous slice of a larger buffer is filled exactly in place."""
    backing = bytearray(b"\x00" * 32)
    view = memoryview(backing)[8:16]
    expect(k.vmo_read(victim, view, 0), S.NO_ERROR, 8)
    assert backing == bytes(8) + b"\xab" * 8 + bytes(16)


def test_buffer_aliasing_vmo_data(k, victim):
    """Writing from and reading into the same bytearray is well defined."""
    buf = bytearray(b"0123456789")
    expect(k.vmo_write(victim, buf, 5), S.NO_ERROR, 10)
    expect(k.vmo_read(victim, buf, 0), S.NO_ERROR, 10)
    assert buf == b"\xab" * 5 + b"01234"


# -- handles ------------------------------------------------------------------------------------
HANDLE_CALLS = {
    "vmo_read": lambda k, x: k.vmo_read(x, bytearray(8), 0),
    "vmo_write": lambda k, x: k.vmo_write(x, b"x", 0),
    "vmo_get_size": lambda k, x: k.vmo_get_size(x),
    "vmo_set_size": lambda k, x: k.vmo_set_size(x, 0),
    "vmo_op_range": lambda k, x: k.vmo_op_range(x, Op.COMMIT, 0, PAGE),
    "vmo_clone": lambda k, x: k.vmo_clone(x, 1, 0, PAGE),
    "handle_close": lambda k, x: k.handle_close(x),
    "handle_duplicate": lambda k, x: k.handle_duplicate(x, SAME),
    "handle_replace": lambda k, x: k.handle_replace(x, SAME),
    "object_get_info": lambda k, x: k.object_get_info(x, 1),
}
BAD_HANDLES = [0, 2, 4, 1 << 20, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 2, 2 ** 32 - 1,
               5, 7, 524289]


@pytest.mark.parametrize("call", list(HANDLE_CALLS))
def test_bad_handle_values(k, victim, call):
    """Semantics "Handles": values are (((generation << 18) | slot) << 1) | 1; 0, even values,
    values never handed out and [2**31, 2**32) are ERR_BAD_HANDLE (spec 3.0 step 1). The live
    handles are 1 (the VMO) and 3 (its clone)."""
    before = snapshot(k, victim)
    for bad in BAD_HANDLES:
        expect_failure(HANDLE_CALLS[call](k, bad), S.ERR_BAD_HANDLE, call)
    assert snapshot(k, victim) == before


@pytest.mark.parametrize("call", list(HANDLE_CALLS))
def test_stale_handles(k, call):
    """Spec 3.8: a closed handle is ERR_BAD_HANDLE; semantics: after its slot is reused the old
    value (older generation) stays invalid."""
    h = make_vmo(k, PAGE)
    e = make_event(k)
    expect(k.handle_close(h), S.NO_ERROR)
    expect(k.handle_close(e), S.NO_ERROR)
    for stale in (h, e):
        expect_failure(HANDLE_CALLS[call](k, stale), S.ERR_BAD_HANDLE, call)
    n = make_vmo(k, PAGE)  # reuses e's slot (LIFO) with the next generation
    m = make_vmo(k, PAGE)  # reuses h's slot
    assert (n, m) == ((((1 << 18) | 1) << 1) | 1, ((1 << 18) << 1) | 1)
    for stale in (h, e):
        expect_failure(HANDLE_CALLS[call](k, stale), S.ERR_BAD_HANDLE, call)
    expect(k.vmo_get_size(m), S.NO_ERROR, PAGE)


def test_generation_wraps_mod_4096(k):
    """Semantics "Handles": "Each slot has a 12-bit generation, incremented (mod 4096) every time
    the slot is freed" -- after 4096 frees of slot 0 its first value comes back."""
    seen = []
    for _ in range(4096):
        h = make_vmo(k, 1)
        seen.append(h)
        expect(k.handle_close(h), S.NO_ERROR)
    assert seen[:2] == [1, 524289]
    assert seen[-1] == (((4095 << 18) | 0) << 1) | 1
    assert len(set(seen)) == 4096 and all(0 < h < 2 ** 31 and h % 2 for h in seen)
    assert make_vmo(k, 1) == 1


def test_another_kernels_handles(make_kernel):
    """docs/api.md "The kernel": "Kernels are independent of each other": a handle of one kernel
    means nothing in a fresh one, and the same value in another kernel names that kernel's own
    object."""
    k1 = make_kernel(memory_size=16 * PAGE)
    k2 = make_kernel(memory_size=16 * PAGE)
    h = make_vmo(k1, 3 * PAGE)
    for call in HANDLE_CALLS.values():
        expect(call(k2, h), S.ERR_BAD_HANDLE, IGNORE)
    h2 = make_vmo(k2, 5)
    assert h2 == h
    expect(k2.vmo_get_size(h), S.NO_ERROR, 5)
    expect(k1.vmo_get_size(h), S.NO_ERROR, 3 * PAGE)
    expect(k2.handle_close(h), S.NO_ERROR)
    expect(k1.vmo_get_size(h), S.NO_ERROR, 3 * PAGE)


def test_wrong_type_everywhere(k):
    """Spec 3.0: an event handle passed to each VMO call -> ERR_WRONG_TYPE (it holds READ and
    WRITE, so the rights checks pass first)."""
    e = make_event(k)
    expect(k.vmo_read(e, bytearray(8), 0), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_write(e, b"x", 0), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_get_size(e), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_set_size(e, 0), S.ERR_WRONG_TYPE)
    expect(k.vmo_op_range(e, Op.COMMIT, 0, PAGE), S.ERR_WRONG_TYPE)
    expect(k.vmo_clone(e, 1, 0, PAGE), S.ERR_WRONG_TYPE, 0)
    assert stats(k)["vmos"] == 0


# -- calls after close --------------------------------------------------------------------------
def test_syscalls_after_close_raise_value_error(kernel_cls):
    """docs/api.md "The kernel": "any call after close raises ValueError" -- also with otherwise
    valid, bad or stale arguments."""
    kk = kernel_cls(memory_size=16 * PAGE)
    h = make_vmo(kk, PAGE)
    kk.close()
    for call in HANDLE_CALLS.values():
        for value in (h, 0, 2):
            with pytest.raises(ValueError):
                call(kk, value)
    with pytest.raises(ValueError):
        kk.vmo_create(PAGE)
    with pytest.raises(ValueError):
        kk.event_create()
    with pytest.raises(ValueError):
        kk.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(8))


# -- huge ranges on small machines --------------------------------------------------------------
@pytest.fixture
def huge(make_kernel):
    """A MX_VMO_MAX_SIZE VMO on a 16-frame machine, with 3 pages written: first, one in the
    middle, last."""
    k = make_kernel(memory_size=16 * PAGE)
    h = make_vmo(k, MAX)
    write(k, h, b"first", 0)
    write(k, h, b"middle", 1 << 40)
    expect(k.vmo_write(h, b"last!", MAX - 5), S.NO_ERROR, 5)
    return k, h


def test_huge_commit_everything_no_memory(huge):
    """Spec 3.6.1 step 4-5: COMMIT of a MAX_SIZE VMO on a 16-frame machine counts 2**52-3
    missing pages and fails with ERR_NO_MEMORY, all or nothing -- without walking them."""
    k, h = huge
    before = stats(k)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, MAX), S.ERR_NO_MEMORY)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, U64), S.ERR_NO_MEMORY)
    expect(k.vmo_op_range(h, Op.COMMIT, PAGE, 1 << 62), S.ERR_NO_MEMORY)
    assert stats(k) == before
    assert read(k, h, 0, 5) == b"first"
    c = clone(k, h, 0, MAX)
    expect(k.vmo_op_range(c, Op.COMMIT, 0, MAX), S.ERR_NO_MEMORY)
    c2 = clone(k, c, 0, MAX)
    expect(k.vmo_op_range(c2, Op.COMMIT, 0, U64), S.ERR_NO_MEMORY)
    assert stats(k) == {**before, "vmos": 3, "handles": 3}


def test_huge_lookup_small_buffer(huge):
    """Spec 3.6.4 step 2: LOOKUP of a huge range with a small buffer -> ERR_BUFFER_TOO_SMALL,
    computed, not walked; a small LOOKUP at the far end works."""
    k, h = huge
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, MAX, bytearray(8)), S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, PAGE, MAX - PAGE, array("Q", [0] * 16)),
           S.ERR_BUFFER_TOO_SMALL)
    st, entries = lookup(k, h, MAX - PAGE, PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [0x100000 + 2 * PAGE]
    st, entries = lookup(k, h, 1 << 40, 2 * PAGE)
    expect(st, S.ERR_NO_MEMORY)
    assert entries == [0x100000 + PAGE, SENTINEL]


def test_huge_cache_ops_and_decommit(huge):
    """Spec 3.6.5: cache ops over the whole MAX_SIZE VMO skip the uncommitted pages; spec 3.6.2:
    DECOMMIT(0, UINT64_MAX) frees the 3 pages -- both must not walk 2**52 pages."""
    k, h = huge
    for op in (Op.CACHE_SYNC, Op.CACHE_INVALIDATE, Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE):
        expect(k.vmo_op_range(h, op, 0, MAX), S.NO_ERROR)
    assert stats(k)["committed_frames"] == 3
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, U64), S.NO_ERROR)
    assert stats(k)["committed_frames"] == 0
    assert read(k, h, MAX - 5, 100) == bytes(5)


def test_huge_shrink_close_and_clone(huge):
    """Spec 3.5 / 3.7 / 3.8 at the far end of 2**64: a clone at offset MAX-PAGE sees the last
    page; shrinking frees the far pages; closing frees everything."""
    k, h = huge
    c = clone(k, h, MAX - PAGE, PAGE)
    assert read(k, c, PAGE - 5, 5) == b"last!"
    expect(k.vmo_set_size(h, PAGE), S.NO_ERROR)
    assert stats(k)["committed_frames"] == 1
    assert read(k, c, 0, PAGE) == bytes(PAGE)
    expect(k.vmo_set_size(h, MAX), S.NO_ERROR)
    assert read(k, h, 1 << 40, 6) == bytes(6)
    expect(k.handle_close(h), S.NO_ERROR)
    expect(k.handle_close(c), S.NO_ERROR)
    s = stats(k)
    assert s["free_frames"] == 16 and s["vmos"] == 0


@pytest.mark.memory_size(16 * 4096)
def test_write_when_memory_is_exhausted(k):
    """Spec 3.3 / semantics: with no free frame a write fails with ERR_NO_MEMORY and actual 0;
    reads and cache ops still work (they never allocate)."""
    a = make_vmo(k, 16 * PAGE)
    expect(k.vmo_op_range(a, Op.COMMIT, 0, 16 * PAGE), S.NO_ERROR)
    b = make_vmo(k, PAGE)
    c = clone(k, a, 0, 16 * PAGE)
    expect(k.vmo_write(b, b"x", 0), S.ERR_NO_MEMORY, 0)
    expect(k.vmo_write(c, b"x", 0), S.ERR_NO_MEMORY, 0)
    expect(k.vmo_op_range(c, Op.COMMIT, 0, PAGE), S.ERR_NO_MEMORY)
    assert read(k, c, 0, PAGE) == bytes(PAGE)
    expect(k.vmo_op_range(c, Op.CACHE_CLEAN, 0, 16 * PAGE), S.NO_ERROR)
    expect(k.vmo_write(a, b"fine", 0), S.NO_ERROR, 4)  # its own pages need nothing
    assert read(k, c, 0, 4) == b"fine"


def test_object_pointer_buffers_are_never_written(k):
    """A buffer of Python object pointers (numpy dtype=object, or a structured dtype with an
    object field) is refused where bytes would be written into it (vmo_read, LOOKUP):
    ERR_INVALID_ARGS, never a crash (docs/semantics.md)."""
    np = pytest.importorskip("numpy")
    h = make_vmo(k, PAGE)
    expect(k.vmo_write(h, b"\xff" * PAGE, 0), S.NO_ERROR, PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, PAGE), S.NO_ERROR)
    objects = np.array([None, "x", 3, 4.5], dtype=object)
    expect(k.vmo_read(h, objects, 0), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, objects), S.ERR_INVALID_ARGS)
    records = np.zeros(2, dtype=[("n", "u8"), ("o", "O")])
    expect(k.vmo_read(h, records, 0), S.ERR_INVALID_ARGS, 0)
    assert list(objects) == [None, "x", 3, 4.5]


OBJECT_BUFFERS = [
    "np.array([None, 'x', 3, 4.5], dtype=object)",
    "np.zeros(2, dtype=[('n', 'u8'), ('o', 'O')])",
    "memoryview(np.array([None] * 4, dtype=object))",
]


@pytest.mark.parametrize("source", OBJECT_BUFFERS)
def test_object_pointer_buffers_are_never_read_into_memory(k, source):
    """The other direction: bytes taken from a buffer of Python object pointers would be the
    host's heap addresses, which must never reach simulated memory (two runs of one program
    would differ, and a device, a trace or a snapshot would carry them on). Every call that
    takes data refuses them with ERR_INVALID_ARGS where it checks its buffer, after the
    handle checks, and changes nothing (docs/semantics.md "Python-specific argument
    rules")."""
    np = pytest.importorskip("numpy")
    objects = eval(source, {"np": np})
    h = make_vmo(k, 2 * PAGE)
    ro = make_vmo(k, PAGE)
    ro = expect(k.handle_replace(ro, vmo.MX_RIGHT_READ), S.NO_ERROR)
    before = stats(k)
    # vmo_write: the handle checks come first, then the buffer, then the range.
    expect(k.vmo_write(h, objects, 0), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_write(h, objects, 0, 8), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_write(h, objects, 1 << 40), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_write(0x7FFF_FFFF, objects, 0), S.ERR_BAD_HANDLE, 0)
    expect(k.vmo_write(ro, objects, 0), S.ERR_ACCESS_DENIED, 0)
    # A zero-length write touches no byte of the buffer: nothing to refuse (as for reads).
    expect(k.vmo_write(h, objects, 0, 0), S.NO_ERROR, 0)
    assert stats(k) == before
    assert read(k, h, 0, 2 * PAGE) == bytes(2 * PAGE)
    # The Pythonic layer raises it.
    v = k.vmo(h)
    with pytest.raises(vmo.MxError) as info:
        v.write(objects, 0)
    assert info.value.status is S.ERR_INVALID_ARGS
    # phys_write: the device side refuses them too, and writes nothing.
    write(k, h, b"\x5a" * PAGE, 0)
    paddr = lookup(k, h, 0, PAGE)[1][0]
    with pytest.raises(vmo.MxError) as info:
        k.phys_write(paddr, objects)
    assert info.value.status is S.ERR_INVALID_ARGS
    assert k.phys_read(paddr, PAGE) == b"\x5a" * PAGE
    assert read(k, h, 0, PAGE) == b"\x5a" * PAGE


def test_object_pointer_refusal_reads_field_names_right(k):
    """Only the item codes count: a structured dtype whose field *name* holds an "O" is plain
    bytes and is accepted both ways."""
    np = pytest.importorskip("numpy")
    plain = np.zeros(4, dtype=[("Obj", "u8")])
    plain["Obj"] = [0, 1, 2, 3]
    h = make_vmo(k, PAGE)
    expect(k.vmo_write(h, plain, 0), S.NO_ERROR, 32)
    back = np.zeros(4, dtype=[("Obj", "u8")])
    expect(k.vmo_read(h, back, 0), S.NO_ERROR, 32)
    assert list(back["Obj"]) == [0, 1, 2, 3]
