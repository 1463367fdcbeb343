# Included by _kernel.pyx: the argument conversion shared by a Python syscall and its floor
# (the `_floor_*` instruments), in signature order, every argument before any status
# (_args.pxd), so that a syscall and its floor convert exactly alike.

cdef inline int _transfer_args(object handle, object buffer, object offset, object length,
                               uint32_t *h, uint64_t *off, uint64_t *n) except -1:
    """vmo_read / vmo_write arguments in signature order: 1 means ERR_INVALID_ARGS."""
    cdef int bad = arg_u32(handle, h)
    if buffer is not None and not PyObject_CheckBuffer(buffer):
        raise TypeError("a bytes-like object is required, not %r" % type(buffer).__name__)
    bad |= arg_u64(offset, off)
    if length is not None:
        bad |= arg_u64(length, n)
    return bad


cdef inline int _op_range_args(object handle, object op, object offset, object size,
                               object buffer, object buffer_size, uint32_t *h, uint32_t *c_op,
                               uint64_t *off, uint64_t *c_size, uint64_t *bsize) except -1:
    """vmo_op_range arguments in signature order: 1 means ERR_INVALID_ARGS. Only LOOKUP
    looks at its buffer and buffer_size (docs/semantics.md)."""
    cdef int bad = arg_u32(handle, h)
    cdef int op_bad = arg_u32(op, c_op)
    bad |= op_bad | arg_u64(offset, off) | arg_u64(size, c_size)
    if not op_bad and c_op[0] == MX_VMO_OP_LOOKUP:
        if buffer is not None and not PyObject_CheckBuffer(buffer):
            raise TypeError("a bytes-like object is required, not %r" % type(buffer).__name__)
        if buffer_size is not None:
            bad |= arg_u64(buffer_size, bsize)
    return bad


cdef inline int _lookup_buffer(object buffer, object buffer_size, Py_buffer *view,
                               uint64_t *bsize) except -1:
    """Export LOOKUP's buffer (writable): 0 with a view held, 1 for ERR_INVALID_ARGS."""
    if buffer is None or arg_buffer(buffer, view, True):
        return 1
    if buffer_size is None:
        bsize[0] = view.len
    elif bsize[0] > <uint64_t>view.len:
        PyBuffer_Release(view)
        return 1
    return 0
