# cython: freethreading_compatible = False
"""The frame allocator (see _frames.pxd): O(1) per frame, deterministic, lazily populated."""

from libc.errno cimport errno
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, strerror

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


cdef class _FramePoolShim:
    """Test shim: a private frame pool driven from Python (tests/test_internals.py)."""
    cdef frame_pool pool

    def __cinit__(self, uint64_t nframes, uint64_t paddr_base=0x100000):
        self.pool.mem = NULL
        pool_init(&self.pool, nframes, paddr_base)

    def __dealloc__(self):
        pool_destroy(&self.pool)

    def take(self):
        """A frame number, or -1 when none is free."""
        if pool_free_count(&self.pool) == 0:
            return -1
        return pool_take(&self.pool)

    def give(self, frames):
        cdef uint32_t f
        for f in frames:
            if f >= self.pool.next_fresh or not bit_test(self.pool.held, f):
                raise ValueError("frame %d is not held" % f)
            pool_give(&self.pool, &f, 1)

    def give_batch(self, frames):
        cdef uint32_t buf[512]
        cdef Py_ssize_t i, n = len(frames)
        if n > 512 or len(set(frames)) != n:
            raise ValueError("at most 512 distinct frames")
        for i in range(n):
            buf[i] = frames[i]
            if buf[i] >= self.pool.next_fresh or not bit_test(self.pool.held, buf[i]):
                raise ValueError("frame %d is not held" % buf[i])
        pool_give(&self.pool, buf, n)

    def write(self, uint32_t f, uint64_t offset, bytes data):
        if f >= self.pool.next_fresh or not bit_test(self.pool.held, f):
            raise ValueError("frame %d is not held" % f)
        if offset + len(data) > FRAME_SIZE:
            raise ValueError("past the frame")
        pool_mark_dirty(&self.pool, f)
        memcpy(pool_frame_ptr(&self.pool, f) + offset, <const char *>data, len(data))

    def read(self, uint32_t f):
        if f >= self.pool.nframes:
            raise ValueError("no such frame")
        return (<char *>pool_frame_ptr(&self.pool, f))[:FRAME_SIZE]

    def held(self, uint32_t f):
        return f < self.pool.nframes and bit_test(self.pool.held, f)

    def dirty(self, uint32_t f):
        return f < self.pool.nframes and bit_test(self.pool.dirty, f)

    @property
    def free_count(self):
        return pool_free_count(&self.pool)

    @property
    def next_fresh(self):
        return self.pool.next_fresh

    @property
    def stack(self):
        cdef uint64_t i
        return [self.pool.stack[i] for i in range(self.pool.stack_len)]

    @property
    def released_runs(self):
        return self.pool.released_runs

    @property
    def zeroed_frames(self):
        return self.pool.zeroed_frames
