"""Recording in plain Python: the hooks behind the reference `Kernel.record(path)`
(docs/trace-format.md). While a kernel records, each syscall and physical-access method is
shadowed by a hook that calls it, then turns its arguments and results into one record for
the `TraceWriter` (`_trace`); `Kernel.run` hands its records over through `add_result`. The
compiled core does the same inside its syscall methods (vmo/_kernel.pyx)."""

import functools
import operator
import os

from ..constants import MX_INFO_HANDLE_BASIC, PAGE_SIZE, Op
from ..errors import MxError
from ..records import HandleBasicInfo
from ._args import Refused, _export, bytes_view, readable, writable
from ._exec import info_word
from ._frames import pool_frame_of
from ._trace import (
    ARG_RANGE,
    BAD_BUFFER,
    EVENT_CREATE,
    HANDLE_CLOSE,
    HANDLE_DUPLICATE,
    HANDLE_REPLACE,
    MAX_SIDE,
    NOT_KEPT,
    NULL_BUFFER,
    OBJECT_GET_INFO,
    PHYS_READ,
    PHYS_VIEW,
    PHYS_VIEW_RELEASE,
    PHYS_WRITE,
    REF,
    U32,
    U64,
    VMO_CLONE,
    VMO_COMMITTED_BYTES,
    VMO_CREATE,
    VMO_CREATE_CONTIGUOUS,
    VMO_GET_SIZE,
    VMO_OP_RANGE,
    VMO_READ,
    VMO_READ_BYTES,
    VMO_SET_SIZE,
    VMO_WRITE,
    WRITES,
    TraceWriter,
    cache_option,
    hash64,
    uses_side,
)

__all__ = ["Recorder"]


def _u32(v):
    return 0 <= v <= U32


def _u64(v):
    return 0 <= v <= U64


class Recorder:
    """`Kernel.record(path)` of the reference model: a context manager that writes every call
    made on the kernel (syscalls, hence the Pythonic layer; the physical-access calls; the
    records of `run`) to a trace until it exits. The hooks are instance attributes that
    shadow the syscall methods while it records, so a kernel that does not record pays
    nothing."""

    HOOKED = ("vmo_create", "vmo_read", "vmo_write", "vmo_get_size", "vmo_set_size",
              "vmo_op_range", "vmo_clone", "handle_close", "handle_duplicate", "handle_replace",
              "object_get_info", "event_create", "vmo_read_bytes", "vmo_committed_bytes",
              "vmo_create_contiguous", "phys_read", "phys_write", "phys_view")

    def __init__(self, kernel, path):
        kernel._ensure_open()
        state = kernel._state
        if getattr(kernel, "_recorder", None) is not None:
            raise ValueError("this kernel is already recording")
        if state.objects or state.next_koid != 1024 or state.pool.next_fresh \
                or state.pool.held_above or state.pool.free_list or state.pool.pins:
            raise ValueError("record() needs a fresh kernel: no object ever created and no "
                             "frame ever handed out")
        self.kernel = kernel
        self.path = os.fspath(path)
        self.writer = TraceWriter(self.path, kernel.memory_map,
                                  cache_option(kernel._cache_options))
        self.nviews = 0
        kernel._recorder = self
        K = type(kernel)
        for name in self.HOOKED:
            setattr(kernel, name, functools.partial(getattr(self, "_" + name), getattr(K, name)))

    # -- lifetime ---------------------------------------------------------------------------
    def close(self):
        kernel = self.kernel
        if kernel is None:
            return
        for name in self.HOOKED:
            kernel.__dict__.pop(name, None)
        kernel._recorder = None
        self.kernel = None
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def records(self):
        """Records written so far."""
        return self.writer.total

    # -- writing ----------------------------------------------------------------------------
    def _add(self, call, status, flags=0, handle=0, x=0, a=0, b=0, c=0, value=0, data=None):
        if flags & ARG_RANGE:  # no other flag, and no other field but call and status
            flags, handle, x, a, b, c, value, data = ARG_RANGE, 0, 0, 0, 0, 0, 0, None
        if call in WRITES and data is None:
            c = 0  # no side bytes (the writer sets c to their offset when there are)
        self.writer.add((call, int(status), flags, handle, x, a, b, c, int(value)), data)

    def add_result(self, rec, status, value, c, payload):
        """A record of `run` (REF already resolved), with its results."""
        call, _, flags, handle, x, a, b = rec[:7]
        data = bytes(payload) if uses_side(rec) else None
        self._add(call, status, flags & ~REF, handle, x, a, b, c, value, data)

    # -- the hooks: each calls the method first (a TypeError there leaves no record) ----------
    def _vmo_create(self, method, size, options=0):
        result = method(self.kernel, size, options)
        size, options = operator.index(size), operator.index(options)
        flags = 0 if _u64(size) and _u32(options) else ARG_RANGE
        self._add(VMO_CREATE, result[0], flags, 0, options, size, value=result[1])
        return result

    def _vmo_create_contiguous(self, method, size, alignment_log2=0):
        result = method(self.kernel, size, alignment_log2)
        size, align = operator.index(size), operator.index(alignment_log2)
        flags = 0 if _u64(size) and _u32(align) else ARG_RANGE
        self._add(VMO_CREATE_CONTIGUOUS, result[0], flags, 0, align, size, value=result[1])
        return result

    def _transfer_args(self, handle, buffer, offset, length, write):
        """(flags, handle, offset, length, view) of a vmo_read/vmo_write; TypeError as the
        call would raise it."""
        handle = operator.index(handle)
        view = None if buffer is None else _export(buffer)
        try:
            offset = operator.index(offset)
            if length is None:
                length = 0 if view is None else view.nbytes
            else:
                length = operator.index(length)
        except TypeError:
            if view is not None:
                view.release()
            raise
        flags = 0
        if not (_u32(handle) and _u64(offset) and _u64(length)):
            flags = ARG_RANGE
        if buffer is None:
            flags |= NULL_BUFFER
        elif length:
            usable = readable(view) if write else writable(view)
            if not usable or length > view.nbytes:
                flags |= BAD_BUFFER
        return flags, handle, offset, length, view

    def _vmo_read(self, method, handle, buffer, offset, length=None):
        try:
            flags, h, off, n, view = self._transfer_args(handle, buffer, offset, length, False)
        except TypeError:
            return method(self.kernel, handle, buffer, offset, length)
        try:
            result = method(self.kernel, handle, buffer, offset, length)
            c = 0
            if result[0] == 0 and result[1]:
                c = hash64(bytes_view(view)[:result[1]])
            self._add(VMO_READ, result[0], flags, h, 0, off, n, c, result[1])
            return result
        finally:
            if view is not None:
                view.release()

    def _vmo_write(self, method, handle, data, offset, length=None):
        try:
            flags, h, off, n, view = self._transfer_args(handle, data, offset, length, True)
        except TypeError:
            return method(self.kernel, handle, data, offset, length)
        try:
            kept = None
            if not flags & NOT_KEPT:
                if n > MAX_SIDE:
                    raise ValueError(f"a write of {n} bytes cannot be recorded (at most "
                                     f"{MAX_SIDE} bytes a call)")
                kept = bytes(bytes_view(view)[:n]) if n else b""  # before: it may be RAM
            result = method(self.kernel, handle, data, offset, length)
            self._add(VMO_WRITE, result[0], flags, h, 0, off, n, 0, result[1], kept)
            return result
        finally:
            if view is not None:
                view.release()

    def _vmo_read_bytes(self, method, handle, offset, length):
        result = method(self.kernel, handle, offset, length)
        h, off, n = (operator.index(v) for v in (handle, offset, length))
        flags = 0 if _u32(h) and _u64(off) and _u64(n) else ARG_RANGE
        self._add(VMO_READ_BYTES, result[0], flags, h, 0, off, n, hash64(result[1]),
                  len(result[1]))
        return result

    def _simple(self, call, method, handle, *rest):
        """A call of a handle and uint32 ``x`` at most, whose value is the result's second."""
        result = method(self.kernel, handle, *rest)
        status, value = result if isinstance(result, tuple) else (result, 0)
        h = operator.index(handle)
        x = operator.index(rest[0]) if rest else 0
        flags = 0 if _u32(h) and _u32(x) else ARG_RANGE
        self._add(call, status, flags, h, x, value=value)
        return result

    def _vmo_get_size(self, method, handle):
        return self._simple(VMO_GET_SIZE, method, handle)

    def _vmo_committed_bytes(self, method, handle):
        return self._simple(VMO_COMMITTED_BYTES, method, handle)

    def _handle_close(self, method, handle):
        return self._simple(HANDLE_CLOSE, method, handle)

    def _handle_duplicate(self, method, handle, rights):
        return self._simple(HANDLE_DUPLICATE, method, handle, rights)

    def _handle_replace(self, method, handle, rights):
        return self._simple(HANDLE_REPLACE, method, handle, rights)

    def _event_create(self, method, options=0):
        result = method(self.kernel, options)
        options = operator.index(options)
        self._add(EVENT_CREATE, result[0], 0 if _u32(options) else ARG_RANGE, 0, options,
                  value=result[1])
        return result

    def _vmo_set_size(self, method, handle, size):
        status = method(self.kernel, handle, size)
        h, size = operator.index(handle), operator.index(size)
        flags = 0 if _u32(h) and _u64(size) else ARG_RANGE
        self._add(VMO_SET_SIZE, status, flags, h, 0, size)
        return status

    def _vmo_clone(self, method, handle, options, offset, size):
        result = method(self.kernel, handle, options, offset, size)
        h, opt, off, n = (operator.index(v) for v in (handle, options, offset, size))
        flags = 0 if _u32(h) and _u32(opt) and _u64(off) and _u64(n) else ARG_RANGE
        self._add(VMO_CLONE, result[0], flags, h, opt, off, n, value=result[1])
        return result

    def _object_get_info(self, method, handle, topic):
        result = method(self.kernel, handle, topic)
        h, topic_ = operator.index(handle), operator.index(topic)
        flags = 0 if _u32(h) and _u32(topic_) else ARG_RANGE
        info = result[1]
        value, c = (info.koid, info_word(info)) if isinstance(info, HandleBasicInfo) else (0, 0)
        if topic_ != MX_INFO_HANDLE_BASIC or result[0]:
            value, c = 0, 0
        self._add(OBJECT_GET_INFO, result[0], flags, h, topic_, 0, 0, c, value)
        return result

    def _vmo_op_range(self, method, handle, op, offset, size, buffer=None, buffer_size=None):
        k = self.kernel
        try:
            h, op_, off, n = (operator.index(v) for v in (handle, op, offset, size))
        except TypeError:
            return method(k, handle, op, offset, size, buffer, buffer_size)
        if op_ != Op.LOOKUP:
            status = method(k, handle, op, offset, size, buffer, buffer_size)
            flags = 0 if _u32(h) and _u32(op_) and _u64(off) and _u64(n) else ARG_RANGE
            self._add(VMO_OP_RANGE, status, flags, h, op_, off, n)
            return status
        try:
            view = None if buffer is None else _export(buffer)
        except TypeError:
            return method(k, handle, op, offset, size, buffer, buffer_size)
        try:
            try:
                bsize = (0 if view is None else view.nbytes) if buffer_size is None \
                    else operator.index(buffer_size)
            except TypeError:
                return method(k, handle, op, offset, size, buffer, buffer_size)
            flags = 0 if _u32(h) and _u32(op_) and _u64(off) and _u64(n) and _u64(bsize) \
                else ARG_RANGE
            if buffer is None:
                flags |= NULL_BUFFER
            elif isinstance(view, Refused) or not writable(view) or bsize > view.nbytes:
                flags |= BAD_BUFFER
            if flags & (ARG_RANGE | NULL_BUFFER | BAD_BUFFER):
                status = method(k, handle, op, offset, size, buffer, buffer_size)
                self._add(VMO_OP_RANGE, status, flags, h, op_, off, n, bsize, hash64(b""))
                return status
            # A buffer of 0xFF bytes stands in for the caller's, so that the entries written
            # are known (an entry is page-aligned, never eight 0xFF bytes); they are copied
            # back, and the rest of the caller's buffer stays untouched, as the call leaves it.
            scratch = bytearray(b"\xff") * bsize
            status = method(k, h, op_, off, n, scratch, bsize)
            count = 0
            while 8 * count + 8 <= bsize and scratch[8 * count:8 * count + 8] != b"\xff" * 8:
                count += 1
            entries = bytes(scratch[:8 * count])
            if entries:
                bytes_view(view)[:len(entries)] = entries
            self._add(VMO_OP_RANGE, status, flags, h, op_, off, n, bsize, hash64(entries))
            return status
        finally:
            if view is not None:
                view.release()

    # -- physical access ----------------------------------------------------------------------
    def _phys_read(self, method, paddr, length):
        p, n = operator.index(paddr), operator.index(length)
        try:
            got = method(self.kernel, paddr, length)
        except MxError as exc:
            flags = 0 if _u64(p) and 0 <= n <= U64 else ARG_RANGE
            self._add(PHYS_READ, exc.status, flags, 0, 0, p, n)
            raise
        self._add(PHYS_READ, 0, 0, 0, 0, p, n, hash64(got))
        return got

    def _phys_write(self, method, paddr, data):
        try:
            p = operator.index(paddr)
            view = _export(data)  # None raises TypeError: the call does, unrecorded
        except TypeError:
            return method(self.kernel, paddr, data)
        try:
            flags = 0
            kept = None
            if isinstance(view, Refused) or not readable(view):
                flags |= BAD_BUFFER
                n = 0
            else:
                n = view.nbytes
                if n > MAX_SIDE:
                    raise ValueError(f"a write of {n} bytes cannot be recorded (at most "
                                     f"{MAX_SIDE} bytes a call)")
                kept = bytes(bytes_view(view)) if n else b""
            if not _u64(p):
                flags |= ARG_RANGE
            try:
                written = method(self.kernel, paddr, data)
            except MxError as exc:
                self._add(PHYS_WRITE, exc.status, flags, 0, 0, p, n, 0, 0, kept)
                raise
            self._add(PHYS_WRITE, 0, flags, 0, 0, p, n, 0, written, kept)
            return written
        finally:
            view.release()

    def _phys_view(self, method, paddr, length):
        p, n = operator.index(paddr), operator.index(length)
        try:
            view = method(self.kernel, paddr, length)
        except MxError as exc:
            flags = 0 if _u64(p) and 0 <= n <= U64 else ARG_RANGE
            self._add(PHYS_VIEW, exc.status, flags, 0, 0, p, n)
            raise
        self.nviews += 1
        self._add(PHYS_VIEW, 0, 0, 0, 0, p, n, value=self.nviews)
        exporter = view.obj
        unpin = exporter.__dict__.get("unpin")
        state = self.kernel._state
        exporter.unpin = functools.partial(self._released, state, self.nviews, p, n, unpin)
        return view

    def _released(self, state, number, paddr, length, unpin):
        """A view went: record its release, with the bytes under it now, then unpin."""
        try:
            if self.kernel is not None and not state.closed:
                data = b""
                if length:
                    first, _ = pool_frame_of(state.pool, paddr)
                    start = first * PAGE_SIZE + paddr % PAGE_SIZE
                    data = bytes(state.pool.mem[start:start + length])
                self._add(PHYS_VIEW_RELEASE, 0, 0, 0, 0, paddr, length, 0, number, data)
        finally:
            if unpin is not None:
                unpin()
