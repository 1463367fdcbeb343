# The kernel's shared C state. Declarations only (no .pyx): `Kernel` embeds one
# `kernel_state`, and every layer above the handle table takes a `kernel_state *`, so no
# module below the syscall layer imports the Kernel class (layers import downward only).
from libc.stdint cimport uint64_t

from vmo._frames cimport frame_pool
from vmo._handles cimport handle_table

cdef enum:
    FIRST_KOID = 1024       # koids count up from here, one per object created

cdef struct kernel_state:
    frame_pool pool         # simulated physical memory and its frame allocator
    handle_table handles
    uint64_t next_koid
    Py_ssize_t nvmos        # live VMO objects (handles or clone children keep them alive)
    bint closed             # set by close(): the C-level API then raises ValueError
