# The invariant walker and the test shims over the kernel's shared state (the slow, thorough
# paths behind Kernel._check, Kernel._vmo_pages and Kernel._allocator_state).
from vmo._state cimport kernel_state
from vmo._vmobject cimport vm_object

cdef bint check(kernel_state *ks) except 0
cdef dict vmo_pages(kernel_state *ks, const vm_object *v)
cdef tuple allocator_state(kernel_state *ks)
