# VMO and event objects and their unchecked operations (`vmo_*`, `event_new`): the syscall
# layer has validated the handle, its rights and the object's type; these do the rest of a
# call, including the checks Magenta makes after the handle (ranges, sizes, buffers), and
# return a status (0 or a negative Magenta error). A Python exception only for host failures
# (MemoryError). They take the kernel's shared state, never the Kernel class.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from vmo._pagetable cimport page_table, pt_get
from vmo._state cimport kernel_state
from vmo._status cimport PAGE_SHIFT, U64_MAX


cdef class VmoObject:
    """A paged VMO or a copy-on-write clone (when `parent` is set)."""
    cdef page_table pt
    cdef uint64_t size
    cdef uint64_t parent_offset
    cdef VmoObject parent
    cdef readonly uint64_t koid
    cdef Py_ssize_t refs        # handles + live clone children
    cdef bint alive


cdef class EventObject:
    """Magenta's event: the minimal non-VMO object."""
    cdef readonly uint64_t koid


cdef VmoObject vmo_new(kernel_state *ks, uint64_t size, VmoObject parent,
                       uint64_t parent_offset)
cdef VmoObject vmo_new_contiguous(kernel_state *ks, uint64_t count, uint32_t align_log2)
cdef EventObject event_new(kernel_state *ks)
cdef void vmo_unref(kernel_state *ks, VmoObject v) noexcept
cdef void vmo_release_all(kernel_state *ks) noexcept
cdef uint64_t vmo_fault_cost(VmoObject v, uint64_t offset) noexcept
cdef int vmo_write_fault(kernel_state *ks, VmoObject v, uint64_t offset,
                         uint32_t *entry) except -2
cdef int vmo_commit(kernel_state *ks, VmoObject v, uint64_t offset, uint64_t size) except -1000
cdef int vmo_decommit(kernel_state *ks, VmoObject v, uint64_t offset,
                      uint64_t size) except -1000
cdef int vmo_resize(kernel_state *ks, VmoObject v, uint64_t size) except -1000
cdef int vmo_transfer(kernel_state *ks, VmoObject v, uint8_t *buf, uint64_t offset,
                      uint64_t length, uint64_t *actual, bint write) except -1000
cdef int vmo_lookup(kernel_state *ks, VmoObject v, uint64_t offset, uint64_t size,
                    uint8_t *buf, uint64_t buffer_size) except -1000
cdef int vmo_cache_op(kernel_state *ks, VmoObject v, uint32_t op, uint64_t offset,
                      uint64_t size) except -1000


cdef inline uint32_t vmo_find_page(VmoObject v, uint64_t offset) noexcept:
    """The page a read at byte `offset` sees: own page, else an ancestor's (docs/magenta.md
    3.0 fault steps 1-4 without faulting). Returns frame + 1, or 0 (reads as zero)."""
    cdef uint32_t entry
    while True:
        if offset >= v.size:
            return 0
        entry = pt_get(&v.pt, offset >> PAGE_SHIFT)
        if entry or v.parent is None:
            return entry
        if offset > U64_MAX - v.parent_offset:
            return 0
        offset += v.parent_offset
        v = v.parent


cdef inline bint trim_range(uint64_t offset, uint64_t length, uint64_t size,
                            uint64_t *trimmed) noexcept:
    """Magenta's TrimRange (docs/magenta.md 3.0): False if offset+length wraps or
    offset > size; else `trimmed` is the length clipped to the VMO."""
    if offset > U64_MAX - length or offset > size:
        return False
    trimmed[0] = length if length < size - offset else size - offset
    return True


cdef inline bint in_range(uint64_t offset, uint64_t length, uint64_t size) noexcept:
    """Magenta's InRange (docs/magenta.md 3.0)."""
    return offset <= U64_MAX - length and offset + length <= size
