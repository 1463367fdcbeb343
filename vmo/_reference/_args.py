"""The Python-to-C boundary: one converter for the arguments of every syscall.

docs/semantics.md "Python-specific argument rules", in one place. `Arguments` converts the
arguments of a call one by one, in signature order, before any status is decided: integers
through `operator.index` (TypeError for anything else), buffers through `memoryview`
(TypeError without the buffer protocol; None is a null pointer; an exporter that refuses is
`Refused`). Only after the last one does the call look at ``out_of_range`` and return
ERR_INVALID_ARGS if an integer lies outside its C type. The buffer checks that come later in
Magenta's check order (`arg_transfer_buffer`, `writable`) are here too; the syscall layer
calls them at their place in that order.
"""

import operator

from ..errors import MxError, Status

__all__ = [
    "U64_MAX", "Arguments", "Refused", "arg_transfer_buffer", "bytes_view", "phys_args",
    "phys_data", "writable",
]

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


class Refused:
    """An exporter that has the buffer protocol but refuses to export (a released memoryview,
    a numpy datetime64 array): a bad pointer. Its size is unknown, so a transfer of its
    default length is taken to be nonempty (ERR_INVALID_ARGS), as in the core."""

    nbytes = 1
    readonly = True
    c_contiguous = False
    format = ""

    def release(self):
        pass


def _export(obj):
    """A memoryview of ``obj``, or `Refused` if its exporter refuses. TypeError without the
    buffer protocol."""
    try:
        return memoryview(obj)
    except TypeError:
        raise
    except Exception:  # noqa: BLE001  (whatever the exporter raises: a bad pointer)
        return Refused()


class Arguments:
    """The arguments of one call, converted in the order the call asks for them (its
    signature order); a context manager that releases the buffers exported, however the call
    ends (a later argument raising included)::

        with Arguments() as arg:
            handle, view, offset = arg.u32(handle), arg.buffer(buffer), arg.u64(offset)
            length = arg.buffer_size(length, view)
            if arg.out_of_range:
                return ERR_INVALID_ARGS, 0

    A call that takes no buffer has nothing to release and just makes one (``arg =
    Arguments()``). Handles, options, ops, rights, topics and alignment_log2 are uint32; sizes,
    offsets and lengths uint64.
    """

    __slots__ = ("_views", "out_of_range")

    def __init__(self):
        self.out_of_range = False  # an integer lies outside its C type: ERR_INVALID_ARGS
        self._views = []

    def u32(self, value):
        """An integer argument of C type uint32."""
        value = operator.index(value)
        if not 0 <= value <= U32_MAX:
            self.out_of_range = True
        return value

    def u64(self, value):
        """An integer argument of C type uint64."""
        value = operator.index(value)
        if not 0 <= value <= U64_MAX:
            self.out_of_range = True
        return value

    def buffer(self, obj):
        """A buffer argument as a memoryview (None stays None: a null pointer; an exporter
        that refuses is `Refused`). TypeError without the buffer protocol."""
        if obj is None:
            return None
        view = _export(obj)
        self._views.append(view)
        return view

    def buffer_size(self, value, view):
        """A uint64 size of the buffer ``view``; None means its byte size (0 for a null
        pointer)."""
        if value is None:
            return 0 if view is None else view.nbytes
        return self.u64(value)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for view in self._views:
            view.release()
        self._views = []


# -- buffer checks, made where C would first touch the pointer -------------------------------

def holds_objects(fmt):
    """True if a struct-module buffer format holds Python object pointers ("O"), outside the
    field names that structured formats put between colons (``"T{<Q:n:O:o:}"``)."""
    return "O" in "".join(fmt.split(":")[0::2])


def contiguous(view):
    """C-contiguous as CPython's PyBuffer_IsContiguous says: an empty buffer always is (a
    memoryview's own flag says no for an empty strided slice)."""
    return view.c_contiguous or view.nbytes == 0


def writable(view):
    """True if ``view`` can be written as a flat C array of bytes: writable, C-contiguous,
    and not holding Python object pointers (raw bytes there would crash the interpreter)."""
    return (view is not None and not view.readonly and contiguous(view)
            and not holds_objects(view.format))


def readable(view):
    """True if ``view`` can be read as a flat C array of plain bytes: C-contiguous and not
    holding Python object pointers (host addresses must never reach simulated memory)."""
    return view is not None and contiguous(view) and not holds_objects(view.format)


def arg_transfer_buffer(view, length, write):
    """True if ``view`` serves a vmo_read (``write`` False: it is filled) or vmo_write (it is
    the source) of ``length`` bytes. A zero-length transfer touches no pointer."""
    if length == 0:
        return True
    usable = readable(view) if write else writable(view)
    return usable and length <= view.nbytes


def bytes_view(view):
    """The contiguous non-empty ``view`` as a flat unsigned-byte memoryview."""
    if view.ndim == 1 and view.format == "B":
        return view
    return view.cast("B")


# -- physical access (device models raise MxError instead of returning a status) ------------

def phys_args(paddr, length):
    """The address and length of a physical access: TypeError for non-integers; a negative
    length is ERR_INVALID_ARGS, anything outside uint64 ERR_OUT_OF_RANGE."""
    paddr = operator.index(paddr)
    length = operator.index(length)
    if length < 0:
        raise MxError(Status.ERR_INVALID_ARGS, "negative length")
    if not (0 <= paddr <= U64_MAX and length <= U64_MAX):
        raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
    return paddr, length


def phys_data(data):
    """The source of a device write as a memoryview (the caller releases it): TypeError
    without the buffer protocol (None too: there is no null pointer here), ERR_INVALID_ARGS
    unless it is a contiguous buffer of plain bytes."""
    view = memoryview(data) if data is None else _export(data)  # None: TypeError
    if isinstance(view, Refused) or not readable(view):
        view.release()
        raise MxError(Status.ERR_INVALID_ARGS, "the data is not a contiguous buffer of plain bytes")
    return view
