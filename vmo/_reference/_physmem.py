"""Physical memory as devices see it (`phys_*`): range checks, device reads and writes, pins,
and the pinned exporter behind `Kernel.phys_view`.

docs/semantics.md "Physical access". Failures raise `MxError`, as the public calls do.
"""

import ctypes
import functools

from ..constants import PAGE_SIZE
from ..errors import MxError, Status
from ._frames import (
    frame_read,
    frame_write,
    pool_frame_of,
    pool_is_free,
    pool_mark_dirty,
    pool_pin,
    pool_unpin,
)

__all__ = ["phys_pin", "phys_range", "phys_read", "phys_unpin", "phys_view", "phys_write"]


def phys_range(pool, paddr, length):
    """(first frame, frames touched) of ``[paddr, paddr+length)``, which must lie inside one
    arena (ERR_OUT_OF_RANGE; a zero-length range may sit anywhere from an arena's start to
    its end) and touch only frames held by a VMO (ERR_BAD_STATE)."""
    found = pool_frame_of(pool, paddr)
    if found is None and length == 0 and paddr > 0:
        found = pool_frame_of(pool, paddr - 1)  # the very end of an arena
        if found is not None and paddr != found[1]:
            found = None
    if found is None:
        raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
    first, end = found
    if length > end - paddr:
        raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
    if length == 0:
        return first, 0
    count = (paddr % PAGE_SIZE + length - 1) // PAGE_SIZE + 1
    freed = set(pool.free_list)
    for frame in range(first, first + count):
        if pool_is_free(pool, frame, freed) or frame in pool.orphans:
            raise MxError(Status.ERR_BAD_STATE, "a page of the range is not held by any VMO")
    return first, count


def phys_read(pool, paddr, length):
    """What a device reads at ``paddr``: ``length`` bytes (errors as `phys_range`)."""
    first, _ = phys_range(pool, paddr, length)
    return frame_read(pool, first, paddr % PAGE_SIZE, length) if length else b""


def phys_write(pool, paddr, data):
    """A device writes the bytes ``data`` at ``paddr`` (errors as `phys_range`); returns the
    bytes written."""
    first, count = phys_range(pool, paddr, len(data))
    if data:
        frame_write(pool, first, paddr % PAGE_SIZE, data)
    for frame in range(first, first + count):
        pool_mark_dirty(pool, frame)
    return len(data)


def phys_pin(pool, first, count):
    """Pin the frames ``[first, first+count)`` of a new view, and count them as written:
    whatever the device writes through it is not tracked."""
    for frame in range(first, first + count):
        pool_pin(pool, frame)
        pool_mark_dirty(pool, frame)


def phys_unpin(state, first, count):
    """A view over frames ``[first, first+count)`` went (ascending frame order): a frame
    whose last pin goes and that no VMO holds is freed now. Nothing once the kernel closed."""
    if state.closed:
        return
    for frame in range(first, first + count):
        pool_unpin(state.pool, frame)


class _PinnedBytes:
    """Mixin of the exporters behind `phys_view`: a ctypes byte array over physical memory
    whose ``unpin`` runs when it dies, that is when the last memoryview taken from it is
    released or dropped."""

    def __del__(self):
        unpin = self.__dict__.pop("unpin", None)
        if unpin is not None:
            unpin()


@functools.lru_cache(maxsize=64)
def _pinned_bytes_type(length):
    """The `_PinnedBytes` ctypes array type of ``length`` bytes."""
    return type(f"_PinnedBytes{length}", (_PinnedBytes, ctypes.c_ubyte * length), {})


def phys_view(state, paddr, length):
    """A writable, zero-copy memoryview (format "B") of ``[paddr, paddr+length)``, pinning
    every frame it touches until it is released (errors as `phys_range`)."""
    pool = state.pool
    first, count = phys_range(pool, paddr, length)
    offset = first * PAGE_SIZE + paddr % PAGE_SIZE if length else 0
    exporter = _pinned_bytes_type(length).from_buffer(pool.mem, offset)
    phys_pin(pool, first, count)
    exporter.unpin = functools.partial(phys_unpin, state, first, count)
    return memoryview(exporter).cast("B")
