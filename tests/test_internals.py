"""Direct tests of the compiled internals: the radix page table.

Driven through the test shim `vmo._pagetable._PageTableShim` (no kernel in between), so a
failure here points at the data structure itself (the frame pool's own tests, through
`vmo._frames._FramePoolShim`, are in tests/test_frame_pool.py):

- `PageTableMachine`: a hypothesis state machine comparing the radix page table with a dict
  (page index -> frame) and a model of the LIFO frame allocator of docs/semantics.md ("fresh
  frames ascending from 0; freed frames pushed in ascending page-index order, the last one
  reused first"). Indices are aimed at the radix edges (0, 511/512/513, 512**2 +- 1, 512**3,
  2**40, 2**52 - 1) and ranges span them; the pool is tiny so `fill` hits its shortage path.
  It also checks that the tree holds exactly the nodes its pages need, and that the
  emptied nodes a table keeps for reuse (its spares) stay within their bounds.
- the spares: handed out again before calloc, counted by `node_bytes()`, freed with the
  table (`test_page_table_spare_nodes`).
- cost: walks over petabyte ranges of a sparse table return the right answers (correctness
  only: nothing in this file is timed).
"""


import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import vmo
from vmo._pagetable import _PageTableShim, node_bytes

FRAME = 4096
LIMIT = 1 << 52            # page indices are below 2**52 (MX_VMO_MAX_SIZE / 4096)
LOOKUP_MAX = 1 << 20       # the shim's lookup refuses longer ranges
PIB_PAGES = (1 << 50) // FRAME   # a petabyte of VMO, in pages
LEAF_BYTES = 8 + 4 * 512   # sizeof(pt_leaf) (count, epoch, entries), sizeof(pt_node)
NODE_BYTES = 8 + 8 * 512
SPARE_LEAVES = 2           # emptied nodes a table keeps for reuse: PT_SPARE_LEAVES,
SPARE_NODES = 5            # PT_SPARE_NODES

# Radix edges: a leaf covers 512 pages, an interior node 512 times its child.
EDGES = sorted({
    0, 1, 2, 511, 512, 513, 1023, 1024,
    512 ** 2 - 1, 512 ** 2, 512 ** 2 + 1,
    512 ** 3 - 1, 512 ** 3, 512 ** 3 + 1,
    512 ** 4 - 1, 512 ** 4,
    (1 << 40) - 1, 1 << 40, (1 << 40) + 1,
    512 ** 5 - 1, 512 ** 5, 512 ** 5 + 1,
    LIMIT - 513, LIMIT - 512, LIMIT - 2, LIMIT - 1,
})


def _clamp_index(i):
    return min(max(i, 0), LIMIT - 1)


def _min_height(max_idx):
    """Levels a radix tree of 512-way nodes needs so that index `max_idx` fits."""
    h = 1
    while max_idx >> (9 * h):
        h += 1
    return h


indices = st.one_of(
    st.sampled_from(EDGES),
    st.builds(lambda e, d: _clamp_index(e + d), st.sampled_from(EDGES), st.integers(-3, 3)),
    st.integers(0, LIMIT - 1),
)

lengths = st.one_of(
    st.integers(0, 70),
    st.sampled_from([511, 512, 513, 1024, 512 ** 2, 512 ** 3, 1 << 40, LIMIT]),
)


@st.composite
def ranges(draw):
    """[start, end) with 0 <= start <= end <= 2**52, often straddling a radix edge."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        start = draw(indices)
        end = start + draw(lengths)
    elif kind == 1:  # around an edge, small on both sides
        edge = draw(st.sampled_from(EDGES))
        start = edge - draw(st.integers(0, 40))
        end = edge + draw(st.integers(0, 40))
    elif kind == 2:  # two arbitrary points
        start, end = sorted((draw(indices), draw(indices)))
    else:  # the whole index space, or from / to an edge
        edge = draw(st.sampled_from(EDGES))
        start, end = draw(st.sampled_from([(0, LIMIT), (0, edge), (edge, LIMIT)]))
    start = min(max(start, 0), LIMIT)
    end = min(max(end, start), LIMIT)
    return start, end


# -- the page table ------------------------------------------------------------------------------

class PageTableMachine(RuleBasedStateMachine):
    """The radix page table against a dict and a LIFO free-list model."""

    NFRAMES = 64

    def __init__(self):
        super().__init__()
        self.t = _PageTableShim(self.NFRAMES)
        self.pages = {}          # page index -> frame
        self.next_fresh = 0      # frames >= next_fresh were never handed out
        self.stack = []          # freed frames, top last
        self.peak = None         # highest index inserted since the table was last empty

    # -- the allocator model (docs/semantics.md "Frames") --
    def _free(self):
        return self.NFRAMES - self.next_fresh + len(self.stack)

    def _take(self):
        if self.stack:
            return self.stack.pop()
        assert self.next_fresh < self.NFRAMES
        self.next_fresh += 1
        return self.next_fresh - 1

    def _present(self, start, end):
        return sorted(i for i in self.pages if start <= i < end)

    def _inserted(self, idx):
        self.peak = idx if self.peak is None else max(self.peak, idx)

    # -- rules --
    @rule(idx=indices)
    def set(self, idx):
        if idx in self.pages:
            with pytest.raises(ValueError):
                self.t.set(idx)
            return
        if self._free() == 0:
            with pytest.raises(MemoryError):
                self.t.set(idx)
            return
        frame = self._take()
        assert self.t.set(idx) == frame
        self.pages[idx] = frame
        self._inserted(idx)

    @rule(idx=indices)
    def get(self, idx):
        assert self.t.get(idx) == self.pages.get(idx)

    @rule(r=ranges())
    def fill(self, r):
        start, end = r
        present = self._present(start, end)
        missing = (end - start) - len(present)
        if missing > self._free():
            # The shortage path: nothing changes (the invariants check the rest).
            event("fill: short of frames")
            assert self.t.fill(start, end) is False
            return
        event("fill: %s" % ("filled" if missing else "nothing missing"))
        assert self.t.fill(start, end) is True
        for idx in range(start, end):  # ascending page order
            if idx not in self.pages:
                self.pages[idx] = self._take()
        if end > start:
            self._inserted(end - 1)

    @rule(r=ranges())
    def remove(self, r):
        start, end = r
        gone = self._present(start, end)
        event("remove: %s" % ("some" if gone else "none"))
        assert self.t.remove(start, end) == len(gone)
        for idx in gone:  # pushed in ascending page order
            self.stack.append(self.pages.pop(idx))
        if not self.pages:
            self.peak = None

    @rule(r=ranges())
    def count(self, r):
        start, end = r
        assert self.t.count(start, end) == len(self._present(start, end))

    @rule(r=ranges())
    def lookup(self, r):
        start, end = r
        end = min(end, start + LOOKUP_MAX)
        expected = []
        idx = start
        while idx < end and idx in self.pages:
            expected.append(self.pages[idx])
            idx += 1
        event("lookup: %s" % ("some" if expected else "none"))
        assert self.t.lookup(start, end) == expected

    @rule(r=ranges())
    def items(self, r):
        start, end = r
        assert self.t.items(start, end) == [(i, self.pages[i]) for i in self._present(start, end)]

    # -- invariants --
    @invariant()
    def same_pages(self):
        assert self.t.items() == sorted(self.pages.items())
        assert self.t.npages == len(self.pages)
        assert self.t.count(0, LIMIT) == len(self.pages)

    @invariant()
    def same_allocator(self):
        assert self.t.free_frames == self._free()
        assert self.t.free_stack == self.stack

    @invariant()
    def height(self):
        h = self.t.height
        if not self.pages:
            assert h == 0
            return
        assert 1 <= h <= 6
        assert 2 ** (9 * h) > max(self.pages)
        # Never taller than the largest index stored since the table was last empty needs.
        assert h == _min_height(self.peak)

    @invariant()
    def nodes(self):
        # The tree holds exactly the nodes its pages need (no empty node stays in it); the
        # emptied ones kept for reuse are bounded.
        h = self.t.height
        interior = sum(len({i >> (9 * (level + 1)) for i in self.pages}) for level in range(1, h))
        assert self.t.nodes() == (len({i >> 9 for i in self.pages}), interior)
        leaves, inner = self.t.spares
        assert 0 <= leaves <= SPARE_LEAVES and 0 <= inner <= SPARE_NODES


TestPageTableMachine = PageTableMachine.TestCase
TestPageTableMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_page_table_fill_order_and_lifo_reuse():
    t = _PageTableShim(64)
    assert t.height == 0 and t.npages == 0 and t.items() == []
    assert t.fill(510, 514) is True                     # straddles the first leaf edge
    assert t.items() == [(510, 0), (511, 1), (512, 2), (513, 3)]
    assert t.height == 2
    assert t.lookup(510, 514) == [0, 1, 2, 3]
    assert t.lookup(509, 514) == []                     # stops at the first absent page
    assert t.lookup(512, 600) == [2, 3]
    # Fill a range with holes: only the holes get frames, in ascending page order.
    assert t.remove(511, 513) == 2                      # pushes 1 then 2
    assert t.free_stack == [1, 2]
    assert t.fill(508, 516) is True                     # 508, 509, 511, 512, 514, 515
    assert t.items() == [(508, 2), (509, 1), (510, 0), (511, 4), (512, 5), (513, 3),
                         (514, 6), (515, 7)]
    assert t.free_stack == []
    # Removing everything empties the tree completely.
    assert t.remove(0, LIMIT) == 8
    assert t.free_stack == [2, 1, 0, 4, 5, 3, 6, 7]     # ascending page order
    assert (t.height, t.npages, t.free_frames) == (0, 0, 64)


def test_page_table_fill_shortage_changes_nothing():
    t = _PageTableShim(8)
    assert t.fill(0, 3) is True
    before = (t.items(), t.free_stack, t.free_frames, t.height)
    assert t.fill(0, 9) is False           # needs 6 more, 5 free
    assert t.fill(LIMIT - 6, LIMIT) is False
    assert t.fill(0, LIMIT) is False
    assert (t.items(), t.free_stack, t.free_frames, t.height) == before
    assert t.fill(0, 8) is True            # exactly enough
    assert t.free_frames == 0
    with pytest.raises(MemoryError):
        t.set(100)
    assert t.fill(0, 8) is True            # nothing missing: fine with no frame free


def test_page_table_full_leaves_and_interior_edges():
    t = _PageTableShim(4096)
    assert t.fill(500, 1600) is True       # a partial leaf, a full leaf, a partial leaf
    assert t.npages == 1100
    assert t.lookup(500, 1600) == list(range(1100))
    assert t.count(512, 1024) == 512       # a full leaf inside the range
    assert t.count(0, 1024) == 524
    assert t.count(1023, 1025) == 2
    assert t.remove(512, 1024) == 512      # a whole leaf goes
    assert t.lookup(500, 1600) == list(range(12))
    assert t.count(0, LIMIT) == 588
    assert t.items(1000, 1030) == [(i, i - 500) for i in range(1024, 1030)]
    # Interior edges at 512**2 and 512**3 from both sides.
    for edge in (512 ** 2, 512 ** 3):
        assert t.fill(edge - 3, edge + 3) is True
        got = t.items(edge - 10, edge + 10)
        assert [i for i, _ in got] == list(range(edge - 3, edge + 3))
        assert len(t.lookup(edge - 3, edge + 3)) == 6
        assert t.count(edge - 1, edge + 1) == 2
        assert t.remove(edge - 1, edge + 1) == 2
        assert t.lookup(edge - 3, edge + 3) == [f for _, f in got[:2]]
    assert t.height == 4
    left = t.npages
    assert left == 588 + 8
    assert t.remove(0, LIMIT) == left
    assert (t.npages, t.height, t.free_frames) == (0, 0, 4096)


def test_page_table_height_grows_and_resets():
    t = _PageTableShim(16)
    expected = [(0, 1), (511, 1), (512, 2), (512 ** 2 - 1, 2), (512 ** 2, 3), (512 ** 3, 4),
                (1 << 40, 5), (512 ** 5 - 1, 5), (512 ** 5, 6), (LIMIT - 1, 6)]
    for idx, height in expected:
        t.set(idx)
        assert t.height == height, idx
        t.remove(0, LIMIT)
        assert t.height == 0
    # Growing keeps the existing pages where they were.
    t.set(5)
    t.set(LIMIT - 1)
    assert t.height == 6
    assert t.items() == [(5, t.get(5)), (LIMIT - 1, t.get(LIMIT - 1))]
    assert t.get(5) is not None and t.get(4) is None and t.get(LIMIT - 2) is None
    # Removing the high page does not shrink the height (only emptying resets it).
    assert t.remove(512, LIMIT) == 1
    assert t.height == 6 and t.items() == [(5, t.get(5))]


def test_page_table_spare_nodes():
    """Emptied nodes stay with the table as spares, bounded, are handed out again before
    calloc, stay counted by node_bytes(), and are freed with the table."""
    before = node_bytes()
    t = _PageTableShim(4096)
    assert t.nodes() == (0, 0) and t.spares == (0, 0)
    t.set(LIMIT - 1)                              # height 6: a leaf under 5 interior nodes
    assert t.nodes() == (1, 5) and t.spares == (0, 0)
    path = LEAF_BYTES + 5 * NODE_BYTES
    assert node_bytes() - before == path
    assert t.remove(0, LIMIT) == 1
    assert (t.height, t.nodes(), t.spares) == (0, (0, 0), (1, 5))
    assert node_bytes() - before == path          # spares are still the table's memory
    # The one-page loop, on a tall and on a short table, reuses them: nothing allocated.
    t.churn(LIMIT - 1, 1000)
    t.churn(0, 1000)
    assert (t.nodes(), t.spares, node_bytes() - before) == ((0, 0), (1, 5), path)
    assert (t.npages, t.free_frames) == (0, 4096)
    # 4 leaves under a root: the root and one leaf come from the spares, 3 leaves are new.
    assert t.fill(0, 4 * 512)
    assert (t.height, t.nodes(), t.spares) == (2, (4, 1), (0, 4))
    assert node_bytes() - before == path + 3 * LEAF_BYTES
    # Emptying them keeps SPARE_LEAVES leaves and frees the others.
    assert t.remove(0, LIMIT) == 4 * 512
    assert (t.nodes(), t.spares) == ((0, 0), (SPARE_LEAVES, 5))
    assert node_bytes() - before == SPARE_LEAVES * LEAF_BYTES + 5 * NODE_BYTES
    # Destruction frees the tree and the spares.
    t.set(3)
    t.set(1 << 40)
    del t
    assert node_bytes() == before
    # Through a kernel: a destroyed VMO gives back its spares too.
    with vmo.Kernel(memory_size=16 * FRAME) as k:
        h = k.vmo_create(vmo.MX_VMO_MAX_SIZE)[1]
        for off in (0, vmo.MX_VMO_MAX_SIZE - FRAME, 0):
            assert k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, off, FRAME) is vmo.Status.NO_ERROR
            assert k.vmo_op_range(h, vmo.MX_VMO_OP_DECOMMIT, off, FRAME) is vmo.Status.NO_ERROR
        assert node_bytes() - before == path
        assert k.handle_close(h) is vmo.Status.NO_ERROR
        assert node_bytes() == before


def test_page_table_argument_checks():
    t = _PageTableShim(4)
    with pytest.raises(ValueError):
        t.set(LIMIT)
    for call in (t.count, t.fill, t.remove, t.lookup, t.items):
        with pytest.raises(ValueError):
            call(0, LIMIT + 1)
        with pytest.raises(ValueError):
            call(5, 4)
    with pytest.raises(ValueError):
        t.lookup(0, LOOKUP_MAX + 1)
    t.set(7)
    with pytest.raises(ValueError):
        t.set(7)
    assert t.items() == [(7, 0)] and t.free_frames == 3


def test_page_table_empty_and_degenerate_ranges():
    t = _PageTableShim(4)
    for start, end in ((0, 0), (0, LIMIT), (LIMIT, LIMIT), (512, 512)):
        assert t.count(start, end) == 0
        assert t.remove(start, end) == 0
        assert t.items(start, end) == []
        assert t.lookup(start, min(end, start + 10)) == []
    assert t.fill(10, 10) is True
    assert (t.height, t.npages) == (0, 0)
    t.set(1000)
    assert t.count(1000, 1000) == 0 and t.items(1000, 1000) == [] and t.remove(1000, 1000) == 0
    assert t.lookup(1000, 1001) == [0]
    assert t.lookup(1001, 2000) == [] and t.lookup(LIMIT - 1, LIMIT) == []
    assert t.count(1001, LIMIT) == 0 and t.count(0, 1000) == 0


# -- cost: correctness of walks over petabyte ranges (no timing) --------------------------------

SPARSE = [k * (1 << 48) + k * 4097 + 3 for k in range(16)]   # 16 pages, 2**48 pages apart


def test_petabyte_ranges_on_a_sparse_table():
    t = _PageTableShim(64)
    for idx in SPARSE:
        t.set(idx)
    frames = {idx: f for f, idx in enumerate(SPARSE)}
    assert t.height == 6
    assert t.items() == sorted(frames.items())
    assert t.count(0, LIMIT) == 16 and t.count(1, LIMIT) == 16
    assert t.count(SPARSE[1] + 1, LIMIT - 1) == 14
    for idx in SPARSE:
        window = (max(idx - PIB_PAGES // 2, 0), idx + PIB_PAGES // 2)   # one petabyte
        assert t.count(*window) == 1
        assert t.items(*window) == [(idx, frames[idx])]
        assert t.count(idx + 1, idx + 1 + PIB_PAGES) == 0
        assert t.items(idx + 1, idx + 1 + PIB_PAGES) == []
        assert t.lookup(idx, idx + LOOKUP_MAX) == [frames[idx]]
    # Remove every other page through petabyte windows, then the rest in one sweep.
    for idx in SPARSE[::2]:
        assert t.remove(idx - 3, idx - 3 + PIB_PAGES) == 1
    assert t.items() == [(i, frames[i]) for i in SPARSE[1::2]]
    assert t.free_stack == [frames[i] for i in SPARSE[::2]]
    assert t.remove(0, LIMIT) == 8
    assert (t.npages, t.height, t.free_frames) == (0, 0, 64)


def test_petabyte_ranges_through_the_kernel():
    """The same sparse shape behind the syscall layer: COMMIT, DECOMMIT, cache ops and
    shrink over petabyte ranges touch only the pages present."""
    pib = 1 << 50
    with vmo.Kernel(memory_size=1 << 20) as k:       # 256 frames
        st_, h = k.vmo_create(vmo.MX_VMO_MAX_SIZE)
        assert st_ is vmo.Status.NO_ERROR
        offsets = [idx * FRAME for idx in SPARSE]
        for off in offsets:
            assert k.vmo_write(h, b"\x5a", off) == (vmo.Status.NO_ERROR, 1)
        assert k.vmo_committed_bytes(h) == (vmo.Status.NO_ERROR, 16 * FRAME)
        # Far more pages missing than frames free: all or nothing, nothing changes.
        assert k.vmo_op_range(h, vmo.MX_VMO_OP_COMMIT, 0, pib) is vmo.Status.ERR_NO_MEMORY
        assert k.vmo_op_range(h, vmo.MX_VMO_OP_CACHE_SYNC, 0, pib) is vmo.Status.NO_ERROR
        assert k.stats()["committed_frames"] == 16
        for off in offsets[::2]:
            assert k.vmo_op_range(h, vmo.MX_VMO_OP_DECOMMIT, off - 3 * FRAME,
                                  pib) is vmo.Status.NO_ERROR
        assert sorted(k._vmo_pages(h)[1]) == [i for i in SPARSE[1::2]]
        assert k.vmo_set_size(h, FRAME) is vmo.Status.NO_ERROR
        assert k._vmo_pages(h)[1] == {}
        assert k.stats()["free_frames"] == 256
        k._check()
