"""Type stubs for vmo/_vmobject.pyx: VMO and event objects.

Objects are C structs (`vm_object`, and `obj_header` from _object.pxd) and the operations
(`vmo_*`, `event_new`, `obj_unref`) are C-level, nogil (_vmobject.pxd); nothing is exposed
to Python.
"""
