# cython: language_level=3
"""The workload generators (docs/workloads.md): batches of 48-byte records (vmo/_tracerec.pxd)
and their side bytes, filled in C from a seed, with no Python call per operation.

Each generator keeps its own model of what exists (handles as the index of the record that
created them, used through REF; sizes; committed ranges; a frame budget), so a batch does not
depend on the kernel's answers and the same seed gives the same bytes.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memset

from vmo._tracerec cimport (
    CALL_HANDLE_CLOSE,
    CALL_HANDLE_DUPLICATE,
    CALL_HANDLE_REPLACE,
    CALL_OBJECT_GET_INFO,
    CALL_VMO_CLONE,
    CALL_VMO_COMMITTED_BYTES,
    CALL_VMO_CREATE,
    CALL_VMO_CREATE_CONTIGUOUS,
    CALL_VMO_GET_SIZE,
    CALL_VMO_OP_RANGE,
    CALL_VMO_READ,
    CALL_VMO_READ_BYTES,
    CALL_VMO_SET_SIZE,
    CALL_VMO_WRITE,
    REC_NO_DATA,
    REC_REF,
    TRACE_RECORD_SIZE,
    trace_rec,
)

DEF PAGE = 4096
DEF OP_COMMIT = 1
DEF OP_DECOMMIT = 2
DEF OP_LOOKUP = 5
DEF OP_CACHE_CLEAN = 8
DEF RIGHT_READ = 4
DEF SAME_RIGHTS = 0x80000000
DEF INFO_HANDLE_BASIC = 2
DEF COW = 1

DEF MAX_LIVE = 64        # handles a generator keeps live at once
DEF HEAP_SLOTS = 256     # allocation slots per size class of the heap
DEF HEAP_CLASSES = 7     # size classes: 1, 2, 4, ..., 64 pages
DEF CHAIN = 8            # the longest clone chain of `fork`

NAMES = ("heap", "churn", "fork", "dma", "mixed")


# -- the output: records and side bytes ------------------------------------------------------
cdef struct out_t:
    trace_rec *recs
    uint64_t n
    uint64_t cap
    uint8_t *side
    uint64_t side_len
    uint64_t side_cap
    uint64_t rng
    int failed


cdef inline uint64_t next64(out_t *o) noexcept nogil:
    """splitmix64."""
    o.rng += <uint64_t>0x9E3779B97F4A7C15ULL
    cdef uint64_t z = o.rng
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t below(out_t *o, uint64_t n) noexcept nogil:
    """Uniform-enough in [0, n) (n > 0)."""
    return next64(o) % n


cdef trace_rec *emit(out_t *o, uint8_t call) noexcept nogil:
    """A new zeroed record of ``call`` (NULL if the batch is full: the generator stops)."""
    if o.n >= o.cap:
        o.failed = 1
        return NULL
    cdef trace_rec *r = &o.recs[o.n]
    memset(r, 0, TRACE_RECORD_SIZE)
    r.call = call
    o.n += 1
    return r


cdef uint64_t side_bytes(out_t *o, uint64_t n) noexcept nogil:
    """Append ``n`` pseudo-random bytes to the side section; their offset (the batch's
    data offset)."""
    cdef uint64_t at = o.side_len, i, w = 0, need = o.side_len + n + 8
    cdef uint64_t cap
    cdef uint8_t *grown
    if need > o.side_cap:
        cap = o.side_cap * 2 if o.side_cap else 1 << 16
        while cap < need:
            cap *= 2
        grown = <uint8_t *>realloc(o.side, cap)
        if grown == NULL:
            o.failed = 2
            return 0
        o.side = grown
        o.side_cap = cap
    for i in range(n):
        if i % 8 == 0:
            w = next64(o)
        o.side[at + i] = <uint8_t>(w >> (8 * (i % 8)))
    o.side_len += n
    return at


cdef inline uint32_t ref(trace_rec *r, uint64_t index) noexcept nogil:
    """Make ``r`` use the handle returned by record ``index``."""
    r.flags |= REC_REF
    r.handle = <uint32_t>index
    return 0


# -- record builders (each returns the index of the record it made, or -1) ---------------------
cdef long long r_create(out_t *o, uint64_t size) noexcept nogil:
    cdef trace_rec *r = emit(o, CALL_VMO_CREATE)
    if r == NULL:
        return -1
    r.a = size
    return o.n - 1


cdef long long r_contig(out_t *o, uint64_t size, uint32_t align_log2) noexcept nogil:
    cdef trace_rec *r = emit(o, CALL_VMO_CREATE_CONTIGUOUS)
    if r == NULL:
        return -1
    r.a = size
    r.x = align_log2
    return o.n - 1


cdef void r_op(out_t *o, uint64_t h, uint32_t op, uint64_t off, uint64_t size) noexcept nogil:
    cdef trace_rec *r = emit(o, CALL_VMO_OP_RANGE)
    if r == NULL:
        return
    ref(r, h)
    r.x = op
    r.a = off
    r.b = size
    if op == OP_LOOKUP:
        r.c = 8 * ((off % PAGE + size + PAGE - 1) // PAGE)   # buffer_size: one entry a page


cdef void r_write(out_t *o, uint64_t h, uint64_t off, uint64_t n, bint zeros) noexcept nogil:
    cdef trace_rec *r = emit(o, CALL_VMO_WRITE)
    if r == NULL:
        return
    ref(r, h)
    r.a = off
    r.b = n
    if zeros:
        r.flags |= REC_NO_DATA
    else:
        r.c = side_bytes(o, n)


cdef void r_read(out_t *o, uint64_t h, uint64_t off, uint64_t n, bint as_bytes) noexcept nogil:
    cdef trace_rec *r = emit(o, CALL_VMO_READ_BYTES if as_bytes else CALL_VMO_READ)
    if r == NULL:
        return
    ref(r, h)
    r.a = off
    r.b = n


cdef void r_handle(out_t *o, uint8_t call, uint64_t h, uint32_t x) noexcept nogil:
    cdef trace_rec *r = emit(o, call)
    if r == NULL:
        return
    ref(r, h)
    r.x = x


cdef long long r_clone(out_t *o, uint64_t h, uint64_t off, uint64_t size) noexcept nogil:
    cdef trace_rec *r = emit(o, CALL_VMO_CLONE)
    if r == NULL:
        return -1
    ref(r, h)
    r.x = COW
    r.a = off
    r.b = size
    return o.n - 1


cdef void r_set_size(out_t *o, uint64_t h, uint64_t size) noexcept nogil:
    cdef trace_rec *r = emit(o, CALL_VMO_SET_SIZE)
    if r == NULL:
        return
    ref(r, h)
    r.a = size


# -- heap: one arena VMO, size classes committed and decommitted ------------------------------
cdef struct heap_t:
    long long arena          # the record that created the arena VMO
    uint64_t base[HEAP_CLASSES]
    uint8_t used[HEAP_CLASSES][HEAP_SLOTS]
    uint64_t frames          # frames the model holds committed
    uint64_t budget


cdef void heap_init(out_t *o, heap_t *s, uint64_t budget) noexcept nogil:
    cdef int k
    memset(s, 0, sizeof(heap_t))
    s.budget = budget
    for k in range(HEAP_CLASSES):
        s.base[k] = <uint64_t>k * HEAP_SLOTS * (64 * PAGE)   # each class its own region
    s.arena = r_create(o, <uint64_t>HEAP_CLASSES * HEAP_SLOTS * 64 * PAGE)


cdef void heap_step(out_t *o, heap_t *s) noexcept nogil:
    cdef uint64_t k = below(o, HEAP_CLASSES), slot = below(o, HEAP_SLOTS)
    cdef uint64_t pages = (<uint64_t>1) << k, off = s.base[k] + slot * 64 * PAGE
    cdef uint64_t roll = below(o, 100), n, at
    if s.arena < 0:
        return
    if not s.used[k][slot]:
        if s.frames + pages > s.budget:
            return
        # malloc: commit the block, then write a header and maybe some of the payload
        r_op(o, s.arena, OP_COMMIT, off, pages * PAGE)
        s.used[k][slot] = 1
        s.frames += pages
        n = 16 + below(o, 48)
        r_write(o, s.arena, off, n, 0)
        if roll < 10:
            n = 1 + below(o, pages * PAGE - 64)    # a large payload of zeros (NO_DATA)
            r_write(o, s.arena, off + 64, n, 1)
        elif roll < 40:
            n = 1 + below(o, 2048 if pages > 1 else PAGE - 64)
            r_write(o, s.arena, off + 64, n, 0)
        return
    if roll < 35:
        at = below(o, pages * PAGE)
        n = 1 + below(o, 256)
        r_read(o, s.arena, off + at, n, roll < 10)
    elif roll < 55:
        at = below(o, pages * PAGE - 8)
        r_write(o, s.arena, off + at, 8, 0)
    elif roll < 60:
        r_op(o, s.arena, OP_LOOKUP, off, pages * PAGE)
    elif roll < 63:
        r_handle(o, CALL_VMO_COMMITTED_BYTES, s.arena, 0)
    else:
        # free: decommit the block (its frames go back)
        r_op(o, s.arena, OP_DECOMMIT, off, pages * PAGE)
        s.used[k][slot] = 0
        s.frames -= pages


# -- churn: create, write, read, duplicate, close ---------------------------------------------
cdef struct churn_t:
    long long live[MAX_LIVE]
    uint64_t size[MAX_LIVE]
    uint64_t frames[MAX_LIVE]
    uint64_t nlive
    uint64_t held
    uint64_t budget


cdef void churn_close(out_t *o, churn_t *s, uint64_t i) noexcept nogil:
    r_handle(o, CALL_HANDLE_CLOSE, s.live[i], 0)
    s.held -= s.frames[i]
    s.nlive -= 1
    s.live[i] = s.live[s.nlive]
    s.size[i] = s.size[s.nlive]
    s.frames[i] = s.frames[s.nlive]


cdef void churn_step(out_t *o, churn_t *s) noexcept nogil:
    cdef uint64_t roll = below(o, 100), i, size, n, pages, at
    cdef long long h
    if s.nlive == 0 or (roll < 30 and s.nlive < MAX_LIVE):
        size = (1 + below(o, 16)) * PAGE
        if below(o, 2):
            size -= below(o, PAGE)      # byte-granular sizes too
        h = r_create(o, size)
        if h < 0:
            return
        pages = (size + PAGE - 1) // PAGE
        n = 1 + below(o, size if size < 1024 else 1024)
        i = s.nlive
        s.live[i] = h
        s.size[i] = size
        s.frames[i] = 0
        s.nlive += 1
        if s.held + pages <= s.budget:
            r_write(o, h, 0, n, 0)
            s.frames[i] = (n + PAGE - 1) // PAGE
            s.held += s.frames[i]
        return
    i = below(o, s.nlive)
    if roll < 55:
        churn_close(o, s, i)
    elif roll < 70:
        at = below(o, s.size[i] + 1)
        n = 1 + below(o, 512)
        r_read(o, s.live[i], at, n, roll < 62)
    elif roll < 75:
        # a read past the end: ERR_OUT_OF_RANGE, on purpose
        at = s.size[i] + 1 + below(o, PAGE)
        r_read(o, s.live[i], at, 8, 1)
    elif roll < 82:
        r_handle(o, CALL_VMO_GET_SIZE, s.live[i], 0)
    elif roll < 88:
        r_handle(o, CALL_OBJECT_GET_INFO, s.live[i], INFO_HANDLE_BASIC)
    elif roll < 94 and s.nlive < MAX_LIVE:
        # a read-only duplicate, whose write fails with ERR_ACCESS_DENIED, then closed
        h = o.n
        r_handle(o, CALL_HANDLE_DUPLICATE, s.live[i], RIGHT_READ)
        r_write(o, h, 0, 4, 0)
        r_handle(o, CALL_HANDLE_CLOSE, h, 0)
    else:
        # replace the handle by one with the same rights: the old one is gone
        h = o.n
        r_handle(o, CALL_HANDLE_REPLACE, s.live[i], SAME_RIGHTS)
        s.live[i] = h


# -- fork: clone chains and copy-on-write write storms ----------------------------------------
cdef struct fork_t:
    long long parent
    uint64_t pages
    long long chain[CHAIN]
    uint64_t depth
    uint64_t cow            # frames the chain's clones may hold (written pages)
    uint64_t budget


cdef void fork_step(out_t *o, fork_t *s) noexcept nogil:
    cdef uint64_t roll = below(o, 100), n, page, at, _
    cdef long long h, top
    if s.parent < 0:
        s.pages = 16 + below(o, 48)
        if s.pages > s.budget // 4:
            s.pages = s.budget // 4 if s.budget >= 8 else 1
        s.parent = r_create(o, s.pages * PAGE)
        if s.parent < 0:
            return
        r_op(o, s.parent, OP_COMMIT, 0, s.pages * PAGE)
        r_write(o, s.parent, 0, PAGE, 0)          # the parent's first page: random bytes
        s.depth = 0
        s.cow = 0
        return
    top = s.chain[s.depth - 1] if s.depth else s.parent
    if roll < 20 and s.depth < CHAIN:
        h = r_clone(o, top, 0, s.pages * PAGE)
        s.chain[s.depth] = h
        s.depth += 1
    elif roll < 60 and s.depth:
        # a write storm: one byte into many pages of the newest clone (each a COW fault)
        n = 1 + below(o, 16)
        for _ in range(n):
            page = below(o, s.pages)
            if s.cow + 1 > s.budget - s.pages:
                break
            at = below(o, PAGE - 8)
            r_write(o, top, page * PAGE + at, 8, 0)
            s.cow += 1
    elif roll < 75:
        r_read(o, top, below(o, s.pages) * PAGE, 64, roll < 68)
    elif roll < 80 and s.depth:
        n = 1 + below(o, s.pages)
        r_op(o, top, OP_LOOKUP, 0, PAGE * n)
    elif roll < 85:
        r_handle(o, CALL_VMO_COMMITTED_BYTES, top, 0)
    elif s.depth:
        # the newest clone goes; when the chain is empty, the parent too (a new fork begins)
        s.depth -= 1
        r_handle(o, CALL_HANDLE_CLOSE, top, 0)
        if s.depth == 0:
            s.cow = 0
    else:
        r_handle(o, CALL_HANDLE_CLOSE, s.parent, 0)
        s.parent = -1


# -- dma: contiguous buffers, LOOKUP, device writes, decommit ---------------------------------
cdef struct dma_t:
    long long buf[MAX_LIVE]
    uint64_t pages[MAX_LIVE]
    uint8_t mapped[MAX_LIVE]   # committed and looked up (the device may write)
    uint64_t n
    uint64_t held
    uint64_t budget


cdef void dma_step(out_t *o, dma_t *s) noexcept nogil:
    cdef uint64_t roll = below(o, 100), i, pages, off, n, align
    cdef long long h
    if s.n == 0 or (roll < 15 and s.n < 16):
        pages = (<uint64_t>1) << below(o, 5)             # 1 .. 16 pages
        if s.held + pages > s.budget:
            if s.n == 0:
                return
        else:
            align = 12 + below(o, 5)
            h = r_contig(o, pages * PAGE, <uint32_t>align)
            if h < 0:
                return
            s.buf[s.n] = h
            s.pages[s.n] = pages
            s.mapped[s.n] = 1
            s.n += 1
            s.held += pages
            r_op(o, h, OP_LOOKUP, 0, pages * PAGE)        # the driver hands them to the device
            return
    i = below(o, s.n)
    pages = s.pages[i]
    h = s.buf[i]
    if roll < 50:
        # the device writes a descriptor or a packet: modelled as a write through the kernel
        # (a record cannot carry a physical address learnt from a LOOKUP of the same batch)
        n = 64 * (1 + below(o, 24))
        off = below(o, pages * PAGE - n + 1) if n < pages * PAGE else 0
        r_write(o, h, off, n if n < pages * PAGE else pages * PAGE, 0)
    elif roll < 62:
        r_read(o, h, below(o, pages) * PAGE, 256, 0)      # the driver reads the completion
    elif roll < 70:
        r_op(o, h, OP_CACHE_CLEAN, 0, pages * PAGE)
    elif roll < 78:
        r_op(o, h, OP_LOOKUP, 0, pages * PAGE)             # ERR_NO_MEMORY once decommitted
    elif roll < 85 and s.mapped[i]:
        r_op(o, h, OP_DECOMMIT, 0, pages * PAGE)          # the buffer is given back
        s.mapped[i] = 0
    elif roll < 92 and not s.mapped[i]:
        r_op(o, h, OP_COMMIT, 0, pages * PAGE)            # and taken again (not contiguous)
        s.mapped[i] = 1
    else:
        r_handle(o, CALL_HANDLE_CLOSE, h, 0)
        s.held -= pages
        s.n -= 1
        s.buf[i] = s.buf[s.n]
        s.pages[i] = s.pages[s.n]
        s.mapped[i] = s.mapped[s.n]


# -- the driver ---------------------------------------------------------------------------------
cdef int generate(out_t *o, int which, uint64_t ops, uint64_t frames) noexcept nogil:
    cdef heap_t *heap = <heap_t *>malloc(sizeof(heap_t))
    cdef churn_t churn
    cdef fork_t fork
    cdef dma_t dma
    cdef uint64_t budget = frames * 3 // 4, share
    cdef int pick
    if heap == NULL:
        return 2
    memset(&churn, 0, sizeof(churn))
    memset(&fork, 0, sizeof(fork))
    memset(&dma, 0, sizeof(dma))
    share = budget // 4 if which == 4 else budget
    heap.arena = -1
    fork.parent = -1
    fork.budget = share
    churn.budget = share
    dma.budget = share
    if which == 0 or which == 4:
        heap_init(o, heap, share)
    while o.n < ops and not o.failed:
        pick = which if which != 4 else <int>below(o, 4)
        if pick == 0:
            heap_step(o, heap)
        elif pick == 1:
            churn_step(o, &churn)
        elif pick == 2:
            fork_step(o, &fork)
        else:
            dma_step(o, &dma)
    free(heap)
    return o.failed


def _generate(str name, uint64_t ops, uint64_t seed, uint64_t memory_size):
    """(records bytearray, data bytearray) of ``ops`` records of workload ``name``."""
    if name not in NAMES:
        raise ValueError(f"unknown workload {name!r}; one of {', '.join(NAMES)}")
    cdef int which = NAMES.index(name), status
    cdef out_t o
    cdef uint64_t frames = memory_size // PAGE
    if frames < 64:
        raise ValueError("a workload needs at least 64 pages of memory")
    memset(&o, 0, sizeof(o))
    o.rng = seed
    o.cap = ops + 64   # a step emits at most a few dozen records past `ops`
    records = bytearray(o.cap * TRACE_RECORD_SIZE)
    o.recs = <trace_rec *>PyByteArray_AS_STRING(records)
    with nogil:
        status = generate(&o, which, ops, frames)
    try:
        if status == 2:
            raise MemoryError()
        n = ops if o.n > ops else o.n
        del records[n * TRACE_RECORD_SIZE:]
        data = bytearray(o.side[:o.side_len]) if o.side_len else bytearray()
    finally:
        free(o.side)
    return records, data
