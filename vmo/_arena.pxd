# The arena's C interface (src_c/arena.h), declared once for every module that needs it.
from libc.stdint cimport int64_t

cdef extern from "arena.h" nogil:
    void *vmo_arena_map(size_t size)
    int vmo_arena_unmap(void *base, size_t size)
    int vmo_arena_release(void *addr, size_t size)
    int64_t vmo_host_rss()
