"""Type stubs for vmo/_invariants.pyx: the invariant walker and the test shims.

Its interface is C-level (`check`, `vmo_pages`, `allocator_state` in _invariants.pxd); from
Python they are reached as Kernel._check(), Kernel._vmo_pages() and Kernel._allocator_state().
"""
