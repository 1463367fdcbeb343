"""The syscall layer: `Kernel`, Magenta's VMO syscalls over the object layer.

Each call converts its arguments (in signature order, every one before any status: see
_args.pxd), checks in Magenta's order (docs/magenta.md section 3), validating its handle
once, and calls the object layer (_vmobject, _physmem). `Kernel` extends `KernelCore`
(_kernelcore.pyx: the state, the lifetime, the properties, `stats()` and the C-level API, the
`c_*` methods) with the Python syscalls, the call-floor instruments and the test shims.
The checked cores (`sys_*`, _syscalls.pxi) and the calls behind the ownership protocol
(`_c_*`, _calls.pxi) are included here as in _kernelcore.pyx, so a Python syscall reaches
its core without a call across modules. `vmo._reference` is the executable spec this module
is tested against; docs/semantics.md fixes what the contract leaves open.

Threads (docs/semantics.md "Threads"): every call reaches its core through a `_c_*` helper
(or `_idle`, then a short core) that waits while another thread owns the kernel; a long call
owns the kernel itself and runs its core with the GIL released. A host allocation failure
comes back as HOST_NO_MEMORY and is raised here as MemoryError.

Traces and batches (docs/trace-format.md): inside ``with k.record(path):`` every call appends
a record after its core (`KernelCore._rec`, the trace writer; the machinery in
the _recording module and _rec_calls.pxi); `Kernel.run` and `replay` run records through the
executor (the _exec module) with the kernel owned and the GIL released, the writer then
used through its C-only face.
"""

from cpython.buffer cimport PyBuffer_Release, PyObject_CheckBuffer
from cpython.bytearray cimport PyByteArray_CheckExact
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_Check
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free

from vmo._args cimport (arg_buffer, arg_transfer_buffer, arg_u32, arg_u64, status_of,
                        status_table)
from vmo._exec cimport run_batch
from vmo._handles cimport ht_full, ht_get, ht_install, ht_uninstall
from vmo._invariants cimport allocator_state, check, vmo_pages
from vmo._kernelcore cimport (KernelCore, _call, _deliver, _notify, _open, handle_basic_info,
                              watch_add, watch_drop, watch_find)
from vmo._object cimport OBJ_VMO, obj_header
from vmo._physmem cimport phys_read_bytes, phys_view_new, phys_write_buffer
from vmo._recording cimport (rec_bad_args, rec_lookup, rec_phys_read, rec_phys_view,
                             rec_phys_write, rec_transfer, recording)
from vmo._state cimport LONG_BYTES, LONG_PAGES, kernel_state, ks_enter, ks_leave, ks_wait
from vmo._status cimport *
from vmo._trace cimport tw_put
from vmo._tracerec cimport *
from vmo._vmobject cimport (event_new, obj_unref, trim_range, vm_object, vmo_cache_op,
                            vmo_commit, vmo_decommit, vmo_find_page, vmo_lookup, vmo_new,
                            run_list, vmo_lookup_runs,
                            vmo_new_contiguous, vmo_release_cost, vmo_resize, vmo_transfer)

import gc

from vmo._exec import replay  # no-cython-lint  (vmo.replay: the executor's driver)
from vmo.errors import Status
from vmo.records import HandleBasicInfo

cdef list _STATUS = status_table()
cdef object S_OK = Status.NO_ERROR


include "_syscalls.pxi"
include "_calls.pxi"
include "_rec_calls.pxi"


cdef inline object _st(int code):
    """The `Status` member of a status from the C layers; HOST_NO_MEMORY raises MemoryError."""
    if code == HOST_NO_MEMORY:
        return _host_error()
    return status_of(_STATUS, code)


include "_syscall_args.pxi"


cdef object _bad_args(Kernel k, uint8_t call):
    """A call refused for an integer outside its C type: ERR_INVALID_ARGS, recorded so."""
    if k._rec != NULL:
        rec_bad_args(k, call)
    return _st(ERR_INVALID_ARGS)


cdef object _transfer(Kernel k, object handle, object buffer, object offset, object length,
                      bint write):
    """vmo_read (`write` False: into `buffer`) or vmo_write (from it): the arguments, the
    handle once, then the buffer, then the object layer; a write then delivers its change
    events (only a write that reached the object layer can have any)."""
    cdef uint32_t h, rights
    cdef uint64_t off, n = 0, actual = 0
    cdef int status, held
    cdef Py_buffer view
    cdef vm_object *v
    cdef bint exact
    _call(k)
    if _transfer_args(handle, buffer, offset, length, &h, &off, &n):
        return (_bad_args(k, CALL_VMO_WRITE if write else CALL_VMO_READ), 0)
    if k._rec != NULL:
        status = rec_transfer(k, h, buffer, off, n, length is None, write, &actual)
        if write:
            _notify(k)
        return (_st(status), actual)
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
        if write:
            _notify(k)
    _deliver(k)
    return (_st(status), actual)


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


cdef class Kernel(KernelCore):
    """One simulated machine: physical memory, its frame allocator and a handle table.

    ``Kernel(memory_size=1 << 30, *, memory_base=0x100000)``: `memory_size` bytes of
    physical memory (reserved, not populated, so it may exceed the host's RAM) at physical
    address `memory_base`. ``Kernel(memory=[(base, size), ...])``: a board's memory map,
    RAM banks with holes between them, allocated in the order given and ascending inside
    each. Bases and sizes must be page multiples, sizes positive, ranges disjoint, at most
    2**32 - 2 pages in all; else ValueError. A base of 0 is allowed (a PC has RAM at 0).
    Cost: a few mmap reservations, O(1).
    """

    # -- syscalls ---------------------------------------------------------------------------
    def vmo_create(self, size, options=0):
        """Create a VMO of `size` bytes (byte-granular, nothing committed), default rights
        0x3F. Returns (status, handle): ERR_INVALID_ARGS if options != 0; ERR_NO_MEMORY if
        size > MX_VMO_MAX_SIZE or the handle table is full. O(1)."""
        cdef uint64_t c_size = 0
        cdef uint32_t c_options = 0, out = 0
        cdef int status
        _call(self)
        if arg_u64(size, &c_size) | arg_u32(options, &c_options):
            return (_bad_args(self, CALL_VMO_CREATE), 0)
        _idle(&self.ks)
        status = _host(sys_create(&self.ks, c_size, c_options, &out))
        _rec_put(self, CALL_VMO_CREATE, status, 0, 0, c_options, c_size, 0, 0, out)
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
        _call(self)
        if arg_u32(handle, &h) | arg_u64(offset, &off) | arg_u64(length, &n):
            return (_bad_args(self, CALL_VMO_READ_BYTES), b"")
        _idle(&self.ks)
        v = _vmo(&self.ks, h, MX_RIGHT_READ, &rights, &status)
        if v == NULL:
            _rec_put(self, CALL_VMO_READ_BYTES, status, 0, h, 0, off, n, 0, 0)
            return (_st(status), b"")
        if not trim_range(off, n, v.size, &trimmed):
            _rec_put(self, CALL_VMO_READ_BYTES, ERR_OUT_OF_RANGE, 0, h, 0, off, n, 0, 0)
            return (_st(ERR_OUT_OF_RANGE), b"")
        if trimmed > <uint64_t>PY_SSIZE_T_MAX:
            # What bytes(n) raises for such an n.
            raise OverflowError("cannot return %d bytes" % trimmed)
        data = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>trimmed)
        # The handle again (`v` is not kept across the allocation).
        status = _c_transfer(&self.ks, h, <uint8_t *>PyBytes_AS_STRING(data), off, trimmed,
                             &actual, False)
        if self._rec != NULL:
            _rec_append(self, CALL_VMO_READ_BYTES, status, 0, h, 0, off, n,
                        hash64(<uint8_t *>PyBytes_AS_STRING(data), actual), actual)
        _deliver(self)
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
        _call(self)
        if arg_u32(handle, &h):
            return (_bad_args(self, CALL_VMO_GET_SIZE), 0)
        _idle(&self.ks)
        status = sys_get_size(&self.ks, h, &size)
        _rec_put(self, CALL_VMO_GET_SIZE, status, 0, h, 0, 0, 0, 0, size)
        return (_st(status), size)

    def vmo_set_size(self, handle, size):
        """Resize to `size` bytes; shrinking frees the pages past ceil(size/4096) but keeps
        the stale bytes of the page holding the new end. Status: ERR_BAD_HANDLE,
        ERR_ACCESS_DENIED (no WRITE), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE (> MX_VMO_MAX_SIZE).
        Cost: the pages freed."""
        cdef uint32_t h
        cdef uint64_t c_size
        cdef int status
        _call(self)
        if arg_u32(handle, &h) | arg_u64(size, &c_size):
            return _bad_args(self, CALL_VMO_SET_SIZE)
        status = _c_set_size(&self.ks, h, c_size)
        _rec_put(self, CALL_VMO_SET_SIZE, status, 0, h, 0, c_size, 0, 0, 0)
        _notify(self)
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
        _call(self)
        if _op_range_args(handle, op, offset, size, buffer, buffer_size, &h, &c_op, &off,
                          &c_size, &bsize):
            return _bad_args(self, CALL_VMO_OP_RANGE)
        if c_op != MX_VMO_OP_LOOKUP:
            status = _c_op_range(&self.ks, h, c_op, off, c_size, NULL, 0)
            _rec_put(self, CALL_VMO_OP_RANGE, status, 0, h, c_op, off, c_size, 0, 0)
            _notify(self)
            _deliver(self)
            return _st(status)
        if self._rec != NULL:
            return _st(rec_lookup(self, h, off, c_size, buffer, buffer_size, bsize))
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

    def vmo_lookup_runs(self, handle, offset, size):
        """The physical runs of the committed pages touching [offset, offset+size): a list
        of (offset, paddr, length, own) tuples in offset order, maximal (consecutive pages
        share a run when their frames are consecutive and their owner flag is the same;
        `own` is True for the VMO's own frames, False for frames of an ancestor it sees);
        uncommitted pages are skipped. Returns (status, runs), runs 0 on failure (the
        syscall layer's rule for a failed call's value): ERR_BAD_HANDLE,
        ERR_WRONG_TYPE (no rights needed), ERR_INVALID_ARGS (size 0), ERR_OUT_OF_RANGE
        (not inside the VMO). Not recorded (it changes nothing). Cost: the committed pages
        met in the range, in the VMO and each ancestor, plus one list entry per run."""
        cdef uint32_t h
        cdef uint64_t off = 0, c_size = 0, i
        cdef run_list runs
        cdef int status
        _open(self)
        if arg_u32(handle, &h) | arg_u64(offset, &off) | arg_u64(size, &c_size):
            return (_st(ERR_INVALID_ARGS), 0)
        runs.runs = NULL
        runs.count = 0
        runs.cap = 0
        try:
            status = _c_lookup_runs(&self.ks, h, off, c_size, &runs)
            if status != NO_ERROR:
                return (_st(status), 0)
            # The C array first, the Python objects after (the state is not touched again).
            out = [None] * runs.count
            for i in range(runs.count):
                out[i] = (runs.runs[i].offset, runs.runs[i].paddr, runs.runs[i].length,
                          runs.runs[i].own != 0)
            return (_st(status), out)
        finally:
            free(runs.runs)

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
        _call(self)
        if (arg_u32(handle, &h) | arg_u32(options, &c_options) | arg_u64(offset, &off)
                | arg_u64(size, &c_size)):
            return (_bad_args(self, CALL_VMO_CLONE), 0)
        _idle(&self.ks)
        status = _host(sys_clone(&self.ks, h, c_options, off, c_size, &out))
        _rec_put(self, CALL_VMO_CLONE, status, 0, h, c_options, off, c_size, 0, out)
        return (_st(status), out)

    def handle_close(self, handle):
        """Close `handle`; the object goes when its last reference does. Status:
        ERR_BAD_HANDLE (including MX_HANDLE_INVALID). Cost: the pages freed, if any."""
        cdef uint32_t h
        cdef int status
        _call(self)
        if arg_u32(handle, &h):
            return _bad_args(self, CALL_HANDLE_CLOSE)
        status = _c_handle_close(&self.ks, h)
        _rec_put(self, CALL_HANDLE_CLOSE, status, 0, h, 0, 0, 0, 0, 0)
        _notify(self)
        return _st(status)

    def handle_duplicate(self, handle, rights):
        """A new handle to the same object with `rights` (a subset, or
        MX_RIGHT_SAME_RIGHTS). Returns (status, handle): ERR_BAD_HANDLE, ERR_ACCESS_DENIED
        (no DUPLICATE), ERR_INVALID_ARGS (not a subset), ERR_NO_MEMORY (table full). O(1)."""
        cdef uint32_t h, c_rights, out = 0
        cdef int status
        _call(self)
        if arg_u32(handle, &h) | arg_u32(rights, &c_rights):
            return (_bad_args(self, CALL_HANDLE_DUPLICATE), 0)
        _idle(&self.ks)
        status = sys_handle_duplicate(&self.ks, h, c_rights, &out)
        _rec_put(self, CALL_HANDLE_DUPLICATE, status, 0, h, c_rights, 0, 0, 0, out)
        return (_st(status), out)

    def handle_replace(self, handle, rights):
        """Replace `handle` by a new one with `rights` (no DUPLICATE right needed). Returns
        (status, handle): ERR_BAD_HANDLE, ERR_INVALID_ARGS (not a subset; the old handle
        stays valid). O(1)."""
        cdef uint32_t h, c_rights, out = 0
        cdef int status
        _call(self)
        if arg_u32(handle, &h) | arg_u32(rights, &c_rights):
            return (_bad_args(self, CALL_HANDLE_REPLACE), 0)
        _idle(&self.ks)
        status = sys_handle_replace(&self.ks, h, c_rights, &out)
        _rec_put(self, CALL_HANDLE_REPLACE, status, 0, h, c_rights, 0, 0, 0, out)
        return (_st(status), out)

    def object_get_info(self, handle, topic):
        """MX_INFO_HANDLE_VALID -> (status, None); MX_INFO_HANDLE_BASIC -> (status,
        HandleBasicInfo); the value is 0 on failure. Status: ERR_BAD_HANDLE; ERR_WRONG_TYPE
        for the topics of objects this kernel has none of (3-13); ERR_NOT_SUPPORTED for
        other topics. O(1)."""
        cdef uint32_t h, c_topic
        cdef handle_basic_info info
        cdef int status
        _call(self)
        if arg_u32(handle, &h) | arg_u32(topic, &c_topic):
            return (_bad_args(self, CALL_OBJECT_GET_INFO), 0)
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
        _call(self)
        if arg_u32(options, &c_options):
            return (_bad_args(self, CALL_EVENT_CREATE), 0)
        _idle(&self.ks)
        status = _host(sys_event_create(&self.ks, c_options, &out))
        _rec_put(self, CALL_EVENT_CREATE, status, 0, 0, c_options, 0, 0, 0, out)
        return (_st(status), out)

    def vmo_committed_bytes(self, handle):
        """(status, bytes of the pages this VMO itself holds): ERR_BAD_HANDLE,
        ERR_WRONG_TYPE; no rights needed. O(1)."""
        cdef uint32_t h
        cdef uint64_t out = 0
        cdef int status
        _call(self)
        if arg_u32(handle, &h):
            return (_bad_args(self, CALL_VMO_COMMITTED_BYTES), 0)
        _idle(&self.ks)
        status = sys_committed_bytes(&self.ks, h, &out)
        _rec_put(self, CALL_VMO_COMMITTED_BYTES, status, 0, h, 0, 0, 0, 0, out)
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
        _call(self)
        if arg_u64(size, &c_size) | arg_u32(alignment_log2, &c_align):
            return (_bad_args(self, CALL_VMO_CREATE_CONTIGUOUS), 0)
        status = _c_create_contiguous(&self.ks, c_size, c_align, &out)
        _rec_put(self, CALL_VMO_CREATE_CONTIGUOUS, status, 0, 0, c_align, c_size, 0, 0, out)
        return (_st(status), out)

    # -- physical memory access (device models, DMA): the bodies are in _physmem ------------
    def phys_read(self, paddr, length):
        """What a device reads at physical address `paddr`: `length` bytes. Raises
        MxError(ERR_OUT_OF_RANGE) if the range is not inside one RAM range of physical
        memory, ERR_BAD_STATE if a page it touches is not held by some VMO. O(length)."""
        _call(self)
        if self._rec == NULL:
            data = phys_read_bytes(&self.ks, paddr, length)
        else:
            data = rec_phys_read(self, paddr, length)
        _deliver(self)
        return data

    def phys_write(self, paddr, data):
        """A device writes `data` (any buffer) at physical address `paddr`; `vmo_read` then
        returns it. Raises MxError(ERR_OUT_OF_RANGE), MxError(ERR_BAD_STATE) as phys_read.
        Returns the number of bytes written. O(len(data))."""
        _call(self)
        if self._rec == NULL:
            return phys_write_buffer(&self.ks, paddr, data)
        return rec_phys_write(self, paddr, data)

    def phys_view(self, paddr, length):
        """A writable, zero-copy memoryview of physical memory, as a device sees it. While
        the view (or anything exported from it) lives, its frames are pinned: never handed
        out again, even if their VMO decommits, shrinks or closes meanwhile; they are zeroed
        before reuse. Release with ``view.release()`` or by dropping it. Raises
        MxError(ERR_OUT_OF_RANGE), MxError(ERR_BAD_STATE) as phys_read. O(pages)."""
        _call(self)
        if self._rec == NULL:
            return phys_view_new(self, &self.ks, paddr, length)
        return rec_phys_view(self, paddr, length)

    # -- save and load (docs/state-format.md; the engine is vmo/_statefile.pyx, imported when
    # first used so that an extension cimporting vmo.api imports no more modules) -----------
    def save(self, path):
        """Write the kernel's whole state to the file `path` atomically (a temporary file in
        the same directory, synced, then renamed; docs/state-format.md). ValueError if the
        kernel is closed, MxError(ERR_BAD_STATE) while a physical view is live, OSError from
        the file system (the previous file is then intact). Owns the kernel while it writes
        (other threads' calls wait). Cost: the objects, the pages held and the written
        frames' bytes, streamed from physical memory in chunks."""
        from vmo._statefile import save_kernel
        save_kernel(self, path)

    @classmethod
    def load(cls, path):
        """A new kernel in the state saved at `path` (by either kernel): any sequence of
        calls then gives what it would have given on the saved one. ValueError, naming the
        byte offset or section, for a truncated, corrupted, foreign or newer file (nothing
        is left half-built); OSError if the file cannot be read. Cost: the file's bytes."""
        from vmo._statefile import load_kernel
        return load_kernel(cls, path)

    def __reduce__(self):
        """Pickling goes through the state file's bytes (errors as `save`)."""
        from vmo._statefile import dump_kernel, load_kernel_bytes
        return load_kernel_bytes, (type(self), dump_kernel(self))

    # -- change notifications, the Python side (vmo._pythonic.Subscription) --------------
    def _watch(self, handle, callback):
        """Subscribe `callback(offset, length)` to the VMO of `handle`: (status, id);
        ERR_BAD_HANDLE, ERR_WRONG_TYPE, ERR_INVALID_ARGS (handle outside uint32)."""
        cdef uint32_t h
        cdef uint64_t out = 0
        _open(self)
        if not callable(callback):
            raise TypeError("the callback must be callable")
        if arg_u32(handle, &h):
            return (_st(ERR_INVALID_ARGS), 0)
        return (_st(watch_add(&self.ks, h, NULL, <void *>callback, True, &out)), out)

    def _unwatch(self, subscription):
        """End subscription `subscription`: True if it was active."""
        cdef Py_ssize_t i
        cdef uint64_t n = 0
        if self.ks.closed or self.ks.notify == NULL or arg_u64(subscription, &n):
            return False
        _idle(&self.ks)
        i = watch_find(self.ks.notify, n)
        if i < 0 or self.ks.notify.entries[i].obj == NULL:
            return False
        watch_drop(self.ks.notify, <uint64_t>i)
        return True

    def _watching(self, subscription):
        """True while subscription `subscription` is active."""
        cdef Py_ssize_t i
        cdef uint64_t n = 0
        if self.ks.closed or arg_u64(subscription, &n):
            return False
        _idle(&self.ks)
        if self.ks.notify == NULL:
            return False
        i = watch_find(self.ks.notify, n)
        return i >= 0 and self.ks.notify.entries[i].obj != NULL

    # -- traces and batches (docs/api.md "Traces and batches") -------------------------------
    def record(self, path):
        """``with k.record(path):`` records every call made on this kernel in the block
        (docs/trace-format.md) into the file `path`, closed with its end mark on exit, even
        on an exception. The kernel must be in its initial state (no object ever created,
        no frame ever handed out): else ValueError, as a replay starts from a fresh kernel."""
        return recording(self, path)

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
        try:
            if isinstance(batch, tuple) and len(batch) == 2:
                return run_batch(self, batch[0], batch[1])
            return run_batch(self, batch.records, batch.data)
        finally:
            if not self.ks.closed:
                _notify(self)
                _deliver(self)

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
            return check(&self.ks)
        finally:
            _walk_end(gc_was)


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
