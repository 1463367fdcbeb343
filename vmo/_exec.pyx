"""The trace and batch executor, and its two drivers: `run_batch` (Kernel.run) and `replay`.

`exec_rec` runs one record (docs/trace-format.md) against a kernel_state through the sys_*
cores, the object layer and the physical-access functions and gives its status, value and
c; `run_records` is the loop of replays and batches. All of it is `noexcept nogil` C: the
caller owns the kernel (ks_enter), runs the loop in `with nogil:`, then ks_leave, and only
then looks at `cx.error` (HOST_NO_MEMORY: MemoryError) and the writer's `err` (never a c_*
method or a Python syscall inside: they would wait on the gate this thread holds).

The checked cores (_syscalls.pxi) are included here too, as in _kernelcore.pyx and
_kernel.pyx: this module calls its own static copy, and the syscall layer's module stays the
size it is without the executor (the C compiler's inlining budget is per module: the
per-call rows of `python -m vmo bench` measured it).
"""

from cpython cimport array as carray
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport realloc
from libc.stdlib cimport free as c_free
from libc.string cimport memcpy, memset

from vmo._frames cimport pool_frame_ptr
from vmo._handles cimport ht_full, ht_get, ht_install, ht_uninstall
from vmo._kernelcore cimport KernelCore, _open, handle_basic_info
from vmo._object cimport OBJ_VMO, obj_header
from vmo._physmem cimport phys_pin, phys_range, phys_read, phys_unpin, phys_write
from vmo._state cimport kernel_state, ks_enter, ks_leave
from vmo._status cimport *
from vmo._trace cimport (BLOCK_MAX_RECORDS, TraceReader, hash64_begin, hash64_end,
                         hash64_update, rec_check, rec_problem, rec_uses_side, tw_put,
                         tw_put_c, tw_raise, tw_side_c)
from vmo._tracerec cimport *
from vmo._vmobject cimport (event_new, obj_unref, trim_range, vm_object, vmo_cache_op,
                            vmo_commit, vmo_decommit, vmo_find_page, vmo_lookup, vmo_new,
                            run_list, vmo_lookup_runs,
                            vmo_new_contiguous, vmo_resize, vmo_transfer)

from array import array as _array
from os import fspath as os_fspath
from time import perf_counter

from vmo.errors import Status
from vmo.records import CALL_NAMES, BatchResult, Mismatch, ReplayResult

cdef carray.array _I_TEMPLATE = _array("i")
cdef carray.array _Q_TEMPLATE = _array("Q")

cdef extern from *:
    """
    /* The included cores this module does not use (it runs the others). */
    #if defined(__GNUC__)
    #pragma GCC diagnostic ignored "-Wunused-function"
    #endif
    """

include "_syscalls.pxi"
include "_rec_calls.pxi"


cdef enum:
    EXEC_CHUNK = 65536          # reads and zero writes go through the scratch in chunks

cdef struct view_slot:
    uint64_t number
    uint64_t paddr
    uint64_t length
    uint64_t first
    uint64_t count

cdef struct exec_ctx:
    # Reads, LOOKUP entries, and the zeros of NO_DATA writes. Between records its first
    # min(scratch_cap, EXEC_CHUNK) bytes are zero; it grows on demand (a batch of one-page
    # calls never zeroes more than it uses: 64 KiB up front cost 16 ns a call of a
    # 1,000-call batch).
    uint8_t *scratch
    uint64_t scratch_cap
    view_slot *views            # live physical views of a replay
    uint64_t nviews
    uint64_t views_cap
    uint64_t view_counter
    uint64_t *entries           # a batch's LOOKUP entries (when collect_entries)
    uint64_t nentries
    uint64_t entries_cap
    bint collect_entries
    trace_writer *rec           # record the calls run (a batch under record())
    uint64_t *values            # each record's value (REF), or 0 when it failed
    uint64_t values_cap
    int error                   # HOST_NO_MEMORY when the loop stopped for it, else 0
    uint64_t done               # records run by the last run_records


cdef int cx_init(exec_ctx *cx) except -1:
    memset(cx, 0, sizeof(exec_ctx))
    return 0


cdef void cx_free(kernel_state *ks, exec_ctx *cx) noexcept:
    """Free the context; views a replay left alive are unpinned (the kernel is discarded)."""
    cdef uint64_t i
    for i in range(cx.nviews):
        if ks.pool.mem != NULL:
            phys_unpin(ks, cx.views[i].first, cx.views[i].count)
    c_free(cx.scratch)
    c_free(cx.views)
    c_free(cx.entries)
    c_free(cx.values)
    cx.scratch = NULL
    cx.views = NULL
    cx.entries = NULL
    cx.values = NULL


cdef int _scratch(exec_ctx *cx, uint64_t n) noexcept nogil:
    """Room for `n` bytes in the scratch (0, or HOST_NO_MEMORY); the new part of its first
    EXEC_CHUNK bytes is zeroed, keeping the scratch's invariant."""
    cdef uint8_t *grown
    cdef uint64_t old = cx.scratch_cap
    if n < 64:
        n = 64                  # never NULL, even for a LOOKUP into a 0-byte buffer
    if n > old:
        grown = <uint8_t *>realloc(cx.scratch, n)
        if grown == NULL:
            return HOST_NO_MEMORY
        cx.scratch = grown
        cx.scratch_cap = n
        if old < EXEC_CHUNK:
            memset(grown + old, 0, (n if n < EXEC_CHUNK else EXEC_CHUNK) - old)
    return 0


cdef inline uint64_t _chunk_room(uint64_t length) noexcept nogil:
    """The scratch a chunked walk of `length` bytes uses (and zeroes again after a read)."""
    return length if length < EXEC_CHUNK else EXEC_CHUNK


cdef int _exec_read(kernel_state *ks, exec_ctx *cx, vm_object *v, uint64_t offset,
                    uint64_t length, uint64_t *value, uint64_t *c) noexcept nogil:
    """A read (into nothing kept): status, actual and the hash64 of the bytes, in chunks."""
    cdef uint64_t trimmed, pos = 0, chunk, got = 0, h
    cdef int status
    if not trim_range(offset, length, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if _scratch(cx, _chunk_room(trimmed)):
        return HOST_NO_MEMORY
    h = hash64_begin(trimmed)
    while pos < trimmed:
        chunk = trimmed - pos if trimmed - pos < EXEC_CHUNK else EXEC_CHUNK
        status = vmo_transfer(ks, v, cx.scratch, offset + pos, chunk, &got, False)
        if status:
            memset(cx.scratch, 0, _chunk_room(trimmed))
            return status
        h = hash64_update(h, cx.scratch, chunk)
        pos += chunk
    memset(cx.scratch, 0, _chunk_room(trimmed))
    value[0] = trimmed
    c[0] = hash64_end(h)
    return NO_ERROR


cdef int _exec_zero_write(kernel_state *ks, exec_ctx *cx, vm_object *v, uint64_t offset,
                          uint64_t length, uint64_t *value) noexcept nogil:
    """A write of `length` zero bytes (NO_DATA), in chunks."""
    cdef uint64_t trimmed, pos = 0, chunk, got = 0
    cdef int status
    if not trim_range(offset, length, v.size, &trimmed):
        return ERR_OUT_OF_RANGE
    if _scratch(cx, _chunk_room(trimmed)):
        return HOST_NO_MEMORY
    while pos < trimmed:
        chunk = trimmed - pos if trimmed - pos < EXEC_CHUNK else EXEC_CHUNK
        status = vmo_transfer(ks, v, cx.scratch, offset + pos, chunk, &got, True)
        if status:
            return status
        pos += chunk
    value[0] = trimmed
    return NO_ERROR


cdef int _exec_lookup(kernel_state *ks, exec_ctx *cx, const trace_rec *r, uint32_t handle,
                      uint64_t *value) noexcept nogil:
    cdef uint32_t rights
    cdef int status
    cdef uint64_t cap, n
    cdef vm_object *v = _vmo(ks, handle, 0, &rights, &status)
    if v == NULL:
        return status
    if r.flags & (REC_NULL_BUFFER | REC_BAD_BUFFER):
        return ERR_INVALID_ARGS
    # A LOOKUP writes at most one entry per page present, so never more than the frames of
    # memory: the scratch is bounded by that whatever `buffer_size` a trace claims.
    cap = (ks.pool.nframes + 1) * 8
    if r.c < cap:
        cap = r.c
    if _scratch(cx, cap):
        return HOST_NO_MEMORY
    status = vmo_lookup(ks, v, r.a, r.b, cx.scratch, r.c)
    n = lookup_written(v, r.a, r.b, status)
    value[0] = hash64(cx.scratch, n * 8) if status == NO_ERROR or status == ERR_NO_MEMORY else 0
    if cx.collect_entries and n and _collect(cx, n):
        return HOST_NO_MEMORY
    memset(cx.scratch, 0, n * 8 if n * 8 < EXEC_CHUNK else EXEC_CHUNK)
    return status


cdef int _collect(exec_ctx *cx, uint64_t n) noexcept nogil:
    cdef uint64_t cap
    cdef uint64_t *grown
    if cx.nentries + n > cx.entries_cap:
        cap = cx.entries_cap * 2 if cx.entries_cap else 1024
        while cap < cx.nentries + n:
            cap *= 2
        grown = <uint64_t *>realloc(cx.entries, cap * 8)
        if grown == NULL:
            return HOST_NO_MEMORY
        cx.entries = grown
        cx.entries_cap = cap
    memcpy(cx.entries + cx.nentries, cx.scratch, n * 8)
    cx.nentries += n
    return 0


cdef int _exec_phys(kernel_state *ks, exec_ctx *cx, const trace_rec *r, const uint8_t *side,
                    uint64_t *value, uint64_t *c) noexcept nogil:
    cdef uint64_t first = 0, count = 0, pos = 0, chunk, h, i
    cdef int status
    cdef view_slot *grown
    cdef uint8_t *dst
    if r.call == CALL_PHYS_VIEW_RELEASE:
        for i in range(cx.nviews):
            if cx.views[i].number == r.value:
                break
        else:
            return ERR_BAD_STATE        # no such live view: a mismatch, never a crash
        if cx.views[i].length != r.b or cx.views[i].paddr != r.a:
            return ERR_BAD_STATE
        if r.b and (rec_uses_side(r) or r.flags & REC_NO_DATA):
            # What the device wrote through the view, back under it (frames still pinned).
            dst = pool_frame_ptr(&ks.pool, <uint32_t>cx.views[i].first) + (r.a & PAGE_MASK)
            if rec_uses_side(r):
                memcpy(dst, side + r.c, r.b)
            else:
                memset(dst, 0, r.b)
        phys_unpin(ks, cx.views[i].first, cx.views[i].count)
        cx.views[i] = cx.views[cx.nviews - 1]
        cx.nviews -= 1
        value[0] = r.value
        return NO_ERROR
    if r.call == CALL_PHYS_WRITE and (r.flags & REC_BAD_BUFFER):
        return ERR_INVALID_ARGS
    status = phys_range(ks, r.a, r.b, &first, &count)
    if status:
        return status
    if (r.call == CALL_PHYS_READ or r.flags & REC_NO_DATA) and _scratch(cx, _chunk_room(r.b)):
        return HOST_NO_MEMORY
    if r.call == CALL_PHYS_READ:
        h = hash64_begin(r.b)
        while pos < r.b:
            chunk = r.b - pos if r.b - pos < EXEC_CHUNK else EXEC_CHUNK
            phys_read(ks, r.a + pos, cx.scratch, chunk)
            h = hash64_update(h, cx.scratch, chunk)
            pos += chunk
        memset(cx.scratch, 0, _chunk_room(r.b))
        c[0] = hash64_end(h)
        return NO_ERROR
    if r.call == CALL_PHYS_WRITE:
        if r.flags & REC_NO_DATA:
            while pos < r.b:
                chunk = r.b - pos if r.b - pos < EXEC_CHUNK else EXEC_CHUNK
                phys_write(ks, r.a + pos, cx.scratch, chunk)
                pos += chunk
        else:
            phys_write(ks, r.a, side + r.c, r.b)
        value[0] = r.b
        return NO_ERROR
    # CALL_PHYS_VIEW
    if cx.nviews == cx.views_cap:
        grown = <view_slot *>realloc(cx.views, (cx.views_cap * 2 + 8) * sizeof(view_slot))
        if grown == NULL:
            return HOST_NO_MEMORY
        cx.views = grown
        cx.views_cap = cx.views_cap * 2 + 8
    phys_pin(ks, first, count)
    cx.view_counter += 1
    cx.views[cx.nviews] = view_slot(cx.view_counter, r.a, r.b, first, count)
    cx.nviews += 1
    value[0] = cx.view_counter
    return NO_ERROR


cdef inline bint compares_c(uint8_t call) noexcept nogil:
    """Whether `c` is a result (compared by a replay) rather than an argument."""
    return (call == CALL_VMO_READ or call == CALL_VMO_READ_BYTES
            or call == CALL_OBJECT_GET_INFO or call == CALL_PHYS_READ)


cdef int exec_rec(kernel_state *ks, exec_ctx *cx, const trace_rec *r, uint32_t handle,
                  const uint8_t *side, uint64_t *value, uint64_t *c) noexcept nogil:
    """Run one record (its handle resolved by the caller) and give status, value and c as
    a recording of the call would hold them: c is the call's result where it is one (0 when
    the call failed), else the record's own. The record has passed rec_check."""
    cdef uint32_t rights = 0, out = 0
    cdef uint64_t v64 = 0
    cdef int status
    cdef uint8_t call = r.call
    cdef vm_object *v
    cdef handle_basic_info info
    value[0] = 0
    c[0] = 0 if compares_c(call) else r.c
    if r.flags & REC_ARG_RANGE:
        # The integer checks come first and see no state: a syscall gives ERR_INVALID_ARGS,
        # a phys_* call ERR_OUT_OF_RANGE or ERR_INVALID_ARGS, as recorded.
        if call >= CALL_PHYS_READ and r.status == ERR_OUT_OF_RANGE:
            return ERR_OUT_OF_RANGE
        return ERR_INVALID_ARGS
    if call != CALL_PHYS_VIEW_RELEASE:
        ks.seq += 1         # one kernel call (a view's release is none)
    if call == CALL_VMO_OP_RANGE:
        if r.x == MX_VMO_OP_LOOKUP:
            return _exec_lookup(ks, cx, r, handle, value)
        return sys_op_range(ks, handle, r.x, r.a, r.b, NULL, 0)
    if call == CALL_VMO_READ or call == CALL_VMO_READ_BYTES or call == CALL_VMO_WRITE:
        v = _vmo(ks, handle, MX_RIGHT_WRITE if call == CALL_VMO_WRITE else MX_RIGHT_READ,
                 &rights, &status)
        if v == NULL:
            return status
        if r.flags & REC_BAD_BUFFER or (r.flags & REC_NULL_BUFFER and r.b):
            return ERR_INVALID_ARGS
        if call != CALL_VMO_WRITE:
            return _exec_read(ks, cx, v, r.a, r.b, value, c)
        if r.flags & REC_NO_DATA:
            return _exec_zero_write(ks, cx, v, r.a, r.b, value)
        return vmo_transfer(ks, v, NULL if r.flags & REC_NULL_BUFFER else <uint8_t *>side + r.c,
                            r.a, r.b, value, True)
    if call == CALL_VMO_CREATE:
        status = sys_create(ks, r.a, r.x, &out)
    elif call == CALL_VMO_GET_SIZE:
        status = sys_get_size(ks, handle, &v64)
        value[0] = v64
        return status
    elif call == CALL_VMO_SET_SIZE:
        return sys_set_size(ks, handle, r.a)
    elif call == CALL_VMO_CLONE:
        status = sys_clone(ks, handle, r.x, r.a, r.b, &out)
    elif call == CALL_HANDLE_CLOSE:
        return sys_handle_close(ks, handle)
    elif call == CALL_HANDLE_DUPLICATE:
        status = sys_handle_duplicate(ks, handle, r.x, &out)
    elif call == CALL_HANDLE_REPLACE:
        status = sys_handle_replace(ks, handle, r.x, &out)
    elif call == CALL_OBJECT_GET_INFO:
        memset(&info, 0, sizeof(info))
        status = sys_get_info(ks, handle, r.x, &info)
        if status == NO_ERROR and r.x == MX_INFO_HANDLE_BASIC:
            value[0] = info.koid
            c[0] = info_word(&info)
        return status
    elif call == CALL_EVENT_CREATE:
        status = sys_event_create(ks, r.x, &out)
    elif call == CALL_VMO_COMMITTED_BYTES:
        status = sys_committed_bytes(ks, handle, &v64)
        value[0] = v64
        return status
    elif call == CALL_VMO_CREATE_CONTIGUOUS:
        status = sys_create_contiguous(ks, r.a, r.x, &out)
    else:
        return _exec_phys(ks, cx, r, side, value, c)
    value[0] = out
    return status


cdef int _record_run(trace_writer *w, const trace_rec *r, uint32_t handle, int status,
                     uint64_t value, uint64_t c, const uint8_t *side) noexcept nogil:
    """Record a call a batch ran (its REF resolved), C only: a write's bytes copied to the
    side section (`c` their offset there; 0 for a write without side bytes). 0, or -1 with
    the failure in `w.err`."""
    cdef uint64_t off = 0
    cdef bint write = (r.call == CALL_VMO_WRITE or r.call == CALL_PHYS_WRITE
                       or r.call == CALL_PHYS_VIEW_RELEASE)
    if rec_uses_side(r) and tw_side_c(w, side + r.c, r.b, &off):
        return -1
    return tw_put_c(w, r.call, status, r.flags & ~(<uint16_t>REC_REF), handle, r.x, r.a, r.b,
                    off if write else c, value)


cdef uint64_t run_records(kernel_state *ks, exec_ctx *cx, const trace_rec *recs, uint64_t n,
                          const uint8_t *side, int *statuses, uint64_t *values, uint64_t *cs,
                          uint64_t *entry_start, bint check, uint64_t *first_bad,
                          int *bad_status, uint64_t *bad_value,
                          uint64_t *bad_c) noexcept nogil:
    """Run `n` validated records; REF handles resolve through cx.values (each record's
    value, 0 when it failed: room for `n`). With `check`, count the records whose status,
    value or (for calls whose c is a result) c differ from the recorded ones, and give the
    first one's index and what it gave. The out arrays (`statuses`, `values`, `cs`,
    `entry_start` of n + 1) may be NULL. Returns the mismatches; `cx.done` is the records
    run. Stops early on HOST_NO_MEMORY (`cx.error`) or a failure of the recording writer
    (its `err`): the caller raises them once it holds the GIL again."""
    cdef uint64_t i, value, c, mismatches = 0
    cdef uint32_t handle
    cdef int status
    cdef const trace_rec *r
    cdef uint64_t *refs = cx.values
    cx.error = 0
    for i in range(n):
        r = &recs[i]
        handle = r.handle
        if r.flags & REC_REF:
            handle = <uint32_t>refs[r.handle]
        if entry_start != NULL:
            entry_start[i] = cx.nentries
        status = exec_rec(ks, cx, r, handle, side, &value, &c)
        if status == HOST_NO_MEMORY:
            cx.error = status
            cx.done = i
            return mismatches
        refs[i] = value if status == NO_ERROR else 0
        if statuses != NULL:
            statuses[i] = status
            values[i] = value
            cs[i] = c
        if cx.rec != NULL and _record_run(cx.rec, r, handle, status, value, c, side):
            cx.done = i + 1
            return mismatches
        if check and (status != r.status or value != r.value
                      or (compares_c(r.call) and c != r.c)):
            if mismatches == 0:
                first_bad[0] = i
                bad_status[0] = status
                bad_value[0] = value
                bad_c[0] = c
            mismatches += 1
    if entry_start != NULL:
        entry_start[n] = cx.nentries
    cx.done = n
    return mismatches


cdef int cx_values(exec_ctx *cx, uint64_t n) except -1:
    """Room for `n` REF values."""
    cdef uint64_t *grown
    if n > cx.values_cap:
        grown = <uint64_t *>realloc(cx.values, (n if n else 1) * 8)
        if grown == NULL:
            raise MemoryError()
        cx.values = grown
        cx.values_cap = n
    return 0


# -- the drivers: the record loop owns the kernel and runs without the GIL -------------------
cdef int _run_checked(exec_ctx *cx) except -1:
    """After a record loop, GIL held again: raise what stopped it (a host allocation
    failure, or the recording writer's failure: the calls before it stay run)."""
    if cx.error == HOST_NO_MEMORY:
        cx.error = 0
        raise MemoryError("the host refused an allocation")
    if cx.rec != NULL and cx.rec.err:
        tw_raise(cx.rec)
    return 0


cdef object run_batch(KernelCore k, object records, object data):
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
        # (A typed bound: an untyped 0xFFFFFFFF made Cython compare Python ints, one object a
        # record.)
        code = rec_check(&recs[i], <uint32_t>i if i < <uint64_t>0xFFFFFFFF else 0xFFFFFFFF,
                         side_len, False)
        if code:
            raise ValueError("batch record %d: %s" % (i, rec_problem(code)))
    # Every entry is written by the loop (uninitialised until then: no zeroing pass; an
    # early stop raises and drops them).
    statuses = carray.clone(_I_TEMPLATE, n, False)
    values = carray.clone(_Q_TEMPLATE, n, False)
    cvals = carray.clone(_Q_TEMPLATE, n, False)
    entry_start = carray.clone(_Q_TEMPLATE, n + 1, False)
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
        _run_checked(&cx)
        entries = carray.clone(_Q_TEMPLATE, cx.nentries, False)
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
    cdef KernelCore k
    cdef exec_ctx cx
    cdef uint64_t ops = 0, mismatches = 0, m, fb = 0, bv = 0, bc = 0, first_index = 0
    cdef int bs = 0, first_status = 0
    cdef uint64_t first_value = 0, first_c = 0
    cdef trace_rec first_rec
    cdef bint c_check = check, have_first = False
    try:
        coherent, line, lines = rd.cache_options
        # The state only: no syscall runs in Python.
        k = KernelCore(memory=rd.memory_map, coherent=coherent, cache_line=line,
                       cache_lines=lines)
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
                    _run_checked(&cx)
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
