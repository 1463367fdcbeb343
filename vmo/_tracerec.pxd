# One call as data: the 48-byte record of traces and batches (docs/trace-format.md), and the
# state of the writer that appends records to a recording. Declarations only (no .pyx): the
# trace codec, the batch executor, the workload generators, the replay engine and
# KernelCore all cimport this, so the record has one definition in C.
from libc.stdint cimport int8_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef enum:
    TRACE_RECORD_SIZE = 48

    # Call codes (docs/trace-format.md "Calls").
    CALL_VMO_CREATE = 1
    CALL_VMO_READ = 2
    CALL_VMO_WRITE = 3
    CALL_VMO_GET_SIZE = 4
    CALL_VMO_SET_SIZE = 5
    CALL_VMO_OP_RANGE = 6
    CALL_VMO_CLONE = 7
    CALL_HANDLE_CLOSE = 8
    CALL_HANDLE_DUPLICATE = 9
    CALL_HANDLE_REPLACE = 10
    CALL_OBJECT_GET_INFO = 11
    CALL_EVENT_CREATE = 12
    CALL_VMO_READ_BYTES = 13
    CALL_VMO_COMMITTED_BYTES = 14
    CALL_VMO_CREATE_CONTIGUOUS = 15
    CALL_PHYS_READ = 16
    CALL_PHYS_WRITE = 17
    CALL_PHYS_VIEW = 18
    CALL_PHYS_VIEW_RELEASE = 19
    CALL_LAST = 19

    # Flags (docs/trace-format.md "Flags").
    REC_REF = 0x1           # `handle` is the index of an earlier record whose value is used
    REC_NULL_BUFFER = 0x2   # the buffer was None (C's null pointer)
    REC_BAD_BUFFER = 0x4    # the buffer was refused at the buffer check: ERR_INVALID_ARGS
    REC_ARG_RANGE = 0x8     # an integer argument was outside its C type: ERR_INVALID_ARGS
    # A batch write of zeros: no bytes in the side section, `c` is ignored.
    REC_NO_DATA = 0x10

cdef packed struct trace_rec:
    uint8_t call
    int8_t status
    uint16_t flags
    uint32_t handle
    uint32_t x
    uint32_t reserved
    uint64_t a
    uint64_t b
    uint64_t c
    uint64_t value


# A recording's writer (its functions, tw_*, are in _trace.pxd): declared here, with the
# record, so that KernelCore (_kernelcore.pxd) holds one without making its cimporters (the
# public vmo.api's included) import vmo._trace.
cdef struct trace_writer:
    int fd
    trace_rec *recs             # WRITER_FLUSH_RECORDS records, raw until the flush
    uint32_t nrecs
    uint8_t *side
    uint64_t side_len
    uint64_t side_cap
    uint8_t *enc                # the encoded block (header, records, side, CRC)
    uint64_t enc_cap
    uint64_t total              # records written so far
    uint64_t views              # phys_view numbers handed out
    uint64_t session            # which recording (a view released later must match it)
    int err                     # a failure not raised yet (the C-only calls): TW_ERR_* or errno
    uint64_t err_size           # the side bytes refused, for TW_ERR_SIDE


# hash64 in pieces, for reads hashed a chunk at a time: begin, update (every piece but the
# last a multiple of 8 bytes), end; hash64 is the three over the whole.
cdef inline uint64_t hash64_begin(uint64_t n) noexcept nogil:
    return n * <uint64_t>0x9E3779B97F4A7C15ULL


cdef inline uint64_t hash64_update(uint64_t h, const uint8_t *data, uint64_t n) noexcept nogil:
    """Fold `n` bytes in as 8-byte little-endian words, the last zero-padded."""
    cdef uint64_t i = 0, j, w
    while i < n:
        w = 0
        for j in range(8 if n - i >= 8 else n - i):
            w |= (<uint64_t>data[i + j]) << (8 * j)
        h = (h ^ w) * <uint64_t>0xFF51AFD7ED558CCDULL
        h ^= h >> 29
        i += 8
    return h


cdef inline uint64_t hash64_end(uint64_t h) noexcept nogil:
    return h ^ (h >> 32)


cdef inline uint64_t hash64(const uint8_t *data, uint64_t n) noexcept nogil:
    """The trace's hash of bytes (docs/trace-format.md "hash64"): 8-byte little-endian
    words, the last zero-padded; about a byte a cycle. Identical in vmo._reference."""
    return hash64_end(hash64_update(hash64_begin(n), data, n))
