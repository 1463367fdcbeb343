"""Radix page table walks (see _pagetable.pxd).

Ranges are page indices [start, end) with end <= 2**52. Each walk recurses only into
children that exist, so a walk over a petabyte range holding a few pages visits a few
nodes per page.
"""

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from vmo._frames cimport (c_assert, frame_pool, pool_destroy, pool_free_count, pool_give,
                          pool_init, pool_list, pool_paddr, pool_take, pool_take_saved,
                          snap_grow, snap_store)


cdef inline uint64_t _span(uint32_t level) noexcept nogil:
    """Pages covered by one slot of a node at `level` (0 = leaf)."""
    return (<uint64_t>1) << (PT_BITS * level)


cdef inline uint64_t _umax(uint64_t a, uint64_t b) noexcept nogil:
    return a if a > b else b


cdef inline uint64_t _umin(uint64_t a, uint64_t b) noexcept nogil:
    return a if a < b else b


# Bytes of page-table nodes alive in this process (all kernels): the page tables' share of
# the metadata per committed page, reported by `node_bytes()` and the benchmarks.
# Updated with relaxed atomics: page tables of different kernels grow in different threads
# without the GIL.
cdef uint64_t _node_bytes = 0

cdef extern from *:
    """
    #define VMO_ATOMIC_ADD(p, n) __atomic_fetch_add((p), (n), __ATOMIC_RELAXED)
    #define VMO_ATOMIC_SUB(p, n) __atomic_fetch_sub((p), (n), __ATOMIC_RELAXED)
    #define VMO_ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
    """
    uint64_t atomic_add "VMO_ATOMIC_ADD"(uint64_t *p, uint64_t n) nogil
    uint64_t atomic_sub "VMO_ATOMIC_SUB"(uint64_t *p, uint64_t n) nogil
    uint64_t atomic_load "VMO_ATOMIC_LOAD"(uint64_t *p) nogil


cdef extern from *:
    """
    /* A spare node's link lives at byte 8 of the node: slots[0] of an interior node,
       entries[1:3] of a leaf (memcpy: no alignment or aliasing assumptions). */
    #include <string.h>
    static inline void *vmo_spare_link(const void *node) {
        void *p; memcpy(&p, (const char *)node + 8, sizeof p); return p;
    }
    static inline void vmo_set_spare_link(void *node, void *p) {
        memcpy((char *)node + 8, &p, sizeof p);
    }
    #ifdef NDEBUG
    #define VMO_ASSERT_ZERO(p, n) ((void)0)
    #else
    #include <assert.h>
    static int vmo_all_zero(const void *p, size_t n) {
        const unsigned char *b = (const unsigned char *)p;
        for (size_t i = 0; i < n; i++) if (b[i]) return 0;
        return 1;
    }
    #define VMO_ASSERT_ZERO(p, n) assert(vmo_all_zero((p), (n)))
    #endif
    """
    void *spare_link "vmo_spare_link"(const void *node) nogil
    void set_spare_link "vmo_set_spare_link"(void *node, void *p) nogil
    void assert_zero "VMO_ASSERT_ZERO"(const void *p, size_t n) nogil


cdef enum:
    _SPARE_LEAF = 1         # the `count` of a spare: its kind
    _SPARE_NODE = 2


cdef void *_new_node(page_table *pt, uint32_t level) noexcept nogil:
    """A zeroed node for `level` (0 = leaf): one of the table's spares, else calloc'd
    (NULL if the host refuses). The spare list holds at most 7 nodes, and a path freed
    bottom-up is taken again top-down from its head, so the search is short."""
    cdef uint32_t kind = _SPARE_LEAF if level == 0 else _SPARE_NODE
    cdef void *node
    cdef void *prev = NULL
    if (pt.nspare_leaves if level == 0 else pt.nspare_nodes) != 0:
        node = pt.spares
        while node != NULL:
            if (<pt_leaf *>node).count == kind:
                if prev == NULL:
                    pt.spares = spare_link(node)
                else:
                    set_spare_link(prev, spare_link(node))
                set_spare_link(node, NULL)
                (<pt_leaf *>node).count = 0
                if level == 0:
                    pt.nspare_leaves -= 1
                    assert_zero(node, sizeof(pt_leaf))
                else:
                    pt.nspare_nodes -= 1
                    assert_zero(node, sizeof(pt_node))
                return node
            prev = node
            node = spare_link(node)
        c_assert(False)
    if level == 0:
        node = calloc(1, sizeof(pt_leaf))
        if node != NULL:
            atomic_add(&_node_bytes, sizeof(pt_leaf))
        return node
    node = calloc(1, sizeof(pt_node))
    if node != NULL:
        atomic_add(&_node_bytes, sizeof(pt_node))
    return node


cdef inline void _free_node(void *node, uint32_t level) noexcept nogil:
    atomic_sub(&_node_bytes, sizeof(pt_leaf) if level == 0 else sizeof(pt_node))
    free(node)


cdef inline void _drop_node(page_table *pt, void *node, uint32_t level) noexcept nogil:
    """A node just emptied (all zeros) leaves the tree: kept as a spare if there is room,
    else freed."""
    c_assert((<pt_leaf *>node).count == 0)
    if level == 0:
        (<pt_leaf *>node).epoch = 0     # a spare is all zeros
        if pt.nspare_leaves >= PT_SPARE_LEAVES:
            _free_node(node, level)
            return
        pt.nspare_leaves += 1
        (<pt_leaf *>node).count = _SPARE_LEAF
    else:
        if pt.nspare_nodes >= PT_SPARE_NODES:
            _free_node(node, level)
            return
        pt.nspare_nodes += 1
        (<pt_leaf *>node).count = _SPARE_NODE
    set_spare_link(node, pt.spares)
    pt.spares = node


cdef void _drop_spares(page_table *pt) noexcept nogil:
    """Free the table's spare nodes."""
    cdef void *node
    while pt.spares != NULL:
        node = pt.spares
        pt.spares = spare_link(node)
        _free_node(node, 0 if (<pt_leaf *>node).count == _SPARE_LEAF else 1)
    pt.nspare_leaves = 0
    pt.nspare_nodes = 0


def node_bytes():
    """Bytes of page-table nodes currently allocated in this process (every kernel)."""
    return atomic_load(&_node_bytes)


cdef inline int _grow(page_table *pt, uint64_t max_idx) noexcept nogil:
    """Raise the tree until `max_idx` fits (-1 if the host cannot allocate a node). An empty
    tree just takes the height it needs."""
    cdef pt_node *top
    if pt.root == NULL:
        pt.height = 1
        while pt.height < PT_MAX_HEIGHT and (max_idx >> (PT_BITS * pt.height)) != 0:
            pt.height += 1
        return 0
    while pt.height < PT_MAX_HEIGHT and (max_idx >> (PT_BITS * pt.height)) != 0:
        top = <pt_node *>_new_node(pt, 1)
        if top == NULL:
            return -1
        top.slots[0] = pt.root
        top.count = 1
        pt.root = top
        pt.height += 1
    return 0


cdef void *_new_child(page_table *pt, uint32_t level, uint64_t idx, frame_pool *pool,
                      uint64_t serial) noexcept nogil:
    """A zeroed node for `level` on the path to page `idx`; a new leaf is noted as absent
    for the latest snapshot first (so a restore drops it). NULL if the host refuses."""
    cdef void *node = _new_node(pt, level)
    if level == 0 and node != NULL and pool.snap_epoch:
        _save(pool, serial, idx >> PT_BITS, <pt_leaf *>node, True)
    return node


cdef inline pt_leaf *_leaf_for(page_table *pt, uint64_t idx, frame_pool *pool,
                               uint64_t serial) noexcept nogil:
    """The leaf holding page `idx`, made (with its path) if absent: NULL if the host
    cannot allocate a node. O(height)."""
    cdef uint32_t level
    cdef void *node
    cdef void *child
    if _grow(pt, idx):
        return NULL
    if pt.root == NULL:
        pt.root = _new_child(pt, pt.height - 1, idx, pool, serial)
        if pt.root == NULL:
            return NULL
    node = pt.root
    level = pt.height - 1
    while level > 0:
        child = (<pt_node *>node).slots[(idx >> (PT_BITS * level)) & PT_MASK]
        if child == NULL:
            child = _new_child(pt, level - 1, idx, pool, serial)
            if child == NULL:
                return NULL
            (<pt_node *>node).slots[(idx >> (PT_BITS * level)) & PT_MASK] = child
            (<pt_node *>node).count += 1
        node = child
        level -= 1
    return <pt_leaf *>node


cdef int pt_set(page_table *pt, uint64_t idx, uint32_t entry, frame_pool *pool,
                uint64_t serial) noexcept nogil:
    """Store `entry` (frame + 1, nonzero) at the empty slot `idx`: 0, or -1 (nothing stored)
    if the host cannot allocate a node. The leaf's pre-image is saved first if a snapshot
    needs it (pt_save_leaf). O(height)."""
    cdef pt_leaf *leaf = _leaf_for(pt, idx, pool, serial)
    if leaf == NULL:
        return -1
    c_assert(entry != 0 and leaf.entries[idx & PT_MASK] == 0)
    pt_save_leaf(pool, serial, idx >> PT_BITS, leaf)
    leaf.entries[idx & PT_MASK] = entry
    leaf.count += 1
    pt.npages += 1
    return 0


# -- count ------------------------------------------------------------------------------------

cdef uint64_t _count(const void *node, uint32_t level, uint64_t base,
                     uint64_t s, uint64_t e) noexcept nogil:
    cdef const pt_leaf *leaf
    cdef const pt_node *inner
    cdef uint64_t lo, hi, i, n = 0, span
    if level == 0:
        leaf = <const pt_leaf *>node
        if s <= base and base + PT_FANOUT <= e:
            return leaf.count
        lo = _umax(s, base) - base
        hi = _umin(e, base + PT_FANOUT) - base
        for i in range(lo, hi):
            n += leaf.entries[i] != 0
        return n
    inner = <const pt_node *>node
    span = _span(level)
    lo = (_umax(s, base) - base) >> (PT_BITS * level)
    hi = ((_umin(e, base + PT_FANOUT * span) - 1 - base) >> (PT_BITS * level)) + 1
    for i in range(lo, hi):
        if inner.slots[i] != NULL:
            n += _count(inner.slots[i], level - 1, base + i * span, s, e)
    return n


cdef uint64_t pt_count(const page_table *pt, uint64_t start, uint64_t end) noexcept nogil:
    """Pages present in [start, end). Cost: the nodes holding pages in the range."""
    if pt.root == NULL or start >= end:
        return 0
    if start == 0 and end >= _span(pt.height):
        return pt.npages
    end = _umin(end, _span(pt.height))
    if start >= end:
        return 0
    return _count(pt.root, pt.height - 1, 0, start, end)


# -- fill -------------------------------------------------------------------------------------

cdef struct _filler:
    # What every level of a fill shares (one pointer down the recursion, not three).
    page_table *pt
    frame_pool *pool
    uint64_t serial
    bint failed


cdef uint64_t _fill(_filler *f, void *node, uint32_t level, uint64_t base, uint64_t s,
                    uint64_t e) noexcept nogil:
    """Fill the empty slots of [s, e) below `node`; returns the pages added."""
    cdef frame_pool *pool = f.pool
    cdef pt_leaf *leaf
    cdef pt_node *inner
    cdef uint64_t lo, hi, i, n = 0, span
    cdef void *child
    if level == 0:
        leaf = <pt_leaf *>node
        lo = _umax(s, base) - base
        hi = _umin(e, base + PT_FANOUT) - base
        # Saved before the loop, not at its first empty entry: a test per leaf, none per
        # entry (a leaf the call fills nothing of is then saved needlessly, once).
        pt_save_leaf(pool, f.serial, base >> PT_BITS, leaf)
        for i in range(lo, hi):
            if leaf.entries[i] == 0:
                leaf.entries[i] = pool_take_saved(pool) + 1
                n += 1
        leaf.count += <uint32_t>n
        return n
    inner = <pt_node *>node
    span = _span(level)
    lo = (_umax(s, base) - base) >> (PT_BITS * level)
    hi = ((_umin(e, base + PT_FANOUT * span) - 1 - base) >> (PT_BITS * level)) + 1
    for i in range(lo, hi):
        child = inner.slots[i]
        if child == NULL:
            child = _new_child(f.pt, level - 1, base + i * span, pool, f.serial)
            if child == NULL:
                f.failed = True
                return n
            inner.slots[i] = child
            inner.count += 1
        n += _fill(f, child, level - 1, base + i * span, s, e)
        if f.failed:
            return n
    return n


cdef int pt_fill(page_table *pt, uint64_t start, uint64_t end,
                 frame_pool *pool, uint64_t serial) noexcept nogil:
    """Give every absent page of [start, end) a frame from `pool`, in ascending page order.

    The caller has checked that the pool holds enough free frames, and saved the entries the
    takes change for the latest snapshot (pool_save_takes); each leaf changed or made is
    saved first (pt_save_leaf). Returns 0, or -1 only if the host cannot allocate a node
    (the pages filled so far stay filled).
    """
    cdef _filler f
    if start >= end:
        return 0
    if _grow(pt, end - 1):
        return -1
    if pt.root == NULL:
        pt.root = _new_child(pt, pt.height - 1, start, pool, serial)
        if pt.root == NULL:
            return -1
    f.pt = pt
    f.pool = pool
    f.serial = serial
    f.failed = False
    pt.npages += _fill(&f, pt.root, pt.height - 1, 0, start, end)
    return -1 if f.failed else 0


# -- remove -----------------------------------------------------------------------------------

cdef struct _batch:
    page_table *pt          # whose emptied nodes become spares
    frame_pool *pool
    uint64_t serial
    uint64_t n
    uint64_t removed
    uint32_t frames[512]


cdef inline void _flush(_batch *b) noexcept nogil:
    if b.n:
        if b.pool != NULL:
            pool_give(b.pool, b.frames, b.n)
        b.n = 0


cdef void _remove(void *node, uint32_t level, uint64_t base, uint64_t s, uint64_t e,
                  _batch *b) noexcept nogil:
    cdef pt_leaf *leaf
    cdef pt_node *inner
    cdef uint64_t lo, hi, i, span
    cdef uint32_t entry
    cdef void *child
    if level == 0:
        leaf = <pt_leaf *>node
        lo = _umax(s, base) - base
        hi = _umin(e, base + PT_FANOUT) - base
        pt_save_leaf(b.pool, b.serial, base >> PT_BITS, leaf)     # a test per leaf
        for i in range(lo, hi):
            entry = leaf.entries[i]
            if entry:
                leaf.entries[i] = 0
                leaf.count -= 1
                b.frames[b.n] = entry - 1
                b.n += 1
                b.removed += 1
                if b.n == PT_FANOUT:
                    _flush(b)
                if leaf.count == 0:
                    break
        return
    inner = <pt_node *>node
    span = _span(level)
    lo = (_umax(s, base) - base) >> (PT_BITS * level)
    hi = ((_umin(e, base + PT_FANOUT * span) - 1 - base) >> (PT_BITS * level)) + 1
    for i in range(lo, hi):
        child = inner.slots[i]
        if child == NULL:
            continue
        _remove(child, level - 1, base + i * span, s, e, b)
        # A child emptied by the walk goes at once, so no empty node ever stays in the tree.
        if (<pt_leaf *>child).count == 0:
            _drop_node(b.pt, child, level - 1)
            inner.slots[i] = NULL
            inner.count -= 1
            if inner.count == 0:
                return


cdef uint64_t pt_remove(page_table *pt, uint64_t start, uint64_t end,
                        frame_pool *pool, uint64_t serial) noexcept nogil:
    """Remove the pages of [start, end), giving their frames to `pool` in ascending page
    order (each leaf's pre-image saved first if a snapshot needs it); returns how many.
    Cost: the nodes holding pages in the range."""
    cdef _batch b
    if pt.root == NULL or start >= end:
        return 0
    end = _umin(end, _span(pt.height))
    if start >= end:
        return 0
    b.pt = pt
    b.pool = pool
    b.serial = serial
    b.n = 0
    b.removed = 0
    _remove(pt.root, pt.height - 1, 0, start, end, &b)
    _flush(&b)
    c_assert(pt.npages >= b.removed)
    pt.npages -= b.removed
    if (<pt_leaf *>pt.root).count == 0:
        _drop_node(pt, pt.root, pt.height - 1)
        pt.root = NULL
        pt.height = 0
    return b.removed


# -- lookup -----------------------------------------------------------------------------------

cdef struct _cursor:
    const frame_pool *pool
    uint64_t *out
    uint64_t n


cdef bint _lookup(const void *node, uint32_t level, uint64_t base, uint64_t s, uint64_t e,
                  _cursor *c) noexcept nogil:
    """Append the paddrs of [s, e) below `node`; False at the first absent page."""
    cdef const pt_leaf *leaf
    cdef const pt_node *inner
    cdef uint64_t lo, hi, i, span, n, paddr_base
    cdef uint32_t entry
    cdef uint64_t *out
    if level == 0:
        leaf = <const pt_leaf *>node
        lo = _umax(s, base) - base
        hi = _umin(e, base + PT_FANOUT) - base
        out = c.out
        n = c.n
        if c.pool.narenas == 1:
            paddr_base = c.pool.arenas[0].base
            for i in range(lo, hi):
                entry = leaf.entries[i]
                if entry == 0:
                    c.n = n
                    return False
                out[n] = paddr_base + ((<uint64_t>(entry - 1)) << 12)
                n += 1
        else:
            for i in range(lo, hi):
                entry = leaf.entries[i]
                if entry == 0:
                    c.n = n
                    return False
                out[n] = pool_paddr(c.pool, entry - 1)
                n += 1
        c.n = n
        return True
    inner = <const pt_node *>node
    span = _span(level)
    lo = (_umax(s, base) - base) >> (PT_BITS * level)
    hi = ((_umin(e, base + PT_FANOUT * span) - 1 - base) >> (PT_BITS * level)) + 1
    for i in range(lo, hi):
        if inner.slots[i] == NULL:
            return False
        if not _lookup(inner.slots[i], level - 1, base + i * span, s, e, c):
            return False
    return True


cdef uint64_t pt_lookup(const page_table *pt, uint64_t start, uint64_t end,
                        const frame_pool *pool, uint64_t *out) noexcept nogil:
    """Write the physical address of pages start, start+1, ... to `out` until the first
    absent page or `end`; returns how many were written. O(pages written)."""
    cdef _cursor c
    if pt.root == NULL or start >= end or (start >> (PT_BITS * pt.height)) != 0:
        return 0
    c.pool = pool
    c.out = out
    c.n = 0
    _lookup(pt.root, pt.height - 1, 0, start, _umin(end, _span(pt.height)), &c)
    return c.n


# -- next -------------------------------------------------------------------------------------

cdef bint _next(const void *node, uint32_t level, uint64_t base, uint64_t s, uint64_t e,
                uint64_t *idx_out, uint32_t *entry_out) noexcept nogil:
    cdef const pt_leaf *leaf
    cdef const pt_node *inner
    cdef uint64_t lo, hi, i, span
    if level == 0:
        leaf = <const pt_leaf *>node
        lo = _umax(s, base) - base
        hi = _umin(e, base + PT_FANOUT) - base
        for i in range(lo, hi):
            if leaf.entries[i]:
                idx_out[0] = base + i
                entry_out[0] = leaf.entries[i]
                return True
        return False
    inner = <const pt_node *>node
    span = _span(level)
    lo = (_umax(s, base) - base) >> (PT_BITS * level)
    hi = ((_umin(e, base + PT_FANOUT * span) - 1 - base) >> (PT_BITS * level)) + 1
    for i in range(lo, hi):
        if inner.slots[i] != NULL:
            if _next(inner.slots[i], level - 1, base + i * span, s, e, idx_out, entry_out):
                return True
    return False


cdef bint pt_next(const page_table *pt, uint64_t start, uint64_t end,
                  uint64_t *idx_out, uint32_t *entry_out) noexcept nogil:
    """Find the first present page in [start, end): its index and entry. Cost: the nodes
    on the way to it."""
    if pt.root == NULL or start >= end:
        return False
    end = _umin(end, _span(pt.height))
    if start >= end:
        return False
    return _next(pt.root, pt.height - 1, 0, start, end, idx_out, entry_out)


cdef void _free_subtree(void *node, uint32_t level) noexcept nogil:
    cdef pt_node *inner
    cdef uint64_t i
    if level > 0:
        inner = <pt_node *>node
        for i in range(PT_FANOUT):
            if inner.slots[i] != NULL:
                _free_subtree(inner.slots[i], level - 1)
    _free_node(node, level)


cdef void _count_nodes(const void *node, uint32_t level, uint64_t *counts) noexcept nogil:
    """Add the leaves (counts[0]) and interior nodes (counts[1]) of a subtree."""
    cdef const pt_node *inner
    cdef uint64_t i
    if level == 0:
        counts[0] += 1
        return
    counts[1] += 1
    inner = <const pt_node *>node
    for i in range(PT_FANOUT):
        if inner.slots[i] != NULL:
            _count_nodes(inner.slots[i], level - 1, counts)


cdef void pt_free_nodes(page_table *pt) noexcept nogil:
    """Free the tree's memory, its spare nodes too, without returning any frame (the arena
    is going away)."""
    if pt.root != NULL:
        _free_subtree(pt.root, pt.height - 1)
    _drop_spares(pt)
    pt_init(pt)


# -- snapshots: leaf pre-images ---------------------------------------------------------------
# A store's `leaves` (snap_leaf, in the order saved) and `leafset`, the set of the (serial,
# leaf) pairs it holds. A leaf is saved on its first change since the latest snapshot: its
# `epoch` below `pool.snap_epoch` says so in one compare; the set catches the same leaf made
# again within the epoch (emptied, dropped, made anew), which would otherwise be saved again
# on every commit of a commit-restore loop.

cdef inline uint64_t _leaf_hash(uint64_t serial, uint64_t lidx) noexcept nogil:
    cdef uint64_t h = serial * <uint64_t>0x9E3779B97F4A7C15ULL + lidx
    h ^= h >> 31
    h *= <uint64_t>0xBF58476D1CE4E5B9ULL
    return h ^ (h >> 29)


cdef inline void _set_insert(uint64_t *set, uint64_t cap, const snap_leaf *leaves,
                             uint64_t i) noexcept nogil:
    """Put record `i` in the set (as i + 1), unless its pair is there already."""
    cdef uint64_t mask = cap - 1
    cdef uint64_t h = _leaf_hash(leaves[i].serial, leaves[i].lidx) & mask
    cdef uint64_t j
    while set[h]:
        j = set[h] - 1
        if leaves[j].serial == leaves[i].serial and leaves[j].lidx == leaves[i].lidx:
            return
        h = (h + 1) & mask
    set[h] = i + 1


cdef bint _set_resize(snap_store *st, uint64_t need) noexcept nogil:
    """Make the set hold the store's records in a table at most half full for `need`
    records. False if the host refuses (the old set stays)."""
    cdef uint64_t cap = 64, i
    cdef uint64_t *fresh
    while cap < 2 * need:
        cap *= 2
    fresh = <uint64_t *>calloc(cap, sizeof(uint64_t))
    if fresh == NULL:
        return False
    for i in range(st.nleaves):
        _set_insert(fresh, cap, <snap_leaf *>st.leaves, i)
    free(st.leafset)
    st.leafset = fresh
    st.capset = cap
    return True


cdef bint snap_leafset_rebuild(snap_store *st) noexcept nogil:
    """The set of a store whose `leaves` grew by appending (a dropped store merged in).
    False if the host refuses."""
    return _set_resize(st, st.nleaves)


cdef bint _set_has(const snap_store *st, uint64_t serial, uint64_t lidx) noexcept nogil:
    cdef uint64_t mask, h, j
    cdef const snap_leaf *leaves = <const snap_leaf *>st.leaves
    if st.capset == 0:
        return False
    mask = st.capset - 1
    h = _leaf_hash(serial, lidx) & mask
    while st.leafset[h]:
        j = st.leafset[h] - 1
        if leaves[j].serial == serial and leaves[j].lidx == lidx:
            return True
        h = (h + 1) & mask
    return False


cdef void _save(frame_pool *pool, uint64_t serial, uint64_t lidx, pt_leaf *leaf,
                bint absent) noexcept nogil:
    """Save leaf `lidx` of object `serial` into the latest store (its entries, or `absent`:
    it is being made), unless that store holds it already; mark it saved. A host
    allocation failure marks the store lost. O(1) expected, plus the 2 KiB copy."""
    cdef snap_store *st = pool.snap
    cdef snap_leaf *rec
    cdef pt_leaf *copy = NULL
    leaf.epoch = pool.snap_epoch
    if _set_has(st, serial, lidx):
        return
    if 2 * (st.nleaves + 1) > st.capset and not _set_resize(st, st.nleaves + 1):
        st.lost = True
        return
    if not snap_grow(&st.leaves, &st.capleaves, st.nleaves, sizeof(snap_leaf)):
        st.lost = True
        return
    if not absent:
        copy = <pt_leaf *>malloc(sizeof(pt_leaf))
        if copy == NULL:
            st.lost = True
            return
        memcpy(copy, leaf, sizeof(pt_leaf))
        copy.epoch = 0
    rec = &(<snap_leaf *>st.leaves)[st.nleaves]
    rec.serial = serial
    rec.lidx = lidx
    rec.data = copy
    st.nleaves += 1
    _set_insert(st.leafset, st.capset, <snap_leaf *>st.leaves, st.nleaves - 1)


cdef void pt_save_leaf_slow(frame_pool *pool, uint64_t serial, uint64_t lidx,
                            pt_leaf *leaf) noexcept nogil:
    """pt_save_leaf's slow path: the leaf's first change since the latest snapshot."""
    _save(pool, serial, lidx, leaf, False)


cdef void _save_subtree(void *node, uint32_t level, uint64_t base, frame_pool *pool,
                        uint64_t serial) noexcept nogil:
    cdef pt_node *inner
    cdef uint64_t i
    if level == 0:
        pt_save_leaf(pool, serial, base >> PT_BITS, <pt_leaf *>node)
        return
    inner = <pt_node *>node
    for i in range(PT_FANOUT):
        if inner.slots[i] != NULL:
            _save_subtree(inner.slots[i], level - 1, base + i * _span(level), pool, serial)


cdef void pt_save_all(const page_table *pt, frame_pool *pool, uint64_t serial) noexcept nogil:
    """Every leaf of the table is about to go (its object is dropped by a restore): save
    those a snapshot needs. One test when no snapshot is live, else O(nodes)."""
    if pool.snap_epoch and pt.root != NULL:
        _save_subtree(pt.root, pt.height - 1, 0, pool, serial)


cdef pt_leaf *_find_leaf(const page_table *pt, uint64_t lidx) noexcept nogil:
    """Leaf number `lidx`, or NULL. O(height)."""
    cdef uint64_t idx = lidx << PT_BITS
    cdef uint32_t level = pt.height
    cdef void *node = pt.root
    if level == 0 or (idx >> (PT_BITS * level)) != 0:
        return NULL
    while level > 1:
        level -= 1
        node = (<pt_node *>node).slots[(idx >> (PT_BITS * level)) & PT_MASK]
        if node == NULL:
            return NULL
    return <pt_leaf *>node


cdef int pt_prepare_leaf(page_table *pt, uint64_t lidx, frame_pool *pool,
                         uint64_t serial) noexcept nogil:
    """Make sure leaf `lidx` exists (with its path; a new leaf stays empty, noted absent
    for the latest snapshot) so that pt_put_leaf cannot fail: 0, or -1 if the host cannot
    allocate a node (pt_prune_leaf undoes what was made). O(height)."""
    return 0 if _leaf_for(pt, lidx << PT_BITS, pool, serial) != NULL else -1


cdef void pt_prune_leaf(page_table *pt, uint64_t lidx) noexcept nogil:
    """Drop the empty nodes on the path to leaf `lidx`, bottom up (what pt_prepare_leaf
    made and nothing filled, or a leaf just emptied). O(height)."""
    cdef void *path[PT_MAX_HEIGHT]
    cdef uint64_t idx = lidx << PT_BITS
    cdef uint32_t level = pt.height
    cdef uint32_t depth = 0, k
    cdef void *node = pt.root
    if level == 0 or (idx >> (PT_BITS * level)) != 0:
        return
    path[0] = node
    while level > 1:
        level -= 1
        node = (<pt_node *>node).slots[(idx >> (PT_BITS * level)) & PT_MASK]
        if node == NULL:
            break
        depth += 1
        path[depth] = node
    # path[k] is at level height - 1 - k; a child goes when empty, and so on upwards.
    k = depth
    while k > 0 and (<pt_leaf *>path[k]).count == 0:
        level = pt.height - 1 - k
        _drop_node(pt, path[k], level)
        (<pt_node *>path[k - 1]).slots[(idx >> (PT_BITS * (level + 1))) & PT_MASK] = NULL
        (<pt_node *>path[k - 1]).count -= 1
        k -= 1
    if k == 0 and (<pt_leaf *>pt.root).count == 0:
        _drop_node(pt, pt.root, pt.height - 1)
        pt.root = NULL
        pt.height = 0


cdef void pt_put_leaf(page_table *pt, uint64_t lidx, const pt_leaf *data, frame_pool *pool,
                      uint64_t serial) noexcept nogil:
    """Make leaf `lidx` hold `data`'s entries (a pre-image), or not exist (`data` NULL),
    saving its current content first if a snapshot needs it; `npages` follows. With data,
    the leaf exists (pt_prepare_leaf): nothing fails. O(height + 512)."""
    cdef pt_leaf *leaf = _find_leaf(pt, lidx)
    if leaf == NULL:
        c_assert(data == NULL)
        return
    pt_save_leaf(pool, serial, lidx, leaf)
    pt.npages -= leaf.count
    if data == NULL:
        memset(leaf.entries, 0, sizeof(leaf.entries))
        leaf.count = 0
        pt_prune_leaf(pt, lidx)
        return
    memcpy(leaf.entries, data.entries, sizeof(leaf.entries))
    leaf.count = data.count
    pt.npages += data.count


cdef int _check_subtree(const void *node, uint32_t level, uint64_t base,
                        const frame_pool *pool, uint64_t serial,
                        uint64_t *where) noexcept nogil:
    cdef const pt_node *inner
    cdef const pt_leaf *leaf
    cdef uint64_t i, n = 0
    cdef int bad
    where[0] = base
    if level == 0:
        leaf = <const pt_leaf *>node
        for i in range(PT_FANOUT):
            n += leaf.entries[i] != 0
        if n != leaf.count:
            return PT_BAD_COUNT
        if n == 0:
            return PT_BAD_EMPTY
        if leaf.epoch > pool.epochs:
            return PT_BAD_EPOCH
        if (pool.snap_epoch and leaf.epoch >= pool.snap_epoch and not pool.snap.lost
                and not _set_has(pool.snap, serial, base >> PT_BITS)):
            return PT_BAD_UNSAVED
        return PT_OK
    inner = <const pt_node *>node
    for i in range(PT_FANOUT):
        if inner.slots[i] != NULL:
            n += 1
            bad = _check_subtree(inner.slots[i], level - 1, base + i * _span(level), pool,
                                 serial, where)
            if bad:
                return bad
    where[0] = base
    if n != inner.count:
        return PT_BAD_COUNT
    return PT_BAD_EMPTY if n == 0 else PT_OK


cdef int pt_check(const page_table *pt, const frame_pool *pool, uint64_t serial,
                  uint64_t *where) noexcept nogil:
    """The invariant walker's look at one table (vmo/_invariants.pyx): node counts match
    their slots, no empty node stays in the tree, and each leaf's epoch is one a snapshot
    had, with its pre-image in the latest store when the epoch says it is saved. PT_OK or
    the first PT_BAD_* found (`where`: the first page under the node). O(nodes)."""
    if pt.root == NULL:
        return PT_OK if pt.height == 0 else PT_BAD_EMPTY
    return _check_subtree(pt.root, pt.height - 1, 0, pool, serial, where)


cdef class _PageTableShim:
    """Test shim: one page table over a private frame pool, driven from Python
    (tests/test_internals.py compares it with a dict)."""
    cdef page_table pt
    cdef frame_pool pool

    def __cinit__(self, uint64_t nframes=4096):
        pt_init(&self.pt)
        self.pool.mem = NULL
        pool_init(&self.pool, [(0, nframes)])

    def __dealloc__(self):
        pt_free_nodes(&self.pt)
        pool_destroy(&self.pool)

    def _range(self, uint64_t start, uint64_t end):
        if end > (<uint64_t>1) << 52 or start > end:
            raise ValueError("bad range")

    def get(self, uint64_t idx):
        """Frame at `idx`, or None."""
        cdef uint32_t e = pt_get(&self.pt, idx)
        return e - 1 if e else None

    def set(self, uint64_t idx):
        """Give page `idx` (absent) a frame; returns the frame."""
        cdef uint32_t f
        if idx >= (<uint64_t>1) << 52 or pt_get(&self.pt, idx):
            raise ValueError("bad index or present")
        if pool_free_count(&self.pool) == 0:
            raise MemoryError("no frame")
        f = pool_take(&self.pool)
        if pt_set(&self.pt, idx, f + 1, &self.pool, 0):
            pool_give(&self.pool, &f, 1)
            raise MemoryError("page table node")
        return f

    def count(self, uint64_t start, uint64_t end):
        self._range(start, end)
        return pt_count(&self.pt, start, end)

    def fill(self, uint64_t start, uint64_t end):
        """Fill the absent pages of the range; False (no change) if frames are short."""
        self._range(start, end)
        if (end - start) - pt_count(&self.pt, start, end) > pool_free_count(&self.pool):
            return False
        if pt_fill(&self.pt, start, end, &self.pool, 0):
            raise MemoryError("page table node")
        return True

    def remove(self, uint64_t start, uint64_t end):
        self._range(start, end)
        return pt_remove(&self.pt, start, end, &self.pool, 0)

    def lookup(self, uint64_t start, uint64_t end):
        """Frames of start, start+1, ... up to the first absent page."""
        cdef uint64_t n, i
        self._range(start, end)
        if end - start > 1 << 20:
            raise ValueError("range too long for the shim")
        out = bytearray(8 * (end - start) or 8)
        cdef unsigned char[:] mv = out
        n = pt_lookup(&self.pt, start, end, &self.pool, <uint64_t *>&mv[0])
        return [int.from_bytes(out[8 * i:8 * i + 8], "little") >> 12 for i in range(n)]

    def items(self, uint64_t start=0, uint64_t end=(<uint64_t>1) << 52):
        """[(idx, frame)] of the present pages of the range, ascending, via pt_next."""
        cdef uint64_t idx = start, found = 0
        cdef uint32_t e = 0
        self._range(start, end)
        out = []
        while pt_next(&self.pt, idx, end, &found, &e):
            out.append((found, e - 1))
            idx = found + 1
        return out

    def churn(self, uint64_t idx, uint64_t rounds):
        """`rounds` times: set page `idx` (absent), look it up, remove it; all in C (the
        microbenchmark of node churn)."""
        cdef uint64_t _i, paddr = 0
        cdef uint32_t f
        cdef bint failed = False
        if idx >= (<uint64_t>1) << 52 or pt_get(&self.pt, idx):
            raise ValueError("bad index or present")
        if pool_free_count(&self.pool) == 0:
            raise MemoryError("no frame")
        with nogil:
            for _i in range(rounds):
                f = pool_take(&self.pool)
                if pt_set(&self.pt, idx, f + 1, &self.pool, 0):
                    pool_give(&self.pool, &f, 1)
                    failed = True
                    break
                pt_lookup(&self.pt, idx, idx + 1, &self.pool, &paddr)
                pt_remove(&self.pt, idx, idx + 1, &self.pool, 0)
        if failed:
            raise MemoryError("page table node")

    def nodes(self):
        """(leaves, interior nodes) in the tree; the spares are apart (`spares`)."""
        cdef uint64_t counts[2]
        counts[0] = counts[1] = 0
        if self.pt.root != NULL:
            _count_nodes(self.pt.root, self.pt.height - 1, counts)
        return counts[0], counts[1]

    @property
    def spares(self):
        """(spare leaves, spare interior nodes) kept by the table for reuse."""
        return self.pt.nspare_leaves, self.pt.nspare_nodes

    @property
    def npages(self):
        return self.pt.npages

    @property
    def height(self):
        return self.pt.height

    @property
    def free_frames(self):
        return pool_free_count(&self.pool)

    @property
    def free_stack(self):
        return pool_list(&self.pool)
