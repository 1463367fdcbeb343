"""Traces and batches in plain Python: the executable spec of docs/trace-format.md.

The reference model's twin of the compiled engine (`vmo._trace`): the codec (`hash64`, the
delta coding of records, blocks with their CRC-32), the writer (`TraceWriter`: blocks flushed
at 4096 records or 1 MiB of side data, and at the end with the end mark), the reader
(`TraceReader`, `read_header`, `trace_info`: every refusal of the doc, as ValueError naming the
byte offset or the record index), the recording hooks behind `Kernel.record(path)`, the batch
executor behind `Kernel.run(batch)` and `replay(path)`.

A record is a tuple of its fields in file order, ``(call, status, flags, handle, x, a, b, c,
value)`` (the reserved u32 is always 0).

What the format leaves open, fixed here (the compiled engine must do the same for the files
to be identical byte for byte):

* ``ARG_RANGE``: every field but ``call``, ``status`` and ``flags`` is 0 (the integers do not
  fit their fields); a replay passes -1 for the call's first integer argument (for
  `phys_read`/`phys_write`, -1 for the length when the status is ERR_INVALID_ARGS, else
  2**64 for the address). ``BAD_BUFFER`` and ``NULL_BUFFER`` say what the buffer argument
  was, whatever the call answered (a bad handle may have decided first); a replay passes
  None, or a buffer the call refuses. Neither flag is set where the call does not look at
  the buffer (a transfer of length 0, an op other than LOOKUP).
* Writes (`vmo_write`, `phys_write`, `phys_view_release`): when the buffer is usable, the
  side section holds its first ``b`` bytes (whatever the status) and ``c`` is their offset in
  the block's side section (the side length before them, also for 0 bytes); otherwise ``c``
  is 0 and no bytes are kept. A block is flushed after the record that brings it to 4096
  records or to 1 MiB of side data, and before a record whose bytes would take its side
  section past 64 MiB; a write of more than 64 MiB cannot be recorded (ValueError, before
  the call).
* ``c`` of a LOOKUP is ``buffer_size`` as the call saw it (the buffer's size when None was
  given; 0 for a null buffer); ``c`` and ``value`` of every other op are 0.
* `object_get_info`: ``c`` and ``value`` are 0 for MX_INFO_HANDLE_VALID and on failure.
* View numbers count the successful `phys_view` calls of the recording, from 1.
"""

import array
import functools
import operator
import os
import struct
import time
import zlib
from dataclasses import dataclass, field

from ..constants import MX_INFO_HANDLE_BASIC, PAGE_SIZE, Op
from ..errors import MxError, Status
from ..records import HandleBasicInfo
from ._args import Refused, _export, bytes_view, readable, writable
from ._frames import pool_frame_of

__all__ = [
    "CALL_NAMES", "RECORD_SIZE", "ReplayResult", "RunResult", "TraceHeader", "TraceReader",
    "TraceWriter", "decode_records", "encode_records", "hash64", "read_header", "replay",
    "trace_info",
]

# -- the record -------------------------------------------------------------------------------
RECORD = struct.Struct("<BbHIIIQQQQ")
RECORD_SIZE = RECORD.size  # 48
assert RECORD_SIZE == 48

CALL_NAMES = {
    1: "vmo_create", 2: "vmo_read", 3: "vmo_write", 4: "vmo_get_size", 5: "vmo_set_size",
    6: "vmo_op_range", 7: "vmo_clone", 8: "handle_close", 9: "handle_duplicate",
    10: "handle_replace", 11: "object_get_info", 12: "event_create", 13: "vmo_read_bytes",
    14: "vmo_committed_bytes", 15: "vmo_create_contiguous", 16: "phys_read", 17: "phys_write",
    18: "phys_view", 19: "phys_view_release",
}
CALLS = {name: code for code, name in CALL_NAMES.items()}
(VMO_CREATE, VMO_READ, VMO_WRITE, VMO_GET_SIZE, VMO_SET_SIZE, VMO_OP_RANGE, VMO_CLONE,
 HANDLE_CLOSE, HANDLE_DUPLICATE, HANDLE_REPLACE, OBJECT_GET_INFO, EVENT_CREATE,
 VMO_READ_BYTES, VMO_COMMITTED_BYTES, VMO_CREATE_CONTIGUOUS, PHYS_READ, PHYS_WRITE,
 PHYS_VIEW, PHYS_VIEW_RELEASE) = range(1, 20)
CALL_LAST = PHYS_VIEW_RELEASE

REF, NULL_BUFFER, BAD_BUFFER, ARG_RANGE, NO_DATA = 0x1, 0x2, 0x4, 0x8, 0x10
KNOWN_FLAGS = REF | NULL_BUFFER | BAD_BUFFER | ARG_RANGE | NO_DATA
NOT_KEPT = NULL_BUFFER | BAD_BUFFER | ARG_RANGE | NO_DATA  # a write without side bytes
WRITES = (VMO_WRITE, PHYS_WRITE, PHYS_VIEW_RELEASE)        # calls whose c points at bytes
C_RESULTS = (VMO_READ, OBJECT_GET_INFO, VMO_READ_BYTES, PHYS_READ)  # calls whose c is a result

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
_MASK64 = U64

# -- the file ---------------------------------------------------------------------------------
MAGIC = b"VMOTRACE"
BLOCK_MAGIC = b"VMOB"
VERSION = 1
MAX_RANGES = 64
MAX_HEADER = 1 << 20             # this reader's limit on a header (ranges and options)
MAX_BLOCK_RECORDS = 65536
MAX_ENCODED = 4 << 20
MAX_SIDE = 64 << 20
FLUSH_RECORDS = 4096             # the writer's block boundaries
FLUSH_SIDE = 1 << 20
BLOCK_HEAD = struct.Struct("<4sIII")


def hash64(data):
    """docs/trace-format.md "hash64" of the bytes ``data``."""
    n = len(data)
    h = (n * 0x9E3779B97F4A7C15) & _MASK64
    whole = n - n % 8
    words = array.array("Q")
    words.frombytes(bytes(data[:whole]))
    if words.itemsize != 8 or struct.pack("=H", 1) != b"\x01\x00":
        words = struct.unpack("<%dQ" % (whole // 8), bytes(data[:whole]))
    for w in words:
        h = ((h ^ w) * 0xFF51AFD7ED558CCD) & _MASK64
        h ^= h >> 29
    if whole < n:
        w = int.from_bytes(bytes(data[whole:]), "little")
        h = ((h ^ w) * 0xFF51AFD7ED558CCD) & _MASK64
        h ^= h >> 29
    return h ^ (h >> 32)


# -- the delta codec --------------------------------------------------------------------------
def encode_records(records):
    """The records (tuples, or 48-byte strings) of one block, delta-coded."""
    out = bytearray()
    previous = {}
    for rec in records:
        raw = rec if isinstance(rec, (bytes, bytearray)) else RECORD.pack(
            rec[0], rec[1], rec[2], rec[3], rec[4], 0, *rec[5:])
        before = previous.get(raw[0], bytes(RECORD_SIZE))
        previous[raw[0]] = raw
        mask = 1
        kept = bytearray(raw[:1])  # the call byte, kept as it is: it selects the delta base
        for i in range(1, RECORD_SIZE):
            d = raw[i] ^ before[i]
            if d:
                mask |= 1 << i
                kept.append(d)
        out += mask.to_bytes(6, "little")
        out += kept
    return bytes(out)


def decode_records(encoded, count, where=0, first_index=0, partial=False):
    """The 48-byte records of a block from its ``encoded`` bytes: a list of ``count`` records,
    or (``partial``: a cut block) as many whole records as there are bytes for. ValueError
    naming the record index and byte offset (``where`` is the offset of ``encoded`` in the
    file) when the bytes do not decode to exactly ``count`` records, or a call is unknown."""
    records = []
    previous = {}
    pos = 0
    n = len(encoded)
    while len(records) < count:
        index = first_index + len(records)
        if pos + 6 > n:
            if partial:
                break
            raise ValueError(f"record {index} at byte {where + pos}: the block's records "
                             f"end early")
        mask = int.from_bytes(encoded[pos:pos + 6], "little")
        if mask >> RECORD_SIZE:
            raise ValueError(f"record {index} at byte {where + pos}: bad delta mask")
        start = pos
        pos += 6
        ones = bin(mask).count("1")
        if pos + ones > n:
            if partial:
                break
            raise ValueError(f"record {index} at byte {where + start}: the block's records "
                             f"end early")
        if not mask & 1:
            raise ValueError(f"record {index} at byte {where + start}: no call byte")
        call = encoded[pos]
        if not 1 <= call <= CALL_LAST:
            raise ValueError(f"record {index} at byte {where + start}: unknown call {call}")
        raw = bytearray(previous.get(call, bytes(RECORD_SIZE)))
        raw[0] = call
        pos += 1
        for i in range(1, RECORD_SIZE):
            if mask >> i & 1:
                raw[i] ^= encoded[pos]
                pos += 1
        previous[raw[0]] = bytes(raw)
        records.append(bytes(raw))
    if not partial and pos != n:
        raise ValueError(f"byte {where + pos}: {n - pos} bytes after the block's last record")
    return records


def unpack(raw):
    """A 48-byte record as its tuple of fields (the reserved u32 left out)."""
    call, status, flags, handle, x, _, a, b, c, value = RECORD.unpack(raw)
    return (call, status, flags, handle, x, a, b, c, value)


def pack(rec):
    return RECORD.pack(rec[0], rec[1], rec[2], rec[3], rec[4], 0, *rec[5:])


def _check_record(rec, index, side_length):
    """A reader's refusals of one record (its call was checked while decoding)."""
    call, _, flags, handle, _, _, b, c, _ = rec
    if flags & REF and handle >= index:
        raise ValueError(f"record {index}: REF to record {handle}, not an earlier one")
    if call in WRITES and not flags & NOT_KEPT and c + b > side_length:
        raise ValueError(f"record {index}: its bytes [{c}, {c + b}) lie outside its block's "
                         f"side section of {side_length} bytes")


# -- the header -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceHeader:
    """A trace's header: format version, the kernel's memory map ((base, size), ...) in
    allocation order, options ((key, value bytes), ...), and its length in bytes."""

    version: int
    memory_map: tuple
    options: tuple = ()
    length: int = 0


def encode_header(memory_map, options=()):
    if not 1 <= len(memory_map) <= MAX_RANGES:
        raise ValueError(f"a trace holds 1 to {MAX_RANGES} memory ranges")
    body = struct.pack("<I", len(memory_map))
    for base, size in memory_map:
        body += struct.pack("<QQ", base, size)
    opts = b"".join(struct.pack("<HH", key, len(value)) + bytes(value) for key, value in options)
    body += struct.pack("<I", len(opts)) + opts
    length = 8 + 4 + 4 + 4 + len(body) + 4
    head = MAGIC + struct.pack("<III", VERSION, length, 0) + body
    return head + struct.pack("<I", zlib.crc32(head))


def parse_header(data, file_size):
    """The `TraceHeader` at the start of ``data`` (at least its first ``length`` bytes when
    the file has them); ValueError naming the byte offset otherwise."""
    if len(data) < 24:
        raise ValueError("byte 0: not a vmo trace (shorter than a header)")
    if data[:8] != MAGIC:
        raise ValueError("byte 0: not a vmo trace (wrong magic)")
    version, length, flags, nranges = struct.unpack_from("<IIII", data, 8)
    if version > VERSION or version == 0:
        raise ValueError(f"byte 8: format version {version}; this reader reads {VERSION}")
    if length < 24 + 8 or length > MAX_HEADER:
        raise ValueError(f"byte 12: header length {length} beyond the limits")
    if length > file_size:
        raise ValueError(f"byte 12: header length {length} beyond the end of the file "
                         f"({file_size} bytes)")
    if len(data) < length:
        raise ValueError(f"byte {len(data)}: the header is cut short")
    crc, = struct.unpack_from("<I", data, length - 4)
    if zlib.crc32(bytes(data[:length - 4])) != crc:
        raise ValueError(f"byte {length - 4}: the header's checksum does not match")
    if flags:
        raise ValueError(f"byte 16: unknown header flags {flags:#x}")
    if not 1 <= nranges <= MAX_RANGES:
        raise ValueError(f"byte 20: {nranges} memory ranges (1 to {MAX_RANGES})")
    pos = 24
    if pos + 16 * nranges + 4 > length - 4:
        raise ValueError(f"byte {pos}: the memory map runs past the header")
    ranges = tuple(struct.unpack_from("<QQ", data, pos + 16 * i) for i in range(nranges))
    pos += 16 * nranges
    olen, = struct.unpack_from("<I", data, pos)
    pos += 4
    if pos + olen != length - 4:
        raise ValueError(f"byte {pos - 4}: options length {olen} does not fill the header")
    options = []
    end = pos + olen
    while pos < end:
        if pos + 4 > end:
            raise ValueError(f"byte {pos}: an option entry runs past the options")
        key, size = struct.unpack_from("<HH", data, pos)
        if pos + 4 + size > end:
            raise ValueError(f"byte {pos}: an option entry runs past the options")
        raise ValueError(f"byte {pos}: unknown option key {key}")
    return TraceHeader(version, ranges, tuple(options), length)


def read_header(path):
    """The `TraceHeader` of the trace at ``path`` (ValueError if it is not one)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(24)
        if len(data) == 24 and data[:8] == MAGIC:
            length, = struct.unpack_from("<I", data, 12)
            if 0 < length <= min(MAX_HEADER, size):
                data += f.read(length - 24)
        return parse_header(data, size)


# -- the writer -------------------------------------------------------------------------------
class TraceWriter:
    """Writes a trace: the header now, blocks as records come (`add`), the last block and the
    end mark at `close`."""

    def __init__(self, path, memory_map, options=()):
        self.path = os.fspath(path)
        self._file = open(self.path, "wb")
        self._file.write(encode_header(memory_map, options))
        self._records = []
        self._side = bytearray()
        self.total = 0
        self.closed = False

    def add(self, rec, data=None):
        """Append the record ``rec`` (a tuple of fields); for a write whose bytes are kept,
        ``data`` holds them and the record's ``c`` is set to their offset in the block."""
        if data is not None:
            if len(data) > MAX_SIDE:
                raise ValueError(f"a write of {len(data)} bytes cannot be recorded (at most "
                                 f"{MAX_SIDE} bytes a call)")
            if len(self._side) + len(data) > MAX_SIDE:
                self._flush()
            rec = rec[:7] + (len(self._side),) + rec[8:]
            self._side += data
        self._records.append(rec)
        self.total += 1
        if len(self._records) >= FLUSH_RECORDS or len(self._side) >= FLUSH_SIDE:
            self._flush()

    def _block(self, nrecords, encoded, side):
        head = BLOCK_HEAD.pack(BLOCK_MAGIC, nrecords, len(encoded), len(side))
        block = head + encoded + bytes(side)
        self._file.write(block + struct.pack("<I", zlib.crc32(block)))

    def _flush(self):
        if self._records:
            self._block(len(self._records), encode_records(self._records), self._side)
        self._records = []
        self._side = bytearray()

    def close(self):
        """Flush the last block and write the end mark; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self._flush()
            self._block(0, b"", struct.pack("<Q", self.total))
        finally:
            self._file.close()


# -- the reader -------------------------------------------------------------------------------
class TraceReader:
    """Reads a trace block by block. ``reader.header`` is its `TraceHeader`; iterating gives
    ``(first_index, records, side)`` per block, the records as tuples. After the iteration,
    ``truncated`` says whether the end mark was missing (the file was cut short), ``stop``
    is the byte offset where the readable trace stops, ``verified`` is False when the last
    records came from a cut block (no CRC to check them), and ``records`` counts them.

    ValueError, naming the byte offset or record index, for everything docs/trace-format.md
    "What a reader refuses" lists (raised when the iteration reaches it)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.header = read_header(self.path)
        self.size = os.path.getsize(self.path)
        self.truncated = None
        self.verified = True
        self.stop = self.header.length
        self.records = 0

    def __iter__(self):
        with open(self.path, "rb") as f:
            pos = self.header.length
            f.seek(pos)
            index = 0
            while True:
                head = f.read(BLOCK_HEAD.size)
                if len(head) < BLOCK_HEAD.size:
                    if head and head != BLOCK_MAGIC[:len(head)]:
                        raise ValueError(f"byte {pos}: wrong block magic")
                    self.truncated = True
                    break
                magic, nrecords, enc_len, side_len = BLOCK_HEAD.unpack(head)
                if magic != BLOCK_MAGIC:
                    raise ValueError(f"byte {pos}: wrong block magic")
                if nrecords > MAX_BLOCK_RECORDS:
                    raise ValueError(f"byte {pos + 4}: {nrecords} records in a block "
                                     f"(at most {MAX_BLOCK_RECORDS})")
                if enc_len > MAX_ENCODED:
                    raise ValueError(f"byte {pos + 8}: encoded length {enc_len} beyond "
                                     f"{MAX_ENCODED}")
                if side_len > MAX_SIDE:
                    raise ValueError(f"byte {pos + 12}: side length {side_len} beyond "
                                     f"{MAX_SIDE}")
                body = f.read(enc_len + side_len + 4)
                if len(body) < enc_len + side_len + 4:
                    # The file ends inside this block: a crash. Its whole records are given,
                    # unverified (no CRC), with the side bytes that are there.
                    self.truncated = True
                    if nrecords:
                        records = decode_records(body[:enc_len], nrecords, pos + 16, index,
                                                 partial=True)
                        side = body[enc_len:enc_len + side_len]
                        records = [unpack(r) for r in records]
                        good = []
                        for i, rec in enumerate(records):
                            try:
                                _check_record(rec, index + i, len(side))
                            except ValueError:
                                break
                            good.append(rec)
                        if good:
                            self.verified = False
                            self.records += len(good)
                            yield index, good, side
                    break
                crc, = struct.unpack_from("<I", body, enc_len + side_len)
                if zlib.crc32(head + body[:-4]) != crc:
                    raise ValueError(f"byte {pos + 16 + enc_len + side_len}: block checksum "
                                     f"does not match (block at byte {pos})")
                side = body[enc_len:enc_len + side_len]
                if nrecords == 0:
                    if enc_len or side_len != 8:
                        raise ValueError(f"byte {pos}: a block of no records that is not "
                                         f"the end mark")
                    total, = struct.unpack("<Q", side)
                    if total != index:
                        raise ValueError(f"byte {pos + 16}: the end mark counts {total} "
                                         f"records, the trace holds {index}")
                    end = pos + 16 + 8 + 4
                    if end != self.size:
                        raise ValueError(f"byte {end}: {self.size - end} bytes after the "
                                         f"end mark")
                    self.stop = end
                    self.truncated = False
                    break
                records = [unpack(r) for r in
                           decode_records(body[:enc_len], nrecords, pos + 16, index)]
                for i, rec in enumerate(records):
                    _check_record(rec, index + i, side_len)
                pos += 16 + enc_len + side_len + 4
                self.stop = pos
                self.records += nrecords
                yield index, records, side
                index += nrecords


def trace_info(path):
    """A dict describing the trace at ``path``: header, records, a call histogram (call
    name: count), file bytes, bytes per call, truncated, stop offset, writes' side bytes."""
    reader = TraceReader(path)
    histogram = {}
    side = 0
    for _, records, block_side in reader:
        side += len(block_side)
        for rec in records:
            name = CALL_NAMES[rec[0]]
            histogram[name] = histogram.get(name, 0) + 1
    n = reader.records
    return {
        "path": reader.path,
        "version": reader.header.version,
        "memory_map": reader.header.memory_map,
        "options": reader.header.options,
        "records": n,
        "bytes": reader.size,
        "side_bytes": side,
        "bytes_per_call": (reader.size / n) if n else None,
        "histogram": dict(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
        "truncated": reader.truncated,
        "stop": reader.stop,
        "verified": reader.verified,
    }


# -- executing records -------------------------------------------------------------------------
def _info_c(info):
    return info.rights | info.type << 32 | info.props << 48


class Executor:
    """Runs records on a kernel (any kernel with the syscall layer and the physical-access
    calls, called through its class so that no recording hook sees them). Keeps the live
    physical views it made, by view number."""

    def __init__(self, kernel):
        self.k = kernel
        self.K = type(kernel)
        self.views = {}
        self.nviews = 0

    def execute(self, rec, data, view_number=None):
        """Run one record; ``data`` is the bytes of a write (None: zeros, for NO_DATA).
        Returns ``(status, value, c, entries)``: ``c`` as a trace records it (the call's
        result where c is one, else the record's own), ``entries`` the LOOKUP entries
        written (bytes) or None."""
        call, _, flags, handle, x, a, b, c, _ = rec
        k, K = self.k, self.K
        if flags & ARG_RANGE:
            return self._arg_range(call, rec) + (c, None)
        null = flags & NULL_BUFFER
        bad = flags & BAD_BUFFER
        if call == VMO_CREATE:
            status, value = K.vmo_create(k, a, x)
        elif call == VMO_READ:
            buf = None if null else bytearray(0 if bad else b)
            status, value = K.vmo_read(k, handle, buf, a, b)
            c = hash64(memoryview(buf)[:value]) if buf is not None else 0
            if status:
                c = 0
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
            status, value = K.vmo_set_size(k, handle, a), 0
        elif call == VMO_OP_RANGE:
            if x == Op.LOOKUP:
                buf = None if null else (b"" if bad else bytearray(b"\xff") * c)
                status = K.vmo_op_range(k, handle, x, a, b, buf, c)
                entries = b""
                if buf is not None and not bad:
                    n = 0
                    while 8 * n + 8 <= c and buf[8 * n:8 * n + 8] != b"\xff" * 8:
                        n += 1
                    entries = bytes(buf[:8 * n])
                return status, hash64(entries), c, entries
            status, value, c = K.vmo_op_range(k, handle, x, a, b), 0, 0
        elif call == VMO_CLONE:
            status, value = K.vmo_clone(k, handle, x, a, b)
        elif call == HANDLE_CLOSE:
            status, value = K.handle_close(k, handle), 0
        elif call == HANDLE_DUPLICATE:
            status, value = K.handle_duplicate(k, handle, x)
        elif call == HANDLE_REPLACE:
            status, value = K.handle_replace(k, handle, x)
        elif call == OBJECT_GET_INFO:
            status, info = K.object_get_info(k, handle, x)
            if isinstance(info, HandleBasicInfo):
                value, c = info.koid, _info_c(info)
            else:
                value, c = 0, 0
        elif call == EVENT_CREATE:
            status, value = K.event_create(k, x)
        elif call == VMO_READ_BYTES:
            status, got = K.vmo_read_bytes(k, handle, a, b)
            value, c = len(got), hash64(got)
        elif call == VMO_COMMITTED_BYTES:
            status, value = K.vmo_committed_bytes(k, handle)
        elif call == VMO_CREATE_CONTIGUOUS:
            status, value = K.vmo_create_contiguous(k, a, x)
        elif call == PHYS_READ:
            value, c = 0, 0
            try:
                c = hash64(K.phys_read(k, a, b))
                status = 0
            except MxError as exc:
                status = exc.status
        elif call == PHYS_WRITE:
            buf = memoryview(b"\0\0")[::2] if bad else (bytes(b) if data is None else data)
            try:
                status, value = 0, K.phys_write(k, a, buf)
            except MxError as exc:
                status, value = exc.status, 0
        elif call == PHYS_VIEW:
            try:
                view = K.phys_view(k, a, b)
            except MxError as exc:
                status, value = exc.status, 0
            else:
                self.nviews += 1
                self.views[self.nviews] = view
                status, value = 0, self.nviews
        elif call == PHYS_VIEW_RELEASE:
            number = rec[8] if view_number is None else view_number
            view = self.views.pop(number, None)
            if view is None:
                status, value = Status.ERR_BAD_STATE, 0
            else:
                if not (flags & NOT_KEPT):
                    payload = bytes(b) if data is None else data
                    n = min(len(payload), view.nbytes)
                    view[:n] = payload[:n]
                view.release()
                status, value = 0, number
        else:
            raise ValueError(f"unknown call {call}")
        return int(status), int(value), c, None

    def _arg_range(self, call, rec):
        """An ARG_RANGE record: the call with -1 for its first integer argument."""
        k, K = self.k, self.K
        if call in (PHYS_READ, PHYS_WRITE):
            invalid = rec[1] == Status.ERR_INVALID_ARGS
            try:
                if call == PHYS_READ:
                    K.phys_read(k, 0, -1) if invalid else K.phys_read(k, 1 << 64, 0)
                else:
                    bad = memoryview(b"\0\0")[::2]
                    K.phys_write(k, 1 << 64, bad if invalid else b"")
                return 0, 0
            except MxError as exc:
                return int(exc.status), 0
        calls = {
            VMO_CREATE: lambda: K.vmo_create(k, -1),
            VMO_READ: lambda: K.vmo_read(k, -1, None, 0, 0),
            VMO_WRITE: lambda: K.vmo_write(k, -1, None, 0, 0),
            VMO_GET_SIZE: lambda: K.vmo_get_size(k, -1),
            VMO_SET_SIZE: lambda: K.vmo_set_size(k, -1, 0),
            VMO_OP_RANGE: lambda: K.vmo_op_range(k, -1, 0, 0, 0),
            VMO_CLONE: lambda: K.vmo_clone(k, -1, 0, 0, 0),
            HANDLE_CLOSE: lambda: K.handle_close(k, -1),
            HANDLE_DUPLICATE: lambda: K.handle_duplicate(k, -1, 0),
            HANDLE_REPLACE: lambda: K.handle_replace(k, -1, 0),
            OBJECT_GET_INFO: lambda: K.object_get_info(k, -1, 0),
            EVENT_CREATE: lambda: K.event_create(k, -1),
            VMO_READ_BYTES: lambda: K.vmo_read_bytes(k, -1, 0, 0),
            VMO_COMMITTED_BYTES: lambda: K.vmo_committed_bytes(k, -1),
            VMO_CREATE_CONTIGUOUS: lambda: K.vmo_create_contiguous(k, -1),
        }
        if call not in calls:  # phys_view and its release take no C integer beyond u64
            return int(Status.ERR_INVALID_ARGS), 0
        result = calls[call]()
        status = result[0] if isinstance(result, tuple) else result
        return int(status), 0

    def release_all(self):
        for view in self.views.values():
            view.release()
        self.views.clear()


# -- batches ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What `Kernel.run(batch)` gives on the reference model: per record, its status
    (array('i')), value and c (array('Q'): c is the call's result where it has one (reads'
    hash, object_get_info's rights/type/props), else the record's own c), and the entries
    each LOOKUP wrote (record index -> array('Q'))."""

    statuses: array.array
    values: array.array
    c: array.array
    lookups: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.statuses)


def batch_buffers(batch):
    """(records, data) of a batch: a `vmo.Batch` (``.records``, ``.data``), a (records, data)
    pair, or the records alone."""
    if hasattr(batch, "records") and hasattr(batch, "data"):
        return batch.records, batch.data
    if isinstance(batch, tuple) and len(batch) == 2:
        return batch
    return batch, b""


def check_batch(records, data):
    """The records of a batch as tuples; ValueError naming the record index for a length that
    is not a multiple of 48, an unknown call, a REF to a record that is not earlier, or a
    write whose bytes lie outside ``data``."""
    records = memoryview(records).cast("B")
    if len(records) % RECORD_SIZE:
        raise ValueError(f"a batch is 48-byte records: {len(records)} bytes")
    out = []
    for index in range(len(records) // RECORD_SIZE):
        rec = unpack(records[index * RECORD_SIZE:(index + 1) * RECORD_SIZE])
        if not 1 <= rec[0] <= CALL_LAST:
            raise ValueError(f"record {index}: unknown call {rec[0]}")
        _check_record(rec, index, len(data))
        out.append(rec)
    return out


def run_batch(kernel, batch, executor, recorder=None):
    """Run ``batch`` on ``kernel`` (the reference `Kernel.run`); see `RunResult`."""
    records, data = batch_buffers(batch)
    data = bytes(data)
    recs = check_batch(records, data)
    n = len(recs)
    statuses = array.array("i", bytes(4 * n))
    values = array.array("Q", bytes(8 * n))
    cs = array.array("Q", bytes(8 * n))
    lookups = {}
    for index, rec in enumerate(recs):
        call, _, flags, handle = rec[:4]
        if flags & REF:
            handle = values[handle]
            rec = rec[:3] + (handle,) + rec[4:]
        payload = None
        if call in WRITES and not flags & NOT_KEPT:
            payload = data[rec[7]:rec[7] + rec[6]]
        status, value, c, entries = executor.execute(
            rec, payload, view_number=handle if call == PHYS_VIEW_RELEASE else None)
        statuses[index], values[index], cs[index] = status, value, c
        if entries is not None:
            lookups[index] = array.array("Q", entries)
        if recorder is not None:
            recorder.add_result(rec, status, value, c, payload)
    return RunResult(statuses, values, cs, lookups)


# -- recording ---------------------------------------------------------------------------------
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
        self.writer = TraceWriter(self.path, kernel.memory_map)
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
        if flags & ARG_RANGE:
            handle = x = a = b = c = value = 0
            data = None
        self.writer.add((call, int(status), flags, handle, x, a, b, c, int(value)), data)

    def add_result(self, rec, status, value, c, payload):
        """A record of `run` (REF already resolved), with its results."""
        call, _, flags, handle, x, a, b = rec[:7]
        flags &= ~(REF | NO_DATA)
        data = None
        if call in WRITES and not flags & NOT_KEPT:
            data = bytes(b) if payload is None else payload
        self._add(call, status, flags, handle, x, a, b, c, value, data)

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
        value, c = (info.koid, _info_c(info)) if isinstance(info, HandleBasicInfo) else (0, 0)
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
    def _phys(self, call, method, paddr, length, arg, data=None):
        try:
            result = method(self.kernel, paddr, arg)
        except MxError as exc:
            flags = 0 if _u64(paddr) and _u64(length) else ARG_RANGE
            self._add(call, exc.status, flags, 0, 0, paddr, length, 0, 0, data)
            raise
        return result

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


# -- replay ------------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    """What a replay gives: records run (``ops``), wall time (``seconds``, ``ops_per_second``),
    mismatches (records whose status, value or c differ from the recorded ones; 0 unless
    checked), the first of them (a dict: index, call, field, expected, got; or None), the
    kernel's final ``stats()``, ``truncated`` (the end mark was missing: the trace was cut
    short) and ``stop`` (the byte offset where the trace stops), ``verified`` (False when the
    last records came from a cut block and were run unverified), ``checked`` and ``path``."""

    path: str
    ops: int
    seconds: float
    mismatches: int
    first_mismatch: object
    stats: dict
    truncated: bool
    stop: int
    verified: bool = True
    checked: bool = True
    engine: str = "reference"

    @property
    def ops_per_second(self):
        return self.ops / self.seconds if self.seconds > 0 else float("inf")

    @property
    def clean(self):
        """Every record replayed as recorded, and the trace was whole."""
        return self.mismatches == 0 and not self.truncated and self.checked


_FIELDS = ("status", "value", "c")


def replay(path, check=True, *, kernel=None):
    """Replay the trace at ``path`` on a fresh reference kernel of its memory map (or on a
    fresh ``kernel(memory=...)`` of another class with the same API, e.g. `vmo.Kernel`)
    -> `ReplayResult`. ValueError for a trace a reader refuses (also part way through)."""
    from ._kernel import Kernel

    cls = Kernel if kernel is None else kernel
    reader = TraceReader(path)
    k = cls(memory=list(reader.header.memory_map))
    executor = Executor(k)
    mismatches = 0
    first = None
    ops = 0
    results = []
    t0 = time.perf_counter()
    try:
        for start, records, side in reader:
            for i, rec in enumerate(records):
                index = start + i
                call, flags, handle = rec[0], rec[2], rec[3]
                if flags & REF:
                    rec = rec[:3] + (results[handle],) + rec[4:]
                payload = None
                if call in WRITES and not flags & NOT_KEPT:
                    payload = bytes(side[rec[7]:rec[7] + rec[6]])
                status, value, c, _ = executor.execute(rec, payload)
                results.append(value)
                ops += 1
                if check:
                    got = (status, value, c if call in C_RESULTS or call == VMO_OP_RANGE
                           else rec[7])
                    want = (rec[1], rec[8], rec[7])
                    if got != want:
                        mismatches += 1
                        if first is None:
                            j = next(j for j in range(3) if got[j] != want[j])
                            first = {"index": index, "call": CALL_NAMES[call],
                                     "field": _FIELDS[j], "expected": want[j], "got": got[j]}
        seconds = time.perf_counter() - t0
        stats = k.stats()
    finally:
        executor.release_all()
        k.close()
    return ReplayResult(os.fspath(path), ops, seconds, mismatches, first, stats,
                        bool(reader.truncated), reader.stop, reader.verified, bool(check))
