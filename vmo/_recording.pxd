# Recording, the Python side (vmo/_recording.pyx): what Kernel.record and the Python
# syscalls call while a kernel records (docs/trace-format.md).
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from vmo._kernelcore cimport KernelCore


cdef object recording(KernelCore k, object path)
cdef int check_recordable(KernelCore k) except -1
cdef int rec_bad_args(KernelCore k, uint8_t call) except -1
cdef int rec_transfer(KernelCore k, uint32_t h, object buffer, uint64_t off, uint64_t n,
                      bint default_length, bint write, uint64_t *actual_out) except -1000
cdef int rec_lookup(KernelCore k, uint32_t h, uint64_t off, uint64_t size, object buffer,
                    object buffer_size, uint64_t bsize) except -1000
cdef object rec_phys_read(KernelCore k, object paddr, object length)
cdef object rec_phys_write(KernelCore k, object paddr, object data)
cdef object rec_phys_view(KernelCore k, object paddr, object length)
