# VMO and event objects and their unchecked operations (`vmo_*`, `event_new`): the syscall
# layer has validated the handle, its rights and the object's type; these do the rest of a
# call, including the checks Magenta makes after the handle (ranges, sizes, buffers), and
# return a status (0 or a negative Magenta error).
#
# Objects are C structs allocated with malloc (no Python object per VMO, per page or per
# call), and every function here is `noexcept nogil`: it can run with the GIL released.
# A host allocation failure is the internal status HOST_NO_MEMORY (_status.pxd), never a
# Magenta one: the caller that holds the GIL raises MemoryError (nothing is leaked: a frame
# taken for a page that cannot be inserted goes back to the pool). Only the syscall layer
# decides whether the GIL is held; these functions never touch it. They take the kernel's
# shared state, never the Kernel class.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from vmo._object cimport OBJ_EVENT, OBJ_VMO, obj_header
from vmo._pagetable cimport page_table, pt_get
from vmo._state cimport kernel_state
from vmo._status cimport PAGE_SHIFT, U64_MAX


cdef struct vm_object:
    # A paged VMO, or a copy-on-write clone of `parent` (when it is not NULL).
    obj_header hdr          # first: a vm_object * is an obj_header * (type OBJ_VMO)
    page_table pt
    uint64_t size
    uint64_t parent_offset
    vm_object *parent       # one counted reference on the parent (its hdr.refs)
    bint alive              # cleared when released (the walker checks reachable ones are)


cdef struct vmo_run:
    # One physical run of a VMO (Vmo.lookup_runs): `length` bytes (whole pages) at VMO
    # offset `offset` backed by the consecutive frames from `paddr`, all held by the VMO
    # itself (`own`) or all seen through ancestors.
    uint64_t offset
    uint64_t paddr
    uint64_t length
    uint64_t own


cdef struct run_list:
    # A growing array of runs (malloc'd; `runs` NULL until the first one).
    vmo_run *runs
    uint64_t count
    uint64_t cap


cdef vm_object *vmo_new(kernel_state *ks, uint64_t size, vm_object *parent,
                        uint64_t parent_offset) noexcept nogil
cdef int vmo_new_contiguous(kernel_state *ks, uint64_t count, uint32_t align_log2,
                            vm_object **out) noexcept nogil
cdef obj_header *event_new(kernel_state *ks) noexcept nogil
cdef void obj_unref(kernel_state *ks, obj_header *obj) noexcept nogil
cdef void vmo_unref(kernel_state *ks, vm_object *v) noexcept nogil
cdef void vmo_release_all(kernel_state *ks) noexcept nogil
cdef uint64_t vmo_fault_cost(const vm_object *v, uint64_t offset) noexcept nogil
cdef int vmo_write_fault(kernel_state *ks, vm_object *v, uint64_t offset,
                         uint32_t *entry) noexcept nogil
cdef int vmo_commit(kernel_state *ks, vm_object *v, uint64_t offset,
                    uint64_t size) noexcept nogil
cdef int vmo_decommit(kernel_state *ks, vm_object *v, uint64_t offset,
                      uint64_t size) noexcept nogil
cdef int vmo_resize(kernel_state *ks, vm_object *v, uint64_t size) noexcept nogil
cdef int vmo_transfer(kernel_state *ks, vm_object *v, uint8_t *buf, uint64_t offset,
                      uint64_t length, uint64_t *actual, bint write) noexcept nogil
cdef int vmo_lookup(kernel_state *ks, vm_object *v, uint64_t offset, uint64_t size,
                    uint8_t *buf, uint64_t buffer_size) noexcept nogil
cdef int vmo_lookup_runs(kernel_state *ks, const vm_object *v, uint64_t offset,
                         uint64_t size, run_list *out) noexcept nogil
cdef int vmo_visible_runs(kernel_state *ks, const vm_object *v, uint64_t start,
                          uint64_t end, run_list *out) noexcept nogil
cdef int vmo_cache_op(kernel_state *ks, vm_object *v, uint32_t op, uint64_t offset,
                      uint64_t size) noexcept nogil
cdef uint64_t vmo_release_cost(const vm_object *v) noexcept nogil


cdef inline vm_object *as_vmo(obj_header *obj) noexcept nogil:
    """`obj` as a VMO, or NULL if it is another type of object."""
    return <vm_object *>obj if obj.type == OBJ_VMO else NULL


cdef inline uint32_t vmo_find_page(const vm_object *v, uint64_t offset) noexcept nogil:
    """The page a read at byte `offset` sees: own page, else an ancestor's (docs/magenta.md
    3.0 fault steps 1-4 without faulting). Returns frame + 1, or 0 (reads as zero)."""
    cdef uint32_t entry
    while True:
        if offset >= v.size:
            return 0
        entry = pt_get(&v.pt, offset >> PAGE_SHIFT)
        if entry or v.parent == NULL:
            return entry
        if offset > U64_MAX - v.parent_offset:
            return 0
        offset += v.parent_offset
        v = v.parent


cdef inline bint trim_range(uint64_t offset, uint64_t length, uint64_t size,
                            uint64_t *trimmed) noexcept nogil:
    """Magenta's TrimRange (docs/magenta.md 3.0): False if offset+length wraps or
    offset > size; else `trimmed` is the length clipped to the VMO."""
    if offset > U64_MAX - length or offset > size:
        return False
    trimmed[0] = length if length < size - offset else size - offset
    return True


cdef inline bint in_range(uint64_t offset, uint64_t length, uint64_t size) noexcept nogil:
    """Magenta's InRange (docs/magenta.md 3.0)."""
    return offset <= U64_MAX - length and offset + length <= size
