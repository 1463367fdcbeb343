# The handle table: slots, 12-bit generations, rights, and the object behind each handle
# (docs/semantics.md "Handles"). Slots are used lowest-first; a freed slot goes on a LIFO
# stack and is reused first; its generation moves on (mod 4096) each time it is freed.
# Handle value = (((generation << 18) | slot) << 1) | 1.
#
# The table owns one reference to each object it holds (manual Py_INCREF / Py_DECREF on
# plain PyObject pointers: no Python list on the hot path). It knows nothing of object
# types: what an object's last handle going means is the caller's business.
from cpython.object cimport PyObject
from libc.stdint cimport uint16_t, uint32_t

from vmo._status cimport MX_MAX_HANDLES

cdef enum:
    SLOT_BITS = 18
    SLOT_MASK = 0x3FFFF
    GEN_MASK = 0xFFF

cdef struct handle_table:
    uint32_t *rights        # per slot
    uint16_t *gen           # per slot: the generation of its current (or next) handle
    PyObject **objs         # per slot: owned reference, NULL when free
    uint32_t *free_slots    # LIFO stack of freed slots
    uint32_t nslots         # slots ever used
    uint32_t nfree          # freed slots on the stack
    uint32_t count          # live handles

cdef int ht_init(handle_table *ht) except -1
cdef void ht_destroy(handle_table *ht) noexcept
cdef uint32_t ht_install(handle_table *ht, object obj, uint32_t rights) noexcept
cdef object ht_uninstall(handle_table *ht, uint32_t handle)


cdef inline PyObject *ht_get(const handle_table *ht, uint32_t handle,
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
