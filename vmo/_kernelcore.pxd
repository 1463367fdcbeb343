# The kernel's core: `KernelCore`, one simulated machine (its state and lifetime) and its
# C-level API (the `c_*` methods), the base of `Kernel` (vmo/_kernel.pxd). Declared here so
# other Cython extensions can cimport it; the public, stable spelling is
# `from vmo.api cimport Kernel, ...` (vmo/api.pxd documents every method).
#
# The contract of every c_* method (docs/api.md):
#   - the same semantics as the syscall it twins, with C arguments: statuses in the same
#     check order (docs/magenta.md), the same handle values, koids and physical addresses;
#   - it returns a status: 0 (NO_ERROR) or a negative Magenta error, and writes its outputs
#     through the pointers it is given (a handle output is MX_HANDLE_INVALID, and a count
#     output 0, when the status is not NO_ERROR);
#   - it raises a Python exception only for a closed kernel (ValueError) or a host failure
#     (MemoryError); the `except -1000` declarations let Cython propagate them;
#   - no Python object is created on the way (except the objects a creating call makes).
from libc.stdint cimport uint32_t, uint64_t

from vmo._state cimport change_fn, kernel_state, notify_state
from vmo._tracerec cimport trace_writer
from vmo._vmobject cimport vmo_run


cdef struct handle_basic_info:
    # mx_info_handle_basic_t (docs/magenta.md 3.11), as HandleBasicInfo in Python.
    uint64_t koid
    uint32_t rights
    uint32_t type
    uint64_t related_koid
    uint32_t props


cdef class KernelCore:
    cdef kernel_state ks
    cdef uint64_t _memory_base
    cdef uint64_t _memory_size
    cdef tuple _memory_map
    # Recording (docs/trace-format.md): NULL unless inside `with k.record(path):` (set by
    # Kernel.record); every call, Python syscall or c_* method, tests it once. The file it
    # writes to is `_rec_file`.
    cdef trace_writer *_rec
    cdef object _rec_file
    # The cache model (docs/cache-model.md): the options it was built with, and the callback
    # given each hazard event after the call that raised it (None: events are only kept).
    cdef tuple _cache_options
    cdef object _on_event

    # -- VMOs
    cdef int c_create(self, uint64_t size, uint32_t options, uint32_t *out) except -1000
    cdef int c_create_contiguous(self, uint64_t size, uint32_t alignment_log2,
                                 uint32_t *out) except -1000
    cdef int c_get_size(self, uint32_t handle, uint64_t *size) except -1000
    cdef int c_set_size(self, uint32_t handle, uint64_t size) except -1000
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
    cdef int c_clone(self, uint32_t handle, uint32_t options, uint64_t offset, uint64_t size,
                     uint32_t *out) except -1000
    cdef int c_committed_bytes(self, uint32_t handle, uint64_t *out) except -1000
    cdef int c_lookup_runs(self, uint32_t handle, uint64_t offset, uint64_t size,
                           vmo_run *out, uint64_t max_runs, uint64_t *count) except -1000
    # -- handles and other objects
    cdef int c_handle_close(self, uint32_t handle) except -1000
    cdef int c_handle_duplicate(self, uint32_t handle, uint32_t rights,
                                uint32_t *out) except -1000
    cdef int c_handle_replace(self, uint32_t handle, uint32_t rights,
                              uint32_t *out) except -1000
    cdef int c_get_info(self, uint32_t handle, uint32_t topic,
                        handle_basic_info *info) except -1000
    cdef int c_event_create(self, uint32_t options, uint32_t *out) except -1000
    # -- physical memory, as devices see it
    cdef int c_phys_read(self, uint64_t paddr, void *dst, uint64_t length) except -1000
    cdef int c_phys_write(self, uint64_t paddr, const void *src, uint64_t length) except -1000
    # -- machine services: the dirty log
    cdef int c_dirty_log(self, uint64_t *out, uint64_t max_entries, bint clear,
                         uint64_t *count) except -1000
    cdef int c_pin(self, uint64_t paddr, uint64_t length, void **host) except -1000
    cdef int c_unpin(self, uint64_t paddr, uint64_t length) except -1000
    cdef int c_host_address(self, uint64_t paddr, uint64_t length, void **host) except -1000
    # -- change notifications
    cdef int c_on_change(self, uint32_t handle, change_fn fn, void *ctx,
                         uint64_t *subscription) except -1000
    cdef int c_cancel_change(self, uint64_t subscription) except -1000


cdef int notify_deliver(KernelCore k) except -1
cdef int watch_add(kernel_state *ks, uint32_t handle, change_fn fn, void *ctx, bint py,
                   uint64_t *out) except -1000
cdef Py_ssize_t watch_find(notify_state *ns, uint64_t id) noexcept
cdef void watch_drop(notify_state *ns, uint64_t i) noexcept


cdef extern from *:
    bint _unlikely "unlikely"(bint condition) nogil    # Cython's branch hint


cdef inline int _notify(KernelCore k) except -1:
    """After a call that may change pages: deliver its change events (one load and a branch
    while nothing is watched)."""
    if _unlikely(k.ks.notify != NULL):
        notify_deliver(k)
    return 0


cdef inline int _open(KernelCore k) except -1:
    """Every call on a closed kernel raises ValueError (docs/api.md), the C-level API too."""
    if k.ks.closed:
        raise ValueError("kernel is closed")
    return 0


cdef inline int _call(KernelCore k) except -1:
    """The start of every kernel call (a syscall, a phys_* call): closed check, then one
    more on the call counter (`seq`, carried by coherency events)."""
    if k.ks.closed:
        raise ValueError("kernel is closed")
    k.ks.seq += 1
    return 0


cdef int _deliver_events(KernelCore k) except -1


cdef inline int _deliver(KernelCore k) except -1:
    """After a call that may raise coherency events: hand the new ones to the callback (one
    load and a branch on a coherent kernel)."""
    if k.ks.cache != NULL and k.ks.cache.delivered != k.ks.cache.nevents:
        return _deliver_events(k)
    return 0
