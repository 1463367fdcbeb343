"""The check order and semantics of every call of docs/magenta.md section 3, via the syscalls.

Each test's docstring cites the section of docs/magenta.md it checks as "spec X.Y" (so "spec
3.6.4" is docs/magenta.md 3.6.4); where Magenta leaves room, docs/semantics.md decides (cited
as "semantics"). The two exceptions to the normative era (docs/api.md "Normative era":
DECOMMIT's start rounded down; COMMIT on a clone copying the parent's data) are tested as
docs/api.md states them.
"""

import sys
from array import array

import pytest
from conftest import (
    BASE,
    IGNORE,
    MAX,
    PAGE,
    SENTINEL,
    U64,
    clone,
    dup,
    expect,
    lookup,
    make_event,
    make_vmo,
    paddr,
    read,
    rights_of,
    stats,
    write,
)

import vmo

S = vmo.Status
Op = vmo.Op
R = vmo.Rights
COW = vmo.MX_VMO_CLONE_COPY_ON_WRITE
CACHE_OPS = [Op.CACHE_SYNC, Op.CACHE_INVALIDATE, Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE]
EVENT_RIGHTS = R.DUPLICATE | R.TRANSFER | R.READ | R.WRITE


def pattern(n, seed=1):
    """``n`` bytes, distinct per position and seed, never all zero."""
    return bytes(((i * 7 + seed * 13 + (i >> 12) * 31) % 251) + 1 for i in range(n))


def committed(k):
    return stats(k)["committed_frames"]


def page_committed(k, h, page):
    st, entries = lookup(k, h, page * PAGE, PAGE)
    if st is S.NO_ERROR:
        return entries[0]
    expect(st, S.ERR_NO_MEMORY)
    return None


# =============================================================================================
# 3.1 vmo_create
# =============================================================================================
def test_3_1_options_checked_first(k):
    """Spec 3.1 step 1: "options != 0 -> ERR_INVALID_ARGS (checked first, before size)"."""
    for options in (1, 2, 0x8000_0000, 0xFFFF_FFFF):
        expect(k.vmo_create(PAGE, options), S.ERR_INVALID_ARGS, 0)
        expect(k.vmo_create(MAX + 1, options), S.ERR_INVALID_ARGS, 0)
        expect(k.vmo_create(U64, options), S.ERR_INVALID_ARGS, 0)
    assert stats(k)["handles"] == 0 and stats(k)["vmos"] == 0


def test_3_1_max_size_exactly_and_plus_one(k):
    """Spec 3.1 step 3 / 2.6: "Sizes equal to MAX_SIZE are accepted; only larger sizes are
    rejected", and oversize gives ERR_NO_MEMORY (not OUT_OF_RANGE; docs/api.md "Normative era"
    "oversize vmo_create -> ERR_NO_MEMORY")."""
    h = make_vmo(k, MAX)
    expect(k.vmo_get_size(h), S.NO_ERROR, MAX)
    expect(k.vmo_create(MAX + 1), S.ERR_NO_MEMORY, vmo.MX_HANDLE_INVALID)
    expect(k.vmo_create(U64), S.ERR_NO_MEMORY, vmo.MX_HANDLE_INVALID)
    expect(k.vmo_create(MAX + 100), S.ERR_NO_MEMORY, vmo.MX_HANDLE_INVALID)
    h2 = make_vmo(k, MAX - 1)
    expect(k.vmo_get_size(h2), S.NO_ERROR, MAX - 1)
    assert stats(k)["vmos"] == 2 and stats(k)["handles"] == 2


def test_3_1_size_exact_and_nothing_committed(k):
    """Spec 3.1 result: "Size is stored exactly (size 0 is legal, no rounding). No pages are
    committed." (also 6.3 #1)."""
    for size in (0, 1, 15, PAGE - 1, PAGE, PAGE + 1, 5 * PAGE + 3):
        h = make_vmo(k, size)
        expect(k.vmo_get_size(h), S.NO_ERROR, size)
    assert committed(k) == 0


def test_3_1_default_rights_0x3f(k):
    """Spec 3.1 / 2.4: new handle with default rights 0x3F (DUPLICATE|TRANSFER|READ|WRITE|
    EXECUTE|MAP; docs/api.md "Normative era" "default VMO rights 0x3F")."""
    h = make_vmo(k, PAGE)
    assert rights_of(k, h) == 0x3F
    assert rights_of(k, h) == R.DUPLICATE | R.TRANSFER | R.READ | R.WRITE | R.EXECUTE | R.MAP


def test_3_1_handle_values(k):
    """Spec 2.5 / docs/api.md "Syscall layer": "Handle values are odd, positive and below 2**31";
    semantics "Handles": slots lowest-first, freed slots reused LIFO with the generation
    incremented, value = (((generation << 18) | slot) << 1) | 1."""
    handles = [make_vmo(k, PAGE) for _ in range(20)]
    for h in handles:
        assert h % 2 == 1 and 0 < h < 2 ** 31
    assert handles[:3] == [1, 3, 5]
    assert handles == [2 * i + 1 for i in range(20)]
    expect(k.handle_close(1), S.NO_ERROR)
    expect(k.handle_close(3), S.NO_ERROR)
    # LIFO: slot 1 (freed last) first, then slot 0, each with generation 1
    assert make_vmo(k, PAGE) == (((1 << 18) | 1) << 1) | 1
    assert make_vmo(k, PAGE) == ((1 << 18) << 1) | 1 == 524289
    assert make_vmo(k, PAGE) == 41  # then the next fresh slot


def test_3_1_event_handles_share_the_table(k):
    """Semantics "Handles": one handle table per kernel for every object type."""
    assert make_vmo(k, 1) == 1
    assert make_event(k) == 3
    assert make_vmo(k, 1) == 5


# =============================================================================================
# 3.2 vmo_read
# =============================================================================================
def test_3_2_bad_handle(k):
    """Spec 3.2 step 1 / 3.0: handle not in the table -> ERR_BAD_HANDLE (before the range)."""
    h = make_vmo(k, PAGE)
    for bad in (0, 2, h + 2, 0x7FFF_FFFF):
        expect(k.vmo_read(bad, bytearray(16), 0), S.ERR_BAD_HANDLE, 0)
        expect(k.vmo_read(bad, bytearray(16), 10 * PAGE), S.ERR_BAD_HANDLE, 0)
        expect(k.vmo_read(bad, bytes(16), 0), S.ERR_BAD_HANDLE, 0)  # before the buffer


def test_3_2_access_denied_before_range_and_buffer(k):
    """Spec 3.2 step 1: BAD_HANDLE -> (missing MX_RIGHT_READ) ACCESS_DENIED -> WRONG_TYPE,
    all before the range (step 3) and the buffer checks (semantics: "after the handle checks
    for read and write")."""
    h = make_vmo(k, PAGE)
    for rights in (0, R.WRITE, R.DUPLICATE | R.TRANSFER | R.WRITE | R.EXECUTE | R.MAP):
        hr = dup(k, h, rights)
        expect(k.vmo_read(hr, bytearray(16), 0), S.ERR_ACCESS_DENIED, 0)
        expect(k.vmo_read(hr, bytearray(16), 10 * PAGE), S.ERR_ACCESS_DENIED, 0)
        expect(k.vmo_read(hr, bytes(16), 0), S.ERR_ACCESS_DENIED, 0)
        expect(k.vmo_read(hr, bytearray(0), 0), S.ERR_ACCESS_DENIED, 0)
    expect(k.vmo_read(dup(k, h, R.READ), bytearray(16), 0), S.NO_ERROR, 16)


def test_3_2_rights_before_type(k):
    """Spec 3.0: "Rights are checked before type: a non-VMO handle lacking READ passed to
    vmo_read yields ERR_ACCESS_DENIED, not ERR_WRONG_TYPE"."""
    e = make_event(k)
    expect(k.vmo_read(e, bytearray(16), 0), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_read(dup(k, e, R.WRITE), bytearray(16), 0), S.ERR_ACCESS_DENIED, 0)
    expect(k.vmo_read(dup(k, e, 0), bytearray(16), 0), S.ERR_ACCESS_DENIED, 0)
    expect(k.vmo_read(e, bytes(16), 1 << 40), S.ERR_WRONG_TYPE, 0)


def test_3_2_trim_range(k):
    """Spec 3.2 steps 3-4 / 3.0 TrimRange: offset > size -> OUT_OF_RANGE even when len == 0;
    offset == size or len == 0 -> NO_ERROR, actual 0; short count at the end."""
    h = make_vmo(k, 5000)
    expect(k.vmo_read(h, bytearray(0), 5001), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_read(h, bytearray(10), 5001), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_read(h, bytearray(10), U64), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_read(h, bytearray(10), 5000), S.NO_ERROR, 0)
    expect(k.vmo_read(h, bytearray(0), 5000), S.NO_ERROR, 0)
    expect(k.vmo_read(h, bytearray(0), 0), S.NO_ERROR, 0)
    expect(k.vmo_read(h, bytearray(10), 0, 0), S.NO_ERROR, 0)
    expect(k.vmo_read(h, bytearray(PAGE), PAGE), S.NO_ERROR, 5000 - PAGE)
    expect(k.vmo_read(h, bytearray(PAGE), 4999), S.NO_ERROR, 1)
    expect(k.vmo_read(h, bytearray(6000), 0), S.NO_ERROR, 5000)


def test_3_2_wrap_at_2_64(k):
    """Spec 3.0 TrimRange "fails if offset+len wraps": on a MAX_SIZE VMO, offset MAX with 4096
    bytes sums to exactly 2**64 -> OUT_OF_RANGE; 4095 bytes -> offset == size, NO_ERROR 0;
    offset MAX-1 with 4096 bytes sums to 2**64-1 (no wrap) -> trimmed to 1 byte."""
    h = make_vmo(k, MAX)
    expect(k.vmo_read(h, bytearray(PAGE), MAX), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_read(h, bytearray(PAGE + 1), MAX - 1), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_read(h, bytearray(PAGE - 1), MAX), S.NO_ERROR, 0)
    buf = bytearray(b"\x55" * PAGE)
    expect(k.vmo_read(h, buf, MAX - 1), S.NO_ERROR, 1)
    assert buf == b"\x00" + b"\x55" * (PAGE - 1)
    assert committed(k) == 0


def test_3_2_buffer_filled_only_up_to_actual(k):
    """Spec 3.2 step 6 / docs/api.md "Buffers": "fills buffer[0:actual]" -- nothing past actual,
    nothing past an explicit length."""
    h = make_vmo(k, 100)
    write(k, h, b"\x11" * 100, 0)
    buf = bytearray(b"\xee" * 300)
    expect(k.vmo_read(h, buf, 50), S.NO_ERROR, 50)
    assert buf == b"\x11" * 50 + b"\xee" * 250
    buf = bytearray(b"\xee" * 300)
    expect(k.vmo_read(h, buf, 0, 10), S.NO_ERROR, 10)
    assert buf == b"\x11" * 10 + b"\xee" * 290


def test_3_2_unaligned_read_across_pages(k):
    """Spec 3.2 step 5: copy page by page, first chunk at the unaligned offset."""
    h = make_vmo(k, 4 * PAGE)
    data = pattern(4 * PAGE)
    write(k, h, data, 0)
    for offset, length in ((1, 3 * PAGE), (PAGE - 3, 6), (4095, 8193), (3 * PAGE + 7, 10000)):
        assert read(k, h, offset, length) == data[offset:offset + length]


def test_3_2_reads_never_commit(k):
    """Spec 3.2 step 5 / 6.3 #3: "Uncommitted bytes read as zero and nothing is committed"."""
    h = make_vmo(k, 4 * PAGE)
    assert read(k, h, 0, 4 * PAGE) == bytes(4 * PAGE)
    assert read(k, h, 5, 3 * PAGE) == bytes(3 * PAGE)
    assert committed(k) == 0
    st, _ = lookup(k, h, 0, PAGE)
    expect(st, S.ERR_NO_MEMORY)


# =============================================================================================
# 3.3 vmo_write
# =============================================================================================
def test_3_3_handle_checks(k):
    """Spec 3.3 (structure of 3.2 with right WRITE): BAD_HANDLE -> ACCESS_DENIED (no WRITE)
    -> WRONG_TYPE, before the range."""
    h = make_vmo(k, PAGE)
    expect(k.vmo_write(0, b"x", 0), S.ERR_BAD_HANDLE, 0)
    expect(k.vmo_write(h + 2, b"x", 0), S.ERR_BAD_HANDLE, 0)
    for rights in (0, R.READ, R.DUPLICATE | R.TRANSFER | R.READ | R.EXECUTE | R.MAP):
        hr = dup(k, h, rights)
        expect(k.vmo_write(hr, b"x", 0), S.ERR_ACCESS_DENIED, 0)
        expect(k.vmo_write(hr, b"x", 10 * PAGE), S.ERR_ACCESS_DENIED, 0)
        expect(k.vmo_write(hr, b"", 0), S.ERR_ACCESS_DENIED, 0)
    e = make_event(k)
    expect(k.vmo_write(e, b"x", 0), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_write(dup(k, e, R.READ), b"x", 0), S.ERR_ACCESS_DENIED, 0)
    expect(k.vmo_write(dup(k, h, R.WRITE), b"x", 0), S.NO_ERROR, 1)
    assert committed(k) == 1


def test_3_3_trim_range(k):
    """Spec 3.3: "short count when the range crosses the end; offset == size or len == 0 ->
    NO_ERROR, actual 0, nothing committed"; offset > size -> OUT_OF_RANGE."""
    h = make_vmo(k, 5000)
    expect(k.vmo_write(h, b"", 5001), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_write(h, b"abc", 5001), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_write(h, b"abc", U64), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_write(h, b"abc", 5000), S.NO_ERROR, 0)
    expect(k.vmo_write(h, b"", 0), S.NO_ERROR, 0)
    expect(k.vmo_write(h, b"abc", 0, 0), S.NO_ERROR, 0)
    assert committed(k) == 0
    expect(k.vmo_write(h, b"\x42" * 10, 4995), S.NO_ERROR, 5)
    assert read(k, h, 4990, 100) == bytes(5) + b"\x42" * 5
    assert committed(k) == 1  # only page 1 was touched


def test_3_3_wrap_at_2_64(k):
    """Spec 3.0 TrimRange on write: offset+len == 2**64 wraps -> OUT_OF_RANGE, nothing
    committed; offset MAX-1 with 4096 bytes writes exactly 1 byte into the last page."""
    h = make_vmo(k, MAX)
    expect(k.vmo_write(h, bytes(PAGE), MAX), S.ERR_OUT_OF_RANGE, 0)
    assert committed(k) == 0
    expect(k.vmo_write(h, b"\x77" * PAGE, MAX - 1), S.NO_ERROR, 1)
    assert committed(k) == 1
    assert read(k, h, MAX - PAGE, PAGE) == bytes(PAGE - 1) + b"\x77"
    assert page_committed(k, h, MAX // PAGE - 1) == paddr(0)


def test_3_3_writes_commit_touched_pages_only(k):
    """Spec 3.3: "Only pages actually touched by the trimmed range get committed"; frames are
    taken in ascending page order from memory_base (semantics "Frames")."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_write(h, b"ab", PAGE - 1), S.NO_ERROR, 2)
    assert committed(k) == 2
    assert page_committed(k, h, 0) == paddr(0)
    assert page_committed(k, h, 1) == paddr(1)
    assert page_committed(k, h, 2) is None
    assert page_committed(k, h, 3) is None
    expect(k.vmo_write(h, b"c", 3 * PAGE + 5), S.NO_ERROR, 1)
    assert page_committed(k, h, 3) == paddr(2)
    assert read(k, h, PAGE - 2, 4) == b"\x00ab\x00"


def test_3_3_write_to_committed_page_keeps_frame(k):
    """Spec 3.0 step 2: a page the VMO holds is used as is; rewriting allocates nothing."""
    h = make_vmo(k, PAGE)
    write(k, h, b"\x01" * PAGE, 0)
    write(k, h, b"\x02" * 10, 100)
    assert committed(k) == 1
    assert page_committed(k, h, 0) == paddr(0)
    assert read(k, h, 95, 20) == b"\x01" * 5 + b"\x02" * 10 + b"\x01" * 5


@pytest.mark.memory_size(16 * 4096)
def test_3_3_partial_write_on_no_memory(k):
    """Spec 3.3: "page allocation failure mid-way -> ERR_NO_MEMORY returned; pages/bytes
    written before the failure stay written and committed"; semantics "vmo_write and
    ERR_NO_MEMORY": actual 0, chunk by chunk (first chunk unaligned)."""
    h = make_vmo(k, 20 * PAGE)
    data = pattern(20 * PAGE)
    expect(k.vmo_write(h, data, 100), S.ERR_NO_MEMORY, 0)
    s = stats(k)
    assert s["free_frames"] == 0 and s["committed_frames"] == 16
    written = 16 * PAGE - 100
    assert read(k, h, 0, 20 * PAGE) == bytes(100) + data[:written] + bytes(4 * PAGE)
    for page in range(16):
        assert page_committed(k, h, page) == paddr(page)
    assert page_committed(k, h, 16) is None


@pytest.mark.memory_size(2 * 4096)
def test_3_3_no_memory_on_first_chunk(k):
    """Spec 3.3 / semantics: a write whose first fault fails writes nothing."""
    a = make_vmo(k, 2 * PAGE)
    expect(k.vmo_op_range(a, Op.COMMIT, 0, 2 * PAGE), S.NO_ERROR)
    h = make_vmo(k, PAGE)
    expect(k.vmo_write(h, b"zz", 0), S.ERR_NO_MEMORY, 0)
    assert read(k, h, 0, 2) == b"\x00\x00"
    assert committed(k) == 2


# =============================================================================================
# 3.4 vmo_get_size
# =============================================================================================
def test_3_4_get_size(k):
    """Spec 3.4: BAD_HANDLE -> WRONG_TYPE; "No rights required (a handle duplicated with rights
    0 works)"; exact byte size."""
    h = make_vmo(k, 12345)
    expect(k.vmo_get_size(0), S.ERR_BAD_HANDLE, 0)
    expect(k.vmo_get_size(h + 2), S.ERR_BAD_HANDLE, 0)
    expect(k.vmo_get_size(h), S.NO_ERROR, 12345)
    expect(k.vmo_get_size(dup(k, h, 0)), S.NO_ERROR, 12345)
    e = make_event(k)
    expect(k.vmo_get_size(e), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_get_size(dup(k, e, 0)), S.ERR_WRONG_TYPE, 0)


# =============================================================================================
# 3.5 vmo_set_size
# =============================================================================================
def test_3_5_check_order(k):
    """Spec 3.5 step 1-2: BAD_HANDLE -> ACCESS_DENIED (no WRITE) -> WRONG_TYPE -> size > MAX
    -> OUT_OF_RANGE. Rights before type (3.0)."""
    h = make_vmo(k, PAGE)
    expect(k.vmo_set_size(0, PAGE), S.ERR_BAD_HANDLE)
    expect(k.vmo_set_size(h + 2, U64), S.ERR_BAD_HANDLE)
    hr = dup(k, h, R.READ | R.DUPLICATE)
    expect(k.vmo_set_size(hr, 2 * PAGE), S.ERR_ACCESS_DENIED)
    expect(k.vmo_set_size(hr, U64), S.ERR_ACCESS_DENIED)
    e = make_event(k)
    expect(k.vmo_set_size(e, PAGE), S.ERR_WRONG_TYPE)
    expect(k.vmo_set_size(e, U64), S.ERR_WRONG_TYPE)
    expect(k.vmo_set_size(dup(k, e, R.READ), PAGE), S.ERR_ACCESS_DENIED)
    expect(k.vmo_set_size(h, MAX + 1), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_set_size(h, U64), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_get_size(h), S.NO_ERROR, PAGE)
    expect(k.vmo_set_size(h, MAX), S.NO_ERROR)
    expect(k.vmo_get_size(h), S.NO_ERROR, MAX)
    expect(k.vmo_set_size(dup(k, h, R.WRITE), 7), S.NO_ERROR)
    expect(k.vmo_get_size(h), S.NO_ERROR, 7)
    assert committed(k) == 0


def test_3_5_shrink_frees_pages_past_new_end(k):
    """Spec 3.5 step 3: shrink frees pages at offsets >= ROUNDUP(new, PAGE); the page holding
    the new end is kept. Semantics "Shrink" + "Frames": freed frames pushed in ascending page
    order, so the highest page's frame is reused first."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    expect(k.vmo_set_size(h, PAGE + 1), S.NO_ERROR)
    assert committed(k) == 2
    expect(k.vmo_get_size(h), S.NO_ERROR, PAGE + 1)
    st, entries = lookup(k, h, 0, PAGE + 1)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(0), paddr(1)]
    h2 = make_vmo(k, 3 * PAGE)
    expect(k.vmo_op_range(h2, Op.COMMIT, 0, 3 * PAGE), S.NO_ERROR)
    st, entries = lookup(k, h2, 0, 3 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(3), paddr(2), paddr(4)]


def test_3_5_shrink_keeps_stale_bytes(k):
    """Spec 6.3 #2: "create 4096, write 4096x0xAA, set_size 100, set_size 4096, read 4096 ->
    all 0xAA" (3.5 step 3: bytes past the new end in the kept page are not zeroed)."""
    h = make_vmo(k, PAGE)
    expect(k.vmo_write(h, b"\xaa" * PAGE, 0), S.NO_ERROR, PAGE)
    expect(k.vmo_set_size(h, 100), S.NO_ERROR)
    expect(k.vmo_read(h, bytearray(PAGE), 0), S.NO_ERROR, 100)
    expect(k.vmo_set_size(h, PAGE), S.NO_ERROR)
    assert read(k, h, 0, PAGE) == b"\xaa" * PAGE
    assert committed(k) == 1


def test_3_5_shrink_to_page_boundary_then_grow_reads_zero(k):
    """Spec 3.5 step 3-4: a page wholly past the new end is freed (reads zero after growing);
    growing allocates nothing."""
    h = make_vmo(k, 2 * PAGE)
    write(k, h, b"\xbb" * 2 * PAGE, 0)
    expect(k.vmo_set_size(h, PAGE), S.NO_ERROR)
    assert committed(k) == 1
    expect(k.vmo_set_size(h, 64 * PAGE), S.NO_ERROR)
    assert committed(k) == 1
    assert read(k, h, 0, 2 * PAGE) == b"\xbb" * PAGE + bytes(PAGE)
    expect(k.vmo_set_size(h, 0), S.NO_ERROR)
    assert committed(k) == 0
    expect(k.vmo_set_size(h, 0), S.NO_ERROR)  # equal: no-op
    expect(k.vmo_set_size(h, PAGE), S.NO_ERROR)
    assert read(k, h, 0, PAGE) == bytes(PAGE)


# =============================================================================================
# 3.6 vmo_op_range: common prefix and the decision table 3.6.6
# =============================================================================================
@pytest.mark.parametrize("op", list(Op) + [0, 10])
def test_3_6_common_prefix(k, op):
    """Spec 3.6: "Common prefix: handle BAD_HANDLE -> WRONG_TYPE. No rights are checked for any
    op... Then dispatch on op"."""
    expect(k.vmo_op_range(0, op, 0, PAGE, array("Q", [0])), S.ERR_BAD_HANDLE)
    # LOOKUP's buffer checks come after the handle (spec 3.6.4 step 1; semantics)
    expect(k.vmo_op_range(0, op, 0, PAGE, None), S.ERR_BAD_HANDLE)
    expect(k.vmo_op_range(0, op, 0, PAGE, bytes(8)), S.ERR_BAD_HANDLE)
    expect(k.vmo_op_range(0, op, 0, 0, bytearray(0)), S.ERR_BAD_HANDLE)
    e = make_event(k)
    expect(k.vmo_op_range(e, op, 0, PAGE, array("Q", [0])), S.ERR_WRONG_TYPE)
    expect(k.vmo_op_range(e, op, 0, PAGE, bytes(8)), S.ERR_WRONG_TYPE)
    expect(k.vmo_op_range(dup(k, e, 0), op, 0, PAGE, array("Q", [0])), S.ERR_WRONG_TYPE)


def test_3_6_no_rights_checked(k):
    """Spec 3.6: "a handle with rights 0 can COMMIT, DECOMMIT, LOOKUP, cache-op"."""
    h = make_vmo(k, 2 * PAGE)
    h0 = dup(k, h, 0)
    expect(k.vmo_op_range(h0, Op.COMMIT, 0, 2 * PAGE), S.NO_ERROR)
    st, entries = lookup(k, h0, 0, 2 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(0), paddr(1)]
    for op in CACHE_OPS:
        expect(k.vmo_op_range(h0, op, 0, 2 * PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h0, Op.LOCK, 0, PAGE), S.ERR_NOT_SUPPORTED)
    expect(k.vmo_op_range(h0, Op.DECOMMIT, 0, 2 * PAGE), S.NO_ERROR)
    assert committed(k) == 0


SZ = 4 * PAGE  # the VMO of the table tests
# (column, offset, size) of table 3.6.6
COLUMNS = {
    "size0": (0, 0),
    "offset_past_size": (SZ + 1, 1),
    "wraps": (1, U64),
    "past_end": (0, SZ + 1),
    "offset_eq_size": (SZ, 1),
}
_STRICT = {"size0": S.ERR_INVALID_ARGS, "offset_past_size": S.ERR_OUT_OF_RANGE,
           "wraps": S.ERR_OUT_OF_RANGE, "past_end": S.ERR_OUT_OF_RANGE,
           "offset_eq_size": S.ERR_OUT_OF_RANGE}  # LOOKUP and the cache ops
_TRIMMED = {"size0": S.NO_ERROR, "offset_past_size": S.ERR_OUT_OF_RANGE,
            "wraps": S.ERR_OUT_OF_RANGE, "past_end": S.NO_ERROR,
            "offset_eq_size": S.NO_ERROR}  # COMMIT and DECOMMIT
TABLE = {
    Op.COMMIT: _TRIMMED,
    Op.DECOMMIT: _TRIMMED,
    Op.LOCK: dict.fromkeys(COLUMNS, S.ERR_NOT_SUPPORTED),
    Op.UNLOCK: dict.fromkeys(COLUMNS, S.ERR_NOT_SUPPORTED),
    Op.LOOKUP: _STRICT,
    **{op: _STRICT for op in CACHE_OPS},
    0: dict.fromkeys(COLUMNS, S.ERR_INVALID_ARGS),
    10: dict.fromkeys(COLUMNS, S.ERR_INVALID_ARGS),
    0xFFFF_FFFF: dict.fromkeys(COLUMNS, S.ERR_INVALID_ARGS),
}


@pytest.mark.parametrize("column", list(COLUMNS))
@pytest.mark.parametrize("op", list(TABLE), ids=lambda op: getattr(op, "name", str(op)))
def test_3_6_6_decision_table(k, op, column):
    """Spec 3.6.6 "op_range decision summary": every op (and invalid ops 0, 10, 2**32-1) in
    the columns size 0 / offset > vmo_size / offset+size wraps / range past end, plus "offset
    == vmo_size with size > 0: COMMIT/DECOMMIT -> NO_ERROR (trimmed to 0); LOOKUP/cache ->
    OUT_OF_RANGE". The VMO is fully committed and LOOKUP gets a buffer big enough (8 entries)
    so that BUFFER_TOO_SMALL (3.6.4 step 2) and NO_MEMORY never fire; nothing changes."""
    h = make_vmo(k, SZ)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, SZ), S.NO_ERROR)
    offset, size = COLUMNS[column]
    buf = array("Q", [SENTINEL] * 8)
    expect(k.vmo_op_range(h, op, offset, size, buf), TABLE[op][column])
    assert list(buf) == [SENTINEL] * 8
    if (op, column) == (Op.DECOMMIT, "past_end"):  # trimmed to the whole VMO
        assert committed(k) == 0
        return
    st, entries = lookup(k, h, 0, SZ)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(i) for i in range(4)]


@pytest.mark.parametrize("op", [Op.COMMIT, Op.DECOMMIT, Op.LOOKUP] + CACHE_OPS)
def test_3_6_6_uncommitted_column(k, op):
    """Spec 3.6.6 column "uncommitted pages": COMMIT commits, DECOMMIT skips, LOOKUP ->
    NO_MEMORY, CACHE_* skip (NO_ERROR, nothing committed)."""
    h = make_vmo(k, SZ)
    buf = array("Q", [SENTINEL] * 4)
    want = S.ERR_NO_MEMORY if op == Op.LOOKUP else S.NO_ERROR
    expect(k.vmo_op_range(h, op, 0, SZ, buf), want)
    assert committed(k) == (4 if op == Op.COMMIT else 0)
    assert list(buf) == [SENTINEL] * 4


# -- 3.6.1 COMMIT ------------------------------------------------------------------------------
def test_3_6_1_commit_trimmed_whole_vmo(k):
    """Spec 3.6.1 example: "COMMIT(0, UINT64_MAX) commits the whole VMO (no wrap, trimmed);
    COMMIT(1, UINT64_MAX) -> OUT_OF_RANGE (wraps)"."""
    h = make_vmo(k, 3 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 1, U64), S.ERR_OUT_OF_RANGE)
    assert committed(k) == 0
    expect(k.vmo_op_range(h, Op.COMMIT, 0, U64), S.NO_ERROR)
    assert committed(k) == 3


def test_3_6_1_commit_unaligned_commits_touched_pages(k):
    """Spec 3.6.1 step 3: pages from ROUNDDOWN(offset) up to ROUNDUP(offset+trimmed)."""
    h = make_vmo(k, 8 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, PAGE + 1, PAGE), S.NO_ERROR)  # pages 1 and 2
    assert [page_committed(k, h, p) for p in range(4)] == [None, paddr(0), paddr(1), None]
    expect(k.vmo_op_range(h, Op.COMMIT, 5 * PAGE - 1, 1), S.NO_ERROR)  # page 4
    assert page_committed(k, h, 4) == paddr(2)
    assert committed(k) == 3


def test_3_6_1_commit_odd_size_last_partial_page(k):
    """Spec 3.6.1 step 3: "if the VMO size is not page aligned its last partial page is
    committed as a full page" (vmo_odd_size_commit_test)."""
    h = make_vmo(k, 15)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 15), S.NO_ERROR)
    assert committed(k) == 1
    h2 = make_vmo(k, PAGE + 15)
    expect(k.vmo_op_range(h2, Op.COMMIT, 10, 1 << 40), S.NO_ERROR)
    assert committed(k) == 3


def test_3_6_1_commit_keeps_existing_pages(k):
    """Spec 3.6.1 step 4, 6: only pages the VMO does not hold are allocated; "Existing pages
    are never touched"; new pages are zero-filled."""
    h = make_vmo(k, 4 * PAGE)
    write(k, h, b"\x5a" * 10, PAGE + 3)  # page 1 -> frame 0
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    st, entries = lookup(k, h, 0, 4 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(1), paddr(0), paddr(2), paddr(3)]
    assert read(k, h, 0, 4 * PAGE) == bytes(PAGE + 3) + b"\x5a" * 10 + bytes(3 * PAGE - 13)


@pytest.mark.memory_size(16 * 4096)
def test_3_6_1_commit_all_or_nothing(k):
    """Spec 3.6.1 step 5: "commit is all-or-nothing; no new page is kept on failure
    (previously committed pages are untouched)"; semantics: counted first, no change."""
    h = make_vmo(k, 20 * PAGE)
    data = pattern(10 * PAGE)
    write(k, h, data, 0)  # pages 0-9
    assert stats(k)["free_frames"] == 6
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 20 * PAGE), S.ERR_NO_MEMORY)
    assert stats(k)["free_frames"] == 6
    assert page_committed(k, h, 10) is None
    assert read(k, h, 0, 20 * PAGE) == data + bytes(10 * PAGE)
    other = make_vmo(k, 7 * PAGE)
    expect(k.vmo_op_range(other, Op.COMMIT, 0, 7 * PAGE), S.ERR_NO_MEMORY)
    assert stats(k)["free_frames"] == 6
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 16 * PAGE), S.NO_ERROR)  # needs exactly 6
    assert stats(k)["free_frames"] == 0
    st, entries = lookup(k, h, 0, 16 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(i) for i in range(16)]
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 16 * PAGE), S.NO_ERROR)  # needs 0: fine when full


@pytest.mark.memory_size(4 * 4096)
def test_3_6_1_commit_new_pages_are_zero(k):
    """Spec 3.6.1 step 6 / semantics "A frame handed out reads as zero": a frame that was
    written, freed and handed out again reads zero."""
    h = make_vmo(k, 4 * PAGE)
    write(k, h, b"\xcc" * 4 * PAGE, 0)
    expect(k.handle_close(h), S.NO_ERROR)
    h2 = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h2, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    assert read(k, h2, 0, 4 * PAGE) == bytes(4 * PAGE)
    st, entries = lookup(k, h2, 0, 4 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(3), paddr(2), paddr(1), paddr(0)]


@pytest.mark.memory_size(4 * 4096)
def test_3_3_reused_frame_written_partially_reads_zero(k):
    """Semantics "Frames": "A frame that was written is zeroed before it is handed out again"
    -- a write of one byte into a recycled frame leaves the rest of the page zero, in a plain
    VMO and in a clone's copy-on-write of a page no ancestor holds."""
    h = make_vmo(k, 4 * PAGE)
    write(k, h, b"\xcc" * 4 * PAGE, 0)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, 4 * PAGE), S.NO_ERROR)
    n = make_vmo(k, PAGE)
    write(k, n, b"\x01", 7)
    assert page_committed(k, n, 0) == paddr(3)
    assert read(k, n, 0, PAGE) == bytes(7) + b"\x01" + bytes(PAGE - 8)
    c = clone(k, h, 0, PAGE)
    write(k, c, b"\x02", 0)
    assert page_committed(k, c, 0) == paddr(2)
    assert read(k, c, 0, PAGE) == b"\x02" + bytes(PAGE - 1)


def test_3_6_1_commit_on_clone_copies_parent(k):
    """docs/api.md exception 2: "COMMIT on a clone gives each newly committed page the content the
    clone saw there (a copy of the ancestor's page, or zeros), exactly as a write fault
    would", never zeros over visible parent data (spec 3.6.1 clone quirk, fixed)."""
    p = make_vmo(k, 2 * PAGE)
    write(k, p, b"\x99" * PAGE, 0)  # parent page 0 -> frame 0
    c = clone(k, p, 0, 3 * PAGE)
    expect(k.vmo_op_range(c, Op.COMMIT, 0, 3 * PAGE), S.NO_ERROR)
    assert committed(k) == 4
    assert read(k, c, 0, 3 * PAGE) == b"\x99" * PAGE + bytes(2 * PAGE)
    st, entries = lookup(k, c, 0, 3 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(1), paddr(2), paddr(3)]
    write(k, p, b"\x11" * 8, 0)
    write(k, p, b"\x22" * 8, PAGE)
    assert read(k, c, 0, 8) == b"\x99" * 8  # private copy now
    assert read(k, c, PAGE, 8) == bytes(8)  # committed as zero, no longer a view
    assert read(k, p, 0, 8) == b"\x11" * 8


def test_3_6_1_commit_on_grandchild_counts_intermediate_copies(make_kernel):
    """Semantics "COMMIT on a clone": "a page held by an ancestor at depth d costs d frames";
    "the copy closest to the holder is allocated first"; all or nothing."""
    k = make_kernel(memory_size=4 * PAGE)
    p = make_vmo(k, PAGE)
    write(k, p, b"\x31" * PAGE, 0)  # frame 0
    c1 = clone(k, p, 0, PAGE)
    c2 = clone(k, c1, 0, PAGE)
    filler = make_vmo(k, 2 * PAGE)
    expect(k.vmo_op_range(filler, Op.COMMIT, 0, 2 * PAGE), S.NO_ERROR)  # frames 1, 2
    expect(k.vmo_op_range(c2, Op.COMMIT, 0, PAGE), S.ERR_NO_MEMORY)  # needs 2, 1 free
    assert stats(k)["free_frames"] == 1
    assert page_committed(k, c1, 0) == paddr(0)  # still the parent's page
    expect(k.vmo_op_range(filler, Op.DECOMMIT, PAGE, PAGE), S.NO_ERROR)  # frees frame 2
    expect(k.vmo_op_range(c2, Op.COMMIT, 0, PAGE), S.NO_ERROR)
    assert stats(k)["free_frames"] == 0
    assert page_committed(k, c1, 0) == paddr(2)  # popped first: the copy nearest the holder
    assert page_committed(k, c2, 0) == paddr(3)
    assert read(k, c2, 0, PAGE) == b"\x31" * PAGE
    assert read(k, c1, 0, PAGE) == b"\x31" * PAGE


# -- 3.6.2 DECOMMIT ----------------------------------------------------------------------------
def test_3_6_2_decommit_start_rounded_down(k):
    """docs/api.md exception 1: "DECOMMIT frees every page touched by the trimmed range: start
    rounded down, end rounded up. An unaligned range inside one page frees that page."
    Semantics: indexes [offset // 4096, ceil((offset + trimmed) / 4096))."""
    h = make_vmo(k, 4 * PAGE)
    write(k, h, b"\x44" * 4 * PAGE, 0)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0x10, 0x100), S.NO_ERROR)
    assert page_committed(k, h, 0) is None
    assert read(k, h, 0, PAGE + 1) == bytes(PAGE) + b"\x44"
    assert committed(k) == 3
    expect(k.vmo_op_range(h, Op.DECOMMIT, 2 * PAGE - 1, 2), S.NO_ERROR)  # pages 1 and 2
    assert [page_committed(k, h, p) is None for p in range(4)] == [True, True, True, False]
    assert read(k, h, 3 * PAGE - 1, 2) == b"\x00\x44"


def test_3_6_2_decommit_end_rounded_up_and_trimmed(k):
    """Spec 3.6.2 step 1-3: TrimRange (offset > size or wrap -> OUT_OF_RANGE; trimmed length 0
    -> NO_ERROR, nothing freed); a partial last page is freed; uncommitted pages skipped."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 4 * PAGE + 1, 0), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.DECOMMIT, PAGE, U64), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 5, 0), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 4 * PAGE, PAGE), S.NO_ERROR)
    assert committed(k) == 4
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, PAGE + 1), S.NO_ERROR)  # pages 0 and 1
    assert committed(k) == 2
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, 3 * PAGE), S.NO_ERROR)  # 0, 1 skipped; 2 freed
    assert committed(k) == 1
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, U64), S.NO_ERROR)
    assert committed(k) == 0


def test_3_6_2_decommit_odd_size_offset_at_end_frees_nothing(k):
    """Semantics "DECOMMIT": with trimmed length 0 (offset == size, even unaligned) the index
    range is empty: nothing is freed."""
    h = make_vmo(k, 15)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 15), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 15, 100), S.NO_ERROR)
    assert committed(k) == 1
    expect(k.vmo_op_range(h, Op.DECOMMIT, 14, 100), S.NO_ERROR)
    assert committed(k) == 0


def test_3_6_2_decommit_frees_lifo(k):
    """Semantics "Frames": frames freed together are pushed in ascending page index order, so
    the frame of the highest page index is reused first."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, 4 * PAGE), S.NO_ERROR)
    h2 = make_vmo(k, 6 * PAGE)
    expect(k.vmo_op_range(h2, Op.COMMIT, 0, 2 * PAGE), S.NO_ERROR)
    st, entries = lookup(k, h2, 0, 2 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(3), paddr(2)]
    expect(k.vmo_op_range(h2, Op.COMMIT, 0, 6 * PAGE), S.NO_ERROR)
    st, entries = lookup(k, h2, 0, 6 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(3), paddr(2), paddr(1), paddr(0), paddr(4), paddr(5)]


def test_3_6_2_decommit_on_clone_frees_own_pages_only(k):
    """Spec 3.6.2 step 5: "On a clone only the clone's own (COW) pages are freed; the parent's
    page becomes visible again, still COW"."""
    p = make_vmo(k, 2 * PAGE)
    write(k, p, b"\x99" * 2 * PAGE, 0)
    c = clone(k, p, 0, 2 * PAGE)
    write(k, c, b"\x10" * 4, 0)
    assert committed(k) == 3
    expect(k.vmo_op_range(c, Op.DECOMMIT, 0, 2 * PAGE), S.NO_ERROR)
    assert committed(k) == 2
    assert read(k, c, 0, 8) == b"\x99" * 8
    st, entries = lookup(k, c, 0, 2 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(0), paddr(1)]  # the parent's pages
    write(k, c, b"\x10" * 4, 0)
    assert read(k, p, 0, 8) == b"\x99" * 8


# -- 3.6.3 LOCK / UNLOCK -----------------------------------------------------------------------
@pytest.mark.parametrize("op", [Op.LOCK, Op.UNLOCK])
def test_3_6_3_lock_unlock(k, op):
    """Spec 3.6.3: "Always ERR_NOT_SUPPORTED after a valid VMO handle, regardless of
    offset/size/buffer. No range checks." (BAD_HANDLE / WRONG_TYPE first.)"""
    h = make_vmo(k, PAGE)
    for offset, size, buf in ((0, 0, None), (U64, U64, None), (1, U64, bytes(1)),
                              (0, PAGE, "junk")):
        expect(k.vmo_op_range(h, op, offset, size, buf), S.ERR_NOT_SUPPORTED)
    expect(k.vmo_op_range(h + 2, op, 0, 0), S.ERR_BAD_HANDLE)
    expect(k.vmo_op_range(make_event(k), op, 0, 0), S.ERR_WRONG_TYPE)


# -- 3.6.4 LOOKUP ------------------------------------------------------------------------------
@pytest.fixture
def committed4(k):
    """A 4-page VMO, fully committed on frames 0..3."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    return h


def test_3_6_4_step1_null_buffer_first(k, committed4):
    """Spec 3.6.4 step 1: "buffer == NULL -> ERR_INVALID_ARGS (before anything else; even with
    size 0)" -- also before BUFFER_TOO_SMALL and the range check."""
    h = committed4
    for offset, size in ((0, PAGE), (0, 0), (1, 0), (0, 5 * PAGE), (5 * PAGE, 1), (1, U64)):
        expect(k.vmo_op_range(h, Op.LOOKUP, offset, size, None), S.ERR_INVALID_ARGS)
        expect(k.vmo_op_range(h, Op.LOOKUP, offset, size, None, 0), S.ERR_INVALID_ARGS)


def test_3_6_4_buffer_pointer_checks_before_too_small(k, committed4):
    """Semantics "Python-specific argument rules": a read-only buffer or buffer_size larger
    than the buffer is ERR_INVALID_ARGS, "in LOOKUP right after the null-buffer check (before
    ERR_BUFFER_TOO_SMALL)"."""
    h = committed4
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 4 * PAGE, bytes(8)), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 0, bytes(8)), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 4 * PAGE, bytearray(8), 16), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(8), 9), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 5 * PAGE, 1, bytearray(8), 9), S.ERR_INVALID_ARGS)


def test_3_6_4_step2_buffer_too_small_before_size_and_range(k, committed4):
    """Spec 3.6.4 step 2: needed = ((ROUNDUP(offset+size) - ROUNDDOWN(offset)) / PAGE) * 8 >
    buffer_size -> BUFFER_TOO_SMALL, before size 0 and all range checks: "LOOKUP(0,
    vmo_size+1) with a buffer sized for vmo_size gives BUFFER_TOO_SMALL", "size == 0 with an
    unaligned offset needs 8 bytes"."""
    h = committed4
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 4 * PAGE + 1, array("Q", [0] * 4)),
           S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, 1, 0, bytearray(0)), S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, 1, 0, bytearray(7)), S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, 1, 0, bytearray(8)), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 100 * PAGE, 3 * PAGE, bytearray(16)),
           S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 1, bytearray(7)), S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, PAGE - 1, 2, bytearray(15)), S.ERR_BUFFER_TOO_SMALL)
    # buffer_size below the buffer's real size counts
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 2 * PAGE, bytearray(64), 15), S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 2 * PAGE, bytearray(64), 16), S.NO_ERROR)
    # MAX-sized range: 2**52-1 entries needed
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, MAX, bytearray(64)), S.ERR_BUFFER_TOO_SMALL)


def test_3_6_4_step2_wrapping_arithmetic(k, committed4):
    """Spec 3.6.4 step 2: first/end computed "with wrapping 64-bit arithmetic and no
    validation". LOOKUP(0, 2**64-1): end = ROUNDUP(2**64-1) wraps to 0, needed 0 -> the range
    check (step 4) fires: OUT_OF_RANGE even with an empty buffer. LOOKUP(PAGE, 2**64-PAGE):
    end 0, first PAGE -> needed (2**52-1)*8 -> BUFFER_TOO_SMALL."""
    h = committed4
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, U64, bytearray(0)), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.LOOKUP, 4097, U64, bytearray(0)), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.LOOKUP, PAGE, U64 + 1 - PAGE, bytearray(64)),
           S.ERR_BUFFER_TOO_SMALL)
    expect(k.vmo_op_range(h, Op.LOOKUP, U64 + 1 - PAGE, 2 * PAGE, bytearray(16)),
           S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.LOOKUP, U64 + 1 - PAGE, 2 * PAGE, bytearray(15)),
           S.ERR_BUFFER_TOO_SMALL)


def test_3_6_4_step3_size_zero_before_range(k, committed4):
    """Spec 3.6.4 step 3: "size == 0 -> ERR_INVALID_ARGS", after the buffer checks but before
    the range check: an offset far past the end with size 0 is INVALID_ARGS."""
    h = committed4
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 0, bytearray(8)), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 100 * PAGE, 0, bytearray(8)), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, U64 + 1 - PAGE, 0, bytearray(0)), S.ERR_INVALID_ARGS)


def test_3_6_4_step4_range_before_uncommitted(k):
    """Spec 3.6.4 step 4 before step 5: InRange failing -> OUT_OF_RANGE even on an uncommitted
    VMO (which would otherwise give NO_MEMORY); offset == size -> OUT_OF_RANGE."""
    h = make_vmo(k, 4 * PAGE)
    buf = array("Q", [SENTINEL] * 8)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 4 * PAGE + 1, buf), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.LOOKUP, 4 * PAGE, 1, buf), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.LOOKUP, 3 * PAGE, PAGE + 1, buf), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 4 * PAGE, buf), S.ERR_NO_MEMORY)
    assert list(buf) == [SENTINEL] * 8


def test_3_6_4_step5_uncommitted_partial_entries(k):
    """Spec 3.6.4 step 5: a page not committed anywhere -> ERR_NO_MEMORY; "Entries for earlier
    pages have already been written to the buffer"; LOOKUP never commits."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 2 * PAGE), S.NO_ERROR)
    st, entries = lookup(k, h, 0, 4 * PAGE)
    expect(st, S.ERR_NO_MEMORY)
    assert entries == [paddr(0), paddr(1), SENTINEL, SENTINEL]
    st, entries = lookup(k, h, 2 * PAGE, PAGE)
    expect(st, S.ERR_NO_MEMORY)
    assert entries == [SENTINEL]
    assert committed(k) == 2


def test_3_6_4_step6_entries(k, committed4):
    """Spec 3.6.4 step 6: entry i = page-aligned paddr of page first + i*PAGE; "for an
    unaligned offset the first entry is the start of the page containing the offset";
    exactly (end-first)/PAGE entries, the rest of the buffer untouched."""
    h = committed4
    st, entries = lookup(k, h, 1, 3 * PAGE, entries=6)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(0), paddr(1), paddr(2), paddr(3), SENTINEL, SENTINEL]
    st, entries = lookup(k, h, 2 * PAGE + 5, 10, entries=2)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(2), SENTINEL]
    buf = bytearray(b"\xff" * 20)
    expect(k.vmo_op_range(h, Op.LOOKUP, 3 * PAGE, PAGE, buf), S.NO_ERROR)
    assert buf == paddr(3).to_bytes(8, sys.byteorder) + b"\xff" * 12


def test_3_6_4_odd_size_vmo(k):
    """Spec 3.6.4 / 2.6: byte-granular size bounds LOOKUP exactly (InRange vs the byte size)."""
    h = make_vmo(k, 15)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 15), S.NO_ERROR)
    st, entries = lookup(k, h, 0, 15)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(0)]
    st, _ = lookup(k, h, 0, 16)
    expect(st, S.ERR_OUT_OF_RANGE)


def test_3_6_4_lookup_on_clone_reports_parent_pages(k):
    """Spec 3.6.4: "On clones: LOOKUP reports the parent's physical page where the clone has no
    private copy"; semantics "Page faults" lookup step 3 (parent_offset + offset)."""
    p = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(p, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    c = clone(k, p, PAGE, 2 * PAGE)
    st, entries = lookup(k, c, 0, 2 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(1), paddr(2)]
    write(k, c, b"x", PAGE)
    st, entries = lookup(k, c, 0, 2 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(1), paddr(4)]
    c2 = clone(k, p, 3 * PAGE, 2 * PAGE)  # page 1 lies past the parent's end
    st, entries = lookup(k, c2, 0, 2 * PAGE)
    expect(st, S.ERR_NO_MEMORY)
    assert entries == [paddr(3), SENTINEL]


# -- 3.6.5 cache ops ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", CACHE_OPS)
def test_3_6_5_cache_ops(k, op):
    """Spec 3.6.5: size 0 -> INVALID_ARGS (before the range check); InRange strict
    (offset+size > size fails, byte-granular); uncommitted pages skipped; nothing committed;
    NO_ERROR."""
    h = make_vmo(k, 2 * PAGE + 10)
    expect(k.vmo_op_range(h, op, 3 * PAGE, 0), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, op, U64, 0), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, op, 0, 2 * PAGE + 11), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, op, 2 * PAGE + 10, 1), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, op, 1, U64), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, op, 0, 2 * PAGE + 10), S.NO_ERROR)
    expect(k.vmo_op_range(h, op, 7, 2 * PAGE), S.NO_ERROR)
    assert committed(k) == 0
    write(k, h, b"q", PAGE)
    expect(k.vmo_op_range(h, op, 1, 2 * PAGE + 9), S.NO_ERROR)
    assert committed(k) == 1
    c = clone(k, h, 0, 2 * PAGE + 10)
    expect(k.vmo_op_range(c, op, 0, 2 * PAGE + 10), S.NO_ERROR)
    assert committed(k) == 1


# =============================================================================================
# 3.7 vmo_clone
# =============================================================================================
def test_3_7_step1_handle_and_rights(k):
    """Spec 3.7 step 1: BAD_HANDLE -> (needs DUPLICATE and READ) ACCESS_DENIED -> WRONG_TYPE;
    "Rights are checked before options"."""
    h = make_vmo(k, PAGE)
    expect(k.vmo_clone(0, COW, 0, PAGE), S.ERR_BAD_HANDLE, 0)
    expect(k.vmo_clone(h + 2, 0, 1, U64), S.ERR_BAD_HANDLE, 0)
    for rights in (0, R.READ, R.DUPLICATE, R.WRITE | R.READ | R.EXECUTE | R.MAP | R.TRANSFER,
                   R.DUPLICATE | R.WRITE | R.EXECUTE | R.MAP | R.TRANSFER):
        hr = dup(k, h, rights)
        expect(k.vmo_clone(hr, COW, 0, PAGE), S.ERR_ACCESS_DENIED, 0)
        expect(k.vmo_clone(hr, 0, 1, U64), S.ERR_ACCESS_DENIED, 0)
    e = make_event(k)
    expect(k.vmo_clone(e, COW, 0, PAGE), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_clone(e, 0, 1, U64), S.ERR_WRONG_TYPE, 0)
    expect(k.vmo_clone(dup(k, e, R.READ), COW, 0, PAGE), S.ERR_ACCESS_DENIED, 0)
    expect(k.vmo_clone(dup(k, e, R.DUPLICATE), COW, 0, PAGE), S.ERR_ACCESS_DENIED, 0)
    clone(k, dup(k, h, R.DUPLICATE | R.READ), 0, PAGE)


def test_3_7_step2_options(k):
    """Spec 3.7 step 2: "options & MX_VMO_CLONE_COPY_ON_WRITE == 0 -> ERR_INVALID_ARGS. Other
    option bits are ignored (e.g. options 3 acts as COW)"; checked before size and offset."""
    h = make_vmo(k, PAGE)
    for options in (0, 2, 4, 0xFFFF_FFFE):
        expect(k.vmo_clone(h, options, 0, PAGE), S.ERR_INVALID_ARGS, 0)
        expect(k.vmo_clone(h, options, 0, U64), S.ERR_INVALID_ARGS, 0)
    for options in (1, 3, 0x8000_0001, 0xFFFF_FFFF):
        c = expect(k.vmo_clone(h, options, 0, PAGE), S.NO_ERROR)
        expect(k.vmo_get_size(c), S.NO_ERROR, PAGE)


def test_3_7_step4_to_6_size_offset_wrap(k):
    """Spec 3.7: step 4 "size > MAX_SIZE -> ERR_OUT_OF_RANGE (checked before offset)"; step 5
    "offset not page aligned -> ERR_INVALID_ARGS"; step 6 "offset + size overflows 64 bits ->
    ERR_OUT_OF_RANGE"."""
    h = make_vmo(k, PAGE)
    expect(k.vmo_clone(h, COW, 1, MAX + 1), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_clone(h, COW, 1, U64), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_clone(h, COW, 1, PAGE), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_clone(h, COW, PAGE - 1, 0), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_clone(h, COW, U64, MAX), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_clone(h, COW, PAGE, MAX), S.ERR_OUT_OF_RANGE, 0)  # sums to exactly 2**64
    expect(k.vmo_clone(h, COW, MAX, PAGE), S.ERR_OUT_OF_RANGE, 0)
    c = expect(k.vmo_clone(h, COW, MAX, PAGE - 1), S.NO_ERROR)  # sums to 2**64-1
    expect(k.vmo_get_size(c), S.NO_ERROR, PAGE - 1)
    c = expect(k.vmo_clone(h, COW, 0, MAX), S.NO_ERROR)
    expect(k.vmo_get_size(c), S.NO_ERROR, MAX)
    assert committed(k) == 0


def test_3_7_clone_rights(k):
    """Spec 3.7 result (2017-05-12): "input handle's rights | WRITE | EXECUTE | MAP" (docs/api.md
    "Normative era" "clone rights = source | WRITE | EXECUTE | MAP")."""
    h = make_vmo(k, PAGE)
    assert rights_of(k, clone(k, h, 0, PAGE)) == 0x3F
    c = clone(k, dup(k, h, R.DUPLICATE | R.READ), 0, PAGE)
    assert rights_of(k, c) == R.DUPLICATE | R.READ | R.WRITE | R.EXECUTE | R.MAP == 0x3D
    c = clone(k, dup(k, h, R.DUPLICATE | R.READ | R.TRANSFER), 0, PAGE)
    assert rights_of(k, c) == 0x3F
    c2 = clone(k, dup(k, c, R.DUPLICATE | R.READ | R.WRITE), 0, PAGE)
    assert rights_of(k, c2) == 0x3D


def test_3_7_clone_geometry(k):
    """Spec 3.7: "Size: exactly size bytes (byte-granular, not rounded); may exceed the
    parent's size; offset may lie beyond the parent's size; size 0 allowed. Creation copies
    nothing and commits nothing."; a new object with a new koid."""
    p = make_vmo(k, 2 * PAGE)
    write(k, p, b"\x01" * 2 * PAGE, 0)
    for offset, size in ((0, 0), (0, 13), (PAGE, 10 * PAGE + 1), (100 * PAGE, PAGE)):
        c = clone(k, p, offset, size)
        expect(k.vmo_get_size(c), S.NO_ERROR, size)
    assert committed(k) == 2
    c = clone(k, p, 100 * PAGE, PAGE)
    assert read(k, c, 0, PAGE) == bytes(PAGE)
    pk = expect(k.object_get_info(p, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR).koid
    ck = expect(k.object_get_info(c, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR).koid
    assert ck > pk


def test_3_7_live_view_and_cow(k):
    """Spec 3.7: "Not a snapshot" -- the clone reads the parent's current content through
    un-copied pages; "First write by the clone to a page: ... a private copy of the entire
    page, then the write is applied"; clone writes never reach the parent; reads never copy."""
    p = make_vmo(k, 2 * PAGE)
    c = clone(k, p, 0, 2 * PAGE)
    assert read(k, c, 0, 2 * PAGE) == bytes(2 * PAGE)
    data = pattern(2 * PAGE)
    write(k, p, data, 0)
    assert read(k, c, 0, 2 * PAGE) == data
    assert committed(k) == 2
    write(k, c, b"\xee" * 4, 10)
    assert committed(k) == 3
    assert read(k, c, 0, PAGE) == data[:10] + b"\xee" * 4 + data[14:PAGE]
    assert read(k, p, 0, 2 * PAGE) == data
    write(k, p, b"\x01" * 2 * PAGE, 0)
    assert read(k, c, 0, 2 * PAGE) == data[:10] + b"\xee" * 4 + data[14:PAGE] + b"\x01" * PAGE


def test_3_7_write_to_zero_page_of_clone(k):
    """Spec 3.7: "else a zero page is allocated" when no ancestor holds the page."""
    p = make_vmo(k, 2 * PAGE)
    c = clone(k, p, 0, 2 * PAGE)
    write(k, c, b"\x05", PAGE + 1)
    assert committed(k) == 1
    assert read(k, c, PAGE, 3) == b"\x00\x05\x00"
    assert read(k, p, PAGE, 3) == bytes(3)
    assert page_committed(k, p, 1) is None


def test_3_7_grandchild_write_copies_into_intermediate(k):
    """Spec 3.7 "Derived from code": a grandchild write fault for a page held only by the
    grandparent "also makes the intermediate clone allocate a private copy ... freezing that
    page"; semantics "Page faults": the copy closest to the holder is allocated first."""
    p = make_vmo(k, PAGE)
    write(k, p, b"\x61" * PAGE, 0)  # frame 0
    c1 = clone(k, p, 0, PAGE)
    c2 = clone(k, c1, 0, PAGE)
    write(k, c2, b"\x62", 0)
    assert committed(k) == 3
    assert page_committed(k, c1, 0) == paddr(1)
    assert page_committed(k, c2, 0) == paddr(2)
    write(k, p, b"\x63" * 4, 0)
    assert read(k, c1, 0, 4) == b"\x61" * 4  # frozen
    assert read(k, c2, 0, 4) == b"\x62" + b"\x61" * 3
    assert read(k, p, 0, 4) == b"\x63" * 4


def test_3_7_read_through_chain_never_copies(k):
    """Spec 3.0 step 3 / semantics: "The read path never copies" (clone of a clone)."""
    p = make_vmo(k, PAGE)
    write(k, p, b"\x61" * PAGE, 0)
    c2 = clone(k, clone(k, p, 0, PAGE), 0, PAGE)
    assert read(k, c2, 0, PAGE) == b"\x61" * PAGE
    assert committed(k) == 1


def test_3_7_chunk_start_bound_against_shrunk_parent(k):
    """Spec 3.7 "Derived from code": "if the parent was shrunk to a size inside a page, a clone
    read starting below the parent's end returns the parent's whole page (including stale
    bytes past the parent's end) while a read chunk starting at/after it returns zeros";
    semantics: the bound is checked with the byte offset where each chunk starts."""
    p = make_vmo(k, PAGE)
    write(k, p, b"\xaa" * PAGE, 0)
    c = clone(k, p, 0, 2 * PAGE)
    expect(k.vmo_set_size(p, 100), S.NO_ERROR)
    assert read(k, c, 0, PAGE) == b"\xaa" * PAGE
    assert read(k, c, 99, 10) == b"\xaa" * 10
    assert read(k, c, 100, 10) == bytes(10)
    assert read(k, c, 200, 10) == bytes(10)


def test_3_7_parent_shrink_and_regrow(k):
    """Spec 3.7 (clone_test_4 semantics): "after the parent is truncated to 0, the whole clone
    reads 0; after the parent is re-grown and written, the clone sees the new data"."""
    p = make_vmo(k, 2 * PAGE)
    write(k, p, b"\x07" * 2 * PAGE, 0)
    c = clone(k, p, 0, 2 * PAGE)
    expect(k.vmo_set_size(p, 0), S.NO_ERROR)
    assert read(k, c, 0, 2 * PAGE) == bytes(2 * PAGE)
    expect(k.vmo_set_size(p, 2 * PAGE), S.NO_ERROR)
    write(k, p, b"\x08" * 3, PAGE)
    assert read(k, c, PAGE, 4) == b"\x08" * 3 + b"\x00"


def test_3_7_clone_keeps_parent_alive(k):
    """Spec 3.7: "closing all parent handles does not change what the clone sees"; semantics
    "Objects": an object lives while it has a handle or a live clone child; its pages are
    freed when its last reference goes, then the parent reference is dropped."""
    p = make_vmo(k, PAGE)
    write(k, p, b"\x12" * PAGE, 0)
    c = clone(k, p, 0, PAGE)
    expect(k.handle_close(p), S.NO_ERROR)
    assert stats(k)["vmos"] == 2 and stats(k)["handles"] == 1
    assert read(k, c, 0, PAGE) == b"\x12" * PAGE
    expect(k.handle_close(c), S.NO_ERROR)
    s = stats(k)
    assert s["vmos"] == 0 and s["handles"] == 0 and s["free_frames"] == s["total_frames"]


# =============================================================================================
# 3.8 handle_close
# =============================================================================================
def test_3_8_handle_close(k):
    """Spec 3.8: not found -> ERR_BAD_HANDLE; "MX_HANDLE_INVALID (0) -> ERR_BAD_HANDLE in the
    seed era"; "A second close of the same value -> ERR_BAD_HANDLE"; no rights needed."""
    expect(k.handle_close(0), S.ERR_BAD_HANDLE)
    expect(k.handle_close(vmo.MX_HANDLE_INVALID), S.ERR_BAD_HANDLE)
    h = make_vmo(k, PAGE)
    h0 = dup(k, h, 0)
    expect(k.handle_close(h0), S.NO_ERROR)
    expect(k.handle_close(h0), S.ERR_BAD_HANDLE)
    expect(k.handle_close(h), S.NO_ERROR)
    expect(k.handle_close(h), S.ERR_BAD_HANDLE)
    expect(k.vmo_get_size(h), S.ERR_BAD_HANDLE, 0)
    e = make_event(k)
    expect(k.handle_close(e), S.NO_ERROR)
    assert stats(k)["handles"] == 0


def test_3_8_last_handle_frees_pages(k):
    """Spec 3.8: "Closing the last handle destroys the dispatcher; the VMO's pages are freed
    when the last reference ... goes away"; semantics: freed in ascending page index order."""
    h = make_vmo(k, 3 * PAGE)
    write(k, h, bytes(3 * PAGE), 0)
    h2 = dup(k, h, vmo.MX_RIGHT_SAME_RIGHTS)
    expect(k.handle_close(h), S.NO_ERROR)
    assert committed(k) == 3
    expect(k.handle_close(h2), S.NO_ERROR)
    assert committed(k) == 0 and stats(k)["vmos"] == 0
    n = make_vmo(k, 4 * PAGE)
    expect(k.vmo_op_range(n, Op.COMMIT, 0, 4 * PAGE), S.NO_ERROR)
    st, entries = lookup(k, n, 0, 4 * PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [paddr(2), paddr(1), paddr(0), paddr(3)]


# =============================================================================================
# 3.9 handle_duplicate
# =============================================================================================
def test_3_9_handle_duplicate(k):
    """Spec 3.9: not found -> BAD_HANDLE; source lacks DUPLICATE -> ACCESS_DENIED (before the
    rights subset check); SAME_RIGHTS copies; non-subset -> INVALID_ARGS; "rights 0 is a valid
    subset"; "an equal set is accepted"; works on any object type."""
    expect(k.handle_duplicate(0, vmo.MX_RIGHT_SAME_RIGHTS), S.ERR_BAD_HANDLE, 0)
    h = make_vmo(k, PAGE)
    expect(k.handle_duplicate(h + 2, 0), S.ERR_BAD_HANDLE, 0)
    assert rights_of(k, dup(k, h, vmo.MX_RIGHT_SAME_RIGHTS)) == 0x3F
    assert rights_of(k, dup(k, h, 0x3F)) == 0x3F
    assert rights_of(k, dup(k, h, 0)) == 0
    expect(k.handle_duplicate(h, 0x40), S.ERR_INVALID_ARGS, 0)
    expect(k.handle_duplicate(h, 0x7F), S.ERR_INVALID_ARGS, 0)
    expect(k.handle_duplicate(h, vmo.MX_RIGHT_SAME_RIGHTS | R.READ), S.ERR_INVALID_ARGS, 0)
    nodup = dup(k, h, R.READ | R.WRITE)
    expect(k.handle_duplicate(nodup, vmo.MX_RIGHT_SAME_RIGHTS), S.ERR_ACCESS_DENIED, 0)
    expect(k.handle_duplicate(nodup, R.READ), S.ERR_ACCESS_DENIED, 0)
    expect(k.handle_duplicate(nodup, 0xFFF), S.ERR_ACCESS_DENIED, 0)
    d = dup(k, h, R.DUPLICATE | R.READ)
    expect(k.handle_duplicate(d, R.WRITE), S.ERR_INVALID_ARGS, 0)
    assert rights_of(k, dup(k, d, R.DUPLICATE | R.READ)) == R.DUPLICATE | R.READ
    e = make_event(k)
    e2 = dup(k, e, vmo.MX_RIGHT_SAME_RIGHTS)
    assert rights_of(k, e2) == 0x0F
    expect(k.handle_duplicate(e, R.MAP), S.ERR_INVALID_ARGS, 0)


def test_3_9_duplicate_same_object(k):
    """Spec 3.9: a duplicate names the same object (same koid, writes visible)."""
    h = make_vmo(k, PAGE)
    d = dup(k, h, vmo.MX_RIGHT_SAME_RIGHTS)
    assert d != h
    write(k, d, b"dup", 0)
    assert read(k, h, 0, 3) == b"dup"
    i1 = expect(k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
    i2 = expect(k.object_get_info(d, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
    assert i1.koid == i2.koid
    assert stats(k)["vmos"] == 1 and stats(k)["handles"] == 2


# =============================================================================================
# 3.10 handle_replace
# =============================================================================================
def test_3_10_handle_replace(k):
    """Spec 3.10: not found -> BAD_HANDLE; "No DUPLICATE right is required"; SAME_RIGHTS; non-
    subset -> INVALID_ARGS "and the original handle is put back (still valid)"; on success the
    old value is invalid. Semantics: the old slot is freed first, then the new one allocated
    (next generation of the same slot)."""
    expect(k.handle_replace(0, 0), S.ERR_BAD_HANDLE, 0)
    h = make_vmo(k, PAGE)
    assert h == 1
    expect(k.handle_replace(h, 0x40), S.ERR_INVALID_ARGS, 0)
    assert rights_of(k, h) == 0x3F
    r = expect(k.handle_replace(h, R.READ | R.WRITE), S.NO_ERROR)
    assert r == 524289
    assert rights_of(k, r) == R.READ | R.WRITE
    expect(k.vmo_get_size(h), S.ERR_BAD_HANDLE, 0)
    expect(k.handle_replace(h, 0), S.ERR_BAD_HANDLE, 0)
    r2 = expect(k.handle_replace(r, 0), S.NO_ERROR)  # no DUPLICATE right needed
    assert r2 == (2 << 19) | 1
    assert rights_of(k, r2) == 0
    expect(k.handle_replace(r2, R.READ), S.ERR_INVALID_ARGS, 0)
    r3 = expect(k.handle_replace(r2, vmo.MX_RIGHT_SAME_RIGHTS), S.NO_ERROR)
    assert rights_of(k, r3) == 0
    assert stats(k)["handles"] == 1 and stats(k)["vmos"] == 1
    e = make_event(k)
    e2 = expect(k.handle_replace(e, R.READ), S.NO_ERROR)
    assert rights_of(k, e2) == R.READ


# =============================================================================================
# 3.11 object_get_info
# =============================================================================================
def test_3_11_handle_valid(k):
    """Spec 3.11: "MX_INFO_HANDLE_VALID -> NO_ERROR if the handle exists, else ERR_BAD_HANDLE";
    semantics: (NO_ERROR, None)."""
    h = make_vmo(k, PAGE)
    expect(k.object_get_info(h, vmo.MX_INFO_HANDLE_VALID), S.NO_ERROR, None)
    expect(k.object_get_info(dup(k, h, 0), vmo.MX_INFO_HANDLE_VALID), S.NO_ERROR, None)
    expect(k.object_get_info(make_event(k), vmo.MX_INFO_HANDLE_VALID), S.NO_ERROR, None)
    expect(k.object_get_info(0, vmo.MX_INFO_HANDLE_VALID), S.ERR_BAD_HANDLE, IGNORE)
    expect(k.object_get_info(h + 100, vmo.MX_INFO_HANDLE_VALID), S.ERR_BAD_HANDLE, IGNORE)


def test_3_11_handle_basic(k):
    """Spec 3.11: HANDLE_BASIC record for a VMO: type 3, related_koid 0, props
    MX_OBJ_PROP_WAITABLE, rights the handle's; no rights required. Semantics "Objects": koids
    from one counter starting at 1024 (VMO, clone, event); events type 5 and waitable."""
    h = make_vmo(k, PAGE)
    info = expect(k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
    assert (info.koid, info.rights, info.type, info.related_koid, info.props) == (
        1024, 0x3F, vmo.MX_OBJ_TYPE_VMEM, 0, vmo.MX_OBJ_PROP_WAITABLE)
    assert info.type == 3 and info.props == 1
    info = expect(k.object_get_info(dup(k, h, 0), vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
    assert (info.koid, info.rights) == (1024, 0)
    e = make_event(k)
    info = expect(k.object_get_info(e, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
    assert (info.koid, info.rights, info.type, info.related_koid, info.props) == (
        1025, 0x0F, vmo.MX_OBJ_TYPE_EVENT, 0, vmo.MX_OBJ_PROP_WAITABLE)
    c = clone(k, h, 0, PAGE)
    info = expect(k.object_get_info(c, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
    assert (info.koid, info.type, info.related_koid) == (1026, 3, 0)
    expect(k.object_get_info(0, vmo.MX_INFO_HANDLE_BASIC), S.ERR_BAD_HANDLE, IGNORE)


@pytest.mark.parametrize("topic", range(3, 14))
def test_3_11_task_topics_wrong_type(k, topic):
    """Semantics "object_get_info": "Topics 3-13 ...: handle lookup, then ERR_WRONG_TYPE"."""
    expect(k.object_get_info(0, topic), S.ERR_BAD_HANDLE, IGNORE)
    expect(k.object_get_info(make_vmo(k, PAGE), topic), S.ERR_WRONG_TYPE, IGNORE)
    expect(k.object_get_info(make_event(k), topic), S.ERR_WRONG_TYPE, IGNORE)


@pytest.mark.parametrize("topic", [0, 14, 15, 100, 0xFFFF_FFFF])
def test_3_11_other_topics_not_supported(k, topic):
    """Semantics "object_get_info": "Any other topic: ERR_NOT_SUPPORTED"."""
    expect(k.object_get_info(make_vmo(k, PAGE), topic), S.ERR_NOT_SUPPORTED, IGNORE)


def test_3_11_failure_value_is_zero(k):
    """docs/api.md "Syscall layer": "On failure the value is 0 (MX_HANDLE_INVALID for handles)" --
    the rule is stated for every call with an out-parameter, object_get_info included."""
    h = make_vmo(k, PAGE)
    expect(k.object_get_info(0, vmo.MX_INFO_HANDLE_VALID), S.ERR_BAD_HANDLE, 0)
    expect(k.object_get_info(0, vmo.MX_INFO_HANDLE_BASIC), S.ERR_BAD_HANDLE, 0)
    expect(k.object_get_info(h, 3), S.ERR_WRONG_TYPE, 0)
    expect(k.object_get_info(h, 99), S.ERR_NOT_SUPPORTED, 0)


# =============================================================================================
# Deterministic frames and statuses
# =============================================================================================
def test_frames_deterministic_from_memory_base(make_kernel):
    """docs/api.md "The kernel" "Frame allocation is deterministic: a fresh kernel hands out frames
    in ascending physical address order starting at memory_base"; semantics "Frames": frame f lives
    at memory_base + f * 4096."""
    for base in (BASE, 0x4000_0000, PAGE):
        k = make_kernel(memory_size=64 * PAGE, memory_base=base)
        h = make_vmo(k, 8 * PAGE)
        expect(k.vmo_op_range(h, Op.COMMIT, 0, 8 * PAGE), S.NO_ERROR)
        st, entries = lookup(k, h, 0, 8 * PAGE)
        expect(st, S.NO_ERROR)
        assert entries == [base + i * PAGE for i in range(8)]


def test_frames_same_sequence_same_result(make_kernel):
    """docs/api.md "The kernel": "The same sequence of calls on two fresh kernels gives identical
    handles and physical addresses"."""
    def scenario(k):
        out = []
        a = make_vmo(k, 5 * PAGE)
        b = make_vmo(k, 3 * PAGE)
        write(k, a, b"x", 2 * PAGE)
        expect(k.vmo_op_range(b, Op.COMMIT, 0, 3 * PAGE), S.NO_ERROR)
        expect(k.vmo_op_range(a, Op.DECOMMIT, 0, 5 * PAGE), S.NO_ERROR)
        c = clone(k, b, PAGE, 4 * PAGE)
        write(k, c, b"y", 0)
        expect(k.handle_close(a), S.NO_ERROR)
        d = make_vmo(k, 2 * PAGE)
        expect(k.vmo_op_range(d, Op.COMMIT, 0, 2 * PAGE), S.NO_ERROR)
        for h in (b, c, d):
            st, entries = lookup(k, h, 0, PAGE)
            out.append((h, st, entries))
        return out
    first = scenario(make_kernel())
    assert first == scenario(make_kernel())
    assert [h for h, _, _ in first] == [3, 5, 524289]
    assert [e for _, _, e in first] == [[paddr(1)], [paddr(0)], [paddr(4)]]


def test_every_status_is_a_status_member(k):
    """docs/api.md "Constants": "vmo.Status is an IntEnum holding all of them; every status the API
    returns is a Status member" -- one call of each kind, success and failure."""
    h = make_vmo(k, PAGE)
    e = make_event(k)
    results = [
        k.vmo_create(PAGE), k.vmo_create(PAGE, 1), k.vmo_create(MAX + 1),
        k.vmo_read(h, bytearray(4), 0), k.vmo_read(0, bytearray(4), 0),
        k.vmo_write(h, b"ab", 0), k.vmo_write(e, b"ab", 0),
        k.vmo_get_size(h), k.vmo_get_size(e),
        k.vmo_set_size(h, PAGE), k.vmo_set_size(h, U64),
        k.vmo_op_range(h, Op.COMMIT, 0, PAGE), k.vmo_op_range(h, Op.LOCK, 0, PAGE),
        k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytearray(0)),
        k.vmo_clone(h, COW, 0, PAGE), k.vmo_clone(h, COW, 1, PAGE),
        k.handle_duplicate(h, 0), k.handle_duplicate(h, 1 << 20),
        k.handle_replace(dup(k, h, 0), 0), k.handle_replace(h + 200, 0),
        k.object_get_info(h, 1), k.object_get_info(h, 2), k.object_get_info(h, 77),
        k.event_create(0), k.handle_close(e), k.handle_close(e),
    ]
    for result in results:
        status = result[0] if isinstance(result, tuple) else result
        assert type(status) is vmo.Status, result
