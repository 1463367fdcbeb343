# The frame allocator: which frames of physical memory are free, held and written.
#
# A LIFO stack of freed frames sits on top of the never-used ("fresh") frames, which are
# handed out in ascending order. All per-frame state lives in arrays reserved with the
# arena's mmap and populated by the host only where touched, so nothing is materialised
# up front for the whole of physical memory. See docs/semantics.md "Frames".
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memset

cdef enum:
    FRAME_SHIFT = 12
    FRAME_SIZE = 4096
    # Dirty runs at least this long go back to the host when freed; shorter ones are zeroed
    # when handed out again (a memset is cheaper than a syscall for a few pages).
    RELEASE_MIN_FRAMES = 16

cdef extern from "assert.h" nogil:
    # C's assert: compiled in by VMO_DEBUG=1 builds, gone (NDEBUG) in release builds.
    void c_assert "assert"(bint condition)

cdef extern from *:
    """
    /* Frame numbers are 32-bit in page tables (frame + 1, 0 = none): at most 2**32 - 2. */
    #define VMO_MAX_FRAMES 0xFFFFFFFEULL
    """
    const uint64_t MAX_FRAMES "VMO_MAX_FRAMES"

cdef struct frame_pool:
    uint8_t *mem            # host address of frame 0 (the arena)
    uint64_t paddr_base     # simulated physical address of frame 0
    uint64_t nframes
    uint64_t next_fresh     # frames >= next_fresh were never handed out
    uint32_t *stack         # freed frames, top at stack[stack_len - 1]
    uint64_t stack_len
    uint64_t *held          # bitmap: frame belongs to some VMO
    uint64_t *dirty         # bitmap: frame may hold nonzero bytes
    uint64_t released_runs  # statistics: runs given back to the host
    uint64_t zeroed_frames  # statistics: frames zeroed by hand on reuse

cdef int pool_init(frame_pool *p, uint64_t nframes, uint64_t paddr_base) except -1
cdef void pool_destroy(frame_pool *p) noexcept nogil
cdef void pool_give(frame_pool *p, const uint32_t *frames, uint64_t n) noexcept nogil

cdef inline uint64_t pool_free_count(const frame_pool *p) noexcept nogil:
    return p.nframes - p.next_fresh + p.stack_len

cdef inline bint bit_test(const uint64_t *bits, uint64_t i) noexcept nogil:
    return (bits[i >> 6] >> (i & 63)) & 1

cdef inline void bit_set(uint64_t *bits, uint64_t i) noexcept nogil:
    bits[i >> 6] |= (<uint64_t>1) << (i & 63)

cdef inline void bit_clear(uint64_t *bits, uint64_t i) noexcept nogil:
    bits[i >> 6] &= ~((<uint64_t>1) << (i & 63))

cdef inline uint8_t *pool_frame_ptr(const frame_pool *p, uint32_t f) noexcept nogil:
    return p.mem + ((<uint64_t>f) << FRAME_SHIFT)

cdef inline uint64_t pool_paddr(const frame_pool *p, uint32_t f) noexcept nogil:
    return p.paddr_base + ((<uint64_t>f) << FRAME_SHIFT)

cdef inline uint32_t pool_take(frame_pool *p) noexcept nogil:
    """Hand out one zero-filled frame. The caller has checked pool_free_count() >= 1."""
    cdef uint32_t f
    if p.stack_len:
        p.stack_len -= 1
        f = p.stack[p.stack_len]
        if bit_test(p.dirty, f):
            memset(pool_frame_ptr(p, f), 0, FRAME_SIZE)
            bit_clear(p.dirty, f)
            p.zeroed_frames += 1
    else:
        c_assert(p.next_fresh < p.nframes)
        f = <uint32_t>p.next_fresh
        p.next_fresh += 1
    c_assert(not bit_test(p.held, f))
    bit_set(p.held, f)
    return f

cdef inline void pool_mark_dirty(frame_pool *p, uint32_t f) noexcept nogil:
    c_assert(bit_test(p.held, f))
    bit_set(p.dirty, f)
