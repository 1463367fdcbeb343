"""The syscall layer: `Kernel`, Magenta's VMO syscalls over the object layer.

Each call converts its arguments (in signature order, every one before any status: see
_args.pxd), checks in Magenta's order (docs/magenta.md section 3), validating its handle
once, and calls the object layer (_vmobject, _physmem). The checked cores (`sys_*`) take the
kernel's shared C state and serve both the Python syscalls and their C-level twins (the
`c_*` methods, contract in _kernel.pxd and vmo/api.pxd). `vmo._reference` is the executable
spec this module is tested against; docs/semantics.md fixes what the contract leaves open.

Threads (docs/semantics.md "Threads"): every call reaches its core through a `_c_*` helper
that waits while another thread owns the kernel (`kernel_state.busy`, _state.pxd); a long
call (more than LONG_PAGES pages or LONG_BYTES bytes) owns the kernel itself and runs its
core with the GIL released. The cores and the object layer are nogil C over C structs; a
host allocation failure comes back as HOST_NO_MEMORY and is raised here as MemoryError.

Traces and batches (docs/trace-format.md): inside ``with k.record(path):`` every call appends
a record after its core (`Kernel._rec`, the trace writer); `Kernel.run` and `replay` run
records through the executor (_exec.pxi) with the kernel owned and the GIL released, the
writer then used through its C-only face.
"""

from cpython.buffer cimport (PyBUF_FULL_RO, PyBuffer_Release, PyObject_CheckBuffer,
                             PyObject_GetBuffer)
from cpython.bytearray cimport PyByteArray_CheckExact
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_Check
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.pythread cimport PyThread_allocate_lock, PyThread_free_lock
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, realloc
from libc.stdlib cimport free as c_free
from libc.string cimport memcpy, memset

from vmo._args cimport (arg_buffer, arg_transfer_buffer, arg_u32, arg_u64, status_of,
                        status_table)
from vmo._frames cimport pool_destroy, pool_frame_ptr, pool_free_count, pool_init
from vmo._handles cimport ht_destroy, ht_full, ht_get, ht_init, ht_install, ht_uninstall
from vmo._invariants cimport allocator_state, vmo_pages
from vmo._invariants cimport check as invariants_check
from vmo._object cimport OBJ_VMO, obj_header
from vmo._physmem cimport (phys_pin, phys_range, phys_read, phys_read_bytes, phys_unpin,
                           phys_view_new, phys_write, phys_write_buffer)
from vmo._state cimport (FIRST_KOID, LONG_BYTES, LONG_PAGES, kernel_state, ks_enter,
                         ks_leave, ks_wait, ks_wait_idle)
from vmo._status cimport *
from vmo._trace cimport (BLOCK_MAX_RECORDS, TraceReader, hash64_begin, hash64_end,
                         hash64_update, rec_check, rec_problem, rec_uses_side, trace_header,
                         trace_writer, tw_close, tw_open, tw_put, tw_put_c, tw_raise, tw_side,
                         tw_side_c)
from vmo._tracerec cimport *
from vmo._vmobject cimport (event_new, obj_unref, trim_range, vm_object, vmo_cache_op,
                            vmo_commit, vmo_decommit, vmo_find_page, vmo_lookup, vmo_new,
                            vmo_new_contiguous, vmo_release_all, vmo_release_cost,
                            vmo_resize, vmo_transfer)

import gc
from operator import index as operator_index
from os import fspath as os_fspath
from time import perf_counter

from vmo._memmap import memory_map, merge_arenas
from vmo.errors import MxError, Status
from vmo.records import CALL_NAMES, BatchResult, HandleBasicInfo, Mismatch, ReplayResult

cdef list _STATUS = status_table()
cdef object S_OK = Status.NO_ERROR


cdef object _host_error():
    raise MemoryError("the host refused an allocation")


cdef inline object _st(int code):
    """The `Status` member of a status from the C layers; HOST_NO_MEMORY raises MemoryError."""
    if code == HOST_NO_MEMORY:
        return _host_error()
    return status_of(_STATUS, code)


cdef inline int _host(int code) except -1000:
    """A c_* method's status: HOST_NO_MEMORY raises MemoryError, any other passes through."""
    if code == HOST_NO_MEMORY:
        _host_error()
    return code


cdef inline int _open(Kernel k) except -1:
    """Every call on a closed kernel raises ValueError (docs/api.md), the C-level API too."""
    if k.ks.closed:
        raise ValueError("kernel is closed")
    return 0


cdef kernel_state *_open_state_slow(Kernel k) except NULL:
    if k.ks.closed:
        raise ValueError("kernel is closed")
    ks_wait(&k.ks)
    return &k.ks


cdef inline kernel_state *_open_state(Kernel k) except NULL:
    """The kernel's state, for a c_* method: ValueError once the kernel is closed; waits
    while another thread owns it (_state.pxd)."""
    if k.ks.closed or k.ks.busy:
        return _open_state_slow(k)
    return &k.ks


cdef void _teardown(kernel_state *ks) noexcept:
    """Destroy every object (iteratively, so long clone chains cannot recurse), then give
    the arena and the tables back to the host; while physical views are alive the arena
    stays mapped and the last view to go releases it (no use-after-free from Python). With
    many pages committed, the objects are destroyed while owning the kernel, GIL released."""
    ks_wait_idle(ks)
    if ks.closed:
        return
    if ks.pool.nframes - pool_free_count(&ks.pool) > LONG_PAGES and ks.gate != NULL:
        ks_enter(ks)        # cannot raise: the kernel is idle and open
        ks.closed = True
        with nogil:
            vmo_release_all(ks)
        ks_leave(ks)
    else:
        ks.closed = True
        vmo_release_all(ks)
    ht_destroy(&ks.handles)
    if ks.pool.npinned == 0:
        pool_destroy(&ks.pool)


# -- the checked cores ------------------------------------------------------------------------
cdef inline vm_object *_vmo(kernel_state *ks, uint32_t handle, uint32_t need,
                            uint32_t *rights, int *status) noexcept nogil:
    """The one handle check of a VMO call, in Magenta's order: the handle exists
    (ERR_BAD_HANDLE), has the rights `need` (ERR_ACCESS_DENIED), is a VMO (ERR_WRONG_TYPE).
    Gives the VMO and the handle's rights, or NULL and the status. The pointer is borrowed:
    valid until the kernel's state next changes (never keep it across Python code)."""
    cdef obj_header *p = ht_get(&ks.handles, handle, rights)
    if p == NULL:
        status[0] = ERR_BAD_HANDLE
        return NULL
    if (rights[0] & need) != need:
        status[0] = ERR_ACCESS_DENIED
        return NULL
    if p.type != OBJ_VMO:
        status[0] = ERR_WRONG_TYPE
        return NULL
    status[0] = NO_ERROR
    return <vm_object *>p


include "_syscalls.pxi"
include "_exec.pxi"


# -- the calls: each sys_* core behind the kernel's ownership protocol ------------------------
# Every Python syscall and c_* method reaches its core through one of these, right after its
# last Python-level step (argument conversion, buffer export), so no Python code runs
# between the busy check and the end of the work (_state.pxd, docs/semantics.md "Threads").
# A short call pays one load and a branch; a long one (above LONG_PAGES / LONG_BYTES) owns
# the kernel and runs its core with the GIL released.

cdef int _wait(kernel_state *ks) except -1:
    """The slow path of every busy check, out of line so the hot paths stay small."""
    return ks_wait(ks)


cdef inline int _idle(kernel_state *ks) except -1:
    if ks.busy:
        _wait(ks)
    return 0


cdef int _long_op_range(kernel_state *ks, uint32_t handle, uint32_t op, uint64_t offset,
                        uint64_t size, void *buffer, uint64_t buffer_size) except -1000:
    cdef int status
    ks_enter(ks)
    with nogil:
        status = sys_op_range(ks, handle, op, offset, size, buffer, buffer_size)
    ks_leave(ks)
    return _host(status)


cdef inline int _c_op_range(kernel_state *ks, uint32_t handle, uint32_t op, uint64_t offset,
                            uint64_t size, void *buffer, uint64_t buffer_size) except -1000:
    if ks.busy:
        _wait(ks)
    if size > LONG_PAGES * PAGE_SIZE and (op == MX_VMO_OP_COMMIT or op == MX_VMO_OP_DECOMMIT
                                          or op == MX_VMO_OP_LOOKUP):
        return _long_op_range(ks, handle, op, offset, size, buffer, buffer_size)
    return _host(sys_op_range(ks, handle, op, offset, size, buffer, buffer_size))


cdef inline int _c_lookup(kernel_state *ks, uint32_t handle, uint64_t offset, uint64_t size,
                          void *buffer, uint64_t buffer_size) except -1000:
    """sys_op_range's LOOKUP, inlined by hand on the short path (the Python LOOKUP, after its
    buffer export: the handle is looked up again)."""
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v
    if ks.busy:
        _wait(ks)
    if size > LONG_PAGES * PAGE_SIZE:
        return _long_op_range(ks, handle, MX_VMO_OP_LOOKUP, offset, size, buffer, buffer_size)
    v = _vmo(ks, handle, 0, &rights, &status)
    if v == NULL:
        return status
    return vmo_lookup(ks, v, offset, size, <uint8_t *>buffer, buffer_size)


cdef int _long_transfer(kernel_state *ks, uint32_t handle, uint8_t *buf, uint64_t offset,
                        uint64_t length, uint64_t *actual, bint write) except -1000:
    cdef int status
    ks_enter(ks)
    with nogil:
        status = sys_transfer(ks, handle, buf, offset, length, actual, write)
    ks_leave(ks)
    return _host(status)


cdef inline int _c_transfer(kernel_state *ks, uint32_t handle, uint8_t *buf, uint64_t offset,
                            uint64_t length, uint64_t *actual, bint write) except -1000:
    # sys_transfer, inlined by hand on the short path (the hot path of vmo_read/vmo_write).
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v
    if ks.busy:
        _wait(ks)
    if length > LONG_BYTES:
        return _long_transfer(ks, handle, buf, offset, length, actual, write)
    v = _vmo(ks, handle, MX_RIGHT_WRITE if write else MX_RIGHT_READ, &rights, &status)
    actual[0] = 0
    if v == NULL:
        return status
    return _host(vmo_transfer(ks, v, buf, offset, length, actual, write))


cdef int _c_set_size(kernel_state *ks, uint32_t handle, uint64_t size) except -1000:
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v
    if ks.busy:
        _wait(ks)
    v = _vmo(ks, handle, MX_RIGHT_WRITE, &rights, &status)
    if v != NULL and size < v.size and v.pt.npages > LONG_PAGES:
        ks_enter(ks)
        with nogil:
            status = sys_set_size(ks, handle, size)
        ks_leave(ks)
        return _host(status)
    return _host(sys_set_size(ks, handle, size))


cdef int _c_handle_close(kernel_state *ks, uint32_t handle) except -1000:
    cdef uint32_t rights
    cdef int status
    cdef obj_header *p
    if ks.busy:
        _wait(ks)
    p = ht_get(&ks.handles, handle, &rights)
    if p != NULL and p.type == OBJ_VMO and vmo_release_cost(<vm_object *>p) > LONG_PAGES:
        ks_enter(ks)
        with nogil:
            status = sys_handle_close(ks, handle)
        ks_leave(ks)
        return _host(status)
    return _host(sys_handle_close(ks, handle))


cdef int _c_create_contiguous(kernel_state *ks, uint64_t size, uint32_t align,
                              uint32_t *out) except -1000:
    cdef int status
    if ks.busy:
        _wait(ks)
    if size > LONG_PAGES * PAGE_SIZE:
        ks_enter(ks)
        with nogil:
            status = sys_create_contiguous(ks, size, align, out)
        ks_leave(ks)
        return _host(status)
    return _host(sys_create_contiguous(ks, size, align, out))


cdef int _c_phys_read(kernel_state *ks, uint64_t paddr, void *dst,
                      uint64_t length) except -1000:
    cdef int status
    if ks.busy:
        _wait(ks)
    if length > LONG_BYTES:
        ks_enter(ks)
        with nogil:
            status = phys_read(ks, paddr, dst, length)
        ks_leave(ks)
        return status
    return phys_read(ks, paddr, dst, length)


cdef int _c_phys_write(kernel_state *ks, uint64_t paddr, const void *src,
                       uint64_t length) except -1000:
    cdef int status
    if ks.busy:
        _wait(ks)
    if length > LONG_BYTES:
        ks_enter(ks)
        with nogil:
            status = phys_write(ks, paddr, src, length)
        ks_leave(ks)
        return status
    return phys_write(ks, paddr, src, length)


cdef object _walk_begin(kernel_state *ks):
    """Before a test shim walks the state building Python objects: wait for any owner, and
    switch the garbage collector off so no finalizer (no other thread) runs mid-walk.
    Returns whether it was on."""
    _idle(ks)
    was = gc.isenabled()
    gc.disable()
    return was


cdef void _walk_end(object was) noexcept:
    if was:
        gc.enable()


# -- recording (docs/trace-format.md): one test of `k._rec` per call when not recording -----
# The writer is kernel state too: a batch run under record() appends to it without the GIL
# while it owns the kernel, so every append made with the GIL follows a busy check with no
# Python code in between (right after a call's core, or after `_rec_idle`).
cdef inline int _rec_idle(Kernel k) except -1:
    """Before an append that does not follow a call's core directly: wait for any owner."""
    if k.ks.busy:
        ks_wait_idle(&k.ks)
    return 0


cdef inline int _rec_bad_args(Kernel k, uint8_t call) except -1:
    """Record a call refused for an integer outside its C type (ERR_INVALID_ARGS)."""
    if k._rec != NULL:
        _rec_idle(k)
        if k._rec != NULL:
            tw_put(k._rec, call, ERR_INVALID_ARGS, REC_ARG_RANGE, 0, 0, 0, 0, 0, 0)
    return 0


cdef inline uint64_t _lookup_hash(const vm_object *v, const uint8_t *buf, uint64_t offset,
                                  uint64_t size, int status) noexcept nogil:
    """A LOOKUP record's value: hash64 of the entries the call wrote."""
    if status != NO_ERROR and status != ERR_NO_MEMORY:
        return 0
    return hash64(buf, lookup_written(v, offset, size, status) * 8)


cdef uint64_t _sessions = 0


cdef void _view_released(object owner, uint64_t session, uint64_t number, uint64_t paddr,
                         const uint8_t *ptr, uint64_t length) noexcept:
    """A recorded view goes: its bytes (what the device wrote) into the recording. Called
    with the kernel idle (PhysView waits for any owner first)."""
    cdef Kernel k = <Kernel>owner
    cdef uint64_t off = 0
    if k._rec == NULL or k._rec.session != session:
        return
    try:
        tw_side(k._rec, ptr, length, &off)
        tw_put(k._rec, CALL_PHYS_VIEW_RELEASE, NO_ERROR, 0, 0, 0, paddr, length, off, number)
    except BaseException:
        pass


cdef int _phys_arg_flags(object paddr, object length, uint64_t *a, uint64_t *b) except -1:
    """A failed phys_* call's arguments: 1 (ARG_RANGE) when one is outside uint64 (a
    negative length included), else 0 with a and b."""
    try:
        paddr = operator_index(paddr)
        length = operator_index(length)
    except TypeError:
        return -1
    return 1 if (length < 0 or arg_u64(paddr, a) or arg_u64(length, b)) else 0


cdef class _Recording:
    """The context manager of `Kernel.record(path)`."""
    cdef Kernel k
    cdef object path

    def __enter__(self):
        global _sessions
        cdef Kernel k = self.k
        _check_recordable(k)
        f = open(self.path, "wb")
        try:
            _sessions += 1
            _check_recordable(k)        # opening the file may have let other threads run
            k._rec = tw_open(f.fileno(), trace_header(k._memory_map), _sessions)
        except BaseException:
            f.close()
            raise
        k._rec_file = f
        return self

    def __exit__(self, *exc):
        cdef Kernel k = self.k
        cdef trace_writer *w
        _rec_idle(k)            # a batch may be appending to the writer without the GIL
        w = k._rec
        f = k._rec_file
        k._rec = NULL
        k._rec_file = None
        if w == NULL:
            return False
        try:
            tw_close(w, True)
        finally:
            f.close()
        return False


cdef int _check_recordable(Kernel k) except -1:
    if k.ks.closed:
        raise ValueError("kernel is closed")
    _idle(&k.ks)
    if k._rec != NULL:
        raise ValueError("this kernel is already recording")
    if (k.ks.next_koid != FIRST_KOID or k.ks.pool.next_fresh != 0
            or k.ks.pool.held_above != 0 or k.ks.handles.count != 0):
        raise ValueError("a recording starts from a kernel in its initial state (a replay "
                         "starts from a fresh kernel): this one has already created objects "
                         "or handed out frames")
    return 0


# -- argument conversion shared by a syscall and its floor ------------------------------------
cdef inline int _transfer_args(object handle, object buffer, object offset, object length,
                               uint32_t *h, uint64_t *off, uint64_t *n) except -1:
    """vmo_read / vmo_write arguments in signature order: 1 means ERR_INVALID_ARGS."""
    cdef int bad = arg_u32(handle, h)
    if buffer is not None and not PyObject_CheckBuffer(buffer):
        raise TypeError("a bytes-like object is required, not %r" % type(buffer).__name__)
    bad |= arg_u64(offset, off)
    if length is not None:
        bad |= arg_u64(length, n)
    return bad


cdef inline int _op_range_args(object handle, object op, object offset, object size,
                               object buffer, object buffer_size, uint32_t *h, uint32_t *c_op,
                               uint64_t *off, uint64_t *c_size, uint64_t *bsize) except -1:
    """vmo_op_range arguments in signature order: 1 means ERR_INVALID_ARGS. Only LOOKUP
    looks at its buffer and buffer_size (docs/semantics.md)."""
    cdef int bad = arg_u32(handle, h)
    cdef int op_bad = arg_u32(op, c_op)
    bad |= op_bad | arg_u64(offset, off) | arg_u64(size, c_size)
    if not op_bad and c_op[0] == MX_VMO_OP_LOOKUP:
        if buffer is not None and not PyObject_CheckBuffer(buffer):
            raise TypeError("a bytes-like object is required, not %r" % type(buffer).__name__)
        if buffer_size is not None:
            bad |= arg_u64(buffer_size, bsize)
    return bad


cdef inline int _lookup_buffer(object buffer, object buffer_size, Py_buffer *view,
                               uint64_t *bsize) except -1:
    """Export LOOKUP's buffer (writable): 0 with a view held, 1 for ERR_INVALID_ARGS."""
    if buffer is None or arg_buffer(buffer, view, True):
        return 1
    if buffer_size is None:
        bsize[0] = view.len
    elif bsize[0] > <uint64_t>view.len:
        PyBuffer_Release(view)
        return 1
    return 0


cdef object _transfer(Kernel k, object handle, object buffer, object offset, object length,
                      bint write):
    """vmo_read (`write` False: into `buffer`) or vmo_write (from it): the arguments, the
    handle once, then the buffer, then the object layer."""
    cdef uint32_t h, rights
    cdef uint64_t off, n = 0, actual = 0
    cdef int status, held
    cdef Py_buffer view
    cdef vm_object *v
    cdef bint exact
    _open(k)
    if _transfer_args(handle, buffer, offset, length, &h, &off, &n):
        _rec_bad_args(k, CALL_VMO_WRITE if write else CALL_VMO_READ)
        return (_st(ERR_INVALID_ARGS), 0)
    if k._rec != NULL:
        return _rec_transfer(k, h, buffer, off, n, length is None, write)
    _idle(&k.ks)
    v = _vmo(&k.ks, h, MX_RIGHT_WRITE if write else MX_RIGHT_READ, &rights, &status)
    if v == NULL:
        return (_st(status), 0)
    # Reading fills the buffer, so it must be writable; writing only reads it. Exporting it
    # may run Python code (a Python-level exporter), so the handle is looked up again
    # afterwards (by _c_transfer), except after the export of a bytearray, bytes or
    # memoryview (which never calls back into the object it views), which runs none: then
    # `v` is still valid and the kernel still not busy (the GIL was held throughout).
    exact = (PyByteArray_CheckExact(buffer) or PyBytes_CheckExact(buffer)
             or PyMemoryView_Check(buffer))
    held = arg_transfer_buffer(buffer, &view, not write, length is None, &n)
    if held < 0:
        return (_st(ERR_INVALID_ARGS), 0)
    try:
        if exact and n <= LONG_BYTES:
            status = _host(vmo_transfer(&k.ks, v, <uint8_t *>view.buf, off, n, &actual, write))
        else:
            status = _c_transfer(&k.ks, h, <uint8_t *>view.buf, off, n, &actual, write)
    finally:
        if held:
            PyBuffer_Release(&view)
    return (_st(status), actual)


cdef object _rec_transfer(Kernel k, uint32_t h, object buffer, uint64_t off, uint64_t n,
                          bint default_length, bint write):
    """_transfer while recording (docs/trace-format.md "Buffers"): the buffer is looked at
    first, whatever the call then answers, so that the record says what it was (NULL_BUFFER,
    BAD_BUFFER) and a write keeps its bytes (copied before the call: they may be RAM)."""
    cdef uint32_t rights
    cdef uint64_t actual = 0, side = 0
    cdef uint16_t flags = 0
    cdef int status
    cdef Py_buffer view
    cdef int held = arg_transfer_buffer(buffer, &view, not write, default_length, &n)
    try:
        # The export may have run Python code: wait for any owner, then no Python code
        # until the record is put.
        _idle(&k.ks)
        if buffer is None:
            flags = REC_NULL_BUFFER
        elif held < 0:
            flags = REC_BAD_BUFFER
        elif write:
            tw_side(k._rec, view.buf, n if held else 0, &side)
        if _vmo(&k.ks, h, MX_RIGHT_WRITE if write else MX_RIGHT_READ, &rights,
                &status) != NULL:
            if held < 0:
                status = ERR_INVALID_ARGS
            else:
                status = _c_transfer(&k.ks, h, <uint8_t *>view.buf, off, n, &actual, write)
        tw_put(k._rec, CALL_VMO_WRITE if write else CALL_VMO_READ, status, flags, h, 0, off,
               n, side if write else (hash64(<uint8_t *>view.buf, actual) if status == 0
                                      else 0), actual)
    finally:
        if held > 0:
            PyBuffer_Release(&view)
    return (_st(status), actual)


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
        self._rec = NULL
        self.ks.closed = True
        self.ks.busy = False
        self.ks.pool.mem = NULL
        self.ks.handles.objs = NULL
        self.ks.gate = PyThread_allocate_lock()
        if self.ks.gate == NULL:
            raise MemoryError("cannot allocate the kernel's lock")

    def __init__(self, memory_size=None, *, memory_base=None, memory=None):
        if not self.ks.closed or self.ks.pool.mem != NULL:
            raise RuntimeError("Kernel.__init__ called twice")
        ranges = memory_map(memory_size, memory_base, memory)
        ht_init(&self.ks.handles)
        try:
            pool_init(&self.ks.pool, [(base, count) for base, _, count in merge_arenas(ranges)])
        except BaseException:
            ht_destroy(&self.ks.handles)
            raise
        self._memory_map = tuple(ranges)
        self._memory_base = ranges[0][0]
        self._memory_size = self.ks.pool.nframes << PAGE_SHIFT
        self.ks.next_koid = FIRST_KOID
        self.ks.nvmos = 0
        self.ks.closed = False

    def __dealloc__(self):
        if self._rec != NULL:
            try:
                tw_close(self._rec, True)
            except BaseException:
                pass
            self._rec = NULL
        if not self.ks.closed:
            _teardown(&self.ks)
        if self.ks.pool.mem != NULL:
            pool_destroy(&self.ks.pool)
        if self.ks.gate != NULL:
            PyThread_free_lock(self.ks.gate)
            self.ks.gate = NULL

    def close(self):
        """Close every handle and release the arena back to the host. Idempotent; any other
        call afterwards raises ValueError. Waits for a call running in another thread.
        Cost: the pages still committed."""
        if not self.ks.closed:
            _teardown(&self.ks)

    @property
    def closed(self):
        """True once `close()` has run."""
        return self.ks.closed

    @property
    def _busy(self):
        """True while a thread owns the kernel: a long call running without the GIL (a test
        instrument: docs/semantics.md "Threads")."""
        return bool(self.ks.busy)

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

    # -- syscalls ---------------------------------------------------------------------------
    def vmo_create(self, size, options=0):
        """Create a VMO of `size` bytes (byte-granular, nothing committed), default rights
        0x3F. Returns (status, handle): ERR_INVALID_ARGS if options != 0; ERR_NO_MEMORY if
        size > MX_VMO_MAX_SIZE or the handle table is full. O(1)."""
        cdef uint64_t c_size = 0
        cdef uint32_t c_options = 0, out = 0
        cdef int status
        _open(self)
        if arg_u64(size, &c_size) | arg_u32(options, &c_options):
            _rec_bad_args(self, CALL_VMO_CREATE)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = _host(sys_create(&self.ks, c_size, c_options, &out))
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_CREATE, status, 0, 0, c_options, c_size, 0, 0, out)
        return (_st(status), out)

    def vmo_read(self, handle, buffer, offset, length=None):
        """Read `length` bytes (default: the buffer's size) at `offset` into `buffer`;
        never commits. Returns (status, actual): ERR_BAD_HANDLE, ERR_ACCESS_DENIED (no
        READ), ERR_WRONG_TYPE, ERR_INVALID_ARGS (read-only buffer or length > buffer),
        ERR_OUT_OF_RANGE (offset > size or offset+length wraps). O(length)."""
        return _transfer(self, handle, buffer, offset, length, False)

    def vmo_read_bytes(self, handle, offset, length):
        """Read up to `length` bytes at `offset` and return them: (status, bytes), b"" on
        failure. The checks of vmo_read without the buffer ones. O(bytes returned)."""
        cdef uint32_t h, rights
        cdef uint64_t off = 0, n = 0, trimmed = 0, actual = 0
        cdef int status
        cdef vm_object *v
        _open(self)
        if arg_u32(handle, &h) | arg_u64(offset, &off) | arg_u64(length, &n):
            _rec_bad_args(self, CALL_VMO_READ_BYTES)
            return (_st(ERR_INVALID_ARGS), b"")
        _idle(&self.ks)
        v = _vmo(&self.ks, h, MX_RIGHT_READ, &rights, &status)
        if v == NULL:
            if self._rec != NULL:
                tw_put(self._rec, CALL_VMO_READ_BYTES, status, 0, h, 0, off, n, 0, 0)
            return (_st(status), b"")
        if not trim_range(off, n, v.size, &trimmed):
            if self._rec != NULL:
                tw_put(self._rec, CALL_VMO_READ_BYTES, ERR_OUT_OF_RANGE, 0, h, 0, off, n, 0, 0)
            return (_st(ERR_OUT_OF_RANGE), b"")
        if trimmed > <uint64_t>PY_SSIZE_T_MAX:
            # What bytes(n) raises for such an n.
            raise OverflowError("cannot return %d bytes" % trimmed)
        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>trimmed)
        # The handle again (`v` is not kept across the allocation).
        status = _c_transfer(&self.ks, h, <uint8_t *>PyBytes_AS_STRING(data), off, trimmed,
                             &actual, False)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_READ_BYTES, status, 0, h, 0, off, n,
                   hash64(<uint8_t *>PyBytes_AS_STRING(data), actual), actual)
        return (_st(status), data) if status == NO_ERROR else (_st(status), b"")

    def vmo_write(self, handle, data, offset, length=None):
        """Write `length` bytes (default: all of `data`) at `offset`, committing the pages it
        touches (copy-on-write in clones). Returns (status, actual): ERR_BAD_HANDLE,
        ERR_ACCESS_DENIED (no WRITE), ERR_WRONG_TYPE, ERR_INVALID_ARGS (length > data),
        ERR_OUT_OF_RANGE, ERR_NO_MEMORY (pages written before it stay). O(length)."""
        return _transfer(self, handle, data, offset, length, True)

    def vmo_get_size(self, handle):
        """(status, size in bytes): ERR_BAD_HANDLE, ERR_WRONG_TYPE; no rights needed. O(1)."""
        cdef uint32_t h
        cdef uint64_t size = 0
        cdef int status
        _open(self)
        if arg_u32(handle, &h):
            _rec_bad_args(self, CALL_VMO_GET_SIZE)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = sys_get_size(&self.ks, h, &size)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_GET_SIZE, status, 0, h, 0, 0, 0, 0, size)
        return (_st(status), size)

    def vmo_set_size(self, handle, size):
        """Resize to `size` bytes; shrinking frees the pages past ceil(size/4096) but keeps
        the stale bytes of the page holding the new end. Status: ERR_BAD_HANDLE,
        ERR_ACCESS_DENIED (no WRITE), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE (> MX_VMO_MAX_SIZE).
        Cost: the pages freed."""
        cdef uint32_t h
        cdef uint64_t c_size
        cdef int status
        _open(self)
        if arg_u32(handle, &h) | arg_u64(size, &c_size):
            _rec_bad_args(self, CALL_VMO_SET_SIZE)
            return _st(ERR_INVALID_ARGS)
        status = _c_set_size(&self.ks, h, c_size)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_SET_SIZE, status, 0, h, 0, c_size, 0, 0, 0)
        return _st(status)

    def vmo_op_range(self, handle, op, offset, size, buffer=None, buffer_size=None):
        """COMMIT, DECOMMIT, LOCK, UNLOCK, LOOKUP and the cache ops over [offset,
        offset+size) (docs/magenta.md 3.6; no rights checked). Status: ERR_BAD_HANDLE,
        ERR_WRONG_TYPE, ERR_INVALID_ARGS (unknown op, LOOKUP without a writable buffer, size
        0 for LOOKUP or a cache op), ERR_NOT_SUPPORTED (LOCK/UNLOCK), ERR_BUFFER_TOO_SMALL
        (LOOKUP), ERR_OUT_OF_RANGE, ERR_NO_MEMORY (COMMIT short of frames; LOOKUP of an
        uncommitted page). Cost: the pages committed, freed or looked up plus the committed
        pages in the range; never the size of the range."""
        cdef uint32_t h, c_op = 0, rights
        cdef uint64_t off, c_size, bsize = 0
        cdef int status
        cdef Py_buffer view
        _open(self)
        if _op_range_args(handle, op, offset, size, buffer, buffer_size, &h, &c_op, &off,
                          &c_size, &bsize):
            _rec_bad_args(self, CALL_VMO_OP_RANGE)
            return _st(ERR_INVALID_ARGS)
        if c_op != MX_VMO_OP_LOOKUP:
            status = _c_op_range(&self.ks, h, c_op, off, c_size, NULL, 0)
            if self._rec != NULL:
                tw_put(self._rec, CALL_VMO_OP_RANGE, status, 0, h, c_op, off, c_size, 0, 0)
            return _st(status)
        if self._rec != NULL:
            return _st(_rec_lookup(self, h, off, c_size, buffer, buffer_size, bsize))
        # LOOKUP: the handle first, then the buffer (exporting it may run Python code, so
        # _c_lookup looks the handle up again).
        _idle(&self.ks)
        if _vmo(&self.ks, h, 0, &rights, &status) == NULL:
            return _st(status)
        if _lookup_buffer(buffer, buffer_size, &view, &bsize):
            return _st(ERR_INVALID_ARGS)
        try:
            return _st(_c_lookup(&self.ks, h, off, c_size, view.buf, bsize))
        finally:
            PyBuffer_Release(&view)

    def vmo_clone(self, handle, options, offset, size):
        """A copy-on-write clone of [offset, offset+size): a live view of the source until a
        page is written. Needs DUPLICATE and READ; the clone's rights are the source's |
        WRITE | EXECUTE | MAP. Returns (status, handle): ERR_BAD_HANDLE, ERR_ACCESS_DENIED,
        ERR_WRONG_TYPE, ERR_INVALID_ARGS (no COPY_ON_WRITE bit, unaligned offset),
        ERR_OUT_OF_RANGE (size > MX_VMO_MAX_SIZE, offset+size wraps), ERR_NO_MEMORY (handle
        table full). O(1)."""
        cdef uint32_t h, c_options, out = 0
        cdef uint64_t off = 0, c_size = 0
        cdef int status
        _open(self)
        if (arg_u32(handle, &h) | arg_u32(options, &c_options) | arg_u64(offset, &off)
                | arg_u64(size, &c_size)):
            _rec_bad_args(self, CALL_VMO_CLONE)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = _host(sys_clone(&self.ks, h, c_options, off, c_size, &out))
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_CLONE, status, 0, h, c_options, off, c_size, 0, out)
        return (_st(status), out)

    def handle_close(self, handle):
        """Close `handle`; the object goes when its last reference does. Status:
        ERR_BAD_HANDLE (including MX_HANDLE_INVALID). Cost: the pages freed, if any."""
        cdef uint32_t h
        cdef int status
        _open(self)
        if arg_u32(handle, &h):
            _rec_bad_args(self, CALL_HANDLE_CLOSE)
            return _st(ERR_INVALID_ARGS)
        status = _c_handle_close(&self.ks, h)
        if self._rec != NULL:
            tw_put(self._rec, CALL_HANDLE_CLOSE, status, 0, h, 0, 0, 0, 0, 0)
        return _st(status)

    def handle_duplicate(self, handle, rights):
        """A new handle to the same object with `rights` (a subset, or
        MX_RIGHT_SAME_RIGHTS). Returns (status, handle): ERR_BAD_HANDLE, ERR_ACCESS_DENIED
        (no DUPLICATE), ERR_INVALID_ARGS (not a subset), ERR_NO_MEMORY (table full). O(1)."""
        cdef uint32_t h, c_rights, out = 0
        cdef int status
        _open(self)
        if arg_u32(handle, &h) | arg_u32(rights, &c_rights):
            _rec_bad_args(self, CALL_HANDLE_DUPLICATE)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = sys_handle_duplicate(&self.ks, h, c_rights, &out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_HANDLE_DUPLICATE, status, 0, h, c_rights, 0, 0, 0, out)
        return (_st(status), out)

    def handle_replace(self, handle, rights):
        """Replace `handle` by a new one with `rights` (no DUPLICATE right needed). Returns
        (status, handle): ERR_BAD_HANDLE, ERR_INVALID_ARGS (not a subset; the old handle
        stays valid). O(1)."""
        cdef uint32_t h, c_rights, out = 0
        cdef int status
        _open(self)
        if arg_u32(handle, &h) | arg_u32(rights, &c_rights):
            _rec_bad_args(self, CALL_HANDLE_REPLACE)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = sys_handle_replace(&self.ks, h, c_rights, &out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_HANDLE_REPLACE, status, 0, h, c_rights, 0, 0, 0, out)
        return (_st(status), out)

    def object_get_info(self, handle, topic):
        """MX_INFO_HANDLE_VALID -> (status, None); MX_INFO_HANDLE_BASIC -> (status,
        HandleBasicInfo); the value is 0 on failure. Status: ERR_BAD_HANDLE; ERR_WRONG_TYPE
        for the topics of objects this kernel has none of (3-13); ERR_NOT_SUPPORTED for
        other topics. O(1)."""
        cdef uint32_t h, c_topic
        cdef handle_basic_info info
        cdef int status
        _open(self)
        if arg_u32(handle, &h) | arg_u32(topic, &c_topic):
            _rec_bad_args(self, CALL_OBJECT_GET_INFO)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = sys_get_info(&self.ks, h, c_topic, &info)
        if self._rec != NULL:
            _rec_info(self, h, c_topic, status, &info)
        if status:
            return (_st(status), 0)
        if c_topic == MX_INFO_HANDLE_VALID:
            return (S_OK, None)
        return (S_OK, HandleBasicInfo(info.koid, info.rights, info.type, info.related_koid,
                                      info.props))

    def event_create(self, options=0):
        """Create an event (rights DUPLICATE|TRANSFER|READ|WRITE). Returns (status, handle):
        ERR_INVALID_ARGS if options != 0, ERR_NO_MEMORY if the table is full. O(1)."""
        cdef uint32_t c_options, out = 0
        cdef int status
        _open(self)
        if arg_u32(options, &c_options):
            _rec_bad_args(self, CALL_EVENT_CREATE)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = _host(sys_event_create(&self.ks, c_options, &out))
        if self._rec != NULL:
            tw_put(self._rec, CALL_EVENT_CREATE, status, 0, 0, c_options, 0, 0, 0, out)
        return (_st(status), out)

    def vmo_committed_bytes(self, handle):
        """(status, bytes of the pages this VMO itself holds): ERR_BAD_HANDLE,
        ERR_WRONG_TYPE; no rights needed. O(1)."""
        cdef uint32_t h
        cdef uint64_t out = 0
        cdef int status
        _open(self)
        if arg_u32(handle, &h):
            _rec_bad_args(self, CALL_VMO_COMMITTED_BYTES)
            return (_st(ERR_INVALID_ARGS), 0)
        _idle(&self.ks)
        status = sys_committed_bytes(&self.ks, h, &out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_COMMITTED_BYTES, status, 0, h, 0, 0, 0, 0, out)
        return (_st(status), out)

    def vmo_create_contiguous(self, size, alignment_log2=0):
        """Create a VMO of `size` bytes rounded up to pages, committed at once to one
        physically contiguous run whose address is a multiple of 2**alignment_log2 (0 means
        12). Returns (status, handle): ERR_INVALID_ARGS (size 0, alignment_log2 not 0 and
        below 12, or 64 and above), ERR_NO_MEMORY (no such run, size above MX_VMO_MAX_SIZE,
        handle table full). docs/magenta.md 3.12 without the resource handle. Cost: the
        pages, plus the search: one probe per held block met before the first fit."""
        cdef uint64_t c_size = 0
        cdef uint32_t c_align, out = 0
        cdef int status
        _open(self)
        if arg_u64(size, &c_size) | arg_u32(alignment_log2, &c_align):
            _rec_bad_args(self, CALL_VMO_CREATE_CONTIGUOUS)
            return (_st(ERR_INVALID_ARGS), 0)
        status = _c_create_contiguous(&self.ks, c_size, c_align, &out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_CREATE_CONTIGUOUS, status, 0, 0, c_align, c_size, 0, 0,
                   out)
        return (_st(status), out)

    # -- physical memory access (device models, DMA): the bodies are in _physmem ------------
    def phys_read(self, paddr, length):
        """What a device reads at physical address `paddr`: `length` bytes. Raises
        MxError(ERR_OUT_OF_RANGE) if the range is not inside one RAM range of physical
        memory, ERR_BAD_STATE if a page it touches is not held by some VMO. O(length)."""
        _open(self)
        if self._rec == NULL:
            return phys_read_bytes(&self.ks, paddr, length)
        return _rec_phys_read(self, paddr, length)

    def phys_write(self, paddr, data):
        """A device writes `data` (any buffer) at physical address `paddr`; `vmo_read` then
        returns it. Raises MxError(ERR_OUT_OF_RANGE), MxError(ERR_BAD_STATE) as phys_read.
        Returns the number of bytes written. O(len(data))."""
        _open(self)
        if self._rec == NULL:
            return phys_write_buffer(&self.ks, paddr, data)
        return _rec_phys_write(self, paddr, data)

    def phys_view(self, paddr, length):
        """A writable, zero-copy memoryview of physical memory, as a device sees it. While
        the view (or anything exported from it) lives, its frames are pinned: never handed
        out again, even if their VMO decommits, shrinks or closes meanwhile; they are zeroed
        before reuse. Release with ``view.release()`` or by dropping it. Raises
        MxError(ERR_OUT_OF_RANGE), MxError(ERR_BAD_STATE) as phys_read. O(pages)."""
        _open(self)
        if self._rec == NULL:
            return phys_view_new(self, &self.ks, paddr, length)
        return _rec_phys_view(self, paddr, length)

    # -- traces and batches (docs/api.md "Traces and batches") -------------------------------
    def record(self, path):
        """``with k.record(path):`` records every call made on this kernel in the block
        (docs/trace-format.md) into the file `path`, closed with its end mark on exit, even
        on an exception. The kernel must be in its initial state (no object ever created,
        no frame ever handed out): else ValueError, as a replay starts from a fresh kernel."""
        cdef _Recording r
        _check_recordable(self)
        r = _Recording.__new__(_Recording)
        r.k = self
        r.path = path
        return r

    @property
    def recording(self):
        """True inside ``with k.record(path):``."""
        return self._rec != NULL

    def run(self, batch):
        """Run a `vmo.Batch` (its `records` and `data`, or a (records, data) pair of buffers)
        in C and return a `vmo.BatchResult`. ValueError, naming the index, for an invalid
        record (unknown call, bad REF, write bytes outside `data`) before anything runs.
        The records run without the GIL, the kernel owned by this thread (docs/semantics.md
        "Threads"). Recorded like any other calls inside ``k.record()``. Cost: the calls."""
        if isinstance(batch, tuple) and len(batch) == 2:
            return _run_batch(self, batch[0], batch[1])
        return _run_batch(self, batch.records, batch.data)

    def stats(self):
        """A dict: total_frames, free_frames, committed_frames (not free: held by VMOs or
        pinned by a physical view after their VMO let go), vmos, handles, pinned_frames, plus
        memory_base, memory_size and the allocator's zeroing counters. O(1)."""
        cdef uint64_t free, nframes, npinned, released, zeroed
        cdef Py_ssize_t nvmos
        cdef uint32_t nhandles
        _open(self)
        _idle(&self.ks)
        # Read everything before making Python objects (which may run other threads).
        free = pool_free_count(&self.ks.pool)
        nframes = self.ks.pool.nframes
        nvmos = self.ks.nvmos
        nhandles = self.ks.handles.count
        npinned = self.ks.pool.npinned
        released = self.ks.pool.released_runs
        zeroed = self.ks.pool.zeroed_frames
        return {
            "total_frames": nframes,
            "free_frames": free,
            "committed_frames": nframes - free,
            "vmos": nvmos,
            "handles": nhandles,
            "memory_base": self._memory_base,
            "memory_size": self._memory_size,
            "pinned_frames": npinned,
            "released_runs": released,
            "zeroed_frames": zeroed,
        }

    # -- the C-level API (contract: _kernel.pxd; documented in vmo/api.pxd) ----------------
    cdef int c_create(self, uint64_t size, uint32_t options, uint32_t *out) except -1000:
        cdef int status = _host(sys_create(_open_state(self), size, options, out))
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_CREATE, status, 0, 0, options, size, 0, 0, out[0])
        return status

    cdef int c_create_contiguous(self, uint64_t size, uint32_t alignment_log2,
                                 uint32_t *out) except -1000:
        cdef int status = _c_create_contiguous(_open_state(self), size, alignment_log2, out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_CREATE_CONTIGUOUS, status, 0, 0, alignment_log2, size,
                   0, 0, out[0])
        return status

    cdef int c_get_size(self, uint32_t handle, uint64_t *size) except -1000:
        cdef int status = sys_get_size(_open_state(self), handle, size)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_GET_SIZE, status, 0, handle, 0, 0, 0, 0,
                   size[0] if status == NO_ERROR else 0)
        return status

    cdef int c_set_size(self, uint32_t handle, uint64_t size) except -1000:
        cdef int status = _c_set_size(_open_state(self), handle, size)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_SET_SIZE, status, 0, handle, 0, size, 0, 0, 0)
        return status

    cdef int c_read(self, uint32_t handle, void *dst, uint64_t offset, uint64_t length,
                    uint64_t *actual) except -1000:
        cdef int status = _c_transfer(_open_state(self), handle, <uint8_t *>dst, offset,
                                      length, actual, False)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_READ, status, REC_NULL_BUFFER if dst == NULL else 0,
                   handle, 0, offset, length,
                   hash64(<uint8_t *>dst, actual[0]) if status == NO_ERROR else 0, actual[0])
        return status

    cdef int c_write(self, uint32_t handle, const void *src, uint64_t offset, uint64_t length,
                     uint64_t *actual) except -1000:
        if self._rec != NULL:
            return _rec_c_write(self, handle, src, offset, length, actual)
        return _c_transfer(_open_state(self), handle, <uint8_t *>src, offset, length, actual,
                           True)

    cdef int c_op_range(self, uint32_t handle, uint32_t op, uint64_t offset, uint64_t size,
                        void *buffer, uint64_t buffer_size) except -1000:
        if self._rec != NULL:
            return _rec_c_op_range(self, handle, op, offset, size, buffer, buffer_size)
        return _c_op_range(_open_state(self), handle, op, offset, size, buffer, buffer_size)

    cdef int c_commit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000:
        if self._rec != NULL:
            return _rec_c_op_range(self, handle, MX_VMO_OP_COMMIT, offset, size, NULL, 0)
        return _c_op_range(_open_state(self), handle, MX_VMO_OP_COMMIT, offset, size, NULL, 0)

    cdef int c_decommit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000:
        if self._rec != NULL:
            return _rec_c_op_range(self, handle, MX_VMO_OP_DECOMMIT, offset, size, NULL, 0)
        return _c_op_range(_open_state(self), handle, MX_VMO_OP_DECOMMIT, offset, size, NULL, 0)

    cdef int c_lookup(self, uint32_t handle, uint64_t offset, uint64_t size, uint64_t *out,
                      uint64_t max_entries) except -1000:
        if self._rec != NULL:
            return _rec_c_op_range(self, handle, MX_VMO_OP_LOOKUP, offset, size, out,
                                   max_entries * 8)
        return _c_op_range(_open_state(self), handle, MX_VMO_OP_LOOKUP, offset, size, out,
                           max_entries * 8)

    cdef int c_clone(self, uint32_t handle, uint32_t options, uint64_t offset, uint64_t size,
                     uint32_t *out) except -1000:
        cdef int status = _host(sys_clone(_open_state(self), handle, options, offset, size,
                                          out))
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_CLONE, status, 0, handle, options, offset, size, 0,
                   out[0])
        return status

    cdef int c_committed_bytes(self, uint32_t handle, uint64_t *out) except -1000:
        cdef int status = sys_committed_bytes(_open_state(self), handle, out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_VMO_COMMITTED_BYTES, status, 0, handle, 0, 0, 0, 0, out[0])
        return status

    cdef int c_handle_close(self, uint32_t handle) except -1000:
        cdef int status = _c_handle_close(_open_state(self), handle)
        if self._rec != NULL:
            tw_put(self._rec, CALL_HANDLE_CLOSE, status, 0, handle, 0, 0, 0, 0, 0)
        return status

    cdef int c_handle_duplicate(self, uint32_t handle, uint32_t rights,
                                uint32_t *out) except -1000:
        cdef int status = sys_handle_duplicate(_open_state(self), handle, rights, out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_HANDLE_DUPLICATE, status, 0, handle, rights, 0, 0, 0, out[0])
        return status

    cdef int c_handle_replace(self, uint32_t handle, uint32_t rights,
                              uint32_t *out) except -1000:
        cdef int status = sys_handle_replace(_open_state(self), handle, rights, out)
        if self._rec != NULL:
            tw_put(self._rec, CALL_HANDLE_REPLACE, status, 0, handle, rights, 0, 0, 0, out[0])
        return status

    cdef int c_get_info(self, uint32_t handle, uint32_t topic,
                        handle_basic_info *info) except -1000:
        cdef int status = sys_get_info(_open_state(self), handle, topic, info)
        if self._rec != NULL:
            _rec_info(self, handle, topic, status, info)
        return status

    cdef int c_event_create(self, uint32_t options, uint32_t *out) except -1000:
        cdef int status = _host(sys_event_create(_open_state(self), options, out))
        if self._rec != NULL:
            tw_put(self._rec, CALL_EVENT_CREATE, status, 0, 0, options, 0, 0, 0, out[0])
        return status

    cdef int c_phys_read(self, uint64_t paddr, void *dst, uint64_t length) except -1000:
        cdef int status = _c_phys_read(_open_state(self), paddr, dst, length)
        if self._rec != NULL:
            tw_put(self._rec, CALL_PHYS_READ, status, 0, 0, 0, paddr, length,
                   hash64(<uint8_t *>dst, length) if status == NO_ERROR else 0, 0)
        return status

    cdef int c_phys_write(self, uint64_t paddr, const void *src, uint64_t length) except -1000:
        cdef uint64_t first = 0, count = 0, off = 0
        cdef int status
        cdef kernel_state *ks = _open_state(self)
        if self._rec == NULL:
            return _c_phys_write(ks, paddr, src, length)
        # The bytes are recorded only when the call reads them (docs/trace-format.md).
        if phys_range(ks, paddr, length, &first, &count) == NO_ERROR:
            tw_side(self._rec, src, length, &off)
            status = _c_phys_write(ks, paddr, src, length)
            tw_put(self._rec, CALL_PHYS_WRITE, status, 0, 0, 0, paddr, length, off,
                   length if status == NO_ERROR else 0)
            return status
        status = _c_phys_write(ks, paddr, src, length)
        tw_put(self._rec, CALL_PHYS_WRITE, status, REC_NO_DATA, 0, 0, paddr, length, 0, 0)
        return status

    # -- benchmark instruments: the call floor (see _kernel.pyi) ---------------------------
    def _floor_get_size(self, handle):
        """vmo_get_size's argument conversion and closed check, then (NO_ERROR, 0)."""
        cdef uint32_t h
        _open(self)
        if arg_u32(handle, &h):
            return (_st(ERR_INVALID_ARGS), 0)
        return (S_OK, 0)

    def _floor_op_range(self, handle, op, offset, size, buffer=None, buffer_size=None):
        """vmo_op_range's argument conversion (LOOKUP's buffer exported and released) and
        closed check, then NO_ERROR."""
        cdef uint32_t h, c_op = 0
        cdef uint64_t off, c_size, bsize = 0
        cdef Py_buffer view
        _open(self)
        if _op_range_args(handle, op, offset, size, buffer, buffer_size, &h, &c_op, &off,
                          &c_size, &bsize):
            return _st(ERR_INVALID_ARGS)
        if c_op == MX_VMO_OP_LOOKUP:
            if _lookup_buffer(buffer, buffer_size, &view, &bsize):
                return _st(ERR_INVALID_ARGS)
            PyBuffer_Release(&view)
        return S_OK

    def _floor_read(self, handle, buffer, offset, length=None):
        """vmo_read's argument conversion, buffer export and release and closed check, then
        (NO_ERROR, 0)."""
        cdef uint32_t h
        cdef uint64_t off, n = 0
        cdef int held
        cdef Py_buffer view
        _open(self)
        if _transfer_args(handle, buffer, offset, length, &h, &off, &n):
            return (_st(ERR_INVALID_ARGS), 0)
        held = arg_transfer_buffer(buffer, &view, True, length is None, &n)
        if held < 0:
            return (_st(ERR_INVALID_ARGS), 0)
        if held:
            PyBuffer_Release(&view)
        return (S_OK, 0)

    # -- test shims (docs/semantics.md; compared with the reference model): see _invariants
    def _vmo_pages(self, handle):
        """(status, {page index: paddr}) of the pages the VMO itself holds."""
        cdef uint32_t h, rights
        cdef int status
        cdef vm_object *v
        _open(self)
        if arg_u32(handle, &h):
            return (_st(ERR_INVALID_ARGS), {})
        gc_was = _walk_begin(&self.ks)
        try:
            v = _vmo(&self.ks, h, 0, &rights, &status)
            if v == NULL:
                return (_st(status), {})
            return (S_OK, vmo_pages(&self.ks, v))
        finally:
            _walk_end(gc_was)

    def _allocator_state(self):
        """(next fresh frame, [freed frames, bottom of the LIFO list first])."""
        _open(self)
        gc_was = _walk_begin(&self.ks)
        try:
            return allocator_state(&self.ks)
        finally:
            _walk_end(gc_was)

    def _check(self):
        """Walk every structure and raise AssertionError on the first inconsistency."""
        _open(self)
        gc_was = _walk_begin(&self.ks)
        try:
            return invariants_check(&self.ks)
        finally:
            _walk_end(gc_was)


# -- recording helpers of the calls with buffers or exceptions ---------------------------------
cdef int _rec_info(Kernel k, uint32_t h, uint32_t topic, int status,
                   const handle_basic_info *info) except -1:
    cdef bint filled = status == NO_ERROR and topic == MX_INFO_HANDLE_BASIC
    tw_put(k._rec, CALL_OBJECT_GET_INFO, status, 0, h, topic, 0, 0,
           info_word(info) if filled else 0, info.koid if filled else 0)
    return 0


cdef int _rec_c_write(Kernel k, uint32_t handle, const void *src, uint64_t offset,
                      uint64_t length, uint64_t *actual) except -1000:
    """c_write while recording: the bytes the call reads go to the side section (`b` is then
    the length trimmed to the VMO); a call that reads none is recorded NO_DATA."""
    cdef kernel_state *ks = _open_state(k)
    cdef uint32_t rights
    cdef uint64_t trimmed = 0, off = 0
    cdef int status
    cdef vm_object *v = _vmo(ks, handle, MX_RIGHT_WRITE, &rights, &status)
    if v != NULL and src != NULL and trim_range(offset, length, v.size, &trimmed):
        tw_side(k._rec, src, trimmed, &off)
        status = _c_transfer(ks, handle, <uint8_t *>src, offset, trimmed, actual, True)
        tw_put(k._rec, CALL_VMO_WRITE, status, 0, handle, 0, offset, trimmed, off, actual[0])
        return status
    status = _c_transfer(ks, handle, <uint8_t *>src, offset, length, actual, True)
    tw_put(k._rec, CALL_VMO_WRITE, status,
           REC_NULL_BUFFER if src == NULL else REC_NO_DATA, handle, 0, offset, length, 0,
           actual[0])
    return status


cdef int _rec_lookup(Kernel k, uint32_t h, uint64_t off, uint64_t size, object buffer,
                     object buffer_size, uint64_t bsize) except -1000:
    """vmo_op_range(LOOKUP) while recording: the buffer is looked at first, whatever the call
    then answers; `c` is buffer_size as the call sees it (the buffer's size when None), the
    value hashes the entries the call wrote."""
    cdef uint32_t rights
    cdef uint16_t flags = 0
    cdef int status, found
    cdef uint64_t value = 0
    cdef Py_buffer view, probe
    cdef bint held = False
    cdef vm_object *v
    if buffer is None:
        flags = REC_NULL_BUFFER
    elif arg_buffer(buffer, &view, True):
        flags = REC_BAD_BUFFER
        if buffer_size is None:
            # Any layout: only the size matters; an exporter that refuses counts as 1 byte.
            try:
                PyObject_GetBuffer(buffer, &probe, PyBUF_FULL_RO)
            except Exception:
                bsize = 1
            else:
                bsize = probe.len
                PyBuffer_Release(&probe)
    else:
        held = True
        if buffer_size is None:
            bsize = view.len
        elif bsize > <uint64_t>view.len:
            flags = REC_BAD_BUFFER
    try:
        # The exports may have run Python code: wait for any owner, then none until the put.
        _idle(&k.ks)
        if _vmo(&k.ks, h, 0, &rights, &status) != NULL:
            if flags:
                status = ERR_INVALID_ARGS
            else:
                status = _c_lookup(&k.ks, h, off, size, view.buf, bsize)
                v = _vmo(&k.ks, h, 0, &rights, &found)      # the same; looked up again
                value = _lookup_hash(v, <uint8_t *>view.buf, off, size, status)
        tw_put(k._rec, CALL_VMO_OP_RANGE, status, flags, h, MX_VMO_OP_LOOKUP, off, size, bsize,
               value)
    finally:
        if held:
            PyBuffer_Release(&view)
    return status


cdef int _rec_c_op_range(Kernel k, uint32_t handle, uint32_t op, uint64_t offset,
                         uint64_t size, void *buffer, uint64_t buffer_size) except -1000:
    cdef kernel_state *ks = _open_state(k)
    cdef uint32_t rights
    cdef int status, found
    cdef uint64_t value = 0
    cdef vm_object *v
    status = _c_op_range(ks, handle, op, offset, size, buffer, buffer_size)
    if op != MX_VMO_OP_LOOKUP:
        tw_put(k._rec, CALL_VMO_OP_RANGE, status, 0, handle, op, offset, size, 0, 0)
        return status
    v = _vmo(ks, handle, 0, &rights, &found)
    if v != NULL and buffer != NULL:
        value = _lookup_hash(v, <uint8_t *>buffer, offset, size, status)
    tw_put(k._rec, CALL_VMO_OP_RANGE, status, REC_NULL_BUFFER if buffer == NULL else 0,
           handle, op, offset, size, buffer_size, value)
    return status


cdef object _rec_phys_read(Kernel k, object paddr, object length):
    cdef uint64_t a = 0, b = 0
    cdef int bad
    try:
        data = phys_read_bytes(&k.ks, paddr, length)
    except MxError as e:
        bad = _phys_arg_flags(paddr, length, &a, &b)
        _rec_idle(k)
        tw_put(k._rec, CALL_PHYS_READ, int(e.status), REC_ARG_RANGE if bad else 0, 0, 0,
               0 if bad else a, 0 if bad else b, 0, 0)
        raise
    arg_u64(operator_index(paddr), &a)
    _rec_idle(k)
    tw_put(k._rec, CALL_PHYS_READ, NO_ERROR, 0, 0, 0, a, len(data),
           hash64(<uint8_t *>PyBytes_AS_STRING(data), len(data)), 0)
    return data


cdef object _rec_phys_write(Kernel k, object paddr, object data):
    """phys_write while recording: the buffer is looked at first, and its bytes are kept
    whatever the call answers, copied before the write (they may be physical memory)."""
    cdef uint64_t a = 0, off = 0
    cdef int status
    cdef bint fits
    cdef Py_buffer view
    if not PyObject_CheckBuffer(data):
        return phys_write_buffer(&k.ks, paddr, data)      # the TypeError, unrecorded
    fits = not arg_u64(operator_index(paddr), &a)
    if arg_buffer(data, &view, False):
        _rec_idle(k)
        tw_put(k._rec, CALL_PHYS_WRITE, ERR_INVALID_ARGS,
               REC_BAD_BUFFER if fits else REC_ARG_RANGE, 0, 0, a if fits else 0, 0, 0, 0)
        return phys_write_buffer(&k.ks, paddr, data)      # raises MxError(ERR_INVALID_ARGS)
    try:
        if not fits:
            try:
                return phys_write_buffer(&k.ks, paddr, data)
            except MxError as e:
                _rec_idle(k)
                tw_put(k._rec, CALL_PHYS_WRITE, int(e.status), REC_ARG_RANGE, 0, 0, 0, 0, 0, 0)
                raise
        _rec_idle(k)
        tw_side(k._rec, view.buf, view.len, &off)
        status = _c_phys_write(&k.ks, a, view.buf, view.len)
        tw_put(k._rec, CALL_PHYS_WRITE, status, 0, 0, 0, a, view.len, off,
               view.len if status == 0 else 0)
        if status:
            return phys_write_buffer(&k.ks, paddr, data)  # raises the same MxError
        return view.len
    finally:
        PyBuffer_Release(&view)


cdef object _rec_phys_view(Kernel k, object paddr, object length):
    cdef uint64_t a = 0, b = 0
    cdef int bad
    cdef trace_writer *w = k._rec
    try:
        view = phys_view_new(k, &k.ks, paddr, length, _view_released, w.session, w.views + 1)
    except MxError as e:
        bad = _phys_arg_flags(paddr, length, &a, &b)
        _rec_idle(k)
        tw_put(w, CALL_PHYS_VIEW, int(e.status), REC_ARG_RANGE if bad else 0, 0, 0,
               0 if bad else a, 0 if bad else b, 0, 0)
        raise
    w.views += 1
    arg_u64(operator_index(paddr), &a)
    _rec_idle(k)
    tw_put(w, CALL_PHYS_VIEW, NO_ERROR, 0, 0, 0, a, len(view), 0, w.views)
    return view


# -- batches and replays: the record loop owns the kernel and runs without the GIL ------------
from array import array as _array


cdef int _run_checked(Kernel k, exec_ctx *cx) except -1:
    """After a record loop, GIL held again: raise what stopped it (a host allocation
    failure, or the recording writer's failure: the calls before it stay run)."""
    if cx.error == HOST_NO_MEMORY:
        cx.error = 0
        raise MemoryError("the host refused an allocation")
    if cx.rec != NULL and cx.rec.err:
        tw_raise(cx.rec)
    return 0


cdef object _run_batch(Kernel k, object records, object data):
    """Kernel.run: validate every record (ValueError naming its index), then run them with
    the kernel owned and the GIL released; the result's arrays are made before."""
    cdef const uint8_t[::1] rv = memoryview(records).cast("B")
    cdef const uint8_t[::1] dv = memoryview(data).cast("B")
    cdef uint64_t n = rv.shape[0] // TRACE_RECORD_SIZE, i, side_len = dv.shape[0]
    cdef const trace_rec *recs = <const trace_rec *>&rv[0] if n else NULL
    cdef const uint8_t *side = &dv[0] if side_len else NULL
    cdef exec_ctx cx
    cdef int code
    cdef uint64_t fb = 0, bv = 0, bc = 0
    cdef int bs = 0
    cdef int[::1] st
    cdef uint64_t[::1] vals, cs, starts
    cdef int *p_st = NULL
    cdef uint64_t *p_vals = NULL
    cdef uint64_t *p_cs = NULL
    _open(k)
    if <uint64_t>rv.shape[0] != n * TRACE_RECORD_SIZE:
        raise ValueError("batch records are not a whole number of 48-byte records")
    for i in range(n):
        code = rec_check(&recs[i], <uint32_t>i if i < 0xFFFFFFFF else 0xFFFFFFFF, side_len,
                         False)
        if code:
            raise ValueError("batch record %d: %s" % (i, rec_problem(code)))
    statuses = _array("i", bytes(4 * n))
    values = _array("Q", bytes(8 * n))
    cvals = _array("Q", bytes(8 * n))
    entry_start = _array("Q", bytes(8 * (n + 1)))
    st = statuses
    vals = values
    cs = cvals
    starts = entry_start
    if n:
        p_st = &st[0]
        p_vals = &vals[0]
        p_cs = &cs[0]
    cx_init(&cx)
    try:
        cx.collect_entries = True
        cx_values(&cx, n)
        ks_enter(&k.ks)
        cx.rec = k._rec         # read while owning: record() cannot start or end meanwhile
        with nogil:
            run_records(&k.ks, &cx, recs, n, side, p_st, p_vals, p_cs, &starts[0], False,
                        &fb, &bs, &bv, &bc)
        ks_leave(&k.ks)
        _run_checked(k, &cx)
        entries = _array("Q", bytes(8 * cx.nentries))
        if cx.nentries:
            memcpy(_abuf(entries), cx.entries, cx.nentries * 8)
    finally:
        cx_free(&k.ks, &cx)
    return BatchResult(statuses, values, cvals, entries, entry_start)


cdef void *_abuf(object arr) except NULL:
    cdef uint64_t[::1] mv = arr
    return &mv[0]


cdef object _mismatch(uint64_t index, const trace_rec *r, int status, uint64_t value,
                      uint64_t c):
    args = {"flags": r.flags, "handle": r.handle, "x": r.x, "a": r.a, "b": r.b, "c": r.c}
    return Mismatch(index, CALL_NAMES.get(r.call, str(r.call)), args,
                    (_status_or_int(r.status), r.value, r.c),
                    (_status_or_int(status), value, c))


cdef object _status_or_int(int code):
    try:
        return Status(code)
    except ValueError:
        return code


def replay(path, *, check=True):
    """Replay the trace at `path` (docs/trace-format.md) on a fresh kernel built from its
    header, every record run in C; returns a `vmo.ReplayResult`. With `check`, a record
    whose status, value or c differs from the recorded one is a mismatch. ValueError,
    naming the byte offset or record index, for a trace the reader refuses. Each block is
    read and checked with the GIL, then its records run without it, the kernel owned."""
    cdef TraceReader rd = TraceReader(path)
    cdef Kernel k
    cdef exec_ctx cx
    cdef uint64_t ops = 0, mismatches = 0, m, fb = 0, bv = 0, bc = 0, first_index = 0
    cdef int bs = 0, first_status = 0
    cdef uint64_t first_value = 0, first_c = 0
    cdef trace_rec first_rec
    cdef bint c_check = check, have_first = False
    try:
        k = Kernel(memory=rd.memory_map)
        try:
            cx_init(&cx)
            try:
                cx_values(&cx, BLOCK_MAX_RECORDS)
                t0 = perf_counter()
                while rd.next_block():
                    ks_enter(&k.ks)
                    with nogil:
                        m = run_records(&k.ks, &cx, rd.recs, rd.nrecs, rd.side, NULL, NULL,
                                        NULL, NULL, c_check, &fb, &bs, &bv, &bc)
                    ks_leave(&k.ks)
                    _run_checked(k, &cx)
                    if m and not have_first:
                        # Kept as C values: the report object is made after the loop.
                        have_first = True
                        first_index = rd.first_index + fb
                        first_rec = rd.recs[fb]
                        first_status = bs
                        first_value = bv
                        first_c = bc
                    mismatches += m
                    ops += rd.nrecs
                seconds = perf_counter() - t0
            finally:
                cx_free(&k.ks, &cx)
            stats = k.stats()
        finally:
            k.close()
    finally:
        rd.close()
    first = (_mismatch(first_index, &first_rec, first_status, first_value, first_c)
             if have_first else None)
    return ReplayResult(os_fspath(path), ops, seconds, mismatches, first, stats,
                        rd.truncated, rd.stop, rd.verified, c_check, "compiled")


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

include "_status_values.pxi"
