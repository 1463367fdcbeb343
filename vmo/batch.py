"""Batches (docs/api.md "Traces and batches"): calls built in Python as 48-byte records
(docs/trace-format.md) and run in C by `Kernel.run(batch)`.

`Batch.records` is a bytearray of len(batch) records, `Batch.data` a bytearray of the bytes
the batch's writes carry. Building is plain Python (it is not the hot part); running is C.
This module does not import numpy: `BATCH_DTYPE` is a list of (name, format) pairs that
``numpy.dtype(vmo.BATCH_DTYPE)`` turns into the record's dtype.
"""

import struct
import sys

from .constants import MX_VMO_CLONE_COPY_ON_WRITE, PAGE_SIZE, Op
from .records import BatchResult

__all__ = ["Batch", "BatchRef", "BatchResult", "BATCH_DTYPE"]

#: The 48-byte record as numpy (name, format) pairs: ``numpy.dtype(vmo.BATCH_DTYPE)``.
BATCH_DTYPE = [("call", "u1"), ("status", "i1"), ("flags", "<u2"), ("handle", "<u4"),
               ("x", "<u4"), ("reserved", "<u4"), ("a", "<u8"), ("b", "<u8"), ("c", "<u8"),
               ("value", "<u8")]

_RECORD = struct.Struct("<BbHIIIQQQQ")
# The buffer format numpy exports for BATCH_DTYPE (PEP 3118), with the spellings it may use.
_U8 = ("Q", "L") if struct.calcsize("L") == 8 else ("Q",)
_FIELDS = ((("B",), "call"), (("b",), "status"), (("H",), "flags"), (("I",), "handle"),
           (("I",), "x"), (("I",), "reserved"), (_U8, "a"), (_U8, "b"), (_U8, "c"),
           (_U8, "value"))
# Native order (no prefix, or "=" / "@") is little-endian only on a little-endian host.
_PREFIXES = ("<", "=", "@", "") if sys.byteorder == "little" else ("<",)

_REF = 0x1
_NO_DATA = 0x10
_U64 = (1 << 64) - 1


def _format_ok(fmt):
    """Whether a PEP 3118 format is the structured record of BATCH_DTYPE."""
    if not fmt.startswith("T{") or not fmt.endswith("}"):
        return False
    body = fmt[2:-1]
    for codes, name in _FIELDS:
        for prefix in _PREFIXES:
            for code in codes:
                field = "%s%s:%s:" % (prefix, code, name)
                if body.startswith(field):
                    body = body[len(field):]
                    break
            else:
                continue
            break
        else:
            return False
    return body == ""


class BatchRef:
    """The result of an earlier call of the same batch, usable where a handle is taken: the
    call then uses that call's returned value (0, so ERR_BAD_HANDLE, if it failed)."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __repr__(self):
        return "BatchRef(%d)" % self.index

    def __eq__(self, other):
        return isinstance(other, BatchRef) and other.index == self.index

    def __hash__(self):
        return hash(("BatchRef", self.index))


class Batch:
    """Calls to run later with `Kernel.run(batch)`, in order, in C. Each method appends one
    call and returns a `BatchRef` to its result. Arguments outside their C types raise
    ValueError here (struct.error is turned into it)."""

    __slots__ = ("records", "data")

    def __init__(self):
        self.records = bytearray()
        self.data = bytearray()

    def __len__(self):
        return len(self.records) // 48

    def __repr__(self):
        return "<vmo.Batch %d calls, %d data bytes>" % (len(self), len(self.data))

    # -- raw construction -------------------------------------------------------------------
    @classmethod
    def _from_buffers(cls, records, data=b""):
        """A batch over copies of raw records (n x 48 bytes, docs/trace-format.md) and the
        side bytes of its writes. Validated when run."""
        b = cls()
        b.records = bytearray(records)
        b.data = bytearray(data)
        if len(b.records) % 48:
            raise ValueError("records are not a whole number of 48-byte records")
        return b

    @classmethod
    def from_array(cls, records, data=b""):
        """A batch from a one-dimensional numpy structured array of `BATCH_DTYPE` (any
        buffer of that itemsize and format), the bytes of its writes in `data`. ValueError
        for another dtype or shape."""
        try:
            view = memoryview(records)
        except TypeError:
            raise ValueError("records must be a buffer of BATCH_DTYPE records") from None
        if view.itemsize != 48 or not _format_ok(view.format):
            raise ValueError("records must have the dtype vmo.BATCH_DTYPE (48-byte records), "
                             "not format %r itemsize %d" % (view.format, view.itemsize))
        if view.ndim != 1:
            raise ValueError("records must be one-dimensional, not of shape %r"
                             % (view.shape,))
        if not view.c_contiguous:
            raise ValueError("records must be contiguous")
        return cls._from_buffers(view.cast("B"), data)

    def _add(self, call, handle=0, x=0, a=0, b=0, c=0, flags=0):
        if isinstance(handle, BatchRef):
            if not 0 <= handle.index < len(self):
                raise ValueError("BatchRef(%d) does not name an earlier call of this batch"
                                 % handle.index)
            flags |= _REF
            handle = handle.index
        try:
            self.records += _RECORD.pack(call, 0, flags, handle, x, 0, a, b, c, 0)
        except struct.error as e:
            raise ValueError("argument outside its C type: %s" % e) from None
        return BatchRef(len(self) - 1)

    def _bytes(self, data):
        data = memoryview(data).cast("B")
        if not any(data):
            return len(data), 0, _NO_DATA
        offset = len(self.data)
        self.data += data
        return len(data), offset, 0

    # -- the calls (docs/api.md for their semantics) ----------------------------------------
    def create(self, size, options=0):
        return self._add(1, 0, options, size)

    def read(self, h, offset, length):
        """vmo_read of `length` bytes: the result's c is their hash64, value the actual."""
        return self._add(2, h, 0, offset, length)

    def write(self, h, data, offset):
        n, at, flags = self._bytes(data)
        return self._add(3, h, 0, offset, n, at, flags)

    def get_size(self, h):
        return self._add(4, h)

    def set_size(self, h, size):
        return self._add(5, h, 0, size)

    def op_range(self, h, op, offset, size, buffer_size=None):
        """vmo_op_range; LOOKUP's `buffer_size` defaults to 8 bytes per page of the range."""
        if int(op) == Op.LOOKUP and buffer_size is None:
            first = offset & ~(PAGE_SIZE - 1)
            end = (offset + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & _U64
            buffer_size = (((end - first) & _U64) // PAGE_SIZE * 8) & _U64
        return self._add(6, h, int(op), offset, size, buffer_size or 0)

    def commit(self, h, offset, size):
        return self.op_range(h, Op.COMMIT, offset, size)

    def decommit(self, h, offset, size):
        return self.op_range(h, Op.DECOMMIT, offset, size)

    def lookup(self, h, offset, size):
        return self.op_range(h, Op.LOOKUP, offset, size)

    def clone(self, h, offset, size, options=MX_VMO_CLONE_COPY_ON_WRITE):
        return self._add(7, h, options, offset, size)

    def close(self, h):
        return self._add(8, h)

    def duplicate(self, h, rights):
        return self._add(9, h, rights)

    def replace(self, h, rights):
        return self._add(10, h, rights)

    def get_info(self, h, topic):
        """object_get_info: value the koid, c rights | type << 32 | props << 48."""
        return self._add(11, h, topic)

    def event_create(self, options=0):
        return self._add(12, 0, options)

    def read_bytes(self, h, offset, length):
        return self._add(13, h, 0, offset, length)

    def committed_bytes(self, h):
        return self._add(14, h)

    def create_contiguous(self, size, alignment_log2=0):
        return self._add(15, 0, alignment_log2, size)

    def phys_read(self, paddr, length):
        """A device read: status instead of MxError; c the hash64 of the bytes."""
        return self._add(16, 0, 0, paddr, length)

    def phys_write(self, paddr, data):
        n, at, flags = self._bytes(data)
        return self._add(17, 0, 0, paddr, n, at, flags)
