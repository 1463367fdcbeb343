# Declarations only: the header every kernel object begins with. Objects are C structs
# allocated with malloc (no Python object per VMO or event): a `vm_object` (_vmobject.pxd)
# starts with an `obj_header`, and an event is a bare `obj_header`, so the handle table
# (_handles.pxd) stores `obj_header *` and the type tag says what is behind it.
from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    OBJ_VMO = 1
    OBJ_EVENT = 2

cdef struct obj_header:
    uint32_t type           # OBJ_VMO or OBJ_EVENT
    uint64_t koid
    Py_ssize_t refs         # handles (+ live clone children for a VMO); freed at 0
    # Snapshots (vmo/_snapshot.pyx): `serial` names the object for the kernel's lifetime
    # (never reused, unlike a koid after a restore), and its page-table leaves' pre-images
    # by it (_pagetable.pxd `snap_leaf`); `index` is scratch for the walks.
    uint64_t serial
    uint32_t index
