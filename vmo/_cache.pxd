# The CPU data cache of a non-coherent machine (docs/cache-model.md): write-back lines
# between the CPU side (vmo_read, vmo_write, the kernel's copy-on-write copies) and RAM (what
# devices see through phys_*). A kernel built with coherent=False owns one (`kernel_state.cache`);
# a coherent kernel has none (NULL), and every path tests that pointer at most once a call.
#
# C data only: lines in a slab (records and their bytes, compact: a removed line's slot takes
# the last line), found through an open-addressing table keyed by frame * lines_per_frame +
# line index; a second table counts the cached lines of each frame, so that a freed frame's
# lines and a cache op over a huge range cost time in cached lines and committed pages, not
# in the range. Least-recently-used order is an intrusive list through the slab. Hazard
# events are kept in a C array until `Kernel.coherency_events` turns them into objects.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from vmo._frames cimport frame_pool

cdef enum:
    LINE_DIRTY = 1          # the CPU wrote it since it was filled or written back
    LINE_STALE = 2          # a device wrote its bytes in RAM after it was filled
    EV_DEVICE_READ_DIRTY = 0
    EV_CPU_READ_STALE = 1
    EV_INVALIDATE_DIRTY = 2
    CACHE_CLEAN_OP = 0      # the maintenance a cache op does to each line (cache_op_page)
    CACHE_INVALIDATE_OP = 1
    CACHE_CLEAN_INVALIDATE_OP = 2

cdef struct cache_line:
    uint64_t key            # frame * per_frame + line index in the frame
    uint64_t koid           # the VMO holding the frame as its own page (fixed while cached)
    uint64_t offset         # the line's byte offset in that VMO
    uint32_t prev           # least-recently-used list (NIL at its ends; head = least recent)
    uint32_t next
    uint32_t flags          # LINE_DIRTY | LINE_STALE

cdef struct u64_table:
    # Open addressing, linear probing, backward-shift deletion; keys stored + 1 (0 = empty);
    # values of `vsize` bytes (a slab index, or a frame_lines record).
    uint64_t *keys
    uint8_t *vals
    uint64_t mask           # capacity - 1 (capacity a power of two, 0 when unallocated)
    uint64_t n
    uint64_t vsize

cdef struct frame_lines:
    # The lines a frame has cached: their number and which (bit i: line i of the frame), so
    # a walk over a frame's lines visits only those, in order.
    uint64_t count
    uint64_t bits[4]

cdef struct coherency_event:
    uint64_t paddr
    uint64_t koid           # 0: no VMO holds the frame
    uint64_t offset
    uint64_t seq
    uint32_t kind

cdef struct cpu_cache:
    uint32_t line_size
    uint32_t line_shift
    uint32_t per_frame      # lines per frame
    uint64_t capacity       # most lines held (least recently used evicted); 0 = unbounded
    const uint64_t *seq     # the kernel's call counter (kernel_state.seq)
    cache_line *lines       # the slab: nlines records, then their bytes in `data`
    uint8_t *data
    uint32_t nlines
    uint32_t cap
    uint32_t lru_head
    uint32_t lru_tail
    uint64_t ndirty
    u64_table by_key        # line key -> slab index
    u64_table by_frame      # frame -> its frame_lines
    coherency_event *events
    uint64_t nevents
    uint64_t events_cap
    uint64_t delivered      # events passed to on_coherency_event so far
    uint64_t lost_events    # events the host had no memory for

cdef cpu_cache *cache_new(uint32_t line_size, uint64_t capacity,
                          const uint64_t *seq) noexcept nogil
cdef void cache_free(cpu_cache *c) noexcept nogil
cdef void cache_forget_frame(void *cache, uint32_t frame) noexcept nogil
cdef int cache_cpu(cpu_cache *c, frame_pool *pool, uint32_t frame, uint64_t page_off,
                   uint8_t *buf, uint64_t n, uint64_t koid, uint64_t page_offset,
                   bint write) noexcept nogil
cdef void cache_device(cpu_cache *c, frame_pool *pool, uint64_t first, uint64_t paddr,
                       uint64_t length, bint write) noexcept nogil
cdef void cache_op_page(cpu_cache *c, frame_pool *pool, uint32_t frame, uint64_t lo,
                        uint64_t hi, int op) noexcept nogil
cdef void cache_clear_events(cpu_cache *c) noexcept nogil
cdef uint64_t cache_bytes(const cpu_cache *c) noexcept nogil
cdef int cache_check(const cpu_cache *c, const frame_pool *pool) noexcept nogil
