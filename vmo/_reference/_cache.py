"""The CPU data cache of a non-coherent machine, simply (docs/cache-model.md): the
executable spec of `vmo/_cache.pyx`, with the same function names.

Lines live in an OrderedDict keyed by (frame, line index), least recently used first; each
holds its bytes, its dirty and stale flags, and the VMO (koid) holding the frame and the
line's offset there, fixed while the line lives. Events are `CoherencyEvent` records.
"""

from collections import OrderedDict

from .._coherency import CoherencyEvent
from ..constants import PAGE_SIZE
from ._frames import frame_read, frame_write, pool_paddr

__all__ = ["CpuCache", "cache_cpu", "cache_device", "cache_forget_frame", "cache_op_page"]

CACHE_CLEAN_OP, CACHE_INVALIDATE_OP, CACHE_CLEAN_INVALIDATE_OP = range(3)


class _Line:
    __slots__ = ("data", "dirty", "koid", "offset", "stale")

    def __init__(self, data, koid, offset):
        self.data = data
        self.dirty = False
        self.stale = False
        self.koid = koid
        self.offset = offset


class CpuCache:
    """Lines of ``line_size`` bytes, at most ``capacity`` of them (None: unbounded)."""

    def __init__(self, line_size, capacity):
        self.line_size = line_size
        self.capacity = capacity
        self.lines = OrderedDict()
        self.events = []
        self.delivered = 0

    @property
    def dirty_lines(self):
        return sum(1 for line in self.lines.values() if line.dirty)


def _event(cache, state, kind, key):
    """Keep an event about the line ``key``, at most one per line per call."""
    line = cache.lines[key]
    frame, index = key
    event = CoherencyEvent(kind, pool_paddr(state.pool, frame) + index * cache.line_size,
                           line.koid, line.offset, state.seq)
    if cache.events and cache.events[-1] == event:
        return
    cache.events.append(event)


def _write_back(cache, pool, key):
    line = cache.lines[key]
    frame, index = key
    frame_write(pool, frame, index * cache.line_size, bytes(line.data))
    line.dirty = line.stale = False


def _fill(cache, pool, key, koid, offset):
    """A new line from RAM, most recently used; the least recently used goes first when the
    cache is full (written back if dirty, no event)."""
    if cache.capacity is not None and len(cache.lines) >= cache.capacity:
        oldest = next(iter(cache.lines))
        if cache.lines[oldest].dirty:
            _write_back(cache, pool, oldest)
        del cache.lines[oldest]
    frame, index = key
    data = bytearray(frame_read(pool, frame, index * cache.line_size, cache.line_size))
    cache.lines[key] = _Line(data, koid, offset)


def cache_cpu(state, frame, page_off, buf, write, koid, page_offset):
    """A CPU read (into the bytearray ``buf``) or write (from it) at ``page_off`` of
    ``frame``, held by VMO ``koid`` at byte ``page_offset``, line by line."""
    cache, pool, size = state.cache, state.pool, cache_line_size(state)
    pos, end, done = page_off, page_off + len(buf), 0
    while pos < end:
        index = pos // size
        lo = pos - index * size
        count = min(size - lo, end - pos)
        key = (frame, index)
        line = cache.lines.get(key)
        if line is None:
            _fill(cache, pool, key, koid, page_offset + index * size)
            line = cache.lines[key]
        elif not write and line.stale:
            _event(cache, state, "cpu-read-stale", key)
        cache.lines.move_to_end(key)
        if write:
            line.data[lo:lo + count] = buf[done:done + count]
            line.dirty = True
        else:
            buf[done:done + count] = line.data[lo:lo + count]
        pos += count
        done += count


def cache_line_size(state):
    return state.cache.line_size


def cache_device(state, paddr, first, length, write):
    """A device read or write of [paddr, paddr+length) (a checked range from frame
    ``first``): a read of a dirty line is an event; a write makes the lines stale."""
    cache, size = state.cache, state.cache.line_size
    start = paddr % PAGE_SIZE
    for pos in range(start, start + length):
        if pos != start and pos % size:
            continue
        key = (first + pos // PAGE_SIZE, pos % PAGE_SIZE // size)
        line = cache.lines.get(key)
        if line is None:
            continue
        if write:
            line.stale = True
        elif line.dirty:
            _event(cache, state, "device-read-dirty", key)


def cache_op_page(state, frame, lo, hi, op):
    """A cache op on the lines of ``frame`` overlapping bytes [lo, hi) of it."""
    cache, size = state.cache, state.cache.line_size
    for index in range(lo // size, (hi - 1) // size + 1):
        key = (frame, index)
        line = cache.lines.get(key)
        if line is None:
            continue
        if op == CACHE_INVALIDATE_OP:
            if line.dirty:
                _event(cache, state, "invalidate-dirty", key)
            del cache.lines[key]
            continue
        if line.dirty:
            _write_back(cache, state.pool, key)
        if op == CACHE_CLEAN_INVALIDATE_OP:
            del cache.lines[key]


def cache_forget_frame(cache, frame):
    """A freed frame loses its lines, dirty ones unwritten, without events."""
    for key in [key for key in cache.lines if key[0] == frame]:
        del cache.lines[key]
