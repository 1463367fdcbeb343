"""The kernel's shared state, which every layer above takes as its first argument."""

from ._frames import FramePool
from ._handles import HandleTable

__all__ = ["FIRST_KOID", "KernelState"]

FIRST_KOID = 1024  # docs/semantics.md "Objects": one koid counter per kernel, from 1024


class KernelState:
    """Physical memory and its allocator, the handle table, and the live objects.

    ``cache`` is the CPU cache of a non-coherent kernel (None when coherent) and ``seq`` the
    call counter its events carry. ``objects`` maps the koid of every live object (VMOs,
    clones, parents kept alive by their clones, events) to it; ``next_koid`` is the koid the
    next object takes.
    """

    __slots__ = ("cache", "closed", "handles", "next_koid", "objects", "pool", "seq",
                 "watches", "events", "next_watch", "delivering")

    def __init__(self, arenas):
        self.pool = FramePool(arenas)
        self.handles = HandleTable()
        self.objects = {}
        self.next_koid = FIRST_KOID
        self.closed = False
        # Change notifications (docs/semantics.md "Change notifications"): the
        # subscriptions, [id, koid, vmo (None once destroyed), callback], sorted by (koid,
        # id); the pending events, (koid, offset, length, destroyed); the next id; whether a
        # delivery (or a batch, which delivers after its last record) is running.
        self.watches = []
        self.events = []
        self.next_watch = 1
        self.delivering = False
        self.cache = None   # the CPU cache of a non-coherent kernel (_cache.CpuCache)
        self.seq = 0        # the call counter: one per kernel call
