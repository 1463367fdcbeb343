# Included by _kernelcore.pyx (for the c_* methods) and _kernel.pyx (for the Python syscalls
# and the executor), after _calls.pxi: what a call's record holds (docs/trace-format.md) when
# it is more than the call's arguments and outputs, and the one test of a call's recording
# hook. Each module calls its own static copy, as with _calls.pxi.
#
# The writer is kernel state: a batch run under record() appends to it without the GIL while
# it owns the kernel, so every append made with the GIL follows a busy check with no Python
# code in between (right after a call's core, or after a wait for any owner).

cdef uint64_t lookup_written(const vm_object *v, uint64_t offset, uint64_t size,
                             int status) noexcept nogil:
    """How many entries a LOOKUP that gave `status` wrote (docs/trace-format.md)."""
    cdef uint64_t first = offset >> PAGE_SHIFT, npages, i = 0
    if status == NO_ERROR:
        return (((offset + size + PAGE_MASK) & ~(<uint64_t>PAGE_MASK))
                - (offset & ~(<uint64_t>PAGE_MASK))) >> PAGE_SHIFT
    if status != ERR_NO_MEMORY:
        return 0
    npages = (((offset + size + PAGE_MASK) & ~(<uint64_t>PAGE_MASK))
              - (offset & ~(<uint64_t>PAGE_MASK))) >> PAGE_SHIFT
    while i < npages and vmo_find_page(v, (first + i) << PAGE_SHIFT):
        i += 1
    return i


cdef inline uint64_t _lookup_hash(const vm_object *v, const uint8_t *buf, uint64_t offset,
                                  uint64_t size, int status) noexcept nogil:
    """A LOOKUP record's value: hash64 of the entries the call wrote."""
    if status != NO_ERROR and status != ERR_NO_MEMORY:
        return 0
    return hash64(buf, lookup_written(v, offset, size, status) * 8)


cdef inline uint64_t info_word(const handle_basic_info *info) noexcept nogil:
    """object_get_info's second result: rights, type << 32, props << 48."""
    return info.rights | (<uint64_t>info.type << 32) | (<uint64_t>info.props << 48)


cdef int _rec_append_impl(KernelCore k, uint8_t call, int status, uint16_t flags,
                          uint32_t handle, uint32_t x, uint64_t a, uint64_t b, uint64_t c,
                          uint64_t value) except -1:
    """Append a call's record (the kernel is recording)."""
    tw_put(k._rec, call, status, flags, handle, x, a, b, c, value)
    return 0


cdef int _rec_info_impl(KernelCore k, uint32_t h, uint32_t topic, int status,
                        const handle_basic_info *info) except -1:
    """object_get_info's record: `c` is info_word and the value the koid, when filled."""
    cdef bint filled = status == NO_ERROR and topic == MX_INFO_HANDLE_BASIC
    tw_put(k._rec, CALL_OBJECT_GET_INFO, status, 0, h, topic, 0, 0,
           info_word(info) if filled else 0, info.koid if filled else 0)
    return 0


# Every recording path is called through a pointer (these, and those of _kernelcore.pyx)
# or in another module (_recording.pyx), never directly: GCC inlines a static function
# called from one or a few places, and these would grow the calls that reach them by code
# that runs only while recording, costing the calls' own hot helpers their inlining (the
# per-call rows of `python -m vmo bench` measured it). Through a pointer, a call's code is
# what it is without the recorder, plus one test of `_rec`.
ctypedef int (*_rec_append_fn)(KernelCore, uint8_t, int, uint16_t, uint32_t, uint32_t,
                               uint64_t, uint64_t, uint64_t, uint64_t) except -1
ctypedef int (*_rec_info_fn)(KernelCore, uint32_t, uint32_t, int,
                             const handle_basic_info *) except -1
cdef _rec_append_fn _rec_append = _rec_append_impl
cdef _rec_info_fn _rec_info = _rec_info_impl


cdef inline int _rec_put(KernelCore k, uint8_t call, int status, uint16_t flags,
                         uint32_t handle, uint32_t x, uint64_t a, uint64_t b, uint64_t c,
                         uint64_t value) except -1:
    """A call's recording hook, right after its core: one test of `k._rec` when the kernel
    is not recording (inlined: the arguments are locals the call has already computed)."""
    if k._rec != NULL:
        _rec_append(k, call, status, flags, handle, x, a, b, c, value)
    return 0
