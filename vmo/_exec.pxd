# The trace and batch executor (vmo/_exec.pyx): what the syscall layer calls. Kernel.run
# runs a batch through `run_batch`; `replay` is a Python function of the module.
from vmo._kernelcore cimport KernelCore


cdef object run_batch(KernelCore k, object records, object data)
