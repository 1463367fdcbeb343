"""The compiled kernel: Magenta's VMO syscalls over the frame pool and radix page tables.

Every call validates its arguments once, in the order Magenta checks them (spec section 3),
then runs its page walk in C with no Python objects. `vmo._reference` is the executable
spec this module is tested against; docs/semantics.md fixes what the contract leaves open.
"""

cimport cython
from cpython.buffer cimport (PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_CheckBuffer, PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.list cimport PyList_GET_ITEM
from cpython.number cimport PyNumber_Index
from cpython.object cimport PyObject
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset

from vmo._arena cimport vmo_arena_map, vmo_arena_unmap
from vmo._frames cimport (FRAME_SIZE, MAX_FRAMES, bit_test, frame_pool, pool_destroy,
                          pool_frame_ptr, pool_free_count, pool_give, pool_init, pool_mark_dirty,
                          pool_paddr, pool_take)
from vmo._pagetable cimport (page_table, pt_count, pt_fill, pt_free_nodes, pt_get,
                             pt_init, pt_lookup, pt_next, pt_remove, pt_set)

from vmo.constants import (MX_DEFAULT_EVENT_RIGHTS, MX_DEFAULT_VMO_RIGHTS,
                           MX_OBJ_PROP_WAITABLE, MX_OBJ_TYPE_EVENT, MX_OBJ_TYPE_VMEM)
from vmo.errors import Status
from vmo.records import HandleBasicInfo

cdef extern from "Python.h":
    # Declared without an exception spec: the callers test PyErr_Occurred themselves, so an
    # out-of-range integer becomes a status instead of an exception.
    unsigned long long PyLong_AsUnsignedLongLong(object o) noexcept
    bint PyLong_CheckExact(object o)


# -- statuses ---------------------------------------------------------------------------------
cdef enum:
    NO_ERROR = 0
    ERR_NOT_SUPPORTED = -2
    ERR_NO_MEMORY = -4
    ERR_INVALID_ARGS = -10
    ERR_BAD_HANDLE = -11
    ERR_WRONG_TYPE = -12
    ERR_OUT_OF_RANGE = -14
    ERR_BUFFER_TOO_SMALL = -15
    ERR_ACCESS_DENIED = -30

cdef enum:
    PAGE_SHIFT = 12
    PAGE_MASK = 4095
    OP_COMMIT = 1
    OP_DECOMMIT = 2
    OP_LOCK = 3
    OP_UNLOCK = 4
    OP_LOOKUP = 5
    OP_CACHE_SYNC = 6
    OP_CACHE_CLEAN_INVALIDATE = 9
    RIGHT_DUPLICATE = 0x1
    RIGHT_READ = 0x4
    RIGHT_WRITE = 0x8
    RIGHT_EXECUTE = 0x10
    RIGHT_MAP = 0x20
    RIGHT_SAME_RIGHTS = 0x80000000
    CLONE_COPY_ON_WRITE = 1
    INFO_HANDLE_VALID = 1
    INFO_HANDLE_BASIC = 2
    INFO_LAST_OBJECT_TOPIC = 13
    # Handle table (docs/semantics.md "Handles"): 2**18 slots, 12-bit generations.
    SLOT_BITS = 18
    SLOT_MASK = 0x3FFFF
    MAX_HANDLES = 1 << 18
    GEN_MASK = 0xFFF
    FIRST_KOID = 1024

cdef uint64_t U64_MAX = 0xFFFFFFFFFFFFFFFF
cdef uint64_t MAX_SIZE = 0xFFFFFFFFFFFFF000
# Page index bound for whole-VMO walks: every page of MX_VMO_MAX_SIZE is below it.
cdef uint64_t PAGE_LIMIT = (<uint64_t>1) << 52

# Status members indexed by -value, so a C status becomes its IntEnum member in O(1).
cdef list _STATUS = [None] * 64
for _member in Status:
    _STATUS[-int(_member)] = _member
cdef object S_OK = Status.NO_ERROR
cdef object _DEFAULT_VMO_RIGHTS = MX_DEFAULT_VMO_RIGHTS
cdef object _DEFAULT_EVENT_RIGHTS = MX_DEFAULT_EVENT_RIGHTS


cdef inline object _st(int code):
    return <object>PyList_GET_ITEM(_STATUS, -code)


# -- argument conversion ----------------------------------------------------------------------
cdef int _u64(object o, uint64_t *out) except -1:
    """Convert an integer argument: 0 on success, 1 if it is outside uint64 (the caller
    returns ERR_INVALID_ARGS). Raises TypeError for non-integers."""
    cdef unsigned long long v
    if not PyLong_CheckExact(o):
        o = PyNumber_Index(o)
    v = PyLong_AsUnsignedLongLong(o)
    if v == <unsigned long long>-1 and PyErr_Occurred() != NULL:
        PyErr_Clear()
        return 1
    out[0] = v
    return 0


cdef inline int _u32(object o, uint32_t *out) except -1:
    cdef uint64_t v
    if _u64(o, &v) or v > 0xFFFFFFFF:
        return 1
    out[0] = <uint32_t>v
    return 0


cdef object _invalid_args(tuple ints, object buffer=None):
    """ERR_INVALID_ARGS for an out-of-range integer, but only once every argument has been
    type-checked: a TypeError always wins over a status, whatever the argument order."""
    for x in ints:
        if x is not None:
            PyNumber_Index(x)
    if buffer is not None and not PyObject_CheckBuffer(buffer):
        raise TypeError("a bytes-like object is required, not %r" % type(buffer).__name__)
    return _st(ERR_INVALID_ARGS)


cdef inline bint _trim_range(uint64_t offset, uint64_t length, uint64_t size,
                             uint64_t *trimmed) noexcept:
    """Magenta's TrimRange (spec 3.0): False if offset+length wraps or offset > size."""
    if offset > U64_MAX - length or offset > size:
        return False
    trimmed[0] = length if length < size - offset else size - offset
    return True


cdef inline bint _in_range(uint64_t offset, uint64_t length, uint64_t size) noexcept:
    """Magenta's InRange (spec 3.0)."""
    return offset <= U64_MAX - length and offset + length <= size


cdef inline uint64_t _pages_up(uint64_t nbytes) noexcept:
    """ceil(nbytes / PAGE_SIZE) without overflow."""
    return (nbytes >> PAGE_SHIFT) + ((nbytes & PAGE_MASK) != 0)


cdef int _get_buffer(object obj, Py_buffer *view, bint writable) except -1:
    """Export `obj` as a contiguous byte buffer: 0 on success, 1 if the exporter refuses
    (read-only, non-contiguous: the caller returns ERR_INVALID_ARGS). TypeError if `obj`
    has no buffer protocol."""
    if not PyObject_CheckBuffer(obj):
        raise TypeError("a bytes-like object is required, not %r" % type(obj).__name__)
    try:
        PyObject_GetBuffer(obj, view, PyBUF_WRITABLE if writable else PyBUF_SIMPLE)
    except Exception:
        return 1
    return 0


cdef int _export(object obj, Py_buffer *view, bint writable, bint default_length,
                 uint64_t *length) except -2:
    """Export the buffer of a read or write syscall (docs/semantics.md): 1 if a view is held
    (release it), 0 if none is needed (None, or a refused exporter with nothing to
    transfer), -1 for ERR_INVALID_ARGS. Sets `length` to the buffer size when defaulted."""
    cdef Py_buffer probe
    view.buf = NULL
    view.len = 0
    if obj is not None:
        if _get_buffer(obj, view, writable) == 0:
            if default_length:
                length[0] = view.len
            elif length[0] > <uint64_t>view.len:
                PyBuffer_Release(view)
                return -1
            return 1
        # Refused (read-only where written, or not contiguous): only an empty transfer is
        # harmless, as a C call with a bad pointer and length 0 touches nothing.
        if default_length:
            try:
                PyObject_GetBuffer(obj, &probe, PyBUF_SIMPLE)
            except Exception:
                length[0] = 1
            else:
                length[0] = probe.len
                PyBuffer_Release(&probe)
        view.buf = NULL
        view.len = 0
    elif default_length:
        length[0] = 0
    return -1 if length[0] else 0


# -- objects ----------------------------------------------------------------------------------
@cython.no_gc
@cython.trashcan(True)
@cython.final
cdef class VmoObject:
    def __cinit__(self):
        pt_init(&self.pt)

    def __dealloc__(self):
        # Normally the kernel destroyed it already; this only frees node memory.
        pt_free_nodes(&self.pt)


@cython.final
cdef class EventObject:
    pass


cdef inline uint32_t _find_page(VmoObject v, uint64_t offset) noexcept:
    """The page a read at byte `offset` sees: own page, else an ancestor's (spec 3.0 fault
    steps 1-4 without faulting). Returns frame + 1, or 0 (reads as zero)."""
    cdef uint32_t entry
    while True:
        if offset >= v.size:
            return 0
        entry = pt_get(&v.pt, offset >> PAGE_SHIFT)
        if entry or v.parent is None:
            return entry
        if offset > U64_MAX - v.parent_offset:
            return 0
        offset += v.parent_offset
        v = v.parent


cdef inline uint64_t _paddr_or_zero(frame_pool *pool, uint32_t entry) noexcept:
    return pool_paddr(pool, entry - 1) if entry else 0


cdef class Kernel:
    """One simulated machine: physical memory, its frame allocator and a handle table.

    ``Kernel(memory_size=1 << 30, *, memory_base=0x100000)``: `memory_size` bytes of
    physical memory (reserved, not populated, so it may exceed the host's RAM) at physical
    address `memory_base`. Both must be page multiples, `memory_base` nonzero, `memory_size`
    at most (2**32 - 2) pages and `memory_base + memory_size` at most 2**64; else ValueError.
    Cost: a few mmap reservations, O(1).
    """

    def __cinit__(self):
        self._closed = True
        self.h_rights = NULL
        self.h_gen = NULL
        self.free_slots = NULL
        self.pool.mem = NULL

    def __init__(self, memory_size=1 << 30, *, memory_base=0x100000):
        cdef uint64_t size, base
        if not self._closed:
            raise RuntimeError("Kernel.__init__ called twice")
        memory_size = PyNumber_Index(memory_size)
        memory_base = PyNumber_Index(memory_base)
        if memory_size <= 0 or memory_size % FRAME_SIZE:
            raise ValueError("memory_size must be a positive multiple of 4096")
        if memory_size // FRAME_SIZE > MAX_FRAMES:
            raise ValueError("memory_size is limited to %d pages" % MAX_FRAMES)
        if memory_base <= 0 or memory_base % FRAME_SIZE:
            raise ValueError("memory_base must be a nonzero multiple of 4096")
        if memory_base + memory_size > (1 << 64):
            raise ValueError("physical memory must end at or below 2**64")
        size = memory_size
        base = memory_base
        self.h_rights = <uint32_t *>vmo_arena_map(MAX_HANDLES * sizeof(uint32_t))
        self.h_gen = <uint16_t *>vmo_arena_map(MAX_HANDLES * sizeof(uint16_t))
        self.free_slots = <uint32_t *>vmo_arena_map(MAX_HANDLES * sizeof(uint32_t))
        if self.h_rights == NULL or self.h_gen == NULL or self.free_slots == NULL:
            self._free_tables()
            raise MemoryError("cannot reserve the handle table")
        try:
            pool_init(&self.pool, size >> PAGE_SHIFT, base)
        except BaseException:
            self._free_tables()
            raise
        self._memory_base = base
        self._memory_size = size
        self.next_koid = FIRST_KOID
        self.h_objs = []
        self.nslots = 0
        self.nfree_slots = 0
        self.nhandles = 0
        self.nvmos = 0
        self._closed = False

    cdef void _free_tables(self) noexcept:
        vmo_arena_unmap(self.h_rights, MAX_HANDLES * sizeof(uint32_t))
        vmo_arena_unmap(self.h_gen, MAX_HANDLES * sizeof(uint16_t))
        vmo_arena_unmap(self.free_slots, MAX_HANDLES * sizeof(uint32_t))
        self.h_rights = NULL
        self.h_gen = NULL
        self.free_slots = NULL

    def __dealloc__(self):
        if not self._closed:
            self._teardown()

    cdef void _teardown(self) noexcept:
        """Destroy every object (iteratively, so long clone chains cannot recurse), then give
        the arena and the tables back to the host."""
        cdef Py_ssize_t slot
        cdef object obj
        self._closed = True
        if self.h_objs is not None:
            for slot in range(len(self.h_objs)):
                obj = self.h_objs[slot]
                if obj is not None:
                    self.h_objs[slot] = None
                    if type(obj) is VmoObject:
                        self._unref(<VmoObject>obj)
            self.h_objs = None
        self.nhandles = 0
        pool_destroy(&self.pool)
        self._free_tables()

    def close(self):
        """Close every handle and release the arena back to the host. Idempotent; any other
        call afterwards raises ValueError. Cost: the pages still committed."""
        if not self._closed:
            self._teardown()

    @property
    def closed(self):
        """True once `close()` has run."""
        return self._closed

    @property
    def memory_base(self):
        """Physical address of the first frame."""
        return self._memory_base

    @property
    def memory_size(self):
        """Bytes of physical memory."""
        return self._memory_size

    cdef int _ensure_open(self) except -1:
        if self._closed:
            raise ValueError("kernel is closed")
        return 0

    # -- handle table -----------------------------------------------------------------------
    cdef object _get(self, uint32_t handle, uint32_t *rights):
        """The object behind `handle` (and its rights), or None if it is not a live handle."""
        cdef uint32_t v, slot
        if not (handle & 1):
            return None
        v = handle >> 1
        slot = v & SLOT_MASK
        if slot >= self.nslots or self.h_gen[slot] != (v >> SLOT_BITS):
            return None
        rights[0] = self.h_rights[slot]
        return <object>PyList_GET_ITEM(self.h_objs, slot)

    cdef uint32_t _install(self, object obj, uint32_t rights) except 0:
        """Put `obj` in a free slot (caller checked nhandles < MAX_HANDLES); returns the
        handle value."""
        cdef uint32_t slot
        if self.nfree_slots:
            self.nfree_slots -= 1
            slot = self.free_slots[self.nfree_slots]
            self.h_objs[slot] = obj
        else:
            slot = self.nslots
            self.h_objs.append(obj)
            self.h_gen[slot] = 0
            self.nslots += 1
        self.h_rights[slot] = rights
        self.nhandles += 1
        return ((((<uint32_t>self.h_gen[slot]) << SLOT_BITS) | slot) << 1) | 1

    cdef object _uninstall(self, uint32_t handle):
        """Remove a live handle; returns its object. The slot's generation moves on so the
        old value stays invalid."""
        cdef uint32_t slot = (handle >> 1) & SLOT_MASK
        obj = <object>PyList_GET_ITEM(self.h_objs, slot)
        self.h_objs[slot] = None
        self.h_gen[slot] = (self.h_gen[slot] + 1) & GEN_MASK
        self.free_slots[self.nfree_slots] = slot
        self.nfree_slots += 1
        self.nhandles -= 1
        return obj

    cdef void _unref(self, VmoObject v) noexcept:
        """Drop one reference; destroy the VMO when none is left, then its parent's
        reference in turn (a loop, so clone chains of any depth are fine)."""
        cdef VmoObject parent
        while True:
            v.refs -= 1
            if v.refs > 0:
                return
            pt_remove(&v.pt, 0, PAGE_LIMIT, &self.pool)
            pt_free_nodes(&v.pt)
            v.alive = False
            self.nvmos -= 1
            parent = v.parent
            v.parent = None
            if parent is None:
                return
            v = parent

    cdef VmoObject _new_vmo(self, uint64_t size):
        cdef VmoObject v = VmoObject.__new__(VmoObject)
        v.size = size
        v.koid = self.next_koid
        self.next_koid += 1
        v.refs = 1
        v.alive = True
        self.nvmos += 1
        return v

    # -- faults -----------------------------------------------------------------------------
    cdef int _insert(self, VmoObject v, uint64_t idx, uint32_t frame) except -1:
        """Put a frame just taken at page `idx`; if the host cannot allocate a node, the
        frame goes back to the pool before MemoryError propagates (nothing leaks)."""
        try:
            pt_set(&v.pt, idx, frame + 1)
        except BaseException:
            pool_give(&self.pool, &frame, 1)
            raise
        return 0

    cdef uint64_t _fault_cost(self, VmoObject v, uint64_t offset) noexcept:
        """Frames a write fault at `offset` would take (v holds no page there): the depth of
        the ancestor holding the page (one copy per level), or 1 for a zero page."""
        cdef uint64_t depth = 0
        while True:
            if offset >= v.size:
                return 1
            if depth and pt_get(&v.pt, offset >> PAGE_SHIFT):
                return depth
            if v.parent is None or offset > U64_MAX - v.parent_offset:
                return 1
            offset += v.parent_offset
            v = v.parent
            depth += 1

    cdef int _write_fault(self, VmoObject v, uint64_t offset, uint32_t *entry) except -2:
        """Find or make v's own page for a write at byte `offset` (< v.size): the own page;
        else a copy of the nearest ancestor's page, copied into every intermediate clone on
        the way (nearest to the holder first); else a zero page. Returns 0, or
        ERR_NO_MEMORY when a frame is needed and none is free (copies already made stay)."""
        cdef uint32_t e, f
        cdef uint64_t off = offset
        cdef VmoObject level = v
        cdef Py_ssize_t i
        e = pt_get(&v.pt, offset >> PAGE_SHIFT)
        if e:
            entry[0] = e
            return 0
        # Walk up until an ancestor holds the page, collecting the levels that will copy it.
        levels = [v]
        offsets = [offset]
        while level.parent is not None and off <= U64_MAX - level.parent_offset:
            off += level.parent_offset
            level = level.parent
            if off >= level.size:
                break
            e = pt_get(&level.pt, off >> PAGE_SHIFT)
            if e:
                break
            levels.append(level)
            offsets.append(off)
        if e == 0:
            del levels[1:]
            del offsets[1:]
        for i in range(len(levels) - 1, -1, -1):
            level = <VmoObject>levels[i]
            if pool_free_count(&self.pool) == 0:
                return ERR_NO_MEMORY
            f = pool_take(&self.pool)
            if e and bit_test(self.pool.dirty, e - 1):
                memcpy(pool_frame_ptr(&self.pool, f), pool_frame_ptr(&self.pool, e - 1),
                       FRAME_SIZE)
                pool_mark_dirty(&self.pool, f)
            self._insert(level, <uint64_t>offsets[i] >> PAGE_SHIFT, f)
            e = f + 1
        entry[0] = e
        return 0

    cdef int _commit(self, VmoObject v, uint64_t start, uint64_t end) except -2:
        """COMMIT pages [start, end) of v, all or nothing (spec 3.6.1, API.md exception 2)."""
        cdef uint64_t missing, need, idx
        cdef uint32_t e
        missing = (end - start) - pt_count(&v.pt, start, end)
        if missing == 0:
            return 0
        if missing > pool_free_count(&self.pool):
            return ERR_NO_MEMORY
        if v.parent is None:
            pt_fill(&v.pt, start, end, &self.pool)
            return 0
        # A clone: every missing page is a write fault; count the frames first.
        need = 0
        for idx in range(start, end):
            if not pt_get(&v.pt, idx):
                need += self._fault_cost(v, idx << PAGE_SHIFT)
        if need > pool_free_count(&self.pool):
            return ERR_NO_MEMORY
        for idx in range(start, end):
            if not pt_get(&v.pt, idx):
                self._write_fault(v, idx << PAGE_SHIFT, &e)
        return 0

    # -- syscalls ---------------------------------------------------------------------------
    def vmo_create(self, size, options=0):
        """Create a VMO of `size` bytes (byte-granular, nothing committed), default rights
        0x3F. Returns (status, handle): ERR_INVALID_ARGS if options != 0; ERR_NO_MEMORY if
        size > MX_VMO_MAX_SIZE or the handle table is full. O(1)."""
        cdef uint64_t c_size
        cdef uint32_t c_options
        self._ensure_open()
        if _u64(size, &c_size) or _u32(options, &c_options) or c_options != 0:
            return (_invalid_args((size, options)), 0)
        if c_size > MAX_SIZE or self.nhandles >= MAX_HANDLES:
            return (_st(ERR_NO_MEMORY), 0)
        return (S_OK, self._install(self._new_vmo(c_size), MX_DEFAULT_VMO_RIGHTS))

    def vmo_read(self, handle, buffer, offset, length=None):
        """Read `length` bytes (default: the buffer's size) at `offset` into `buffer`;
        never commits. Returns (status, actual): ERR_BAD_HANDLE, ERR_ACCESS_DENIED (no
        READ), ERR_WRONG_TYPE, ERR_INVALID_ARGS (read-only buffer or length > buffer),
        ERR_OUT_OF_RANGE (offset > size or offset+length wraps). O(length)."""
        cdef uint32_t h, rights = 0
        cdef uint64_t off, n, trimmed, pos, chunk, page_off
        cdef uint32_t e
        cdef uint8_t *dst
        cdef Py_buffer view
        cdef int held
        cdef VmoObject v
        self._ensure_open()
        if _u32(handle, &h) or _u64(offset, &off):
            return (_invalid_args((handle, offset, length,), buffer), 0)
        if length is not None and _u64(length, &n):
            return (_invalid_args((handle, offset, length,), buffer), 0)
        if buffer is not None and not PyObject_CheckBuffer(buffer):
            raise TypeError("a bytes-like object is required, not %r" % type(buffer).__name__)
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if not (rights & RIGHT_READ):
            return (_st(ERR_ACCESS_DENIED), 0)
        if type(obj) is not VmoObject:
            return (_st(ERR_WRONG_TYPE), 0)
        v = <VmoObject>obj
        held = _export(buffer, &view, True, length is None, &n)
        if held < 0:
            return (_st(ERR_INVALID_ARGS), 0)
        try:
            if not _trim_range(off, n, v.size, &trimmed):
                return (_st(ERR_OUT_OF_RANGE), 0)
            dst = <uint8_t *>view.buf
            pos = off
            while pos < off + trimmed:
                page_off = pos & PAGE_MASK
                chunk = FRAME_SIZE - page_off
                if chunk > off + trimmed - pos:
                    chunk = off + trimmed - pos
                e = _find_page(v, pos)
                if e and bit_test(self.pool.dirty, e - 1):
                    memcpy(dst, pool_frame_ptr(&self.pool, e - 1) + page_off, chunk)
                else:
                    memset(dst, 0, chunk)
                dst += chunk
                pos += chunk
            return (S_OK, trimmed)
        finally:
            if held:
                PyBuffer_Release(&view)

    def vmo_read_bytes(self, handle, offset, length):
        """Read up to `length` bytes at `offset` and return them: (status, bytes), b"" on
        failure. The checks of vmo_read without the buffer ones. O(bytes returned)."""
        cdef uint32_t h, rights = 0
        cdef uint64_t off, n, trimmed, pos, chunk, page_off
        cdef uint32_t e
        cdef uint8_t *dst
        cdef VmoObject v
        self._ensure_open()
        if _u32(handle, &h) or _u64(offset, &off) or _u64(length, &n):
            return (_invalid_args((handle, offset, length,)), b"")
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), b"")
        if not (rights & RIGHT_READ):
            return (_st(ERR_ACCESS_DENIED), b"")
        if type(obj) is not VmoObject:
            return (_st(ERR_WRONG_TYPE), b"")
        v = <VmoObject>obj
        if not _trim_range(off, n, v.size, &trimmed):
            return (_st(ERR_OUT_OF_RANGE), b"")
        if trimmed > <uint64_t>PY_SSIZE_T_MAX:
            raise MemoryError("cannot return %d bytes" % trimmed)
        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>trimmed)
        dst = <uint8_t *>PyBytes_AS_STRING(data)
        pos = off
        while pos < off + trimmed:
            page_off = pos & PAGE_MASK
            chunk = FRAME_SIZE - page_off
            if chunk > off + trimmed - pos:
                chunk = off + trimmed - pos
            e = _find_page(v, pos)
            if e and bit_test(self.pool.dirty, e - 1):
                memcpy(dst, pool_frame_ptr(&self.pool, e - 1) + page_off, chunk)
            else:
                memset(dst, 0, chunk)
            dst += chunk
            pos += chunk
        return (S_OK, data)

    def vmo_write(self, handle, data, offset, length=None):
        """Write `length` bytes (default: all of `data`) at `offset`, committing the pages it
        touches (copy-on-write in clones). Returns (status, actual): ERR_BAD_HANDLE,
        ERR_ACCESS_DENIED (no WRITE), ERR_WRONG_TYPE, ERR_INVALID_ARGS (length > data),
        ERR_OUT_OF_RANGE, ERR_NO_MEMORY (pages written before it stay). O(length)."""
        cdef uint32_t h, rights = 0
        cdef uint64_t off, n, trimmed, pos, chunk, page_off
        cdef uint32_t e
        cdef int status
        cdef const uint8_t *src
        cdef Py_buffer view
        cdef int held
        cdef VmoObject v
        self._ensure_open()
        if _u32(handle, &h) or _u64(offset, &off):
            return (_invalid_args((handle, offset, length,), data), 0)
        if length is not None and _u64(length, &n):
            return (_invalid_args((handle, offset, length,), data), 0)
        if data is not None and not PyObject_CheckBuffer(data):
            raise TypeError("a bytes-like object is required, not %r" % type(data).__name__)
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if not (rights & RIGHT_WRITE):
            return (_st(ERR_ACCESS_DENIED), 0)
        if type(obj) is not VmoObject:
            return (_st(ERR_WRONG_TYPE), 0)
        v = <VmoObject>obj
        held = _export(data, &view, False, length is None, &n)
        if held < 0:
            return (_st(ERR_INVALID_ARGS), 0)
        try:
            if not _trim_range(off, n, v.size, &trimmed):
                return (_st(ERR_OUT_OF_RANGE), 0)
            src = <const uint8_t *>view.buf
            pos = off
            while pos < off + trimmed:
                page_off = pos & PAGE_MASK
                chunk = FRAME_SIZE - page_off
                if chunk > off + trimmed - pos:
                    chunk = off + trimmed - pos
                e = pt_get(&v.pt, pos >> PAGE_SHIFT)
                if e == 0:
                    if v.parent is None:
                        if pool_free_count(&self.pool) == 0:
                            return (_st(ERR_NO_MEMORY), 0)
                        e = pool_take(&self.pool)
                        self._insert(v, pos >> PAGE_SHIFT, e)
                        e += 1
                    else:
                        status = self._write_fault(v, pos, &e)
                        if status:
                            return (_st(status), 0)
                pool_mark_dirty(&self.pool, e - 1)
                memcpy(pool_frame_ptr(&self.pool, e - 1) + page_off, src, chunk)
                src += chunk
                pos += chunk
            return (S_OK, trimmed)
        finally:
            if held:
                PyBuffer_Release(&view)

    def vmo_get_size(self, handle):
        """(status, size in bytes): ERR_BAD_HANDLE, ERR_WRONG_TYPE; no rights needed. O(1)."""
        cdef uint32_t h, rights = 0
        self._ensure_open()
        if _u32(handle, &h):
            return (_st(ERR_INVALID_ARGS), 0)
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if type(obj) is not VmoObject:
            return (_st(ERR_WRONG_TYPE), 0)
        return (S_OK, (<VmoObject>obj).size)

    def vmo_set_size(self, handle, size):
        """Resize to `size` bytes; shrinking frees the pages past ceil(size/4096) but keeps
        the stale bytes of the page holding the new end. Status: ERR_BAD_HANDLE,
        ERR_ACCESS_DENIED (no WRITE), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE (> MX_VMO_MAX_SIZE).
        Cost: the pages freed."""
        cdef uint32_t h, rights = 0
        cdef uint64_t c_size
        cdef VmoObject v
        self._ensure_open()
        if _u32(handle, &h) or _u64(size, &c_size):
            return _invalid_args((handle, size,))
        obj = self._get(h, &rights)
        if obj is None:
            return _st(ERR_BAD_HANDLE)
        if not (rights & RIGHT_WRITE):
            return _st(ERR_ACCESS_DENIED)
        if type(obj) is not VmoObject:
            return _st(ERR_WRONG_TYPE)
        if c_size > MAX_SIZE:
            return _st(ERR_OUT_OF_RANGE)
        v = <VmoObject>obj
        if c_size < v.size:
            pt_remove(&v.pt, _pages_up(c_size), PAGE_LIMIT, &self.pool)
        v.size = c_size
        return S_OK

    def vmo_op_range(self, handle, op, offset, size, buffer=None, buffer_size=None):
        """COMMIT, DECOMMIT, LOCK, UNLOCK, LOOKUP and the cache ops over [offset,
        offset+size) (spec 3.6; no rights checked). Status: ERR_BAD_HANDLE, ERR_WRONG_TYPE,
        ERR_INVALID_ARGS (unknown op, LOOKUP without a writable buffer, size 0 for LOOKUP or
        a cache op), ERR_NOT_SUPPORTED (LOCK/UNLOCK), ERR_BUFFER_TOO_SMALL (LOOKUP),
        ERR_OUT_OF_RANGE, ERR_NO_MEMORY (COMMIT short of frames; LOOKUP of an uncommitted
        page). Cost: the pages committed, freed or looked up plus the committed pages in the
        range; never the size of the range."""
        cdef uint32_t h, c_op, rights = 0
        cdef uint64_t off, c_size, trimmed
        cdef VmoObject v
        self._ensure_open()
        if _u32(handle, &h) or _u32(op, &c_op) or _u64(offset, &off) or _u64(size, &c_size):
            return _invalid_args((handle, op, offset, size,))
        obj = self._get(h, &rights)
        if obj is None:
            return _st(ERR_BAD_HANDLE)
        if type(obj) is not VmoObject:
            return _st(ERR_WRONG_TYPE)
        v = <VmoObject>obj
        if c_op == OP_COMMIT or c_op == OP_DECOMMIT:
            if not _trim_range(off, c_size, v.size, &trimmed):
                return _st(ERR_OUT_OF_RANGE)
            if trimmed == 0:
                return S_OK
            if c_op == OP_COMMIT:
                return _st(self._commit(v, off >> PAGE_SHIFT, _pages_up(off + trimmed)))
            pt_remove(&v.pt, off >> PAGE_SHIFT, _pages_up(off + trimmed), &self.pool)
            return S_OK
        if c_op == OP_LOOKUP:
            return _st(self._lookup(v, off, c_size, buffer, buffer_size))
        if c_op == OP_LOCK or c_op == OP_UNLOCK:
            return _st(ERR_NOT_SUPPORTED)
        if OP_CACHE_SYNC <= c_op <= OP_CACHE_CLEAN_INVALIDATE:
            if c_size == 0:
                return _st(ERR_INVALID_ARGS)
            if not _in_range(off, c_size, v.size):
                return _st(ERR_OUT_OF_RANGE)
            # Caches are not modelled yet: uncommitted pages are skipped and committed ones
            # need no work, so validation is the whole operation.
            return S_OK
        return _st(ERR_INVALID_ARGS)

    cdef int _lookup(self, VmoObject v, uint64_t off, uint64_t c_size, object buffer,
                     object buffer_size) except -100:
        """LOOKUP (spec 3.6.4) in Magenta's order; entries are native uint64 paddrs."""
        cdef Py_buffer view
        cdef uint64_t bsize, first, end, npages, n, i
        cdef uint32_t e
        cdef uint64_t *out
        cdef uint64_t paddr
        if buffer is None:
            return ERR_INVALID_ARGS
        if _get_buffer(buffer, &view, True):
            return ERR_INVALID_ARGS
        try:
            if buffer_size is None:
                bsize = view.len
            elif _u64(buffer_size, &bsize) or bsize > <uint64_t>view.len:
                return ERR_INVALID_ARGS
            # Wrapping arithmetic, as Magenta computed it before any range check.
            first = off & ~(<uint64_t>PAGE_MASK)
            end = (off + c_size + PAGE_MASK) & ~(<uint64_t>PAGE_MASK)
            npages = (end - first) >> PAGE_SHIFT
            if npages * 8 > bsize:
                return ERR_BUFFER_TOO_SMALL
            if c_size == 0:
                return ERR_INVALID_ARGS
            if not _in_range(off, c_size, v.size):
                return ERR_OUT_OF_RANGE
            first >>= PAGE_SHIFT
            if v.parent is None and ((<uintptr_t>view.buf) & 7) == 0:
                n = pt_lookup(&v.pt, first, first + npages, &self.pool,
                              <uint64_t *>view.buf)
                return NO_ERROR if n == npages else ERR_NO_MEMORY
            for i in range(npages):
                e = _find_page(v, (first + i) << PAGE_SHIFT)
                if e == 0:
                    return ERR_NO_MEMORY
                paddr = pool_paddr(&self.pool, e - 1)
                memcpy(<uint8_t *>view.buf + i * 8, &paddr, 8)
            return NO_ERROR
        finally:
            PyBuffer_Release(&view)

    def vmo_clone(self, handle, options, offset, size):
        """A copy-on-write clone of [offset, offset+size): a live view of the source until a
        page is written. Needs DUPLICATE and READ; the clone's rights are the source's |
        WRITE | EXECUTE | MAP. Returns (status, handle): ERR_BAD_HANDLE, ERR_ACCESS_DENIED,
        ERR_WRONG_TYPE, ERR_INVALID_ARGS (no COPY_ON_WRITE bit, unaligned offset),
        ERR_OUT_OF_RANGE (size > MX_VMO_MAX_SIZE, offset+size wraps), ERR_NO_MEMORY (handle
        table full). O(1)."""
        cdef uint32_t h, c_options, rights = 0
        cdef uint64_t off, c_size
        cdef VmoObject v, child
        self._ensure_open()
        if (_u32(handle, &h) or _u32(options, &c_options) or _u64(offset, &off)
                or _u64(size, &c_size)):
            return (_invalid_args((handle, options, offset, size,)), 0)
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if (rights & (RIGHT_DUPLICATE | RIGHT_READ)) != (RIGHT_DUPLICATE | RIGHT_READ):
            return (_st(ERR_ACCESS_DENIED), 0)
        if type(obj) is not VmoObject:
            return (_st(ERR_WRONG_TYPE), 0)
        if not (c_options & CLONE_COPY_ON_WRITE):
            return (_st(ERR_INVALID_ARGS), 0)
        if c_size > MAX_SIZE:
            return (_st(ERR_OUT_OF_RANGE), 0)
        if off & PAGE_MASK:
            return (_st(ERR_INVALID_ARGS), 0)
        if off > U64_MAX - c_size:
            return (_st(ERR_OUT_OF_RANGE), 0)
        if self.nhandles >= MAX_HANDLES:
            return (_st(ERR_NO_MEMORY), 0)
        v = <VmoObject>obj
        child = self._new_vmo(c_size)
        child.parent = v
        child.parent_offset = off
        v.refs += 1
        return (S_OK, self._install(child, rights | RIGHT_WRITE | RIGHT_EXECUTE | RIGHT_MAP))

    def handle_close(self, handle):
        """Close `handle`; the object goes when its last reference does. Status:
        ERR_BAD_HANDLE (including MX_HANDLE_INVALID). Cost: the pages freed, if any."""
        cdef uint32_t h, rights = 0
        self._ensure_open()
        if _u32(handle, &h):
            return _st(ERR_INVALID_ARGS)
        if self._get(h, &rights) is None:
            return _st(ERR_BAD_HANDLE)
        obj = self._uninstall(h)
        if type(obj) is VmoObject:
            self._unref(<VmoObject>obj)
        return S_OK

    def handle_duplicate(self, handle, rights):
        """A new handle to the same object with `rights` (a subset, or
        MX_RIGHT_SAME_RIGHTS). Returns (status, handle): ERR_BAD_HANDLE, ERR_ACCESS_DENIED
        (no DUPLICATE), ERR_INVALID_ARGS (not a subset), ERR_NO_MEMORY (table full). O(1)."""
        cdef uint32_t h, c_rights, src = 0
        self._ensure_open()
        if _u32(handle, &h) or _u32(rights, &c_rights):
            return (_invalid_args((handle, rights,)), 0)
        obj = self._get(h, &src)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if not (src & RIGHT_DUPLICATE):
            return (_st(ERR_ACCESS_DENIED), 0)
        if c_rights == RIGHT_SAME_RIGHTS:
            c_rights = src
        elif c_rights & ~src:
            return (_st(ERR_INVALID_ARGS), 0)
        if self.nhandles >= MAX_HANDLES:
            return (_st(ERR_NO_MEMORY), 0)
        if type(obj) is VmoObject:
            (<VmoObject>obj).refs += 1
        return (S_OK, self._install(obj, c_rights))

    def handle_replace(self, handle, rights):
        """Replace `handle` by a new one with `rights` (no DUPLICATE right needed). Returns
        (status, handle): ERR_BAD_HANDLE, ERR_INVALID_ARGS (not a subset; the old handle
        stays valid). O(1)."""
        cdef uint32_t h, c_rights, src = 0
        self._ensure_open()
        if _u32(handle, &h) or _u32(rights, &c_rights):
            return (_invalid_args((handle, rights,)), 0)
        obj = self._get(h, &src)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if c_rights == RIGHT_SAME_RIGHTS:
            c_rights = src
        elif c_rights & ~src:
            return (_st(ERR_INVALID_ARGS), 0)
        self._uninstall(h)
        return (S_OK, self._install(obj, c_rights))

    def object_get_info(self, handle, topic):
        """MX_INFO_HANDLE_VALID -> (status, None); MX_INFO_HANDLE_BASIC -> (status,
        HandleBasicInfo); the value is 0 on failure. Status: ERR_BAD_HANDLE; ERR_WRONG_TYPE for the topics of objects
        this kernel has none of (3-13); ERR_NOT_SUPPORTED for other topics. O(1)."""
        cdef uint32_t h, c_topic, rights = 0
        self._ensure_open()
        if _u32(handle, &h) or _u32(topic, &c_topic):
            return (_invalid_args((handle, topic,)), 0)
        if c_topic == 0 or c_topic > INFO_LAST_OBJECT_TOPIC:
            return (_st(ERR_NOT_SUPPORTED), 0)
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if c_topic == INFO_HANDLE_VALID:
            return (S_OK, None)
        if c_topic != INFO_HANDLE_BASIC:
            return (_st(ERR_WRONG_TYPE), 0)
        if type(obj) is VmoObject:
            return (S_OK, HandleBasicInfo((<VmoObject>obj).koid, rights, MX_OBJ_TYPE_VMEM, 0,
                                          MX_OBJ_PROP_WAITABLE))
        return (S_OK, HandleBasicInfo((<EventObject>obj).koid, rights, MX_OBJ_TYPE_EVENT, 0,
                                      MX_OBJ_PROP_WAITABLE))

    def event_create(self, options=0):
        """Create an event (rights DUPLICATE|TRANSFER|READ|WRITE). Returns (status, handle):
        ERR_INVALID_ARGS if options != 0, ERR_NO_MEMORY if the table is full. O(1)."""
        cdef uint32_t c_options
        cdef EventObject ev
        self._ensure_open()
        if _u32(options, &c_options) or c_options != 0:
            return (_st(ERR_INVALID_ARGS), 0)
        if self.nhandles >= MAX_HANDLES:
            return (_st(ERR_NO_MEMORY), 0)
        ev = EventObject.__new__(EventObject)
        ev.koid = self.next_koid
        self.next_koid += 1
        return (S_OK, self._install(ev, MX_DEFAULT_EVENT_RIGHTS))

    def vmo_committed_bytes(self, handle):
        """(status, bytes of the pages this VMO itself holds): ERR_BAD_HANDLE,
        ERR_WRONG_TYPE; no rights needed. O(1)."""
        cdef uint32_t h, rights = 0
        self._ensure_open()
        if _u32(handle, &h):
            return (_st(ERR_INVALID_ARGS), 0)
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), 0)
        if type(obj) is not VmoObject:
            return (_st(ERR_WRONG_TYPE), 0)
        return (S_OK, (<VmoObject>obj).pt.npages << PAGE_SHIFT)

    def stats(self):
        """A dict: total_frames, free_frames, committed_frames, vmos, handles, plus
        memory_base, memory_size and the allocator's zeroing counters. O(1)."""
        self._ensure_open()
        free = pool_free_count(&self.pool)
        return {
            "total_frames": self.pool.nframes,
            "free_frames": free,
            "committed_frames": self.pool.nframes - free,
            "vmos": self.nvmos,
            "handles": self.nhandles,
            "memory_base": self._memory_base,
            "memory_size": self._memory_size,
            "released_runs": self.pool.released_runs,
            "zeroed_frames": self.pool.zeroed_frames,
        }

    # -- test shims (docs/semantics.md; compared with the reference model) ----------------
    def _vmo_pages(self, handle):
        """(status, {page index: paddr}) of the pages the VMO itself holds."""
        cdef uint32_t h, rights = 0
        cdef uint64_t idx = 0, found = 0
        cdef uint32_t e = 0
        self._ensure_open()
        if _u32(handle, &h):
            return (_st(ERR_INVALID_ARGS), {})
        obj = self._get(h, &rights)
        if obj is None:
            return (_st(ERR_BAD_HANDLE), {})
        if type(obj) is not VmoObject:
            return (_st(ERR_WRONG_TYPE), {})
        return (S_OK, _pages_of(<VmoObject>obj, &self.pool))

    def _allocator_state(self):
        """(next fresh frame, [freed frames, bottom of the LIFO stack first])."""
        cdef uint64_t i
        self._ensure_open()
        return (self.pool.next_fresh, [self.pool.stack[i] for i in range(self.pool.stack_len)])

    def _check(self):
        """Walk every structure and raise AssertionError on the first inconsistency: a frame
        both free and held, held twice or beyond the fresh mark; counts that disagree;
        reference counts that do not match handles + children."""
        cdef uint64_t i, nheld = 0
        cdef VmoObject v
        self._ensure_open()
        pool = &self.pool
        assert pool.next_fresh <= pool.nframes, "fresh mark beyond memory"
        assert pool.stack_len <= pool.next_fresh, "more freed frames than ever handed out"
        # Count handle and child references of every object reachable from the table.
        refs = {}
        stack = [self.h_objs[s] for s in range(self.nslots) if self.h_objs[s] is not None]
        for obj in stack:
            refs[id(obj)] = refs.get(id(obj), 0) + 1
        seen = {}
        for obj in stack:
            while obj is not None and id(obj) not in seen:
                seen[id(obj)] = obj
                obj = (<VmoObject>obj).parent if type(obj) is VmoObject else None
        for obj in seen.values():
            if type(obj) is VmoObject and (<VmoObject>obj).parent is not None:
                p = (<VmoObject>obj).parent
                refs[id(p)] = refs.get(id(p), 0) + 1
        handles = len(stack)
        assert handles == self.nhandles, "handle count %d != %d" % (handles, self.nhandles)
        nvmos = 0
        held = set()
        for key, obj in seen.items():
            if type(obj) is not VmoObject:
                continue
            v = <VmoObject>obj
            nvmos += 1
            assert v.alive, "dead VMO reachable"
            assert v.refs == refs[key], "VMO koid %d refs %d != %d" % (v.koid, v.refs, refs[key])
            pages = _pages_of(v, pool)
            assert len(pages) == v.pt.npages, "VMO koid %d page count" % v.koid
            for idx, paddr in pages.items():
                f = (paddr - pool.paddr_base) >> PAGE_SHIFT
                assert idx < _pages_up(v.size), "page %d beyond size of koid %d" % (idx, v.koid)
                assert f < pool.next_fresh, "frame %d beyond the fresh mark" % f
                assert f not in held, "frame %d held twice" % f
                assert bit_test(pool.held, f), "frame %d held but not marked" % f
                held.add(f)
        assert nvmos == self.nvmos, "vmo count %d != %d" % (nvmos, self.nvmos)
        free = set()
        for i in range(pool.stack_len):
            f = pool.stack[i]
            assert f < pool.next_fresh, "freed frame %d beyond the fresh mark" % f
            assert f not in free, "frame %d freed twice" % f
            assert f not in held, "frame %d both free and held" % f
            assert not bit_test(pool.held, f), "free frame %d marked held" % f
            free.add(f)
        assert len(held) + len(free) == pool.next_fresh, "frames lost: %d held + %d free != %d" % (
            len(held), len(free), pool.next_fresh)
        for i in range((pool.nframes + 63) >> 6):
            if i * 64 >= pool.next_fresh:
                break
            nheld += bin(pool.held[i]).count("1")
        assert nheld == len(held), "held bitmap counts %d, tables %d" % (nheld, len(held))
        assert pool_free_count(pool) + len(held) == pool.nframes, "free count"
        return True


cdef dict _pages_of(VmoObject v, frame_pool *pool):
    cdef uint64_t idx = 0, found = 0
    cdef uint32_t e = 0
    pages = {}
    while pt_next(&v.pt, idx, PAGE_LIMIT, &found, &e):
        pages[found] = pool_paddr(pool, e - 1)
        idx = found + 1
    return pages


cdef extern from *:
    """
    #ifdef VMO_DEBUG
    #define VMO_BUILD_DEBUG 1
    #else
    #define VMO_BUILD_DEBUG 0
    #endif
    #if defined(__SANITIZE_ADDRESS__)
    #define VMO_BUILD_ASAN 1
    #else
    #define VMO_BUILD_ASAN 0
    #endif
    #ifdef NDEBUG
    #define VMO_BUILD_ASSERTS 0
    #else
    #define VMO_BUILD_ASSERTS 1
    #endif
    """
    int VMO_BUILD_DEBUG
    int VMO_BUILD_ASAN
    int VMO_BUILD_ASSERTS

#: How this extension was built: VMO_DEBUG=1 (checks and C asserts), VMO_ASAN=1.
BUILD = {"debug": bool(VMO_BUILD_DEBUG), "asan": bool(VMO_BUILD_ASAN),
         "c_asserts": bool(VMO_BUILD_ASSERTS)}
