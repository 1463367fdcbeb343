"""The handle table (see _handles.pxd): install, uninstall, and the table's lifetime."""

from libc.stdint cimport uint16_t, uint32_t

from vmo._arena cimport vmo_arena_map, vmo_arena_unmap


cdef int ht_init(handle_table *ht) except -1:
    """Reserve the per-slot arrays (populated by the host only where used). MemoryError if
    the host refuses the reservation; the table is then empty and ht_destroy is harmless."""
    ht.rights = <uint32_t *>vmo_arena_map(MX_MAX_HANDLES * sizeof(uint32_t))
    ht.gen = <uint16_t *>vmo_arena_map(MX_MAX_HANDLES * sizeof(uint16_t))
    ht.objs = <obj_header **>vmo_arena_map(MX_MAX_HANDLES * sizeof(obj_header *))
    ht.free_slots = <uint32_t *>vmo_arena_map(MX_MAX_HANDLES * sizeof(uint32_t))
    ht.nslots = 0
    ht.nfree = 0
    ht.count = 0
    if ht.rights == NULL or ht.gen == NULL or ht.objs == NULL or ht.free_slots == NULL:
        ht_destroy(ht)
        raise MemoryError("cannot reserve the handle table")
    return 0


cdef void ht_destroy(handle_table *ht) noexcept nogil:
    """Give the arrays back to the host. The objects are the caller's: the kernel releases
    every one first (vmo_release_all)."""
    vmo_arena_unmap(ht.rights, MX_MAX_HANDLES * sizeof(uint32_t))
    vmo_arena_unmap(ht.gen, MX_MAX_HANDLES * sizeof(uint16_t))
    vmo_arena_unmap(ht.objs, MX_MAX_HANDLES * sizeof(obj_header *))
    vmo_arena_unmap(ht.free_slots, MX_MAX_HANDLES * sizeof(uint32_t))
    ht.rights = NULL
    ht.gen = NULL
    ht.objs = NULL
    ht.free_slots = NULL
    ht.nslots = 0
    ht.nfree = 0
    ht.count = 0


cdef uint32_t ht_install(handle_table *ht, obj_header *obj, uint32_t rights) noexcept nogil:
    """Put `obj` (the caller counted the handle's reference) in the most recently freed
    slot, else the next unused one; the caller checked ht_full() first. Returns the handle
    value. O(1)."""
    cdef uint32_t slot
    if ht.nfree:
        ht.nfree -= 1
        slot = ht.free_slots[ht.nfree]
    else:
        slot = ht.nslots
        ht.gen[slot] = 0
        ht.nslots += 1
    ht.objs[slot] = obj
    ht.rights[slot] = rights
    ht.count += 1
    return ((((<uint32_t>ht.gen[slot]) << SLOT_BITS) | slot) << 1) | 1


cdef obj_header *ht_uninstall(handle_table *ht, uint32_t handle) noexcept nogil:
    """Remove a live handle (the caller checked it with ht_get) and return its object, the
    handle's reference handed to the caller. The slot's generation moves on, so the old
    value stays invalid, and the slot goes on top of the free stack. O(1)."""
    cdef uint32_t slot = (handle >> 1) & SLOT_MASK
    cdef obj_header *p = ht.objs[slot]
    ht.objs[slot] = NULL
    ht.gen[slot] = (ht.gen[slot] + 1) & GEN_MASK
    ht.free_slots[ht.nfree] = slot
    ht.nfree += 1
    ht.count -= 1
    return p
