"""Snapshots and restore, and the dirty log's reading: the executable spec of
vmo/_snapshot.pyx (docs/semantics.md "Snapshots" and "The dirty log").

A snapshot here is a copy of the kernel's state (the objects and the handle table together,
so the references between them stay shared as they are), the allocator's lists, and the bytes
of every frame that may hold nonzero bytes; the others are zero. The core saves only what
changes, first change first; this model copies everything: the spec, not the speed.
"""

import copy
from array import array

from ..constants import PAGE_SIZE
from ..errors import MxError, Status
from ._frames import pool_log, pool_paddr
from ._handles import Handle, HandleTable
from ._vmobject import VmoObject

__all__ = ["Snapshot", "dirty_log_read", "snap_restore", "snap_take"]


class Snapshot:
    """The state of a reference kernel at one moment (`Kernel.snapshot()`)."""

    __slots__ = ("__weakref__", "allocator", "bytes", "kernel", "logged", "objects")

    def __init__(self, kernel):
        self.kernel = kernel
        self.logged = set()      # frames logged since it was taken (pool_log adds them)

    def __repr__(self):
        return f"<vmo._reference.Snapshot of {len(self.objects[1])} objects>"


def _copy_objects(handles, objects, next_koid):
    """A copy of the handle table and the objects (koid -> object), the references between
    them (handles to objects, clones to parents) pointing into the copy. A loop, not
    copy.deepcopy: clone chains may be thousands deep."""
    twin = {}
    for obj in objects.values():
        new = copy.copy(obj)
        if isinstance(obj, VmoObject):
            new.pages = dict(obj.pages)
        twin[id(obj)] = new
    for new in twin.values():
        if isinstance(new, VmoObject) and new.parent is not None:
            new.parent = twin[id(new.parent)]
    table = HandleTable()
    table.entries = {value: Handle(twin[id(h.obj)], h.rights)
                     for value, h in handles.entries.items()}
    table.next_slot = handles.next_slot
    table.free_slots = list(handles.free_slots)
    table.generations = dict(handles.generations)
    return table, {koid: twin[id(obj)] for koid, obj in objects.items()}, next_koid


def snap_take(kernel, state):
    """A new snapshot of ``state``; MxError(ERR_BAD_STATE) while frames are pinned."""
    pool = state.pool
    if pool.pins:
        raise MxError(Status.ERR_BAD_STATE, "a snapshot cannot be taken while frames are pinned")
    snap = Snapshot(kernel)
    snap.objects = _copy_objects(state.handles, state.objects, state.next_koid)
    snap.allocator = (pool.next_fresh, list(pool.free_list), set(pool.held_above),
                      set(pool.written))
    snap.bytes = {f: bytes(pool.mem[f * PAGE_SIZE:(f + 1) * PAGE_SIZE]) for f in pool.written}
    pool.snapshots.add(snap)
    return snap


def snap_restore(kernel, state, snap):
    """Make ``state`` what it was when ``snap`` was taken; the frames logged since are
    logged again. ValueError for another kernel's snapshot, MxError(ERR_BAD_STATE) while
    frames are pinned (nothing changes)."""
    if snap.kernel is not kernel:
        raise ValueError("this snapshot belongs to another kernel")
    pool = state.pool
    if pool.pins:
        raise MxError(Status.ERR_BAD_STATE, "cannot restore while frames are pinned")
    state.handles, state.objects, state.next_koid = _copy_objects(*snap.objects)
    next_fresh, free_list, held_above, written = snap.allocator
    for frame in pool.written | written:
        pool.mem[frame * PAGE_SIZE:(frame + 1) * PAGE_SIZE] = snap.bytes.get(
            frame, bytes(PAGE_SIZE))
    pool.next_fresh = next_fresh
    pool.free_list = list(free_list)
    pool.held_above = set(held_above)
    pool.written = set(written)
    pool.orphans = set()
    for frame in list(snap.logged):
        pool_log(pool, frame)


def dirty_log_read(pool, clear):
    """The dirty log's physical addresses, ascending, as array('Q'); then, if ``clear``,
    only the pinned frames stay in it (they are in every result)."""
    out = array("Q", sorted(pool_paddr(pool, f) for f in pool.log | set(pool.pins)))
    if clear:
        pool.log = set(pool.pins)
    return out
