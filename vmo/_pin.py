"""`Pin`: a pinned range of physical memory with its host address (`Kernel.pin`).

One implementation serves the compiled kernel and the reference model, as `_pythonic.py`
does: a `Pin` holds the memoryview `phys_view` returns (that call does the checks, the
pinning and, while recording, the trace records: docs/trace-format.md "Views") and adds the
host address and an `unpin` that refuses, with `BufferError`, while anything made from the
view still reaches the pinned bytes (docs/semantics.md "Pins").
"""

import ctypes
import gc
import operator
import sys

__all__ = ["Pin"]


def _holders(view):
    """(memoryviews sharing ``view``'s buffer, other references to its exporter) beyond the
    view itself. CPython's memoryviews made from one another (slices, casts, numpy arrays
    and ``memoryview(view)``) share one managed buffer, which holds one reference per view
    on it, and the managed buffer is the exporter's only holder unless someone else took
    it (``view.obj``): both counts are exact."""
    [managed] = gc.get_referents(view)
    exporter = view.obj
    # Each count minus our local name and getrefcount's argument, and minus the view's own
    # reference (the managed buffer's, for the exporter).
    return sys.getrefcount(managed) - 3, sys.getrefcount(exporter) - 3


class Pin:
    """Physical memory ``[paddr, paddr+length)`` pinned for a device or an emulator:
    its frames are never handed out again until `unpin` (even when their VMO decommits,
    shrinks or closes meanwhile; then they are zeroed before reuse).

    ``paddr``, ``length``; ``address``: the host address of the byte at ``paddr`` (an int,
    for ``mem_map_ptr``-style calls; valid until `unpin`); ``view``: a writable memoryview
    of the bytes. Made by ``Kernel.pin`` (its errors are those of ``phys_view``)."""

    __slots__ = ("paddr", "length", "address", "_view")

    def __init__(self, kernel, paddr, length):
        view = kernel.phys_view(paddr, length)
        self.paddr = operator.index(paddr)
        self.length = len(view)
        # The exporter's own address: the compiled core's PhysView says it; the reference
        # model's exporter is a ctypes array over its memory, whose address ctypes gives.
        # (An empty view's pointer is never read.)
        exporter = view.obj
        address = getattr(exporter, "address", None)
        self.address = ctypes.addressof(exporter) if address is None else address
        del exporter
        self._view = view

    @property
    def view(self):
        """The writable memoryview (format "B") of the pinned bytes; released by `unpin`."""
        return self._view

    @property
    def pinned(self):
        """True until `unpin` succeeds."""
        return self._view is not None and not _released(self._view)

    def unpin(self):
        """Give the frames back to the allocator (a frame its VMO let go of is freed now).
        Idempotent. Raises BufferError, changing nothing, while a buffer made from `view`
        is alive (a numpy array, a ctypes object, a slice, cast or memoryview of it), as
        ``memoryview.release()`` refuses with exports: release those first. O(frames)."""
        view = self._view
        if view is None or _released(view):
            return
        views, others = _holders(view)
        if views or others:
            raise BufferError(
                "cannot unpin: %d buffer(s) made from Pin.view are still alive"
                % (views + others))
        view.release()  # BufferError (nothing changed) while a direct export lives

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unpin()

    def __repr__(self):
        state = "pinned" if self.pinned else "unpinned"
        return "<vmo.Pin paddr=%#x length=%d %s>" % (self.paddr, self.length, state)


def _released(view):
    try:
        len(view)
    except ValueError:
        return True
    return False
