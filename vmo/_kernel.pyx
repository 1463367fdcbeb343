"""The compiled kernel: Magenta's VMO syscalls over the frame pool and radix page tables.

Every call validates its arguments once, in the order Magenta checks them (spec section 3),
then runs its page walk in C with no Python objects. `vmo._reference` is the executable
spec this module is tested against; docs/semantics.md fixes what the contract leaves open.
"""

cimport cython
from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_FULL, PyBUF_FULL_RO, PyBUF_ND, PyBUF_SIMPLE,
                             PyBuffer_IsContiguous, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_CheckBuffer, PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.list cimport PyList_GET_ITEM
from cpython.number cimport PyNumber_Index
from cpython.object cimport PyObject
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove, memset

from vmo._arena cimport vmo_arena_map, vmo_arena_unmap
from vmo._frames cimport (FRAME_SIZE, NIL, bit_test, frame_pool, pool_destroy,
                          pool_find_run, pool_frame_of, pool_frame_ptr, pool_free_count,
                          pool_give, pool_init, pool_list, pool_mark_dirty, pool_paddr,
                          pool_pin, pool_take, pool_take_run, pool_unpin)
from vmo._pagetable cimport (page_table, pt_count, pt_fill, pt_free_nodes, pt_get,
                             pt_init, pt_lookup, pt_next, pt_remove, pt_set)

from vmo.constants import (MX_DEFAULT_EVENT_RIGHTS, MX_DEFAULT_VMO_RIGHTS,
                           MX_OBJ_PROP_WAITABLE, MX_OBJ_TYPE_EVENT, MX_OBJ_TYPE_VMEM)
from vmo._memmap import memory_map, merge_arenas
from vmo.errors import MxError, Status
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
    ERR_BAD_STATE = -20
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


# Argument conversion happens in signature order, every argument before any status: a
# TypeError (or whatever an __index__ raises) always wins over ERR_INVALID_ARGS, and the first
# bad argument in signature order is the one reported. The out-of-range flags are therefore
# combined with `|`, which (unlike `or`) converts every argument.


cdef uint8_t _EMPTY_VIEW_BYTE = 0


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


cdef bint _holds_objects(const char *fmt) noexcept:
    """True if a struct-module buffer format holds Python object pointers ("O"), outside
    the field names that structured formats put between colons ("T{<u8:n:O:o:}")."""
    cdef bint in_name = False
    if fmt == NULL:
        return False
    while fmt[0] != 0:
        if fmt[0] == 58:  # ":"
            in_name = not in_name
        elif fmt[0] == 79 and not in_name:  # "O"
            return True
        fmt += 1
    return False


cdef int _get_buffer(object obj, Py_buffer *view, bint writable) except -1:
    """Export `obj` as a contiguous byte buffer: 0 on success, 1 if the exporter refuses
    (read-only where it is to be written, non-contiguous: the caller returns
    ERR_INVALID_ARGS), or if it holds Python object pointers (format "O", e.g. a numpy
    object array), in either direction: raw bytes written there would crash the
    interpreter, and the pointers read from there are host addresses that must not reach
    simulated memory. TypeError if `obj` has no buffer protocol."""
    if not PyObject_CheckBuffer(obj):
        raise TypeError("a bytes-like object is required, not %r" % type(obj).__name__)
    # Ask for everything (shape, strides, format) as memoryview() does, then accept only a
    # C-contiguous result: both kernels then accept exactly the same exporters.
    try:
        PyObject_GetBuffer(obj, view, PyBUF_FULL if writable else PyBUF_FULL_RO)
    except Exception:
        return 1
    if not PyBuffer_IsContiguous(view, b'C') or _holds_objects(view.format):
        PyBuffer_Release(view)
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
                # Any layout: only the size matters (a strided view of 0 bytes moves nothing).
                PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO)
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


@cython.final
cdef class PhysView:
    """The exporter behind `Kernel.phys_view`: pins its frames until the last buffer taken
    from it is released (bitarray's `ob_exports` rule: no freeing under a live export)."""

    def __getbuffer__(self, Py_buffer *buf, int flags):
        buf.buf = self.ptr
        buf.len = self.shape[0]
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = NULL
        if flags & PyBUF_FORMAT:
            buf.format = b"B"
        buf.ndim = 1
        buf.shape = self.shape
        buf.strides = self.strides
        buf.suboffsets = NULL
        buf.internal = NULL
        buf.obj = self

    def __releasebuffer__(self, Py_buffer *buf):
        pass

    def __dealloc__(self):
        if self.kernel is not None:
            self.kernel._unpin(self.first, self.count)
            self.kernel = None


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
    address `memory_base`. ``Kernel(memory=[(base, size), ...])``: a board's memory map,
    RAM banks with holes between them, allocated in the order given and ascending inside
    each. Bases and sizes must be page multiples, sizes positive, ranges disjoint, at most
    2**32 - 2 pages in all; else ValueError. A base of 0 is allowed (a PC has RAM at 0).
    Cost: a few mmap reservations, O(1).
    """

    def __cinit__(self):
        self._closed = True
        self.h_rights = NULL
        self.h_gen = NULL
        self.free_slots = NULL
        self.pool.mem = NULL

    def __init__(self, memory_size=None, *, memory_base=None, memory=None):
        if not self._closed or self.pool.mem != NULL:
            raise RuntimeError("Kernel.__init__ called twice")
        ranges = memory_map(memory_size, memory_base, memory)
        self.h_rights = <uint32_t *>vmo_arena_map(MAX_HANDLES * sizeof(uint32_t))
        self.h_gen = <uint16_t *>vmo_arena_map(MAX_HANDLES * sizeof(uint16_t))
        self.free_slots = <uint32_t *>vmo_arena_map(MAX_HANDLES * sizeof(uint32_t))
        if self.h_rights == NULL or self.h_gen == NULL or self.free_slots == NULL:
            self._free_tables()
            raise MemoryError("cannot reserve the handle table")
        try:
            pool_init(&self.pool, [(base, count) for base, _, count in merge_arenas(ranges)])
        except BaseException:
            self._free_tables()
            raise
        self._memory_map = tuple(ranges)
        self._memory_base = ranges[0][0]
        self._memory_size = self.pool.nframes << PAGE_SHIFT
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
        if self.pool.mem != NULL:
            pool_destroy(&self.pool)

    cdef void _teardown(self) noexcept:
        """Destroy every object (iteratively, so long clone chains cannot recurse), then give
        the arena and the tables back to the host; while physical views are alive the arena
        stays mapped and the last view to go releases it (no use-after-free from Python)."""
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
        self._free_tables()
        if self.pool.npinned == 0:
            pool_destroy(&self.pool)

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
    def memory_map(self):
        """The RAM ranges, ((base, size), ...), in allocation order."""
        return self._memory_map

    @property
    def memory_base(self):
        """Physical address of the first frame (of the first range of a memory map)."""
        return self._memory_base

    @property
    def memory_size(self):
        """Bytes of physical memory (all ranges)."""
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
        cdef uint64_t off = offset, depth = 0, n, i
        cdef Py_ssize_t j
        cdef VmoObject level = v
        # The levels that copy the page, and their offsets: C arrays, so no Python object is
        # allocated (and no garbage collection can run) between finding and inserting.
        cdef PyObject *levels_small[16]
        cdef uint64_t offsets_small[16]
        cdef PyObject **levels = levels_small
        cdef uint64_t *offsets = offsets_small
        e = pt_get(&v.pt, offset >> PAGE_SHIFT)
        if e:
            entry[0] = e
            return 0
        # Walk up until an ancestor holds the page (at `depth`) or the chain ends.
        while level.parent is not None and off <= U64_MAX - level.parent_offset:
            off += level.parent_offset
            level = level.parent
            depth += 1
            if off >= level.size:
                break
            e = pt_get(&level.pt, off >> PAGE_SHIFT)
            if e:
                break
        n = depth if e else 1
        if n > 16:
            levels = <PyObject **>malloc(n * sizeof(PyObject *))
            offsets = <uint64_t *>malloc(n * sizeof(uint64_t))
            if levels == NULL or offsets == NULL:
                free(levels)
                free(offsets)
                raise MemoryError("clone chain of depth %d" % n)
        try:
            level = v
            off = offset
            for i in range(n):
                levels[i] = <PyObject *>level
                offsets[i] = off
                if i + 1 < n:
                    off += level.parent_offset
                    level = level.parent
            # Copy into each level, the one nearest the holder first.
            for j in range(<Py_ssize_t>n - 1, -1, -1):
                if pool_free_count(&self.pool) == 0:
                    return ERR_NO_MEMORY
                f = pool_take(&self.pool)
                if e and bit_test(self.pool.dirty, e - 1):
                    memcpy(pool_frame_ptr(&self.pool, f), pool_frame_ptr(&self.pool, e - 1),
                           FRAME_SIZE)
                    pool_mark_dirty(&self.pool, f)
                self._insert(<VmoObject>levels[j], offsets[j] >> PAGE_SHIFT, f)
                e = f + 1
        finally:
            if levels != levels_small:
                free(levels)
                free(offsets)
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

    # -- the C-level API ---------------------------------------------------------------------
    # For other Cython extensions (`from vmo._kernel cimport Kernel`): the same semantics as
    # the syscalls, with C arguments and no Python objects created on the way. Each returns a
    # status (0 or a negative Magenta error); a Python exception only for host failures.
    # The syscall methods below validate their Python arguments and then call these.

    cdef VmoObject _vmo(self, uint32_t handle, uint32_t need, int *status):
        """The VMO behind `handle`, checked in Magenta's order: it exists (ERR_BAD_HANDLE),
        has the rights `need` (ERR_ACCESS_DENIED), is a VMO (ERR_WRONG_TYPE). Raises
        ValueError once the kernel is closed (the C-level API checks through here too)."""
        cdef uint32_t rights = 0
        if self._closed:
            raise ValueError("kernel is closed")
        obj = self._get(handle, &rights)
        if obj is None:
            status[0] = ERR_BAD_HANDLE
            return None
        if (rights & need) != need:
            status[0] = ERR_ACCESS_DENIED
            return None
        if type(obj) is not VmoObject:
            status[0] = ERR_WRONG_TYPE
            return None
        status[0] = NO_ERROR
        return <VmoObject>obj

    cdef int c_get_size(self, uint32_t handle, uint64_t *size) except -1000:
        """vmo_get_size."""
        cdef int status
        cdef VmoObject v = self._vmo(handle, 0, &status)
        if v is not None:
            size[0] = v.size
        return status

    cdef int c_read(self, uint32_t handle, void *dst, uint64_t offset, uint64_t length,
                    uint64_t *actual) except -1000:
        """vmo_read into `dst` (which holds at least `length` bytes)."""
        cdef int status
        cdef uint64_t trimmed, pos, chunk, page_off
        cdef uint32_t e
        cdef uint8_t *out = <uint8_t *>dst
        cdef VmoObject v = self._vmo(handle, RIGHT_READ, &status)
        actual[0] = 0
        if v is None:
            return status
        if not _trim_range(offset, length, v.size, &trimmed):
            return ERR_OUT_OF_RANGE
        pos = offset
        while pos < offset + trimmed:
            page_off = pos & PAGE_MASK
            chunk = FRAME_SIZE - page_off
            if chunk > offset + trimmed - pos:
                chunk = offset + trimmed - pos
            e = _find_page(v, pos)
            if e and bit_test(self.pool.dirty, e - 1):
                memcpy(out, pool_frame_ptr(&self.pool, e - 1) + page_off, chunk)
            else:
                memset(out, 0, chunk)
            out += chunk
            pos += chunk
        actual[0] = trimmed
        return NO_ERROR

    cdef int c_write(self, uint32_t handle, const void *src, uint64_t offset, uint64_t length,
                     uint64_t *actual) except -1000:
        """vmo_write from `src` (which holds at least `length` bytes)."""
        cdef int status
        cdef uint64_t trimmed, pos, chunk, page_off
        cdef uint32_t e
        cdef const uint8_t *inp = <const uint8_t *>src
        cdef VmoObject v = self._vmo(handle, RIGHT_WRITE, &status)
        actual[0] = 0
        if v is None:
            return status
        if not _trim_range(offset, length, v.size, &trimmed):
            return ERR_OUT_OF_RANGE
        pos = offset
        while pos < offset + trimmed:
            page_off = pos & PAGE_MASK
            chunk = FRAME_SIZE - page_off
            if chunk > offset + trimmed - pos:
                chunk = offset + trimmed - pos
            e = pt_get(&v.pt, pos >> PAGE_SHIFT)
            if e == 0:
                if v.parent is None:
                    if pool_free_count(&self.pool) == 0:
                        return ERR_NO_MEMORY
                    e = pool_take(&self.pool)
                    self._insert(v, pos >> PAGE_SHIFT, e)
                    e += 1
                else:
                    status = self._write_fault(v, pos, &e)
                    if status:
                        return status
            pool_mark_dirty(&self.pool, e - 1)
            memcpy(pool_frame_ptr(&self.pool, e - 1) + page_off, inp, chunk)
            inp += chunk
            pos += chunk
        actual[0] = trimmed
        return NO_ERROR

    cdef int c_op_range(self, uint32_t handle, uint32_t op, uint64_t offset, uint64_t size,
                        void *buffer, uint64_t buffer_size) except -1000:
        """vmo_op_range; `buffer` (NULL allowed) holds at least `buffer_size` bytes."""
        cdef int status
        cdef uint64_t trimmed
        cdef VmoObject v = self._vmo(handle, 0, &status)
        if v is None:
            return status
        if op == OP_COMMIT or op == OP_DECOMMIT:
            if not _trim_range(offset, size, v.size, &trimmed):
                return ERR_OUT_OF_RANGE
            if trimmed == 0:
                return NO_ERROR
            if op == OP_COMMIT:
                return self._commit(v, offset >> PAGE_SHIFT, _pages_up(offset + trimmed))
            pt_remove(&v.pt, offset >> PAGE_SHIFT, _pages_up(offset + trimmed), &self.pool)
            return NO_ERROR
        if op == OP_LOOKUP:
            return self._lookup(v, offset, size, <uint8_t *>buffer, buffer_size)
        if op == OP_LOCK or op == OP_UNLOCK:
            return ERR_NOT_SUPPORTED
        if OP_CACHE_SYNC <= op <= OP_CACHE_CLEAN_INVALIDATE:
            if size == 0:
                return ERR_INVALID_ARGS
            if not _in_range(offset, size, v.size):
                return ERR_OUT_OF_RANGE
            # Caches are not modelled yet: uncommitted pages are skipped and committed ones
            # need no work, so validation is the whole operation.
            return NO_ERROR
        return ERR_INVALID_ARGS

    cdef int c_commit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000:
        """COMMIT (vmo_op_range with MX_VMO_OP_COMMIT)."""
        return self.c_op_range(handle, OP_COMMIT, offset, size, NULL, 0)

    cdef int c_decommit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000:
        """DECOMMIT (vmo_op_range with MX_VMO_OP_DECOMMIT)."""
        return self.c_op_range(handle, OP_DECOMMIT, offset, size, NULL, 0)

    cdef int c_lookup(self, uint32_t handle, uint64_t offset, uint64_t size, uint64_t *out,
                      uint64_t max_entries) except -1000:
        """LOOKUP into `out` (room for `max_entries` physical addresses)."""
        return self.c_op_range(handle, OP_LOOKUP, offset, size, out, max_entries * 8)

    cdef int _lookup(self, VmoObject v, uint64_t off, uint64_t c_size, uint8_t *buf,
                     uint64_t bsize) except -1000:
        """LOOKUP (spec 3.6.4) in Magenta's order; entries are native uint64 paddrs."""
        cdef uint64_t first, end, npages, n, i
        cdef uint32_t e
        cdef uint64_t paddr
        if buf == NULL:
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
        if v.parent is None and ((<uintptr_t>buf) & 7) == 0:
            n = pt_lookup(&v.pt, first, first + npages, &self.pool, <uint64_t *>buf)
            return NO_ERROR if n == npages else ERR_NO_MEMORY
        for i in range(npages):
            e = _find_page(v, (first + i) << PAGE_SHIFT)
            if e == 0:
                return ERR_NO_MEMORY
            paddr = pool_paddr(&self.pool, e - 1)
            memcpy(buf + i * 8, &paddr, 8)
        return NO_ERROR

    cdef int _phys_range(self, uint64_t paddr, uint64_t length, uint64_t *first,
                         uint64_t *count) except -1000:
        """Validate a physical range for device access: inside one arena of physical memory
        (ERR_OUT_OF_RANGE) with every page it touches held by a VMO (ERR_BAD_STATE); gives
        its first frame and the number of frames it touches. O(frames)."""
        cdef uint64_t region_end, f, last
        self._ensure_open()
        if not pool_frame_of(&self.pool, paddr, first, &region_end):
            # A zero-length range may sit at the very end of an arena.
            if length == 0 and paddr > 0 and pool_frame_of(&self.pool, paddr - 1, first,
                                                            &region_end):
                if paddr == region_end:
                    count[0] = 0
                    return NO_ERROR
            return ERR_OUT_OF_RANGE
        if length > region_end - paddr:
            return ERR_OUT_OF_RANGE
        if length == 0:
            count[0] = 0
            return NO_ERROR
        last = first[0] + ((paddr + length - 1 - (paddr & ~(<uint64_t>PAGE_MASK))) >> PAGE_SHIFT)
        count[0] = last - first[0] + 1
        for f in range(first[0], last + 1):
            if not bit_test(self.pool.held, f) or bit_test(self.pool.orphan, f):
                return ERR_BAD_STATE
        return NO_ERROR

    cdef int c_phys_read(self, uint64_t paddr, void *dst, uint64_t length) except -1000:
        """Device read of physical memory into `dst`: ERR_OUT_OF_RANGE, ERR_BAD_STATE."""
        cdef uint64_t first = 0, count = 0, f, pos, chunk
        cdef uint8_t *out = <uint8_t *>dst
        cdef int status = self._phys_range(paddr, length, &first, &count)
        if status:
            return status
        pos = paddr
        for f in range(first, first + count):
            chunk = FRAME_SIZE - (pos & PAGE_MASK)
            if chunk > paddr + length - pos:
                chunk = paddr + length - pos
            if bit_test(self.pool.dirty, f):
                memcpy(out, pool_frame_ptr(&self.pool, <uint32_t>f) + (pos & PAGE_MASK), chunk)
            else:
                memset(out, 0, chunk)
            out += chunk
            pos += chunk
        return NO_ERROR

    cdef int c_phys_write(self, uint64_t paddr, const void *src, uint64_t length) except -1000:
        """Device write of `src` to physical memory: ERR_OUT_OF_RANGE, ERR_BAD_STATE."""
        cdef uint64_t first = 0, count = 0, f
        cdef int status = self._phys_range(paddr, length, &first, &count)
        if status:
            return status
        for f in range(first, first + count):
            pool_mark_dirty(&self.pool, <uint32_t>f)
        if length:
            # memmove: `src` may itself be a view of physical memory.
            memmove(pool_frame_ptr(&self.pool, <uint32_t>first) + (paddr & PAGE_MASK), src,
                    length)
        return NO_ERROR

    # -- syscalls ---------------------------------------------------------------------------
    def vmo_create(self, size, options=0):
        """Create a VMO of `size` bytes (byte-granular, nothing committed), default rights
        0x3F. Returns (status, handle): ERR_INVALID_ARGS if options != 0; ERR_NO_MEMORY if
        size > MX_VMO_MAX_SIZE or the handle table is full. O(1)."""
        cdef uint64_t c_size
        cdef uint32_t c_options = 0
        self._ensure_open()
        if _u64(size, &c_size) | _u32(options, &c_options) or c_options != 0:
            return (_st(ERR_INVALID_ARGS), 0)
        if c_size > MAX_SIZE or self.nhandles >= MAX_HANDLES:
            return (_st(ERR_NO_MEMORY), 0)
        return (S_OK, self._install(self._new_vmo(c_size), MX_DEFAULT_VMO_RIGHTS))

    cdef object _transfer(self, object handle, object buffer, object offset, object length,
                          bint write):
        """vmo_read (`write` False: into `buffer`) or vmo_write (from it): the Python
        arguments checked in Magenta's order, then c_read / c_write."""
        cdef uint32_t h
        cdef uint64_t off, n = 0, actual = 0
        cdef int status, held, bad
        cdef Py_buffer view
        self._ensure_open()
        bad = _u32(handle, &h)
        if buffer is not None and not PyObject_CheckBuffer(buffer):
            raise TypeError("a bytes-like object is required, not %r" % type(buffer).__name__)
        bad |= _u64(offset, &off)
        if length is not None:
            bad |= _u64(length, &n)
        if bad:
            return (_st(ERR_INVALID_ARGS), 0)
        if self._vmo(h, RIGHT_WRITE if write else RIGHT_READ, &status) is None:
            return (_st(status), 0)
        # Reading fills the buffer, so it must be writable; writing only reads it.
        held = _export(buffer, &view, not write, length is None, &n)
        if held < 0:
            return (_st(ERR_INVALID_ARGS), 0)
        try:
            if n and self._aliases_memory(<uint8_t *>view.buf, n):
                status = self._transfer_bounced(h, <uint8_t *>view.buf, off, n, &actual,
                                                write)
            elif write:
                status = self.c_write(h, view.buf, off, n, &actual)
            else:
                status = self.c_read(h, view.buf, off, n, &actual)
        finally:
            if held:
                PyBuffer_Release(&view)
        return (_st(status), actual)

    cdef bint _aliases_memory(self, const uint8_t *buf, uint64_t n) noexcept:
        """True if [buf, buf+n) overlaps simulated physical memory (a phys_view passed as
        the buffer of a read or write)."""
        cdef const uint8_t *lo = self.pool.mem
        cdef const uint8_t *hi = lo + (self.pool.nframes << PAGE_SHIFT)
        return lo != NULL and buf < hi and buf + n > lo

    cdef int _transfer_bounced(self, uint32_t h, uint8_t *buf, uint64_t off, uint64_t n,
                               uint64_t *actual, bint write) except -1000:
        """A read or write whose buffer is physical memory itself: through a copy, so the
        result is as if the whole source were copied first (as the reference model does),
        whatever the overlap."""
        cdef int status
        cdef uint8_t *tmp = <uint8_t *>malloc(n)
        if tmp == NULL:
            raise MemoryError("bounce buffer of %d bytes" % n)
        try:
            if write:
                memcpy(tmp, buf, n)
                status = self.c_write(h, tmp, off, n, actual)
            else:
                status = self.c_read(h, tmp, off, n, actual)
                if status == NO_ERROR:
                    memcpy(buf, tmp, actual[0])
        finally:
            free(tmp)
        return status

    def vmo_read(self, handle, buffer, offset, length=None):
        """Read `length` bytes (default: the buffer's size) at `offset` into `buffer`;
        never commits. Returns (status, actual): ERR_BAD_HANDLE, ERR_ACCESS_DENIED (no
        READ), ERR_WRONG_TYPE, ERR_INVALID_ARGS (read-only buffer or length > buffer),
        ERR_OUT_OF_RANGE (offset > size or offset+length wraps). O(length)."""
        return self._transfer(handle, buffer, offset, length, False)

    def vmo_read_bytes(self, handle, offset, length):
        """Read up to `length` bytes at `offset` and return them: (status, bytes), b"" on
        failure. The checks of vmo_read without the buffer ones. O(bytes returned)."""
        cdef uint32_t h
        cdef uint64_t off, n, trimmed = 0, actual = 0
        cdef int status
        cdef VmoObject v
        self._ensure_open()
        if _u32(handle, &h) | _u64(offset, &off) | _u64(length, &n):
            return (_st(ERR_INVALID_ARGS), b"")
        v = self._vmo(h, RIGHT_READ, &status)
        if v is None:
            return (_st(status), b"")
        if not _trim_range(off, n, v.size, &trimmed):
            return (_st(ERR_OUT_OF_RANGE), b"")
        if trimmed > <uint64_t>PY_SSIZE_T_MAX:
            # What bytes(n) raises for such an n.
            raise OverflowError("cannot return %d bytes" % trimmed)
        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>trimmed)
        status = self.c_read(h, PyBytes_AS_STRING(data), off, trimmed, &actual)
        return (_st(status), data) if status == NO_ERROR else (_st(status), b"")

    def vmo_write(self, handle, data, offset, length=None):
        """Write `length` bytes (default: all of `data`) at `offset`, committing the pages it
        touches (copy-on-write in clones). Returns (status, actual): ERR_BAD_HANDLE,
        ERR_ACCESS_DENIED (no WRITE), ERR_WRONG_TYPE, ERR_INVALID_ARGS (length > data),
        ERR_OUT_OF_RANGE, ERR_NO_MEMORY (pages written before it stay). O(length)."""
        return self._transfer(handle, data, offset, length, True)

    def vmo_get_size(self, handle):
        """(status, size in bytes): ERR_BAD_HANDLE, ERR_WRONG_TYPE; no rights needed. O(1)."""
        cdef uint32_t h
        cdef uint64_t size = 0
        cdef int status
        self._ensure_open()
        if _u32(handle, &h):
            return (_st(ERR_INVALID_ARGS), 0)
        status = self.c_get_size(h, &size)
        return (_st(status), size)

    def vmo_set_size(self, handle, size):
        """Resize to `size` bytes; shrinking frees the pages past ceil(size/4096) but keeps
        the stale bytes of the page holding the new end. Status: ERR_BAD_HANDLE,
        ERR_ACCESS_DENIED (no WRITE), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE (> MX_VMO_MAX_SIZE).
        Cost: the pages freed."""
        cdef uint32_t h
        cdef uint64_t c_size
        cdef int status
        cdef VmoObject v
        self._ensure_open()
        if _u32(handle, &h) | _u64(size, &c_size):
            return _st(ERR_INVALID_ARGS)
        v = self._vmo(h, RIGHT_WRITE, &status)
        if v is None:
            return _st(status)
        if c_size > MAX_SIZE:
            return _st(ERR_OUT_OF_RANGE)
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
        cdef uint32_t h, c_op = 0
        cdef uint64_t off, c_size, bsize = 0
        cdef int status, bad, op_bad
        cdef Py_buffer view
        self._ensure_open()
        bad = _u32(handle, &h)
        op_bad = _u32(op, &c_op)
        bad |= op_bad | _u64(offset, &off) | _u64(size, &c_size)
        if not op_bad and c_op == OP_LOOKUP:
            # Only LOOKUP looks at its buffer and buffer_size (docs/semantics.md).
            if buffer is not None and not PyObject_CheckBuffer(buffer):
                raise TypeError("a bytes-like object is required, not %r"
                                % type(buffer).__name__)
            if buffer_size is not None:
                bad |= _u64(buffer_size, &bsize)
        if bad:
            return _st(ERR_INVALID_ARGS)
        if c_op != OP_LOOKUP:
            return _st(self.c_op_range(h, c_op, off, c_size, NULL, 0))
        # LOOKUP: the handle first, then the buffer.
        if self._vmo(h, 0, &status) is None:
            return _st(status)
        if buffer is None or _get_buffer(buffer, &view, True):
            return _st(ERR_INVALID_ARGS)
        try:
            if buffer_size is None:
                bsize = view.len
            elif bsize > <uint64_t>view.len:
                return _st(ERR_INVALID_ARGS)
            return _st(self.c_op_range(h, OP_LOOKUP, off, c_size, view.buf, bsize))
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
        if _u32(handle, &h) | _u32(options, &c_options) | _u64(offset, &off) | _u64(size, &c_size):
            return (_st(ERR_INVALID_ARGS), 0)
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
        if _u32(handle, &h) | _u32(rights, &c_rights):
            return (_st(ERR_INVALID_ARGS), 0)
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
        if _u32(handle, &h) | _u32(rights, &c_rights):
            return (_st(ERR_INVALID_ARGS), 0)
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
        if _u32(handle, &h) | _u32(topic, &c_topic):
            return (_st(ERR_INVALID_ARGS), 0)
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

    def vmo_create_contiguous(self, size, alignment_log2=0):
        """Create a VMO of `size` bytes rounded up to pages, committed at once to one
        physically contiguous run whose address is a multiple of 2**alignment_log2 (0 means
        12). Returns (status, handle): ERR_INVALID_ARGS (size 0, alignment_log2 not 0 and
        below 12, or 64 and above), ERR_NO_MEMORY (no such run, size above MX_VMO_MAX_SIZE,
        handle table full). Spec 3.12 without the resource handle. Cost: the pages, plus the
        search: one probe per held block met before the first fit."""
        cdef uint64_t c_size, count
        cdef uint32_t c_align
        cdef long long first
        cdef uint64_t i
        cdef VmoObject v
        self._ensure_open()
        if _u64(size, &c_size) | _u32(alignment_log2, &c_align):
            return (_st(ERR_INVALID_ARGS), 0)
        if c_size == 0:
            return (_st(ERR_INVALID_ARGS), 0)
        if c_align == 0:
            c_align = PAGE_SHIFT
        if c_align < PAGE_SHIFT or c_align >= 64:
            return (_st(ERR_INVALID_ARGS), 0)
        if c_size > MAX_SIZE or self.nhandles >= MAX_HANDLES:
            return (_st(ERR_NO_MEMORY), 0)
        count = _pages_up(c_size)
        if count > pool_free_count(&self.pool):
            return (_st(ERR_NO_MEMORY), 0)
        first = pool_find_run(&self.pool, count, (<uint64_t>1) << c_align)
        if first < 0:
            return (_st(ERR_NO_MEMORY), 0)
        pool_take_run(&self.pool, <uint64_t>first, count)
        v = self._new_vmo(count << PAGE_SHIFT)
        for i in range(count):
            pt_set(&v.pt, i, <uint32_t>(first + i + 1))
        return (S_OK, self._install(v, MX_DEFAULT_VMO_RIGHTS))

    # -- physical memory access (device models, DMA) ----------------------------------------
    cdef int _phys_args(self, object paddr, object length, uint64_t *c_paddr,
                        uint64_t *c_length) except -1:
        """Convert phys_* arguments, raising MxError: a negative length is ERR_INVALID_ARGS,
        any address or length that cannot lie inside physical memory ERR_OUT_OF_RANGE."""
        self._ensure_open()
        paddr = PyNumber_Index(paddr)
        length = PyNumber_Index(length)
        if length < 0:
            raise MxError(Status.ERR_INVALID_ARGS, "negative length")
        if _u64(paddr, c_paddr) or _u64(length, c_length):
            raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
        return 0

    cdef int _phys_check(self, int status) except -1:
        if status == ERR_OUT_OF_RANGE:
            raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
        if status == ERR_BAD_STATE:
            raise MxError(Status.ERR_BAD_STATE, "a page of the range is not held by any VMO")
        if status:
            raise MxError(_st(status))
        return 0

    def phys_read(self, paddr, length):
        """What a device reads at physical address `paddr`: `length` bytes. Raises
        MxError(ERR_OUT_OF_RANGE) if the range is not inside one RAM range of physical
        memory, ERR_BAD_STATE if a page it touches is not held by some VMO. O(length)."""
        cdef uint64_t c_paddr, c_length
        cdef uint64_t first = 0, count = 0
        self._phys_args(paddr, length, &c_paddr, &c_length)
        # The range first: a huge length is ERR_OUT_OF_RANGE, not a huge allocation.
        self._phys_check(self._phys_range(c_paddr, c_length, &first, &count))
        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>c_length)
        self._phys_check(self.c_phys_read(c_paddr, PyBytes_AS_STRING(data), c_length))
        return data

    def phys_write(self, paddr, data):
        """A device writes `data` (any buffer) at physical address `paddr`; `vmo_read` then
        returns it. Raises MxError(ERR_OUT_OF_RANGE), MxError(ERR_BAD_STATE) as phys_read.
        Returns the number of bytes written. O(len(data))."""
        cdef uint64_t c_paddr, c_length
        cdef Py_buffer view
        self._ensure_open()
        paddr = PyNumber_Index(paddr)
        if not PyObject_CheckBuffer(data):
            raise TypeError("a bytes-like object is required, not %r" % type(data).__name__)
        if _get_buffer(data, &view, False):
            raise MxError(Status.ERR_INVALID_ARGS,
                          "the data is not a contiguous buffer of plain bytes")
        try:
            self._phys_args(paddr, view.len, &c_paddr, &c_length)
            self._phys_check(self.c_phys_write(c_paddr, view.buf, c_length))
            return view.len
        finally:
            PyBuffer_Release(&view)

    def phys_view(self, paddr, length):
        """A writable, zero-copy memoryview of physical memory, as a device sees it. While
        the view (or anything exported from it) lives, its frames are pinned: never handed
        out again, even if their VMO decommits, shrinks or closes meanwhile; they are zeroed
        before reuse. Release with ``view.release()`` or by dropping it. Raises
        MxError(ERR_OUT_OF_RANGE), MxError(ERR_BAD_STATE) as phys_read. O(pages)."""
        cdef uint64_t c_paddr, c_length, first = 0, count = 0, f
        cdef PhysView pv
        self._phys_args(paddr, length, &c_paddr, &c_length)
        if c_length > <uint64_t>PY_SSIZE_T_MAX:
            raise MxError(Status.ERR_OUT_OF_RANGE, "not inside physical memory")
        self._phys_check(self._phys_range(c_paddr, c_length, &first, &count))
        pv = PhysView.__new__(PhysView)
        pv.kernel = self
        pv.first = first
        pv.count = count
        # An empty view still exports a valid (never dereferenced) pointer, as bytearray()
        # does: a null one would read as C's null buffer where a buffer is taken.
        pv.ptr = (pool_frame_ptr(&self.pool, <uint32_t>first) + (c_paddr & PAGE_MASK)
                  if count else &_EMPTY_VIEW_BYTE)
        pv.shape[0] = <Py_ssize_t>c_length
        pv.strides[0] = 1
        for f in range(first, first + count):
            # Whatever the device writes is not seen by the dirty bits: count it written.
            pool_pin(&self.pool, <uint32_t>f)
            pool_mark_dirty(&self.pool, <uint32_t>f)
        return memoryview(pv)

    cdef void _unpin(self, uint64_t first, uint64_t count) noexcept:
        cdef uint64_t f
        for f in range(first, first + count):
            pool_unpin(&self.pool, <uint32_t>f)
        if self._closed and self.pool.npinned == 0 and self.pool.mem != NULL:
            pool_destroy(&self.pool)

    def stats(self):
        """A dict: total_frames, free_frames, committed_frames (not free: held by VMOs or
        pinned by a physical view after their VMO let go), vmos, handles, pinned_frames, plus
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
            "pinned_frames": self.pool.npinned,
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
        """(next fresh frame, [freed frames, bottom of the LIFO list first])."""
        self._ensure_open()
        return (self.pool.next_fresh, pool_list(&self.pool))

    def _check(self):
        """Walk every structure and raise AssertionError on the first inconsistency: a frame
        both free and held, held twice, lost or beyond memory; bitmaps, summaries and counts
        that disagree; reference counts that do not match handles + children; pins."""
        cdef uint64_t i, w, f, nwords, word
        cdef VmoObject v
        self._ensure_open()
        pool = &self.pool
        nwords = (pool.nframes + 63) >> 6
        assert pool.next_fresh <= pool.nframes, "fresh mark beyond memory"
        # Handle and child references of every object reachable from the table.
        refs = {}
        roots = [self.h_objs[s] for s in range(self.nslots) if self.h_objs[s] is not None]
        for obj in roots:
            refs[id(obj)] = refs.get(id(obj), 0) + 1
        seen = {}
        for obj in roots:
            while obj is not None and id(obj) not in seen:
                seen[id(obj)] = obj
                obj = (<VmoObject>obj).parent if type(obj) is VmoObject else None
        for obj in seen.values():
            if type(obj) is VmoObject and (<VmoObject>obj).parent is not None:
                p = (<VmoObject>obj).parent
                refs[id(p)] = refs.get(id(p), 0) + 1
        assert len(roots) == self.nhandles, "handle count %d != %d" % (len(roots), self.nhandles)
        nvmos = 0
        held = set()
        for key, obj in seen.items():
            if type(obj) is not VmoObject:
                continue
            v = <VmoObject>obj
            nvmos += 1
            assert v.alive, "dead VMO reachable"
            assert v.refs == refs[key], "VMO koid %d refs %d != %d" % (v.koid, v.refs, refs[key])
            frames = _frames_of(v)
            assert len(frames) == v.pt.npages, "VMO koid %d page count" % v.koid
            for idx, f in frames.items():
                assert idx < _pages_up(v.size), "page %d beyond size of koid %d" % (idx, v.koid)
                assert f < pool.nframes, "frame %d beyond memory" % f
                assert f not in held, "frame %d held twice" % f
                assert bit_test(pool.held, f), "frame %d held but not marked" % f
                assert not bit_test(pool.orphan, f), "frame %d held and orphaned" % f
                held.add(f)
        assert nvmos == self.nvmos, "vmo count %d != %d" % (nvmos, self.nvmos)
        free = []
        f = pool.head
        while f != NIL:
            free.append(f)
            assert len(free) <= pool.list_len, "freed list longer than its count"
            f = pool.lnext[f]
        assert len(free) == pool.list_len, "freed list length"
        assert len(set(free)) == len(free), "a frame freed twice"
        for f in free:
            assert f < pool.next_fresh, "freed frame %d at or above the fresh mark" % f
            assert f not in held, "frame %d both free and held" % f
            assert not bit_test(pool.held, f), "free frame %d marked held" % f
        orphans = 0
        above = 0
        nheld = 0
        for w in range(nwords):
            word = pool.held[w]
            if word:
                for i in range(64):
                    f = (w << 6) + i
                    if f >= pool.nframes or not (word >> i) & 1:
                        continue
                    nheld += 1
                    if f >= pool.next_fresh:
                        above += 1
                    if bit_test(pool.orphan, f):
                        orphans += 1
                        assert pool.pincount[f], "orphan frame %d has no pin" % f
                    else:
                        assert f in held, "frame %d marked held by nothing" % f
            assert bit_test(pool.anyheld, w) == (word != 0), "anyheld summary of word %d" % w
            assert bit_test(pool.fullheld, w) == (word == <uint64_t>0xFFFFFFFFFFFFFFFFULL), (
                "fullheld summary of word %d" % w)
        assert nheld == len(held) + orphans, "held bitmap %d != %d + %d orphans" % (
            nheld, len(held), orphans)
        assert above == pool.held_above, "held above the mark %d != %d" % (above, pool.held_above)
        assert pool.nfree == (pool.nframes - pool.next_fresh - pool.held_above) + pool.list_len, (
            "free count %d" % pool.nfree)
        assert pool.nfree + nheld == pool.nframes, "frames lost"
        pinned = sum(1 for f in range(pool.nframes) if pool.pincount[f]) if (
            pool.nframes <= 1 << 20) else pool.npinned
        assert pinned == pool.npinned, "pinned count %d != %d" % (pinned, pool.npinned)
        return True


cdef dict _frames_of(VmoObject v):
    """{page index: frame} of the pages v itself holds."""
    cdef uint64_t idx = 0, found = 0
    cdef uint32_t e = 0
    frames = {}
    while pt_next(&v.pt, idx, PAGE_LIMIT, &found, &e):
        frames[found] = e - 1
        idx = found + 1
    return frames


cdef dict _pages_of(VmoObject v, frame_pool *pool):
    """{page index: paddr} of the pages v itself holds."""
    return {idx: pool_paddr(pool, f) for idx, f in _frames_of(v).items()}


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
