# Included by _kernelcore.pyx (for the c_* methods) and _kernel.pyx (for the Python
# syscalls), after _syscalls.pxi: the calls, each sys_* core behind the kernel's ownership
# protocol. Each module calls its own static copy, so no call crosses a module boundary on
# its way to the core.
#
# Every Python syscall and c_* method reaches its core through one of these, right after its
# last Python-level step (argument conversion, buffer export), so no Python code runs
# between the busy check and the end of the work (_state.pxd, docs/semantics.md "Threads").
# A short call pays one load and a branch; a long one (above LONG_PAGES / LONG_BYTES) owns
# the kernel and runs its core with the GIL released.

cdef object _host_error():
    raise MemoryError("the host refused an allocation")


cdef inline int _host(int code) except -1000:
    """A c_* method's status: HOST_NO_MEMORY raises MemoryError, any other passes through."""
    if code == HOST_NO_MEMORY:
        _host_error()
    return code


cdef int _wait(kernel_state *ks) except -1:
    """The slow path of every busy check, out of line so the hot paths stay small."""
    return ks_wait(ks)


cdef inline int _idle(kernel_state *ks) except -1:
    if ks.busy:
        _wait(ks)
    return 0


cdef int _long_op_range(kernel_state *ks, uint32_t handle, uint32_t op, uint64_t offset,
                        uint64_t size, void *buffer, uint64_t buffer_size) except -1000:
    cdef int status
    ks_enter(ks)
    with nogil:
        status = sys_op_range(ks, handle, op, offset, size, buffer, buffer_size)
    ks_leave(ks)
    return _host(status)


cdef inline int _c_op_range(kernel_state *ks, uint32_t handle, uint32_t op, uint64_t offset,
                            uint64_t size, void *buffer, uint64_t buffer_size) except -1000:
    if ks.busy:
        _wait(ks)
    if size > LONG_PAGES * PAGE_SIZE and (op == MX_VMO_OP_COMMIT or op == MX_VMO_OP_DECOMMIT
                                          or op == MX_VMO_OP_LOOKUP):
        return _long_op_range(ks, handle, op, offset, size, buffer, buffer_size)
    return _host(sys_op_range(ks, handle, op, offset, size, buffer, buffer_size))


cdef inline int _c_lookup(kernel_state *ks, uint32_t handle, uint64_t offset, uint64_t size,
                          void *buffer, uint64_t buffer_size) except -1000:
    """sys_op_range's LOOKUP, inlined by hand on the short path (the Python LOOKUP, after its
    buffer export: the handle is looked up again)."""
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v
    if ks.busy:
        _wait(ks)
    if size > LONG_PAGES * PAGE_SIZE:
        return _long_op_range(ks, handle, MX_VMO_OP_LOOKUP, offset, size, buffer, buffer_size)
    v = _vmo(ks, handle, 0, &rights, &status)
    if v == NULL:
        return status
    return vmo_lookup(ks, v, offset, size, <uint8_t *>buffer, buffer_size)


cdef int _long_transfer(kernel_state *ks, uint32_t handle, uint8_t *buf, uint64_t offset,
                        uint64_t length, uint64_t *actual, bint write) except -1000:
    cdef int status
    ks_enter(ks)
    with nogil:
        status = sys_transfer(ks, handle, buf, offset, length, actual, write)
    ks_leave(ks)
    return _host(status)


cdef inline int _c_transfer(kernel_state *ks, uint32_t handle, uint8_t *buf, uint64_t offset,
                            uint64_t length, uint64_t *actual, bint write) except -1000:
    # sys_transfer, inlined by hand on the short path (the hot path of vmo_read/vmo_write).
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v
    if ks.busy:
        _wait(ks)
    if length > LONG_BYTES:
        return _long_transfer(ks, handle, buf, offset, length, actual, write)
    v = _vmo(ks, handle, MX_RIGHT_WRITE if write else MX_RIGHT_READ, &rights, &status)
    actual[0] = 0
    if v == NULL:
        return status
    return _host(vmo_transfer(ks, v, buf, offset, length, actual, write))


cdef int _c_set_size(kernel_state *ks, uint32_t handle, uint64_t size) except -1000:
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v
    if ks.busy:
        _wait(ks)
    v = _vmo(ks, handle, MX_RIGHT_WRITE, &rights, &status)
    if v != NULL and size < v.size and v.pt.npages > LONG_PAGES:
        ks_enter(ks)
        with nogil:
            status = sys_set_size(ks, handle, size)
        ks_leave(ks)
        return _host(status)
    return _host(sys_set_size(ks, handle, size))


cdef int _c_handle_close(kernel_state *ks, uint32_t handle) except -1000:
    cdef uint32_t rights
    cdef int status
    cdef obj_header *p
    if ks.busy:
        _wait(ks)
    p = ht_get(&ks.handles, handle, &rights)
    if p != NULL and p.type == OBJ_VMO and vmo_release_cost(<vm_object *>p) > LONG_PAGES:
        ks_enter(ks)
        with nogil:
            status = sys_handle_close(ks, handle)
        ks_leave(ks)
        return _host(status)
    return _host(sys_handle_close(ks, handle))


cdef int _c_create_contiguous(kernel_state *ks, uint64_t size, uint32_t align,
                              uint32_t *out) except -1000:
    cdef int status
    if ks.busy:
        _wait(ks)
    if size > LONG_PAGES * PAGE_SIZE:
        ks_enter(ks)
        with nogil:
            status = sys_create_contiguous(ks, size, align, out)
        ks_leave(ks)
        return _host(status)
    return _host(sys_create_contiguous(ks, size, align, out))


cdef int _c_lookup_runs(kernel_state *ks, uint32_t handle, uint64_t offset, uint64_t size,
                        run_list *out) except -1000:
    """sys_lookup_runs behind the ownership protocol: a range of more than LONG_PAGES pages
    owns the kernel and runs without the GIL. On any status but NO_ERROR `out` is emptied."""
    cdef int status
    if ks.busy:
        _wait(ks)
    if size > LONG_PAGES * PAGE_SIZE:
        ks_enter(ks)
        with nogil:
            status = sys_lookup_runs(ks, handle, offset, size, out)
        ks_leave(ks)
    else:
        status = sys_lookup_runs(ks, handle, offset, size, out)
    if status:
        out.count = 0
    return _host(status)
