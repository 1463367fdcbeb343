# The frame allocator: which frames of physical memory are free, held, pinned and written.
#
# Frames are numbered 0, 1, ... across the memory map's arenas, in the order the arenas were
# given, so "ascending frame number" is Magenta's "arenas in order, ascending inside each".
# A LIFO list of freed frames sits on top of the never-used ("fresh") frames, which are
# handed out in ascending order. The list is doubly linked through two per-frame arrays so a
# contiguous allocation can take frames out of its middle in O(1) each, leaving the order of
# the rest unchanged. Every per-frame array is reserved with the arena's mmap and populated
# by the host only where touched, so nothing is materialised up front for the whole of
# physical memory. See docs/semantics.md "Frames".
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memset

cdef enum:
    FRAME_SHIFT = 12
    FRAME_SIZE = 4096
    # Dirty runs at least this long go back to the host when freed; shorter ones are zeroed
    # when handed out again (a memset is cheaper than a syscall for a few pages).
    RELEASE_MIN_FRAMES = 16
    MAX_ARENAS = 64

cdef extern from "assert.h" nogil:
    # C's assert: compiled in by VMO_DEBUG=1 builds, gone (NDEBUG) in release builds.
    void c_assert "assert"(bint condition)

cdef extern from *:
    """
    /* Frame numbers are 32-bit in page tables (frame + 1, 0 = none): at most 2**32 - 2. */
    #define VMO_MAX_FRAMES 0xFFFFFFFEULL
    #define VMO_NIL 0xFFFFFFFFU
    """
    const uint64_t MAX_FRAMES "VMO_MAX_FRAMES"
    const uint32_t NIL "VMO_NIL"

cdef struct arena_t:
    uint64_t base           # physical address of its first frame
    uint64_t first          # its first frame number
    uint64_t nframes

# Called for each frame pool_give frees (or orphans), before it is freed: the CPU cache
# drops the frame's lines (_cache.pxd); NULL on a coherent kernel.
ctypedef void (*frame_forget_fn)(void *ctx, uint32_t frame) noexcept nogil

# -- snapshots (vmo/_snapshot.pyx; docs/semantics.md "Snapshots") ---------------------------
# A live snapshot owns a store of pre-images: the state of each unit (a frame's bytes, a
# frame's allocator entry, a leaf of a VMO's page table) just before its first change after
# the snapshot was taken, saved into the store of the LATEST live snapshot, in the order saved.
# Restoring snapshot S applies the pre-images of S and of every later store, latest first
# and each store backwards, so the earliest pre-image of each unit wins.

cdef struct snap_bytes:
    uint32_t frame
    uint32_t dirty          # the frame's `dirty` bit then; 0: it was all zeros (data NULL)
    uint8_t *data           # FRAME_SIZE bytes (malloc'd) or NULL

cdef struct snap_entry:
    uint32_t frame
    uint32_t lnext
    uint32_t lprev
    uint32_t pincount
    uint8_t held
    uint8_t orphan

cdef struct snap_store:
    uint32_t epoch          # the snapshot's epoch: units saved at this epoch are in here
    bint lost               # a host allocation failed while saving: not restorable
    snap_store *older       # the previous live snapshot's store, or NULL
    snap_store *newer
    snap_bytes *bytes
    uint64_t nbytes
    uint64_t capbytes
    snap_entry *entries
    uint64_t nentries
    uint64_t capentries
    uint32_t *logged        # frames that entered the dirty log (a byte change) since
    uint64_t nlogged
    uint64_t caplogged
    void *leaves            # page-table leaf pre-images (`snap_leaf`, _pagetable.pxd)
    uint64_t nleaves
    uint64_t capleaves
    # The (serial, leaf) pairs with a pre-image in `leaves`: an open-addressing set of
    # indices + 1 (0: empty slot), capset a power of two, at most half full. It keeps a
    # leaf emptied and made again within one epoch from being saved twice.
    uint64_t *leafset
    uint64_t capset

cdef struct frame_pool:
    uint8_t *mem            # host address of frame 0: one mapping for every arena
    uint64_t nframes
    uint32_t narenas
    arena_t arenas[64]      # in frame order (the order given)
    uint64_t next_fresh     # no frame >= next_fresh was ever handed out by `pool_take`
    uint64_t held_above     # frames >= next_fresh held anyway (contiguous runs)
    uint64_t nfree
    uint32_t head           # top of the freed list (NIL when empty)
    uint64_t list_len
    uint32_t *lnext         # freed list: towards the bottom
    uint32_t *lprev         # freed list: towards the top
    uint64_t *held          # bitmap: not free (held by a VMO, or pinned after its VMO let go)
    uint64_t *dirty         # bitmap: may hold nonzero bytes
    uint32_t *pincount      # live physical views over each frame
    uint64_t npinned        # frames with pins
    uint64_t *orphan        # bitmap: pinned and let go by its VMO: freed when unpinned
    uint64_t *anyheld       # summary: held[w] != 0, one bit per 64-frame word
    uint64_t *fullheld      # summary: held[w] == all ones
    uint64_t host_frames    # frames per host page (1 on 4 KiB hosts; 4 or 16 on larger pages)
    uint64_t released_runs  # statistics: runs given back to the host
    uint64_t zeroed_frames  # statistics: frames zeroed by hand on reuse
    # The dirty log (docs/semantics.md "The dirty log"): frames whose bytes may have
    # changed since it was last cleared, as a bitmap and as a list in the order logged.
    uint64_t *logged
    uint32_t *log
    uint64_t nlog
    # Snapshots: `snap` is the latest live snapshot's store and `snap_epoch` its epoch (0:
    # no snapshot is live, and nothing below costs more than that one test); `epochs`
    # counts the snapshots ever taken. Per frame, the epoch of the store holding its byte
    # pre-image, its allocator entry's, and its dirty-log record.
    snap_store *snap
    uint32_t snap_epoch
    uint32_t epochs
    uint32_t *bytes_epoch
    uint32_t *entry_epoch
    uint32_t *log_epoch
    frame_forget_fn forget  # NULL, or the CPU cache's hook for freed frames
    void *forget_ctx

cdef int pool_init(frame_pool *p, object memory_map) except -1
cdef void pool_destroy(frame_pool *p) noexcept nogil
cdef void pool_give(frame_pool *p, const uint32_t *frames, uint64_t n) noexcept nogil
cdef void pool_pin(frame_pool *p, uint32_t f) noexcept nogil
cdef void pool_unpin(frame_pool *p, uint32_t f) noexcept nogil
cdef long long pool_find_run(const frame_pool *p, uint64_t count,
                             uint64_t align) noexcept nogil
cdef void pool_take_run(frame_pool *p, uint64_t first, uint64_t count) noexcept nogil
cdef bint pool_frame_of(const frame_pool *p, uint64_t paddr, uint64_t *frame,
                        uint64_t *region_end) noexcept nogil
cdef uint64_t pool_paddr_slow(const frame_pool *p, uint32_t f) noexcept nogil
cdef list pool_list(const frame_pool *p)
cdef void pool_save_bytes(frame_pool *p, uint32_t f) noexcept nogil
cdef void pool_save_entry(frame_pool *p, uint32_t f) noexcept nogil
cdef void pool_save_logged(frame_pool *p, uint32_t f) noexcept nogil
cdef void pool_save_take(frame_pool *p) noexcept nogil
cdef void pool_save_takes(frame_pool *p, uint64_t n) noexcept nogil
cdef bint snap_grow(void **arr, uint64_t *cap, uint64_t n, size_t elem) noexcept nogil

cdef inline uint64_t pool_free_count(const frame_pool *p) noexcept nogil:
    return p.nfree

cdef inline bint bit_test(const uint64_t *bits, uint64_t i) noexcept nogil:
    return (bits[i >> 6] >> (i & 63)) & 1

cdef inline void bit_set(uint64_t *bits, uint64_t i) noexcept nogil:
    bits[i >> 6] |= (<uint64_t>1) << (i & 63)

cdef inline void bit_clear(uint64_t *bits, uint64_t i) noexcept nogil:
    bits[i >> 6] &= ~((<uint64_t>1) << (i & 63))

cdef inline uint8_t *pool_frame_ptr(const frame_pool *p, uint32_t f) noexcept nogil:
    return p.mem + ((<uint64_t>f) << FRAME_SHIFT)

cdef inline uint64_t pool_paddr(const frame_pool *p, uint32_t f) noexcept nogil:
    if p.narenas == 1:
        return p.arenas[0].base + ((<uint64_t>f) << FRAME_SHIFT)
    return pool_paddr_slow(p, f)

cdef inline void pool_hold(frame_pool *p, uint64_t f) noexcept nogil:
    """Mark `f` not free and keep the word summaries in step."""
    cdef uint64_t w = f >> 6
    c_assert(not bit_test(p.held, f))
    p.held[w] |= (<uint64_t>1) << (f & 63)
    bit_set(p.anyheld, w)
    if p.held[w] == <uint64_t>0xFFFFFFFFFFFFFFFFULL:
        bit_set(p.fullheld, w)

cdef inline void pool_unhold(frame_pool *p, uint64_t f) noexcept nogil:
    cdef uint64_t w = f >> 6
    c_assert(bit_test(p.held, f))
    p.held[w] &= ~((<uint64_t>1) << (f & 63))
    bit_clear(p.fullheld, w)
    if p.held[w] == 0:
        bit_clear(p.anyheld, w)

cdef void pool_zero_frame(frame_pool *p, uint32_t f) noexcept nogil
cdef void pool_step_fresh(frame_pool *p) noexcept nogil

cdef inline void pool_zero_if_dirty(frame_pool *p, uint32_t f) noexcept nogil:
    if bit_test(p.dirty, f):
        pool_zero_frame(p, f)

cdef inline void pool_log_saved(frame_pool *p, uint32_t f) noexcept nogil:
    """Frame `f`'s bytes (may) change: into the dirty log (one test-and-set); the caller
    noted it for the latest snapshot (pool_save_logged) if one is live."""
    if not bit_test(p.logged, f):
        bit_set(p.logged, f)
        p.log[p.nlog] = f
        p.nlog += 1

cdef inline void pool_log(frame_pool *p, uint32_t f) noexcept nogil:
    """pool_log_saved, noting `f` for the latest snapshot first when one is live."""
    if p.snap_epoch:
        pool_save_logged(p, f)
    pool_log_saved(p, f)

cdef inline uint32_t pool_take(frame_pool *p) noexcept nogil:
    """Hand out one zero-filled frame: the top of the freed list, else the lowest fresh
    frame. The caller has checked pool_free_count() >= 1. O(1) amortised."""
    if p.snap_epoch:
        pool_save_take(p)
    return pool_take_saved(p)

cdef inline uint32_t pool_take_saved(frame_pool *p) noexcept nogil:
    """pool_take once the entries it changes are saved for the latest snapshot (or none is
    live): `pool_save_takes(p, n)` before a loop of n takes. Kept small so it inlines into
    the page-table fill loop; the rare paths are out of line."""
    cdef uint32_t f, nxt
    if p.head != NIL:
        f = p.head
        nxt = p.lnext[f]
        p.head = nxt
        if nxt != NIL:
            p.lprev[nxt] = NIL
        p.list_len -= 1
    else:
        c_assert(p.next_fresh < p.nframes)
        f = <uint32_t>p.next_fresh
        p.next_fresh += 1
        if p.held_above:
            pool_step_fresh(p)
    if bit_test(p.dirty, f):
        pool_zero_frame(p, f)
    pool_hold(p, f)
    p.nfree -= 1
    return f

cdef inline void pool_mark_dirty(frame_pool *p, uint32_t f) noexcept nogil:
    """Held frame `f` is about to be written (called before its bytes change): it may hold
    nonzero bytes from now on, it enters the dirty log, and its bytes' pre-image goes to
    the latest snapshot if this is their first change since."""
    c_assert(bit_test(p.held, f))
    if p.snap_epoch:
        pool_save_bytes(p, f)
        pool_save_logged(p, f)
    bit_set(p.dirty, f)
    pool_log_saved(p, f)
