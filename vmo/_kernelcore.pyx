"""The kernel's core: `KernelCore`, one simulated machine and its C-level API.

`KernelCore` holds the kernel's shared C state (`kernel_state`, _state.pxd) and its lifetime
(construction from a memory map, close, teardown), the properties and `stats()`, and the
C-level API: the `c_*` methods, one per syscall (contract in _kernelcore.pxd, documented in
vmo/api.pxd). `Kernel` (_kernel.pyx, the syscall layer) is its subclass with the Python
syscalls. The checked cores (`sys_*`, _syscalls.pxi) and the calls behind the ownership
protocol (`_c_*`, _calls.pxi) are included here and in _kernel.pyx: one source, and each
module calls its own static copy, so no call crosses a module boundary on its way to a core.

Threads (docs/semantics.md "Threads"): every call reaches its core through a `_c_*` helper
that waits while another thread owns the kernel (`kernel_state.busy`, _state.pxd); a long
call (more than LONG_PAGES pages or LONG_BYTES bytes) owns the kernel itself and runs its
core with the GIL released. The cores and the object layer are nogil C over C structs; a
host allocation failure comes back as HOST_NO_MEMORY and is raised as MemoryError.

Recording (docs/trace-format.md): inside ``with k.record(path):`` (Kernel.record) `_rec` is
the trace writer, and each c_* method appends its call's record after its core (the shared
pieces in _rec_calls.pxi, the longer paths `_rec_c_*` here); otherwise it costs one test.
"""

from cpython.pythread cimport PyThread_allocate_lock, PyThread_free_lock
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy

from vmo._cache cimport (cache_bytes, cache_clear_events, cache_forget_frame, cache_free,
                         cache_new, coherency_event, cpu_cache)
from vmo._frames cimport pool_destroy, pool_free_count, pool_init
from vmo._handles cimport ht_destroy, ht_full, ht_get, ht_init, ht_install, ht_uninstall
from vmo._object cimport OBJ_VMO, obj_header
from vmo._physmem cimport (phys_host, phys_pin_range, phys_range, phys_read_owned,
                           phys_unpin_range, phys_write_owned)
from vmo._snapshot cimport Snapshot, dirty_log_copy, dirty_log_read, snap_restore, snap_take
from vmo._state cimport (FIRST_KOID, LONG_BYTES, LONG_PAGES, change_event, change_fn,
                         kernel_state, ks_enter, ks_leave, ks_wait, ks_wait_idle, notify_state,
                         watch_entry)
from vmo._status cimport *
from vmo._trace cimport tw_close, tw_put, tw_side
from vmo._tracerec cimport *
from vmo._vmobject cimport (event_new, obj_unref, trim_range, vm_object, vmo_cache_op,
                            vmo_commit, vmo_decommit, vmo_find_page, vmo_lookup, vmo_new,
                            run_list, vmo_lookup_runs, vmo_run,
                            vmo_new_contiguous, vmo_release_all, vmo_release_cost,
                            vmo_resize, vmo_transfer)

from vmo._coherency import EVENT_KINDS, CoherencyEvent, cache_options
from vmo._memmap import memory_map, merge_arenas


cdef kernel_state *_open_state_slow(KernelCore k) except NULL:
    if k.ks.closed:
        raise ValueError("kernel is closed")
    ks_wait(&k.ks)
    k.ks.seq += 1
    return &k.ks


cdef inline kernel_state *_open_state(KernelCore k) except NULL:
    """The kernel's state, for a c_* method (one kernel call: the call counter `seq` goes
    up by one): ValueError once the kernel is closed; waits while another thread owns it
    (_state.pxd)."""
    if k.ks.closed or k.ks.busy:
        return _open_state_slow(k)
    k.ks.seq += 1
    return &k.ks


cdef int _deliver_events(KernelCore k) except -1:
    """Hand the events not yet delivered to `on_coherency_event` (GIL held, after the
    call). The callback may make calls (more events: delivered in this loop) or clear the
    list (the loop ends)."""
    cdef cpu_cache *c = k.ks.cache
    while c != NULL and c.delivered < c.nevents:
        if k._on_event is None:
            c.delivered = c.nevents
            return 0
        event = _event_object(&c.events[c.delivered])
        c.delivered += 1
        k._on_event(event)
        c = k.ks.cache
    return 0


cdef object _event_object(const coherency_event *e):
    return CoherencyEvent(EVENT_KINDS[e.kind], e.paddr, e.koid if e.koid else None,
                          e.offset if e.koid else None, e.seq)


# -- change notifications (docs/semantics.md "Change notifications") -------------------------
# The subscriptions are C entries (ks.notify, _state.pxd), sorted by (koid, id); a Python
# subscription's entry calls `py_change` with its callback (a reference the entry owns).
# The object layer queues events during a call; `notify_deliver` runs after the call, with
# the GIL, in queue order, each event to the VMO's subscriptions in subscription order; an
# exception in a Python callback is kept (the first one) and raised once every callback ran.

cdef int watch_add(kernel_state *ks, uint32_t handle, change_fn fn, void *ctx, bint py,
                   uint64_t *out) except -1000:
    """Subscribe `fn(ctx, offset, length)` to the VMO of `handle` (no rights needed):
    NO_ERROR and the subscription's id in `out`, ERR_BAD_HANDLE, ERR_WRONG_TYPE."""
    cdef uint32_t rights
    cdef int status
    cdef vm_object *v
    cdef notify_state *ns
    cdef watch_entry *grown
    cdef uint64_t i, cap
    out[0] = 0
    if ks.busy:
        ks_wait(ks)
    v = _vmo(ks, handle, 0, &rights, &status)
    if v == NULL:
        return status
    ns = ks.notify
    if ns == NULL:
        ns = <notify_state *>calloc(1, sizeof(notify_state))
        if ns == NULL:
            raise MemoryError("the host refused an allocation")
        ns.next_id = 1
        ks.notify = ns
    if ns.nentries == ns.cap_entries:
        cap = ns.cap_entries * 2 if ns.cap_entries else 8
        grown = <watch_entry *>realloc(ns.entries, cap * sizeof(watch_entry))
        if grown == NULL:
            raise MemoryError("the host refused an allocation")
        ns.entries = grown
        ns.cap_entries = cap
    # After the last entry of a lower or equal koid (ids grow: the new one is the last).
    i = ns.nentries
    while i and ns.entries[i - 1].koid > v.hdr.koid:
        ns.entries[i] = ns.entries[i - 1]
        i -= 1
    ns.entries[i].id = ns.next_id
    ns.entries[i].koid = v.hdr.koid
    ns.entries[i].obj = <void *>v
    ns.entries[i].fn = fn
    ns.entries[i].ctx = ctx
    ns.entries[i].py = py
    if py:
        Py_INCREF(<object>ctx)
    ns.nentries += 1
    out[0] = ns.next_id
    ns.next_id += 1
    return NO_ERROR


cdef Py_ssize_t watch_find(notify_state *ns, uint64_t id) noexcept:
    cdef uint64_t i
    if ns != NULL:
        for i in range(ns.nentries):
            if ns.entries[i].id == id:
                return <Py_ssize_t>i
    return -1


cdef void watch_drop(notify_state *ns, uint64_t i) noexcept:
    """Remove entry i (releasing a Python callback after the array is consistent)."""
    cdef watch_entry e = ns.entries[i]
    cdef uint64_t j
    for j in range(i + 1, ns.nentries):
        ns.entries[j - 1] = ns.entries[j]
    ns.nentries -= 1
    if e.py:
        Py_DECREF(<object>e.ctx)


cdef void _notify_clear(kernel_state *ks) noexcept:
    """Kernel close: every subscription ends, pending events are dropped; the state itself
    goes unless a delivery is running (it frees it when it ends)."""
    cdef notify_state *ns = ks.notify
    if ns == NULL:
        return
    ns.nevents = ns.head = 0
    while ns.nentries:
        watch_drop(ns, ns.nentries - 1)
    if not ns.delivering and ks.notify == ns:
        free(ns.entries)
        free(ns.events)
        free(ns)
        ks.notify = NULL


cdef int _notify_rebind(kernel_state *ks) except -1:
    """After a restore (the objects may have been freed and made again): each subscription
    follows the VMO of its koid if the restored kernel has one, else it ends, without a
    callback (docs/semantics.md "Change notifications"). Cost: the objects reachable from
    the handle table, plus the subscriptions."""
    cdef notify_state *ns = ks.notify
    cdef obj_header *p
    cdef uint32_t slot
    cdef uint64_t i
    if ns == NULL:
        return 0
    ns.nevents = ns.head = 0
    live = {}           # koid -> the VMO's address, for every VMO reachable
    for slot in range(ks.handles.nslots):
        p = ks.handles.objs[slot]
        while p != NULL and p.type == OBJ_VMO and p.koid not in live:
            live[p.koid] = <uintptr_t>p
            p = <obj_header *>(<vm_object *>p).parent
    i = 0
    while i < ns.nentries:
        addr = live.get(ns.entries[i].koid)
        if addr is None:
            watch_drop(ns, i)
        else:
            ns.entries[i].obj = <void *><uintptr_t>addr
            i += 1
    return 0


cdef int notify_deliver(KernelCore k) except -1:
    """Deliver the pending change events (GIL held): each event to every subscription of
    its VMO, in subscription order (a callback may subscribe, cancel or call the kernel:
    the events of those calls are delivered after the pending ones, by this loop); after a
    destruction event the VMO's subscriptions end. The first exception a Python callback
    raised is raised at the end, after every other callback ran; else MemoryError if events
    were lost. Cost: the events times the subscriptions of their VMOs."""
    cdef kernel_state *ks = &k.ks
    cdef notify_state *ns = ks.notify
    cdef change_event ev
    cdef watch_entry e
    cdef uint64_t last, i
    cdef Py_ssize_t found
    cdef bint lost
    first = None
    if ns == NULL or ns.delivering:
        return 0
    ns.delivering = True
    try:
        while ns.head < ns.nevents:
            ev = ns.events[ns.head]
            ns.head += 1
            last = 0
            while True:
                found = -1
                for i in range(ns.nentries):
                    if ns.entries[i].koid == ev.koid and ns.entries[i].id > last:
                        found = <Py_ssize_t>i
                        break
                if found < 0:
                    break
                e = ns.entries[found]
                last = e.id
                if ev.length:
                    if e.py:
                        callback = <object>e.ctx     # a reference of our own for the call
                        try:
                            callback(ev.offset, ev.length)
                        except BaseException as exc:
                            if first is None:
                                first = exc
                        callback = None
                    else:
                        e.fn(e.ctx, ev.offset, ev.length)
            if ev.destroyed:
                i = 0
                while i < ns.nentries:
                    if ns.entries[i].koid == ev.koid:
                        watch_drop(ns, i)
                    else:
                        i += 1
        ns.nevents = ns.head = 0
    finally:
        ns.delivering = False
        lost = ns.lost
        ns.lost = False
        if ks.closed:
            _notify_clear(ks)
    if first is not None:
        raise first
    if lost:
        raise MemoryError("the host refused memory for change events: some were lost")
    return 0


cdef void _teardown(kernel_state *ks) noexcept:
    """Destroy every object (iteratively, so long clone chains cannot recurse), then give
    the arena and the tables back to the host; while physical views are alive the arena
    stays mapped and the last view to go releases it (no use-after-free from Python). With
    many pages committed, the objects are destroyed while owning the kernel, GIL released."""
    ks_wait_idle(ks)
    if ks.closed:
        return
    # Live snapshots keep only their own memory: nothing is saved for them any more.
    ks.pool.snap = NULL
    ks.pool.snap_epoch = 0
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
    _notify_clear(ks)
    # Every frame is free or orphaned now: no line is left, and no call can come.
    ks.pool.forget = NULL
    cache_free(ks.cache)
    ks.cache = NULL
    if ks.pool.npinned == 0:
        pool_destroy(&ks.pool)


include "_syscalls.pxi"
include "_calls.pxi"
include "_rec_calls.pxi"


# -- the recording paths of the c_* methods whose record needs more than the call's outputs
cdef int _rec_c_write_impl(KernelCore k, uint32_t handle, const void *src, uint64_t offset,
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


cdef int _rec_c_op_range_impl(KernelCore k, uint32_t handle, uint32_t op, uint64_t offset,
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


cdef int _rec_c_phys_write_impl(KernelCore k, uint64_t paddr, const void *src,
                                uint64_t length) except -1000:
    """c_phys_write while recording: the bytes are recorded only when the call reads them
    (docs/trace-format.md)."""
    cdef uint64_t first = 0, count = 0, off = 0
    cdef int status
    cdef kernel_state *ks = _open_state(k)
    if phys_range(ks, paddr, length, &first, &count) == NO_ERROR:
        tw_side(k._rec, src, length, &off)
        status = phys_write_owned(ks, paddr, src, length)
        tw_put(k._rec, CALL_PHYS_WRITE, status, 0, 0, 0, paddr, length, off,
               length if status == NO_ERROR else 0)
        return status
    status = phys_write_owned(ks, paddr, src, length)
    tw_put(k._rec, CALL_PHYS_WRITE, status, REC_NO_DATA, 0, 0, paddr, length, 0, 0)
    return status


# Called through pointers, as the paths of _rec_calls.pxi (see there: no inlining into the
# c_* methods).
ctypedef int (*_rec_c_write_fn)(KernelCore, uint32_t, const void *, uint64_t, uint64_t,
                                uint64_t *) except -1000
ctypedef int (*_rec_c_op_range_fn)(KernelCore, uint32_t, uint32_t, uint64_t, uint64_t, void *,
                                   uint64_t) except -1000
ctypedef int (*_rec_c_phys_write_fn)(KernelCore, uint64_t, const void *,
                                     uint64_t) except -1000
cdef _rec_c_write_fn _rec_c_write = _rec_c_write_impl
cdef _rec_c_op_range_fn _rec_c_op_range = _rec_c_op_range_impl
cdef _rec_c_phys_write_fn _rec_c_phys_write = _rec_c_phys_write_impl


cdef class KernelCore:
    """The kernel's state and lifetime, its properties and `stats()`, and the C-level API
    (the `c_*` methods). Not used alone: `Kernel` (vmo._kernel) is the machine."""

    def __cinit__(self):
        self._rec = NULL
        self.ks.closed = True
        self.ks.busy = False
        self.ks.pool.mem = NULL
        self.ks.handles.objs = NULL
        self.ks.notify = NULL
        self.ks.gate = PyThread_allocate_lock()
        if self.ks.gate == NULL:
            raise MemoryError("cannot allocate the kernel's lock")

    def __init__(self, memory_size=None, *, memory_base=None, memory=None, coherent=True,
                 cache_line=64, cache_lines=None, on_coherency_event=None):
        if not self.ks.closed or self.ks.pool.mem != NULL:
            raise RuntimeError("Kernel.__init__ called twice")
        ranges = memory_map(memory_size, memory_base, memory)
        self._cache_options = cache_options(coherent, cache_line, cache_lines)
        self._on_event = on_coherency_event
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
        self.ks.seq = 0
        self.ks.cache = NULL
        if not coherent:
            self.ks.cache = cache_new(cache_line, cache_lines or 0, &self.ks.seq)
            if self.ks.cache == NULL:
                ht_destroy(&self.ks.handles)
                pool_destroy(&self.ks.pool)
                raise MemoryError("the host refused an allocation")
            self.ks.pool.forget = cache_forget_frame
            self.ks.pool.forget_ctx = self.ks.cache
        self.ks.closed = False

    def __dealloc__(self):
        if self._rec != NULL:
            # Gone while recording (never left its `with`): end the file, still open here.
            try:
                tw_close(self._rec, True)
            except BaseException:
                pass
            self._rec = NULL
        if not self.ks.closed:
            _teardown(&self.ks)
        cache_free(self.ks.cache)
        self.ks.cache = NULL
        if self.ks.pool.mem != NULL:
            pool_destroy(&self.ks.pool)
        _notify_clear(&self.ks)
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

    def stats(self):
        """A dict: total_frames, free_frames, committed_frames (not free: held by VMOs or
        pinned by a physical view after their VMO let go), vmos, handles, pinned_frames, plus
        memory_base, memory_size and the allocator's zeroing counters. O(1)."""
        cdef uint64_t nfree, nframes, npinned, released, zeroed, lines, dirty
        cdef Py_ssize_t nvmos
        cdef uint32_t nhandles
        _open(self)
        _idle(&self.ks)
        # Read everything before making Python objects (which may run other threads).
        nfree = pool_free_count(&self.ks.pool)
        nframes = self.ks.pool.nframes
        nvmos = self.ks.nvmos
        nhandles = self.ks.handles.count
        npinned = self.ks.pool.npinned
        released = self.ks.pool.released_runs
        zeroed = self.ks.pool.zeroed_frames
        lines = self.ks.cache.nlines if self.ks.cache != NULL else 0
        dirty = self.ks.cache.ndirty if self.ks.cache != NULL else 0
        return {
            "total_frames": nframes,
            "free_frames": nfree,
            "committed_frames": nframes - nfree,
            "vmos": nvmos,
            "handles": nhandles,
            "memory_base": self._memory_base,
            "memory_size": self._memory_size,
            "pinned_frames": npinned,
            "released_runs": released,
            "zeroed_frames": zeroed,
            "cache_lines": lines,
            "dirty_lines": dirty,
        }

    # -- machine services: the dirty log and snapshots (vmo/_snapshot.pyx) -------------------
    def dirty_log(self, clear=True):
        """The physical addresses of the frames whose bytes may have changed since the log
        was last cleared (or the kernel made), ascending, as an array('Q'); then clear it
        unless `clear` is false. A frame is logged when written (vmo_write, phys_write, a
        batch or replay), copied into by copy-on-write, pinned, freed while it may hold
        nonzero bytes (it reads as zero from then on: docs/semantics.md "The dirty log"),
        or rewritten by a restore; a pinned frame is in every result. Cost: O(k log k) for k
        frames logged; O(1) per logged write."""
        _open(self)
        _idle(&self.ks)
        return dirty_log_read(&self.ks, bool(clear))

    def snapshot(self):
        """A `Snapshot` of the whole kernel, for `restore`. Several may live at once; each
        can be restored any number of times; dropping one frees what it holds.
        MxError(ERR_BAD_STATE) while a physical view pins frames; ValueError while
        recording. Cost: O(objects + handles), independent of the memory committed; then
        each unit's first change after it (a frame's bytes, a frame's allocator entry, a
        VMO's page table) saves that unit's previous state once."""
        _open(self)
        _idle(&self.ks)
        if self._rec != NULL:
            raise ValueError("a recording kernel cannot take snapshots")
        if self.ks.cache != NULL:
            raise ValueError("a non-coherent kernel cannot take snapshots (the CPU cache "
                             "is not saved: docs/cache-model.md)")
        return snap_take(&self.ks, self)

    def restore(self, snapshot):
        """Make the kernel indistinguishable from when `snapshot` was taken: handles and
        their generations and free-slot order, objects and the koid counter, page tables,
        every byte, the allocator's state and order, and stats (docs/semantics.md
        "Snapshots"). The dirty log is not rewound: every frame whose bytes changed since
        the snapshot is logged. MxError(ERR_BAD_STATE) while a physical view pins frames
        (nothing changes); ValueError for another kernel's snapshot, a closed kernel or
        while recording; TypeError for anything but a Snapshot. Cost: the pre-images saved
        since the snapshot (frames and page-table leaves changed) plus objects and handles."""
        if not isinstance(snapshot, Snapshot):
            raise TypeError("restore() takes a Snapshot, not %s" % type(snapshot).__name__)
        _open(self)
        _idle(&self.ks)
        if self._rec != NULL:
            raise ValueError("a recording kernel cannot restore snapshots")
        snap_restore(&self.ks, self, <Snapshot>snapshot)
        _notify_rebind(&self.ks)

    cdef int c_dirty_log(self, uint64_t *out, uint64_t max_entries, bint clear,
                         uint64_t *count) except -1000:
        return dirty_log_copy(_open_state(self), out, max_entries, clear, count)

    # -- the cache model (docs/cache-model.md) -------------------------------------------------
    @property
    def coherent(self):
        """False when a CPU data cache sits between the CPU side and RAM."""
        return self._cache_options[0]

    @property
    def cache_line(self):
        """The cache line size in bytes (the option; 64 by default)."""
        return self._cache_options[1]

    @property
    def cache_lines(self):
        """The cache's capacity in lines, or None (unbounded)."""
        return self._cache_options[2]

    @property
    def on_coherency_event(self):
        """The callback given each coherency event (a `CoherencyEvent`) after the call
        that raised it, with the GIL held; None (the default) keeps events only. Settable."""
        return self._on_event

    @on_coherency_event.setter
    def on_coherency_event(self, callback):
        if callback is not None and not callable(callback):
            raise TypeError("on_coherency_event must be callable or None")
        self._on_event = callback

    def coherency_events(self, clear=True):
        """The coherency events raised since the list was last cleared, oldest first, as
        `CoherencyEvent` records; `clear` (default) empties the list. [] on a coherent
        kernel. ValueError once closed. Cost: the events."""
        cdef cpu_cache *c
        cdef uint64_t i
        _open(self)
        _idle(&self.ks)
        c = self.ks.cache
        if c == NULL:
            return []
        events = [_event_object(&c.events[i]) for i in range(c.nevents)]
        if clear:
            cache_clear_events(c)
        return events

    @property
    def _seq(self):
        """The call counter (a test instrument: coherency events carry it)."""
        return self.ks.seq

    def _cache_bytes(self):
        """Host bytes held by the cache model (0 when coherent): a test instrument."""
        _open(self)
        _idle(&self.ks)
        return cache_bytes(self.ks.cache) if self.ks.cache != NULL else 0

    # -- the C-level API (contract: _kernelcore.pxd; documented in vmo/api.pxd) ----------------
    cdef int c_create(self, uint64_t size, uint32_t options, uint32_t *out) except -1000:
        cdef int status = _host(sys_create(_open_state(self), size, options, out))
        if self._rec != NULL:
            _rec_append(self, CALL_VMO_CREATE, status, 0, 0, options, size, 0, 0, out[0])
        return status

    cdef int c_create_contiguous(self, uint64_t size, uint32_t alignment_log2,
                                 uint32_t *out) except -1000:
        cdef int status = _c_create_contiguous(_open_state(self), size, alignment_log2, out)
        if self._rec != NULL:
            _rec_append(self, CALL_VMO_CREATE_CONTIGUOUS, status, 0, 0, alignment_log2, size,
                        0, 0, out[0])
        return status

    cdef int c_get_size(self, uint32_t handle, uint64_t *size) except -1000:
        cdef int status = sys_get_size(_open_state(self), handle, size)
        if self._rec != NULL:
            _rec_append(self, CALL_VMO_GET_SIZE, status, 0, handle, 0, 0, 0, 0,
                        size[0] if status == NO_ERROR else 0)
        return status

    cdef int c_set_size(self, uint32_t handle, uint64_t size) except -1000:
        cdef int status = _c_set_size(_open_state(self), handle, size)
        if self._rec != NULL:
            _rec_append(self, CALL_VMO_SET_SIZE, status, 0, handle, 0, size, 0, 0, 0)
        _notify(self)
        return status

    cdef int c_read(self, uint32_t handle, void *dst, uint64_t offset, uint64_t length,
                    uint64_t *actual) except -1000:
        cdef int status = _c_transfer(_open_state(self), handle, <uint8_t *>dst, offset,
                                      length, actual, False)
        if self._rec != NULL:
            _rec_append(self, CALL_VMO_READ, status, REC_NULL_BUFFER if dst == NULL else 0,
                        handle, 0, offset, length,
                        hash64(<uint8_t *>dst, actual[0]) if status == NO_ERROR else 0, actual[0])
        _deliver(self)
        return status

    cdef int c_write(self, uint32_t handle, const void *src, uint64_t offset, uint64_t length,
                     uint64_t *actual) except -1000:
        cdef int status
        if self._rec != NULL:
            status = _rec_c_write(self, handle, src, offset, length, actual)
        else:
            status = _c_transfer(_open_state(self), handle, <uint8_t *>src, offset, length,
                                 actual, True)
        _notify(self)
        _deliver(self)
        return status

    cdef int c_op_range(self, uint32_t handle, uint32_t op, uint64_t offset, uint64_t size,
                        void *buffer, uint64_t buffer_size) except -1000:
        cdef int status
        if self._rec != NULL:
            status = _rec_c_op_range(self, handle, op, offset, size, buffer, buffer_size)
        else:
            status = _c_op_range(_open_state(self), handle, op, offset, size, buffer,
                                 buffer_size)
        _notify(self)
        _deliver(self)
        return status

    cdef int c_commit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000:
        cdef int status
        if self._rec != NULL:
            status = _rec_c_op_range(self, handle, MX_VMO_OP_COMMIT, offset, size, NULL, 0)
        else:
            status = _c_op_range(_open_state(self), handle, MX_VMO_OP_COMMIT, offset, size,
                                 NULL, 0)
        _notify(self)
        _deliver(self)
        return status

    cdef int c_decommit(self, uint32_t handle, uint64_t offset, uint64_t size) except -1000:
        cdef int status
        if self._rec != NULL:
            status = _rec_c_op_range(self, handle, MX_VMO_OP_DECOMMIT, offset, size, NULL, 0)
        else:
            status = _c_op_range(_open_state(self), handle, MX_VMO_OP_DECOMMIT, offset, size,
                                 NULL, 0)
        _notify(self)
        return status

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
            _rec_append(self, CALL_VMO_CLONE, status, 0, handle, options, offset, size, 0,
                        out[0])
        return status

    cdef int c_committed_bytes(self, uint32_t handle, uint64_t *out) except -1000:
        cdef int status = sys_committed_bytes(_open_state(self), handle, out)
        if self._rec != NULL:
            _rec_append(self, CALL_VMO_COMMITTED_BYTES, status, 0, handle, 0, 0, 0, 0, out[0])
        return status

    cdef int c_handle_close(self, uint32_t handle) except -1000:
        cdef int status = _c_handle_close(_open_state(self), handle)
        if self._rec != NULL:
            _rec_append(self, CALL_HANDLE_CLOSE, status, 0, handle, 0, 0, 0, 0, 0)
        _notify(self)
        return status

    cdef int c_handle_duplicate(self, uint32_t handle, uint32_t rights,
                                uint32_t *out) except -1000:
        cdef int status = sys_handle_duplicate(_open_state(self), handle, rights, out)
        if self._rec != NULL:
            _rec_append(self, CALL_HANDLE_DUPLICATE, status, 0, handle, rights, 0, 0, 0, out[0])
        return status

    cdef int c_handle_replace(self, uint32_t handle, uint32_t rights,
                              uint32_t *out) except -1000:
        cdef int status = sys_handle_replace(_open_state(self), handle, rights, out)
        if self._rec != NULL:
            _rec_append(self, CALL_HANDLE_REPLACE, status, 0, handle, rights, 0, 0, 0, out[0])
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
            _rec_append(self, CALL_EVENT_CREATE, status, 0, 0, options, 0, 0, 0, out[0])
        return status

    cdef int c_phys_read(self, uint64_t paddr, void *dst, uint64_t length) except -1000:
        cdef int status = phys_read_owned(_open_state(self), paddr, dst, length)
        if self._rec != NULL:
            _rec_append(self, CALL_PHYS_READ, status, 0, 0, 0, paddr, length,
                        hash64(<uint8_t *>dst, length) if status == NO_ERROR else 0, 0)
        _deliver(self)
        return status

    cdef int c_phys_write(self, uint64_t paddr, const void *src, uint64_t length) except -1000:
        if self._rec != NULL:
            return _rec_c_phys_write(self, paddr, src, length)
        return phys_write_owned(_open_state(self), paddr, src, length)

    cdef int c_lookup_runs(self, uint32_t handle, uint64_t offset, uint64_t size,
                           vmo_run *out, uint64_t max_runs, uint64_t *count) except -1000:
        cdef run_list runs
        cdef int status
        cdef uint64_t n
        runs.runs = NULL
        runs.count = 0
        runs.cap = 0
        count[0] = 0
        try:
            status = _c_lookup_runs(_open_state(self), handle, offset, size, &runs)
            if status:
                return status
            count[0] = runs.count
            n = runs.count if runs.count < max_runs else max_runs
            if n:
                memcpy(out, runs.runs, n * sizeof(vmo_run))
            return ERR_BUFFER_TOO_SMALL if runs.count > max_runs else NO_ERROR
        finally:
            free(runs.runs)

    cdef int c_pin(self, uint64_t paddr, uint64_t length, void **host) except -1000:
        cdef kernel_state *ks = _open_state(self)
        host[0] = NULL
        if self._rec != NULL:
            return ERR_NOT_SUPPORTED
        return phys_pin_range(ks, paddr, length, host)

    cdef int c_unpin(self, uint64_t paddr, uint64_t length) except -1000:
        cdef kernel_state *ks = _open_state(self)
        if self._rec != NULL:
            return ERR_NOT_SUPPORTED
        return phys_unpin_range(ks, paddr, length)

    cdef int c_host_address(self, uint64_t paddr, uint64_t length, void **host) except -1000:
        return phys_host(_open_state(self), paddr, length, host)

    cdef int c_on_change(self, uint32_t handle, change_fn fn, void *ctx,
                         uint64_t *subscription) except -1000:
        return watch_add(_open_state(self), handle, fn, ctx, False, subscription)

    cdef int c_cancel_change(self, uint64_t subscription) except -1000:
        cdef kernel_state *ks = _open_state(self)
        cdef Py_ssize_t i = watch_find(ks.notify, subscription)
        if i < 0 or ks.notify.entries[i].obj == NULL:
            return ERR_NOT_FOUND
        watch_drop(ks.notify, <uint64_t>i)
        return NO_ERROR
