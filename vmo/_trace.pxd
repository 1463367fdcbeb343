# The trace engine's codec (docs/trace-format.md): CRC-32, the delta codec, the block writer
# and the record checks shared by the reader and batches. Pure C over `trace_rec`
# (_tracerec.pxd): nothing here knows the kernel. The executor that runs a record against a
# kernel_state lives in _exec.pyx, which includes its own copy of the sys_* cores it calls.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from vmo._tracerec cimport (TRACE_RECORD_SIZE, hash64_begin, hash64_end, hash64_update,
                            trace_rec, trace_writer)

cdef enum:
    BLOCK_HEADER_SIZE = 16              # magic, nrecords, encoded_length, side_length
    BLOCK_MAX_RECORDS = 65536
    BLOCK_MAX_ENCODED = 4 << 20
    BLOCK_MAX_SIDE = 64 << 20
    WRITER_FLUSH_RECORDS = 4096         # a recording's block: 4096 records or 1 MiB of side
    WRITER_FLUSH_SIDE = 1 << 20
    MAX_RANGES = 64
    MAX_HEADER = 65536                  # header length limit (docs/trace-format.md)
    ENCODED_MAX_PER_RECORD = 54         # 6-byte mask + 48 bytes
    REC_KNOWN_FLAGS = 0x1F

cdef uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) noexcept nogil
cdef size_t delta_encode(const trace_rec *recs, uint32_t n, uint8_t *out) noexcept nogil
cdef uint32_t delta_decode(const uint8_t *src, size_t length, trace_rec *out, uint32_t n,
                           size_t *used) noexcept nogil
cdef bint rec_uses_side(const trace_rec *r) noexcept nogil
cdef int rec_check(const trace_rec *r, uint32_t index, uint64_t side_length,
                   bint in_file) noexcept nogil
cdef str rec_problem(int code)


# The writer's state, `trace_writer`, is declared in _tracerec.pxd.
cdef enum:
    TW_ERR_MEMORY = -1                  # (`err` > 0 is the errno of a failed write)
    TW_ERR_SIDE = -2                    # a write's bytes above BLOCK_MAX_SIDE


# The writer has two faces. The C-only one (`tw_*_c`, noexcept nogil) touches no Python
# object, so a loop that owns the kernel without the GIL (a batch run under record()) can
# record: a failure is kept in `w.err` (the block that failed is dropped) and the caller,
# with the GIL again, raises it with `tw_raise`. The other face (tw_put, tw_side,
# tw_flush) is the same call followed by that raise, for callers that hold the GIL.
cdef trace_writer *tw_open(int fd, bytes header, uint64_t session) except NULL
cdef int tw_flush_c(trace_writer *w) noexcept nogil
cdef int tw_side_c(trace_writer *w, const void *data, uint64_t n,
                   uint64_t *offset) noexcept nogil
cdef int tw_raise(trace_writer *w) except -1
cdef int tw_close(trace_writer *w, bint end_mark) except -1
cdef bytes trace_header(tuple memory_map, tuple cache_options=*)


cdef inline int tw_flush(trace_writer *w) except -1:
    """Encode and write the buffered block (nothing if it is empty); OSError if it fails."""
    if tw_flush_c(w):
        tw_raise(w)
    return 0


cdef inline int tw_side(trace_writer *w, const void *data, uint64_t n,
                        uint64_t *offset) except -1:
    """Copy a call's bytes into the block's side section before its record is put (the
    block is flushed first if they would not fit, so the record stays in their block)."""
    if tw_side_c(w, data, n, offset):
        tw_raise(w)
    return 0


cdef inline int tw_put_c(trace_writer *w, uint8_t call, int status, uint16_t flags,
                         uint32_t handle, uint32_t x, uint64_t a, uint64_t b, uint64_t c,
                         uint64_t value) noexcept nogil:
    """Append one record to the writer's block, flushed after the record that brings it to
    WRITER_FLUSH_RECORDS records or WRITER_FLUSH_SIDE side bytes. O(1). Returns 0, or -1
    when the flush failed (kept in `w.err`)."""
    cdef trace_rec *r = &w.recs[w.nrecs]
    r.call = call
    r.status = <signed char>status
    r.flags = flags
    r.handle = handle
    r.x = x
    r.reserved = 0
    r.a = a
    r.b = b
    r.c = c
    r.value = value
    w.nrecs += 1
    w.total += 1
    if w.nrecs >= WRITER_FLUSH_RECORDS or w.side_len >= WRITER_FLUSH_SIDE:
        return tw_flush_c(w)
    return 0


cdef inline int tw_put(trace_writer *w, uint8_t call, int status, uint16_t flags,
                       uint32_t handle, uint32_t x, uint64_t a, uint64_t b, uint64_t c,
                       uint64_t value) except -1:
    """tw_put_c, then raise its failure (a flush that could not write)."""
    if tw_put_c(w, call, status, flags, handle, x, a, b, c, value):
        tw_raise(w)
    return 0


cdef class TraceReader:
    cdef object file
    cdef bint owns
    cdef int fd
    cdef uint64_t file_size
    cdef uint64_t header_length
    cdef uint64_t pos               # offset of the next block
    cdef readonly tuple memory_map
    cdef readonly tuple cache_options  # (coherent, cache_line, cache_lines) of the kernel
    cdef trace_rec *recs            # BLOCK_MAX_RECORDS records: the current block's
    cdef uint32_t nrecs
    cdef uint8_t *blk               # the current block's bytes
    cdef uint64_t blk_cap
    cdef uint8_t *side              # inside blk
    cdef uint64_t side_len
    cdef uint64_t first_index       # index in the file of recs[0]
    cdef uint64_t total             # records read so far
    cdef bint is_truncated
    cdef bint is_verified           # False once records of a cut block were given
    cdef uint64_t stop_at           # where the readable trace stops
    cdef bint done
    cdef bint clean_end

    cdef int _read(self, uint64_t offset, uint64_t n) except -1
    cdef int _header(self) except -1
    cdef int next_block(self) except -1
    cdef int _cut(self, uint64_t off) except -1
