# Included by _kernelcore.pyx (for the c_* methods) and _kernel.pyx (for the Python
# syscalls): the checked cores of the syscalls (`sys_*`), one per syscall, each module
# calling its own static copy. Each takes the kernel's shared state and C arguments, checks
# in Magenta's order (the handle once, through _vmo or ht_get), calls the object layer and
# returns a status; the Python syscalls and their C-level twins (the c_* methods) both call
# them.
#
# Every sys_* is `noexcept nogil`: it touches no Python object and may run with the GIL
# released. Besides 0 and the Magenta errors it may return HOST_NO_MEMORY (the host refused
# an allocation; never a Magenta status): the caller holding the GIL turns it into
# MemoryError (`_host`). A caller that runs sys_* without the GIL must own the kernel for
# that time: see `ks_enter` / `ks_leave` and docs/semantics.md "Threads".

cdef inline vm_object *_vmo(kernel_state *ks, uint32_t handle, uint32_t need,
                            uint32_t *rights, int *status) noexcept nogil:
    """The one handle check of a VMO call, in Magenta's order: the handle exists
    (ERR_BAD_HANDLE), has the rights `need` (ERR_ACCESS_DENIED), is a VMO (ERR_WRONG_TYPE).
    Gives the VMO and the handle's rights, or NULL and the status. The pointer is borrowed:
    valid until the kernel's state next changes (never keep it across Python code)."""
    cdef obj_header *p = ht_get(&ks.handles, handle, rights)
    if p == NULL:
        status[0] = ERR_BAD_HANDLE
        return NULL
    if (rights[0] & need) != need:
        status[0] = ERR_ACCESS_DENIED
        return NULL
    if p.type != OBJ_VMO:
        status[0] = ERR_WRONG_TYPE
        return NULL
    status[0] = NO_ERROR
    return <vm_object *>p


cdef int sys_create(kernel_state *ks, uint64_t size, uint32_t options,
                    uint32_t *out) noexcept nogil:
    cdef vm_object *v
    out[0] = MX_HANDLE_INVALID
    if options != 0:
        return ERR_INVALID_ARGS
    if size > MX_VMO_MAX_SIZE or ht_full(&ks.handles):
        return ERR_NO_MEMORY
    v = vmo_new(ks, size, NULL, 0)
    if v == NULL:
        return HOST_NO_MEMORY
    out[0] = ht_install(&ks.handles, &v.hdr, MX_DEFAULT_VMO_RIGHTS)
    return NO_ERROR


cdef int sys_create_contiguous(kernel_state *ks, uint64_t size, uint32_t align,
                               uint32_t *out) noexcept nogil:
    cdef vm_object *v
    cdef int status
    out[0] = MX_HANDLE_INVALID
    if size == 0:
        return ERR_INVALID_ARGS
    if align == 0:
        align = PAGE_SHIFT
    if align < PAGE_SHIFT or align >= 64:
        return ERR_INVALID_ARGS
    if size > MX_VMO_MAX_SIZE or ht_full(&ks.handles):
        return ERR_NO_MEMORY
    status = vmo_new_contiguous(ks, (size >> PAGE_SHIFT) + ((size & PAGE_MASK) != 0), align,
                                &v)
    if status:
        return status
    out[0] = ht_install(&ks.handles, &v.hdr, MX_DEFAULT_VMO_RIGHTS)
    return NO_ERROR


cdef int sys_get_size(kernel_state *ks, uint32_t handle, uint64_t *size) noexcept nogil:
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, 0, &rights, &status)
    if v != NULL:
        size[0] = v.size
    return status


cdef int sys_set_size(kernel_state *ks, uint32_t handle, uint64_t size) noexcept nogil:
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, MX_RIGHT_WRITE, &rights, &status)
    if v == NULL:
        return status
    return vmo_resize(ks, v, size)


cdef int sys_transfer(kernel_state *ks, uint32_t handle, uint8_t *buf, uint64_t offset,
                      uint64_t length, uint64_t *actual, bint write) noexcept nogil:
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, MX_RIGHT_WRITE if write else MX_RIGHT_READ, &rights,
                             &status)
    actual[0] = 0
    if v == NULL:
        return status
    return vmo_transfer(ks, v, buf, offset, length, actual, write)


cdef int sys_op_range(kernel_state *ks, uint32_t handle, uint32_t op, uint64_t offset,
                      uint64_t size, void *buffer, uint64_t buffer_size) noexcept nogil:
    """vmo_op_range (docs/magenta.md 3.6): no rights checked."""
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, 0, &rights, &status)
    if v == NULL:
        return status
    if op == MX_VMO_OP_COMMIT:
        return vmo_commit(ks, v, offset, size)
    if op == MX_VMO_OP_DECOMMIT:
        return vmo_decommit(ks, v, offset, size)
    if op == MX_VMO_OP_LOOKUP:
        return vmo_lookup(ks, v, offset, size, <uint8_t *>buffer, buffer_size)
    if op == MX_VMO_OP_LOCK or op == MX_VMO_OP_UNLOCK:
        return ERR_NOT_SUPPORTED
    if MX_VMO_OP_CACHE_SYNC <= op <= MX_VMO_OP_CACHE_CLEAN_INVALIDATE:
        return vmo_cache_op(ks, v, op, offset, size)
    return ERR_INVALID_ARGS


cdef int sys_lookup_runs(kernel_state *ks, uint32_t handle, uint64_t offset, uint64_t size,
                         run_list *out) noexcept nogil:
    """vmo_lookup_runs: the handle (no rights, as op_range), then LOOKUP's range checks."""
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, 0, &rights, &status)
    if v == NULL:
        return status
    return vmo_lookup_runs(ks, v, offset, size, out)


cdef int sys_clone(kernel_state *ks, uint32_t handle, uint32_t options, uint64_t offset,
                   uint64_t size, uint32_t *out) noexcept nogil:
    cdef uint32_t rights = 0
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, MX_RIGHT_DUPLICATE | MX_RIGHT_READ, &rights, &status)
    cdef vm_object *child
    out[0] = MX_HANDLE_INVALID
    if v == NULL:
        return status
    if not (options & MX_VMO_CLONE_COPY_ON_WRITE):
        return ERR_INVALID_ARGS
    if size > MX_VMO_MAX_SIZE:
        return ERR_OUT_OF_RANGE
    if offset & PAGE_MASK:
        return ERR_INVALID_ARGS
    if offset > U64_MAX - size:
        return ERR_OUT_OF_RANGE
    if ht_full(&ks.handles):
        return ERR_NO_MEMORY
    child = vmo_new(ks, size, v, offset)
    if child == NULL:
        return HOST_NO_MEMORY
    out[0] = ht_install(&ks.handles, &child.hdr,
                        rights | MX_RIGHT_WRITE | MX_RIGHT_EXECUTE | MX_RIGHT_MAP)
    return NO_ERROR


cdef int sys_committed_bytes(kernel_state *ks, uint32_t handle,
                             uint64_t *out) noexcept nogil:
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, 0, &rights, &status)
    out[0] = 0
    if v != NULL:
        out[0] = v.pt.npages << PAGE_SHIFT
    return status


cdef int sys_handle_close(kernel_state *ks, uint32_t handle) noexcept nogil:
    cdef uint32_t rights
    if ht_get(&ks.handles, handle, &rights) == NULL:
        return ERR_BAD_HANDLE
    obj_unref(ks, ht_uninstall(&ks.handles, handle))
    return NO_ERROR


cdef int sys_handle_duplicate(kernel_state *ks, uint32_t handle, uint32_t rights,
                              uint32_t *out) noexcept nogil:
    cdef uint32_t src = 0
    cdef obj_header *p = ht_get(&ks.handles, handle, &src)
    out[0] = MX_HANDLE_INVALID
    if p == NULL:
        return ERR_BAD_HANDLE
    if not (src & MX_RIGHT_DUPLICATE):
        return ERR_ACCESS_DENIED
    if rights == MX_RIGHT_SAME_RIGHTS:
        rights = src
    elif rights & ~src:
        return ERR_INVALID_ARGS
    if ht_full(&ks.handles):
        return ERR_NO_MEMORY
    p.refs += 1
    out[0] = ht_install(&ks.handles, p, rights)
    return NO_ERROR


cdef int sys_handle_replace(kernel_state *ks, uint32_t handle, uint32_t rights,
                            uint32_t *out) noexcept nogil:
    cdef uint32_t src = 0
    out[0] = MX_HANDLE_INVALID
    if ht_get(&ks.handles, handle, &src) == NULL:
        return ERR_BAD_HANDLE
    if rights == MX_RIGHT_SAME_RIGHTS:
        rights = src
    elif rights & ~src:
        return ERR_INVALID_ARGS
    # The old slot is freed first, so the new handle normally reuses it (docs/semantics.md);
    # the handle's reference moves from the old handle to the new one.
    out[0] = ht_install(&ks.handles, ht_uninstall(&ks.handles, handle), rights)
    return NO_ERROR


cdef int sys_get_info(kernel_state *ks, uint32_t handle, uint32_t topic,
                      handle_basic_info *info) noexcept nogil:
    """object_get_info: ERR_NOT_SUPPORTED for unknown topics, ERR_BAD_HANDLE; ERR_WRONG_TYPE
    for the topics of objects this kernel has none of (3-13). HANDLE_VALID fills nothing."""
    cdef uint32_t rights = 0
    cdef obj_header *p
    if topic == MX_INFO_NONE or topic > MX_INFO_LAST_OBJECT_TOPIC:
        return ERR_NOT_SUPPORTED
    p = ht_get(&ks.handles, handle, &rights)
    if p == NULL:
        return ERR_BAD_HANDLE
    if topic == MX_INFO_HANDLE_VALID:
        return NO_ERROR
    if topic != MX_INFO_HANDLE_BASIC:
        return ERR_WRONG_TYPE
    info.koid = p.koid
    info.type = MX_OBJ_TYPE_VMEM if p.type == OBJ_VMO else MX_OBJ_TYPE_EVENT
    info.rights = rights
    info.related_koid = 0
    info.props = MX_OBJ_PROP_WAITABLE
    return NO_ERROR


cdef int sys_event_create(kernel_state *ks, uint32_t options, uint32_t *out) noexcept nogil:
    cdef obj_header *ev
    out[0] = MX_HANDLE_INVALID
    if options != 0:
        return ERR_INVALID_ARGS
    if ht_full(&ks.handles):
        return ERR_NO_MEMORY
    ev = event_new(ks)
    if ev == NULL:
        return HOST_NO_MEMORY
    out[0] = ht_install(&ks.handles, ev, MX_DEFAULT_EVENT_RIGHTS)
    return NO_ERROR
