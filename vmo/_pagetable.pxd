# The per-VMO page table: a radix tree keyed by page index, storing frame numbers in dense
# leaves of 512 32-bit entries (frame + 1; 0 means no page). Interior nodes have 512 children.
# The tree grows in height as larger indices are inserted (6 levels cover the 2**52 pages of
# MX_VMO_MAX_SIZE). Every range walk skips empty subtrees, so its cost follows the pages
# present, not the size of the range.
#
# A node that becomes empty leaves the tree at once, but up to PT_SPARE_LEAVES leaves and
# PT_SPARE_NODES interior nodes (a whole path) stay with the table, all zeros, and are handed
# out again before calloc is called: a loop that commits and decommits one page reuses its
# path instead of freeing and zeroing it each time. The spares are the table's own (no lock:
# one thread at a time works on a kernel), still counted by `node_bytes()`, and freed with
# the table by `pt_free_nodes`.
from libc.stdint cimport uint16_t, uint32_t, uint64_t

from vmo._frames cimport frame_pool, snap_store

cdef enum:
    PT_BITS = 9
    PT_FANOUT = 512
    PT_MASK = 511
    PT_MAX_HEIGHT = 6
    PT_SPARE_LEAVES = 2
    PT_SPARE_NODES = 5      # PT_MAX_HEIGHT - 1: the interior nodes of one path

cdef struct pt_node:
    uint32_t count          # non-empty slots
    void *slots[512]        # children (pt_node at level > 1, pt_leaf at level 1)

cdef struct pt_leaf:
    uint32_t count          # non-zero entries
    # Snapshots: the epoch of the latest snapshot whose store holds this leaf's pre-image
    # (or that saw it created); 0 for a leaf no live snapshot has seen change. A change of
    # the leaf saves its pre-image first when epoch < pool.snap_epoch (one compare).
    uint32_t epoch
    uint32_t entries[512]   # frame + 1, or 0


cdef struct snap_leaf:
    # A page-table leaf's pre-image for a snapshot (vmo/_snapshot.pyx restores it): leaf
    # `lidx` (covering pages lidx * 512 ...) of the VMO named `serial` as it was before its
    # first change since the snapshot; `data` NULL: the leaf did not exist.
    uint64_t serial
    uint64_t lidx
    pt_leaf *data

cdef struct page_table:
    void *root
    uint32_t height         # 0: empty; 1: root is a leaf; h: h-1 interior levels above leaves
    uint16_t nspare_leaves  # emptied nodes kept for reuse, at most PT_SPARE_LEAVES and
    uint16_t nspare_nodes   # PT_SPARE_NODES
    uint64_t npages         # entries present
    # The spare nodes, leaves and interior ones in one list, linked through bytes 8-15 of
    # each (slots[0], or entries[0:2]); all zeros but the link and the kind in `count`.
    void *spares

cdef inline void pt_init(page_table *pt) noexcept nogil:
    pt.root = NULL
    pt.height = 0
    pt.npages = 0
    pt.nspare_leaves = 0
    pt.nspare_nodes = 0
    pt.spares = NULL

cdef inline uint32_t pt_get(const page_table *pt, uint64_t idx) noexcept nogil:
    """The entry (frame + 1) at page `idx`, or 0. O(height)."""
    cdef uint32_t level = pt.height
    cdef void *node = pt.root
    if level == 0 or (idx >> (PT_BITS * level)) != 0:
        return 0
    while level > 1:
        level -= 1
        node = (<pt_node *>node).slots[(idx >> (PT_BITS * level)) & PT_MASK]
        if node == NULL:
            return 0
    return (<pt_leaf *>node).entries[idx & PT_MASK]

# The changing walks take the frame pool (whose `snap`/`snap_epoch` say where pre-images
# go) and the owner's serial (the name of its leaves' pre-images): every leaf they change
# is saved first (pt_save_leaf), every leaf they create is noted as absent before.
cdef int pt_set(page_table *pt, uint64_t idx, uint32_t entry, frame_pool *pool,
                uint64_t serial) noexcept nogil
cdef uint64_t pt_count(const page_table *pt, uint64_t start, uint64_t end) noexcept nogil
cdef int pt_fill(page_table *pt, uint64_t start, uint64_t end,
                 frame_pool *pool, uint64_t serial) noexcept nogil
cdef uint64_t pt_remove(page_table *pt, uint64_t start, uint64_t end,
                        frame_pool *pool, uint64_t serial) noexcept nogil
cdef uint64_t pt_lookup(const page_table *pt, uint64_t start, uint64_t end,
                        const frame_pool *pool, uint64_t *out) noexcept nogil
cdef bint pt_next(const page_table *pt, uint64_t start, uint64_t end,
                  uint64_t *idx_out, uint32_t *entry_out) noexcept nogil
cdef void pt_free_nodes(page_table *pt) noexcept nogil

# -- snapshots: leaf pre-images (the store's `leaves`, `leafset`: _frames.pxd) ---------------
cdef void pt_save_leaf_slow(frame_pool *pool, uint64_t serial, uint64_t lidx,
                            pt_leaf *leaf) noexcept nogil
cdef void pt_save_all(const page_table *pt, frame_pool *pool, uint64_t serial) noexcept nogil
cdef int pt_prepare_leaf(page_table *pt, uint64_t lidx, frame_pool *pool,
                         uint64_t serial) noexcept nogil
cdef void pt_prune_leaf(page_table *pt, uint64_t lidx) noexcept nogil
cdef void pt_put_leaf(page_table *pt, uint64_t lidx, const pt_leaf *data, frame_pool *pool,
                      uint64_t serial) noexcept nogil
cdef bint snap_leafset_rebuild(snap_store *st) noexcept nogil

cdef enum:
    PT_OK = 0
    PT_BAD_COUNT = 1        # a node's count is not its non-empty slots
    PT_BAD_EMPTY = 2        # an empty node in the tree
    PT_BAD_EPOCH = 3        # a leaf's epoch beyond every snapshot's
    PT_BAD_UNSAVED = 4      # a leaf marked saved with no pre-image in the latest store

cdef int pt_check(const page_table *pt, const frame_pool *pool, uint64_t serial,
                  uint64_t *where) noexcept nogil


cdef inline void pt_save_leaf(frame_pool *pool, uint64_t serial, uint64_t lidx,
                              pt_leaf *leaf) noexcept nogil:
    """`leaf` (leaf number `lidx` of the table of object `serial`) is about to change: its
    pre-image goes to the latest snapshot's store if this is its first change since. One
    compare when no snapshot is live or the leaf is saved already."""
    if leaf.epoch < pool.snap_epoch:
        pt_save_leaf_slow(pool, serial, lidx, leaf)
