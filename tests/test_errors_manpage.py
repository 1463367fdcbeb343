"""Every error of the ERRORS section of Magenta's vmo_op_range man page, via `k.vmo_op_range`.

Man page: Magenta's `docs/syscalls/vmo_op_range.md` as of 2017-04-14 (the text the project
started from), section ERRORS. Where the implementation the project follows differs from the
page's wording (spec 6.1), the docstring says so and the test follows the implementation (spec
section 3), as docs/api.md "Normative era" requires.

Citations "spec X.Y" are sections of docs/magenta.md (so "spec 3.6.4" is docs/magenta.md
3.6.4).
"""

from array import array

import pytest
from conftest import PAGE, U64, expect, lookup, make_event, make_vmo, stats

import vmo

S = vmo.Status
Op = vmo.Op
ALL_OPS = list(Op)
RANGE_OPS = [Op.COMMIT, Op.DECOMMIT, Op.LOOKUP, Op.CACHE_SYNC, Op.CACHE_INVALIDATE,
             Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE]
CACHE_OPS = [Op.CACHE_SYNC, Op.CACHE_INVALIDATE, Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE]


def _buf(entries=8):
    return array("Q", [0] * entries)


# -- ERR_BAD_HANDLE -----------------------------------------------------------------------------
@pytest.mark.parametrize("op", ALL_OPS + [0, 10])
def test_bad_handle_invalid_value(k, op):
    """Man page: "ERR_BAD_HANDLE  *handle* is not a valid handle." -- handle 0 and values never
    handed out, for every op (and for invalid ops: the handle is resolved first, spec 3.6)."""
    make_vmo(k, PAGE)  # handle 1 exists; these do not
    for handle in (0, 2, 3, 5, 0x7FFF_FFFF):
        expect(k.vmo_op_range(handle, op, 0, PAGE, _buf()), S.ERR_BAD_HANDLE)


@pytest.mark.parametrize("op", ALL_OPS)
def test_bad_handle_closed(k, op):
    """Man page ERR_BAD_HANDLE: a closed handle is no longer valid (docs/api.md "Syscall layer": "a
    closed handle is ERR_BAD_HANDLE")."""
    h = make_vmo(k, PAGE)
    expect(k.handle_close(h), S.NO_ERROR)
    expect(k.vmo_op_range(h, op, 0, PAGE, _buf()), S.ERR_BAD_HANDLE)


# -- ERR_OUT_OF_RANGE ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", RANGE_OPS)
def test_out_of_range_offset_past_end(k, op):
    """Man page: "ERR_OUT_OF_RANGE  An invalid memory range specified by *offset* and *size*."
    An offset past the VMO's end is invalid for every range op (spec 3.6.6 column
    "offset > vmo_size")."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, op, 4 * PAGE + 1, 1, _buf()), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, op, 8 * PAGE, PAGE, _buf()), S.ERR_OUT_OF_RANGE)


@pytest.mark.parametrize("op", RANGE_OPS)
def test_out_of_range_wrapping(k, op):
    """Man page ERR_OUT_OF_RANGE: offset+size wrapping past 2**64 is an invalid range for
    every range op (spec 3.6.1 "COMMIT(1, UINT64_MAX) -> OUT_OF_RANGE (wraps)"). For LOOKUP
    the wrapped table size is 0 entries, so the buffer check passes and the range check
    fires (spec 3.6.4 step 2)."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, op, 1, U64, _buf()), S.ERR_OUT_OF_RANGE)
    assert stats(k)["committed_frames"] == 0


@pytest.mark.parametrize("op", [Op.LOOKUP] + CACHE_OPS)
def test_out_of_range_past_end_strict_ops(k, op):
    """Man page ERR_OUT_OF_RANGE; spec 6.1: "LOOKUP/cache ops fail when offset+size > VMO
    size" (InRange, no trimming)."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h, op, 0, 4 * PAGE + 1, _buf(5)), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, op, 3 * PAGE, PAGE + 1, _buf(5)), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, op, 4 * PAGE, 1, _buf(5)), S.ERR_OUT_OF_RANGE)


@pytest.mark.parametrize("op", [Op.COMMIT, Op.DECOMMIT])
def test_past_end_is_trimmed_for_commit_decommit(k, op):
    """Man page ERR_OUT_OF_RANGE, as implemented (spec 6.1): "COMMIT/DECOMMIT only fail when
    offset > size or offset+size wraps (otherwise silently trimmed)"."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, op, 0, 4 * PAGE + 1), S.NO_ERROR)
    expect(k.vmo_op_range(h, op, 4 * PAGE, PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h, op, 0, U64), S.NO_ERROR)


# -- ERR_NO_MEMORY ------------------------------------------------------------------------------
@pytest.mark.memory_size(16 * PAGE)
def test_no_memory_commit(k):
    """Man page: "ERR_NO_MEMORY  Allocations to commit pages for *MX_VMO_OP_COMMIT* failed."
    A 16-frame machine cannot commit 17 pages; nothing is kept (spec 3.6.1 step 5)."""
    h = make_vmo(k, 17 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 17 * PAGE), S.ERR_NO_MEMORY)
    s = stats(k)
    assert s["free_frames"] == 16 and s["committed_frames"] == 0
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 16 * PAGE), S.NO_ERROR)
    assert stats(k)["free_frames"] == 0


def test_no_memory_lookup_uncommitted(k):
    """Beyond the man page's ERR_NO_MEMORY text (spec 6.1): "also returned by LOOKUP over any
    uncommitted page (tested)"."""
    h = make_vmo(k, 4 * PAGE)
    st, _ = lookup(k, h, 0, 4 * PAGE)
    expect(st, S.ERR_NO_MEMORY)


# -- ERR_WRONG_TYPE -----------------------------------------------------------------------------
@pytest.mark.parametrize("op", ALL_OPS + [0, 10])
def test_wrong_type(k, op):
    """Man page: "ERR_WRONG_TYPE  *handle* is not a VMO handle." -- an event handle, for every
    op (op_range resolves the handle, then the type, before the op; spec 3.6)."""
    e = make_event(k)
    expect(k.vmo_op_range(e, op, 0, PAGE, _buf()), S.ERR_WRONG_TYPE)
    expect(k.vmo_op_range(e, op, 0, 0, None), S.ERR_WRONG_TYPE)


@pytest.mark.parametrize("op", ALL_OPS)
def test_wrong_type_rights_not_checked(k, op):
    """Man page ERR_WRONG_TYPE; no ERR_ACCESS_DENIED is listed because op_range checks no
    rights (spec 6.1): an event handle with no rights still gives ERR_WRONG_TYPE."""
    e = make_event(k)
    e0 = expect(k.handle_duplicate(e, 0), S.NO_ERROR)
    expect(k.vmo_op_range(e0, op, 0, PAGE, _buf()), S.ERR_WRONG_TYPE)


# -- ERR_INVALID_ARGS ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", [0, 10, 11, 255, 0x7FFF_FFFF, 0xFFFF_FFFF])
def test_invalid_args_bad_op(k, op):
    """Man page: "ERR_INVALID_ARGS ... *op* is not a valid operation" (spec 2.1: any other op
    value, 0 or >= 10), whatever the range."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, op, 0, PAGE), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, op, 0, 0), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, op, 1, U64), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, op, 8 * PAGE, 1, _buf()), S.ERR_INVALID_ARGS)


def test_invalid_args_lookup_null_buffer(k):
    """Man page: "ERR_INVALID_ARGS ... *op* is *MX_VMO_LOOPUP* and *buffer* is an invalid
    pointer" -- buffer=None is C's null pointer (docs/api.md "Buffers"), checked before anything
    else, even with size 0 or an invalid range (spec 3.6.4 step 1)."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, None), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, None, 0), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 0, None), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 1, U64, None), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 1 << 40, None), S.ERR_INVALID_ARGS)


def test_invalid_args_lookup_unwritable_buffer(k):
    """Man page ERR_INVALID_ARGS, "*buffer* is an invalid pointer": a read-only buffer and a
    buffer_size larger than the buffer are C's invalid pointer (docs/api.md "Buffers")."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytes(8)), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, memoryview(bytes(64))), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(8), 9), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(8), 8), S.NO_ERROR)


@pytest.mark.parametrize("op", CACHE_OPS)
def test_invalid_args_cache_size_zero(k, op):
    """Man page: "ERR_INVALID_ARGS ... or *size* is zero and *op* is a cache operation."
    Checked before the range (spec 3.6.5 step 1), so an out-of-range offset with size 0 is
    still ERR_INVALID_ARGS."""
    h = make_vmo(k, 4 * PAGE)
    for offset in (0, 100, 4 * PAGE, 4 * PAGE + 1, U64):
        expect(k.vmo_op_range(h, op, offset, 0), S.ERR_INVALID_ARGS)


@pytest.mark.parametrize("op", [Op.COMMIT, Op.DECOMMIT])
def test_size_zero_commit_decommit_is_no_error(k, op):
    """The man page lists size 0 as invalid only for cache ops; spec 6.1: "COMMIT/DECOMMIT
    size 0 -> NO_ERROR"."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, op, 0, 0), S.NO_ERROR)
    expect(k.vmo_op_range(h, op, 4 * PAGE, 0), S.NO_ERROR)
    assert stats(k)["committed_frames"] == 0


def test_size_zero_lookup_is_invalid_args(k):
    """Spec 6.1: "LOOKUP size 0 -> ERR_INVALID_ARGS (after null-buffer and buffer-size
    checks)"."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 0, _buf()), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 0, bytearray(0)), S.ERR_INVALID_ARGS)


@pytest.mark.parametrize("op", [Op.COMMIT, Op.DECOMMIT, Op.LOCK, Op.UNLOCK] + CACHE_OPS)
def test_out_pointer_clause_does_not_apply(k, op):
    """Man page: "ERR_INVALID_ARGS *out* is an invalid pointer" -- spec 6.1: "there is no
    `out` parameter (copy-paste); the buffer is only null-checked for LOOKUP". Other ops
    ignore buffer and buffer_size entirely (docs/semantics.md: "not even inspected")."""
    h = make_vmo(k, 4 * PAGE)
    want = S.ERR_NOT_SUPPORTED if op in (Op.LOCK, Op.UNLOCK) else S.NO_ERROR
    for buffer in (None, bytes(8), bytearray(0), "not a buffer", [1, 2, 3], object()):
        expect(k.vmo_op_range(h, op, 0, PAGE, buffer), want)


# -- ERR_NOT_SUPPORTED --------------------------------------------------------------------------
@pytest.mark.parametrize("op", [Op.LOCK, Op.UNLOCK])
def test_not_supported_lock_unlock(k, op):
    """Man page: "ERR_NOT_SUPPORTED  *op* was *MX_VMO_OP_LOCK* or *MX_VMO_OP_UNLOCK*."
    Unconditional after a valid VMO handle, whatever the range or buffer (spec 3.6.3)."""
    h = make_vmo(k, 4 * PAGE)
    for offset, size in ((0, PAGE), (0, 0), (4 * PAGE + 1, 1), (1, U64), (U64, U64),
                         (0, 4 * PAGE + 1)):
        expect(k.vmo_op_range(h, op, offset, size), S.ERR_NOT_SUPPORTED)
        expect(k.vmo_op_range(h, op, offset, size, None, 0), S.ERR_NOT_SUPPORTED)
    assert stats(k)["committed_frames"] == 0


@pytest.mark.parametrize("op", [Op.LOCK, Op.UNLOCK])
def test_not_supported_after_handle_checks(k, op):
    """Man page ERR_NOT_SUPPORTED comes after the handle is validated (spec 3.6.3 "after a
    valid VMO handle"): bad handle -> ERR_BAD_HANDLE, event -> ERR_WRONG_TYPE."""
    expect(k.vmo_op_range(0, op, 0, PAGE), S.ERR_BAD_HANDLE)
    expect(k.vmo_op_range(make_event(k), op, 0, PAGE), S.ERR_WRONG_TYPE)


# -- errors the man page omits (spec 6.1) --------------------------------------------------------
def test_buffer_too_small_not_listed_but_returned(k):
    """Spec 6.1: "no ERR_BUFFER_TOO_SMALL listed | LOOKUP returns it when buffer_size <
    8*pages; checked before range validity". LOOKUP never truncates to buffer_size ("stores up
    to buffer_size bytes" in the man page is wrong): the buffer is left untouched."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    buf = array("Q", [7, 7, 7])
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 4 * PAGE, buf), S.ERR_BUFFER_TOO_SMALL)
    assert list(buf) == [7, 7, 7]
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 4 * PAGE + 1, _buf(4)), S.ERR_BUFFER_TOO_SMALL)


@pytest.mark.parametrize("op", RANGE_OPS + [Op.LOCK, Op.UNLOCK])
def test_no_access_denied_ever(k, op):
    """Spec 6.1: "no ERR_ACCESS_DENIED listed | correct in effect: op_range checks no rights at
    all". A handle with rights 0 gets the same results as a full one."""
    h = make_vmo(k, 4 * PAGE)
    h0 = expect(k.handle_duplicate(h, 0), S.NO_ERROR)
    expect(k.vmo_op_range(h0, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    want = S.ERR_NOT_SUPPORTED if op in (Op.LOCK, Op.UNLOCK) else S.NO_ERROR
    expect(k.vmo_op_range(h0, op, 0, PAGE, _buf()), want)
