"""The state file (docs/state-format.md): a whole kernel saved to a file and loaded back.

`save_kernel` / `dump_kernel` write a `KernelCore`'s state; `load_kernel` / `load_kernel_bytes`
make a new kernel from a file. The format is the one the reference model writes
(`vmo/_reference/_statefile.py`, its executable spec): a file saved by either kernel loads in
either, and the same state gives the same bytes.

Saving owns the kernel (docs/semantics.md "Threads") for the whole write, so no other
thread changes it meanwhile; the frame contents are streamed from physical memory in chunks,
never gathered in memory. Loading reads every section but the frame contents into memory
(their lengths checked against the file's size first), checks their CRC-32s, every count and
every cross reference, and only then builds the kernel: objects first (a host allocation
failure frees them), then the handle table and the allocator, which cannot fail; the frame
contents are streamed into physical memory last, and a failure there closes the built
kernel. Either way the caller gets a whole kernel or an exception, never half of one.
"""

from cpython.buffer cimport PyBUF_READ, PyBUF_WRITE
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort
from libc.string cimport memset

from vmo._frames cimport FRAME_SHIFT, NIL, bit_set, bit_test, frame_pool, pool_hold
from vmo._kernelcore cimport KernelCore
from vmo._object cimport OBJ_EVENT, OBJ_VMO, obj_header
from vmo._pagetable cimport pt_free_nodes, pt_init, pt_next, pt_set
from vmo._state cimport FIRST_KOID, kernel_state, ks_enter, ks_leave
from vmo._status cimport MX_MAX_HANDLES, MX_VMO_MAX_SIZE, PAGE_LIMIT, PAGE_MASK, PAGE_SHIFT
from vmo._vmobject cimport vm_object

import io
import os
from zlib import crc32

from vmo._atomicfile import atomic_write
from vmo._memmap import memory_map
from vmo.errors import MxError, Status

MAGIC = b"VMOSTATE"
VERSION = 1

cdef enum:
    HEADER_SIZE = 16        # magic, version, flags
    SECTION_SIZE = 16       # tag, 0, payload length
    TRAILER_SIZE = 8        # CRC-32 of the payload, 0
    KERN_SIZE = 32          # next_koid, released_runs, zeroed_frames, nranges, 0
    RANGE_SIZE = 16
    POOL_SIZE = 24          # next_fresh, freed list length, dirty free frames
    SLOT_SIZE = 16          # koid, rights, generation, 0
    OBJECT_SIZE = 24        # type, 0, koid, refs
    VMO_SIZE = 32           # size, parent koid, parent_offset, runs
    PAGE_RUN_SIZE = 16      # first page, first frame, pages
    DATA_SIZE = 16          # runs, frames
    DATA_RUN_SIZE = 8       # first frame, frames
    END_SIZE = 16           # file length, CRC-32 of the headers and trailers, 0
    TYPE_VMO = 1
    TYPE_EVENT = 2
    CHUNK = 1 << 18         # bytes of frame contents per read or write


# -- little-endian fields ------------------------------------------------------------------------
cdef inline void _p32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = v >> 24


cdef inline void _p64(uint8_t *p, uint64_t v) noexcept nogil:
    _p32(p, <uint32_t>v)
    _p32(p + 4, <uint32_t>(v >> 32))


cdef inline uint32_t _g32(const uint8_t *p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _g64(const uint8_t *p) noexcept nogil:
    return _g32(p) | (<uint64_t>_g32(p + 4) << 32)


cdef inline uint64_t _pad8(uint64_t n) noexcept nogil:
    return (n + 7) & ~(<uint64_t>7)


cdef inline uint64_t _pages_up(uint64_t nbytes) noexcept nogil:
    return (nbytes >> PAGE_SHIFT) + ((nbytes & PAGE_MASK) != 0)


cdef inline uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) except? 0:
    """zlib.crc32 of `n` bytes at `p`, chained from `crc` (zlib's braided CRC-32 is faster
    than a table loop here, and releases the GIL for large buffers)."""
    return crc32(PyMemoryView_FromMemory(<char *>p, n, PyBUF_READ), crc) if n else crc


def _fail(message):
    raise ValueError("vmo state file: " + message)


# -- saving ----------------------------------------------------------------------------------------
cdef class _Writer:
    """The file, the bytes written so far and the CRC-32 of the headers and trailers."""
    cdef object file
    cdef uint64_t length
    cdef uint32_t headers_crc

    def __init__(self, file):
        self.file = file

    cdef void put(self, bytes data):
        self.file.write(data)
        self.length += len(data)

    cdef void header(self, bytes data):
        self.headers_crc = crc32_update(self.headers_crc, <const uint8_t *>data, len(data))
        self.put(data)

    cdef void section(self, bytes tag, object payload):
        """A whole section whose payload is in memory."""
        cdef const uint8_t[::1] view = payload
        cdef uint32_t crc = crc32_update(0, &view[0], view.shape[0]) if view.shape[0] else 0
        self.begin(tag, view.shape[0])
        self.file.write(payload)
        self.length += view.shape[0]
        self.end(crc)

    cdef void begin(self, bytes tag, uint64_t length):
        cdef bytearray h = bytearray(SECTION_SIZE)
        cdef uint8_t *p = h
        h[0:4] = tag
        _p64(p + 8, length)
        self.header(bytes(h))

    cdef void end(self, uint32_t crc):
        cdef bytearray t = bytearray(TRAILER_SIZE)
        _p32(<uint8_t *>t, crc)
        self.header(bytes(t))


cdef list _objects_of(kernel_state *ks):
    """Every live object (reachable from a handle, or a parent of one), ascending koid, as
    addresses."""
    cdef uint32_t s
    cdef obj_header *p
    found = {}
    for s in range(ks.handles.nslots):
        p = ks.handles.objs[s]
        while p != NULL and p.koid not in found:
            found[p.koid] = <size_t>p
            p = <obj_header *>(<vm_object *>p).parent if p.type == OBJ_VMO else NULL
    return [found[koid] for koid in sorted(found)]


cdef uint64_t _page_runs(const vm_object *v, uint8_t *out) noexcept nogil:
    """The VMO's pages as runs (consecutive pages on consecutive frames), written to `out`
    unless it is NULL; returns their number. O(pages * height)."""
    cdef uint64_t idx = 0, found = 0, first = 0, n = 0, runs = 0
    cdef uint32_t e = 0, frame = 0
    while pt_next(&v.pt, idx, PAGE_LIMIT, &found, &e):
        if n and found == first + n and e - 1 == frame + n:
            n += 1
        else:
            if n:
                if out != NULL:
                    _p64(out + runs * PAGE_RUN_SIZE, first)
                    _p32(out + runs * PAGE_RUN_SIZE + 8, frame)
                    _p32(out + runs * PAGE_RUN_SIZE + 12, <uint32_t>n)
                runs += 1
            first = found
            frame = e - 1
            n = 1
        idx = found + 1
    if n:
        if out != NULL:
            _p64(out + runs * PAGE_RUN_SIZE, first)
            _p32(out + runs * PAGE_RUN_SIZE + 8, frame)
            _p32(out + runs * PAGE_RUN_SIZE + 12, <uint32_t>n)
        runs += 1
    return runs


cdef bytearray _objs_payload(kernel_state *ks):
    cdef list objects = _objects_of(ks)
    cdef uint64_t total = 8, pos = 8, nruns
    cdef size_t addr
    cdef obj_header *p
    cdef vm_object *v
    cdef list runs = []
    for addr in objects:
        p = <obj_header *>addr
        total += OBJECT_SIZE
        if p.type == OBJ_VMO:
            nruns = _page_runs(<vm_object *>p, NULL)
            runs.append(nruns)
            total += VMO_SIZE + nruns * PAGE_RUN_SIZE
    cdef bytearray out = bytearray(total)
    cdef uint8_t *b = out
    _p64(b, len(objects))
    cdef Py_ssize_t i = 0
    for addr in objects:
        p = <obj_header *>addr
        _p32(b + pos, TYPE_VMO if p.type == OBJ_VMO else TYPE_EVENT)
        _p64(b + pos + 8, p.koid)
        _p64(b + pos + 16, <uint64_t>p.refs)
        pos += OBJECT_SIZE
        if p.type == OBJ_VMO:
            v = <vm_object *>p
            nruns = runs[i]
            i += 1
            _p64(b + pos, v.size)
            _p64(b + pos + 8, v.parent.hdr.koid if v.parent != NULL else 0)
            _p64(b + pos + 16, v.parent_offset if v.parent != NULL else 0)
            _p64(b + pos + 24, nruns)
            pos += VMO_SIZE
            _page_runs(v, b + pos)
            pos += nruns * PAGE_RUN_SIZE
    return out


cdef bytearray _hndl_payload(const kernel_state *ks):
    cdef uint32_t s, nslots = ks.handles.nslots, nfree = ks.handles.nfree
    cdef bytearray out = bytearray(_pad8(8 + <uint64_t>nslots * SLOT_SIZE + 4 * nfree))
    cdef uint8_t *b = out
    cdef uint8_t *q
    _p32(b, nslots)
    _p32(b + 4, nfree)
    for s in range(nslots):
        q = b + 8 + <uint64_t>s * SLOT_SIZE
        if ks.handles.objs[s] != NULL:
            _p64(q, ks.handles.objs[s].koid)
            _p32(q + 8, ks.handles.rights[s])
        q[12] = ks.handles.gen[s] & 0xFF
        q[13] = ks.handles.gen[s] >> 8
    q = b + 8 + <uint64_t>nslots * SLOT_SIZE
    for s in range(nfree):
        _p32(q + 4 * s, ks.handles.free_slots[s])
    return out


cdef bytearray _pool_payload(const frame_pool *p):
    cdef uint64_t w, nwords = (p.nframes + 63) >> 6, bits, ndirty = 0, i
    cdef uint32_t f
    for w in range(nwords):
        bits = p.dirty[w] & ~p.held[w]
        while bits:
            ndirty += 1
            bits &= bits - 1
    cdef bytearray out = bytearray(_pad8(POOL_SIZE + 4 * (p.list_len + ndirty)))
    cdef uint8_t *b = out
    _p64(b, p.next_fresh)
    _p64(b + 8, p.list_len)
    _p64(b + 16, ndirty)
    # The list is linked from its top; the file holds it bottom first.
    i = p.list_len
    f = p.head
    while f != NIL:
        i -= 1
        _p32(b + POOL_SIZE + 4 * i, f)
        f = p.lnext[f]
    i = POOL_SIZE + 4 * p.list_len
    for w in range(nwords):
        bits = p.dirty[w] & ~p.held[w]
        while bits:
            _p32(b + i, <uint32_t>((w << 6) + <uint64_t>__builtin_ctzll(bits)))
            i += 4
            bits &= bits - 1
    return out


cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil


cdef bint _data_frame(const frame_pool *p, uint64_t f) noexcept nogil:
    """A frame whose contents the file holds: held and written."""
    return bit_test(p.held, f) and bit_test(p.dirty, f)


cdef void _write_data(_Writer out, frame_pool *p) except *:
    """DATA: the held frames that may hold nonzero bytes, in runs, streamed from physical
    memory a chunk at a time."""
    cdef uint64_t f = 0, n, runs = 0, frames = 0, start, end, pos
    cdef uint32_t crc
    cdef bytearray head = bytearray(DATA_SIZE)
    cdef bytearray run = bytearray(DATA_RUN_SIZE)
    while f < p.nframes:
        if not _data_frame(p, f):
            f += 1
            continue
        n = 1
        while f + n < p.nframes and _data_frame(p, f + n):
            n += 1
        runs += 1
        frames += n
        f += n
    out.begin(b"DATA", DATA_SIZE + runs * DATA_RUN_SIZE + (frames << FRAME_SHIFT))
    _p64(<uint8_t *>head, runs)
    _p64(<uint8_t *>head + 8, frames)
    crc = crc32_update(0, <uint8_t *>head, DATA_SIZE)
    out.file.write(head)
    f = 0
    while f < p.nframes:
        if not _data_frame(p, f):
            f += 1
            continue
        n = 1
        while f + n < p.nframes and _data_frame(p, f + n):
            n += 1
        _p32(<uint8_t *>run, <uint32_t>f)
        _p32(<uint8_t *>run + 4, <uint32_t>n)
        crc = crc32_update(crc, <uint8_t *>run, DATA_RUN_SIZE)
        out.file.write(run)
        start = f << FRAME_SHIFT
        end = (f + n) << FRAME_SHIFT
        pos = start
        while pos < end:
            n = end - pos if end - pos < CHUNK else CHUNK
            crc = crc32_update(crc, p.mem + pos, n)
            out.file.write(PyMemoryView_FromMemory(<char *>p.mem + pos, n, PyBUF_READ))
            pos += n
        f = end >> FRAME_SHIFT
    out.length += DATA_SIZE + runs * DATA_RUN_SIZE + (frames << FRAME_SHIFT)
    out.end(crc)


cdef void _write_state(KernelCore k, object file) except *:
    cdef kernel_state *ks = &k.ks
    cdef _Writer out = _Writer(file)
    cdef bytearray header = bytearray(HEADER_SIZE)
    cdef bytearray kern
    cdef uint8_t *b
    cdef Py_ssize_t i
    header[0:8] = MAGIC
    _p32(<uint8_t *>header + 8, VERSION)
    out.header(bytes(header))
    ranges = k.memory_map
    kern = bytearray(KERN_SIZE + RANGE_SIZE * len(ranges))
    b = kern
    _p64(b, ks.next_koid)
    _p64(b + 8, ks.pool.released_runs)
    _p64(b + 16, ks.pool.zeroed_frames)
    _p32(b + 24, len(ranges))
    for i, (base, size) in enumerate(ranges):
        _p64(b + KERN_SIZE + RANGE_SIZE * i, base)
        _p64(b + KERN_SIZE + RANGE_SIZE * i + 8, size)
    out.section(b"KERN", kern)
    out.section(b"POOL", _pool_payload(&ks.pool))
    out.section(b"HNDL", _hndl_payload(ks))
    out.section(b"OBJS", _objs_payload(ks))
    _write_data(out, &ks.pool)
    end = bytearray(END_SIZE)
    _p64(<uint8_t *>end, out.length + SECTION_SIZE + END_SIZE + TRAILER_SIZE)
    _p32(<uint8_t *>end + 8, out.headers_crc)
    out.section(b"END ", end)


cdef object _with_kernel_owned(KernelCore k, object work):
    """Run `work()` owning the kernel (no other thread changes it meanwhile): ValueError if
    it is closed, MxError(ERR_BAD_STATE) while physical memory is pinned."""
    ks_enter(&k.ks)
    try:
        if k.ks.cache != NULL:
            raise ValueError("a non-coherent kernel cannot be saved (its CPU cache is not in "
                             "the state file: docs/state-format.md)")
        if k.ks.pool.npinned:
            raise MxError(Status.ERR_BAD_STATE,
                          "save: physical memory is pinned by a live view or pin")
        return work()
    finally:
        ks_leave(&k.ks)


def save_kernel(KernelCore k, path):
    """Write the kernel's whole state to `path` atomically (docs/state-format.md).
    ValueError if it is closed, MxError(ERR_BAD_STATE) while a physical view or pin is
    live, OSError from the file system (the previous file is then intact). Cost: the
    objects, the pages held and the written frames' bytes, streamed."""
    _with_kernel_owned(k, lambda: atomic_write(path, lambda file: _write_state(k, file)))


def dump_kernel(KernelCore k):
    """The state file's bytes (what pickling carries). Errors as `save_kernel`."""
    file = io.BytesIO()
    _with_kernel_owned(k, lambda: _write_state(k, file))
    return file.getvalue()


# -- loading ---------------------------------------------------------------------------------------
cdef class _Reader:
    """Sequential reads of a file of known size; failures name the byte offset."""
    cdef object file
    cdef uint64_t size
    cdef uint64_t offset
    cdef uint32_t headers_crc

    def __init__(self, file, uint64_t size):
        self.file = file
        self.size = size

    cdef bytes read(self, uint64_t n, str what):
        cdef bytes data
        if n > self.size - self.offset:
            _fail("truncated: %s at byte %d needs %d bytes, %d left"
                  % (what, self.offset, n, self.size - self.offset))
        data = _read_exact(self.file, n)
        if <uint64_t>len(data) != n:
            _fail("truncated: %s at byte %d (the file shrank while read)" % (what, self.offset))
        self.offset += n
        return data

    cdef bytes header(self, uint64_t n, str what):
        cdef bytes data = self.read(n, what)
        self.headers_crc = crc32_update(self.headers_crc, <const uint8_t *>data, n)
        return data

    cdef uint64_t section(self, bytes tag) except? 0:
        """Read the header of the next section, which must be `tag`; its payload length."""
        cdef uint64_t at = self.offset, length
        cdef bytes h = self.header(SECTION_SIZE, "the header of section %s" % tag.decode())
        if h[0:4] != tag or _g32(<const uint8_t *>h + 4):
            _fail("expected section %s at byte %d, found %r" % (tag.decode(), at, h[0:8]))
        length = _g64(<const uint8_t *>h + 8)
        if length > self.size - self.offset or self.size - self.offset - length < TRAILER_SIZE:
            _fail("section %s at byte %d claims %d bytes, the file has %d left"
                  % (tag.decode(), at, length, self.size - self.offset))
        return length

    cdef void trailer(self, str name, uint32_t crc) except *:
        cdef bytes t = self.header(TRAILER_SIZE, name)
        if _g32(<const uint8_t *>t) != crc or _g32(<const uint8_t *>t + 4):
            _fail("%s: CRC-32 mismatch" % name)

    cdef bytes payload(self, bytes tag):
        """The payload of the next section `tag`, its CRC-32 checked."""
        cdef uint64_t at = self.offset
        cdef uint64_t length = self.section(tag)
        cdef str name = "section %s at byte %d" % (tag.decode(), at)
        cdef bytes data = self.read(length, name)
        self.trailer(name, crc32_update(0, <const uint8_t *>data, length))
        return data


def _read_exact(file, n):
    """`n` bytes of `file` (fewer only at its end)."""
    data = file.read(n)
    if data is None:
        data = b""
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = file.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


cdef struct owned_run:
    uint64_t first
    uint64_t count
    uint64_t koid


cdef int _cmp_run(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<const owned_run *>a).first, y = (<const owned_run *>b).first
    return -1 if x < y else (1 if x > y else 0)


cdef int _cmp_u32(const void *a, const void *b) noexcept nogil:
    cdef uint32_t x = (<const uint32_t *>a)[0], y = (<const uint32_t *>b)[0]
    return -1 if x < y else (1 if x > y else 0)


cdef bint _has_duplicate(const uint8_t *values, uint64_t n) except -1:
    """True if two of the `n` little-endian u32 at `values` are equal. O(n log n), n * 4
    bytes (bounded by the file's size)."""
    cdef uint32_t *sorted_values = <uint32_t *>malloc((n if n else 1) * sizeof(uint32_t))
    cdef uint64_t i
    cdef bint found = False
    if sorted_values == NULL:
        raise MemoryError()
    for i in range(n):
        sorted_values[i] = _g32(values + 4 * i)
    qsort(sorted_values, n, sizeof(uint32_t), _cmp_u32)
    for i in range(1, n):
        if sorted_values[i] == sorted_values[i - 1]:
            found = True
            break
    free(sorted_values)
    return found


cdef struct parsed_object:
    uint32_t type
    uint64_t koid
    uint64_t refs
    uint64_t expected       # handles and clones that refer to it
    uint64_t size
    uint64_t parent         # index in the object array + 1 (0: none)
    uint64_t parent_offset
    uint64_t nruns
    const uint8_t *runs     # into the OBJS payload


cdef class _Plan:
    """The parsed, checked state: C arrays over the sections' payloads (kept alive here)."""
    cdef list payloads
    cdef list ranges
    cdef uint64_t nframes, next_koid, released, zeroed, next_fresh, nlist, ndirty
    cdef const uint8_t *free_list
    cdef const uint8_t *dirty_free
    cdef uint32_t nslots, nfree
    cdef const uint8_t *slots
    cdef const uint8_t *free_slots
    cdef uint64_t nobjects, nowned, held
    cdef parsed_object *objects
    cdef owned_run *owned

    def __cinit__(self):
        self.objects = NULL
        self.owned = NULL
        self.payloads = []

    def __dealloc__(self):
        free(self.objects)
        free(self.owned)

    cdef bint is_owned(self, uint64_t frame) noexcept nogil:
        cdef uint64_t lo = 0, hi = self.nowned, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.owned[mid].first <= frame:
                lo = mid + 1
            else:
                hi = mid
        return lo > 0 and frame < self.owned[lo - 1].first + self.owned[lo - 1].count

    cdef uint64_t find(self, uint64_t koid) noexcept nogil:
        """Index + 1 of the object with `koid`, 0 if none."""
        cdef uint64_t lo = 0, hi = self.nobjects, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.objects[mid].koid < koid:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1 if lo < self.nobjects and self.objects[lo].koid == koid else 0


cdef _Plan _parse(_Reader r):
    """Read and check every section before DATA."""
    cdef _Plan plan = _Plan()
    cdef bytes header = r.header(HEADER_SIZE, "the file header")
    cdef const uint8_t *b
    cdef uint64_t i, j, n, at, pos, length, index, frame, pages, end, below
    cdef uint32_t version, flags, nranges, s, gen
    cdef parsed_object *o
    if header[0:8] != MAGIC:
        _fail("not a vmo state file (magic %r at byte 0)" % header[0:8])
    version = _g32(<const uint8_t *>header + 8)
    flags = _g32(<const uint8_t *>header + 12)
    if version > VERSION:
        _fail("version %d is newer than this vmo reads (%d)" % (version, VERSION))
    if version != VERSION or flags:
        _fail("unknown version %d / flags %#x at byte 8" % (version, flags))

    # KERN
    at = r.offset
    kern = r.payload(b"KERN")
    plan.payloads.append(kern)
    name = "section KERN at byte %d" % at
    b = kern
    if len(kern) < KERN_SIZE:
        _fail("%s: %d bytes" % (name, len(kern)))
    nranges = _g32(b + 24)
    if _g32(b + 28) or not 1 <= nranges <= 64 or len(kern) != KERN_SIZE + RANGE_SIZE * nranges:
        _fail("%s: %d memory ranges in %d bytes (1 to 64)" % (name, nranges, len(kern)))
    plan.next_koid = _g64(b)
    plan.released = _g64(b + 8)
    plan.zeroed = _g64(b + 16)
    ranges = [(_g64(b + KERN_SIZE + RANGE_SIZE * i), _g64(b + KERN_SIZE + RANGE_SIZE * i + 8))
              for i in range(nranges)]
    try:
        plan.ranges = memory_map(memory=ranges)
    except ValueError as exc:
        _fail("%s: bad memory map: %s" % (name, exc))
    if plan.next_koid < FIRST_KOID:
        _fail("%s: koid counter %d below %d" % (name, plan.next_koid, FIRST_KOID))
    plan.nframes = sum(size for _, size in plan.ranges) >> PAGE_SHIFT

    # POOL
    at = r.offset
    pool = r.payload(b"POOL")
    plan.payloads.append(pool)
    pool_name = "section POOL at byte %d" % at
    b = pool
    length = len(pool)
    if length < POOL_SIZE:
        _fail("%s: %d bytes" % (pool_name, length))
    plan.next_fresh = _g64(b)
    plan.nlist = _g64(b + 8)
    plan.ndirty = _g64(b + 16)
    if plan.nlist > length or plan.ndirty > length or \
            _pad8(POOL_SIZE + 4 * (plan.nlist + plan.ndirty)) != length:
        _fail("%s: %d + %d frames do not make its %d bytes" % (pool_name, plan.nlist,
                                                               plan.ndirty, length))
    for i in range(POOL_SIZE + 4 * (plan.nlist + plan.ndirty), length):
        if b[i]:
            _fail("%s: nonzero padding" % pool_name)
    if plan.next_fresh > plan.nframes:
        _fail("%s: next fresh frame %d past the %d frames" % (pool_name, plan.next_fresh,
                                                              plan.nframes))
    plan.free_list = b + POOL_SIZE
    plan.dirty_free = b + POOL_SIZE + 4 * plan.nlist

    # HNDL
    at = r.offset
    hndl = r.payload(b"HNDL")
    plan.payloads.append(hndl)
    hndl_name = "section HNDL at byte %d" % at
    b = hndl
    length = len(hndl)
    if length < 8:
        _fail("%s: %d bytes" % (hndl_name, length))
    plan.nslots = _g32(b)
    plan.nfree = _g32(b + 4)
    if plan.nslots > MX_MAX_HANDLES or plan.nfree > plan.nslots or \
            _pad8(8 + <uint64_t>plan.nslots * SLOT_SIZE + 4 * plan.nfree) != length:
        _fail("%s: %d slots, %d free, in %d bytes (at most %d slots)"
              % (hndl_name, plan.nslots, plan.nfree, length, MX_MAX_HANDLES))
    for i in range(8 + <uint64_t>plan.nslots * SLOT_SIZE + 4 * plan.nfree, length):
        if b[i]:
            _fail("%s: nonzero padding" % hndl_name)
    plan.slots = b + 8
    plan.free_slots = b + 8 + <uint64_t>plan.nslots * SLOT_SIZE

    # OBJS
    at = r.offset
    objs = r.payload(b"OBJS")
    plan.payloads.append(objs)
    objs_name = "section OBJS at byte %d" % at
    b = objs
    length = len(objs)
    if length < 8:
        _fail("%s: %d bytes" % (objs_name, length))
    n = _g64(b)
    if n > length // OBJECT_SIZE:
        _fail("%s: %d objects cannot fit" % (objs_name, n))
    plan.objects = <parsed_object *>malloc((n if n else 1) * sizeof(parsed_object))
    # Every page run is at least 16 bytes of the payload: a bound on their number.
    plan.owned = <owned_run *>malloc((length // PAGE_RUN_SIZE + 1) * sizeof(owned_run))
    if plan.objects == NULL or plan.owned == NULL:
        raise MemoryError()
    plan.nobjects = 0
    plan.nowned = 0
    pos = 8
    for i in range(n):
        if length - pos < OBJECT_SIZE:
            _fail("%s: object %d at payload byte %d is cut short" % (objs_name, i, pos))
        o = &plan.objects[i]
        memset(o, 0, sizeof(parsed_object))
        o.type = _g32(b + pos)
        o.koid = _g64(b + pos + 8)
        o.refs = _g64(b + pos + 16)
        if _g32(b + pos + 4) or (o.type != TYPE_VMO and o.type != TYPE_EVENT):
            _fail("%s: object of unknown type %d at payload byte %d" % (objs_name, o.type, pos))
        if not ((i == 0 and o.koid >= FIRST_KOID) or (i and o.koid > plan.objects[i - 1].koid)) \
                or o.koid >= plan.next_koid:
            _fail("%s: koid %d out of order or not below the counter %d"
                  % (objs_name, o.koid, plan.next_koid))
        pos += OBJECT_SIZE
        plan.nobjects = i + 1
        if o.type != TYPE_VMO:
            continue
        if length - pos < VMO_SIZE:
            _fail("%s: VMO koid %d is cut short" % (objs_name, o.koid))
        o.size = _g64(b + pos)
        parent_koid = _g64(b + pos + 8)
        o.parent_offset = _g64(b + pos + 16)
        o.nruns = _g64(b + pos + 24)
        pos += VMO_SIZE
        if o.size > MX_VMO_MAX_SIZE:
            _fail("%s: koid %d has size %d" % (objs_name, o.koid, o.size))
        if parent_koid:
            o.parent = plan.find(parent_koid)
            if parent_koid >= o.koid or o.parent == 0 or \
                    plan.objects[o.parent - 1].type != TYPE_VMO:
                _fail("%s: koid %d has parent %d, not an earlier VMO"
                      % (objs_name, o.koid, parent_koid))
            # (offset + size may pass 2**64: a clone may grow after it was made; the pages
            # past the wrap read as zero, docs/magenta.md 3.0.)
            if o.parent_offset & PAGE_MASK:
                _fail("%s: koid %d has parent offset %d" % (objs_name, o.koid, o.parent_offset))
            plan.objects[o.parent - 1].expected += 1
        elif o.parent_offset:
            _fail("%s: koid %d has a parent offset but no parent" % (objs_name, o.koid))
        if o.nruns > (length - pos) // PAGE_RUN_SIZE:
            _fail("%s: koid %d: %d page runs cannot fit" % (objs_name, o.koid, o.nruns))
        o.runs = b + pos
        end = 0
        for _ in range(o.nruns):
            index = _g64(b + pos)
            frame = _g32(b + pos + 8)
            pages = _g32(b + pos + 12)
            if pages == 0 or index < end or index > _pages_up(o.size) or \
                    pages > _pages_up(o.size) - index:
                _fail("%s: koid %d: page run %d+%d out of order or past its size"
                      % (objs_name, o.koid, index, pages))
            if frame + pages > plan.nframes:
                _fail("%s: koid %d: frames %d+%d beyond memory"
                      % (objs_name, o.koid, frame, pages))
            end = index + pages
            plan.owned[plan.nowned].first = frame
            plan.owned[plan.nowned].count = pages
            plan.owned[plan.nowned].koid = o.koid
            plan.nowned += 1
            pos += PAGE_RUN_SIZE
    if pos != length:
        _fail("%s: %d unexpected bytes at payload byte %d" % (objs_name, length - pos, pos))

    # Each frame held once.
    qsort(plan.owned, plan.nowned, sizeof(owned_run), _cmp_run)
    plan.held = 0
    for i in range(plan.nowned):
        if i and plan.owned[i - 1].first + plan.owned[i - 1].count > plan.owned[i].first:
            _fail("%s: frame %d held by koids %d and %d" % (objs_name, plan.owned[i].first,
                                                            plan.owned[i - 1].koid,
                                                            plan.owned[i].koid))
        plan.held += plan.owned[i].count

    # Handles: slots refer to live objects; the free stack is exactly the free slots.
    cdef uint64_t nfree_slots = 0
    seen = bytearray(plan.nslots)
    for s in range(plan.nslots):
        b = plan.slots + <uint64_t>s * SLOT_SIZE
        gen = b[12] | (<uint32_t>b[13] << 8)
        if b[14] or b[15] or gen > 0xFFF:
            _fail("%s: slot %d has generation %d" % (hndl_name, s, gen))
        if _g64(b) == 0:
            if _g32(b + 8):
                _fail("%s: free slot %d has rights" % (hndl_name, s))
            nfree_slots += 1
            seen[s] = 1
            continue
        j = plan.find(_g64(b))
        if j == 0:
            _fail("%s: slot %d refers to koid %d, not a live object" % (hndl_name, s, _g64(b)))
        plan.objects[j - 1].expected += 1
    if nfree_slots != plan.nfree:
        _fail("%s: the free-slot stack is not the %d free slots" % (hndl_name, nfree_slots))
    for i in range(plan.nfree):
        s = _g32(plan.free_slots + 4 * i)
        if s >= plan.nslots or seen[s] != 1:
            _fail("%s: the free-slot stack is not the %d free slots" % (hndl_name, nfree_slots))
        seen[s] = 2
    for i in range(plan.nobjects):
        o = &plan.objects[i]
        if o.refs != o.expected or o.refs == 0:
            _fail("%s: koid %d has refcount %d, %d handles and children refer to it"
                  % (objs_name, o.koid, o.refs, o.expected))

    # The allocator: the freed list and the held frames below the fresh mark are exactly
    # the frames below it; the mark is on a free frame; dirty free frames are free.
    below = 0
    for i in range(plan.nowned):
        if plan.owned[i].first < plan.next_fresh:
            below += min(plan.owned[i].first + plan.owned[i].count,
                         plan.next_fresh) - plan.owned[i].first
    if plan.nlist + below != plan.next_fresh:
        _fail("%s: %d freed + %d held frames below the fresh mark %d"
              % (pool_name, plan.nlist, below, plan.next_fresh))
    for i in range(plan.nlist):
        frame = _g32(plan.free_list + 4 * i)
        if frame >= plan.next_fresh or plan.is_owned(frame):
            _fail("%s: freed frame %d is held or not below the fresh mark" % (pool_name, frame))
    if _has_duplicate(plan.free_list, plan.nlist):
        _fail("%s: a frame is on the freed list twice" % pool_name)
    if plan.next_fresh < plan.nframes and plan.is_owned(plan.next_fresh):
        _fail("%s: the fresh mark %d is on a held frame" % (pool_name, plan.next_fresh))
    for i in range(plan.ndirty):
        frame = _g32(plan.dirty_free + 4 * i)
        if (i and frame <= _g32(plan.dirty_free + 4 * (i - 1))) or frame >= plan.nframes \
                or plan.is_owned(frame):
            _fail("%s: dirty free frame %d is out of order, held or beyond memory"
                  % (pool_name, frame))
    return plan


# -- building ----------------------------------------------------------------------------------
cdef void _free_objects(obj_header **made, uint64_t n) noexcept nogil:
    cdef uint64_t i
    for i in range(n):
        if made[i] != NULL:
            if made[i].type == OBJ_VMO:
                pt_free_nodes(&(<vm_object *>made[i]).pt)
            free(made[i])


cdef int _build(KernelCore k, _Plan plan) except -1:
    """Put the planned state into the new kernel `k`: objects and page tables first (a host
    allocation failure frees them and raises MemoryError, the kernel still empty), then the
    handle table and the allocator (which cannot fail). Frame contents are left to DATA."""
    cdef kernel_state *ks = &k.ks
    cdef frame_pool *p = &ks.pool
    cdef obj_header **made = <obj_header **>malloc((plan.nobjects + 1) * sizeof(void *))
    cdef parsed_object *o
    cdef vm_object *v
    cdef uint64_t i, j, f, index, frame, pages, nvmos = 0
    cdef uint32_t s
    cdef const uint8_t *b
    if made == NULL:
        raise MemoryError()
    memset(made, 0, (plan.nobjects + 1) * sizeof(void *))
    for i in range(plan.nobjects):
        o = &plan.objects[i]
        if o.type == TYPE_EVENT:
            made[i] = <obj_header *>calloc(1, sizeof(obj_header))
            if made[i] == NULL:
                break
            made[i].type = OBJ_EVENT
            made[i].serial = ks.next_serial
            ks.next_serial += 1
        else:
            v = <vm_object *>calloc(1, sizeof(vm_object))
            if v == NULL:
                break
            made[i] = &v.hdr
            v.hdr.type = OBJ_VMO
            # Snapshots name objects by serial (never reused in a kernel's life), and save
            # page-table leaves under it: a new kernel's, before the first pt_set.
            v.hdr.serial = ks.next_serial
            ks.next_serial += 1
            pt_init(&v.pt)
            v.size = o.size
            v.parent_offset = o.parent_offset
            v.parent = <vm_object *>made[o.parent - 1] if o.parent else NULL
            v.alive = True
            nvmos += 1
            for j in range(o.nruns):
                b = o.runs + j * PAGE_RUN_SIZE
                index = _g64(b)
                frame = _g32(b + 8)
                pages = _g32(b + 12)
                for f in range(pages):
                    if pt_set(&v.pt, index + f, <uint32_t>(frame + f + 1), p, v.hdr.serial):
                        _free_objects(made, plan.nobjects)
                        free(made)
                        raise MemoryError("cannot build the page tables of a loaded kernel")
        made[i].koid = o.koid
        made[i].refs = <Py_ssize_t>o.refs
        made[i].index = 0
    else:
        i = plan.nobjects
    if i < plan.nobjects:
        _free_objects(made, plan.nobjects)
        free(made)
        raise MemoryError("cannot allocate the objects of a loaded kernel")
    # Nothing below can fail.
    ks.next_koid = plan.next_koid
    ks.nvmos = <Py_ssize_t>nvmos
    for s in range(plan.nslots):
        b = plan.slots + <uint64_t>s * SLOT_SIZE
        ks.handles.gen[s] = <uint16_t>(b[12] | (<uint32_t>b[13] << 8))
        ks.handles.rights[s] = _g32(b + 8)
        ks.handles.objs[s] = made[plan.find(_g64(b)) - 1] if _g64(b) else NULL
    for s in range(plan.nfree):
        ks.handles.free_slots[s] = _g32(plan.free_slots + 4 * s)
    ks.handles.nslots = plan.nslots
    ks.handles.nfree = plan.nfree
    ks.handles.count = plan.nslots - plan.nfree
    free(made)
    p.next_fresh = plan.next_fresh
    for i in range(plan.nowned):
        for f in range(plan.owned[i].first, plan.owned[i].first + plan.owned[i].count):
            pool_hold(p, f)
            if f >= p.next_fresh:
                p.held_above += 1
    p.nfree = p.nframes - plan.held
    # The list is linked from its top (the last entry in the file); lnext points down.
    p.head = NIL
    for i in range(plan.nlist):
        f = _g32(plan.free_list + 4 * i)
        p.lnext[f] = p.head
        p.lprev[f] = NIL
        if p.head != NIL:
            p.lprev[p.head] = <uint32_t>f
        p.head = <uint32_t>f
    p.list_len = plan.nlist
    for i in range(plan.ndirty):
        bit_set(p.dirty, _g32(plan.dirty_free + 4 * i))
    p.released_runs = plan.released
    p.zeroed_frames = plan.zeroed
    return 0


cdef extern from *:
    """
    #include <sys/mman.h>
    #if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
    #define MADV_POPULATE_WRITE 23
    #endif
    static void vmo_state_populate(void *addr, size_t size) {
    #ifdef MADV_POPULATE_WRITE
        /* Fault the pages in with one call rather than one fault per page; only a hint (an
           older host refuses it, and the pages are then faulted in as they are written). */
        (void)madvise(addr, size, MADV_POPULATE_WRITE);
    #else
        (void)addr; (void)size;
    #endif
    }
    """
    void vmo_state_populate(void *addr, size_t size) nogil


cdef int _read_into(object file, uint8_t *dst, uint64_t n) except -1:
    """Fill `dst` with the next `n` bytes of `file`; returns 0, or 1 if the file ended."""
    cdef uint64_t got = 0
    cdef object count
    while got < n:
        count = file.readinto(PyMemoryView_FromMemory(<char *>dst + got, n - got, PyBUF_WRITE))
        if not count:
            return 1
        got += count
    return 0


cdef int _read_data(_Reader r, KernelCore k, _Plan plan) except -1:
    """Stream DATA into the built kernel's frames, then check END."""
    cdef frame_pool *p = &k.ks.pool
    cdef uint64_t at = r.offset, length, nruns, frames, first, count, f, pos, stop, n
    cdef uint64_t end = 0, seen = 0
    cdef uint32_t crc, headers_crc
    cdef bytes head, run, tail
    length = r.section(b"DATA")
    name = "section DATA at byte %d" % at
    head = r.read(DATA_SIZE, name) if length >= DATA_SIZE else b""
    if not head:
        _fail("%s: %d bytes" % (name, length))
    nruns = _g64(<const uint8_t *>head)
    frames = _g64(<const uint8_t *>head + 8)
    if nruns > length // DATA_RUN_SIZE or frames > plan.held or \
            DATA_SIZE + DATA_RUN_SIZE * nruns + (frames << FRAME_SHIFT) != length:
        _fail("%s: %d runs of %d frames do not make its %d bytes" % (name, nruns, frames, length))
    crc = crc32_update(0, <const uint8_t *>head, DATA_SIZE)
    for _ in range(nruns):
        run = r.read(DATA_RUN_SIZE, name)
        crc = crc32_update(crc, <const uint8_t *>run, DATA_RUN_SIZE)
        first = _g32(<const uint8_t *>run)
        count = _g32(<const uint8_t *>run + 4)
        if count == 0 or first < end or first + count > p.nframes or count > frames - seen:
            _fail("%s: run %d+%d out of order, empty or beyond memory" % (name, first, count))
        for f in range(first, first + count):
            if not bit_test(p.held, f):
                _fail("%s: frame %d has contents but is not held" % (name, f))
        end = first + count
        seen += count
        pos = first << FRAME_SHIFT
        stop = end << FRAME_SHIFT
        if p.host_frames == 1:
            with nogil:
                vmo_state_populate(p.mem + pos, stop - pos)
        while pos < stop:
            n = stop - pos if stop - pos < CHUNK else CHUNK
            if _read_into(r.file, p.mem + pos, n):
                _fail("truncated: %s (the file shrank while read)" % name)
            crc = crc32_update(crc, p.mem + pos, n)
            pos += n
            r.offset += n
        for f in range(first, end):
            bit_set(p.dirty, f)
    if seen != frames:
        _fail("%s: runs hold %d frames, the header says %d" % (name, seen, frames))
    r.trailer(name, crc)
    headers_crc = r.headers_crc
    at = r.offset
    length = r.section(b"END ")
    name = "section END at byte %d" % at
    if length != END_SIZE:
        _fail("%s has %d bytes" % (name, length))
    tail = r.read(END_SIZE, name)
    r.trailer(name, crc32_update(0, <const uint8_t *>tail, END_SIZE))
    if _g32(<const uint8_t *>tail + 12) or _g64(<const uint8_t *>tail) != r.size or \
            r.offset != r.size:
        _fail("the file is %d bytes, %s says %d" % (r.size, name, _g64(<const uint8_t *>tail)))
    if _g32(<const uint8_t *>tail + 8) != headers_crc:
        _fail("the headers' CRC-32 (%s) does not match" % name)
    return 0


cdef object _load(object cls, object file, uint64_t size):
    cdef _Reader r = _Reader(file, size)
    cdef _Plan plan = _parse(r)
    k = cls(memory=plan.ranges)
    if not isinstance(k, KernelCore):
        raise TypeError("%r does not make a compiled kernel" % (cls,))
    try:
        _build(k, plan)
        _read_data(r, k, plan)
    except BaseException:
        k.close()
        raise
    return k


def load_kernel(cls, path):
    """A new `cls` kernel in the state saved at `path` (by either kernel). ValueError,
    naming the byte offset or section, for a truncated, corrupted, foreign or newer file
    (nothing is left built); OSError if it cannot be read; MemoryError if the host cannot
    reserve the memory map it names. Cost: the file's bytes."""
    with open(path, "rb", buffering=0) as file:
        return _load(cls, file, os.fstat(file.fileno()).st_size)


def load_kernel_bytes(cls, data):
    """A new `cls` kernel from a state file's bytes (unpickling). Errors as `load_kernel`."""
    if not isinstance(data, bytes):  # BytesIO shares a bytes object's buffer, copies others
        data = memoryview(data).cast("B")
    return _load(cls, io.BytesIO(data), len(data) if isinstance(data, bytes) else data.nbytes)
