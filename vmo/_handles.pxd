# The handle table: slots, 12-bit generations, rights, and the object behind each handle
# (docs/semantics.md "Handles"). Slots are used lowest-first; a freed slot goes on a LIFO
# stack and is reused first; its generation moves on (mod 4096) each time it is freed.
# Handle value = (((generation << 18) | slot) << 1) | 1.
#
# The table stores C object pointers (`obj_header *`, _object.pxd) and never touches their
# reference counts: each handle stands for one reference the caller counted (obj_header.refs)
# when it installed the handle, and an uninstalled handle hands that reference back to the
# caller. It knows nothing of object types: what an object's last handle going means is the
# caller's business. Every function here is nogil: no Python object anywhere.
from libc.stdint cimport uint16_t, uint32_t

from vmo._object cimport obj_header
from vmo._status cimport MX_MAX_HANDLES

cdef enum:
    SLOT_BITS = 18
    SLOT_MASK = 0x3FFFF
    GEN_MASK = 0xFFF

cdef struct handle_table:
    uint32_t *rights        # per slot
    uint16_t *gen           # per slot: the generation of its current (or next) handle
    obj_header **objs       # per slot: the object (one counted reference), NULL when free
    uint32_t *free_slots    # LIFO stack of freed slots
    uint32_t nslots         # slots ever used
    uint32_t nfree          # freed slots on the stack
    uint32_t count          # live handles

cdef int ht_init(handle_table *ht) except -1
cdef void ht_destroy(handle_table *ht) noexcept nogil
cdef uint32_t ht_install(handle_table *ht, obj_header *obj, uint32_t rights) noexcept nogil
cdef obj_header *ht_uninstall(handle_table *ht, uint32_t handle) noexcept nogil


cdef inline obj_header *ht_get(const handle_table *ht, uint32_t handle,
                               uint32_t *rights) noexcept nogil:
    """The object behind `handle` (borrowed) and its rights, or NULL if it is not a live
    handle. O(1)."""
    cdef uint32_t v, slot
    if not (handle & 1):
        return NULL
    v = handle >> 1
    slot = v & SLOT_MASK
    if slot >= ht.nslots or ht.gen[slot] != (v >> SLOT_BITS):
        return NULL
    rights[0] = ht.rights[slot]
    return ht.objs[slot]


cdef inline bint ht_full(const handle_table *ht) noexcept nogil:
    """True when no handle can be installed (ERR_NO_MEMORY for the creating call)."""
    return ht.count >= MX_MAX_HANDLES
