"""The trace engine's codec (see _trace.pxd and docs/trace-format.md): CRC-32 with its own
table, the delta codec, the block writer (one block in C memory, written with write(2)), the
record checks, and `TraceReader`, the validating reader of trace files."""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from vmo._tracerec cimport (CALL_LAST, CALL_PHYS_VIEW_RELEASE, CALL_PHYS_WRITE,
                            CALL_VMO_OP_RANGE, CALL_VMO_WRITE, REC_ARG_RANGE, REC_BAD_BUFFER,
                            REC_NO_DATA, REC_NULL_BUFFER, REC_REF, TRACE_RECORD_SIZE,
                            trace_rec)

cdef extern from "unistd.h" nogil:
    ssize_t c_write "write"(int fd, const void *buf, size_t n)
    ssize_t c_pread "pread"(int fd, void *buf, size_t n, long offset)

from vmo._coherency import cache_options as check_cache_options

TRACE_MAGIC = b"VMOTRACE"
TRACE_VERSION = 1
BLOCK_MAGIC = b"VMOB"

# -- CRC-32 (zlib's: reflected polynomial 0xEDB88320), tables built at import ---------------
# Slicing by 8 (eight tables, eight bytes a step): a replay checks every block, and this
# halves the instructions a byte of the 4-byte step it replaces.
cdef uint32_t _crc_t[8][256]


cdef void _crc_init() noexcept:
    cdef uint32_t i, c, k
    for i in range(256):
        c = i
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if (c & 1) else (c >> 1)
        _crc_t[0][i] = c
    for k in range(1, 8):
        for i in range(256):
            _crc_t[k][i] = (_crc_t[k - 1][i] >> 8) ^ _crc_t[0][_crc_t[k - 1][i] & 0xFF]


_crc_init()


cdef uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) noexcept nogil:
    """zlib.crc32(data, crc): start from 0 and chain."""
    cdef size_t i = 0
    cdef uint32_t lo, hi
    crc = ~crc
    while i + 8 <= n:
        lo = crc ^ (p[i] | (<uint32_t>p[i + 1] << 8) | (<uint32_t>p[i + 2] << 16)
                    | (<uint32_t>p[i + 3] << 24))
        hi = (p[i + 4] | (<uint32_t>p[i + 5] << 8) | (<uint32_t>p[i + 6] << 16)
              | (<uint32_t>p[i + 7] << 24))
        crc = (_crc_t[7][lo & 0xFF] ^ _crc_t[6][(lo >> 8) & 0xFF]
               ^ _crc_t[5][(lo >> 16) & 0xFF] ^ _crc_t[4][lo >> 24]
               ^ _crc_t[3][hi & 0xFF] ^ _crc_t[2][(hi >> 8) & 0xFF]
               ^ _crc_t[1][(hi >> 16) & 0xFF] ^ _crc_t[0][hi >> 24])
        i += 8
    while i < n:
        crc = _crc_t[0][(crc ^ p[i]) & 0xFF] ^ (crc >> 8)
        i += 1
    return ~crc


def crc32(data, uint32_t crc=0):
    """zlib.crc32 of a bytes-like object (for tests and the header builder)."""
    cdef const uint8_t[::1] mv = memoryview(data).cast("B")
    return crc32_update(crc, &mv[0] if mv.shape[0] else NULL, mv.shape[0])


# -- the delta codec ----------------------------------------------------------------------
# A record is XORed with the previous record of its key in the block: its call, and for
# vmo_op_range its op byte (byte 8) too. Both are stored as they are, never XORed, so that the
# decoder knows the key first: slots 0..CALL_LAST are calls, DELTA_OP_SLOT + op the ops.
cdef enum:
    DELTA_OP_SLOT = CALL_LAST + 1
    DELTA_SLOTS = DELTA_OP_SLOT + 256


cdef inline uint32_t _slot(uint8_t call, uint8_t op) noexcept nogil:
    if call == CALL_VMO_OP_RANGE:
        return DELTA_OP_SLOT + op
    return call if call <= CALL_LAST else 0


cdef extern from *:
    """
    /* SWAR: __builtin_popcountll is a library call without -mpopcnt (portable builds). */
    static inline unsigned vmo_popcount64(uint64_t x) {
        x = x - ((x >> 1) & 0x5555555555555555ULL);
        x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
        x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        return (unsigned)((x * 0x0101010101010101ULL) >> 56);
    }
    /* Bit j set when byte j of x is non-zero. */
    static inline unsigned vmo_nonzero_bytes(uint64_t x) {
        x |= x >> 4;
        x |= x >> 2;
        x |= x >> 1;
        x &= 0x0101010101010101ULL;
        return (unsigned)((x * 0x0102040810204080ULL) >> 56);
    }
    #define vmo_ctz64(x) ((unsigned)__builtin_ctzll(x))
    """
    unsigned vmo_popcount64(uint64_t x) noexcept nogil
    unsigned vmo_ctz64(uint64_t x) noexcept nogil
    unsigned _nonzero_bytes "vmo_nonzero_bytes"(uint64_t x) noexcept nogil


cdef size_t delta_encode(const trace_rec *recs, uint32_t n, uint8_t *out) noexcept nogil:
    """Encode `n` records into `out` (room for n * ENCODED_MAX_PER_RECORD bytes); returns the
    bytes written. The call byte, and a vmo_op_range's op byte, are stored as they are
    (docs/trace-format.md "Delta coding")."""
    cdef uint64_t prev[DELTA_SLOTS][6]
    cdef uint64_t w[6]
    cdef uint64_t x
    cdef uint8_t *mask
    cdef uint8_t *p = out
    cdef uint8_t bits
    cdef uint32_t i, s, k, j, nz
    cdef bint op_range
    memset(prev, 0, sizeof(prev))
    for i in range(n):
        memcpy(w, &recs[i], TRACE_RECORD_SIZE)
        op_range = recs[i].call == CALL_VMO_OP_RANGE
        s = _slot(recs[i].call, <uint8_t>(recs[i].x & 0xFF))
        mask = p
        p += 6
        for k in range(6):
            x = w[k] ^ prev[s][k]
            prev[s][k] = w[k]
            bits = 0
            if k == 0 or (k == 1 and op_range):
                # The key bytes: byte 0 (the call) and byte 8 (an op), raw and always stored.
                p[0] = <uint8_t>(w[k] & 0xFF)
                p += 1
                bits = 1
                x &= ~(<uint64_t>0xFF)
            if x != 0:
                # One bit per non-zero byte (SWAR), then only those bytes are stored: a delta
                # has few (the loop over all eight cost 135 instructions a record).
                nz = _nonzero_bytes(x)
                bits |= nz
                while nz:
                    j = vmo_ctz64(nz)
                    p[0] = <uint8_t>(x >> (8 * j))
                    p += 1
                    nz &= nz - 1
            mask[k] = bits
    return <size_t>(p - out)


cdef uint32_t delta_decode(const uint8_t *src, size_t length, trace_rec *out, uint32_t n,
                           size_t *used) noexcept nogil:
    """Decode up to `n` whole records from `length` bytes; returns how many, with `used` the
    bytes they took. Stops at the first record not wholly inside `length`, without its call
    byte (mask bit 0) or, for vmo_op_range, without its op byte (mask bit 8)."""
    cdef uint64_t prev[DELTA_SLOTS][6]
    cdef uint8_t *rec
    cdef size_t pos = 0, need
    cdef uint32_t i, s, bit
    cdef uint64_t mask
    cdef uint8_t op = 0
    cdef const uint8_t *p
    memset(prev, 0, sizeof(prev))
    used[0] = 0
    for i in range(n):
        if length - pos < 6:
            return i
        p = src + pos
        mask = (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
                | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40))
        if not (mask & 1):
            return i
        need = vmo_popcount64(mask)
        if length - pos - 6 < need:
            return i
        p += 6
        if p[0] == CALL_VMO_OP_RANGE:
            if not (mask & 0x100):
                return i
            # The op byte follows the stored bytes 0..7.
            op = p[vmo_popcount64(mask & 0xFF)]
        s = _slot(p[0], op)
        rec = <uint8_t *>prev[s]    # decoded in place: it is the next one's previous record
        rec[0] = p[0]
        if s >= DELTA_OP_SLOT:
            rec[8] = 0              # stored raw: XORed with 0 below
        p += 1
        mask &= ~(<uint64_t>1)
        while mask:
            bit = vmo_ctz64(mask)
            rec[bit] ^= p[0]
            p += 1
            mask &= mask - 1
        memcpy(&out[i], rec, TRACE_RECORD_SIZE)
        pos += 6 + need
        used[0] = pos
    return n


# -- record checks (the reader and batches) -------------------------------------------------
cdef bint rec_uses_side(const trace_rec *r) noexcept nogil:
    """Whether the record's bytes are in the side section (`c` offset, `b` length)."""
    if (r.call == CALL_VMO_WRITE or r.call == CALL_PHYS_WRITE
            or r.call == CALL_PHYS_VIEW_RELEASE):
        return not (r.flags & (REC_ARG_RANGE | REC_BAD_BUFFER | REC_NULL_BUFFER | REC_NO_DATA))
    return False


cdef int rec_check(const trace_rec *r, uint32_t index, uint64_t side_length,
                   bint in_file) noexcept nogil:
    """0, or the code of the record's first flaw (rec_problem gives its words). A file's
    records never have REF (batches only)."""
    if r.call == 0 or r.call > CALL_LAST:
        return 1
    if r.flags & ~(<uint16_t>REC_KNOWN_FLAGS):
        return 2
    if r.reserved != 0:
        return 3
    if rec_uses_side(r) and (r.c > side_length or r.b > side_length - r.c):
        return 4
    if (r.flags & REC_REF) and in_file:
        return 6
    if (r.flags & REC_REF) and r.handle >= index:
        return 5
    return 0


cdef str rec_problem(int code):
    return ("", "unknown call code", "unknown flag bits", "reserved field not 0",
            "side-section bytes outside the block", "REF to a record that is not earlier",
            "REF flag in a file (batches only)")[code]


# -- the writer -------------------------------------------------------------------------------
cdef int _write_all_c(int fd, const uint8_t *p, size_t n) noexcept nogil:
    """write(2) all of it: 0, or the errno of the failure."""
    cdef ssize_t got
    while n:
        got = c_write(fd, p, n)
        if got < 0:
            if errno == EINTR:
                continue
            return errno if errno > 0 else 5        # EIO if the C library gave nothing
        p += got
        n -= <size_t>got
    return 0


cdef int _write_all(int fd, const uint8_t *p, size_t n) except -1:
    cdef int err = _write_all_c(fd, p, n)
    if err:
        raise OSError(err, os.strerror(err))
    return 0


cdef inline void _put32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline uint32_t _get32(const uint8_t *p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _get64(const uint8_t *p) noexcept nogil:
    return _get32(p) | (<uint64_t>_get32(p + 4) << 32)


# Header option keys (docs/trace-format.md "Header").
cdef int OPT_CACHE_MODEL = 1

cdef bytes _cache_option(tuple cache_options):
    """The header option of a non-coherent kernel (key 1: u32 cache_line, u32 cache_lines,
    0 for unbounded), b"" for a coherent one (docs/trace-format.md "Header")."""
    if cache_options is None or cache_options[0]:
        return b""
    return (OPT_CACHE_MODEL.to_bytes(2, "little") + (8).to_bytes(2, "little")
            + int(cache_options[1]).to_bytes(4, "little")
            + int(cache_options[2] or 0).to_bytes(4, "little"))


cdef bytes trace_header(tuple memory_map, tuple cache_options=None):
    """The file header of a kernel with this memory map and these cache options
    (docs/trace-format.md "Header")."""
    cdef Py_ssize_t n = len(memory_map)
    options = _cache_option(cache_options)
    body = bytearray(TRACE_MAGIC)
    length = 24 + 16 * n + 4 + len(options) + 4
    body += TRACE_VERSION.to_bytes(4, "little") + length.to_bytes(4, "little")
    body += (0).to_bytes(4, "little") + n.to_bytes(4, "little")
    for base, size in memory_map:
        body += int(base).to_bytes(8, "little") + int(size).to_bytes(8, "little")
    body += len(options).to_bytes(4, "little") + options
    body += crc32(body).to_bytes(4, "little")
    return bytes(body)


cdef trace_writer *tw_open(int fd, bytes header, uint64_t session) except NULL:
    """A writer on `fd` (opened by the caller), the header written first."""
    cdef trace_writer *w = <trace_writer *>malloc(sizeof(trace_writer))
    if w == NULL:
        raise MemoryError()
    memset(w, 0, sizeof(trace_writer))
    w.fd = fd
    w.session = session
    w.recs = <trace_rec *>malloc(WRITER_FLUSH_RECORDS * sizeof(trace_rec))
    w.side_cap = 65536
    w.side = <uint8_t *>malloc(w.side_cap)
    w.enc_cap = BLOCK_HEADER_SIZE + WRITER_FLUSH_RECORDS * ENCODED_MAX_PER_RECORD
    w.enc = <uint8_t *>malloc(w.enc_cap)
    if w.recs == NULL or w.side == NULL or w.enc == NULL:
        _tw_free(w)
        raise MemoryError()
    try:
        _write_all(fd, <const uint8_t *>PyBytes_AS_STRING(header), len(header))
    except BaseException:
        _tw_free(w)
        raise
    return w


cdef void _tw_free(trace_writer *w) noexcept:
    free(w.recs)
    free(w.side)
    free(w.enc)
    free(w)


cdef int tw_raise(trace_writer *w) except -1:
    """Raise the failure kept in `w.err` and forget it (the writer goes on)."""
    cdef int err = w.err
    w.err = 0
    if err == TW_ERR_SIDE:
        raise ValueError("a recorded write carries at most %d bytes (this one: %d)"
                         % (BLOCK_MAX_SIDE, w.err_size))
    if err == TW_ERR_MEMORY:
        raise MemoryError()
    if err:
        raise OSError(err, os.strerror(err))
    return 0


cdef int tw_side_c(trace_writer *w, const void *data, uint64_t n,
                   uint64_t *offset) noexcept nogil:
    """tw_side without the GIL: 0, or -1 with the failure in `w.err`."""
    cdef uint64_t cap
    cdef uint8_t *grown
    if n > BLOCK_MAX_SIDE:
        w.err = TW_ERR_SIDE
        w.err_size = n
        return -1
    if w.side_len and w.side_len + n > BLOCK_MAX_SIDE:
        if tw_flush_c(w):
            return -1
    if w.side_len + n > w.side_cap:
        cap = w.side_cap
        while cap < w.side_len + n:
            cap *= 2
        grown = <uint8_t *>realloc(w.side, cap)
        if grown == NULL:
            w.err = TW_ERR_MEMORY
            return -1
        w.side = grown
        w.side_cap = cap
    if n:
        memcpy(w.side + w.side_len, data, n)
    offset[0] = w.side_len
    w.side_len += n
    return 0


cdef int tw_flush_c(trace_writer *w) noexcept nogil:
    """Encode and write the buffered block (nothing if it is empty): 0, or -1 with the
    errno in `w.err` (the block is dropped either way)."""
    cdef size_t enc
    cdef uint32_t crc
    cdef uint8_t tail[4]
    cdef uint64_t n_side
    cdef int err
    if w.nrecs == 0 and w.side_len == 0:
        return 0
    enc = delta_encode(w.recs, w.nrecs, w.enc + BLOCK_HEADER_SIZE)
    memcpy(w.enc, b"VMOB", 4)
    _put32(w.enc + 4, w.nrecs)
    _put32(w.enc + 8, <uint32_t>enc)
    _put32(w.enc + 12, <uint32_t>w.side_len)
    crc = crc32_update(0, w.enc, BLOCK_HEADER_SIZE + enc)
    crc = crc32_update(crc, w.side, w.side_len)
    _put32(tail, crc)
    w.nrecs = 0
    n_side = w.side_len
    w.side_len = 0
    err = _write_all_c(w.fd, w.enc, BLOCK_HEADER_SIZE + enc)
    if not err:
        err = _write_all_c(w.fd, w.side, n_side)
    if not err:
        err = _write_all_c(w.fd, tail, 4)
    if err:
        w.err = err
        return -1
    return 0


cdef int tw_close(trace_writer *w, bint end_mark) except -1:
    """Flush, write the end mark (unless told not to) and free the writer, even when a write
    fails (the error is raised after)."""
    cdef uint8_t mark[32]
    cdef uint64_t total = w.total
    cdef int k
    try:
        tw_flush(w)
        if end_mark:
            memcpy(mark, b"VMOB", 4)
            _put32(mark + 4, 0)
            _put32(mark + 8, 0)
            _put32(mark + 12, 8)
            for k in range(8):
                mark[16 + k] = (total >> (8 * k)) & 0xFF
            _put32(mark + 24, crc32_update(0, mark, 24))
            _write_all(w.fd, mark, 28)
    finally:
        _tw_free(w)
    return 0


# -- the reader -------------------------------------------------------------------------------
cdef class TraceReader:
    """Reads a trace file block by block (docs/trace-format.md), validating everything: a
    ValueError names the byte offset or the record index of the first flaw. Never holds more
    than one block (at most the limits) in memory."""

    def __cinit__(self):
        self.recs = NULL
        self.blk = NULL

    def __init__(self, file):
        """`file`: an open binary file (kept open by the caller) or a path."""
        if isinstance(file, (str, bytes, os.PathLike)):
            self.file = open(file, "rb")
            self.owns = True
        else:
            self.file = file
            self.owns = False
        self.fd = self.file.fileno()
        self.file_size = os.fstat(self.fd).st_size
        self.recs = <trace_rec *>malloc(BLOCK_MAX_RECORDS * sizeof(trace_rec))
        if self.recs == NULL:
            raise MemoryError()
        self._header()
        self.pos = self.header_length
        self.stop_at = self.pos
        self.is_verified = True

    def __dealloc__(self):
        free(self.recs)
        free(self.blk)

    def close(self):
        if self.owns and self.file is not None:
            self.file.close()
        self.file = None

    cdef int _read(self, uint64_t offset, uint64_t n) except -1:
        """Read [offset, offset + n) of the file into self.blk (grown as needed)."""
        cdef ssize_t got
        cdef uint64_t done = 0
        cdef uint8_t *grown
        if n > self.blk_cap:
            grown = <uint8_t *>realloc(self.blk, n)
            if grown == NULL:
                raise MemoryError()
            self.blk = grown
            self.blk_cap = n
        while done < n:
            got = c_pread(self.fd, self.blk + done, n - done, <long>(offset + done))
            if got < 0:
                if errno == EINTR:
                    continue
                raise OSError(errno, os.strerror(errno))
            if got == 0:
                raise ValueError("trace file changed while read (offset %d)" % (offset + done))
            done += <uint64_t>got
        return 0

    cdef int _header(self) except -1:
        cdef uint64_t size = self.file_size, hl, n, opt_at, optlen, i
        cdef uint8_t *h
        avail = size if size < 24 else 24
        self._read(0, avail)
        h = self.blk
        if bytes(h[:min(avail, 8)]) != TRACE_MAGIC[:min(avail, 8)]:
            raise ValueError("not a vmo trace: wrong magic at offset 0")
        if size < 24:
            raise ValueError("trace cut short in its header (file of %d bytes)" % size)
        if _get32(h + 8) != TRACE_VERSION:
            if _get32(h + 8) > TRACE_VERSION:
                raise ValueError("trace format version %d is newer than this reader's (%d): "
                                 "offset 8" % (_get32(h + 8), TRACE_VERSION))
            raise ValueError("unknown trace format version %d at offset 8" % _get32(h + 8))
        hl = _get32(h + 12)
        n = _get32(h + 20)
        if hl < 24 + 16 + 8 or hl > MAX_HEADER:
            raise ValueError("header length %d beyond the limits (offset 12)" % hl)
        if hl > size:
            raise ValueError("header length %d beyond the file of %d bytes (offset 12)"
                             % (hl, size))
        if _get32(h + 16) != 0:
            raise ValueError("unknown header flags %#x at offset 16" % _get32(h + 16))
        if n < 1 or n > MAX_RANGES:
            raise ValueError("nranges %d outside 1 to %d (offset 20)" % (n, MAX_RANGES))
        opt_at = 24 + 16 * n
        if opt_at + 8 > hl:
            raise ValueError("header length %d too short for %d ranges (offset 12)" % (hl, n))
        self._read(0, hl)
        h = self.blk
        if crc32_update(0, h, hl - 4) != _get32(h + hl - 4):
            raise ValueError("header checksum does not match (offset %d)" % (hl - 4))
        optlen = _get32(h + opt_at)
        if opt_at + 4 + optlen + 4 != hl:
            raise ValueError("options_length %d does not fit the header (offset %d)"
                             % (optlen, opt_at))
        self.cache_options = (True, 64, None)
        if optlen:
            if optlen < 4:
                raise ValueError("truncated option entry at offset %d" % (opt_at + 4))
            key = h[opt_at + 4] | (h[opt_at + 5] << 8)
            if key != OPT_CACHE_MODEL:
                raise ValueError("unknown header option key %d at offset %d"
                                 % (key, opt_at + 4))
            if optlen != 12 or (h[opt_at + 6] | (h[opt_at + 7] << 8)) != 8:
                raise ValueError("malformed cache-model option at offset %d" % (opt_at + 4))
            line = _get32(h + opt_at + 8)
            lines = _get32(h + opt_at + 12)
            try:
                self.cache_options = check_cache_options(False, line, lines or None)
            except ValueError as exc:
                raise ValueError("cache-model option at offset %d: %s"
                                 % (opt_at + 4, exc)) from None
        ranges = []
        for i in range(n):
            ranges.append((_get64(h + 24 + 16 * i), _get64(h + 32 + 16 * i)))
        self.memory_map = tuple(ranges)
        self.header_length = hl
        return 0

    cdef int next_block(self) except -1:
        """Load the next block: 1 with `nrecs` records (and the side section) ready, 0 at
        the end (clean, or cut short: `truncated`). ValueError for any flaw of a whole
        block; the records of a cut-short block are given unverified, up to the first
        record that is not whole or not valid."""
        cdef uint64_t off = self.pos, remaining, full, nrec, enc, side, avail, encavail
        cdef uint64_t sideavail
        cdef uint32_t n, i
        cdef size_t used = 0
        cdef int code
        self.nrecs = 0
        if self.done:
            return 0
        remaining = self.file_size - off
        if remaining < BLOCK_HEADER_SIZE:
            if remaining:
                self._read(off, remaining)
                if bytes(self.blk[:min(remaining, 4)]) != BLOCK_MAGIC[:min(remaining, 4)]:
                    raise ValueError("wrong block magic at offset %d" % off)
            return self._cut(off)
        self._read(off, BLOCK_HEADER_SIZE)
        if memcmp4(self.blk, b"VMOB"):
            raise ValueError("wrong block magic at offset %d" % off)
        nrec = _get32(self.blk + 4)
        enc = _get32(self.blk + 8)
        side = _get32(self.blk + 12)
        if nrec > BLOCK_MAX_RECORDS:
            raise ValueError("block at offset %d claims %d records (at most %d)"
                             % (off, nrec, BLOCK_MAX_RECORDS))
        if enc > BLOCK_MAX_ENCODED:
            raise ValueError("block at offset %d: encoded_length %d beyond the limit"
                             % (off, enc))
        if side > BLOCK_MAX_SIDE:
            raise ValueError("block at offset %d: side_length %d beyond the limit"
                             % (off, side))
        if nrec == 0 and (enc != 0 or side != 8):
            raise ValueError("block at offset %d: an end mark has no records and 8 side "
                             "bytes" % off)
        if nrec and enc < 7 * nrec:
            raise ValueError("block at offset %d: encoded_length %d too short for %d records"
                             % (off, enc, nrec))
        full = BLOCK_HEADER_SIZE + enc + side + 4
        if remaining < full:
            # Cut short (a crash while recording): whole records replayed unverified.
            self._cut(off)
            if nrec == 0:
                return 0
            avail = remaining - BLOCK_HEADER_SIZE
            self._read(off, remaining)
            encavail = enc if enc < avail else avail
            sideavail = avail - enc if avail > enc else 0
            if sideavail > side:
                sideavail = side
            n = delta_decode(self.blk + BLOCK_HEADER_SIZE, encavail, self.recs,
                             <uint32_t>nrec, &used)
            for i in range(n):
                if rec_check(&self.recs[i], i, sideavail, True):
                    n = i
                    break
            self.nrecs = n
            if n:
                self.is_verified = False
            self.side = self.blk + BLOCK_HEADER_SIZE + enc
            self.side_len = sideavail
            self.first_index = self.total
            self.total += n
            return 1 if n else 0
        self._read(off, full)
        if crc32_update(0, self.blk, full - 4) != _get32(self.blk + full - 4):
            raise ValueError("block at offset %d: checksum does not match (offset %d)"
                             % (off, off + full - 4))
        if nrec == 0:
            if _get64(self.blk + BLOCK_HEADER_SIZE) != self.total:
                raise ValueError("end mark at offset %d counts %d records, the file has %d"
                                 % (off, _get64(self.blk + BLOCK_HEADER_SIZE), self.total))
            if off + full != self.file_size:
                raise ValueError("%d bytes after the end mark (offset %d)"
                                 % (self.file_size - off - full, off + full))
            self.done = True
            self.clean_end = True
            self.stop_at = off + full
            return 0
        n = delta_decode(self.blk + BLOCK_HEADER_SIZE, enc, self.recs, <uint32_t>nrec, &used)
        if n != nrec or used != enc:
            raise ValueError("block at offset %d: record %d (index %d) is not well encoded "
                             "(offset %d)" % (off, n, self.total + n,
                                              off + BLOCK_HEADER_SIZE + used))
        for i in range(n):
            code = rec_check(&self.recs[i], i, side, True)
            if code:
                raise ValueError("record %d (block at offset %d): %s"
                                 % (self.total + i, off, rec_problem(code)))
        self.nrecs = n
        self.side = self.blk + BLOCK_HEADER_SIZE + enc
        self.side_len = side
        self.first_index = self.total
        self.total += n
        self.pos = off + full
        self.stop_at = self.pos
        return 1

    cdef int _cut(self, uint64_t off) except -1:
        self.is_truncated = True
        self.stop_at = off
        self.done = True
        return 0

    @property
    def truncated(self):
        """True when the file ends without its end mark (cut short)."""
        return self.is_truncated

    @property
    def stop(self):
        """The byte offset where the readable trace stops (so far): the end of the file when
        it is whole, the offset of the block that was cut short when it is not."""
        return self.stop_at

    @property
    def verified(self):
        """False once records of a cut-short block (no checksum) were given."""
        return self.is_verified

    def records(self):
        """Every record of the file, decoded, as (bytes of len(records) x 48, side bytes) per
        block: for tests and tools. ValueError as a replay would give."""
        out = []
        while self.next_block():
            out.append((PyBytes_FromStringAndSize(<char *>self.recs,
                                                  self.nrecs * TRACE_RECORD_SIZE),
                        PyBytes_FromStringAndSize(<char *>self.side, self.side_len)))
        return out


cdef inline bint memcmp4(const uint8_t *p, const char *q) noexcept:
    return p[0] != <uint8_t>q[0] or p[1] != <uint8_t>q[1] or p[2] != <uint8_t>q[2] or \
        p[3] != <uint8_t>q[3]


def check_records(records, data_length):
    """Validate a batch's raw records (a bytes-like of n x 48 bytes): ValueError naming the
    index of the first flaw."""
    cdef const uint8_t[::1] mv = memoryview(records).cast("B")
    cdef uint64_t n = mv.shape[0] // TRACE_RECORD_SIZE, i
    cdef int code
    cdef trace_rec r
    if <uint64_t>mv.shape[0] != n * TRACE_RECORD_SIZE:
        raise ValueError("records are not a whole number of 48-byte records")
    for i in range(n):
        memcpy(&r, &mv[i * TRACE_RECORD_SIZE], TRACE_RECORD_SIZE)
        code = rec_check(&r, <uint32_t>i if i < <uint64_t>0xFFFFFFFF else 0xFFFFFFFF,
                         data_length, False)
        if code:
            raise ValueError("batch record %d: %s" % (i, rec_problem(code)))
    return n


def encode_records(records):
    """The delta coding of raw records (tests): bytes."""
    cdef const uint8_t[::1] mv = memoryview(records).cast("B")
    cdef uint32_t n = mv.shape[0] // TRACE_RECORD_SIZE
    cdef uint8_t *out = <uint8_t *>malloc(n * ENCODED_MAX_PER_RECORD + 1)
    cdef size_t k
    if out == NULL:
        raise MemoryError()
    try:
        k = delta_encode(<const trace_rec *>&mv[0] if n else NULL, n, out)
        return PyBytes_FromStringAndSize(<char *>out, k)
    finally:
        free(out)


def header_bytes(memory_map, options=None):
    """The file header for a memory map and (coherent, cache_line, cache_lines) options
    (tests and tools)."""
    return trace_header(tuple(tuple(r) for r in memory_map),
                        None if options is None else tuple(options))
