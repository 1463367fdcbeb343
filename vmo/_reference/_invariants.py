"""The invariant walker (`check`) and the test shims that list a VMO's pages and the
allocator's state, as the core's `_invariants` gives them."""

from ..constants import MX_MAX_HANDLES, MX_VMO_MAX_SIZE, PAGE_SIZE
from ._frames import pool_free_count, pool_list, pool_paddr
from ._handles import SLOT_BITS, ht_slot
from ._state import FIRST_KOID
from ._vmobject import VmoObject, page_ceil

__all__ = ["allocator_state", "check", "vmo_pages"]

_U64_MAX = (1 << 64) - 1


def vmo_pages(state, vmo):
    """The VMO's own pages, {page_index: paddr} ascending."""
    return {index: pool_paddr(state.pool, vmo.pages[index]) for index in sorted(vmo.pages)}


def allocator_state(state):
    """(next_fresh, freed frames from the bottom of the LIFO list to its top)."""
    return state.pool.next_fresh, pool_list(state.pool)


def _fail(message, *args):
    raise AssertionError(message % args)


def check(state, stats):
    """Walk every invariant of ``state``; raise AssertionError naming the first one broken.
    ``stats`` is what `Kernel.stats` reports; it must agree with what is counted here."""
    vmos = [obj for obj in state.objects.values() if isinstance(obj, VmoObject)]
    not_free = _check_frames(state.pool, vmos)
    _check_objects(state, vmos)
    _check_handles(state.handles)
    if state.cache is not None:
        _check_cache(state, vmos)
    total = state.pool.nframes
    expected = {"total_frames": total, "free_frames": total - not_free,
                "committed_frames": not_free, "vmos": len(vmos),
                "handles": len(state.handles.entries), "pinned_frames": len(state.pool.pins)}
    for key, value in expected.items():
        if stats[key] != value:
            _fail("stats()[%r] is %d, expected %d", key, stats[key], value)
    _check_watches(state)


def _check_watches(state):
    """The change subscriptions: sorted by (koid, id), each of a live VMO with that koid or
    of a destroyed one whose destruction event is pending; no event left undelivered."""
    if not state.delivering and state.events:
        _fail("%d change events left undelivered", len(state.events))
    pending = {koid for koid, _, _, destroyed in state.events if destroyed}
    keys = [(w[1], w[0]) for w in state.watches]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        _fail("subscriptions out of order")
    for number, koid, vmo, _ in state.watches:
        if not 0 < number < state.next_watch:
            _fail("subscription id %d", number)
        if vmo is None:
            if koid not in pending:
                _fail("subscription %d of a destroyed VMO", number)
        elif state.objects.get(koid) is not vmo:
            _fail("subscription %d to a dead VMO", number)


def _check_frames(pool, vmos):
    """Every frame is exactly one of free (on the list below the fresh mark, or fresh at or
    above it), held by one VMO, or orphaned (pinned after its VMO let go). Returns the number
    of frames not free."""
    total = pool.nframes
    mark = pool.next_fresh
    if not 0 <= mark <= total:
        _fail("next_fresh %d outside [0, %d]", mark, total)
    if mark < total and mark in pool.held_above:
        _fail("next_fresh %d is held", mark)
    free_set = set()
    for frame in pool.free_list:
        if frame in free_set:
            _fail("frame %d is on the free list twice", frame)
        if not 0 <= frame < mark:
            _fail("free frame %d is not below next_fresh %d", frame, mark)
        free_set.add(frame)
    for frame in pool.held_above:
        if not mark <= frame < total:
            _fail("frame %d held above the mark is not in [%d, %d)", frame, mark, total)
    owner = {}
    for vmo in vmos:
        limit = page_ceil(vmo.size)
        for index, frame in vmo.pages.items():
            if frame in owner:
                _fail("frame %d held twice (koids %d and %d)", frame, owner[frame], vmo.koid)
            if not 0 <= frame < total:
                _fail("koid %d holds frame %d beyond memory", vmo.koid, frame)
            if frame in free_set or (frame >= mark and frame not in pool.held_above):
                _fail("frame %d is both free and held by koid %d", frame, vmo.koid)
            if frame in pool.orphans:
                _fail("frame %d is both orphaned and held by koid %d", frame, vmo.koid)
            if not 0 <= index < limit:
                _fail("koid %d holds page %d past its size %d", vmo.koid, index, vmo.size)
            owner[frame] = vmo.koid
    for frame in pool.orphans:
        if not pool.pins.get(frame):
            _fail("orphaned frame %d has no pin", frame)
        if frame in free_set or (frame >= mark and frame not in pool.held_above):
            _fail("orphaned frame %d is free", frame)
    for frame, pins in pool.pins.items():
        if pins <= 0:
            _fail("frame %d has %d pins", frame, pins)
        if frame not in owner and frame not in pool.orphans:
            _fail("pinned frame %d is neither held nor orphaned", frame)
    not_free = len(owner) + len(pool.orphans)
    below = sum(1 for frame in owner if frame < mark) + sum(
        1 for frame in pool.orphans if frame < mark)
    if len(free_set) + below != mark:
        _fail("free %d + not free %d below the mark != %d", len(free_set), below, mark)
    if not_free - below != len(pool.held_above):
        _fail("%d frames held above the mark, %d recorded", not_free - below,
              len(pool.held_above))
    if pool_free_count(pool) + not_free != total:
        _fail("free count %d + held %d + orphaned %d != total %d", pool_free_count(pool),
              len(owner), len(pool.orphans), total)
    for frame in pool.written:
        if frame not in owner and frame not in pool.orphans:
            _fail("frame %d has content but is not held", frame)
    return not_free


def _check_objects(state, vmos):
    """References, parent links, acyclic chains."""
    objects = state.objects
    expected_refs = dict.fromkeys(objects, 0)
    for value, entry in state.handles.entries.items():
        koid = entry.obj.koid
        if objects.get(koid) is not entry.obj:
            _fail("handle %#x refers to a dead object (koid %d)", value, koid)
        expected_refs[koid] += 1
    for vmo in vmos:
        if not 0 <= vmo.size <= MX_VMO_MAX_SIZE:
            _fail("koid %d has size %d", vmo.koid, vmo.size)
        parent = vmo.parent
        if parent is not None:
            if objects.get(parent.koid) is not parent:
                _fail("koid %d has a dead parent (koid %d)", vmo.koid, parent.koid)
            if not isinstance(parent, VmoObject):
                _fail("koid %d has a non-VMO parent", vmo.koid)
            if vmo.parent_offset % PAGE_SIZE or not 0 <= vmo.parent_offset <= _U64_MAX:
                _fail("koid %d has parent offset %d", vmo.koid, vmo.parent_offset)
            expected_refs[parent.koid] += 1
    for koid, obj in objects.items():
        if obj.koid != koid or not FIRST_KOID <= koid < state.next_koid:
            _fail("object registered under koid %d has koid %d", koid, obj.koid)
        if obj.refs != expected_refs[koid]:
            _fail("koid %d has refcount %d, expected %d", koid, obj.refs, expected_refs[koid])
        if obj.refs <= 0:
            _fail("koid %d is live without references", koid)
    acyclic = set()
    for vmo in vmos:
        chain = set()
        node = vmo
        while node is not None and node.koid not in acyclic:
            if node.koid in chain:
                _fail("parent chain through koid %d is cyclic", node.koid)
            chain.add(node.koid)
            node = node.parent
        acyclic |= chain


def _check_handles(ht):
    """Live and free slots partition [0, next_slot); generations match."""
    if not 0 <= ht.next_slot <= MX_MAX_HANDLES:
        _fail("next_slot %d outside [0, %d]", ht.next_slot, MX_MAX_HANDLES)
    free_slots = set(ht.free_slots)
    if len(free_slots) != len(ht.free_slots):
        _fail("a slot is on the free slot stack twice")
    live_slots = set()
    for value in ht.entries:
        if value & 1 == 0 or not 0 < value < (1 << 31):
            _fail("handle value %#x is not odd, positive and below 2**31", value)
        slot = ht_slot(value)
        generation = value >> (SLOT_BITS + 1)
        if slot in live_slots:
            _fail("slot %d holds two handles", slot)
        if slot in free_slots:
            _fail("slot %d is both free and live", slot)
        if slot >= ht.next_slot:
            _fail("slot %d is not below next_slot %d", slot, ht.next_slot)
        if generation != ht.generations.get(slot, 0):
            _fail("handle %#x has a stale generation", value)
        live_slots.add(slot)
    for slot in free_slots:
        if not 0 <= slot < ht.next_slot:
            _fail("free slot %d is not below next_slot %d", slot, ht.next_slot)
    if len(live_slots) + len(free_slots) != ht.next_slot:
        _fail("live %d + free %d slots != next_slot %d", len(live_slots), len(free_slots),
              ht.next_slot)


def _check_cache(state, vmos):
    """The cache model: within its capacity; every line of a frame some VMO holds as its own
    page (a freed frame has lost its lines), named by that VMO's koid and the line's offset
    there; whole lines of the line size."""
    cache = state.cache
    if cache.capacity is not None and len(cache.lines) > cache.capacity:
        _fail("cache holds %d lines, capacity %d", len(cache.lines), cache.capacity)
    holders = {}
    for vmo in vmos:
        for index, frame in vmo.pages.items():
            holders[frame] = (vmo.koid, index * PAGE_SIZE)
    for (frame, index), line in cache.lines.items():
        if frame not in holders:
            _fail("cache line of frame %d, which no VMO holds", frame)
        koid, offset = holders[frame]
        if (line.koid, line.offset) != (koid, offset + index * cache.line_size):
            _fail("cache line of frame %d names koid %s offset %s", frame, line.koid,
                  line.offset)
        if len(line.data) != cache.line_size:
            _fail("cache line of frame %d holds %d bytes", frame, len(line.data))
