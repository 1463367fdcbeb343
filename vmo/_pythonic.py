"""The Pythonic layer: `Vmo` objects that raise `MxError`, over any syscall-layer kernel.

One implementation serves the compiled kernel and the reference model: it only calls the
syscall layer (plus the additions `vmo_read_bytes` and `vmo_committed_bytes`), so both
kernels behave identically here by construction.
"""

import operator
from array import array

from ._pin import Pin
from .constants import (
    MX_HANDLE_INVALID,
    MX_INFO_HANDLE_BASIC,
    MX_VMO_CLONE_COPY_ON_WRITE,
    PAGE_SIZE,
    Op,
    Rights,
)
from .errors import MxError, Status

__all__ = ["Vmo", "PythonicKernel", "Subscription"]

_U64 = (1 << 64) - 1


def _check(status, what):
    if status:
        raise MxError(status, what)


def _to_end(size, offset):
    """Bytes from ``offset`` (any integer-like) to ``size``; 0 when the offset is past the
    end (the call then reports ERR_OUT_OF_RANGE itself)."""
    offset = operator.index(offset)
    if 0 <= offset <= size:
        return size - offset
    return 0


def _op_name(op):
    """The name of `op` for an error message: only asked once the call failed, and never
    failing itself (any integer-like the syscall accepted, or any other object)."""
    try:
        return Op(operator.index(op)).name
    except Exception:  # noqa: BLE001  (a message must not raise)
        return "vmo_op_range"


class Vmo:
    """A handle to a virtual memory object, with methods that raise `MxError`.

    A `Vmo` owns its handle: `close()` (or leaving a ``with`` block) closes it. Every method
    costs one or two syscalls of the underlying kernel.
    """

    __slots__ = ("kernel", "handle")

    def __init__(self, kernel, handle):
        self.kernel = kernel
        self.handle = handle

    def __repr__(self):
        if self.handle == MX_HANDLE_INVALID:
            return "<vmo.Vmo closed>"
        status, size = self.kernel.vmo_get_size(self.handle)
        if status:
            return "<vmo.Vmo handle=%#x (%s)>" % (self.handle, Status(status).name)
        return "<vmo.Vmo handle=%#x size=%d>" % (self.handle, size)

    # -- size -------------------------------------------------------------------------------
    @property
    def size(self):
        """The VMO's size in bytes (byte-granular). Setting it needs the WRITE right.

        Raises MxError(ERR_BAD_HANDLE / ERR_WRONG_TYPE); setting also ERR_ACCESS_DENIED and
        ERR_OUT_OF_RANGE (size above MX_VMO_MAX_SIZE). Shrinking frees the pages past the new
        end in time proportional to the committed pages.
        """
        status, size = self.kernel.vmo_get_size(self.handle)
        _check(status, "vmo_get_size")
        return size

    @size.setter
    def size(self, size):
        _check(self.kernel.vmo_set_size(self.handle, size), "vmo_set_size")

    @property
    def committed_bytes(self):
        """Bytes of the pages this VMO itself holds (a clone's un-copied pages are not
        counted). O(1)."""
        status, value = self.kernel.vmo_committed_bytes(self.handle)
        _check(status, "vmo_committed_bytes")
        return value

    # -- data -------------------------------------------------------------------------------
    def read(self, offset, length):
        """Return up to ``length`` bytes at ``offset`` (short at the end of the VMO).

        Never commits. Raises MxError(ERR_ACCESS_DENIED) without READ, ERR_OUT_OF_RANGE when
        ``offset`` is past the end or ``offset + length`` wraps. O(length).
        """
        status, data = self.kernel.vmo_read_bytes(self.handle, offset, length)
        _check(status, "vmo_read")
        return data

    def read_into(self, buffer, offset=0):
        """Fill ``buffer`` from ``offset``; return the number of bytes read (short at the end).

        Raises MxError(ERR_INVALID_ARGS) for a read-only buffer, as `read`. O(len(buffer)).
        """
        status, actual = self.kernel.vmo_read(self.handle, buffer, offset)
        _check(status, "vmo_read")
        return actual

    def write(self, data, offset=0):
        """Write ``data`` at ``offset``; return the bytes written (short at the end of the VMO).

        Commits the pages it touches. Raises MxError(ERR_ACCESS_DENIED) without WRITE,
        ERR_OUT_OF_RANGE past the end, ERR_NO_MEMORY when physical memory runs out (the pages
        written before that stay written). O(len(data)).
        """
        status, actual = self.kernel.vmo_write(self.handle, data, offset)
        _check(status, "vmo_write")
        return actual

    # -- op_range ---------------------------------------------------------------------------
    def op_range(self, op, offset, size, buffer=None):
        """`vmo_op_range` that raises MxError on failure; returns None."""
        status = self.kernel.vmo_op_range(self.handle, op, offset, size, buffer)
        if status:
            raise MxError(status, _op_name(op))

    def _range_size(self, offset, size):
        if size is None:
            size = _to_end(self.size, offset)
        return size

    def commit(self, offset=0, size=None):
        """Commit every page touching ``[offset, offset+size)`` (trimmed to the VMO), all or
        nothing. ``size=None`` means to the end. Raises MxError(ERR_NO_MEMORY) when there are
        not enough free frames, ERR_OUT_OF_RANGE when ``offset`` is past the end. Cost: the
        pages committed plus the committed pages already in the range."""
        self.op_range(Op.COMMIT, offset, self._range_size(offset, size))

    def decommit(self, offset=0, size=None):
        """Free this VMO's own pages touching ``[offset, offset+size)``; they read as zero
        again (or show a clone's parent again). Cost: the committed pages in the range."""
        self.op_range(Op.DECOMMIT, offset, self._range_size(offset, size))

    def lookup(self, offset=0, size=None):
        """Return the physical address of every page touching ``[offset, offset+size)`` as an
        ``array('Q')``. Raises MxError(ERR_INVALID_ARGS) for size 0, ERR_OUT_OF_RANGE past the
        end, ERR_NO_MEMORY if any page is not committed. O(pages)."""
        offset = operator.index(offset)
        if size is not None:
            size = operator.index(size)
        vmo_size = self.size  # raises the handle errors first, as the syscall would
        size = self._range_size(offset, size)
        if size == 0:
            raise MxError(Status.ERR_INVALID_ARGS, "LOOKUP of size 0")
        if not (0 <= offset and 0 <= size and offset + size <= vmo_size):
            raise MxError(Status.ERR_OUT_OF_RANGE, "LOOKUP past the end")
        first = offset - offset % PAGE_SIZE
        end = -(-(offset + size) // PAGE_SIZE) * PAGE_SIZE
        out = array("Q", bytes(8 * ((end - first) // PAGE_SIZE)))
        self.op_range(Op.LOOKUP, offset, size, out)
        return out

    def lookup_runs(self, offset=0, size=None):
        """The physical runs of the committed pages touching ``[offset, offset+size)``
        (``size=None``: to the end): a list of ``(offset, paddr, length, own)`` tuples in
        offset order. Consecutive pages share a run when their frames are consecutive and
        their owner flag is the same; ``own`` is True for frames this VMO holds (map them
        writable), False for an ancestor's it sees (map them read-only, write through the
        kernel). Uncommitted pages are skipped. Raises MxError(ERR_INVALID_ARGS) for size 0,
        ERR_OUT_OF_RANGE past the end. Cost: the committed pages in the range (in the VMO
        and each ancestor), not its size."""
        status, runs = self.kernel.vmo_lookup_runs(self.handle, offset,
                                                   self._range_size(offset, size))
        _check(status, "vmo_lookup_runs")
        return runs

    def cache_sync(self, offset, size):
        """CACHE_SYNC over ``[offset, offset+size)``: validates, touches nothing."""
        self.op_range(Op.CACHE_SYNC, offset, size)

    def cache_invalidate(self, offset, size):
        """CACHE_INVALIDATE over ``[offset, offset+size)``."""
        self.op_range(Op.CACHE_INVALIDATE, offset, size)

    def cache_clean(self, offset, size):
        """CACHE_CLEAN over ``[offset, offset+size)``."""
        self.op_range(Op.CACHE_CLEAN, offset, size)

    def cache_clean_invalidate(self, offset, size):
        """CACHE_CLEAN_INVALIDATE over ``[offset, offset+size)``."""
        self.op_range(Op.CACHE_CLEAN_INVALIDATE, offset, size)

    # -- change notifications ---------------------------------------------------------------
    def on_change(self, callback):
        """Call ``callback(offset, length)`` after every call that stops pages of this VMO
        from being backed by the frames `lookup_runs` returned for them: DECOMMIT, a shrink,
        a write fault that gives a clone its own copy of a page it saw through an ancestor,
        any of these happening to an ancestor's pages it sees, and the close that destroys
        it (one call for the whole VMO, rounded up to pages; the subscription then ends).
        One call per maximal page range per kernel call, after that call has finished; never
        for bytes changing in place. Returns a `Subscription`; dropping it does not cancel
        it. Raises MxError(ERR_BAD_HANDLE / ERR_WRONG_TYPE); no rights needed. Cost while
        subscribed: docs/api.md "Change notifications"."""
        status, number = self.kernel._watch(self.handle, callback)
        _check(status, "on_change")
        return Subscription(self.kernel, number)

    # -- handles ----------------------------------------------------------------------------
    def clone(self, offset=0, size=None):
        """A copy-on-write clone of ``[offset, offset+size)`` (``offset`` page aligned): a live
        view of this VMO until a page is written. Needs DUPLICATE and READ. O(1)."""
        size = self._range_size(offset, size)
        status, handle = self.kernel.vmo_clone(self.handle, MX_VMO_CLONE_COPY_ON_WRITE,
                                               offset, size)
        _check(status, "vmo_clone")
        return Vmo(self.kernel, handle)

    def duplicate(self, rights=Rights.SAME_RIGHTS):
        """A new handle to the same VMO with ``rights`` (a subset of this handle's)."""
        status, handle = self.kernel.handle_duplicate(self.handle, rights)
        _check(status, "handle_duplicate")
        return Vmo(self.kernel, handle)

    def replace(self, rights):
        """Replace this handle by one with ``rights``; this `Vmo` is closed afterwards."""
        status, handle = self.kernel.handle_replace(self.handle, rights)
        _check(status, "handle_replace")
        self.handle = MX_HANDLE_INVALID
        return Vmo(self.kernel, handle)

    def info(self):
        """The handle's `HandleBasicInfo` (koid, rights, type, related_koid, props)."""
        status, info = self.kernel.object_get_info(self.handle, MX_INFO_HANDLE_BASIC)
        _check(status, "object_get_info")
        return info

    @property
    def rights(self):
        """This handle's rights as `vmo.Rights`."""
        return Rights(self.info().rights)

    @property
    def closed(self):
        """True once this `Vmo` closed (or replaced) its handle."""
        return bool(self.handle == MX_HANDLE_INVALID)

    def close(self):
        """Close the handle (idempotent). Frees the VMO's pages if it was the last reference."""
        handle = self.handle
        if handle != MX_HANDLE_INVALID:
            self.handle = MX_HANDLE_INVALID
            _check(self.kernel.handle_close(handle), "handle_close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PythonicKernel:
    """Mixin that gives a syscall-layer kernel the Pythonic constructors."""

    __slots__ = ()

    def create_vmo(self, size):
        """Create a VMO of ``size`` bytes (nothing committed) and return it as a `Vmo`.

        Raises MxError(ERR_NO_MEMORY) for a size above MX_VMO_MAX_SIZE or a full handle
        table. O(1).
        """
        status, handle = self.vmo_create(size, 0)
        _check(status, "vmo_create")
        return Vmo(self, handle)

    def create_contiguous_vmo(self, size, alignment_log2=0):
        """Create a VMO of ``size`` bytes rounded up to pages, committed at once to one
        physically contiguous run aligned to 2**alignment_log2 bytes (0 means a page).

        Raises MxError(ERR_INVALID_ARGS) for size 0 or an alignment below 12 (other than 0)
        or 64 and above, ERR_NO_MEMORY when no such run is free. Spec 3.12.
        """
        status, handle = self.vmo_create_contiguous(size, alignment_log2)
        _check(status, "vmo_create_contiguous")
        return Vmo(self, handle)

    def vmo(self, handle):
        """Wrap an existing VMO handle (the `Vmo` then owns it)."""
        return Vmo(self, handle)

    def pin(self, paddr, length):
        """Pin physical memory ``[paddr, paddr+length)`` and return it as a `vmo.Pin`
        (``paddr``, ``length``, ``address``: the host address of its first byte, ``view``,
        ``unpin()``, context manager). The checks and errors of `phys_view`:
        MxError(ERR_OUT_OF_RANGE) unless the range lies inside one RAM range,
        ERR_BAD_STATE if a page it touches is not held by a VMO, ERR_INVALID_ARGS for a
        negative length; TypeError for non-integers. Recorded as a `phys_view`. O(frames)."""
        return Pin(self, paddr, length)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Subscription:
    """A `Vmo.on_change` subscription: active until `cancel()` or the VMO's destruction
    (or the kernel's close); dropping this object does not cancel it."""

    __slots__ = ("kernel", "id")

    def __init__(self, kernel, number):
        self.kernel = kernel
        self.id = number

    @property
    def active(self):
        """True until cancelled, or the VMO is destroyed (after its last callback)."""
        return bool(self.kernel._watching(self.id))

    def cancel(self):
        """End the subscription: no callback afterwards (not even for events already queued
        by the call running, if a callback cancels it). Idempotent. O(subscriptions)."""
        self.kernel._unwatch(self.id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cancel()

    def __repr__(self):
        return "<vmo.Subscription %d %s>" % (self.id, "active" if self.active else "ended")
