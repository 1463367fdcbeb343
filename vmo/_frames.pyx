"""The frame allocator (see _frames.pxd): O(1) per frame, deterministic, lazily populated."""

from libc.errno cimport errno
from posix.unistd cimport _SC_PAGESIZE, sysconf
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc
from libc.string cimport memcpy, memset, strerror

from vmo._arena cimport vmo_arena_map, vmo_arena_release, vmo_arena_unmap


cdef inline uint64_t _bitmap_bytes(uint64_t nbits) noexcept nogil:
    return ((nbits + 63) >> 6) << 3


cdef int pool_init(frame_pool *p, object memory_map) except -1:
    """Reserve the arena and the per-frame arrays for a validated memory map: a list of
    (base, nframes) in allocation order, adjacent ranges already merged. Touches almost
    nothing: the host populates the arrays where they are used."""
    cdef uint64_t nframes = 0, nwords
    cdef uint32_t i
    memset(p, 0, sizeof(frame_pool))
    p.head = NIL
    if len(memory_map) == 0 or len(memory_map) > MAX_ARENAS:
        raise ValueError("a memory map has 1 to %d ranges" % MAX_ARENAS)
    for i, (base, count) in enumerate(memory_map):
        p.arenas[i].base = base
        p.arenas[i].first = nframes
        p.arenas[i].nframes = count
        nframes += count
    p.narenas = len(memory_map)
    if nframes == 0 or nframes > MAX_FRAMES:
        raise ValueError("memory must hold between 1 and %d frames" % MAX_FRAMES)
    p.nframes = nframes
    p.nfree = nframes
    p.host_frames = max(1, sysconf(_SC_PAGESIZE) >> FRAME_SHIFT)
    nwords = (nframes + 63) >> 6
    p.mem = <uint8_t *>vmo_arena_map(nframes << FRAME_SHIFT)
    p.lnext = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    p.lprev = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    p.held = <uint64_t *>vmo_arena_map(_bitmap_bytes(nframes))
    p.dirty = <uint64_t *>vmo_arena_map(_bitmap_bytes(nframes))
    p.pincount = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    p.orphan = <uint64_t *>vmo_arena_map(_bitmap_bytes(nframes))
    p.anyheld = <uint64_t *>vmo_arena_map(_bitmap_bytes(nwords))
    p.fullheld = <uint64_t *>vmo_arena_map(_bitmap_bytes(nwords))
    p.logged = <uint64_t *>vmo_arena_map(_bitmap_bytes(nframes))
    p.log = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    p.bytes_epoch = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    p.entry_epoch = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    p.log_epoch = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    if (p.mem == NULL or p.lnext == NULL or p.lprev == NULL or p.held == NULL
            or p.dirty == NULL or p.pincount == NULL or p.orphan == NULL or p.anyheld == NULL
            or p.fullheld == NULL or p.logged == NULL or p.log == NULL
            or p.bytes_epoch == NULL or p.entry_epoch == NULL or p.log_epoch == NULL):
        err = errno
        pool_destroy(p)
        raise MemoryError("cannot reserve %d bytes of simulated physical memory: %s"
                          % (nframes << FRAME_SHIFT, strerror(err).decode()))
    # The bits past the last frame of the last word count as held, so no search or summary
    # ever sees them as free.
    if nframes & 63:
        p.held[nwords - 1] = ~((<uint64_t>1 << (nframes & 63)) - 1)
        bit_set(p.anyheld, nwords - 1)
    return 0


cdef void pool_destroy(frame_pool *p) noexcept nogil:
    """Give the arena and the arrays back to the host."""
    cdef uint64_t n = p.nframes, nwords = (p.nframes + 63) >> 6
    vmo_arena_unmap(p.log_epoch, n * sizeof(uint32_t))
    vmo_arena_unmap(p.entry_epoch, n * sizeof(uint32_t))
    vmo_arena_unmap(p.bytes_epoch, n * sizeof(uint32_t))
    vmo_arena_unmap(p.log, n * sizeof(uint32_t))
    vmo_arena_unmap(p.logged, _bitmap_bytes(n))
    vmo_arena_unmap(p.fullheld, _bitmap_bytes(nwords))
    vmo_arena_unmap(p.anyheld, _bitmap_bytes(nwords))
    vmo_arena_unmap(p.orphan, _bitmap_bytes(n))
    vmo_arena_unmap(p.pincount, n * sizeof(uint32_t))
    vmo_arena_unmap(p.dirty, _bitmap_bytes(n))
    vmo_arena_unmap(p.held, _bitmap_bytes(n))
    vmo_arena_unmap(p.lprev, n * sizeof(uint32_t))
    vmo_arena_unmap(p.lnext, n * sizeof(uint32_t))
    vmo_arena_unmap(p.mem, n << FRAME_SHIFT)
    memset(p, 0, sizeof(frame_pool))
    p.head = NIL


cdef uint64_t pool_paddr_slow(const frame_pool *p, uint32_t f) noexcept nogil:
    """Physical address of frame `f` in a multi-arena memory map. O(log arenas)."""
    cdef uint32_t lo = 0, hi = p.narenas, mid
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if p.arenas[mid].first <= f:
            lo = mid
        else:
            hi = mid
    return p.arenas[lo].base + ((f - p.arenas[lo].first) << FRAME_SHIFT)


cdef bint pool_frame_of(const frame_pool *p, uint64_t paddr, uint64_t *frame,
                        uint64_t *region_end) noexcept nogil:
    """The frame holding physical address `paddr`, and the end (exclusive physical address)
    of the arena it is in; False if `paddr` is not in physical memory. O(arenas)."""
    cdef uint32_t i
    for i in range(p.narenas):
        if p.arenas[i].base <= paddr and paddr - p.arenas[i].base < (
                p.arenas[i].nframes << FRAME_SHIFT):
            frame[0] = p.arenas[i].first + ((paddr - p.arenas[i].base) >> FRAME_SHIFT)
            region_end[0] = p.arenas[i].base + (p.arenas[i].nframes << FRAME_SHIFT)
            return True
    return False


cdef void pool_zero_frame(frame_pool *p, uint32_t f) noexcept nogil:
    """Zero a written frame before it is handed out again."""
    if p.snap_epoch:
        pool_save_bytes(p, f)
    memset(pool_frame_ptr(p, f), 0, FRAME_SIZE)
    bit_clear(p.dirty, f)
    p.zeroed_frames += 1


cdef void pool_step_fresh(frame_pool *p) noexcept nogil:
    """Move the fresh mark over frames a contiguous run holds above it."""
    while p.held_above and p.next_fresh < p.nframes and bit_test(p.held, p.next_fresh):
        p.next_fresh += 1
        p.held_above -= 1


cdef void _release_run(frame_pool *p, uint64_t lo, uint64_t n) noexcept nogil:
    """Frames [lo, lo+n) were written and are now free: give them back to the host, which
    zeroes them, so they are clean again; if the host refuses, they stay dirty and get
    zeroed on reuse. Only whole host pages go back: the host rounds a release outwards, and
    on a 16 KiB-page host that would wipe neighbouring frames another VMO still holds."""
    cdef uint64_t i, hi = lo + n, hf = p.host_frames
    lo = (lo + hf - 1) // hf * hf
    hi = hi // hf * hf
    if hi <= lo:
        return
    n = hi - lo
    if p.snap_epoch:
        for i in range(lo, lo + n):
            if bit_test(p.dirty, i):
                pool_save_bytes(p, <uint32_t>i)
    if vmo_arena_release(p.mem + (lo << FRAME_SHIFT), n << FRAME_SHIFT) == 0:
        p.released_runs += 1
        i = lo
        while i < lo + n and (i & 63):
            bit_clear(p.dirty, i)
            i += 1
        while i + 64 <= lo + n:
            p.dirty[i >> 6] = 0
            i += 64
        while i < lo + n:
            bit_clear(p.dirty, i)
            i += 1


cdef inline void _free_one(frame_pool *p, uint32_t f) noexcept nogil:
    """Make a held, unpinned frame free: back to the fresh region if it lies above the
    fresh mark (a contiguous run), else on top of the freed list. The caller saved the
    entries it changes (f's and the list head's) for the latest snapshot, and logs f if it
    may hold nonzero bytes: from now on it reads as zero (it is zeroed, or given back to the
    host, before it is handed out again), so its bytes changed (docs/semantics.md)."""
    pool_unhold(p, f)
    p.nfree += 1
    if f >= p.next_fresh:
        p.held_above -= 1
        return
    p.lnext[f] = p.head
    p.lprev[f] = NIL
    if p.head != NIL:
        p.lprev[p.head] = f
    p.head = f
    p.list_len += 1


cdef void _freed_run(frame_pool *p, uint64_t lo, uint64_t n) noexcept nogil:
    """Frames [lo, lo+n) were written and are now free: they enter the dirty log (from now
    on they read as zero: docs/semantics.md "The dirty log"), and a run of at least
    RELEASE_MIN_FRAMES goes back to the host. Out of the freeing loop, which stays as cheap
    for clean frames as without the log."""
    cdef uint64_t f
    for f in range(lo, lo + n):
        pool_log_saved(p, <uint32_t>f)
    if n >= RELEASE_MIN_FRAMES:
        _release_run(p, lo, n)


cdef void pool_give(frame_pool *p, const uint32_t *frames, uint64_t n) noexcept nogil:
    """Free `n` held frames in the order given (the last one is reused first). A pinned
    frame is not freed: it waits, orphaned, for its last pin to go (pool_unpin frees it).

    Written frames that form runs of consecutive frame numbers (ascending or descending) of
    at least RELEASE_MIN_FRAMES go back to the host at once; every written frame freed
    enters the dirty log. Cost: O(n) plus one madvise per long run.
    """
    cdef uint64_t i, f, lo = 0, hi = 0
    cdef bint in_run = False
    if p.forget != NULL:
        for i in range(n):
            p.forget(p.forget_ctx, frames[i])
    if p.snap_epoch:
        _save_give(p, frames, n)
    for i in range(n):
        f = frames[i]
        c_assert(f < p.nframes and bit_test(p.held, f) and not bit_test(p.orphan, f))
        if p.pincount[f]:
            bit_set(p.orphan, f)
            continue
        _free_one(p, <uint32_t>f)
        if not bit_test(p.dirty, f):
            continue
        if in_run and (f == hi + 1 or f + 1 == lo):
            if f < lo:
                lo = f
            else:
                hi = f
            continue
        if in_run:
            _freed_run(p, lo, hi - lo + 1)
        in_run = True
        lo = f
        hi = f
    if in_run:
        _freed_run(p, lo, hi - lo + 1)


cdef void pool_pin(frame_pool *p, uint32_t f) noexcept nogil:
    """One more live view over held frame `f`: it will not be freed until unpinned."""
    c_assert(bit_test(p.held, f))
    if p.snap_epoch:
        pool_save_entry(p, f)
    if p.pincount[f] == 0:
        p.npinned += 1
    p.pincount[f] += 1


cdef void pool_unpin(frame_pool *p, uint32_t f) noexcept nogil:
    """A view over `f` went. At the last one, a frame its VMO let go of meanwhile is freed
    now (it was written through the view, so it is zeroed before reuse)."""
    c_assert(p.pincount[f] > 0)
    if p.snap_epoch:
        pool_save_entry(p, f)
    p.pincount[f] -= 1
    if p.pincount[f]:
        return
    p.npinned -= 1
    if bit_test(p.orphan, f):
        if p.snap_epoch and f < p.next_fresh and p.head != NIL:
            pool_save_entry(p, p.head)
        bit_clear(p.orphan, f)
        _free_one(p, f)
        if bit_test(p.dirty, f):
            pool_log(p, f)


# -- snapshots: saving pre-images (vmo/_snapshot.pyx restores them) ------------------------

cdef bint snap_grow(void **arr, uint64_t *cap, uint64_t n, size_t elem) noexcept nogil:
    """Room for one more element after `n` in the growable array `arr[0]` of capacity
    `cap[0]` (doubling, overflow-checked); False if the host refuses."""
    cdef uint64_t newcap
    cdef void *grown
    if n < cap[0]:
        return True
    newcap = cap[0] * 2 if cap[0] else 64
    if newcap > (<uint64_t>-1) // elem // 2:
        return False
    grown = realloc(arr[0], newcap * elem)
    if grown == NULL:
        return False
    arr[0] = grown
    cap[0] = newcap
    return True


cdef void pool_save_bytes(frame_pool *p, uint32_t f) noexcept nogil:
    """Frame `f`'s bytes are about to change: if this is their first change since the
    latest snapshot, save them (and the dirty bit) into its store. A frame whose dirty bit
    is clear is all zeros: nothing is copied. O(1), a 4 KiB copy at most."""
    cdef snap_store *s = p.snap
    cdef snap_bytes *b
    cdef uint8_t *data = NULL
    if p.bytes_epoch[f] >= p.snap_epoch:
        return
    p.bytes_epoch[f] = p.snap_epoch
    if not snap_grow(<void **>&s.bytes, &s.capbytes, s.nbytes, sizeof(snap_bytes)):
        s.lost = True
        return
    if bit_test(p.dirty, f):
        data = <uint8_t *>malloc(FRAME_SIZE)
        if data == NULL:
            s.lost = True
            return
        memcpy(data, pool_frame_ptr(p, f), FRAME_SIZE)
    b = &s.bytes[s.nbytes]
    b.frame = f
    b.dirty = bit_test(p.dirty, f)
    b.data = data
    s.nbytes += 1


cdef void pool_save_entry(frame_pool *p, uint32_t f) noexcept nogil:
    """Frame `f`'s allocator entry (list links, held and orphan bits, pins) is about to
    change: save it on its first change since the latest snapshot. O(1)."""
    cdef snap_store *s = p.snap
    cdef snap_entry *e
    if p.entry_epoch[f] >= p.snap_epoch:
        return
    p.entry_epoch[f] = p.snap_epoch
    if not snap_grow(<void **>&s.entries, &s.capentries, s.nentries, sizeof(snap_entry)):
        s.lost = True
        return
    e = &s.entries[s.nentries]
    e.frame = f
    e.lnext = p.lnext[f]
    e.lprev = p.lprev[f]
    e.pincount = p.pincount[f]
    e.held = bit_test(p.held, f)
    e.orphan = bit_test(p.orphan, f)
    s.nentries += 1


cdef void pool_save_logged(frame_pool *p, uint32_t f) noexcept nogil:
    """Frame `f` entered the dirty log: note it once in the latest snapshot's store, so a
    restore logs it again (its bytes change back). O(1)."""
    cdef snap_store *s = p.snap
    if p.log_epoch[f] >= p.snap_epoch:
        return
    p.log_epoch[f] = p.snap_epoch
    if not snap_grow(<void **>&s.logged, &s.caplogged, s.nlogged, sizeof(uint32_t)):
        s.lost = True
        return
    s.logged[s.nlogged] = f
    s.nlogged += 1


cdef void _save_give(frame_pool *p, const uint32_t *frames, uint64_t n) noexcept nogil:
    """pool_give is about to free `frames`: save the entries it changes (each frame's, and
    the freed list's head, whose back link changes) and note the frames it logs."""
    cdef uint64_t i
    if p.head != NIL:
        pool_save_entry(p, p.head)
    for i in range(n):
        pool_save_entry(p, frames[i])
        if bit_test(p.dirty, frames[i]) and not p.pincount[frames[i]]:
            pool_save_logged(p, frames[i])


cdef void pool_save_takes(frame_pool *p, uint64_t n) noexcept nogil:
    """`n` pool_take_saved calls follow: save the entries they change (the top n + 1 of the
    freed list, and the fresh frames they may step over). O(n + frames held above)."""
    cdef uint32_t f = p.head
    cdef uint64_t i = 0, end
    while f != NIL and i <= n:
        pool_save_entry(p, f)
        f = p.lnext[f]
        i += 1
    if i > n:
        return
    end = p.next_fresh + (n - i) + p.held_above + 1
    if end > p.nframes:
        end = p.nframes
    for i in range(p.next_fresh, end):
        pool_save_entry(p, <uint32_t>i)


cdef void pool_save_take(frame_pool *p) noexcept nogil:
    """pool_take is about to change the entries of the frame it hands out and of the one
    below it on the freed list (or of the lowest fresh frame)."""
    cdef uint32_t nxt
    if p.head != NIL:
        pool_save_entry(p, p.head)
        nxt = p.lnext[p.head]
        if nxt != NIL:
            pool_save_entry(p, nxt)
    elif p.next_fresh < p.nframes:
        pool_save_entry(p, <uint32_t>p.next_fresh)


# -- contiguous runs --------------------------------------------------------------------------

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil
    int __builtin_clzll(unsigned long long x) nogil
    ctypedef unsigned long long u128 "unsigned __int128"


cdef uint64_t _next_bit(const uint64_t *bits, uint64_t i, uint64_t end, bint want) noexcept nogil:
    """First index in [i, end) whose bit equals `want`, or `end`. A word at a time."""
    cdef uint64_t w, word
    while i < end:
        word = bits[i >> 6]
        if not want:
            word = ~word
        word &= ~((<uint64_t>1 << (i & 63)) - 1)
        if word:
            w = (i & ~(<uint64_t>63)) + <uint64_t>__builtin_ctzll(word)
            return w if w < end else end
        i = (i & ~(<uint64_t>63)) + 64
    return end


cdef uint64_t _next_frame(const frame_pool *p, uint64_t f, uint64_t end, bint held) noexcept nogil:
    """First frame in [f, end) that is held (`held` True) or free (False); words that cannot
    hold one are skipped through their summary (anyheld / fullheld), 4096 frames per step."""
    cdef uint64_t w, wend, r
    cdef const uint64_t *summary = p.anyheld if held else p.fullheld
    while f < end:
        if f & 63 == 0:
            w = _next_bit(summary, f >> 6, (end + 63) >> 6, held)
            if (w << 6) >= end:
                return end
            if (w << 6) > f:
                f = w << 6
        wend = (f | 63) + 1
        if wend > end:
            wend = end
        r = _next_bit(p.held, f, wend, held)
        if r < wend:
            return r
        f = wend
    return end


cdef inline uint64_t _next_free(const frame_pool *p, uint64_t f, uint64_t end) noexcept nogil:
    return _next_frame(p, f, end, False)


cdef inline uint64_t _next_held(const frame_pool *p, uint64_t f, uint64_t end) noexcept nogil:
    return _next_frame(p, f, end, True)


cdef inline uint64_t _align_up_frame(const arena_t *a, uint64_t f, uint64_t align) noexcept nogil:
    """Smallest frame >= f of arena `a` whose physical address is a multiple of `align`."""
    cdef uint64_t paddr = a.base + ((f - a.first) << FRAME_SHIFT)
    cdef uint64_t rem = paddr & (align - 1)
    if rem == 0:
        return f
    if align - rem > (a.first + a.nframes - f) << FRAME_SHIFT:
        return a.first + a.nframes
    return f + ((align - rem) >> FRAME_SHIFT)


cdef inline uint64_t _free_bits(const frame_pool *p, uint64_t w, uint64_t lo,
                                uint64_t hi) noexcept nogil:
    """The free frames of word `w` as bits, limited to frames [lo, hi)."""
    cdef uint64_t bits, first = w << 6
    if first >= hi or first + 64 <= lo:
        return 0
    bits = ~p.held[w]
    if lo > first:
        bits &= ~((<uint64_t>1 << (lo - first)) - 1)
    if hi < first + 64:
        bits &= (<uint64_t>1 << (hi - first)) - 1
    return bits


cdef long long _find_short(const frame_pool *p, const arena_t *a, uint64_t count,
                           uint64_t align) noexcept nogil:
    """First fit for count <= 64 frames: every word is tested for all its run starts at
    once (free bits ANDed with themselves shifted, log2(count) steps over a 128-bit window
    of two words); fully held words are skipped through the summary."""
    cdef uint64_t end = a.first + a.nframes, w, wlast, lo, hi, cand, mask = 0, i
    cdef uint64_t af = align >> FRAME_SHIFT, r
    cdef u128 window, m
    cdef uint64_t length
    cdef uint64_t s, h
    if af >= 64:
        # Few candidates: one per alignment step, each checked over at most two words.
        s = _align_up_frame(a, a.first, align)
        while s < end and end - s >= count:
            h = _next_held(p, s, s + count)
            if h == s + count:
                return <long long>s
            s = _next_free(p, h, end)
            if s >= end:
                break
            s = _align_up_frame(a, s, align)
        return -1
    # Aligned start positions repeat with period af (which divides 64) in every word.
    r = (a.first - (a.base >> FRAME_SHIFT)) & (af - 1)
    i = r
    while i < 64:
        mask |= (<uint64_t>1) << i
        i += af
    w = a.first >> 6
    wlast = (end - 1) >> 6
    while w <= wlast:
        if bit_test(p.fullheld, w):
            w = _next_bit(p.fullheld, w, wlast + 1, False)
            continue
        lo = _free_bits(p, w, a.first, end)
        hi = _free_bits(p, w + 1, a.first, end) if w < wlast else 0
        window = ((<u128>hi) << 64) | lo
        m = window
        length = 1
        while length * 2 <= count:
            m &= m >> length
            length *= 2
        if length < count:
            m &= m >> (count - length)
        cand = (<uint64_t>m) & mask
        if cand:
            return <long long>((w << 6) + <uint64_t>__builtin_ctzll(cand))
        w += 1
    return -1


cdef long long _find_long(const frame_pool *p, const arena_t *a, uint64_t count,
                          uint64_t align) noexcept nogil:
    """First fit for count > 64 frames: such a run starts in the free tail of some word
    and runs on through whole free words, so each word is looked at once (its tail), and
    whole free or whole held words are skipped through the summaries."""
    cdef uint64_t end = a.first + a.nframes, w, wlast, bits, tail, start, e, s
    w = a.first >> 6
    wlast = (end - 1) >> 6
    while w <= wlast:
        if bit_test(p.fullheld, w):
            w = _next_bit(p.fullheld, w, wlast + 1, False)
            continue
        bits = _free_bits(p, w, a.first, end)
        tail = 64 if bits == 0xFFFFFFFFFFFFFFFFULL else <uint64_t>__builtin_clzll(~bits)
        if tail == 0:
            w += 1
            continue
        start = (w << 6) + 64 - tail
        e = _next_held(p, (w << 6) + 64, end) if (w << 6) + 64 < end else end
        s = _align_up_frame(a, start, align)
        if s < e and e - s >= count:
            return <long long>s
        if e >= end:
            break
        w = e >> 6
    return -1


cdef long long pool_find_run(const frame_pool *p, uint64_t count,
                             uint64_t align) noexcept nogil:
    """First fit: the lowest frame (arenas in order) starting `count` free frames in one
    arena, at a physical address that is a multiple of `align` (a power of two >= 4096).
    Returns it, or -1. Cost: at most one look at each 64-frame word of memory, with fully
    held words skipped 4096 frames at a time through the summaries (and whole free words
    too for long runs); never a look at each frame."""
    cdef uint32_t ai
    cdef long long found
    cdef const arena_t *a
    for ai in range(p.narenas):
        a = &p.arenas[ai]
        if count > a.nframes:
            continue
        if count <= 64:
            found = _find_short(p, a, count, align)
        else:
            found = _find_long(p, a, count, align)
        if found >= 0:
            return found
    return -1


cdef void pool_take_run(frame_pool *p, uint64_t first, uint64_t count) noexcept nogil:
    """Take the free frames [first, first+count) out of the pool (the freed list keeps the
    order of the rest; fresh frames above the mark are stepped over later). O(count)."""
    cdef uint64_t f
    cdef uint32_t nx, pv
    if p.snap_epoch:
        for f in range(first, first + count):
            pool_save_entry(p, <uint32_t>f)
            if f < p.next_fresh:
                if p.lnext[f] != NIL:
                    pool_save_entry(p, p.lnext[f])
                if p.lprev[f] != NIL:
                    pool_save_entry(p, p.lprev[f])
    for f in range(first, first + count):
        if f < p.next_fresh:
            nx = p.lnext[f]
            pv = p.lprev[f]
            if pv != NIL:
                p.lnext[pv] = nx
            else:
                p.head = nx
            if nx != NIL:
                p.lprev[nx] = pv
            p.list_len -= 1
        else:
            p.held_above += 1
        pool_zero_if_dirty(p, <uint32_t>f)
        pool_hold(p, f)
        p.nfree -= 1
    pool_step_fresh(p)


cdef class _FramePoolShim:
    """Test shim: a private frame pool driven from Python (tests/test_internals.py)."""
    cdef frame_pool pool

    def __cinit__(self, nframes, uint64_t paddr_base=0x100000, memory_map=None):
        self.pool.mem = NULL
        if memory_map is None:
            memory_map = [(paddr_base, nframes)]
        pool_init(&self.pool, memory_map)

    def __dealloc__(self):
        pool_destroy(&self.pool)

    def _held(self, uint64_t f):
        if f >= self.pool.nframes or not bit_test(self.pool.held, f) or bit_test(
                self.pool.orphan, f):
            raise ValueError("frame %d is not held" % f)

    def take(self):
        """A frame number, or -1 when none is free."""
        if pool_free_count(&self.pool) == 0:
            return -1
        return pool_take(&self.pool)

    def give(self, frames):
        cdef uint32_t f
        for f in frames:
            self._held(f)
            pool_give(&self.pool, &f, 1)

    def give_batch(self, frames):
        cdef uint32_t buf[512]
        cdef Py_ssize_t i, n = len(frames)
        if n > 512 or len(set(frames)) != n:
            raise ValueError("at most 512 distinct frames")
        for i in range(n):
            self._held(frames[i])
            buf[i] = frames[i]
        pool_give(&self.pool, buf, n)

    def find_run(self, uint64_t count, uint64_t align=4096):
        if count == 0 or align < 4096 or align & (align - 1):
            raise ValueError("bad run")
        return pool_find_run(&self.pool, count, align)

    def take_run(self, uint64_t count, uint64_t align=4096):
        """First frame of a contiguous run now held, or -1."""
        first = self.find_run(count, align)
        if first >= 0:
            pool_take_run(&self.pool, first, count)
        return first

    def pin(self, uint32_t f):
        self._held(f)
        pool_pin(&self.pool, f)

    def unpin(self, uint32_t f):
        if f >= self.pool.nframes or self.pool.pincount[f] == 0:
            raise ValueError("frame %d is not pinned" % f)
        pool_unpin(&self.pool, f)

    def write(self, uint32_t f, uint64_t offset, bytes data):
        self._held(f)
        if offset + len(data) > FRAME_SIZE:
            raise ValueError("past the frame")
        pool_mark_dirty(&self.pool, f)
        memcpy(pool_frame_ptr(&self.pool, f) + offset, <const char *>data, len(data))

    def read(self, uint32_t f):
        if f >= self.pool.nframes:
            raise ValueError("no such frame")
        return (<char *>pool_frame_ptr(&self.pool, f))[:FRAME_SIZE]

    def paddr(self, uint32_t f):
        if f >= self.pool.nframes:
            raise ValueError("no such frame")
        return pool_paddr(&self.pool, f)

    def held(self, uint32_t f):
        return f < self.pool.nframes and bit_test(self.pool.held, f)

    def dirty(self, uint32_t f):
        return f < self.pool.nframes and bit_test(self.pool.dirty, f)

    def orphan(self, uint32_t f):
        return f < self.pool.nframes and bit_test(self.pool.orphan, f)

    @property
    def free_count(self):
        return pool_free_count(&self.pool)

    @property
    def next_fresh(self):
        return self.pool.next_fresh

    @property
    def stack(self):
        """The freed list, bottom first (the last element is reused first)."""
        return pool_list(&self.pool)

    @property
    def released_runs(self):
        return self.pool.released_runs

    @property
    def zeroed_frames(self):
        return self.pool.zeroed_frames


cdef list pool_list(const frame_pool *p):
    """The freed list as a Python list, bottom first."""
    cdef uint32_t f = p.head
    out = []
    while f != NIL:
        out.append(f)
        f = p.lnext[f]
    out.reverse()
    return out
