"""The handle table: slots, 12-bit generations, and the object and rights behind each handle.

docs/semantics.md "Handles": at most 262,144 slots (Magenta's kMaxHandleCount), used
lowest-first on a fresh table, freed ones reused LIFO; every time a slot is freed its
generation moves on (mod 4096). Handle value = ``(((generation << 18) | slot) << 1) | 1``.
The table does not count references: the object layer does (`vmo_new`, `vmo_unref`).
"""

from ..constants import MX_MAX_HANDLES

__all__ = [
    "GENERATION_MASK", "SLOT_BITS", "SLOT_MASK", "Handle", "HandleTable", "ht_full", "ht_get",
    "ht_install", "ht_slot", "ht_uninstall",
]

SLOT_BITS = 18  # 262,144 slots (MX_MAX_HANDLES)
SLOT_MASK = (1 << SLOT_BITS) - 1
GENERATION_MASK = 0xFFF  # 12-bit generation per slot


class Handle:
    """A handle table entry: the object and the rights this handle grants."""

    __slots__ = ("obj", "rights")

    def __init__(self, obj, rights):
        self.obj = obj
        self.rights = rights


class HandleTable:
    """One process's handles: ``entries`` maps live handle values to `Handle`s."""

    __slots__ = ("entries", "free_slots", "generations", "next_slot")

    def __init__(self):
        self.entries = {}
        self.next_slot = 0        # slots ever used: [0, next_slot)
        self.free_slots = []      # LIFO of freed slots
        self.generations = {}     # slot -> 12-bit generation (absent = 0)


def ht_slot(value):
    """The slot of handle ``value``."""
    return (value >> 1) & SLOT_MASK


def ht_get(ht, value):
    """The `Handle` of ``value``, or None if it is not a live handle."""
    return ht.entries.get(value)


def ht_full(ht):
    """True if no slot is left for a new handle."""
    return not ht.free_slots and ht.next_slot == MX_MAX_HANDLES


def ht_install(ht, obj, rights):
    """A new handle to ``obj`` with ``rights`` (the caller checked `ht_full`); its value."""
    if ht.free_slots:
        slot = ht.free_slots.pop()
    else:
        slot = ht.next_slot
        ht.next_slot += 1
    value = (((ht.generations.get(slot, 0) << SLOT_BITS) | slot) << 1) | 1
    ht.entries[value] = Handle(obj, rights)
    return value


def ht_uninstall(ht, value):
    """Take the live handle ``value`` out (its slot's generation moves on, so the value stays
    invalid); returns its `Handle`."""
    entry = ht.entries.pop(value)
    slot = ht_slot(value)
    ht.generations[slot] = (ht.generations.get(slot, 0) + 1) & GENERATION_MASK
    ht.free_slots.append(slot)
    return entry
