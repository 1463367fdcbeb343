"""VMO and event objects and their unchecked operations (`vmo_*`), below the handle checks.

docs/semantics.md "Page faults", "COMMIT on a clone", "DECOMMIT", "Shrink", "Objects". The
callers (the syscall layer) have checked the handle and its rights; what is left here is
Magenta's object code: TrimRange/InRange, faults, commit, decommit, resize, the read/write
chunk loop, LOOKUP and the cache ops. Clone chains are walked with loops, not recursion,
because they may be thousands deep.
"""

import struct

from ..constants import MX_VMO_MAX_SIZE, PAGE_SIZE
from ..errors import Status
from ._cache import (
    CACHE_CLEAN_INVALIDATE_OP,
    CACHE_CLEAN_OP,
    CACHE_INVALIDATE_OP,
    cache_cpu,
    cache_op_page,
)
from ._frames import frame_copy, frame_read, frame_write, pool_free_count, pool_paddr, pool_take
from ._pagetable import PAGE_LIMIT, pt_count, pt_get, pt_remove, pt_set

__all__ = [
    "EventObject", "VmoObject", "event_new", "in_range", "page_ceil", "trim_range",
    "vmo_cache_op", "vmo_commit", "vmo_decommit", "vmo_fault_cost", "vmo_find_holder",
    "vmo_find_page", "vmo_lookup", "vmo_lookup_runs", "vmo_new", "vmo_visible_runs",
    "notify_before", "notify_after", "vmo_resize", "vmo_transfer", "vmo_unref", "vmo_write_fault",
]

_U64_MAX = (1 << 64) - 1
NO_ERROR = Status.NO_ERROR
ERR_INVALID_ARGS = Status.ERR_INVALID_ARGS
ERR_NO_MEMORY = Status.ERR_NO_MEMORY
ERR_OUT_OF_RANGE = Status.ERR_OUT_OF_RANGE
ERR_BUFFER_TOO_SMALL = Status.ERR_BUFFER_TOO_SMALL


# -- range arithmetic (docs/magenta.md 3.0) ------------------------------------------------------
# Offsets and sizes are Python ints; the wrapping of C's unsigned 64-bit arithmetic is spelled
# out where the kernel depends on it (TrimRange, InRange, LOOKUP's buffer size).

def page_ceil(offset):
    """Number of pages needed to cover bytes ``[0, offset)``."""
    return -(-offset // PAGE_SIZE)


def trim_range(offset, length, size):
    """Magenta's TrimRange: the usable length of ``[offset, offset+length)`` in a VMO of
    ``size`` bytes, or None when ``offset+length`` wraps 64 bits or ``offset > size``."""
    if offset + length > _U64_MAX or offset > size:
        return None
    return min(length, size - offset)


def in_range(offset, length, size):
    """Magenta's InRange: ``[offset, offset+length)`` lies inside ``[0, size)`` without wrapping."""
    end = offset + length
    return end <= _U64_MAX and offset <= size and end <= size


# -- change notifications (docs/semantics.md "Change notifications") ---------------------------
# The executable spec, literally: before a call that may change which frames back pages, the
# pages every watched VMO sees; after it, one event per maximal range of pages that had a
# frame and now have another or none (watched VMOs in koid order, ranges ascending). The
# compiled core looks only at the VMO changed and its descendants, in the range changed.

def _visible(state, vmo):
    """{page index: paddr} of every page of ``vmo`` that shows a frame."""
    pages = {}
    for offset, paddr, length, _ in vmo_visible_runs(state, vmo, 0, page_ceil(vmo.size)):
        for i in range(length // PAGE_SIZE):
            pages[offset // PAGE_SIZE + i] = paddr + i * PAGE_SIZE
    return pages


def notify_before(state):
    """The snapshot of every watched VMO (None when nothing is watched)."""
    if not state.watches:
        return None
    watched = {entry[1]: entry[2] for entry in state.watches if entry[2] is not None}
    return [(koid, vmo, _visible(state, vmo)) for koid, vmo in sorted(watched.items())]


def notify_after(state, snapshot):
    """Queue the events of the change since ``snapshot``."""
    if snapshot is None:
        return
    for koid, vmo, before in snapshot:
        after = _visible(state, vmo)
        changed = sorted(i for i, paddr in before.items() if after.get(i) != paddr)
        start = None
        for n, index in enumerate(changed):
            if start is None:
                start = index
            if n + 1 == len(changed) or changed[n + 1] != index + 1:
                state.events.append((koid, start * PAGE_SIZE, (index + 1 - start) * PAGE_SIZE,
                                     False))
                start = None


def _notify_destroyed(state, vmo):
    """``vmo`` goes: its subscriptions get one event for the whole VMO and end."""
    watched = False
    for entry in state.watches:
        if entry[2] is vmo:
            entry[2] = None
            watched = True
    if watched:
        state.events.append((vmo.koid, 0, page_ceil(vmo.size) * PAGE_SIZE, True))


# -- objects -------------------------------------------------------------------------------------

class VmoObject:
    """A paged VMO: byte size, own pages (a page table: page index -> frame), and for a clone
    its parent. ``refs`` counts the handles to it plus its live clone children."""

    __slots__ = ("koid", "pages", "parent", "parent_offset", "refs", "size")

    def __init__(self, koid, size, parent, parent_offset):
        self.koid = koid
        self.size = size
        self.pages = {}
        self.parent = parent
        self.parent_offset = parent_offset
        self.refs = 1


class EventObject:
    """Magenta's event: a minimal non-VMO object (it only has a koid and references)."""

    __slots__ = ("koid", "refs")

    def __init__(self, koid):
        self.koid = koid
        self.refs = 1


def _register(state, obj):
    state.objects[obj.koid] = obj
    return obj


def _take_koid(state):
    koid = state.next_koid
    state.next_koid += 1
    return koid


def vmo_new(state, size, parent=None, parent_offset=0):
    """A new VMO of ``size`` bytes (a clone of ``parent`` at ``parent_offset``, whose
    reference it takes), with one reference: for the handle about to be installed."""
    vmo = VmoObject(_take_koid(state), size, parent, parent_offset)
    if parent is not None:
        parent.refs += 1
    return _register(state, vmo)


def event_new(state):
    """A new event with one reference: for the handle about to be installed."""
    return _register(state, EventObject(_take_koid(state)))


def vmo_unref(state, obj):
    """Drop one reference to ``obj`` (a VMO or an event); destroy it when none is left: free
    its pages (ascending page index), then drop its reference on its parent, and so on up
    the chain (a loop, as clone chains may be thousands deep)."""
    while obj is not None:
        obj.refs -= 1
        if obj.refs:
            return
        del state.objects[obj.koid]
        if not isinstance(obj, VmoObject):
            return
        if state.watches:
            _notify_destroyed(state, obj)
        pt_remove(obj.pages, 0, PAGE_LIMIT, state.pool)
        obj.parent, obj = None, obj.parent


# -- page faults (docs/semantics.md "Page faults") -----------------------------------------------

def _fault_path(vmo, offset):
    """Walk up the clone chain looking for the page holding byte ``offset`` of ``vmo``.

    Returns (path, frame): ``frame`` is the first page found (own or an ancestor's) or None;
    ``path`` lists the (vmo, byte_offset) levels visited that do not hold it, starting with
    ``vmo`` itself. Each level bounds the search with its own size at the byte offset asked
    of it; an ancestor offset past 2**64 - 1 finds nothing.
    """
    path = []
    while offset < vmo.size:
        frame = pt_get(vmo.pages, offset // PAGE_SIZE)
        if frame is not None:
            return path, frame
        path.append((vmo, offset))
        if vmo.parent is None:
            break
        offset += vmo.parent_offset
        if offset > _U64_MAX:
            break
        vmo = vmo.parent
    return path, None


def vmo_find_holder(vmo, offset):
    """(frame, koid, offset) of the page a read of byte ``offset`` of ``vmo`` sees: the VMO
    holding it as its own page and the byte offset there; (None, None, None) if none."""
    while offset < vmo.size:
        frame = pt_get(vmo.pages, offset // PAGE_SIZE)
        if frame is not None:
            return frame, vmo.koid, offset
        if vmo.parent is None or offset + vmo.parent_offset > _U64_MAX:
            break
        offset += vmo.parent_offset
        vmo = vmo.parent
    return None, None, None


def vmo_find_page(vmo, offset):
    """The frame a read of byte ``offset`` of ``vmo`` sees (own or an ancestor's), or None
    (it reads as zero). Never allocates."""
    return _fault_path(vmo, offset)[1]


def vmo_fault_cost(vmo, offset):
    """Frames `vmo_write_fault` would take for byte ``offset`` of ``vmo`` (0 if it holds the
    page; the holder's depth if an ancestor holds it; else 1)."""
    path, frame = _fault_path(vmo, offset)
    if frame is None:
        return 1
    return len(path)


def vmo_write_fault(state, vmo, offset):
    """(status, frame): the page of ``vmo`` holding byte ``offset``, made its own.

    Own page -> it. Else, if an ancestor holds the page, every level between the holder and
    ``vmo`` gets a private copy of the whole page (the copy closest to the holder is
    allocated first); else ``vmo`` gets a zero frame. ERR_NO_MEMORY when a frame is lacking
    (copies already made stay); ERR_OUT_OF_RANGE for ``offset >= vmo.size``.
    """
    if offset >= vmo.size:
        return ERR_OUT_OF_RANGE, None
    path, frame = _fault_path(vmo, offset)
    if frame is None:
        path = path[:1]  # nobody holds the page: only vmo itself takes a (zero) frame
    pool = state.pool
    _, koid, holder_offset = vmo_find_holder(vmo, offset)
    for level, level_offset in reversed(path):
        new = pool_take(pool)
        if new is None:
            return ERR_NO_MEMORY, None
        if frame is not None and state.cache is not None:
            # Non-coherent: the kernel's copy is a CPU read of the page and a CPU write.
            page = bytearray(PAGE_SIZE)
            cache_cpu(state, frame, 0, page, False, koid, holder_offset - holder_offset % PAGE_SIZE)
            cache_cpu(state, new, 0, page, True, level.koid,
                      level_offset - level_offset % PAGE_SIZE)
        elif frame is not None:
            frame_copy(pool, frame, new)
        pt_set(level.pages, level_offset // PAGE_SIZE, new)
        frame, koid, holder_offset = new, level.koid, level_offset
    return NO_ERROR, frame


# -- operations ----------------------------------------------------------------------------------

def vmo_transfer(state, vmo, offset, buf, write):
    """The read/write chunk loop over ``buf`` at ``offset`` (inside the VMO, trimmed), one
    chunk per page: ``write`` False fills the zero-initialised ``buf`` with what the VMO shows
    (never commits); ``write`` True writes it, write-faulting each page. Returns a status;
    chunks written before an ERR_NO_MEMORY stay written."""
    if write and vmo.parent is not None and state.watches:
        snapshot = notify_before(state)  # a clone's write faults may replace frames it saw
        try:
            return _transfer(state, vmo, offset, buf, write)
        finally:
            notify_after(state, snapshot)
    return _transfer(state, vmo, offset, buf, write)


def _transfer(state, vmo, offset, buf, write):
    pool = state.pool
    length = len(buf)
    done = 0
    while done < length:
        start = offset + done
        in_page = start % PAGE_SIZE
        count = min(PAGE_SIZE - in_page, length - done)
        if state.cache is not None:
            status = _transfer_cached(state, vmo, start, in_page, buf, done, count, write)
            if status:
                return status
        elif write:
            status, frame = vmo_write_fault(state, vmo, start)
            if status:
                return status
            frame_write(pool, frame, in_page, buf[done:done + count])
        else:
            frame = vmo_find_page(vmo, start)
            if frame is not None:
                buf[done:done + count] = frame_read(pool, frame, in_page, count)
        done += count
    return NO_ERROR


def _transfer_cached(state, vmo, start, in_page, buf, done, count, write):
    """One chunk of vmo_transfer on a non-coherent kernel, through the CPU cache."""
    if write:
        status, frame = vmo_write_fault(state, vmo, start)
        if status:
            return status
        chunk = bytearray(buf[done:done + count])
        cache_cpu(state, frame, in_page, chunk, True, vmo.koid, start - in_page)
        return NO_ERROR
    frame, koid, holder_offset = vmo_find_holder(vmo, start)
    if frame is not None:
        chunk = bytearray(count)
        cache_cpu(state, frame, in_page, chunk, False, koid, holder_offset - in_page)
        buf[done:done + count] = chunk
    return NO_ERROR


def vmo_commit(state, vmo, offset, size):
    """COMMIT (docs/magenta.md 3.6.1), all or nothing: write-fault each missing page in
    ascending order (a clone copies what it saw), after counting the frames needed."""
    trimmed = trim_range(offset, size, vmo.size)
    if trimmed is None:
        return ERR_OUT_OF_RANGE
    if trimmed == 0:
        return NO_ERROR
    first, end = offset // PAGE_SIZE, page_ceil(offset + trimmed)
    missing_count = (end - first) - pt_count(vmo.pages, first, end)
    if missing_count == 0:
        return NO_ERROR
    free = pool_free_count(state.pool)
    if missing_count > free:  # every missing page costs at least one frame
        return ERR_NO_MEMORY
    missing = [index for index in range(first, end) if pt_get(vmo.pages, index) is None]
    needed = sum(vmo_fault_cost(vmo, index * PAGE_SIZE) for index in missing)
    if needed > free:
        return ERR_NO_MEMORY
    snapshot = notify_before(state)
    for index in missing:
        status, _ = vmo_write_fault(state, vmo, index * PAGE_SIZE)
        assert status == NO_ERROR, status  # counted above
    notify_after(state, snapshot)
    return NO_ERROR


def vmo_decommit(state, vmo, offset, size):
    """DECOMMIT (docs/magenta.md 3.6.2): free the own pages touched by the trimmed range
    (start rounded down); on a clone the ancestor's page shows through again."""
    trimmed = trim_range(offset, size, vmo.size)
    if trimmed is None:
        return ERR_OUT_OF_RANGE
    if trimmed == 0:
        return NO_ERROR
    snapshot = notify_before(state)
    pt_remove(vmo.pages, offset // PAGE_SIZE, page_ceil(offset + trimmed), state.pool)
    notify_after(state, snapshot)
    return NO_ERROR


def vmo_resize(state, vmo, size):
    """Resize to ``size`` bytes (ERR_OUT_OF_RANGE above MX_VMO_MAX_SIZE); shrinking frees the
    own pages past the new end, and the page holding the new end keeps its bytes."""
    if size > MX_VMO_MAX_SIZE:
        return ERR_OUT_OF_RANGE
    snapshot = notify_before(state) if size < vmo.size else None
    if size < vmo.size:
        pt_remove(vmo.pages, page_ceil(size), PAGE_LIMIT, state.pool)
    vmo.size = size
    notify_after(state, snapshot)
    return NO_ERROR


def vmo_lookup(state, vmo, offset, size, view, buffer_size):
    """LOOKUP (docs/magenta.md 3.6.4) after the buffer checks: write the paddr of every page
    touching the range as native uint64 entries into the writable ``view``."""
    # Computed with wrapping 64-bit arithmetic before any range check, as the kernel did.
    first = offset - offset % PAGE_SIZE
    end = ((offset + size) % (1 << 64) + PAGE_SIZE - 1) % (1 << 64)
    end -= end % PAGE_SIZE
    pages = ((end - first) % (1 << 64)) // PAGE_SIZE
    if pages * 8 > buffer_size:
        return ERR_BUFFER_TOO_SMALL
    if size == 0:
        return ERR_INVALID_ARGS
    if not in_range(offset, size, vmo.size):
        return ERR_OUT_OF_RANGE
    # Flat bytes only now, past the checks: casting an empty strided view would raise.
    out = view if view.ndim == 1 and view.format == "B" else view.cast("B")
    for i in range(pages):
        frame = vmo_find_page(vmo, first + i * PAGE_SIZE)
        if frame is None:
            return ERR_NO_MEMORY  # the entries of earlier pages stay written
        struct.pack_into("=Q", out, 8 * i, pool_paddr(state.pool, frame))
    return NO_ERROR


def vmo_visible_runs(state, vmo, first, end):
    """The runs [offset, paddr, length, own] of the pages of ``vmo`` in page indices
    ``[first, end)`` that show a frame (own or an ancestor's: what `vmo_find_page` sees), in
    index order, maximal: a page joins the previous run when it follows it in the VMO and
    in physical memory with the same owner flag."""
    candidates = set()  # every index where some level of the chain holds a page
    level, shift = vmo, 0
    while level is not None and shift <= _U64_MAX:
        candidates.update(index - shift // PAGE_SIZE for index in level.pages)
        shift += level.parent_offset
        level = level.parent
    runs = []
    for index in sorted(i for i in candidates if first <= i < end):
        frame = vmo_find_page(vmo, index * PAGE_SIZE)
        if frame is None:
            continue
        own = pt_get(vmo.pages, index) is not None
        offset, paddr = index * PAGE_SIZE, pool_paddr(state.pool, frame)
        if runs and runs[-1][0] + runs[-1][2] == offset and \
                runs[-1][1] + runs[-1][2] == paddr and runs[-1][3] == own:
            runs[-1][2] += PAGE_SIZE
        else:
            runs.append([offset, paddr, PAGE_SIZE, own])
    return runs


def vmo_lookup_runs(state, vmo, offset, size):
    """Vmo.lookup_runs after the handle -> (status, [(offset, paddr, length, own), ...]):
    LOOKUP's range checks in its order without the buffer ones (ERR_INVALID_ARGS for size 0,
    ERR_OUT_OF_RANGE unless InRange), then the runs of the committed pages touching the
    range; uncommitted pages are skipped."""
    if size == 0:
        return ERR_INVALID_ARGS, []
    if not in_range(offset, size, vmo.size):
        return ERR_OUT_OF_RANGE, []
    runs = vmo_visible_runs(state, vmo, offset // PAGE_SIZE, page_ceil(offset + size))
    return NO_ERROR, [tuple(run) for run in runs]


_CACHE_OP_KIND = {7: CACHE_INVALIDATE_OP, 9: CACHE_CLEAN_INVALIDATE_OP}  # else: clean


def vmo_cache_op(state, vmo, op, offset, size):
    """CACHE_* (docs/magenta.md 3.6.5): ERR_INVALID_ARGS (size 0), ERR_OUT_OF_RANGE. On a
    non-coherent kernel, the op acts on the lines overlapping the range of every page LOOKUP
    would give, by ascending offset (docs/cache-model.md); uncommitted pages are skipped."""
    if size == 0:
        return ERR_INVALID_ARGS
    if not in_range(offset, size, vmo.size):
        return ERR_OUT_OF_RANGE
    if state.cache is not None:
        end = offset + size
        kind = _CACHE_OP_KIND.get(op, CACHE_CLEAN_OP)
        first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
        # A VMO that is not a clone: its committed pages only (a huge range stays cheap).
        indexes = (range(first, last + 1) if vmo.parent is not None else
                   sorted(i for i in vmo.pages if first <= i <= last))
        for index in indexes:
            frame = vmo_find_page(vmo, index * PAGE_SIZE)
            if frame is not None:
                start = index * PAGE_SIZE
                cache_op_page(state, frame, max(offset - start, 0), min(end - start, PAGE_SIZE),
                              kind)
    return NO_ERROR
