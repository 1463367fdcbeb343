# The syscall layer: `Kernel`, one simulated machine, with the Python syscalls over the
# C-level API it inherits from `KernelCore` (vmo/_kernelcore.pxd: the state and the `c_*`
# methods, with their contract). Declared here so other Cython extensions can cimport it:
# `from vmo._kernel cimport Kernel`, then `k.c_lookup(...)` and the other c_* methods; the
# public, stable spelling is `from vmo.api cimport Kernel, ...` (vmo/api.pxd documents every
# method).
from vmo._kernelcore cimport KernelCore, handle_basic_info


cdef class Kernel(KernelCore):
    pass
