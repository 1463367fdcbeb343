"""Validation of a kernel's physical memory layout, shared by both kernels."""

import operator

from .constants import PAGE_SIZE

__all__ = ["memory_map", "merge_arenas"]

#: Frame numbers are 32-bit in the page tables (frame + 1, 0 = no page).
MAX_FRAMES = (1 << 32) - 2
DEFAULT_MEMORY_SIZE = 1 << 30
DEFAULT_MEMORY_BASE = 0x100000


def memory_map(memory_size=None, memory_base=None, memory=None):
    """The list of (base, size) RAM ranges of a kernel, in allocation order.

    Either ``memory_size``/``memory_base`` (one range; defaults 1 GiB at 0x100000; a base of 0
    is allowed, as a PC has RAM at 0) or ``memory``, a sequence of (base, size) ranges: the
    arenas, allocated in the order given and ascending inside each. Every base and size must be
    a multiple of 4096, every size positive, ranges must not overlap and must end at or below
    2**64, and the total is at most 2**32 - 2 pages. Raises ValueError otherwise, TypeError for
    non-integers.
    """
    if memory is not None:
        if memory_size is not None or memory_base is not None:
            raise ValueError("give either memory=[(base, size), ...] or memory_size/memory_base")
        ranges = []
        for item in memory:
            try:
                base, size = item
            except (TypeError, ValueError):
                raise ValueError("memory ranges are (base, size) pairs, not %r" % (item,)) from None
            ranges.append((operator.index(base), operator.index(size)))
        if not ranges:
            raise ValueError("memory needs at least one (base, size) range")
    else:
        size = DEFAULT_MEMORY_SIZE if memory_size is None else operator.index(memory_size)
        base = DEFAULT_MEMORY_BASE if memory_base is None else operator.index(memory_base)
        ranges = [(base, size)]
    total = 0
    for base, size in ranges:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError("memory size %#x is not a positive multiple of 4096" % size)
        if base < 0 or base % PAGE_SIZE:
            raise ValueError("memory base %#x is not a multiple of 4096" % base)
        if base + size > 1 << 64:
            raise ValueError("memory range %#x+%#x ends above 2**64" % (base, size))
        total += size // PAGE_SIZE
    if total > MAX_FRAMES:
        raise ValueError("physical memory is limited to %d pages" % MAX_FRAMES)
    ordered = sorted(ranges)
    for (b1, s1), (b2, _) in zip(ordered, ordered[1:]):
        if b1 + s1 > b2:
            raise ValueError("memory ranges %#x+%#x and %#x overlap" % (b1, s1, b2))
    if len(ranges) > 64:
        raise ValueError("at most 64 memory ranges")
    return ranges


def merge_arenas(ranges):
    """The arenas of a validated memory map: ``[(base, first_frame, nframes), ...]``.

    Frames are numbered consecutively across the ranges in the order given. Ranges adjacent
    in both address and order (one ends where the next given one starts) form one arena, so
    physical accesses and views may cross from one into the next, as on the board.
    """
    arenas = []
    first = 0
    for base, size in ranges:
        count = size // PAGE_SIZE
        if arenas and arenas[-1][0] + arenas[-1][2] * PAGE_SIZE == base:
            arenas[-1][2] += count
        else:
            arenas.append([base, first, count])
        first += count
    return [tuple(arena) for arena in arenas]
