"""The trace file in plain Python, the reference twin of `vmo._trace`: the record, `hash64`,
the delta codec, the header, the block writer (`TraceWriter`), the validating reader
(`TraceReader`, `read_header`, `trace_info`) and the record checks shared by the reader and
batches (`check_batch`). Everything here follows docs/trace-format.md; nothing here knows a
kernel (the executor is `_exec`, the recording hooks `_recorder`).

A record is a tuple of its fields in file order, ``(call, status, flags, handle, x, a, b, c,
value)`` (the reserved u32 is always 0).
"""

import array
import os
import struct
import zlib
from dataclasses import dataclass

from .._coherency import cache_options
from ..records import CALL_NAMES

__all__ = [
    "CALL_NAMES", "RECORD_SIZE", "TraceHeader", "TraceReader", "TraceWriter", "batch_buffers",
    "check_batch", "decode_records", "encode_records", "hash64", "pack", "read_header",
    "trace_info", "unpack",
]

# -- the record -------------------------------------------------------------------------------
RECORD = struct.Struct("<BbHIIIQQQQ")
RECORD_SIZE = RECORD.size  # 48
assert RECORD_SIZE == 48

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
OPT_CACHE_MODEL = 1             # header option: the cache model of a non-coherent kernel
MAX_HEADER = 65536               # the limit on a header (ranges and options)
OPT_CACHE_MODEL = 1              # header option: the cache model of a non-coherent kernel
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
OP_BYTE = 8  # byte 8, the low byte of `x`: a vmo_op_range record's op


def delta_key(raw):
    """What a record is XORed with the previous record of: its call, and for vmo_op_range
    its op byte too (both stored as they are, so the reader knows the key first)."""
    return (raw[0], raw[OP_BYTE]) if raw[0] == VMO_OP_RANGE else raw[0]


def encode_records(records):
    """The records (tuples, or 48-byte strings) of one block, delta-coded."""
    out = bytearray()
    previous = {}
    for rec in records:
        raw = rec if isinstance(rec, (bytes, bytearray)) else pack(rec)
        key = delta_key(raw)
        before = previous.get(key, bytes(RECORD_SIZE))
        previous[key] = raw
        raw_bytes = (0, OP_BYTE) if raw[0] == VMO_OP_RANGE else (0,)
        mask = 0
        kept = bytearray()
        for i in range(RECORD_SIZE):
            d = raw[i] if i in raw_bytes else raw[i] ^ before[i]
            if d or i in raw_bytes:
                mask |= 1 << i
                kept.append(d)
        out += mask.to_bytes(6, "little")
        out += kept
    return bytes(out)


def decode_records(encoded, count, where=0, first_index=0, partial=False):
    """The 48-byte records of a block from its ``encoded`` bytes: a list of ``count`` records,
    or (``partial``: a cut block) the records up to the first that is not whole or not valid.
    ValueError naming the record index and byte offset (``where`` is the offset of
    ``encoded`` in the file) when the bytes do not decode to exactly ``count`` records, a
    mask lacks a byte stored as it is (the call; a vmo_op_range's op), or a call is unknown."""
    records = []
    previous = {}
    pos = 0
    n = len(encoded)
    while len(records) < count:
        index = first_index + len(records)
        mask = int.from_bytes(encoded[pos:pos + 6], "little")
        problem = None
        if pos + 6 > n or pos + 6 + bin(mask).count("1") > n:
            problem = "the block's records end early"
        elif not mask & 1:
            problem = "no call byte"
        elif not 1 <= encoded[pos + 6] <= CALL_LAST:
            problem = f"unknown call {encoded[pos + 6]}"
        elif encoded[pos + 6] == VMO_OP_RANGE and not mask >> OP_BYTE & 1:
            problem = "a vmo_op_range record without its op byte"
        if problem:
            if partial:
                return records
            raise ValueError(f"record {index} at byte {where + pos}: {problem}")
        pos += 6
        stored = bytearray(RECORD_SIZE)
        for i in range(RECORD_SIZE):
            if mask >> i & 1:
                stored[i] = encoded[pos]
                pos += 1
        before = previous.get(delta_key(stored), bytes(RECORD_SIZE))
        raw = bytes(stored[i] if i == 0 or (i == OP_BYTE and stored[0] == VMO_OP_RANGE)
                    else stored[i] ^ before[i] for i in range(RECORD_SIZE))
        previous[delta_key(raw)] = raw
        records.append(raw)
    if not partial and pos != n:
        raise ValueError(f"byte {where + pos}: {n - pos} bytes after the block's last record")
    return records


def unpack(raw):
    """A 48-byte record as its tuple of fields (the reserved u32 left out)."""
    call, status, flags, handle, x, _, a, b, c, value = RECORD.unpack(raw)
    return (call, status, flags, handle, x, a, b, c, value)


def pack(rec):
    return RECORD.pack(rec[0], rec[1], rec[2], rec[3], rec[4], 0, *rec[5:])


def uses_side(rec):
    """Whether the record's bytes are in the side section (``c`` their offset, ``b`` their
    length): a write whose buffer was usable and whose bytes are not zeros (NO_DATA)."""
    return rec[0] in WRITES and not rec[2] & NOT_KEPT


def check_raw(raw, index, side_length, in_file):
    """A reader's (``in_file``) or a batch's refusals of one 48-byte record: its tuple, or
    ValueError naming the record index."""
    rec = unpack(raw)
    call, _, flags, handle, _, _, b, c, _ = rec
    if not 1 <= call <= CALL_LAST:
        raise ValueError(f"record {index}: unknown call {call}")
    if flags & ~KNOWN_FLAGS:
        raise ValueError(f"record {index}: unknown flag bits {flags & ~KNOWN_FLAGS:#x}")
    if raw[12:16] != bytes(4):
        raise ValueError(f"record {index}: reserved field not 0")
    if flags & REF and in_file:
        raise ValueError(f"record {index}: REF flag in a file (batches only)")
    if flags & REF and handle >= index:
        raise ValueError(f"record {index}: REF to record {handle}, not an earlier one")
    if uses_side(rec) and c + b > side_length:
        raise ValueError(f"record {index}: its bytes [{c}, {c + b}) lie outside its block's "
                         f"side section of {side_length} bytes")
    return rec


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
    is not a multiple of 48 or a record `check_raw` refuses (REF must point to an earlier
    record; a write's bytes must lie inside ``data``)."""
    records = memoryview(records).cast("B")
    if len(records) % RECORD_SIZE:
        raise ValueError(f"a batch is 48-byte records: {len(records)} bytes")
    return [check_raw(bytes(records[i:i + RECORD_SIZE]), i // RECORD_SIZE, len(data), False)
            for i in range(0, len(records), RECORD_SIZE)]


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
        if key != OPT_CACHE_MODEL or size != 8 or options:
            raise ValueError(f"byte {pos}: unknown option key {key}" if key != OPT_CACHE_MODEL
                             else f"byte {pos}: malformed cache-model option")
        options.append((key, bytes(data[pos + 4:pos + 4 + size])))
        pos += 4 + size
    header = TraceHeader(version, ranges, tuple(options), length)
    try:
        header_cache_options(header)
    except ValueError as exc:
        raise ValueError(f"byte {end - olen}: cache-model option: {exc}") from None
    return header


def cache_option(options):
    """The header options of a kernel with these (coherent, cache_line, cache_lines): the
    cache-model entry (key 1: u32 cache_line, u32 cache_lines or 0) for a non-coherent
    kernel, none for a coherent one."""
    coherent, line, lines = options
    return () if coherent else ((OPT_CACHE_MODEL, struct.pack("<II", line, lines or 0)),)


def header_cache_options(header):
    """(coherent, cache_line, cache_lines) of the kernel the trace was recorded on."""
    for key, value in header.options:
        if key == OPT_CACHE_MODEL:
            line, lines = struct.unpack("<II", value)
            return cache_options(False, line, lines or None)
    return (True, 64, None)


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
                if enc_len < 7 * nrecords:
                    raise ValueError(f"byte {pos + 8}: the block's records end early (encoded "
                                     f"length {enc_len} for {nrecords} records)")
                body = f.read(enc_len + side_len + 4)
                if len(body) < enc_len + side_len + 4:
                    # The file ends inside this block: a crash. Its whole records are given,
                    # unverified (no CRC), with the side bytes that are there.
                    self.truncated = True
                    if nrecords:
                        side = body[enc_len:enc_len + side_len]
                        good = []
                        for i, raw in enumerate(decode_records(body[:enc_len], nrecords,
                                                               pos + 16, index, partial=True)):
                            try:
                                good.append(check_raw(raw, index + i, len(side), True))
                            except ValueError:
                                break
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
                records = [check_raw(raw, index + i, side_len, True) for i, raw in
                           enumerate(decode_records(body[:enc_len], nrecords, pos + 16, index))]
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

