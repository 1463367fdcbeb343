"""Embedding a device model: memory maps, contiguous VMOs, physical reads, writes and views.

The embedding calls (docs/api.md "Physical memory") and docs/semantics.md ("Frames and physical
addresses", "Contiguous VMOs", "Physical access"), on both kernels (the `kernel_cls` / `k` /
`make_kernel` fixtures of conftest.py):

- memory maps: validation (ValueError / TypeError), the properties, allocation order (ranges
  in the order given, ascending inside each, whatever their addresses), touching ranges merged
  into one arena only when consecutive in the order given;
- physical access errors: ERR_OUT_OF_RANGE at both ends of every arena, in holes, across
  holes, wrapping at 2**64, outside uint64; ERR_INVALID_ARGS for a negative length or
  non-contiguous data; TypeError for non-integers and non-buffers; ERR_BAD_STATE for free
  frames, decommitted pages and orphaned (pinned, let go) frames;
- DMA round trips both ways: device write -> vmo_read, vmo_write -> device read, views being
  live and zero copy, through clones (before and after copy-on-write);
- pinning: across DECOMMIT, shrink, handle close and kernel close the frame is not reused
  (everything else is allocated and LOOKUP never returns it), then after the release it is
  reused first and reads as zero; `pinned_frames`, `free_frames` and the allocator state at
  each step; several views, slices, frames above the fresh mark;
- contiguous VMOs: argument errors, ERR_NO_MEMORY (too big, fragmentation, alignment, arena
  boundaries) with nothing changed, first fit exactly, alignment 2**12..2**20 under
  fragmentation and 2**30 on a big sparse kernel, consecutive LOOKUP addresses;
- one seeded differential run on a larger fragmented multi-arena memory (core vs reference)
  for the word-at-a-time run search of the core.
"""

import gc
import random
from array import array

import pytest
from conftest import BASE, MAX, PAGE, U64, clone, expect, lookup, make_vmo, paddr, read, write

import vmo
from vmo import MxError, Op, Status

S = Status
OK = S.NO_ERROR
MiB = 1 << 20
GiB = 1 << 30


# -- helpers ------------------------------------------------------------------------------------
def pages_of(k, h):
    """{page index: paddr} of the VMO's own pages."""
    return expect(k._vmo_pages(h), OK)


def commit(k, h, offset, size):
    expect(k.vmo_op_range(h, Op.COMMIT, offset, size), OK)


def decommit(k, h, offset, size):
    expect(k.vmo_op_range(h, Op.DECOMMIT, offset, size), OK)


def contiguous(k, size, align=0):
    """A contiguous VMO (asserting NO_ERROR): (handle, [paddr of each page])."""
    h = expect(k.vmo_create_contiguous(size, align), OK)
    n = -(-size // PAGE)
    st, entries = lookup(k, h, 0, n * PAGE)
    assert st is OK
    return h, entries


def phys_error(fn, *args):
    """The status of the MxError that ``fn(*args)`` raises."""
    with pytest.raises(MxError) as info:
        fn(*args)
    return info.value.status


def access_status(k, op, paddr, length):
    """Run one physical access and return its status (NO_ERROR when it did not raise)."""
    try:
        if op == "read":
            data = k.phys_read(paddr, length)
            assert type(data) is bytes and len(data) == length
        elif op == "write":
            assert k.phys_write(paddr, bytes(length)) == length
        else:
            view = k.phys_view(paddr, length)
            assert view.nbytes == length
            view.release()
    except MxError as exc:
        return exc.status
    return OK


def fill(k):
    """Allocate every free frame into one new VMO; return (handle, set of the paddrs LOOKUP
    gives for them). One more page then is ERR_NO_MEMORY."""
    free = k.stats()["free_frames"]
    h = make_vmo(k, (free + 1) * PAGE)
    got = set()
    if free:
        commit(k, h, 0, free * PAGE)
        st, entries = lookup(k, h, 0, free * PAGE)
        assert st is OK
        got = set(entries)
    expect(k.vmo_op_range(h, Op.COMMIT, free * PAGE, PAGE), S.ERR_NO_MEMORY)
    assert k.stats()["free_frames"] == 0
    return h, got


def counts(k):
    s = k.stats()
    return s["free_frames"], s["committed_frames"], s["pinned_frames"]


def is_core(kernel_cls):
    return issubclass(kernel_cls, vmo.Kernel)


# -- memory maps --------------------------------------------------------------------------------
def test_memory_map_properties(make_kernel):
    k = make_kernel(memory_size=None, memory=[(0x200000, 8 * PAGE), (0x100000, 4 * PAGE),
                                              (0x4000_0000, PAGE)])
    assert k.memory_map == ((0x200000, 8 * PAGE), (0x100000, 4 * PAGE), (0x4000_0000, PAGE))
    assert k.memory_base == 0x200000  # the first range's base, not the lowest
    assert k.memory_size == 13 * PAGE
    s = k.stats()
    assert (s["total_frames"], s["free_frames"], s["pinned_frames"]) == (13, 13, 0)
    assert (s["memory_base"], s["memory_size"]) == (0x200000, 13 * PAGE)


def test_memory_map_of_the_single_range_forms(kernel_cls, make_kernel):
    k = make_kernel(memory_size=8 * PAGE, memory_base=0x300000)
    assert k.memory_map == ((0x300000, 8 * PAGE),)
    assert (k.memory_base, k.memory_size) == (0x300000, 8 * PAGE)
    with kernel_cls() as d:  # the defaults: 1 GiB at 0x100000
        assert d.memory_map == ((0x100000, GiB),)
        assert (d.memory_base, d.memory_size) == (0x100000, GiB)
        assert d.stats()["total_frames"] == GiB // PAGE


@pytest.mark.parametrize("kwargs", [
    dict(memory=[(0x100800, PAGE)]),                          # unaligned base
    dict(memory=[(0x100000, PAGE + 1)]),                      # unaligned size
    dict(memory=[(0x100000, 100)]),
    dict(memory=[(0x100000, 0)]),                             # zero size
    dict(memory=[(0x100000, -PAGE)]),
    dict(memory=[(-PAGE, 2 * PAGE)]),
    dict(memory=[(0x100000, PAGE), (0x200000, 0)]),
    dict(memory=[(0x100000, 2 * PAGE), (0x101000, PAGE)]),    # overlap
    dict(memory=[(0x101000, PAGE), (0x100000, 2 * PAGE)]),
    dict(memory=[(0x100000, 4 * PAGE), (0x101000, PAGE)]),    # one inside another
    dict(memory=[(0x100000, PAGE), (0x100000, PAGE)]),        # the same twice
    dict(memory=[]),                                          # empty
    dict(memory=[(0x100000,)]),                               # not a pair
    dict(memory=[(0x100000, PAGE, 1)]),
    dict(memory=[0x100000]),
    dict(memory=[((1 << 64) - PAGE, 2 * PAGE)]),              # past 2**64
    dict(memory=[(PAGE * i * 2, PAGE) for i in range(65)]),   # too many ranges
    dict(memory=[(0x100000, PAGE)], memory_size=PAGE),        # both forms
    dict(memory=[(0x100000, PAGE)], memory_base=0x100000),
    dict(memory_size=0),
    dict(memory_size=PAGE + 1),
    dict(memory_size=PAGE, memory_base=0x100001),
])
def test_memory_map_value_errors(kernel_cls, kwargs):
    with pytest.raises(ValueError):
        kernel_cls(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(memory=[(0x100000, 4096.0)]),
    dict(memory=[("0x100000", PAGE)]),
    dict(memory=[(None, PAGE)]),
    dict(memory_size=4096.0),
])
def test_memory_map_type_errors(kernel_cls, kwargs):
    with pytest.raises(TypeError):
        kernel_cls(**kwargs)


def test_ram_at_address_zero_in_both_forms(make_kernel):
    """A PC has RAM at 0: `memory_base=0` and `memory=[(0, size)]` build the same machine,
    and a LOOKUP of the page in frame 0 returns physical address 0, an address like any
    other (docs/semantics.md "RAM at address 0")."""
    for k in (make_kernel(memory_size=4 * PAGE, memory_base=0),
              make_kernel(memory_size=None, memory=[(0, 4 * PAGE)])):
        assert k.memory_map == ((0, 4 * PAGE),)
        assert (k.memory_base, k.stats()["memory_base"]) == (0, 0)
        h = make_vmo(k, 2 * PAGE)
        commit(k, h, 0, 2 * PAGE)
        assert lookup(k, h, 0, 2 * PAGE) == (S.NO_ERROR, [0, PAGE])
        write(k, h, b"at zero", 0)
        assert k.phys_read(0, 7) == b"at zero"
        k.phys_write(PAGE, b"dev")
        assert read(k, h, PAGE, 3) == b"dev"
        with k.phys_view(0, PAGE) as view:
            assert bytes(view[:7]) == b"at zero"


def test_memory_map_edges_are_accepted(make_kernel):
    """A range at physical address 0 and one ending exactly at 2**64."""
    k = make_kernel(memory_size=None, memory=[(0, 2 * PAGE), ((1 << 64) - 2 * PAGE, 2 * PAGE)])
    h = make_vmo(k, 4 * PAGE)
    commit(k, h, 0, 4 * PAGE)
    assert list(pages_of(k, h).values()) == [0, PAGE, (1 << 64) - 2 * PAGE, (1 << 64) - PAGE]
    write(k, h, b"zero", 0)
    write(k, h, b"top!", 4 * PAGE - 4)
    assert k.phys_read(0, 4) == b"zero"
    assert k.phys_read(U64 - 3, 4) == b"top!"
    assert k.phys_read(0, 0) == b"" and k.phys_read(2 * PAGE, 0) == b""
    for paddr_, length in [(U64 - 3, 5), (U64, 2), (1 << 64, 0), (2 * PAGE, 1), (U64 + 1, 1)]:
        assert phys_error(k.phys_read, paddr_, length) is S.ERR_OUT_OF_RANGE


def test_allocation_order_follows_the_map(make_kernel):
    """Frames of range 1 ascending, then range 2, then range 3, even when range 2 has the
    lowest address (docs/semantics.md: frames numbered in the order the ranges are given)."""
    memory = [(0x400000, 3 * PAGE), (0x100000, 2 * PAGE), (0x800000, 2 * PAGE)]
    k = make_kernel(memory_size=None, memory=memory)
    h = make_vmo(k, 8 * PAGE)
    expected = [0x400000, 0x401000, 0x402000, 0x100000, 0x101000, 0x800000, 0x801000]
    for i, want in enumerate(expected):  # one page at a time: fresh frames, ascending
        commit(k, h, i * PAGE, PAGE)
        assert pages_of(k, h)[i] == want
        assert k._allocator_state() == (i + 1, [])
    expect(k.vmo_op_range(h, Op.COMMIT, 7 * PAGE, PAGE), S.ERR_NO_MEMORY)
    st, entries = lookup(k, h, 0, 7 * PAGE)
    assert st is OK and entries == expected
    # Freed frames come back LIFO, whatever arena they are in.
    decommit(k, h, 0, 5 * PAGE)  # pushed in page order: frames 0..4
    assert k._allocator_state() == (7, [0, 1, 2, 3, 4])
    h2 = make_vmo(k, 2 * PAGE)
    commit(k, h2, 0, 2 * PAGE)
    assert pages_of(k, h2) == {0: 0x101000, 1: 0x100000}


def test_multi_arena_commit_in_one_call(make_kernel):
    k = make_kernel(memory_size=None, memory=[(0x900000, PAGE), (0x100000, 2 * PAGE)])
    h = make_vmo(k, 3 * PAGE)
    commit(k, h, 0, 3 * PAGE)
    assert pages_of(k, h) == {0: 0x900000, 1: 0x100000, 2: 0x101000}


def test_touching_ranges_are_one_arena(make_kernel):
    """(A, s), (A+s, s) given in this order touch: one arena, so a physical view, a read and
    a contiguous run may cross the seam; `memory_map` still lists both ranges."""
    k = make_kernel(memory_size=None, memory=[(0x100000, 2 * PAGE), (0x102000, 2 * PAGE)])
    assert k.memory_map == ((0x100000, 2 * PAGE), (0x102000, 2 * PAGE))
    h, entries = contiguous(k, 4 * PAGE)
    assert entries == [0x100000, 0x101000, 0x102000, 0x103000]
    write(k, h, b"A" * 10 + b"B" * 10, 2 * PAGE - 10)
    view = k.phys_view(0x102000 - 10, 20)
    assert view.tobytes() == b"A" * 10 + b"B" * 10
    view[8:12] = b"seam"
    assert read(k, h, 2 * PAGE - 10, 20) == b"A" * 8 + b"seam" + b"B" * 8
    view.release()
    assert k.phys_read(0x101000, 2 * PAGE) == read(k, h, PAGE, 2 * PAGE)
    assert k.phys_write(0x101ffe, b"xyzw") == 4
    assert read(k, h, 2 * PAGE - 2, 4) == b"xyzw"


def test_touching_ranges_out_of_order_are_separate_arenas(make_kernel):
    """Ranges touch by address but are not consecutive in the order given: separate arenas,
    so nothing crosses the seam and a run must lie in one of them."""
    k = make_kernel(memory_size=None,
                    memory=[(0x102000, 2 * PAGE), (0x100000, 2 * PAGE)])
    h = make_vmo(k, 4 * PAGE)
    commit(k, h, 0, 4 * PAGE)
    assert list(pages_of(k, h).values()) == [0x102000, 0x103000, 0x100000, 0x101000]
    for op in ("read", "write", "view"):
        assert access_status(k, op, 0x102000 - 10, 20) is S.ERR_OUT_OF_RANGE
        assert access_status(k, op, 0x100000, 4 * PAGE) is S.ERR_OUT_OF_RANGE
        assert access_status(k, op, 0x102000, 2 * PAGE) is OK
        assert access_status(k, op, 0x100000, 2 * PAGE) is OK
    expect(k.handle_close(h), OK)
    # Four frames free, no run of four in one arena; two in either.
    expect(k.vmo_create_contiguous(4 * PAGE), S.ERR_NO_MEMORY, 0)
    expect(k.vmo_create_contiguous(3 * PAGE), S.ERR_NO_MEMORY, 0)
    h, entries = contiguous(k, 2 * PAGE)
    assert entries == [0x102000, 0x103000]
    h, entries = contiguous(k, 2 * PAGE)
    assert entries == [0x100000, 0x101000]


def test_three_ranges_two_touching_merged(make_kernel):
    """Ranges 1 and 2 touch in order (merged), range 3 touches range 2's end but comes after
    a hole in the order (it is given first): only the 1-2 seam can be crossed."""
    k = make_kernel(memory_size=None, memory=[(0x104000, PAGE), (0x100000, 2 * PAGE),
                                              (0x102000, 2 * PAGE)])
    h = make_vmo(k, 5 * PAGE)
    commit(k, h, 0, 5 * PAGE)
    assert list(pages_of(k, h).values()) == [0x104000, 0x100000, 0x101000, 0x102000,
                                             0x103000]
    assert k.phys_read(0x100000, 4 * PAGE) == bytes(4 * PAGE)
    assert access_status(k, "read", 0x103000, 2 * PAGE) is S.ERR_OUT_OF_RANGE
    assert access_status(k, "view", 0x100000, 5 * PAGE) is S.ERR_OUT_OF_RANGE


# -- physical access: errors --------------------------------------------------------------------
HOLEY = [(0x200000, 4 * PAGE), (0x100000, 2 * PAGE), (0x300000, 2 * PAGE)]


@pytest.fixture
def holey(make_kernel):
    """Three separate arenas with holes, every frame held by one VMO (so only the range
    decides)."""
    k = make_kernel(memory_size=None, memory=HOLEY)
    h = make_vmo(k, 8 * PAGE)
    commit(k, h, 0, 8 * PAGE)
    return k, h


@pytest.mark.parametrize("op", ["read", "write", "view"])
def test_phys_range_edges_of_every_arena(holey, op):
    k, _ = holey
    for base, size in HOLEY:
        end = base + size
        ok_cases = [(base, 0), (base, 1), (base, size), (end - 1, 1), (end, 0), (end - PAGE, PAGE),
                    (base + PAGE - 1, 2), (base + 5, size - 5)]
        bad_cases = [(base - 1, 1), (base - 1, 2), (base - 1, 0), (base - PAGE, PAGE),
                     (base, size + 1), (end - 1, 2), (end, 1), (end + 1, 0), (base + 1, size),
                     (base - PAGE, size + 2 * PAGE)]
        for paddr_, length in ok_cases:
            assert access_status(k, op, paddr_, length) is OK, (hex(paddr_), length)
        for paddr_, length in bad_cases:
            assert access_status(k, op, paddr_, length) is S.ERR_OUT_OF_RANGE, (
                hex(paddr_), length)


@pytest.mark.parametrize("op", ["read", "write", "view"])
def test_phys_range_holes_and_wrap(holey, op):
    k, _ = holey
    cases = [
        (0x180000, 1), (0x180000, 0), (0x102000, 0x100000),     # in the hole
        (0x101000, 0xff001), (0x101000, 0x100000 + 2 * PAGE),   # across the hole
        (0x100000, 0x200000 + 4 * PAGE),                        # across two holes
        (0, 1), (0, 0), (PAGE, PAGE), (0x400000, 1),            # below / above all memory
        (U64, 1), (U64, 2), (U64 - PAGE + 1, PAGE),             # at the top / wrapping
        (0x200000, U64), (0x200000, (1 << 64) - 0x200000),      # paddr + length wraps
        (0x200000, 1 << 63), (1 << 63, PAGE),
        (1 << 64, 0), (1 << 64, 1), (1 << 70, 0),              # paddr outside uint64
        (-1, 0), (-PAGE, 1),
    ]
    for paddr_, length in cases:
        if op == "write" and length > 1 << 24:
            continue  # no such buffer: the length of a write is its data's
        assert access_status(k, op, paddr_, length) is S.ERR_OUT_OF_RANGE, (hex(paddr_), length)


@pytest.mark.parametrize("op", ["read", "view"])
def test_phys_length_outside_uint64_and_negative(holey, op):
    k, _ = holey
    fn = k.phys_read if op == "read" else k.phys_view
    assert phys_error(fn, 0x200000, -1) is S.ERR_INVALID_ARGS
    assert phys_error(fn, 0x200000, -(1 << 70)) is S.ERR_INVALID_ARGS
    assert phys_error(fn, 1 << 64, -1) is S.ERR_INVALID_ARGS  # negative length first
    assert phys_error(fn, 0x200000, 1 << 64) is S.ERR_OUT_OF_RANGE
    assert phys_error(fn, 0x200000, 1 << 80) is S.ERR_OUT_OF_RANGE


@pytest.mark.parametrize("bad", [1.0, "0x200000", None, b"\x00", [0]])
def test_phys_non_integers_raise_type_error(holey, bad):
    k, _ = holey
    for call in (lambda: k.phys_read(bad, 1), lambda: k.phys_read(0x200000, bad),
                 lambda: k.phys_view(bad, 1), lambda: k.phys_view(0x200000, bad),
                 lambda: k.phys_write(bad, b"x"), lambda: k.phys_read(bad, -1),
                 lambda: k.phys_view(-1, bad)):
        with pytest.raises(TypeError):
            call()
    assert k.stats()["pinned_frames"] == 0


def test_phys_integer_likes_are_accepted(holey):
    np = pytest.importorskip("numpy")
    k, _h = holey
    assert k.phys_write(np.uint64(0x200000), b"np") == 2
    assert k.phys_read(True * 0x200000, np.int32(2)) == b"np"
    with k.phys_view(np.int64(0x200000), np.uint8(2)) as v:
        assert v.tobytes() == b"np"


@pytest.mark.parametrize("data", [123, 1.5, "text", object(), None])
def test_phys_write_non_buffer_raises_type_error(holey, data):
    k, _ = holey
    with pytest.raises(TypeError):
        k.phys_write(0x200000, data)


def test_phys_write_buffers(holey):
    k, h = holey
    assert k.phys_write(0x200000, bytearray(b"ba")) == 2
    assert k.phys_write(0x200002, memoryview(b"xmvx")[1:3]) == 2
    assert k.phys_write(0x200004, array("H", [0x4241])) == 2
    assert k.phys_write(0x200006, b"") == 0
    assert k.phys_write(0x200000 + 4 * PAGE, b"") == 0  # empty, at the arena's end
    assert read(k, h, 0, 6) == b"bamvAB"
    noncontig = memoryview(bytearray(b"abcdef"))[::2]
    assert phys_error(k.phys_write, 0x200000, noncontig) is S.ERR_INVALID_ARGS
    assert read(k, h, 0, 6) == b"bamvAB"
    np = pytest.importorskip("numpy")
    assert k.phys_write(0x200000, np.arange(4, dtype=np.uint16)) == 8
    assert read(k, h, 0, 8) == bytes([0, 0, 1, 0, 2, 0, 3, 0])
    assert phys_error(k.phys_write, 0x200000, np.zeros((4, 4), np.uint8).T) is \
        S.ERR_INVALID_ARGS


def test_phys_bad_state_free_and_decommitted_frames(make_kernel):
    k = make_kernel(memory_size=8 * PAGE)
    for op in ("read", "write", "view"):
        assert access_status(k, op, BASE, 1) is S.ERR_BAD_STATE  # never allocated
        assert access_status(k, op, BASE, 0) is OK  # touches no page
        assert access_status(k, op, BASE + 8 * PAGE - 1, 1) is S.ERR_BAD_STATE
    h = make_vmo(k, 4 * PAGE)
    commit(k, h, 0, 2 * PAGE)  # frames 0, 1
    write(k, h, b"data", PAGE - 2)
    for op in ("read", "write", "view"):
        assert access_status(k, op, BASE, 2 * PAGE) is OK
        assert access_status(k, op, BASE + PAGE, PAGE + 1) is S.ERR_BAD_STATE  # frame 2 free
        assert access_status(k, op, paddr(2), 1) is S.ERR_BAD_STATE
        # Out of range wins over bad state.
        assert access_status(k, op, paddr(7), 2 * PAGE) is S.ERR_OUT_OF_RANGE
    decommit(k, h, PAGE, 1)  # frame 1 freed
    for op in ("read", "write", "view"):
        assert access_status(k, op, BASE, PAGE) is OK
        assert access_status(k, op, BASE + PAGE - 1, 2) is S.ERR_BAD_STATE
        assert access_status(k, op, paddr(1), 1) is S.ERR_BAD_STATE
    expect(k.vmo_set_size(h, 0), OK)  # frame 0 freed by shrinking
    assert access_status(k, "read", BASE, 1) is S.ERR_BAD_STATE
    h2 = make_vmo(k, PAGE)
    write(k, h2, b"q", 0)  # frame 0 again (top of the LIFO list), zeroed
    assert k.phys_read(BASE, 2) == b"q\x00"
    expect(k.handle_close(h2), OK)
    assert access_status(k, "read", BASE, 1) is S.ERR_BAD_STATE
    assert k.stats()["pinned_frames"] == 0


def test_phys_bad_state_orphans(make_kernel):
    """A frame pinned by a view whose VMO let go: new accesses are ERR_BAD_STATE, the view
    itself keeps working."""
    k = make_kernel(memory_size=8 * PAGE)
    h = make_vmo(k, 2 * PAGE)
    write(k, h, b"kept", 0)
    commit(k, h, PAGE, PAGE)
    view = k.phys_view(BASE, 8)
    decommit(k, h, 0, PAGE)
    for op in ("read", "write", "view"):
        assert access_status(k, op, BASE, 1) is S.ERR_BAD_STATE
        assert access_status(k, op, BASE + PAGE - 1, 2) is S.ERR_BAD_STATE
        assert access_status(k, op, BASE + PAGE, 1) is OK
    assert view.tobytes() == b"kept" + bytes(4)
    view[4:8] = b"more"
    assert view.tobytes() == b"keptmore"
    assert read(k, h, 0, 8) == bytes(8)  # the VMO no longer sees the frame
    view.release()


def test_closed_kernel_raises_value_error(kernel_cls):
    k = kernel_cls(memory_size=8 * PAGE)
    k.close()
    for call in (lambda: k.phys_read(BASE, 1), lambda: k.phys_view(BASE, 1),
                 lambda: k.phys_write(BASE, b"x"), lambda: k.vmo_create_contiguous(PAGE),
                 lambda: k.create_contiguous_vmo(PAGE), lambda: k.phys_read(1.5, 1),
                 lambda: k.vmo_create_contiguous(0, 1)):
        with pytest.raises(ValueError):
            call()


def test_closed_kernel_phys_write_bad_data_raises_value_error(kernel_cls):
    """docs/api.md "The kernel": "any call after close raises ValueError", whatever the
    arguments."""
    k = kernel_cls(memory_size=8 * PAGE)
    k.close()
    for data in (123, memoryview(bytearray(4))[::2]):
        with pytest.raises(ValueError):
            k.phys_write(BASE, data)


def test_phys_write_type_error_wins_over_status(kernel_cls):
    """A non-integer address raises TypeError even with non-contiguous data (a TypeError is
    never traded for a status, docs/semantics.md "Python-specific argument rules")."""
    with kernel_cls(memory_size=8 * PAGE) as k, pytest.raises(TypeError):
        k.phys_write("0x100000", memoryview(bytearray(4))[::2])


# -- DMA round trips ----------------------------------------------------------------------------
def test_device_write_then_vmo_read(k):
    h = make_vmo(k, 3 * PAGE)
    commit(k, h, 0, 3 * PAGE)
    pages = pages_of(k, h)
    assert k.phys_write(pages[1] + 100, b"from the device") == 15
    assert read(k, h, PAGE + 100, 15) == b"from the device"
    assert read(k, h, PAGE + 99, 17) == b"\x00from the device\x00"
    # A write across a frame boundary lands in the next *physical* frame, whichever page
    # (or VMO) holds it.
    assert pages[2] == pages[1] + PAGE
    k.phys_write(pages[2] - 3, b"abcdef")
    assert read(k, h, 2 * PAGE - 3, 6) == b"abcdef"
    other = make_vmo(k, PAGE)
    commit(k, other, 0, PAGE)
    k.phys_write(pages[2] + PAGE - 2, b"XY" + b"ZW")
    assert read(k, h, 3 * PAGE - 2, 2) == b"XY"
    assert read(k, other, 0, 2) == b"ZW"


def test_vmo_write_then_device_read(k):
    h = make_vmo(k, 2 * PAGE)
    write(k, h, bytes(range(256)) * 32, 0)  # commits both pages
    pages = pages_of(k, h)
    assert k.phys_read(pages[0], PAGE) == bytes(range(256)) * 16
    assert k.phys_read(pages[1] + 10, 5) == bytes(range(10, 15))
    view = k.phys_view(pages[0] + 250, 10)
    assert view.tobytes() == bytes([250, 251, 252, 253, 254, 255, 0, 1, 2, 3])
    write(k, h, b"live", 252)  # the view is zero copy: it sees later writes at once
    assert view.tobytes() == bytes([250, 251]) + b"live" + bytes([0, 1, 2, 3])
    view[0:2] = b"!!"  # and the VMO sees the device's writes at once
    assert read(k, h, 250, 6) == b"!!live"
    view.release()


def test_view_properties(k):
    h = make_vmo(k, PAGE)
    commit(k, h, 0, PAGE)
    view = k.phys_view(pages_of(k, h)[0] + 5, 100)
    assert isinstance(view, memoryview)
    assert (view.format, view.itemsize, view.ndim, view.shape, view.nbytes) == (
        "B", 1, 1, (100,), 100)
    assert not view.readonly and view.c_contiguous
    empty = k.phys_view(pages_of(k, h)[0], 0)
    assert empty.nbytes == 0 and empty.tobytes() == b""
    assert k.stats()["pinned_frames"] == 1
    view.release()
    empty.release()
    assert k.stats()["pinned_frames"] == 0


def test_dma_through_clones(k):
    """Clones see the device through their parent until they copy the page (docs: "clones
    see it through their parent as usual"); after the copy, each side has its own frame."""
    parent = make_vmo(k, 2 * PAGE)
    commit(k, parent, 0, 2 * PAGE)  # committed, never written: the device writes first
    p = pages_of(k, parent)
    c = clone(k, parent, 0, 2 * PAGE)
    k.phys_write(p[0], b"dev0")
    assert read(k, c, 0, 4) == b"dev0"
    view = k.phys_view(p[1], 8)
    view[:] = b"viewdata"
    assert read(k, c, PAGE, 8) == b"viewdata"
    # A write fault in the clone copies the page with what the device put there.
    write(k, c, b"C", 100)
    write(k, c, b"C", PAGE + 100)
    cp = pages_of(k, c)
    assert set(cp) == {0, 1} and not set(cp.values()) & set(p.values())
    assert read(k, c, 0, 4) == b"dev0" and read(k, c, PAGE, 8) == b"viewdata"
    assert k.phys_read(cp[0], 4) == b"dev0"
    # Now the device writes to the parent's frames: only the parent sees it.
    view[:] = b"VIEWDATA"
    k.phys_write(p[0], b"DEV0")
    assert read(k, parent, 0, 4) == b"DEV0" and read(k, parent, PAGE, 8) == b"VIEWDATA"
    assert read(k, c, 0, 4) == b"dev0" and read(k, c, PAGE, 8) == b"viewdata"
    # And to the clone's own frame: only the clone sees it.
    k.phys_write(cp[0] + 1, b"ev")
    assert read(k, c, 0, 4) == b"dev0"[:1] + b"ev" + b"0"
    assert read(k, parent, 0, 4) == b"DEV0"
    view.release()
    # COMMIT on a clone copies what the device wrote too.
    c2 = clone(k, parent, 0, 2 * PAGE)
    commit(k, c2, 0, 2 * PAGE)
    assert read(k, c2, 0, 4) == b"DEV0" and read(k, c2, PAGE, 8) == b"VIEWDATA"


def test_dma_on_a_contiguous_vmo(k):
    h, entries = contiguous(k, 5 * PAGE + 1)
    assert entries == [entries[0] + i * PAGE for i in range(6)]
    data = random.Random(4).randbytes(6 * PAGE)
    assert k.phys_write(entries[0], data) == 6 * PAGE
    assert read(k, h, 0, 6 * PAGE) == data
    write(k, h, b"tail", 6 * PAGE - 4)
    assert k.phys_read(entries[0], 6 * PAGE) == data[:-4] + b"tail"
    with k.phys_view(entries[0], 6 * PAGE) as view:
        assert view.tobytes() == data[:-4] + b"tail"


def test_device_written_frames_read_as_zero_after_reuse(make_kernel):
    """Frames written only by a device (phys_write or a view, never vmo_write), also long
    runs (given back to the host by the core), read as zero when handed out again."""
    k = make_kernel(memory_size=64 * PAGE)
    h = make_vmo(k, 40 * PAGE)
    commit(k, h, 0, 40 * PAGE)
    base = pages_of(k, h)[0]
    k.phys_write(base, b"\xff" * (20 * PAGE))
    with k.phys_view(base + 20 * PAGE, 20 * PAGE) as view:
        view[:] = b"\xee" * (20 * PAGE)
    decommit(k, h, 0, 40 * PAGE)
    commit(k, h, 0, 40 * PAGE)
    assert read(k, h, 0, 40 * PAGE) == bytes(40 * PAGE)
    assert k.phys_read(base, 40 * PAGE) == bytes(40 * PAGE)


# -- pinning ------------------------------------------------------------------------------------
def _let_go(kernel, h, how):
    if how == "decommit":
        decommit(kernel, h, 0, PAGE)
    elif how == "shrink":
        expect(kernel.vmo_set_size(h, 0), OK)
    elif how == "close":
        expect(kernel.handle_close(h), OK)


@pytest.mark.parametrize("how", ["decommit", "shrink", "close"])
def test_pin_survives_the_vmo_letting_go(make_kernel, how):
    k = make_kernel(memory_size=8 * PAGE)
    h = make_vmo(k, 2 * PAGE)
    write(k, h, b"pinned!", 0)  # frame 0
    frame_paddr = pages_of(k, h)[0]
    view = k.phys_view(frame_paddr, PAGE)
    assert counts(k) == (7, 1, 1)
    _let_go(k, h, how)
    # Not freed: still counted as committed, pinned, off the free list, held by no VMO.
    assert counts(k) == (7, 1, 1)
    assert k._allocator_state() == (1, [])
    assert k.stats()["vmos"] == (0 if how == "close" else 1)
    assert phys_error(k.phys_read, frame_paddr, 1) is S.ERR_BAD_STATE
    assert view.tobytes()[:7] == b"pinned!"
    # Allocate everything else: the pinned frame never comes back.
    filler, got = fill(k)
    assert len(got) == 7 and frame_paddr not in got
    assert counts(k) == (0, 8, 1)
    view[0:6] = b"device"  # the device still owns its buffer
    assert all(k.phys_read(p, 6) != b"device" for p in got)
    expect(k.handle_close(filler), OK)
    assert counts(k) == (7, 1, 1)
    view.release()
    # Released: freed now (on top of the LIFO list), zeroed before reuse.
    assert counts(k) == (8, 0, 0)
    assert k._allocator_state()[1][-1] == 0
    h2 = make_vmo(k, PAGE)
    commit(k, h2, 0, PAGE)
    assert pages_of(k, h2) == {0: frame_paddr}
    assert read(k, h2, 0, PAGE) == bytes(PAGE)
    assert k.phys_read(frame_paddr, PAGE) == bytes(PAGE)


def test_pin_survives_the_vmo_letting_go_via_dropped_reference(make_kernel):
    """Dropping the last reference releases the view like `release()`."""
    k = make_kernel(memory_size=4 * PAGE)
    h = make_vmo(k, PAGE)
    write(k, h, b"x", 0)
    view = k.phys_view(BASE, 1)
    expect(k.handle_close(h), OK)
    assert counts(k) == (3, 1, 1)
    del view
    gc.collect()
    assert counts(k) == (4, 0, 0)


def test_pin_with_a_clone_keeping_the_parent(make_kernel):
    """Closing the parent's handle while a clone keeps it alive does not let go of its
    pages; closing the clone then does, and the pin keeps the frame."""
    k = make_kernel(memory_size=8 * PAGE)
    h = make_vmo(k, PAGE)
    write(k, h, b"parent", 0)
    c = clone(k, h, 0, PAGE)
    view = k.phys_view(BASE, 6)
    expect(k.handle_close(h), OK)
    assert read(k, c, 0, 6) == b"parent" and k.phys_read(BASE, 6) == b"parent"
    view[:] = b"device"
    assert read(k, c, 0, 6) == b"device"
    expect(k.handle_close(c), OK)
    assert counts(k) == (7, 1, 1) and k.stats()["vmos"] == 0
    assert phys_error(k.phys_read, BASE, 1) is S.ERR_BAD_STATE
    view.release()
    assert counts(k) == (8, 0, 0)


def test_pins_are_counted_per_frame_and_released_in_frame_order(make_kernel):
    k = make_kernel(memory_size=16 * PAGE)
    h = make_vmo(k, 4 * PAGE)
    commit(k, h, 0, 4 * PAGE)  # frames 0..3
    a = k.phys_view(paddr(0), 3 * PAGE)       # frames 0, 1, 2
    b = k.phys_view(paddr(1) + 10, PAGE)      # frames 1, 2
    c = k.phys_view(paddr(2), 1)              # frame 2
    assert k.stats()["pinned_frames"] == 3
    decommit(k, h, 0, 4 * PAGE)  # frame 3 freed now; 0, 1, 2 orphaned
    assert k._allocator_state() == (4, [3])
    assert counts(k) == (13, 3, 3)
    c.release()
    assert counts(k) == (13, 3, 3)
    a.release()  # frame 0 loses its last pin: freed; 1, 2 still pinned by b
    assert k._allocator_state() == (4, [3, 0])
    assert counts(k) == (14, 2, 2)
    b.release()  # frames 1, 2 freed in ascending frame order
    assert k._allocator_state() == (4, [3, 0, 1, 2])
    assert counts(k) == (16, 0, 0)
    h2 = make_vmo(k, 4 * PAGE)
    commit(k, h2, 0, 4 * PAGE)
    assert pages_of(k, h2) == {0: paddr(2), 1: paddr(1), 2: paddr(0), 3: paddr(3)}


def test_slices_of_a_view_keep_its_pins(make_kernel):
    k = make_kernel(memory_size=4 * PAGE)
    h = make_vmo(k, 2 * PAGE)
    commit(k, h, 0, 2 * PAGE)
    view = k.phys_view(BASE, 2 * PAGE)
    part = view[PAGE:PAGE + 4]
    again = memoryview(view)
    expect(k.handle_close(h), OK)
    view.release()
    assert counts(k) == (2, 2, 2)  # `part` and `again` still export the frames
    again.release()
    assert counts(k) == (2, 2, 2)
    part[:] = b"last"
    del part
    gc.collect()
    assert counts(k) == (4, 0, 0)


def test_view_released_while_the_vmo_still_holds_the_frame(make_kernel):
    k = make_kernel(memory_size=4 * PAGE)
    h = make_vmo(k, PAGE)
    write(k, h, b"abc", 0)
    with k.phys_view(BASE, 3) as view:
        assert counts(k) == (3, 1, 1)
        view[:] = b"xyz"
    assert counts(k) == (3, 1, 0)
    assert read(k, h, 0, 3) == b"xyz"
    assert k._allocator_state() == (1, [])


def test_orphan_above_the_fresh_mark_goes_back_to_the_fresh_region(make_kernel):
    """A contiguous run may hold frames above the fresh mark; freed (at once, or when the
    last pin goes) they return to the fresh region, not to the list, and the mark steps over
    held frames (docs/semantics.md "Frames")."""
    k = make_kernel(memory_size=16 * PAGE)  # base 0x100000: frame 8 is 2**15-aligned
    a = make_vmo(k, PAGE)
    commit(k, a, 0, PAGE)  # frame 0
    h, entries = contiguous(k, 2 * PAGE, 15)
    assert entries == [paddr(8), paddr(9)]
    assert k._allocator_state() == (1, [])
    view = k.phys_view(paddr(8), PAGE)
    expect(k.handle_close(h), OK)  # frame 9 back to the fresh region, frame 8 orphaned
    assert k._allocator_state() == (1, [])
    assert counts(k) == (14, 2, 1)
    view.release()
    assert k._allocator_state() == (1, [])
    assert counts(k) == (15, 1, 0)
    # The fresh region is whole again: frames 1..15 in ascending order.
    b = make_vmo(k, 15 * PAGE)
    commit(k, b, 0, 15 * PAGE)
    assert list(pages_of(k, b).values()) == [paddr(i) for i in range(1, 16)]


def test_fresh_mark_steps_over_held_frames(make_kernel):
    k = make_kernel(memory_size=16 * PAGE)
    a = make_vmo(k, 16 * PAGE)
    commit(k, a, 0, PAGE)  # frame 0
    h, entries = contiguous(k, 2 * PAGE, 15)  # frames 8, 9
    assert entries == [paddr(8), paddr(9)]
    commit(k, a, PAGE, 7 * PAGE)  # frames 1..7; the mark reaches 8 and steps to 10
    assert k._allocator_state() == (10, [])
    commit(k, a, 8 * PAGE, PAGE)
    assert pages_of(k, a)[8] == paddr(10)
    assert k._allocator_state() == (11, [])
    # A run starting exactly at the mark: the mark steps over it at once.
    _h2, entries = contiguous(k, 2 * PAGE)
    assert entries == [paddr(11), paddr(12)]
    assert k._allocator_state() == (13, [])
    expect(k.handle_close(h), OK)  # frames 8, 9 are below the mark now: onto the list
    assert k._allocator_state() == (13, [8, 9])


def test_kernel_close_with_live_views(kernel_cls):
    """The kernel closes (every call raises ValueError) but the arena stays mapped until
    the last view goes: the views keep their bytes and can be written."""
    k = kernel_cls(memory_size=8 * PAGE)
    h = make_vmo(k, 3 * PAGE)
    write(k, h, b"one" + bytes(PAGE - 3) + b"two", 0)
    commit(k, h, 0, 3 * PAGE)
    v1 = k.phys_view(BASE, 3)
    v2 = k.phys_view(BASE + PAGE, 2 * PAGE)
    v3 = k.phys_view(BASE + PAGE, 0)
    k.close()
    assert k.closed
    with pytest.raises(ValueError):
        k.stats()
    with pytest.raises(ValueError):
        k.phys_read(BASE, 1)
    assert v1.tobytes() == b"one" and v2.tobytes()[:3] == b"two"
    v1[:] = b"ONE"
    v2[-1] = 7
    assert v1.tobytes() == b"ONE" and v2[-1] == 7
    v1.release()
    assert v2.tobytes()[:3] == b"two"
    del v2, v3
    gc.collect()
    k.close()  # idempotent


def test_kernel_close_with_a_view_then_dropping_everything(kernel_cls):
    k = kernel_cls(memory_size=4 * PAGE)
    h = make_vmo(k, PAGE)
    write(k, h, b"z", 0)
    view = k.phys_view(BASE, PAGE)
    k.close()
    del k
    gc.collect()
    view[0] = 1
    assert view[0] == 1
    view.release()


# -- contiguous VMOs: errors --------------------------------------------------------------------
@pytest.mark.parametrize("size,align", [
    (0, 0), (0, 12), (0, 11), (PAGE, 1), (PAGE, 11), (PAGE, 64), (PAGE, 65), (PAGE, 0xFFFF_FFFF),
    (-1, 0), (1 << 64, 0), (PAGE, -1), (PAGE, 1 << 32), (0, 1 << 32),
])
def test_contiguous_invalid_args(make_kernel, size, align):
    k = make_kernel(memory_size=8 * PAGE)
    before = (k.stats(), k._allocator_state())
    expect(k.vmo_create_contiguous(size, align), S.ERR_INVALID_ARGS, 0)
    with pytest.raises(MxError) as info:
        k.create_contiguous_vmo(size, align)
    assert info.value.status is S.ERR_INVALID_ARGS
    assert (k.stats(), k._allocator_state()) == before


@pytest.mark.parametrize("args", [(1.0,), ("1",), (None,), (PAGE, 12.0), (PAGE, None),
                                  (-1, "x"), (0, 1.5)])
def test_contiguous_type_errors(k, args):
    with pytest.raises(TypeError):
        k.vmo_create_contiguous(*args)


def test_contiguous_default_alignment_and_valid_edges(make_kernel):
    k = make_kernel(memory_size=None, memory=[(1 << 63, 4 * PAGE)])
    h = expect(k.vmo_create_contiguous(PAGE, 63), OK)  # 63 is the largest valid one
    assert pages_of(k, h) == {0: 1 << 63}
    h = expect(k.vmo_create_contiguous(1), OK)  # alignment_log2 defaults to 0 (a page)
    assert pages_of(k, h) == {0: (1 << 63) + PAGE}
    h = expect(k.vmo_create_contiguous(1, 13), OK)
    assert pages_of(k, h) == {0: (1 << 63) + 2 * PAGE}
    expect(k.vmo_create_contiguous(1, 13), S.ERR_NO_MEMORY, 0)
    expect(k.vmo_create_contiguous(1, 12), OK)


def test_contiguous_no_memory(make_kernel):
    k = make_kernel(memory_size=8 * PAGE)
    before = (k.stats(), k._allocator_state())
    for size, align in [(9 * PAGE, 0), (8 * PAGE + 1, 0), (MAX + 1, 0), (U64, 0),
                        (PAGE, 24), (PAGE, 63), (2 * PAGE, 21)]:
        expect(k.vmo_create_contiguous(size, align), S.ERR_NO_MEMORY, 0)
        with pytest.raises(MxError) as info:
            k.create_contiguous_vmo(size, align)
        assert info.value.status is S.ERR_NO_MEMORY
    assert (k.stats(), k._allocator_state()) == before
    # No koid was taken by the failures: the next object gets the first one.
    h = make_vmo(k, PAGE)
    assert expect(k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC), OK).koid == 1024
    h2 = expect(k.vmo_create_contiguous(8 * PAGE, 20), OK)  # base 0x100000 is 2**20-aligned
    assert lookup(k, h2, 0, 8 * PAGE)[1] == [paddr(i) for i in range(8)]
    expect(k.vmo_create_contiguous(1, 0), S.ERR_NO_MEMORY, 0)


def test_contiguous_no_memory_under_fragmentation(make_kernel):
    """Enough frames free, but no run (or no aligned run): ERR_NO_MEMORY, nothing changed."""
    k = make_kernel(memory_size=16 * PAGE)
    h = make_vmo(k, 16 * PAGE)
    commit(k, h, 0, 16 * PAGE)
    for i in range(0, 16, 2):
        decommit(k, h, i * PAGE, PAGE)  # frames 0, 2, 4, ... free
    before = (k.stats(), k._allocator_state())
    assert before[0]["free_frames"] == 8
    expect(k.vmo_create_contiguous(2 * PAGE), S.ERR_NO_MEMORY, 0)
    expect(k.vmo_create_contiguous(PAGE + 1), S.ERR_NO_MEMORY, 0)
    assert (k.stats(), k._allocator_state()) == before
    # Single pages fit: the first fit is the lowest free frame, not the LIFO top.
    _c, entries = contiguous(k, PAGE)
    assert entries == [paddr(0)]
    assert k._allocator_state() == (16, [2, 4, 6, 8, 10, 12, 14])
    # Free frames 1 and 2 make a run of two at frame 1, but not 2**13-aligned (frame 1 is
    # at 0x101000): ERR_NO_MEMORY with alignment 13, a fit with 12.
    decommit(k, h, PAGE, PAGE)
    expect(k.vmo_create_contiguous(2 * PAGE, 13), S.ERR_NO_MEMORY, 0)
    _c2, entries = contiguous(k, 2 * PAGE, 12)
    assert entries == [paddr(1), paddr(2)]
    assert k._allocator_state() == (16, [4, 6, 8, 10, 12, 14])
    # An aligned single page: 2**14 means frames 0, 4, 8, 12: 4 is the first free.
    _c3, entries = contiguous(k, 1, 14)
    assert entries == [paddr(4)]
    _c4, entries = contiguous(k, 1, 15)
    assert entries == [paddr(8)]
    expect(k.vmo_create_contiguous(1, 16), S.ERR_NO_MEMORY, 0)  # only frame 0: held


def test_contiguous_handle_table_full(make_kernel):
    k = make_kernel(memory_size=4 * PAGE)
    h = make_vmo(k, PAGE)
    for _ in range(vmo.MX_MAX_HANDLES - 1):
        k.handle_duplicate(h, vmo.MX_RIGHT_SAME_RIGHTS)
    assert k.stats()["handles"] == vmo.MX_MAX_HANDLES
    expect(k.vmo_create_contiguous(PAGE), S.ERR_NO_MEMORY, 0)
    assert k.stats()["free_frames"] == 4
    expect(k.vmo_create_contiguous(0), S.ERR_INVALID_ARGS, 0)  # the argument checks first


# -- contiguous VMOs: success -------------------------------------------------------------------
def test_contiguous_vmo_is_a_committed_vmo(k):
    h = expect(k.vmo_create_contiguous(3 * PAGE + 1), OK)
    expect(k.vmo_get_size(h), OK, 4 * PAGE)  # rounded up to pages
    expect(k.vmo_committed_bytes(h), OK, 4 * PAGE)
    info = expect(k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC), OK)
    assert info.rights == vmo.MX_DEFAULT_VMO_RIGHTS and info.type == vmo.MX_OBJ_TYPE_VMEM
    assert pages_of(k, h) == {i: paddr(i) for i in range(4)}
    assert read(k, h, 0, 4 * PAGE) == bytes(4 * PAGE)
    s = k.stats()
    assert (s["committed_frames"], s["vmos"], s["handles"]) == (4, 1, 1)
    # It is an ordinary VMO afterwards: DECOMMIT frees in ascending page order, grows lazily.
    decommit(k, h, PAGE, 2 * PAGE)
    assert k._allocator_state() == (4, [1, 2])
    expect(k.vmo_set_size(h, 6 * PAGE), OK)
    write(k, h, b"x", 5 * PAGE)
    assert pages_of(k, h)[5] == paddr(2)
    expect(k.handle_close(h), OK)
    assert k._allocator_state() == (4, [1, 0, 3, 2])


def test_create_contiguous_vmo_pythonic(k):
    with k.create_contiguous_vmo(2 * PAGE, 16) as v:
        assert isinstance(v, vmo.Vmo)
        assert v.size == 2 * PAGE and v.committed_bytes == 2 * PAGE
        addrs = list(v.lookup())
        assert addrs[0] % (1 << 16) == 0 and addrs[1] == addrs[0] + PAGE
        v.write(b"dma", 0)
        assert k.phys_read(addrs[0], 3) == b"dma"
    assert k.stats()["free_frames"] == k.stats()["total_frames"]


def test_contiguous_alignments_under_fragmentation(k):
    """Every other page of the first 128 frames held: each contiguous run must skip the
    holes, be physically consecutive and aligned, and be the first fit."""
    h = make_vmo(k, 128 * PAGE)
    commit(k, h, 0, 128 * PAGE)
    for i in range(0, 128, 2):
        decommit(k, h, i * PAGE, PAGE)  # even frames free, odd ones held
    held = {i for i in range(1, 128, 2)}
    for align in range(12, 21):
        for count in (1, 2, 3):
            step = (1 << align) // PAGE
            # The first fit, by hand: the lowest frame at a multiple of 2**align (frame f is
            # at 0x100000 + f * 4096, and 0x100000 is 2**20-aligned) starting `count` frames
            # none of which is held.
            start = next(s for s in range(0, 4096, step)
                         if not held & set(range(s, s + count)))
            _c, entries = contiguous(k, count * PAGE, align)
            assert entries == [paddr(start + i) for i in range(count)], (align, count)
            assert entries[0] % (1 << align) == 0
            held |= set(range(start, start + count))
    k._check()


def test_contiguous_first_fit_across_arenas(make_kernel):
    """Arenas in the order given; inside each the lowest aligned frame; a run never spans
    two arenas."""
    k = make_kernel(memory_size=None, memory=[(0x103000, 3 * PAGE), (0x400000, 8 * PAGE),
                                              (0x200000, 4 * PAGE)])
    _, entries = contiguous(k, 4 * PAGE)  # does not fit in the first arena (3 frames)
    assert entries == [0x400000 + i * PAGE for i in range(4)]
    _, entries = contiguous(k, 2 * PAGE, 13)  # 0x104000 is the first 8 KiB-aligned frame
    assert entries == [0x104000, 0x105000]
    # 64 KiB: none in the first arena, only 0x400000 (held) in the second: the third.
    _, entries = contiguous(k, PAGE, 16)
    assert entries == [0x200000]
    # 16 KiB: 0x104000 (held) in the first arena, 0x400000 (held), then 0x404000.
    _, entries = contiguous(k, PAGE, 14)
    assert entries == [0x404000]
    _, entries = contiguous(k, PAGE)
    assert entries == [0x103000]
    expect(k.vmo_create_contiguous(4 * PAGE), S.ERR_NO_MEMORY, 0)  # 6 free: 3 + 3 in two arenas
    _h, entries = contiguous(k, 3 * PAGE)
    assert entries == [0x405000, 0x406000, 0x407000]


def test_contiguous_large_alignment_on_a_big_sparse_kernel(make_kernel):
    """2**30 alignment on 8 GiB of (never populated) memory at 0x100000."""
    k = make_kernel(memory_size=8 * GiB)
    _h, entries = contiguous(k, PAGE, 30)
    assert entries == [GiB]
    h2, entries = contiguous(k, 16 * MiB, 30)
    assert entries[0] == 2 * GiB and entries[-1] == 2 * GiB + 16 * MiB - PAGE
    assert entries == [2 * GiB + i * PAGE for i in range(4096)]
    _h3, entries = contiguous(k, PAGE, 32)
    assert entries == [4 * GiB]
    expect(k.vmo_create_contiguous(PAGE, 34), S.ERR_NO_MEMORY, 0)  # 16 GiB is past the end
    _h4, entries = contiguous(k, PAGE, 33)
    assert entries == [8 * GiB]
    # The fresh mark has not moved: ordinary pages still come from the bottom.
    assert k._allocator_state() == (0, [])
    v = make_vmo(k, PAGE)
    commit(k, v, 0, PAGE)
    assert pages_of(k, v) == {0: BASE}
    # DMA at the top of the run works like anywhere else.
    k.phys_write(2 * GiB + 16 * MiB - 4, b"last")
    assert read(k, h2, 16 * MiB - 4, 4) == b"last"


# -- differential: a larger fragmented memory ---------------------------------------------------
def test_first_fit_matches_reference_on_large_fragmented_memory():
    """Seeded random commits, decommits and contiguous creations on a multi-arena memory of
    a few thousand frames (arena sizes not multiples of 64, so words straddle arenas): the
    core's word-at-a-time search must pick exactly the reference's simple scan's run."""
    from vmo._reference import Kernel as Reference

    memory = [(0x100000, 1000 * PAGE), (0x4000_0000, 3001 * PAGE), (0x80_0000, 130 * PAGE),
              (0x80_0000 + 130 * PAGE, 70 * PAGE)]
    core, ref = vmo.Kernel(memory=memory), Reference(memory=memory)
    rng = random.Random(20240504)
    handles = []
    try:
        for step in range(600):
            op = rng.random()
            if op < 0.35 or not handles:
                size = rng.choice([1, 2, 3, 7, 64, 65, 200]) * PAGE
                align = rng.choice([0, 12, 13, 14, 16, 18, 20, 21, 24])
                results = [kk.vmo_create_contiguous(size, align) for kk in (core, ref)]
            elif op < 0.6:
                size = rng.choice([1, 5, 64, 300]) * PAGE
                results = [kk.vmo_create(size) for kk in (core, ref)]
                if results[0][0] is OK:
                    for kk, (_, hh) in zip((core, ref), results):
                        kk.vmo_op_range(hh, Op.COMMIT, 0, size)
            elif op < 0.85:
                h = rng.choice(handles)
                off, size = rng.randrange(0, 300) * PAGE, rng.randrange(1, 40) * PAGE
                results = [kk.vmo_op_range(h, Op.DECOMMIT, off, size) for kk in (core, ref)]
            else:
                h = handles.pop(rng.randrange(len(handles)))
                results = [kk.handle_close(h) for kk in (core, ref)]
            assert results[0] == results[1], (step, results)
            if isinstance(results[0], tuple) and results[0][0] is OK:
                handles.append(results[0][1])
            assert core._allocator_state() == ref._allocator_state(), step
            assert core.stats()["free_frames"] == ref.stats()["free_frames"], step
        for h in handles:
            assert core._vmo_pages(h) == ref._vmo_pages(h)
        core._check()
        ref._check()
    finally:
        core.close()
        ref.close()
