"""Type stubs for vmo/_handles.pyx: the handle table.

Its interface is C-level (`handle_table` and the `ht_*` functions in _handles.pxd), for
cimport by other Cython modules; nothing is exposed to Python.
"""
