"""The frame allocator: which frames of physical memory are free, held, pinned and written.

docs/semantics.md "Frames and physical addresses". Frames are numbered 0, 1, ... across the
arenas in the order the memory map gave them; frame f is bytes [f * 4096, (f + 1) * 4096) of
one anonymous mapping. A LIFO list of freed frames (bottom first) sits on top of the fresh
region, the frames at or above the fresh mark that were never handed out (ascending). A
contiguous run may hold fresh frames above the mark: those are in ``held_above`` and the mark
steps over them, so it always sits on a free frame or the end.

Plain functions over a `FramePool`, named as the core's (`pool_take`, `pool_give`, ...).
"""

import mmap
import sys
import weakref

from ..constants import PAGE_SIZE

__all__ = [
    "FramePool", "frame_copy", "frame_read", "frame_write", "pool_destroy", "pool_find_run",
    "pool_frame_of", "pool_free_count", "pool_give", "pool_is_free", "pool_list", "pool_log",
    "pool_mark_dirty", "pool_paddr", "pool_pin", "pool_take", "pool_take_run", "pool_unpin",
]

_ZERO_PAGE = bytes(PAGE_SIZE)
# Reserve address space only, as the core's arena does (the name is in Python >= 3.13 only;
# 0x4000 is its value on Linux for x86 and ARM).
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)


class FramePool:
    """Physical memory and its allocator.

    ``arenas``: ((base paddr, first frame, frames), ...) as `vmo._memmap.merge_arenas` gives.
    """

    __slots__ = ("arenas", "cache", "free_list", "held_above", "log", "mem", "next_fresh",
                 "nframes", "orphans", "pins", "snapshots", "written")

    def __init__(self, arenas):
        self.arenas = tuple(arenas)
        self.nframes = sum(count for _, _, count in self.arenas)
        # Reserved, populated by the host only where written (so it may be far larger than
        # the host's RAM). Physical views export slices of it.
        self.mem = mmap.mmap(-1, self.nframes * PAGE_SIZE,
                             flags=mmap.MAP_PRIVATE | _MAP_NORESERVE)
        self.written = set()     # frames that may hold nonzero bytes; every other one is zero
        self.next_fresh = 0
        self.free_list = []      # freed frames below the mark, bottom first
        self.held_above = set()  # frames at or above the mark held anyway (contiguous runs)
        self.pins = {}           # frame -> live physical views over it
        self.orphans = set()     # pinned frames their VMO let go of: freed with the last pin
        self.log = set()         # the dirty log: frames whose bytes may have changed
        # Live snapshots (_snapshot.Snapshot), each noting the frames logged since it was
        # taken (a restore logs them again).
        self.snapshots = weakref.WeakSet()
        self.cache = None        # the CPU cache (non-coherent kernels): loses freed frames' lines


def pool_destroy(pool):
    """Unmap physical memory, unless live views still export it (it goes with the last)."""
    mem, pool.mem = pool.mem, None
    try:
        mem.close()
    except BufferError:  # exported to live views: unmapped when the last one goes
        pass
    pool.written = set()
    pool.free_list = []


# -- addresses -----------------------------------------------------------------------------------

def pool_paddr(pool, frame):
    """Physical address of ``frame``: arenas hold consecutive frames, in order."""
    for base, first, count in pool.arenas:
        if first <= frame < first + count:
            return base + (frame - first) * PAGE_SIZE
    raise AssertionError(f"no frame {frame}")


def pool_frame_of(pool, paddr):
    """(frame holding physical address ``paddr``, end address of its arena), or None in a
    hole."""
    for base, first, count in pool.arenas:
        end = base + count * PAGE_SIZE
        if base <= paddr < end:
            return first + (paddr - base) // PAGE_SIZE, end
    return None


# -- allocation ----------------------------------------------------------------------------------

def pool_free_count(pool):
    """Frames free: the freed list plus the fresh frames no run holds."""
    return pool.nframes - pool.next_fresh - len(pool.held_above) + len(pool.free_list)


def pool_is_free(pool, frame, freed):
    """True if ``frame`` is free; ``freed`` is ``set(pool.free_list)``."""
    if frame >= pool.next_fresh:
        return frame not in pool.held_above
    return frame in freed


def _step_fresh(pool):
    """Keep the fresh mark on a free frame (or the end): step over frames held above it."""
    while pool.next_fresh in pool.held_above:
        pool.held_above.remove(pool.next_fresh)
        pool.next_fresh += 1


def pool_take(pool):
    """A zero frame: the last freed one, else the lowest fresh one; None when none is left."""
    if pool.free_list:
        return pool.free_list.pop()
    if pool.next_fresh == pool.nframes:
        return None
    frame = pool.next_fresh
    pool.next_fresh += 1
    _step_fresh(pool)
    return frame


def _free_one(pool, frame):
    """Make the unpinned, no longer held ``frame`` free: zeroed (a reused frame reads as
    zero), then back to the fresh region if at or above the mark, else on the list."""
    if frame in pool.written:
        pool.mem[frame * PAGE_SIZE:(frame + 1) * PAGE_SIZE] = _ZERO_PAGE
        pool.written.remove(frame)
        pool_log(pool, frame)
    if frame >= pool.next_fresh:
        pool.held_above.remove(frame)
    else:
        pool.free_list.append(frame)


def pool_give(pool, frames):
    """A VMO let go of ``frames``: free them in the order given (the last is reused first);
    a pinned one is orphaned instead, and freed with its last pin (`pool_unpin`)."""
    for frame in frames:
        if pool.cache is not None:
            from ._cache import cache_forget_frame
            cache_forget_frame(pool.cache, frame)
        if frame in pool.pins:
            pool.orphans.add(frame)
        else:
            _free_one(pool, frame)


def pool_find_run(pool, count, alignment):
    """First fit: the lowest frame (arenas in order) starting ``count`` free frames inside
    one arena at a physical address that is a multiple of ``alignment``; or None."""
    freed = set(pool.free_list)
    for base, first, frames in pool.arenas:
        end = first + frames
        start = first + (-base % alignment) // PAGE_SIZE  # the arena's first aligned frame
        while start + count <= end:
            busy = next((f for f in range(start, start + count)
                         if not pool_is_free(pool, f, freed)), None)
            if busy is None:
                return start
            start = busy + 1  # the next candidate: the first aligned frame past it
            start += (-(base + (start - first) * PAGE_SIZE) % alignment) // PAGE_SIZE
    return None


def pool_take_run(pool, start, count):
    """Take the free frames ``[start, start+count)`` wherever they are: out of the free list
    (the rest keeps its order) or out of the fresh region."""
    run = range(start, start + count)
    pool.free_list = [f for f in pool.free_list if f not in run]
    pool.held_above.update(f for f in run if f >= pool.next_fresh)
    _step_fresh(pool)


def pool_list(pool):
    """The freed list, bottom first."""
    return list(pool.free_list)


# -- pins (physical views) -----------------------------------------------------------------------

def pool_pin(pool, frame):
    """One more live view over the held ``frame``: it is not freed until unpinned."""
    pool.pins[frame] = pool.pins.get(frame, 0) + 1


def pool_unpin(pool, frame):
    """A view over ``frame`` went; at its last pin a frame its VMO let go of is freed."""
    pool.pins[frame] -= 1
    if pool.pins[frame] == 0:
        del pool.pins[frame]
        if frame in pool.orphans:
            pool.orphans.remove(frame)
            _free_one(pool, frame)


# -- bytes ---------------------------------------------------------------------------------------

def pool_log(pool, frame):
    """``frame``'s bytes (may) change: into the dirty log, and into what every live snapshot
    notes (docs/semantics.md "The dirty log")."""
    pool.log.add(frame)
    for snapshot in pool.snapshots:
        snapshot.logged.add(frame)


def pool_mark_dirty(pool, frame):
    """``frame`` may now hold nonzero bytes (zeroed before it is handed out again)."""
    pool.written.add(frame)
    pool_log(pool, frame)


def frame_read(pool, frame, start, length):
    """``length`` bytes of ``frame`` from byte ``start``."""
    offset = frame * PAGE_SIZE + start
    return pool.mem[offset:offset + length]


def frame_write(pool, frame, start, data):
    """Write ``data`` into ``frame`` from byte ``start``."""
    offset = frame * PAGE_SIZE + start
    pool.mem[offset:offset + len(data)] = data
    pool_mark_dirty(pool, frame)


def frame_copy(pool, source, dest):
    """Copy the whole page ``source`` into the (zero) frame ``dest``."""
    if source in pool.written:
        frame_write(pool, dest, 0, frame_read(pool, source, 0, PAGE_SIZE))
