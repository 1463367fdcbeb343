"""Recording, the Python side (docs/trace-format.md): what `Kernel.record` and the Python
syscalls call while a kernel records.

`recording` gives the context manager of ``with k.record(path):`` (`_Recording`: opens the
file, sets `KernelCore._rec`, the trace writer every call tests once, and ends the file on
exit); `check_recordable`; `rec_bad_args`, the record of a call refused for an integer outside
its C type; the paths of the Python syscalls whose record needs the buffer looked at first or
an exception caught (`rec_transfer`, `rec_lookup`, `rec_phys_*`); and the record of a physical
view's release (`_view_released`, the hook a recorded PhysView calls). What the c_* methods
share with these is in _rec_calls.pxi. A module of its own, including the cores and calls
(_syscalls.pxi, _calls.pxi, _rec_calls.pxi) as _kernelcore.pyx and _kernel.pyx do: the
syscall layer's module stays the size it is without the recorder (the C compiler's
inlining budget is per module: the per-call rows of `python -m vmo bench` measured it), and
a syscall reaches this code only while recording, by one call.

The writer is kernel state too: a batch run under record() appends to it without the GIL
while it owns the kernel, so every append made with the GIL follows a busy check with no
Python code in between (right after a call's core, or after `_rec_idle`).
"""

from cpython.buffer cimport (PyBUF_FULL_RO, PyBuffer_Release, PyObject_CheckBuffer,
                             PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from vmo._args cimport arg_buffer, arg_transfer_buffer, arg_u64
from vmo._handles cimport ht_full, ht_get, ht_install, ht_uninstall
from vmo._kernelcore cimport KernelCore, handle_basic_info
from vmo._object cimport OBJ_VMO, obj_header
from vmo._physmem cimport (phys_read_bytes, phys_view_new, phys_write_buffer,
                           phys_write_owned)
from vmo._state cimport (FIRST_KOID, LONG_BYTES, LONG_PAGES, kernel_state, ks_enter,
                         ks_leave, ks_wait, ks_wait_idle)
from vmo._status cimport *
from vmo._trace cimport trace_header, tw_close, tw_open, tw_put, tw_side
from vmo._tracerec cimport *
from vmo._vmobject cimport (event_new, obj_unref, vm_object, vmo_cache_op,
                            vmo_commit, vmo_decommit, vmo_find_page, vmo_lookup, vmo_new,
                            run_list, vmo_lookup_runs,
                            vmo_new_contiguous, vmo_release_cost, vmo_resize, vmo_transfer)

from operator import index as operator_index

from vmo.errors import MxError

cdef extern from *:
    """
    /* The included cores and calls this module does not use (it calls a few). */
    #if defined(__GNUC__)
    #pragma GCC diagnostic ignored "-Wunused-function"
    #endif
    """

include "_syscalls.pxi"
include "_calls.pxi"
include "_rec_calls.pxi"


cdef inline int _rec_idle(KernelCore k) except -1:
    """Before an append that does not follow a call's core directly: wait for any owner."""
    if k.ks.busy:
        ks_wait_idle(&k.ks)
    return 0


cdef int rec_bad_args(KernelCore k, uint8_t call) except -1:
    """Record a call refused for an integer outside its C type (ERR_INVALID_ARGS)."""
    _rec_idle(k)
    if k._rec != NULL:
        tw_put(k._rec, call, ERR_INVALID_ARGS, REC_ARG_RANGE, 0, 0, 0, 0, 0, 0)
    return 0


cdef uint64_t _sessions = 0


cdef void _view_released(object owner, uint64_t session, uint64_t number, uint64_t paddr,
                         const uint8_t *ptr, uint64_t length) noexcept:
    """A recorded view goes: its bytes (what the device wrote) into the recording. Called
    with the kernel idle (PhysView waits for any owner first)."""
    cdef KernelCore k = <KernelCore>owner
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
    cdef KernelCore k
    cdef object path

    def __enter__(self):
        global _sessions
        cdef KernelCore k = self.k
        check_recordable(k)
        f = open(self.path, "wb")
        try:
            _sessions += 1
            check_recordable(k)        # opening the file may have let other threads run
            k._rec = tw_open(f.fileno(), trace_header(k._memory_map, k._cache_options), _sessions)
        except BaseException:
            f.close()
            raise
        k._rec_file = f
        return self

    def __exit__(self, *exc):
        cdef KernelCore k = self.k
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


cdef object recording(KernelCore k, object path):
    """Kernel.record: the context manager, once the kernel is seen recordable."""
    cdef _Recording r
    check_recordable(k)
    r = _Recording.__new__(_Recording)
    r.k = k
    r.path = path
    return r


cdef int check_recordable(KernelCore k) except -1:
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


cdef int rec_transfer(KernelCore k, uint32_t h, object buffer, uint64_t off, uint64_t n,
                      bint default_length, bint write, uint64_t *actual_out) except -1000:
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
    actual_out[0] = actual
    return status


cdef int rec_lookup(KernelCore k, uint32_t h, uint64_t off, uint64_t size, object buffer,
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


cdef object rec_phys_read(KernelCore k, object paddr, object length):
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


cdef object rec_phys_write(KernelCore k, object paddr, object data):
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
        status = phys_write_owned(&k.ks, a, view.buf, view.len)
        tw_put(k._rec, CALL_PHYS_WRITE, status, 0, 0, 0, a, view.len, off,
               view.len if status == 0 else 0)
        if status:
            return phys_write_buffer(&k.ks, paddr, data)  # raises the same MxError
        return view.len
    finally:
        PyBuffer_Release(&view)


cdef object rec_phys_view(KernelCore k, object paddr, object length):
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
