"""Type stubs for vmo/_frames.pyx: the frame allocator.

Its interface is C-level (`frame_pool` and the `pool_*` functions in _frames.pxd), for
cimport by other Cython modules; nothing is exposed to Python.
"""
