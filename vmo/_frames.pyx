# cython: freethreading_compatible = False
"""The frame allocator (see _frames.pxd): O(1) per frame, deterministic, lazily populated."""

from libc.errno cimport errno
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport strerror

from vmo._arena cimport vmo_arena_map, vmo_arena_release, vmo_arena_unmap


cdef inline uint64_t _bitmap_bytes(uint64_t nframes) noexcept nogil:
    return ((nframes + 63) >> 6) << 3


cdef int pool_init(frame_pool *p, uint64_t nframes, uint64_t paddr_base) except -1:
    """Reserve the arena and the per-frame arrays for `nframes` frames; touches none."""
    p.mem = NULL
    p.stack = NULL
    p.held = NULL
    p.dirty = NULL
    p.nframes = nframes
    p.paddr_base = paddr_base
    p.next_fresh = 0
    p.stack_len = 0
    p.released_runs = 0
    p.zeroed_frames = 0
    if nframes == 0 or nframes > MAX_FRAMES:
        raise ValueError("memory must hold between 1 and %d frames" % MAX_FRAMES)
    p.mem = <uint8_t *>vmo_arena_map(nframes << FRAME_SHIFT)
    if p.mem != NULL:
        p.stack = <uint32_t *>vmo_arena_map(nframes * sizeof(uint32_t))
    if p.stack != NULL:
        p.held = <uint64_t *>vmo_arena_map(_bitmap_bytes(nframes))
    if p.held != NULL:
        p.dirty = <uint64_t *>vmo_arena_map(_bitmap_bytes(nframes))
    if p.dirty == NULL:
        err = errno
        pool_destroy(p)
        raise MemoryError("cannot reserve %d bytes of simulated physical memory: %s"
                          % (nframes << FRAME_SHIFT, strerror(err).decode()))
    return 0


cdef void pool_destroy(frame_pool *p) noexcept nogil:
    """Give the arena and the arrays back to the host."""
    vmo_arena_unmap(p.dirty, _bitmap_bytes(p.nframes))
    vmo_arena_unmap(p.held, _bitmap_bytes(p.nframes))
    vmo_arena_unmap(p.stack, p.nframes * sizeof(uint32_t))
    vmo_arena_unmap(p.mem, p.nframes << FRAME_SHIFT)
    p.mem = NULL
    p.stack = NULL
    p.held = NULL
    p.dirty = NULL
    p.nframes = 0
    p.next_fresh = 0
    p.stack_len = 0


cdef void _release_run(frame_pool *p, uint64_t lo, uint64_t n) noexcept nogil:
    """Frames [lo, lo+n) were written and are now free: give them back to the host, which
    zeroes them, so they are clean again; if the host refuses, they stay dirty and get
    zeroed on reuse."""
    cdef uint64_t i
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


cdef void pool_give(frame_pool *p, const uint32_t *frames, uint64_t n) noexcept nogil:
    """Free `n` held frames, pushing them in the order given (the last one is reused first).

    Written frames that form runs of consecutive frame numbers (ascending or descending) of
    at least RELEASE_MIN_FRAMES go back to the host at once. Cost: O(n) plus one madvise per
    long run.
    """
    cdef uint64_t i, f, lo = 0, hi = 0
    cdef bint in_run = False
    for i in range(n):
        f = frames[i]
        c_assert(f < p.next_fresh and bit_test(p.held, f))
        bit_clear(p.held, f)
        p.stack[p.stack_len] = <uint32_t>f
        p.stack_len += 1
        c_assert(p.stack_len <= p.next_fresh)
        if not bit_test(p.dirty, f):
            continue
        if in_run and (f == hi + 1 or f + 1 == lo):
            if f < lo:
                lo = f
            else:
                hi = f
            continue
        if in_run and hi - lo + 1 >= RELEASE_MIN_FRAMES:
            _release_run(p, lo, hi - lo + 1)
        in_run = True
        lo = f
        hi = f
    if in_run and hi - lo + 1 >= RELEASE_MIN_FRAMES:
        _release_run(p, lo, hi - lo + 1)
