"""Running records in plain Python, the reference twin of `vmo/_exec.pyx`: the `Executor`
that runs one record on a kernel and gives its status, value and ``c`` as a recording holds
them, `run_batch` behind `Kernel.run(batch)` and `replay` behind `vmo._reference.replay`
(docs/trace-format.md)."""

import array
import os
import time

from ..constants import Op
from ..errors import MxError, Status
from ..records import BatchResult, HandleBasicInfo, Mismatch, ReplayResult
from ._trace import (
    ARG_RANGE,
    BAD_BUFFER,
    C_RESULTS,
    CALL_NAMES,
    EVENT_CREATE,
    HANDLE_CLOSE,
    HANDLE_DUPLICATE,
    HANDLE_REPLACE,
    NO_DATA,
    NULL_BUFFER,
    OBJECT_GET_INFO,
    PHYS_READ,
    PHYS_VIEW,
    PHYS_WRITE,
    REF,
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
    TraceReader,
    batch_buffers,
    check_batch,
    hash64,
    header_cache_options,
    uses_side,
)

__all__ = ["Executor", "info_word", "replay", "run_batch"]


def info_word(info):
    """object_get_info's second result as a record's ``c``: rights, type << 32, props << 48."""
    return info.rights | info.type << 32 | info.props << 48


class Executor:
    """Runs records on a kernel (any kernel with the syscall layer and the physical-access
    calls, called through its class so that no recording hook sees them). Keeps the live
    physical views it made, by view number (1, 2, ...: its successful phys_view calls)."""

    def __init__(self, kernel):
        self.k = kernel
        self.K = type(kernel)
        self.views = {}
        self.nviews = 0

    def execute(self, rec, data):
        """Run one record (its REF resolved); ``data`` is the bytes of a write whose bytes
        are kept (None otherwise: zeros for NO_DATA). Returns ``(status, value, c,
        entries)``: ``c`` as a recording holds it (the call's result where c is one, else
        the record's own), ``entries`` the LOOKUP entries written (bytes) or None."""
        call, status, flags, handle, x, a, b, c, value = rec
        k, K = self.k, self.K
        if flags & ARG_RANGE:
            # The integer checks come first and see no state: a syscall gives
            # ERR_INVALID_ARGS; a phys_* call ERR_OUT_OF_RANGE or ERR_INVALID_ARGS, as recorded.
            c = 0 if call in C_RESULTS else c
            if call >= PHYS_READ and status == Status.ERR_OUT_OF_RANGE:
                return int(Status.ERR_OUT_OF_RANGE), 0, c, None
            return int(Status.ERR_INVALID_ARGS), 0, c, None
        null = flags & NULL_BUFFER
        bad = flags & BAD_BUFFER
        value = 0
        if call == VMO_CREATE:
            status, value = K.vmo_create(k, a, x)
        elif call == VMO_READ:
            buf = None if null else bytearray(0 if bad else b)
            status, value = K.vmo_read(k, handle, buf, a, b)
            c = hash64(memoryview(buf)[:value]) if buf is not None and not status else 0
        elif call == VMO_WRITE:
            if null:
                buf = None
            elif bad:
                buf = b""
            else:
                buf = bytes(b) if data is None else data
            status, value = K.vmo_write(k, handle, buf, a, b)
        elif call == VMO_GET_SIZE:
            status, value = K.vmo_get_size(k, handle)
        elif call == VMO_SET_SIZE:
            status = K.vmo_set_size(k, handle, a)
        elif call == VMO_OP_RANGE:
            if x != Op.LOOKUP:
                return int(K.vmo_op_range(k, handle, x, a, b)), 0, c, None
            # A buffer of 0xFF bytes: the entries written are the leading ones that changed
            # (an entry is page-aligned, never eight 0xFF bytes).
            buf = None if null else (b"" if bad else bytearray(b"\xff") * c)
            status = K.vmo_op_range(k, handle, x, a, b, buf, c)
            n = 0
            if buf is not None and not bad:
                while 8 * n + 8 <= c and buf[8 * n:8 * n + 8] != b"\xff" * 8:
                    n += 1
            entries = bytes(buf[:8 * n]) if n else b""
            return int(status), hash64(entries), c, entries
        elif call == VMO_CLONE:
            status, value = K.vmo_clone(k, handle, x, a, b)
        elif call == HANDLE_CLOSE:
            status = K.handle_close(k, handle)
        elif call == HANDLE_DUPLICATE:
            status, value = K.handle_duplicate(k, handle, x)
        elif call == HANDLE_REPLACE:
            status, value = K.handle_replace(k, handle, x)
        elif call == OBJECT_GET_INFO:
            status, info = K.object_get_info(k, handle, x)
            c = 0
            if isinstance(info, HandleBasicInfo):
                value, c = info.koid, info_word(info)
        elif call == EVENT_CREATE:
            status, value = K.event_create(k, x)
        elif call == VMO_READ_BYTES:
            status, got = K.vmo_read_bytes(k, handle, a, b)
            value, c = len(got), hash64(got)
        elif call == VMO_COMMITTED_BYTES:
            status, value = K.vmo_committed_bytes(k, handle)
        elif call == VMO_CREATE_CONTIGUOUS:
            status, value = K.vmo_create_contiguous(k, a, x)
        else:
            return self._phys(rec, data)
        return int(status), int(value), c, None

    def _phys(self, rec, data):
        """A phys_* record: MxError becomes its status."""
        call, _, flags, _, _, a, b, c, value = rec
        k, K = self.k, self.K
        try:
            if call == PHYS_READ:
                return 0, 0, hash64(K.phys_read(k, a, b)), None
            if call == PHYS_WRITE:
                buf = memoryview(b"\0\0")[::2] if flags & BAD_BUFFER else (
                    bytes(b) if data is None else data)
                return 0, K.phys_write(k, a, buf), c, None
            if call == PHYS_VIEW:
                view = K.phys_view(k, a, b)
                self.nviews += 1
                self.views[self.nviews] = (view, a, b)
                return 0, self.nviews, c, None
        except MxError as exc:
            return int(exc.status), 0, 0 if call == PHYS_READ else c, None
        # PHYS_VIEW_RELEASE: the view numbered `value`, of the recorded range.
        view, paddr, length = self.views.get(value, (None, None, None))
        if view is None or (paddr, length) != (a, b):
            return int(Status.ERR_BAD_STATE), 0, c, None
        del self.views[value]
        if uses_side(rec):
            view[:b] = data
        elif flags & NO_DATA:
            view[:b] = bytes(b)
        view.release()
        return 0, value, c, None

    def release_all(self):
        """Release the views still alive (a replay or a run ends)."""
        for view, _, _ in self.views.values():
            view.release()
        self.views.clear()


def run_batch(kernel, batch, recorder=None):
    """Run ``batch`` (a `vmo.Batch`, or a (records, data) pair) on ``kernel``: the reference
    `Kernel.run`, giving a `vmo.BatchResult`. A view the batch leaves alive is released at
    its end."""
    records, data = batch_buffers(batch)
    data = bytes(data)
    recs = check_batch(records, data)
    n = len(recs)
    statuses = array.array("i", bytes(4 * n))
    values = array.array("Q", bytes(8 * n))
    cs = array.array("Q", bytes(8 * n))
    entries = array.array("Q")
    entry_start = array.array("Q", bytes(8 * (n + 1)))
    refs = [0] * n
    executor = Executor(kernel)
    try:
        for index, rec in enumerate(recs):
            if rec[2] & REF:
                rec = rec[:2] + (rec[2] & ~REF, refs[rec[3]]) + rec[4:]
            payload = data[rec[7]:rec[7] + rec[6]] if uses_side(rec) else None
            entry_start[index] = len(entries)
            status, value, c, got = executor.execute(rec, payload)
            statuses[index], values[index], cs[index] = status, value, c
            refs[index] = value if status == 0 else 0
            if got:
                entries.frombytes(got)
            if recorder is not None:
                recorder.add_result(rec, status, value, c, payload)
        entry_start[n] = len(entries)
    finally:
        executor.release_all()
    return BatchResult(statuses, values, cs, entries, entry_start)


def _status(code):
    try:
        return Status(code)
    except ValueError:
        return code


def replay(path, check=True, *, kernel=None):
    """Replay the trace at ``path`` on a fresh reference kernel of its memory map (or on a
    fresh ``kernel(memory=...)`` of another class with the same API, e.g. `vmo.Kernel`)
    -> `vmo.ReplayResult`. With ``check``, a record whose status, value or result ``c``
    differs from the recorded one is a mismatch. ValueError for a trace a reader refuses
    (also part way through)."""
    from ._kernel import Kernel

    cls = Kernel if kernel is None else kernel
    reader = TraceReader(path)
    coherent, line, lines = header_cache_options(reader.header)
    k = cls(memory=list(reader.header.memory_map), coherent=coherent, cache_line=line,
            cache_lines=lines)
    executor = Executor(k)
    mismatches = 0
    first = None
    ops = 0
    t0 = time.perf_counter()
    try:
        for start, records, side in reader:
            for i, rec in enumerate(records):
                payload = bytes(side[rec[7]:rec[7] + rec[6]]) if uses_side(rec) else None
                status, value, c, _ = executor.execute(rec, payload)
                ops += 1
                call = rec[0]
                if check and (status != rec[1] or value != rec[8]
                              or (call in C_RESULTS and c != rec[7])):
                    mismatches += 1
                    if first is None:
                        args = dict(zip(("flags", "handle", "x", "a", "b", "c"),
                                        rec[2:8]))
                        first = Mismatch(start + i, CALL_NAMES[call], args,
                                         (_status(rec[1]), rec[8], rec[7]),
                                         (_status(status), value, c))
        seconds = time.perf_counter() - t0
        stats = k.stats()
    finally:
        executor.release_all()
        k.close()
    return ReplayResult(os.fspath(path), ops, seconds, mismatches, first, stats,
                        bool(reader.truncated), reader.stop, reader.verified, bool(check),
                        "reference")
