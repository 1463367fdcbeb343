# Physical memory as devices see it (`phys_*`): range checks, device reads and writes, pins,
# and the `PhysView` exporter behind Kernel.phys_view. The C functions return a status
# (0, ERR_OUT_OF_RANGE, ERR_BAD_STATE), never raise and are nogil (a long device read or
# write runs without the GIL while its thread owns the kernel, _state.pxd); the Python-level
# bodies of the phys_* methods (`phys_read_bytes`, `phys_write_buffer`, `phys_view_new`)
# raise MxError and follow the ownership protocol themselves. None of them checks that the
# kernel is open: the syscall layer does that first (a wait for an owner checks it again).
from libc.stdint cimport uint8_t, uint64_t

from vmo._state cimport kernel_state


# Called when a recorded view is released, before its frames are unpinned (the trace's
# phys_view_release record: docs/trace-format.md); set by the syscall layer while recording.
ctypedef void (*view_release_hook)(object owner, uint64_t session, uint64_t number,
                                   uint64_t paddr, const uint8_t *ptr,
                                   uint64_t length) noexcept


cdef class PhysView:
    """A pinned window on physical memory (Kernel.phys_view)."""
    cdef object owner           # the Kernel: keeps `ks` (inside it) alive
    cdef view_release_hook on_release   # NULL unless the view was made while recording
    cdef uint64_t session       # the recording it belongs to
    cdef uint64_t number        # its view number in that recording
    cdef uint64_t paddr
    cdef kernel_state *ks
    cdef uint64_t first         # first frame pinned
    cdef uint64_t count         # frames pinned
    cdef uint8_t *ptr
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]


cdef int phys_range(kernel_state *ks, uint64_t paddr, uint64_t length, uint64_t *first,
                    uint64_t *count) noexcept nogil
cdef int phys_read(kernel_state *ks, uint64_t paddr, void *dst,
                   uint64_t length) noexcept nogil
cdef int phys_write(kernel_state *ks, uint64_t paddr, const void *src,
                    uint64_t length) noexcept nogil
cdef void phys_pin(kernel_state *ks, uint64_t first, uint64_t count) noexcept nogil
cdef void phys_unpin(kernel_state *ks, uint64_t first, uint64_t count) noexcept nogil
cdef int phys_host(kernel_state *ks, uint64_t paddr, uint64_t length,
                   void **host) noexcept nogil
cdef int phys_pin_range(kernel_state *ks, uint64_t paddr, uint64_t length,
                        void **host) noexcept nogil
cdef int phys_unpin_range(kernel_state *ks, uint64_t paddr, uint64_t length) noexcept nogil
cdef int phys_read_owned(kernel_state *ks, uint64_t paddr, void *dst,
                         uint64_t length) except -1000
cdef int phys_write_owned(kernel_state *ks, uint64_t paddr, const void *src,
                          uint64_t length) except -1000

cdef bytes phys_read_bytes(kernel_state *ks, object paddr, object length)
cdef Py_ssize_t phys_write_buffer(kernel_state *ks, object paddr, object data) except -1
cdef object phys_view_new(object owner, kernel_state *ks, object paddr, object length,
                          view_release_hook hook=*, uint64_t session=*, uint64_t number=*)
