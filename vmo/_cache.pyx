"""The CPU data cache of a non-coherent machine (see _cache.pxd, docs/cache-model.md).

Every function is `noexcept nogil` and touches no Python object. A host allocation failure
while a line is filled is HOST_NO_MEMORY (the access stops there); one while an event is
kept only counts the event as lost (`lost_events`).
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from vmo._frames cimport (NIL, bit_test, frame_pool, pool_frame_ptr, pool_mark_dirty,
                          pool_paddr)
from vmo._status cimport HOST_NO_MEMORY, NO_ERROR, PAGE_MASK

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil
    int __builtin_popcountll(unsigned long long x) nogil

cdef enum:
    MIN_TABLE = 16
    MIN_SLAB = 16


# -- the table: frame or line key -> uint32 ---------------------------------------------------
cdef inline uint64_t _home(uint64_t key, uint64_t mask) noexcept nogil:
    cdef uint64_t h = key * <uint64_t>0x9E3779B97F4A7C15ULL
    return (h ^ (h >> 29)) & mask


cdef inline long long _slot(const u64_table *t, uint64_t key) noexcept nogil:
    """The slot holding `key`, or -1."""
    cdef uint64_t i, stored = key + 1
    if t.mask == 0:
        return -1
    i = _home(key, t.mask)
    while t.keys[i]:
        if t.keys[i] == stored:
            return <long long>i
        i = (i + 1) & t.mask
    return -1


cdef inline uint32_t *_u32(const u64_table *t, uint64_t slot) noexcept nogil:
    return <uint32_t *>(t.vals + slot * t.vsize)


cdef inline frame_lines *_fl(const u64_table *t, uint64_t slot) noexcept nogil:
    return <frame_lines *>(t.vals + slot * t.vsize)


cdef int _rehash(u64_table *t, uint64_t capacity) noexcept nogil:
    """Move every entry into a table of `capacity` slots (a power of two > n)."""
    cdef uint64_t *keys = <uint64_t *>calloc(capacity, sizeof(uint64_t))
    cdef uint8_t *vals = <uint8_t *>malloc(capacity * t.vsize)
    cdef uint64_t i, j, mask = capacity - 1
    if keys == NULL or vals == NULL:
        free(keys)
        free(vals)
        return -1
    for i in range(t.mask + 1 if t.mask else 0):
        if t.keys[i]:
            j = _home(t.keys[i] - 1, mask)
            while keys[j]:
                j = (j + 1) & mask
            keys[j] = t.keys[i]
            memcpy(vals + j * t.vsize, t.vals + i * t.vsize, t.vsize)
    free(t.keys)
    free(t.vals)
    t.keys = keys
    t.vals = vals
    t.mask = mask
    return 0


cdef long long _put(u64_table *t, uint64_t key) noexcept nogil:
    """Insert `key` (absent) with a zeroed value: its slot, or -1 if the host refuses to
    grow the table."""
    cdef uint64_t i
    if t.mask == 0 or (t.n + 1) * 2 > t.mask + 1:
        if _rehash(t, (t.mask + 1) * 2 if t.mask else MIN_TABLE):
            return -1
    i = _home(key, t.mask)
    while t.keys[i]:
        i = (i + 1) & t.mask
    t.keys[i] = key + 1
    memset(t.vals + i * t.vsize, 0, t.vsize)
    t.n += 1
    return <long long>i


cdef void _delete(u64_table *t, uint64_t slot) noexcept nogil:
    """Empty `slot`, shifting back the entries of its probe run (no tombstones); shrink a
    table that fell to an eighth full (memory follows what is cached)."""
    cdef uint64_t i = slot, j = slot, k
    while True:
        j = (j + 1) & t.mask
        if t.keys[j] == 0:
            break
        k = _home(t.keys[j] - 1, t.mask)
        # The entry at j stays if its home lies cyclically in (i, j].
        if (i < k <= j) if i <= j else (k > i or k <= j):
            continue
        t.keys[i] = t.keys[j]
        memcpy(t.vals + i * t.vsize, t.vals + j * t.vsize, t.vsize)
        i = j
    t.keys[i] = 0
    t.n -= 1
    if t.mask + 1 > MIN_TABLE and t.n * 8 < t.mask + 1:
        _rehash(t, (t.mask + 1) // 2)   # a refusal only keeps the larger table


cdef void _table_free(u64_table *t) noexcept nogil:
    free(t.keys)
    free(t.vals)
    t.keys = NULL
    t.vals = NULL
    t.mask = 0
    t.n = 0


# -- lifetime -----------------------------------------------------------------------------------
cdef cpu_cache *cache_new(uint32_t line_size, uint64_t capacity,
                          const uint64_t *seq) noexcept nogil:
    """An empty cache of `line_size`-byte lines (a power of two, 16..4096, checked by the
    caller) holding at most `capacity` lines (0: unbounded); NULL if the host refuses."""
    cdef cpu_cache *c = <cpu_cache *>calloc(1, sizeof(cpu_cache))
    if c == NULL:
        return NULL
    c.line_size = line_size
    while (<uint32_t>1 << c.line_shift) < line_size:
        c.line_shift += 1
    c.per_frame = 4096 >> c.line_shift
    c.capacity = capacity
    c.seq = seq
    c.lru_head = NIL
    c.lru_tail = NIL
    c.by_key.vsize = sizeof(uint32_t)
    c.by_frame.vsize = sizeof(frame_lines)
    return c


cdef void cache_free(cpu_cache *c) noexcept nogil:
    if c == NULL:
        return
    _table_free(&c.by_key)
    _table_free(&c.by_frame)
    free(c.lines)
    free(c.data)
    free(c.events)
    free(c)


cdef uint64_t cache_bytes(const cpu_cache *c) noexcept nogil:
    """Host bytes the cache holds: its slab, tables and events."""
    return (sizeof(cpu_cache) + <uint64_t>c.cap * (sizeof(cache_line) + c.line_size)
            + (c.by_key.mask + 1 if c.by_key.mask else 0) * (8 + c.by_key.vsize)
            + (c.by_frame.mask + 1 if c.by_frame.mask else 0) * (8 + c.by_frame.vsize)
            + c.events_cap * sizeof(coherency_event))


# -- events -----------------------------------------------------------------------------------
cdef void _event(cpu_cache *c, frame_pool *pool, uint32_t kind, uint32_t idx) noexcept nogil:
    """Keep an event about line `idx`. One per line per call: a device access cut in chunks
    (a replay's) meets a line twice at most in a row."""
    cdef cache_line *ln = &c.lines[idx]
    cdef uint64_t frame = ln.key // c.per_frame
    cdef uint64_t paddr = pool_paddr(pool, <uint32_t>frame) + (
        (ln.key - frame * c.per_frame) << c.line_shift)
    cdef coherency_event *e
    cdef uint64_t cap
    if c.nevents:
        e = &c.events[c.nevents - 1]
        if e.seq == c.seq[0] and e.paddr == paddr and e.kind == kind:
            return
    if c.nevents == c.events_cap:
        cap = c.events_cap * 2 if c.events_cap else 16
        e = <coherency_event *>realloc(c.events, cap * sizeof(coherency_event))
        if e == NULL:
            c.lost_events += 1
            return
        c.events = e
        c.events_cap = cap
    e = &c.events[c.nevents]
    e.kind = kind
    e.paddr = paddr
    e.koid = ln.koid
    e.offset = ln.offset
    e.seq = c.seq[0]
    c.nevents += 1


cdef void cache_clear_events(cpu_cache *c) noexcept nogil:
    free(c.events)
    c.events = NULL
    c.nevents = 0
    c.events_cap = 0
    c.delivered = 0


# -- lines ------------------------------------------------------------------------------------
cdef inline void _lru_unlink(cpu_cache *c, uint32_t idx) noexcept nogil:
    cdef cache_line *ln = &c.lines[idx]
    if ln.prev != NIL:
        c.lines[ln.prev].next = ln.next
    else:
        c.lru_head = ln.next
    if ln.next != NIL:
        c.lines[ln.next].prev = ln.prev
    else:
        c.lru_tail = ln.prev


cdef inline void _lru_append(cpu_cache *c, uint32_t idx) noexcept nogil:
    cdef cache_line *ln = &c.lines[idx]
    ln.prev = c.lru_tail
    ln.next = NIL
    if c.lru_tail != NIL:
        c.lines[c.lru_tail].next = idx
    else:
        c.lru_head = idx
    c.lru_tail = idx


cdef inline void _touch(cpu_cache *c, uint32_t idx) noexcept nogil:
    """Most recently used now (CPU accesses only)."""
    if c.lru_tail != idx:
        _lru_unlink(c, idx)
        _lru_append(c, idx)


cdef inline uint32_t _find(const cpu_cache *c, uint64_t key) noexcept nogil:
    cdef long long s = _slot(&c.by_key, key)
    return NIL if s < 0 else _u32(&c.by_key, s)[0]


cdef void _write_back(cpu_cache *c, frame_pool *pool, uint32_t idx) noexcept nogil:
    """RAM gets the whole line; it is clean and no longer stale."""
    cdef cache_line *ln = &c.lines[idx]
    cdef uint64_t frame = ln.key // c.per_frame
    cdef uint64_t li = ln.key - frame * c.per_frame
    pool_mark_dirty(pool, <uint32_t>frame)
    memcpy(pool_frame_ptr(pool, <uint32_t>frame) + (li << c.line_shift),
           c.data + (<uint64_t>idx << c.line_shift), c.line_size)
    if ln.flags & LINE_DIRTY:
        c.ndirty -= 1
    ln.flags = 0


cdef void _remove(cpu_cache *c, uint32_t idx) noexcept nogil:
    """Drop line `idx` (its bytes are lost); the last line of the slab takes its slot."""
    cdef cache_line *ln = &c.lines[idx]
    cdef uint64_t frame = ln.key // c.per_frame
    cdef uint64_t li = ln.key - frame * c.per_frame
    cdef long long s
    cdef uint32_t last = c.nlines - 1
    cdef uint32_t cap
    cdef void *p
    cdef frame_lines *fl
    if ln.flags & LINE_DIRTY:
        c.ndirty -= 1
    _lru_unlink(c, idx)
    _delete(&c.by_key, <uint64_t>_slot(&c.by_key, ln.key))
    s = _slot(&c.by_frame, frame)
    fl = _fl(&c.by_frame, s)
    fl.count -= 1
    fl.bits[li >> 6] &= ~((<uint64_t>1) << (li & 63))
    if fl.count == 0:
        _delete(&c.by_frame, <uint64_t>s)
    if idx != last:
        c.lines[idx] = c.lines[last]
        memcpy(c.data + (<uint64_t>idx << c.line_shift),
               c.data + (<uint64_t>last << c.line_shift), c.line_size)
        ln = &c.lines[idx]
        if ln.prev != NIL:
            c.lines[ln.prev].next = idx
        else:
            c.lru_head = idx
        if ln.next != NIL:
            c.lines[ln.next].prev = idx
        else:
            c.lru_tail = idx
        _u32(&c.by_key, _slot(&c.by_key, ln.key))[0] = idx
    c.nlines -= 1
    # Memory follows the lines cached: halve a slab fallen to a quarter full.
    if c.cap > MIN_SLAB and c.nlines * 4 < c.cap:
        cap = c.cap // 2
        p = realloc(c.lines, cap * sizeof(cache_line))
        if p != NULL:
            c.lines = <cache_line *>p
            p = realloc(c.data, <uint64_t>cap << c.line_shift)
            if p != NULL:
                c.data = <uint8_t *>p
                c.cap = cap


cdef int _fill(cpu_cache *c, frame_pool *pool, uint64_t key, uint32_t frame, uint64_t li,
               uint64_t koid, uint64_t offset, uint32_t *out) noexcept nogil:
    """A new line for `key`, filled from RAM (valid, clean), most recently used; the least
    recently used line goes first when the cache is full (written back if dirty, no event).
    0, or HOST_NO_MEMORY (nothing changed but that eviction)."""
    cdef uint32_t idx, cap
    cdef long long s, ks
    cdef void *p
    cdef cache_line *ln
    cdef frame_lines *fl
    if c.capacity and c.nlines >= c.capacity:
        if c.lines[c.lru_head].flags & LINE_DIRTY:
            _write_back(c, pool, c.lru_head)
        _remove(c, c.lru_head)
    if c.nlines == c.cap:
        cap = c.cap * 2 if c.cap else MIN_SLAB
        p = realloc(c.lines, cap * sizeof(cache_line))
        if p == NULL:
            return HOST_NO_MEMORY
        c.lines = <cache_line *>p
        p = realloc(c.data, <uint64_t>cap << c.line_shift)
        if p == NULL:
            return HOST_NO_MEMORY
        c.data = <uint8_t *>p
        c.cap = cap
    s = _slot(&c.by_frame, frame)
    if s < 0:
        s = _put(&c.by_frame, frame)
        if s < 0:
            return HOST_NO_MEMORY
    idx = c.nlines
    ks = _put(&c.by_key, key)
    if ks < 0:
        if _fl(&c.by_frame, s).count == 0:
            _delete(&c.by_frame, <uint64_t>s)
        return HOST_NO_MEMORY
    _u32(&c.by_key, ks)[0] = idx
    fl = _fl(&c.by_frame, s)
    fl.count += 1
    fl.bits[li >> 6] |= (<uint64_t>1) << (li & 63)
    c.nlines += 1
    ln = &c.lines[idx]
    ln.key = key
    ln.koid = koid
    ln.offset = offset
    ln.flags = 0
    _lru_append(c, idx)
    if bit_test(pool.dirty, frame):
        memcpy(c.data + (<uint64_t>idx << c.line_shift),
               pool_frame_ptr(pool, frame) + (li << c.line_shift), c.line_size)
    else:
        memset(c.data + (<uint64_t>idx << c.line_shift), 0, c.line_size)
    out[0] = idx
    return NO_ERROR


# -- the accesses -------------------------------------------------------------------------------
cdef int cache_cpu(cpu_cache *c, frame_pool *pool, uint32_t frame, uint64_t page_off,
                   uint8_t *buf, uint64_t n, uint64_t koid, uint64_t page_offset,
                   bint write) noexcept nogil:
    """A CPU read (into `buf`) or write (from it) of `n` bytes at `page_off` of `frame`,
    which VMO `koid` holds at byte `page_offset`, line by line: a hit uses the line (a read
    of a stale one is a cpu-read-stale event); a miss fills it from RAM; a write makes it
    dirty (RAM unchanged). 0 or HOST_NO_MEMORY. O(lines touched)."""
    cdef uint64_t pos = page_off, end = page_off + n, li, lo, chunk, key
    cdef uint64_t base = <uint64_t>frame * c.per_frame
    cdef uint32_t idx
    cdef uint8_t *line
    cdef int status
    while pos < end:
        li = pos >> c.line_shift
        lo = pos - (li << c.line_shift)
        chunk = c.line_size - lo
        if chunk > end - pos:
            chunk = end - pos
        key = base + li
        idx = _find(c, key)
        if idx == NIL:
            status = _fill(c, pool, key, frame, li, koid, page_offset + (li << c.line_shift),
                           &idx)
            if status:
                return status
        elif not write and c.lines[idx].flags & LINE_STALE:
            _event(c, pool, EV_CPU_READ_STALE, idx)
        _touch(c, idx)
        line = c.data + (<uint64_t>idx << c.line_shift) + lo
        if write:
            memcpy(line, buf, chunk)
            if not c.lines[idx].flags & LINE_DIRTY:
                c.lines[idx].flags |= LINE_DIRTY
                c.ndirty += 1
        else:
            memcpy(buf, line, chunk)
        buf += chunk
        pos += chunk
    return NO_ERROR


cdef inline const frame_lines *_frame(const cpu_cache *c, uint64_t frame) noexcept nogil:
    """The frame's record of cached lines, or NULL when it has none."""
    cdef long long s = _slot(&c.by_frame, frame)
    return NULL if s < 0 else _fl(&c.by_frame, s)


cdef inline long long _next_line(const frame_lines *fl, uint64_t li,
                                 uint64_t last) noexcept nogil:
    """The first cached line index in [li, last] of a frame, or -1."""
    cdef uint64_t w, word
    while li <= last:
        w = li >> 6
        word = fl.bits[w] >> (li & 63)
        if word:
            li += <uint64_t>__builtin_ctzll(word)
            return <long long>li if li <= last else -1
        li = (w + 1) << 6
    return -1


cdef void cache_device(cpu_cache *c, frame_pool *pool, uint64_t first, uint64_t paddr,
                       uint64_t length, bint write) noexcept nogil:
    """What a device access of [paddr, paddr+length) (a checked range starting in frame
    `first`) does to the lines over it, by ascending address: a read of a dirty line is a
    device-read-dirty event; a write makes every line it touches stale. O(frames of the range
    + their cached lines)."""
    cdef uint64_t pos = paddr, end = paddr + length, f = first, lo, hi, li_end
    cdef long long li
    cdef uint32_t idx
    cdef const frame_lines *fl
    while pos < end:
        lo = pos & PAGE_MASK
        hi = 4096 if end - pos > 4096 - lo else lo + (end - pos)
        fl = _frame(c, f)
        if fl != NULL:
            li_end = (hi - 1) >> c.line_shift
            li = _next_line(fl, lo >> c.line_shift, li_end)
            while li >= 0:
                idx = _find(c, f * c.per_frame + <uint64_t>li)
                if write:
                    c.lines[idx].flags |= LINE_STALE
                elif c.lines[idx].flags & LINE_DIRTY:
                    _event(c, pool, EV_DEVICE_READ_DIRTY, idx)
                li = _next_line(fl, <uint64_t>li + 1, li_end)
        pos += hi - lo
        f += 1


cdef void cache_op_page(cpu_cache *c, frame_pool *pool, uint32_t frame, uint64_t lo,
                        uint64_t hi, int op) noexcept nogil:
    """A cache op on the lines of `frame` overlapping bytes [lo, hi) of it (whole lines):
    CLEAN writes dirty lines back and keeps them; INVALIDATE drops them (discarding dirty
    bytes: an invalidate-dirty event); CLEAN_INVALIDATE writes back, then drops. LRU order
    unchanged. O(lines of the page) when the frame has lines, else one probe."""
    cdef uint64_t last
    cdef long long li
    cdef uint32_t idx
    cdef const frame_lines *fl
    if hi <= lo:
        return
    fl = _frame(c, frame)
    if fl == NULL:
        return
    last = (hi - 1) >> c.line_shift
    li = _next_line(fl, lo >> c.line_shift, last)
    while li >= 0:
        idx = _find(c, <uint64_t>frame * c.per_frame + <uint64_t>li)
        if op == CACHE_INVALIDATE_OP:
            if c.lines[idx].flags & LINE_DIRTY:
                _event(c, pool, EV_INVALIDATE_DIRTY, idx)
        elif c.lines[idx].flags & LINE_DIRTY:
            _write_back(c, pool, idx)
        if op != CACHE_CLEAN_OP:
            # Removing a line may move the frame's record (table shrink): look it up again.
            _remove(c, idx)
            fl = _frame(c, frame)
            if fl == NULL:
                return
        li = _next_line(fl, <uint64_t>li + 1, last)


cdef void cache_forget_frame(void *cache, uint32_t frame) noexcept nogil:
    """A frame was freed: its lines go, dirty ones unwritten, without events (the frame
    pool's hook, called from pool_give). One probe when it has none."""
    cdef cpu_cache *c = <cpu_cache *>cache
    cdef long long li
    cdef const frame_lines *fl = _frame(c, frame)
    while fl != NULL:
        li = _next_line(fl, 0, c.per_frame - 1)
        _remove(c, _find(c, <uint64_t>frame * c.per_frame + <uint64_t>li))
        fl = _frame(c, frame)


cdef int cache_check(const cpu_cache *c, const frame_pool *pool) noexcept nogil:
    """The cache's invariants: 0, or the number of the first one broken (the walker names
    it). Cost: the lines cached."""
    cdef uint64_t i, j, n = 0, dirty = 0, per = 0
    cdef uint32_t idx, prev = NIL
    cdef const frame_lines *fl
    if c.nlines > c.cap or (c.capacity and c.nlines > c.capacity):
        return 1
    if c.by_key.n != c.nlines:
        return 2
    idx = c.lru_head
    while idx != NIL:
        if idx >= c.nlines or c.lines[idx].prev != prev or n > c.nlines:
            return 3
        n += 1
        prev = idx
        idx = c.lines[idx].next
    if n != c.nlines or c.lru_tail != prev:
        return 3
    for i in range(c.nlines):
        if _find(c, c.lines[i].key) != i:
            return 4
        if not bit_test(pool.held, c.lines[i].key // c.per_frame) or bit_test(
                pool.orphan, c.lines[i].key // c.per_frame):
            return 5
        if c.lines[i].flags & LINE_DIRTY:
            dirty += 1
    if dirty != c.ndirty:
        return 6
    for i in range(c.by_frame.mask + 1 if c.by_frame.mask else 0):
        if c.by_frame.keys[i]:
            fl = _fl(&c.by_frame, i)
            if fl.count == 0 or fl.count != <uint64_t>(
                    __builtin_popcountll(fl.bits[0]) + __builtin_popcountll(fl.bits[1])
                    + __builtin_popcountll(fl.bits[2]) + __builtin_popcountll(fl.bits[3])):
                return 7
            for j in range(c.per_frame):
                if (fl.bits[j >> 6] >> (j & 63)) & 1 and _find(
                        c, (c.by_frame.keys[i] - 1) * c.per_frame + j) == NIL:
                    return 7
            per += fl.count
    if per != c.nlines:
        return 7
    return 0
