"""Physical memory as devices see it (see _physmem.pxd): what device models and DMA read and
write at physical addresses, pins that keep frames out of the allocator while a view of them
is exported, and the Python-level bodies of Kernel.phys_read, phys_write and phys_view."""

cimport cython
from cpython.buffer cimport PyBUF_FORMAT, PyBuffer_Release, PyObject_CheckBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.number cimport PyNumber_Index
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memmove, memset

from vmo._args cimport arg_buffer, arg_u64
from vmo._cache cimport cache_device
from vmo._frames cimport (FRAME_SIZE, bit_test, frame_pool, pool_destroy, pool_frame_of,
                          pool_frame_ptr, pool_mark_dirty, pool_pin, pool_unpin)
from vmo._state cimport LONG_BYTES, ks_enter, ks_leave, ks_wait, ks_wait_idle
from vmo._status cimport ERR_BAD_STATE, ERR_OUT_OF_RANGE, NO_ERROR, PAGE_MASK, PAGE_SHIFT

from vmo.errors import MxError, Status

cdef uint8_t _EMPTY_VIEW_BYTE = 0


@cython.final
@cython.no_gc_clear
cdef class PhysView:
    """The exporter behind `Kernel.phys_view`: pins its frames until the last buffer taken
    from it is released (bitarray's `ob_exports` rule: no freeing under a live export)."""

    def __getbuffer__(self, Py_buffer *buf, int flags):
        buf.buf = self.ptr
        buf.len = self.shape[0]
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = NULL
        if flags & PyBUF_FORMAT:
            buf.format = b"B"
        buf.ndim = 1
        buf.shape = self.shape
        buf.strides = self.strides
        buf.suboffsets = NULL
        buf.internal = NULL
        buf.obj = self

    def __releasebuffer__(self, Py_buffer *buf):
        pass

    @property
    def address(self):
        """The host address of the view's first byte (vmo.Pin.address)."""
        return <uintptr_t>self.ptr

    def __dealloc__(self):
        # no_gc_clear: `owner` is still set here, so `ks` still points into a live kernel.
        # A thread may own the kernel (working without the GIL): unpin after it is done.
        if self.owner is not None:
            ks_wait_idle(self.ks)
            if self.on_release != NULL:
                self.on_release(self.owner, self.session, self.number, self.paddr, self.ptr,
                                <uint64_t>self.shape[0])
            phys_unpin(self.ks, self.first, self.count)
            self.ks = NULL
            self.owner = None


# -- C level ----------------------------------------------------------------------------------
cdef int phys_range(kernel_state *ks, uint64_t paddr, uint64_t length, uint64_t *first,
                    uint64_t *count) noexcept nogil:
    """Validate a physical range for device access: inside one arena of physical memory
    (ERR_OUT_OF_RANGE) with every page it touches held by a VMO (ERR_BAD_STATE); gives
    its first frame and the number of frames it touches. O(frames)."""
    cdef frame_pool *pool = &ks.pool
    cdef uint64_t region_end, f, last
    if not pool_frame_of(pool, paddr, first, &region_end):
        # A zero-length range may sit at the very end of an arena.
        if length == 0 and paddr > 0 and pool_frame_of(pool, paddr - 1, first, &region_end):
            if paddr == region_end:
                count[0] = 0
                return NO_ERROR
        return ERR_OUT_OF_RANGE
    if length > region_end - paddr:
        return ERR_OUT_OF_RANGE
    if length == 0:
        count[0] = 0
        return NO_ERROR
    last = first[0] + ((paddr + length - 1 - (paddr & ~(<uint64_t>PAGE_MASK))) >> PAGE_SHIFT)
    count[0] = last - first[0] + 1
    for f in range(first[0], last + 1):
        if not bit_test(pool.held, f) or bit_test(pool.orphan, f):
            return ERR_BAD_STATE
    return NO_ERROR


cdef int phys_read(kernel_state *ks, uint64_t paddr, void *dst,
                   uint64_t length) noexcept nogil:
    """Device read of physical memory into `dst`: ERR_OUT_OF_RANGE, ERR_BAD_STATE."""
    cdef frame_pool *pool = &ks.pool
    cdef uint64_t first = 0, count = 0, f, pos, chunk
    cdef uint8_t *out = <uint8_t *>dst
    cdef int status = phys_range(ks, paddr, length, &first, &count)
    if status:
        return status
    if ks.cache != NULL:
        cache_device(ks.cache, pool, first, paddr, length, False)
    pos = paddr
    for f in range(first, first + count):
        chunk = FRAME_SIZE - (pos & PAGE_MASK)
        if chunk > paddr + length - pos:
            chunk = paddr + length - pos
        if bit_test(pool.dirty, f):
            memcpy(out, pool_frame_ptr(pool, <uint32_t>f) + (pos & PAGE_MASK), chunk)
        else:
            memset(out, 0, chunk)
        out += chunk
        pos += chunk
    return NO_ERROR


cdef int phys_write(kernel_state *ks, uint64_t paddr, const void *src,
                    uint64_t length) noexcept nogil:
    """Device write of `src` to physical memory: ERR_OUT_OF_RANGE, ERR_BAD_STATE."""
    cdef uint64_t first = 0, count = 0, f
    cdef int status = phys_range(ks, paddr, length, &first, &count)
    if status:
        return status
    for f in range(first, first + count):
        pool_mark_dirty(&ks.pool, <uint32_t>f)
    if length:
        # memmove: `src` may itself be a view of physical memory.
        memmove(pool_frame_ptr(&ks.pool, <uint32_t>first) + (paddr & PAGE_MASK), src, length)
    if ks.cache != NULL:
        cache_device(ks.cache, &ks.pool, first, paddr, length, True)
    return NO_ERROR


cdef void phys_pin(kernel_state *ks, uint64_t first, uint64_t count) noexcept nogil:
    """Pin frames for a view; whatever the device writes through it is not seen by the dirty
    bits, so they count as written."""
    cdef uint64_t f
    for f in range(first, first + count):
        pool_pin(&ks.pool, <uint32_t>f)
        pool_mark_dirty(&ks.pool, <uint32_t>f)


cdef void phys_unpin(kernel_state *ks, uint64_t first, uint64_t count) noexcept nogil:
    """Unpin a view's frames; the last pin of a closed kernel gives the arena back."""
    cdef uint64_t f
    for f in range(first, first + count):
        pool_unpin(&ks.pool, <uint32_t>f)
    if ks.closed and ks.pool.npinned == 0 and ks.pool.mem != NULL:
        pool_destroy(&ks.pool)


cdef int phys_host(kernel_state *ks, uint64_t paddr, uint64_t length,
                   void **host) noexcept nogil:
    """The host address of the byte at `paddr` after phys_range's checks (NULL for an
    empty range, or on failure): ERR_OUT_OF_RANGE, ERR_BAD_STATE."""
    cdef uint64_t first = 0, count = 0
    cdef int status = phys_range(ks, paddr, length, &first, &count)
    host[0] = NULL
    if status == NO_ERROR and count:
        host[0] = pool_frame_ptr(&ks.pool, <uint32_t>first) + (paddr & PAGE_MASK)
    return status


cdef int phys_pin_range(kernel_state *ks, uint64_t paddr, uint64_t length,
                        void **host) noexcept nogil:
    """KernelCore.c_pin: phys_host, then pin the frames (as a view does)."""
    cdef uint64_t first = 0, count = 0
    cdef int status = phys_range(ks, paddr, length, &first, &count)
    host[0] = NULL
    if status:
        return status
    if count:
        host[0] = pool_frame_ptr(&ks.pool, <uint32_t>first) + (paddr & PAGE_MASK)
        phys_pin(ks, first, count)
    return NO_ERROR


cdef int phys_unpin_range(kernel_state *ks, uint64_t paddr, uint64_t length) noexcept nogil:
    """KernelCore.c_unpin: the range must lie in one arena (ERR_OUT_OF_RANGE) and every
    frame it touches be pinned (ERR_BAD_STATE: nothing is unpinned); then one pin of each
    goes (a frame its VMO let go of is freed with its last pin)."""
    cdef frame_pool *pool = &ks.pool
    cdef uint64_t first = 0, region_end = 0, count, f
    if not pool_frame_of(pool, paddr, &first, &region_end) or length > region_end - paddr:
        return ERR_OUT_OF_RANGE
    if length == 0:
        return NO_ERROR
    count = ((paddr & PAGE_MASK) + length - 1) // FRAME_SIZE + 1
    for f in range(first, first + count):
        if pool.pincount[f] == 0:
            return ERR_BAD_STATE
    phys_unpin(ks, first, count)
    return NO_ERROR


# -- the Python-level calls (raising MxError) -------------------------------------------------
cdef int _args(object paddr, object length, uint64_t *c_paddr, uint64_t *c_length) except -1:
    """Convert phys_* arguments, raising MxError: a negative length is ERR_INVALID_ARGS,
    any address or length that cannot lie inside physical memory ERR_OUT_OF_RANGE."""
    paddr = PyNumber_Index(paddr)
    length = PyNumber_Index(length)
    if length < 0:
        raise MxError(Status.ERR_INVALID_ARGS, "negative length")
    if arg_u64(paddr, c_paddr) or arg_u64(length, c_length):
        raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
    return 0


cdef int _check(int status) except -1:
    if status == ERR_OUT_OF_RANGE:
        raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
    if status == ERR_BAD_STATE:
        raise MxError(Status.ERR_BAD_STATE, "a page of the range is not held by any VMO")
    if status:
        raise MxError(Status(status))
    return 0


# Device access behind the ownership protocol (docs/semantics.md "Threads"), shared by the
# Python calls below, the C-level API and the recorder: wait for any owner; an access longer
# than LONG_BYTES owns the kernel and runs without the GIL.
cdef int phys_read_owned(kernel_state *ks, uint64_t paddr, void *dst,
                         uint64_t length) except -1000:
    cdef int status
    if ks.busy:
        ks_wait(ks)
    if length > LONG_BYTES:
        ks_enter(ks)
        with nogil:
            status = phys_read(ks, paddr, dst, length)
        ks_leave(ks)
        return status
    return phys_read(ks, paddr, dst, length)


cdef int phys_write_owned(kernel_state *ks, uint64_t paddr, const void *src,
                          uint64_t length) except -1000:
    cdef int status
    if ks.busy:
        ks_wait(ks)
    if length > LONG_BYTES:
        ks_enter(ks)
        with nogil:
            status = phys_write(ks, paddr, src, length)
        ks_leave(ks)
        return status
    return phys_write(ks, paddr, src, length)


cdef bytes phys_read_bytes(kernel_state *ks, object paddr, object length):
    """Kernel.phys_read after the open check: `length` bytes at `paddr`."""
    cdef uint64_t c_paddr, c_length, first = 0, count = 0
    cdef char *dst
    _args(paddr, length, &c_paddr, &c_length)
    if ks.busy:
        ks_wait(ks)
    # The range first: a huge length is ERR_OUT_OF_RANGE, not a huge allocation.
    _check(phys_range(ks, c_paddr, c_length, &first, &count))
    data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>c_length)
    dst = PyBytes_AS_STRING(data)
    # The allocation may have let another thread run: phys_read_owned waits for it.
    _check(phys_read_owned(ks, c_paddr, dst, c_length))
    return data


cdef Py_ssize_t phys_write_buffer(kernel_state *ks, object paddr, object data) except -1:
    """Kernel.phys_write after the open check: `data` (any plain contiguous buffer) at
    `paddr`; returns the number of bytes written."""
    cdef uint64_t c_paddr, c_length
    cdef Py_buffer view
    paddr = PyNumber_Index(paddr)
    if not PyObject_CheckBuffer(data):
        raise TypeError("a bytes-like object is required, not %r" % type(data).__name__)
    if arg_buffer(data, &view, False):
        raise MxError(Status.ERR_INVALID_ARGS,
                      "the data is not a contiguous buffer of plain bytes")
    try:
        _args(paddr, view.len, &c_paddr, &c_length)
        _check(phys_write_owned(ks, c_paddr, view.buf, c_length))
        return view.len
    finally:
        PyBuffer_Release(&view)


cdef object phys_view_new(object owner, kernel_state *ks, object paddr, object length,
                          view_release_hook hook=NULL, uint64_t session=0, uint64_t number=0):
    """Kernel.phys_view after the open check: a writable memoryview of [paddr, paddr+length)
    whose frames stay pinned while it (or anything exported from it) lives. `hook` (with the
    recording's `session` and the view's `number`) is called when it is released."""
    cdef uint64_t c_paddr, c_length, first = 0, count = 0
    cdef PhysView pv
    _args(paddr, length, &c_paddr, &c_length)
    if c_length > <uint64_t>PY_SSIZE_T_MAX:
        raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
    # The exporter first: making it may run other threads; nothing below does.
    pv = PhysView.__new__(PhysView)
    if ks.busy:
        ks_wait(ks)
    _check(phys_range(ks, c_paddr, c_length, &first, &count))
    pv.owner = owner
    pv.ks = ks
    pv.first = first
    pv.count = count
    # An empty view still exports a valid (never dereferenced) pointer, as bytearray()
    # does: a null one would read as C's null buffer where a buffer is taken.
    pv.ptr = (pool_frame_ptr(&ks.pool, <uint32_t>first) + (c_paddr & PAGE_MASK)
              if count else &_EMPTY_VIEW_BYTE)
    pv.shape[0] = <Py_ssize_t>c_length
    pv.strides[0] = 1
    pv.on_release = hook
    pv.session = session
    pv.number = number
    pv.paddr = c_paddr
    phys_pin(ks, first, count)
    return memoryview(pv)
