"""Ports of Magenta's own VMO tests (docs/magenta.md section 5), syscall-level parts.

Citations "spec X.Y" are sections of docs/magenta.md (so "spec 3.6.4" is docs/magenta.md
3.6.4).

5.1: `system/utest/vmo/vmo.cpp` as of 2017-05-12, in its registration order, then the later-window
additions vmo_decommit_misaligned_test, vmo_clone_decommit_test and vmo_clone_commit_test.
Parts that need `mx_vmar_map` are replaced by vmo_read/vmo_write equivalents, as spec 5.1
describes ("Python equivalent: ..."). 5.3: the kernel unit tests of
`kernel/kernel/vm/vm_unittest.cpp`, through the syscalls (CommitRange -> COMMIT, the
`committed` count -> stats()["committed_frames"], kernel Read/Write -> vmo_read/vmo_write,
mappings filled with the LCG pattern -> vmo_write/vmo_read, Lookup -> LOOKUP).
"""

import struct
from array import array

from conftest import PAGE, SENTINEL, U64, clone, dup, expect, lookup, make_vmo, read, stats, write

import vmo

S = vmo.Status
Op = vmo.Op
R = vmo.Rights
COW = vmo.MX_VMO_CLONE_COPY_ON_WRITE


def committed_bytes(k):
    return stats(k)["committed_frames"] * PAGE


def q(value):
    """A native-endian uint64, as the tests' `uint64_t` stores are."""
    return struct.pack("=Q", value)


def offset_words(length, start=0):
    """8-byte words equal to their own offsets (clone_test_2/4's fill)."""
    return b"".join(q(start + off) for off in range(0, length, 8))


# =============================================================================================
# 5.1 system/utest/vmo/vmo.cpp
# =============================================================================================
def test_vmo_create_test(k):
    """Port of vmo_create_test (spec 5.1 #1): 16 VMOs of sizes 0, 4096, ..., 15*4096 with
    options 0 -> NO_ERROR each; closing each -> NO_ERROR."""
    handles = []
    for i in range(16):
        h = expect(k.vmo_create(i * PAGE, 0), S.NO_ERROR)
        assert h != vmo.MX_HANDLE_INVALID
        handles.append(h)
    for h in handles:
        expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_read_write_test(k):
    """Port of vmo_read_write_test (spec 5.1 #2): 4 pages; read 16384 at 0 -> NO_ERROR, actual
    16384, all zero; fill with 0x99, write 16384 -> actual 16384; the mapping comparison is
    replaced by reading the VMO back; close."""
    h = make_vmo(k, 4 * PAGE)
    buf = bytearray(b"\x55" * 4 * PAGE)
    expect(k.vmo_read(h, buf, 0, len(buf)), S.NO_ERROR, 4 * PAGE)
    assert buf == bytes(4 * PAGE)
    buf = bytearray(b"\x99" * 4 * PAGE)
    expect(k.vmo_write(h, buf, 0, len(buf)), S.NO_ERROR, 4 * PAGE)
    back = bytearray(4 * PAGE)
    expect(k.vmo_read(h, back, 0), S.NO_ERROR, 4 * PAGE)
    assert back == buf
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_map_test(k):
    """Port of vmo_map_test (spec 5.1 #3, (M)): only its syscall-level part survives without a
    mapping model: a 4-page VMO is created, a read-only view of it (a READ|MAP duplicate,
    what a read-only mapping needs) reads it, and closing works."""
    h = make_vmo(k, 4 * PAGE)
    ro = dup(k, h, R.READ | R.MAP)
    expect(k.vmo_read(ro, bytearray(PAGE), 3 * PAGE), S.NO_ERROR, PAGE)
    expect(k.vmo_write(ro, b"x", 0), S.ERR_ACCESS_DENIED, 0)
    expect(k.handle_close(h), S.NO_ERROR)
    expect(k.handle_close(ro), S.NO_ERROR)


def test_vmo_read_only_map_test(k):
    """Port of vmo_read_only_map_test (spec 5.1 #4, (M)): a read-only page passed as the output
    buffer of a syscall gives a negative status. Equivalent: a read-only buffer as vmo_read's
    output -> ERR_INVALID_ARGS (docs/api.md "Buffers": "as is a read-only buffer where one is
    written")."""
    h = make_vmo(k, PAGE)
    page = bytes(PAGE)
    expect(k.vmo_read(h, page, 0), S.ERR_INVALID_ARGS, 0)
    expect(k.vmo_read(h, memoryview(page), 0), S.ERR_INVALID_ARGS, 0)
    assert S.ERR_INVALID_ARGS < 0
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_resize_test(k):
    """Port of vmo_resize_test (spec 5.1 #5): get_size -> 16384; set_size(5 pages) -> NO_ERROR;
    get_size -> 20480; set_size(UINT64_MAX) -> ERR_OUT_OF_RANGE; set_size to the same size
    (done while mapped in the original) -> NO_ERROR; close."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_get_size(h), S.NO_ERROR, 16384)
    expect(k.vmo_set_size(h, 5 * PAGE), S.NO_ERROR)
    expect(k.vmo_get_size(h), S.NO_ERROR, 20480)
    expect(k.vmo_set_size(h, U64), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_get_size(h), S.NO_ERROR, 20480)
    expect(k.vmo_set_size(h, 5 * PAGE), S.NO_ERROR)
    expect(k.vmo_get_size(h), S.NO_ERROR, 20480)
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_rights_test(k):
    """Port of vmo_rights_test (spec 5.1 #6), syscall part: zero-length read and write on the
    original -> 0; READ-only duplicate: read 0, write ERR_ACCESS_DENIED; WRITE-only: read
    ERR_ACCESS_DENIED, write 0; rights 0: both ERR_ACCESS_DENIED. The mapping matrix needs
    mx_vmar_map; the rights it maps with are checked through HANDLE_BASIC instead (the
    late-window addition: a fresh VMO has DUP|TRANSFER|READ|WRITE|EXECUTE|MAP -- exactly
    0x3F in the normative era). Close -> NO_ERROR."""
    h = make_vmo(k, 4 * PAGE)
    expect(k.vmo_read(h, bytearray(0), 0), S.NO_ERROR, 0)
    expect(k.vmo_write(h, b"", 0), S.NO_ERROR, 0)
    ro = dup(k, h, R.READ)
    expect(k.vmo_read(ro, bytearray(0), 0), S.NO_ERROR, 0)
    expect(k.vmo_write(ro, b"", 0), S.ERR_ACCESS_DENIED, 0)
    wo = dup(k, h, R.WRITE)
    expect(k.vmo_read(wo, bytearray(0), 0), S.ERR_ACCESS_DENIED, 0)
    expect(k.vmo_write(wo, b"", 0), S.NO_ERROR, 0)
    none = dup(k, h, 0)
    expect(k.vmo_read(none, bytearray(0), 0), S.ERR_ACCESS_DENIED, 0)
    expect(k.vmo_write(none, b"", 0), S.ERR_ACCESS_DENIED, 0)
    info = expect(k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
    assert info.rights == (R.DUPLICATE | R.TRANSFER | R.READ | R.WRITE | R.EXECUTE | R.MAP)
    for handle, rights in ((ro, R.READ), (wo, R.WRITE), (none, 0)):
        info = expect(k.object_get_info(handle, vmo.MX_INFO_HANDLE_BASIC), S.NO_ERROR)
        assert info.rights == rights
    for handle in (h, ro, wo, none):
        expect(k.handle_close(handle), S.NO_ERROR)


def test_vmo_lookup_test(k):
    """Port of vmo_lookup_test (spec 5.1 #7): size 16384, a buffer of 4 mx_paddr_t. LOOKUP on
    the uncommitted VMO -> ERR_NO_MEMORY; COMMIT with the buffer passed -> NO_ERROR (buffer
    ignored); LOOKUP(0, 16384) -> all 4 nonzero; LOOKUP(1, 12288) -> all 4 nonzero; LOOKUP(0,
    0) -> ERR_INVALID_ARGS; LOOKUP(16385, 1) -> ERR_OUT_OF_RANGE; LOOKUP(0, 16385) with the
    32-byte buffer -> ERR_BUFFER_TOO_SMALL; close."""
    h = make_vmo(k, 16384)
    buf = array("Q", [0] * 4)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 16384, buf, 32), S.ERR_NO_MEMORY)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 16384, buf, 32), S.NO_ERROR)
    assert list(buf) == [0, 0, 0, 0]
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 16384, buf, 32), S.NO_ERROR)
    assert all(buf)
    first = list(buf)
    buf = array("Q", [0] * 4)
    expect(k.vmo_op_range(h, Op.LOOKUP, 1, 12288, buf, 32), S.NO_ERROR)
    assert all(buf) and list(buf) == first
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 0, buf, 32), S.ERR_INVALID_ARGS)
    expect(k.vmo_op_range(h, Op.LOOKUP, 16385, 1, buf, 32), S.ERR_OUT_OF_RANGE)
    expect(k.vmo_op_range(h, Op.LOOKUP, 0, 16385, buf, 32), S.ERR_BUFFER_TOO_SMALL)
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_commit_test(k):
    """Port of vmo_commit_test (spec 5.1 #8): 16384-byte VMO; COMMIT all, DECOMMIT all, COMMIT
    all -> 0. "Python equivalent: write 99 at 4096 via vmo_write, decommit page 0 -> still 99,
    decommit page 1 -> reads 0" (the alias mapping at offset 4096 reads the same bytes)."""
    h = make_vmo(k, 16384)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 16384), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, 16384), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 16384), S.NO_ERROR)
    write(k, h, q(99), PAGE)
    assert read(k, h, PAGE, 8) == q(99)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0, PAGE), S.NO_ERROR)
    assert read(k, h, PAGE, 8) == q(99)
    expect(k.vmo_op_range(h, Op.DECOMMIT, PAGE, PAGE), S.NO_ERROR)
    assert read(k, h, PAGE, 8) == q(0)
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_zero_page_test(k):
    """Port of vmo_zero_page_test (spec 5.1 #9, (M)), the three mappings replaced by
    vmo_read/vmo_write on one handle: page 0 reads 0; 99 written; read back 99; page 1 reads 0;
    vmo_write 100 at 4096 -> 100; page 2 reads 0; COMMIT(8192, 4096) -> NO_ERROR; vmo_write
    100 at 8192 -> 100. Reads through the zero page commit nothing (spec 3.0 step 5)."""
    h = make_vmo(k, 4 * PAGE)
    assert read(k, h, 0, 8) == q(0)
    assert committed_bytes(k) == 0
    write(k, h, q(99), 0)
    assert read(k, h, 0, 8) == q(99)
    assert read(k, h, PAGE, 8) == q(0)
    write(k, h, q(100), PAGE)
    assert read(k, h, PAGE, 8) == q(100)
    assert read(k, h, 2 * PAGE, 8) == q(0)
    expect(k.vmo_op_range(h, Op.COMMIT, 2 * PAGE, PAGE), S.NO_ERROR)
    write(k, h, q(100), 2 * PAGE)
    assert read(k, h, 2 * PAGE, 8) == q(100)
    assert committed_bytes(k) == 3 * PAGE
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_clone_test_1(k):
    """Port of vmo_clone_test_1 (spec 5.1 #10): 4-page VMO; two COW clones of (0, 16384) ->
    NO_ERROR and handles != MX_HANDLE_INVALID; a clone of clone #2 -> NO_ERROR; closing the
    original and then all three clones -> NO_ERROR each."""
    h = make_vmo(k, 4 * PAGE)
    c1 = expect(k.vmo_clone(h, COW, 0, 16384), S.NO_ERROR)
    c2 = expect(k.vmo_clone(h, COW, 0, 16384), S.NO_ERROR)
    c3 = expect(k.vmo_clone(c2, COW, 0, 16384), S.NO_ERROR)
    for c in (c1, c2, c3):
        assert c != vmo.MX_HANDLE_INVALID
    for handle in (h, c1, c2, c3):
        expect(k.handle_close(handle), S.NO_ERROR)
    assert stats(k)["vmos"] == 0


def test_vmo_clone_test_2(k):
    """Port of vmo_clone_test_2 (spec 5.1 #11): offset-valued 8-byte words; the clone reads the
    same; write 99 at clone offset 0 -> read back 99, the rest of clone page 0 still the
    offsets (whole page copied); original unchanged; write 99 to the original at 8192 -> the
    clone reads 99 there (un-copied pages are live views); close clone then original."""
    h = make_vmo(k, 4 * PAGE)
    words = offset_words(4 * PAGE)
    expect(k.vmo_write(h, words, 0), S.NO_ERROR, 4 * PAGE)
    c = clone(k, h, 0, 16384)
    assert read(k, c, 0, 4 * PAGE) == words
    write(k, c, q(99), 0)
    assert read(k, c, 0, 8) == q(99)
    assert read(k, c, 8, PAGE - 8) == words[8:PAGE]
    assert read(k, h, 0, 4 * PAGE) == words
    write(k, h, q(99), 8192)
    assert read(k, c, 8192, 8) == q(99)
    expect(k.handle_close(c), S.NO_ERROR)
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_clone_test_3(k):
    """Port of vmo_clone_test_3 (spec 5.1 #12, (M)), mappings replaced by read/write: both read
    all zeros; write 99 to the original at word 0 -> clone reads 99; write 100 via the clone ->
    clone 100, original still 99; close handles."""
    h = make_vmo(k, 4 * PAGE)
    c = clone(k, h, 0, 4 * PAGE)
    assert read(k, h, 0, 4 * PAGE) == bytes(4 * PAGE)
    assert read(k, c, 0, 4 * PAGE) == bytes(4 * PAGE)
    write(k, h, q(99), 0)
    assert read(k, c, 0, 8) == q(99)
    write(k, c, q(100), 0)
    assert read(k, c, 0, 8) == q(100)
    assert read(k, h, 0, 8) == q(99)
    expect(k.handle_close(h), S.NO_ERROR)
    expect(k.handle_close(c), S.NO_ERROR)


def test_vmo_clone_test_4(k):
    """Port of vmo_clone_test_4 (spec 5.1 #13, "easily expressed with read/write"): offset-valued
    words; clone with offset 1 -> ERR_INVALID_ARGS; clone (4096, 16384) -> NO_ERROR (one page
    past the parent); clone words of 3 pages = parent words shifted by a page; the last clone
    page reads 0; set_size(original, 5 pages) -> still 0; write 99 to the original at 16384 ->
    clone offset 12288 reads 99; set_size(original, 6 pages), set_size(original, 0) ->
    NO_ERROR; the whole clone now reads 0 ("never COWed")."""
    h = make_vmo(k, 4 * PAGE)
    words = offset_words(4 * PAGE)
    write(k, h, words, 0)
    expect(k.vmo_clone(h, COW, 1, 16384), S.ERR_INVALID_ARGS, vmo.MX_HANDLE_INVALID)
    c = expect(k.vmo_clone(h, COW, PAGE, 16384), S.NO_ERROR)
    assert read(k, c, 0, 3 * PAGE) == words[PAGE:]
    assert read(k, c, 3 * PAGE, PAGE) == bytes(PAGE)
    expect(k.vmo_set_size(h, 5 * PAGE), S.NO_ERROR)
    assert read(k, c, 3 * PAGE, PAGE) == bytes(PAGE)
    write(k, h, q(99), 16384)
    assert read(k, c, 12288, 8) == q(99)
    expect(k.vmo_set_size(h, 6 * PAGE), S.NO_ERROR)
    expect(k.vmo_set_size(h, 0), S.NO_ERROR)
    assert read(k, c, 0, 4 * PAGE) == bytes(4 * PAGE)
    expect(k.handle_close(c), S.NO_ERROR)
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_decommit_misaligned_test(k):
    """Port of vmo_decommit_misaligned_test (spec 5.1, added 2017-06-07): 2-page VMO;
    DECOMMIT(0x10, 0x100) on uncommitted memory -> NO_ERROR; COMMIT(0x10, 0x100) -> NO_ERROR;
    DECOMMIT(0x10, 0x100) -> NO_ERROR (and, with docs/api.md exception 1, the page is freed)."""
    h = make_vmo(k, 2 * PAGE)
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0x10, 0x100), S.NO_ERROR)
    expect(k.vmo_op_range(h, Op.COMMIT, 0x10, 0x100), S.NO_ERROR)
    assert committed_bytes(k) == PAGE
    expect(k.vmo_op_range(h, Op.DECOMMIT, 0x10, 0x100), S.NO_ERROR)
    assert committed_bytes(k) == 0
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_clone_decommit_test(k):
    """Port of vmo_clone_decommit_test (spec 5.1, 2017-07-12): parent writes 99, clone sees 99;
    clone writes 100, parent still 99; DECOMMIT(clone, 0, 4096) -> clone reads 99 again, parent
    99; clone writes 100 again -> parent still 99."""
    h = make_vmo(k, 4 * PAGE)
    c = clone(k, h, 0, 4 * PAGE)
    write(k, h, q(99), 0)
    assert read(k, c, 0, 8) == q(99)
    write(k, c, q(100), 0)
    assert read(k, c, 0, 8) == q(100)
    assert read(k, h, 0, 8) == q(99)
    expect(k.vmo_op_range(c, Op.DECOMMIT, 0, PAGE), S.NO_ERROR)
    assert read(k, c, 0, 8) == q(99)
    assert read(k, h, 0, 8) == q(99)
    write(k, c, q(100), 0)
    assert read(k, c, 0, 8) == q(100)
    assert read(k, h, 0, 8) == q(99)
    expect(k.handle_close(c), S.NO_ERROR)
    expect(k.handle_close(h), S.NO_ERROR)


def test_vmo_clone_commit_test(k):
    """Port of vmo_clone_commit_test (spec 5.1, 2017-07-12; docs/api.md exception 2): parent page
    filled with 0x99; COMMIT on clone page 0 -> the clone reads 0x99 over the whole page; a
    clone write of 0 is not visible in the parent; DECOMMIT of the clone page -> 0x99 again."""
    h = make_vmo(k, 4 * PAGE)
    c = clone(k, h, 0, 4 * PAGE)
    write(k, h, b"\x99" * PAGE, 0)
    expect(k.vmo_op_range(c, Op.COMMIT, 0, PAGE), S.NO_ERROR)
    assert read(k, c, 0, PAGE) == b"\x99" * PAGE
    write(k, c, bytes(PAGE), 0)
    assert read(k, c, 0, PAGE) == bytes(PAGE)
    assert read(k, h, 0, PAGE) == b"\x99" * PAGE
    expect(k.vmo_op_range(c, Op.DECOMMIT, 0, PAGE), S.NO_ERROR)
    assert read(k, c, 0, PAGE) == b"\x99" * PAGE
    expect(k.handle_close(c), S.NO_ERROR)
    expect(k.handle_close(h), S.NO_ERROR)


# =============================================================================================
# 5.3 kernel/kernel/vm/vm_unittest.cpp
# =============================================================================================
def lcg_pattern(seed, length):
    """vm_unittest's fill_region: uint32 words, val = (uint32)seed ^ (uint32)(seed >> 32),
    then val = val * 1664525 + 1013904223 (mod 2**32) per word."""
    val = (seed ^ (seed >> 32)) & 0xFFFF_FFFF
    words = array("I")
    for _ in range(length // 4):
        words.append(val)
        val = (val * 1664525 + 1013904223) & 0xFFFF_FFFF
    return words.tobytes()


ALLOC = 16 * PAGE


def test_kernel_vmo_create_test(k):
    """Port of vm_unittest vmo_create_test (spec 5.3): a 1-page paged VMO is created."""
    h = make_vmo(k, PAGE)
    expect(k.vmo_get_size(h), S.NO_ERROR, PAGE)


def test_kernel_vmo_commit_test(k):
    """Port of vm_unittest vmo_commit_test (spec 5.3): 16-page VMO; CommitRange(0, 16 pages)
    -> 0 and committed = 65536."""
    h = make_vmo(k, ALLOC)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, ALLOC), S.NO_ERROR)
    assert committed_bytes(k) == 65536


def test_kernel_vmo_odd_size_commit_test(k):
    """Port of vm_unittest vmo_odd_size_commit_test (spec 5.3): 15-byte VMO; CommitRange(0, 15)
    -> 0, committed = 4096 (ROUNDUP_PAGE_SIZE(15))."""
    h = make_vmo(k, 15)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, 15), S.NO_ERROR)
    assert committed_bytes(k) == 4096


def test_kernel_vmo_precommitted_map_test(k):
    """Port of vm_unittest vmo_precommitted_map_test (spec 5.3): commit 16 pages, fill with the
    LCG pattern, verify (mapping replaced by vmo_write/vmo_read); no new page needed."""
    h = make_vmo(k, ALLOC)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, ALLOC), S.NO_ERROR)
    data = lcg_pattern(0xFFFF_FFFF_8000_0000, ALLOC)
    write(k, h, data, 0)
    assert read(k, h, 0, ALLOC) == data
    assert committed_bytes(k) == ALLOC


def test_kernel_vmo_demand_paged_map_test(k):
    """Port of vm_unittest vmo_demand_paged_map_test (spec 5.3): no commit; filling demand-pages
    all 16 pages; the pattern reads back."""
    h = make_vmo(k, ALLOC)
    data = lcg_pattern(0xFFFF_FFFF_8001_0000, ALLOC)
    assert committed_bytes(k) == 0
    write(k, h, data, 0)
    assert committed_bytes(k) == ALLOC
    assert read(k, h, 0, ALLOC) == data


def test_kernel_vmo_dropped_ref_test(k):
    """Port of vm_unittest vmo_dropped_ref_test (spec 5.3): the creator's reference is dropped
    while another (the mapping's; here a duplicate handle) keeps the object; the pattern still
    reads back."""
    h = make_vmo(k, ALLOC)
    keep = dup(k, h, vmo.MX_RIGHT_SAME_RIGHTS)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, ALLOC), S.NO_ERROR)
    expect(k.handle_close(h), S.NO_ERROR)
    data = lcg_pattern(0xFFFF_FFFF_8002_0000, ALLOC)
    write(k, keep, data, 0)
    assert read(k, keep, 0, ALLOC) == data


def test_kernel_vmo_remap_test(k):
    """Port of vm_unittest vmo_remap_test (spec 5.3): fill, "unmap", "map again" (a new handle
    to the same VMO), the pattern is still valid."""
    h = make_vmo(k, ALLOC)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, ALLOC), S.NO_ERROR)
    data = lcg_pattern(0xFFFF_FFFF_8003_0000, ALLOC)
    write(k, h, data, 0)
    again = dup(k, h, R.READ)
    assert read(k, again, 0, ALLOC) == data


def test_kernel_vmo_double_remap_test(k):
    """Port of vm_unittest vmo_double_remap_test (spec 5.3): demand-paged fill; a second view
    sees the same data; a third at offset 4096 matches the first shifted by a page."""
    h = make_vmo(k, ALLOC)
    data = lcg_pattern(0xFFFF_FFFF_8004_0000, ALLOC)
    write(k, h, data, 0)
    second = dup(k, h, R.READ)
    assert read(k, second, 0, ALLOC) == data
    assert read(k, h, PAGE, ALLOC - PAGE) == data[PAGE:]


def test_kernel_vmo_read_write_smoke_test(k):
    """Port of vm_unittest vmo_read_write_smoke_test (spec 5.3): 16-page VMO; write of 0 bytes
    -> 0, written 0; 37 bytes at 0 and at 99 -> 37; alloc_size+47 at 0 -> written 65536
    (trimmed); at 31 -> 65536-31; at alloc_size+99 -> ERR_OUT_OF_RANGE, written 0; 4197 at 31
    -> visible; full write, full read back equal; Read(31, 4197) equals the source at 31."""
    h = make_vmo(k, ALLOC)
    src = lcg_pattern(0x1234_5678_9ABC_DEF0, ALLOC + 2 * PAGE)
    expect(k.vmo_write(h, src, 0, 0), S.NO_ERROR, 0)
    expect(k.vmo_write(h, src, 0, 37), S.NO_ERROR, 37)
    expect(k.vmo_write(h, src, 99, 37), S.NO_ERROR, 37)
    expect(k.vmo_write(h, src, 0, ALLOC + 47), S.NO_ERROR, 65536)
    expect(k.vmo_write(h, src, 31, ALLOC + 47), S.NO_ERROR, 65536 - 31)
    expect(k.vmo_write(h, src, ALLOC + 99, 37), S.ERR_OUT_OF_RANGE, 0)
    expect(k.vmo_write(h, memoryview(src)[31:31 + 4197], 31), S.NO_ERROR, 4197)
    assert read(k, h, 31, 4197) == src[31:31 + 4197]
    expect(k.vmo_write(h, src, 0, ALLOC), S.NO_ERROR, ALLOC)
    out = bytearray(ALLOC)
    expect(k.vmo_read(h, out, 0), S.NO_ERROR, ALLOC)
    assert out == src[:ALLOC]
    out = bytearray(4197)
    expect(k.vmo_read(h, out, 31), S.NO_ERROR, 4197)
    assert out == src[31:31 + 4197]


def test_kernel_vmo_lookup_test(k):
    """Port of vm_unittest vmo_lookup_test (spec 5.3, added 2017-07-05): 16-page VMO; Lookup over
    all pages -> ERR_NO_MEMORY having seen 0 pages (no entry written); commit page 1 only;
    Lookup(all) -> NO_MEMORY, 0 pages; Lookup(from page 1) -> NO_MEMORY after 1 page;
    Lookup(page 1 only) -> OK, 1 page; commit all -> 15 new pages committed; Lookup(all) ->
    OK, 16 pages."""
    h = make_vmo(k, ALLOC)
    st, entries = lookup(k, h, 0, ALLOC)
    expect(st, S.ERR_NO_MEMORY)
    assert entries == [SENTINEL] * 16
    expect(k.vmo_op_range(h, Op.COMMIT, PAGE, PAGE), S.NO_ERROR)
    st, entries = lookup(k, h, 0, ALLOC)
    expect(st, S.ERR_NO_MEMORY)
    assert entries == [SENTINEL] * 16
    st, entries = lookup(k, h, PAGE, ALLOC - PAGE)
    expect(st, S.ERR_NO_MEMORY)
    assert entries[0] != SENTINEL and entries[1:] == [SENTINEL] * 14
    page1 = entries[0]
    st, entries = lookup(k, h, PAGE, PAGE)
    expect(st, S.NO_ERROR)
    assert entries == [page1]
    before = committed_bytes(k)
    expect(k.vmo_op_range(h, Op.COMMIT, 0, ALLOC), S.NO_ERROR)
    assert committed_bytes(k) - before == 15 * PAGE
    st, entries = lookup(k, h, 0, ALLOC)
    expect(st, S.NO_ERROR)
    assert len(entries) == 16 and SENTINEL not in entries and entries[1] == page1
    assert len(set(entries)) == 16
