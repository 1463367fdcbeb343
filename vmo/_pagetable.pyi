"""Type stubs for vmo/_pagetable.pyx: the radix page table.

Its interface is C-level (`page_table` and the `pt_*` functions in _pagetable.pxd), for
cimport by other Cython modules; nothing is exposed to Python.
"""
