# The kernel: objects, the handle table and the syscall layer over the frame pool and the
# per-VMO page tables. Declared here so other Cython extensions can cimport the types.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from vmo._frames cimport frame_pool
from vmo._pagetable cimport page_table


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


cdef class PhysView:
    """A pinned window on physical memory (Kernel.phys_view)."""
    cdef Kernel kernel
    cdef uint64_t first         # first frame pinned
    cdef uint64_t count         # frames pinned
    cdef uint8_t *ptr
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]


cdef class Kernel:
    cdef frame_pool pool
    cdef bint _closed
    cdef uint64_t _memory_base
    cdef uint64_t _memory_size
    cdef tuple _memory_map
    cdef uint64_t next_koid
    # handle table: slot -> rights, generation, object
    cdef uint32_t *h_rights
    cdef uint16_t *h_gen
    cdef list h_objs
    cdef uint32_t nslots        # slots ever used
    cdef uint32_t *free_slots   # LIFO of freed slots
    cdef uint32_t nfree_slots
    cdef uint32_t nhandles
    cdef Py_ssize_t nvmos

    cdef int _ensure_open(self) except -1
    cdef object _get(self, uint32_t handle, uint32_t *rights)
    cdef uint32_t _install(self, object obj, uint32_t rights) except 0
    cdef object _uninstall(self, uint32_t handle)
    cdef void _unref(self, VmoObject v) noexcept
    cdef void _free_tables(self) noexcept
    cdef void _teardown(self) noexcept
    cdef VmoObject _new_vmo(self, uint64_t size)
    cdef int _insert(self, VmoObject v, uint64_t idx, uint32_t frame) except -1
    cdef int _write_fault(self, VmoObject v, uint64_t offset, uint32_t *entry) except -2
    cdef uint64_t _fault_cost(self, VmoObject v, uint64_t offset) noexcept
    cdef int _commit(self, VmoObject v, uint64_t start, uint64_t end) except -2
    cdef int _lookup(self, VmoObject v, uint64_t off, uint64_t c_size, uint8_t *buf,
                     uint64_t bsize) except -1000
    cdef VmoObject _vmo(self, uint32_t handle, uint32_t need, int *status)
    cdef object _transfer(self, object handle, object buffer, object offset, object length,
                          bint write)
    cdef bint _aliases_memory(self, const uint8_t *buf, uint64_t n) noexcept
    cdef int _transfer_bounced(self, uint32_t h, uint8_t *buf, uint64_t off, uint64_t n,
                               uint64_t *actual, bint write) except -1000
    cdef int _phys_range(self, uint64_t paddr, uint64_t length, uint64_t *first,
                         uint64_t *count) except -1000
    cdef int _phys_args(self, object paddr, object length, uint64_t *c_paddr,
                        uint64_t *c_length) except -1
    cdef int _phys_check(self, int status) except -1
    cdef void _unpin(self, uint64_t first, uint64_t count) noexcept

    # The C-level API: what the syscalls do, with C arguments and no Python objects
    # created on the way. Each returns a status: 0 (NO_ERROR) or a negative Magenta error.
    cdef int c_get_size(self, uint32_t handle, uint64_t *size) except -1000
    cdef int c_read(self, uint32_t handle, void *dst, uint64_t offset, uint64_t length,
                    uint64_t *actual) except -1000
    cdef int c_write(self, uint32_t handle, const void *src, uint64_t offset, uint64_t length,
                     uint64_t *actual) except -1000
    cdef int c_op_range(self, uint32_t handle, uint32_t op, uint64_t offset, uint64_t size,
                        void *buffer, uint64_t buffer_size) except -1000
    cdef int c_commit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000
    cdef int c_decommit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000
    cdef int c_lookup(self, uint32_t handle, uint64_t offset, uint64_t size, uint64_t *out,
                      uint64_t max_entries) except -1000
    cdef int c_phys_read(self, uint64_t paddr, void *dst, uint64_t length) except -1000
    cdef int c_phys_write(self, uint64_t paddr, const void *src, uint64_t length) except -1000
