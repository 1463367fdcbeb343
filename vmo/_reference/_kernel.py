"""`Kernel`, the syscall layer only: convert the arguments (`_args.Arguments`), check them in
Magenta's order (each handle once, through `Kernel._vmo` or `Kernel._handle`), call the
object layer (`_vmobject`, `_physmem`).

`Kernel` holds the syscalls and what goes through a handle; its base `_Machine` holds the
rest of the public class: construction and lifetime, the device-model calls, `stats`, and
the test hooks that need no handle.
"""

import operator

from .._coherency import cache_options
from .._memmap import memory_map, merge_arenas
from .._pythonic import PythonicKernel
from ..constants import (
    MX_DEFAULT_EVENT_RIGHTS,
    MX_DEFAULT_VMO_RIGHTS,
    MX_HANDLE_INVALID,
    MX_INFO_HANDLE_BASIC,
    MX_INFO_HANDLE_VALID,
    MX_OBJ_PROP_WAITABLE,
    MX_OBJ_TYPE_EVENT,
    MX_OBJ_TYPE_VMEM,
    MX_VMO_CLONE_COPY_ON_WRITE,
    MX_VMO_MAX_SIZE,
    PAGE_SIZE,
    Op,
    Rights,
)
from ..errors import Status
from ..records import HandleBasicInfo
from . import _invariants, _physmem, _snapshot
from ._args import (
    U64_MAX,
    Arguments,
    arg_transfer_buffer,
    bytes_view,
    phys_args,
    phys_data,
    writable,
)
from ._cache import CpuCache, cache_device
from ._frames import pool_destroy, pool_find_run, pool_free_count, pool_take_run
from ._handles import ht_full, ht_get, ht_install, ht_uninstall
from ._pagetable import pt_set
from ._state import KernelState
from ._vmobject import (
    VmoObject,
    event_new,
    page_ceil,
    trim_range,
    vmo_cache_op,
    vmo_commit,
    vmo_decommit,
    vmo_lookup,
    vmo_lookup_runs,
    vmo_new,
    vmo_resize,
    vmo_transfer,
    vmo_unref,
)

__all__ = ["Kernel"]

NO_ERROR = Status.NO_ERROR
ERR_NOT_SUPPORTED = Status.ERR_NOT_SUPPORTED
ERR_NO_MEMORY = Status.ERR_NO_MEMORY
ERR_INVALID_ARGS = Status.ERR_INVALID_ARGS
ERR_BAD_HANDLE = Status.ERR_BAD_HANDLE
ERR_WRONG_TYPE = Status.ERR_WRONG_TYPE
ERR_OUT_OF_RANGE = Status.ERR_OUT_OF_RANGE
ERR_ACCESS_DENIED = Status.ERR_ACCESS_DENIED

# Rights as plain ints (an IntFlag operand would send every `&` through the enum machinery).
_READ = int(Rights.READ)
_WRITE = int(Rights.WRITE)
_DUPLICATE = int(Rights.DUPLICATE)
# The clone rights of the normative era (docs/magenta.md 3.7): the source's | WRITE | EXECUTE | MAP.
_CLONE_EXTRA_RIGHTS = int(Rights.WRITE | Rights.EXECUTE | Rights.MAP)
_WRONG_TYPE_TOPICS = range(3, 14)  # process, job, thread, resource, vmar, task topics
_CACHE_OPS = (Op.CACHE_SYNC, Op.CACHE_INVALIDATE, Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE)


def _derived_rights(entry, rights):
    """Rights derived from the handle ``entry``: SAME_RIGHTS (exactly) or a subset, else None."""
    if rights == Rights.SAME_RIGHTS:
        return entry.rights
    if entry.rights & rights != rights:
        return None
    return rights


class _Machine(PythonicKernel):
    """What a `Kernel` is around its syscalls: construction and lifetime, the device-model
    calls (they raise `MxError` rather than return a status), `stats` and the test hooks
    that need no handle."""

    def __init__(self, memory_size=None, *, memory_base=None, memory=None, coherent=True,
                 cache_line=64, cache_lines=None, on_coherency_event=None):
        ranges = memory_map(memory_size, memory_base, memory)
        self._cache_options = cache_options(coherent, cache_line, cache_lines)
        self._memory_map = tuple(ranges)
        # Ranges that touch are one arena, so that physical accesses may cross the seam.
        self._state = KernelState(merge_arenas(ranges))
        self.on_coherency_event = on_coherency_event
        if not coherent:
            self._state.cache = self._state.pool.cache = CpuCache(cache_line, cache_lines)

    # -- the cache model (docs/cache-model.md) ---------------------------------------------
    @property
    def coherent(self):
        """False when a CPU data cache sits between the CPU side and RAM."""
        return self._cache_options[0]

    @property
    def cache_line(self):
        """The cache line size in bytes."""
        return self._cache_options[1]

    @property
    def cache_lines(self):
        """The cache's capacity in lines, or None (unbounded)."""
        return self._cache_options[2]

    def coherency_events(self, clear=True):
        """The coherency events since the list was last cleared, oldest first (clear: empty
        it). [] on a coherent kernel."""
        self._ensure_open()
        cache = self._state.cache
        if cache is None:
            return []
        events = list(cache.events)
        if clear:
            cache.events.clear()
            cache.delivered = 0
        return events

    @property
    def _seq(self):
        """The call counter (a test instrument: coherency events carry it)."""
        return self._state.seq

    def _call(self):
        """The start of every kernel call: the closed check, then one on the call counter."""
        self._ensure_open()
        self._state.seq += 1

    _batch_depth = 0    # > 0 inside run(): its coherency events are delivered after it

    def _deliver_coherency(self):
        """Hand the new coherency events to ``on_coherency_event`` (after the call; after a
        batch's last record)."""
        cache = self._state.cache
        if self._batch_depth:
            return
        while cache is not None and cache.delivered < len(cache.events):
            if self.on_coherency_event is None:
                cache.delivered = len(cache.events)
                return
            event = cache.events[cache.delivered]
            cache.delivered += 1
            self.on_coherency_event(event)

    # -- lifetime ----------------------------------------------------------------------------
    @property
    def memory_map(self):
        """The RAM ranges, ((base, size), ...), in allocation order (as given)."""
        return self._memory_map

    @property
    def memory_size(self):
        """Bytes of simulated physical memory (all ranges)."""
        return self._state.pool.nframes * PAGE_SIZE

    @property
    def memory_base(self):
        """Physical address of frame 0 (the first range's base)."""
        return self._memory_map[0][0]

    @property
    def closed(self):
        """True once `close` has been called."""
        return self._state.closed

    def close(self):
        """Close every handle and free everything; idempotent. Later calls raise ValueError.

        Live physical views keep the mapping (they hold it): it goes with the last of them."""
        state = self._state
        if state.closed:
            return
        if self._recorder is not None:
            self._recorder.close()
        executor = self.__dict__.pop("_executor", None)
        if executor is not None:
            executor.release_all()
        for value in sorted(state.handles.entries):
            vmo_unref(state, ht_uninstall(state.handles, value).obj)
        assert not state.objects and not state.handles.entries
        state.closed = True
        state.watches.clear()  # every subscription ends, without a callback
        state.events.clear()
        pool_destroy(state.pool)

    def _ensure_open(self):
        if self._state.closed:
            raise ValueError("kernel is closed")

    def __repr__(self):
        if self._state.closed:
            return "<vmo._reference.Kernel closed>"
        return f"<vmo._reference.Kernel memory={[(hex(b), hex(s)) for b, s in self._memory_map]}>"

    # -- physical memory access (device models; docs/semantics.md "Physical access") ---------
    def phys_read(self, paddr, length):
        """What a device reads at physical address ``paddr``: ``length`` bytes.

        Raises MxError(ERR_OUT_OF_RANGE) unless the range lies inside one arena of physical
        memory, ERR_BAD_STATE if a page it touches is not held by a VMO."""
        self._call()
        paddr, length = phys_args(paddr, length)
        data = _physmem.phys_read(self._state.pool, paddr, length)
        if self._state.cache is not None and length:
            cache_device(self._state, paddr, _physmem.phys_range(self._state.pool, paddr,
                                                                 length)[0], length, False)
            self._deliver_coherency()
        return data

    def phys_write(self, paddr, data):
        """A device writes ``data`` (any contiguous buffer, else ERR_INVALID_ARGS) at physical
        address ``paddr``; returns the bytes written. Errors as `phys_read`."""
        self._call()
        paddr = operator.index(paddr)  # before the data: its TypeError wins
        with phys_data(data) as view:
            paddr, _ = phys_args(paddr, view.nbytes)
            written = _physmem.phys_write(self._state.pool, paddr, view.tobytes())
            if self._state.cache is not None and written:
                cache_device(self._state, paddr, _physmem.phys_range(self._state.pool, paddr,
                                                                     written)[0], written, True)
            return written

    def phys_view(self, paddr, length):
        """A writable, zero-copy memoryview (format "B") of physical memory, as a device sees
        it. Until the view is released (``view.release()`` or its last reference dropped),
        every frame it touches is pinned: never handed out again, even when its VMO lets go of
        it meanwhile (then it is freed with its last pin). Errors as `phys_read`."""
        self._call()
        paddr, length = phys_args(paddr, length)
        return _physmem.phys_view(self._state, paddr, length)

    # -- machine services: the dirty log and snapshots (_snapshot) ---------------------------
    def dirty_log(self, clear=True):
        """The physical addresses of the frames whose bytes may have changed since the log
        was last cleared, ascending, as array('Q'); then clear it unless ``clear`` is false
        (docs/semantics.md "The dirty log")."""
        self._ensure_open()
        return _snapshot.dirty_log_read(self._state.pool, bool(clear))

    def snapshot(self):
        """A `Snapshot` of the whole kernel for `restore` (docs/semantics.md "Snapshots").
        MxError(ERR_BAD_STATE) while frames are pinned; ValueError while recording."""
        self._ensure_open()
        if self._recorder is not None:
            raise ValueError("a recording kernel cannot take snapshots")
        if self._state.cache is not None:
            raise ValueError("a non-coherent kernel cannot take snapshots (the CPU cache "
                             "is not saved: docs/cache-model.md)")
        return _snapshot.snap_take(self, self._state)

    def restore(self, snapshot):
        """Make the kernel what it was when ``snapshot`` was taken. MxError(ERR_BAD_STATE)
        while frames are pinned; ValueError for another kernel's snapshot, a closed kernel
        or while recording; TypeError for anything but a Snapshot."""
        if not isinstance(snapshot, _snapshot.Snapshot):
            raise TypeError(f"restore() takes a Snapshot, not {type(snapshot).__name__}")
        self._ensure_open()
        if self._recorder is not None:
            raise ValueError("a recording kernel cannot restore snapshots")
        _snapshot.snap_restore(self, self._state, snapshot)
        # Each change subscription follows the VMO of its koid in the restored kernel, or
        # ends (no callback): docs/semantics.md "Change notifications".
        state = self._state
        state.events.clear()
        state.watches[:] = [w for w in state.watches
                            if isinstance(state.objects.get(w[1]), VmoObject)]
        for watch in state.watches:
            watch[2] = state.objects[watch[1]]

    # -- counts ------------------------------------------------------------------------------
    def stats(self):
        """A dict: total_frames, free_frames, committed_frames (held by a VMO, or pinned after
        their VMO let go), vmos (live VMO objects), handles, pinned_frames (frames with at
        least one live physical view), memory_base, memory_size."""
        self._ensure_open()
        state = self._state
        total = state.pool.nframes
        free = pool_free_count(state.pool)
        return {
            "total_frames": total,
            "free_frames": free,
            "committed_frames": total - free,
            "vmos": sum(1 for obj in state.objects.values() if isinstance(obj, VmoObject)),
            "handles": len(state.handles.entries),
            "memory_base": self.memory_base,
            "memory_size": self.memory_size,
            "pinned_frames": len(state.pool.pins),
            "cache_lines": len(state.cache.lines) if state.cache is not None else 0,
            "dirty_lines": state.cache.dirty_lines if state.cache is not None else 0,
        }

    # -- save and load (docs/state-format.md; _statefile) --------------------------------------
    def save(self, path):
        """Write the kernel's whole state to the file ``path`` atomically (a temporary file
        in the same directory, synced, then renamed). ValueError if the kernel is closed,
        MxError(ERR_BAD_STATE) while a physical view is live, OSError from the file system
        (the previous file is then intact). Cost: the objects, pages and written frames."""
        from ._statefile import save
        save(self, path)

    @classmethod
    def load(cls, path):
        """A new kernel in the state saved at ``path`` (by either kernel). ValueError,
        naming the byte offset or section, for a truncated, corrupted, foreign or newer
        file; nothing is left half-built. Cost: the file's bytes."""
        from ._statefile import load
        return load(cls, path)

    def __reduce__(self):
        """Pickling goes through the state file's bytes (errors as `save`)."""
        from ._statefile import dumps, loads
        return loads, (type(self), dumps(self))

    # -- change notifications (docs/semantics.md "Change notifications") ---------------------
    def _watch(self, handle, callback):
        """Subscribe ``callback(offset, length)`` to the VMO of ``handle`` (no rights needed)
        -> (status, id): ERR_BAD_HANDLE, ERR_WRONG_TYPE, ERR_INVALID_ARGS (outside uint32)."""
        self._ensure_open()
        if not callable(callback):
            raise TypeError("the callback must be callable")
        arg = Arguments()
        handle = arg.u32(handle)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, 0
        status, entry = self._vmo(handle)
        if status:
            return status, 0
        state = self._state
        number = state.next_watch
        state.next_watch += 1
        state.watches.append([number, entry.obj.koid, entry.obj, callback])
        state.watches.sort(key=lambda w: (w[1], w[0]))
        return NO_ERROR, number

    def _find_watch(self, number):
        state = self._state
        if state.closed:
            return None
        for watch in state.watches:
            if watch[0] == number and watch[2] is not None:
                return watch
        return None

    def _unwatch(self, number):
        """End subscription ``number``: True if it was active."""
        watch = self._find_watch(number)
        if watch is None:
            return False
        self._state.watches.remove(watch)
        return True

    def _watching(self, number):
        """True while subscription ``number`` is active."""
        return self._find_watch(number) is not None

    def _deliver(self):
        """Deliver the pending change events, in order, each to the subscriptions of its VMO
        in subscription order (a callback's own calls queue theirs behind); a destruction
        event ends the VMO's subscriptions. The first exception a callback raises is raised
        once every callback ran."""
        state = self._state
        if state.delivering or not state.events:
            return
        state.delivering = True
        first = None
        try:
            while state.events:
                koid, offset, length, destroyed = state.events.pop(0)
                last = 0
                while True:
                    watch = next((w for w in state.watches if w[1] == koid and w[0] > last), None)
                    if watch is None:
                        break
                    last = watch[0]
                    if length:
                        try:
                            watch[3](offset, length)
                        except BaseException as exc:  # noqa: B036  (raised after the others)
                            if first is None:
                                first = exc
                if destroyed:
                    state.watches[:] = [w for w in state.watches if w[1] != koid]
        finally:
            state.delivering = False
        if first is not None:
            raise first

    # -- traces and batches (docs/trace-format.md; _trace, _exec, _recorder) ----------------
    _recorder = None

    def record(self, path):
        """Record every call made on this kernel into the trace file ``path`` until the
        returned context manager exits (``with k.record(path):``). ValueError unless the
        kernel is fresh (no object ever created, no frame ever handed out) and not already
        recording."""
        from ._recorder import Recorder
        return Recorder(self, path)

    def run(self, batch):
        """Run the records of ``batch`` (a `vmo.Batch`, or a (records, data) pair of
        buffers) -> `vmo.BatchResult`. Recorded when the kernel records. ValueError, naming
        the record, for a malformed batch (before any record runs)."""
        from ._exec import run_batch
        self._ensure_open()
        state = self._state
        outer = not state.delivering
        state.delivering = True  # the batch's events are delivered after its last record
        self._batch_depth += 1   # and its coherency events too
        try:
            return run_batch(self, batch, self._recorder)
        finally:
            if outer:
                state.delivering = False
                if not state.closed:
                    self._deliver()
            self._batch_depth -= 1
            if not state.closed:
                self._deliver_coherency()

    # -- test hooks ----------------------------------------------------------------------------
    def _allocator_state(self):
        """(next_fresh, freed frames from the bottom of the LIFO list to its top)."""
        self._ensure_open()
        return _invariants.allocator_state(self._state)

    def _check(self):
        """Walk every invariant; raise AssertionError naming the first one broken."""
        self._ensure_open()
        _invariants.check(self._state, self.stats())


class Kernel(_Machine):
    """One simulated machine: physical memory, its frame allocator and one process's handle table.

    ``Kernel(memory_size=1 << 30, *, memory_base=0x100000)``: ``memory_size`` bytes of physical
    memory starting at physical address ``memory_base``. ``Kernel(memory=[(base, size), ...])``:
    a memory map, RAM ranges with holes between them, allocated in the order given and
    ascending inside each. Bases and sizes must be page multiples, sizes positive, ranges
    disjoint and below 2**64, at most 2**32 - 2 pages in all (a base of 0 is allowed),
    else ValueError; TypeError for non-integers (`vmo._memmap.memory_map`).
    """

    # -- the handle checks, in Magenta's order ---------------------------------------------------
    def _handle(self, value, rights=0):
        """(status, entry) of handle ``value``: ERR_BAD_HANDLE, then ERR_ACCESS_DENIED if
        ``rights`` are missing."""
        entry = ht_get(self._state.handles, value)
        if entry is None:
            return ERR_BAD_HANDLE, None
        if entry.rights & rights != rights:
            return ERR_ACCESS_DENIED, None
        return NO_ERROR, entry

    def _vmo(self, value, rights=0):
        """(status, entry) of the VMO handle ``value``: ERR_BAD_HANDLE, ERR_ACCESS_DENIED,
        then ERR_WRONG_TYPE (rights before type); ``entry.obj`` is the VMO."""
        status, entry = self._handle(value, rights)
        if status:
            return status, None
        if not isinstance(entry.obj, VmoObject):
            return ERR_WRONG_TYPE, None
        return NO_ERROR, entry

    def _install(self, obj, rights):
        return ht_install(self._state.handles, obj, rights)

    # -- syscalls: VMOs ----------------------------------------------------------------------
    def vmo_create(self, size, options=0):
        """Create a VMO of ``size`` bytes, nothing committed -> (status, handle).

        Errors: ERR_INVALID_ARGS (options != 0), ERR_NO_MEMORY (size > MX_VMO_MAX_SIZE, full
        handle table). docs/magenta.md 3.1."""
        self._call()
        arg = Arguments()
        size, options = arg.u64(size), arg.u32(options)
        if arg.out_of_range or options != 0:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if size > MX_VMO_MAX_SIZE or ht_full(self._state.handles):
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        return NO_ERROR, self._install(vmo_new(self._state, size), MX_DEFAULT_VMO_RIGHTS)

    def vmo_create_contiguous(self, size, alignment_log2=0):
        """A VMO of ``size`` bytes rounded up to pages, committed at once to one physically
        contiguous run at a multiple of 2**alignment_log2 bytes (0 means 12) -> (status, handle).

        docs/magenta.md 3.12 without the resource handle; the run is the first fit
        (docs/semantics.md "Contiguous VMOs"). Errors: ERR_INVALID_ARGS (size 0,
        alignment_log2 below 12 but not 0, or 64 and above), ERR_NO_MEMORY (size >
        MX_VMO_MAX_SIZE, full handle table, no such run free). Nothing is created on failure."""
        self._call()
        arg = Arguments()
        size, alignment_log2 = arg.u64(size), arg.u32(alignment_log2)
        if arg.out_of_range or size == 0:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if alignment_log2 == 0:
            alignment_log2 = 12
        if not 12 <= alignment_log2 < 64:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        state = self._state
        if size > MX_VMO_MAX_SIZE or ht_full(state.handles):
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        count = page_ceil(size)
        if count > pool_free_count(state.pool):
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        start = pool_find_run(state.pool, count, 1 << alignment_log2)
        if start is None:
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        pool_take_run(state.pool, start, count)
        vmo = vmo_new(state, count * PAGE_SIZE)
        for index in range(count):
            pt_set(vmo.pages, index, start + index)
        return NO_ERROR, self._install(vmo, MX_DEFAULT_VMO_RIGHTS)

    def vmo_read(self, handle, buffer, offset, length=None):
        """Read into ``buffer[0:actual]`` -> (status, actual); never commits.

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (READ), ERR_WRONG_TYPE, ERR_INVALID_ARGS
        (buffer), ERR_OUT_OF_RANGE. docs/magenta.md 3.2."""
        return self._transfer(handle, buffer, offset, length, False)

    def vmo_write(self, handle, data, offset, length=None):
        """Write ``data[0:length]`` at ``offset``, committing the pages touched -> (status, actual).

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (WRITE), ERR_WRONG_TYPE, ERR_INVALID_ARGS
        (buffer), ERR_OUT_OF_RANGE, ERR_NO_MEMORY (the chunks written before stay written).
        docs/magenta.md 3.3."""
        return self._transfer(handle, data, offset, length, True)

    def _transfer(self, handle, buffer, offset, length, write):
        """vmo_read (``write`` False: into ``buffer``) or vmo_write (from it); a write's
        change events are delivered after it, then the coherency events."""
        try:
            return self._transfer_call(handle, buffer, offset, length, write)
        finally:
            if write:
                self._deliver()
            self._deliver_coherency()

    def _transfer_call(self, handle, buffer, offset, length, write):
        self._call()
        with Arguments() as arg:
            handle, view, offset = arg.u32(handle), arg.buffer(buffer), arg.u64(offset)
            length = arg.buffer_size(length, view)
            if arg.out_of_range:
                return ERR_INVALID_ARGS, 0
            status, entry = self._vmo(handle, _WRITE if write else _READ)
            if status:
                return status, 0
            if not arg_transfer_buffer(view, length, write):
                return ERR_INVALID_ARGS, 0
            vmo = entry.obj
            actual = trim_range(offset, length, vmo.size)
            if actual is None:
                return ERR_OUT_OF_RANGE, 0
            if actual and write:
                # The whole source is copied first (it may be physical memory itself).
                data = bytes(bytes_view(view)[:actual])
                status = vmo_transfer(self._state, vmo, offset, data, True)
                if status:
                    return status, 0
            elif actual:
                data = bytearray(actual)
                vmo_transfer(self._state, vmo, offset, data, False)
                bytes_view(view)[:actual] = data
            return NO_ERROR, actual

    def vmo_get_size(self, handle):
        """The VMO's byte size -> (status, size); no rights needed.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE. docs/magenta.md 3.4."""
        self._call()
        arg = Arguments()
        handle = arg.u32(handle)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, 0
        status, entry = self._vmo(handle)
        if status:
            return status, 0
        return NO_ERROR, entry.obj.size

    def vmo_set_size(self, handle, size):
        """Resize to ``size`` bytes; shrinking frees the pages past the new end -> status.

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (WRITE), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE
        (size > MX_VMO_MAX_SIZE). docs/magenta.md 3.5."""
        self._call()
        arg = Arguments()
        handle, size = arg.u32(handle), arg.u64(size)
        if arg.out_of_range:
            return ERR_INVALID_ARGS
        status, entry = self._vmo(handle, _WRITE)
        if status:
            return status
        try:
            return vmo_resize(self._state, entry.obj, size)
        finally:
            self._deliver()

    def vmo_op_range(self, handle, op, offset, size, buffer=None, buffer_size=None):
        try:
            return self._op_range_impl(handle, op, offset, size, buffer, buffer_size)
        finally:
            self._deliver_coherency()

    def _op_range_impl(self, handle, op, offset, size, buffer=None, buffer_size=None):
        """COMMIT, DECOMMIT, LOCK, UNLOCK, LOOKUP or a cache op on a range -> status; no rights.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE, ERR_INVALID_ARGS (op, LOOKUP buffer, size 0 for
        LOOKUP/cache ops), ERR_BUFFER_TOO_SMALL, ERR_OUT_OF_RANGE, ERR_NO_MEMORY (COMMIT,
        LOOKUP), ERR_NOT_SUPPORTED (LOCK/UNLOCK). docs/magenta.md 3.6."""
        self._call()
        with Arguments() as arg:
            handle, op, offset, size = arg.u32(handle), arg.u32(op), arg.u64(offset), arg.u64(size)
            view = None
            if op == Op.LOOKUP:  # only LOOKUP inspects buffer and buffer_size
                view = arg.buffer(buffer)
                buffer_size = arg.buffer_size(buffer_size, view)
            if arg.out_of_range:
                return ERR_INVALID_ARGS
            status, entry = self._vmo(handle)
            if status:
                return status
            vmo = entry.obj
            if op == Op.COMMIT:
                try:
                    return vmo_commit(self._state, vmo, offset, size)
                finally:
                    self._deliver()
            if op == Op.DECOMMIT:
                try:
                    return vmo_decommit(self._state, vmo, offset, size)
                finally:
                    self._deliver()
            if op in (Op.LOCK, Op.UNLOCK):
                return ERR_NOT_SUPPORTED
            if op in _CACHE_OPS:
                return vmo_cache_op(self._state, vmo, op, offset, size)
            if op != Op.LOOKUP:
                return ERR_INVALID_ARGS
            # LOOKUP: the null pointer, then the buffer (docs/semantics.md), then the range.
            if view is None or not writable(view) or buffer_size > view.nbytes:
                return ERR_INVALID_ARGS
            return vmo_lookup(self._state, vmo, offset, size, view, buffer_size)

    def vmo_lookup_runs(self, handle, offset, size):
        """The physical runs of the committed pages touching ``[offset, offset+size)`` ->
        (status, [(offset, paddr, length, own), ...]), 0 on failure; no rights needed.

        Errors, in order: ERR_BAD_HANDLE, ERR_WRONG_TYPE, ERR_INVALID_ARGS (size 0),
        ERR_OUT_OF_RANGE. docs/api.md "vmo_lookup_runs"."""
        self._ensure_open()
        arg = Arguments()
        handle, offset, size = arg.u32(handle), arg.u64(offset), arg.u64(size)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, 0
        status, entry = self._vmo(handle)
        if status:
            return status, 0
        status, runs = vmo_lookup_runs(self._state, entry.obj, offset, size)
        return status, (runs if status == NO_ERROR else 0)

    def vmo_clone(self, handle, options, offset, size):
        """A copy-on-write clone (a live view) of ``[offset, offset+size)`` -> (status, handle).

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (DUPLICATE|READ), ERR_WRONG_TYPE,
        ERR_INVALID_ARGS (no COW flag, unaligned offset), ERR_OUT_OF_RANGE (size > max,
        offset+size wraps), ERR_NO_MEMORY (full handle table). docs/magenta.md 3.7."""
        self._call()
        arg = Arguments()
        handle, options = arg.u32(handle), arg.u32(options)
        offset, size = arg.u64(offset), arg.u64(size)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        status, entry = self._vmo(handle, _DUPLICATE | _READ)
        if status:
            return status, MX_HANDLE_INVALID
        if not options & MX_VMO_CLONE_COPY_ON_WRITE:  # other option bits are ignored
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if size > MX_VMO_MAX_SIZE:
            return ERR_OUT_OF_RANGE, MX_HANDLE_INVALID
        if offset % PAGE_SIZE:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if offset + size > U64_MAX:
            return ERR_OUT_OF_RANGE, MX_HANDLE_INVALID
        if ht_full(self._state.handles):
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        child = vmo_new(self._state, size, entry.obj, offset)
        return NO_ERROR, self._install(child, entry.rights | _CLONE_EXTRA_RIGHTS)

    # -- syscalls: handles and objects -------------------------------------------------------
    def handle_close(self, handle):
        """Close ``handle``; the object goes with its last reference -> status.

        Errors: ERR_BAD_HANDLE (also for 0). docs/magenta.md 3.8."""
        self._call()
        arg = Arguments()
        handle = arg.u32(handle)
        if arg.out_of_range:
            return ERR_INVALID_ARGS
        status, _ = self._handle(handle)
        if status:
            return status
        vmo_unref(self._state, ht_uninstall(self._state.handles, handle).obj)
        self._deliver()
        return NO_ERROR

    def handle_duplicate(self, handle, rights):
        """A new handle to the same object -> (status, handle).

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (DUPLICATE), ERR_INVALID_ARGS (rights not a
        subset), ERR_NO_MEMORY (full handle table). docs/magenta.md 3.9."""
        self._call()
        arg = Arguments()
        handle, rights = arg.u32(handle), arg.u32(rights)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        status, entry = self._handle(handle, _DUPLICATE)
        if status:
            return status, MX_HANDLE_INVALID
        new_rights = _derived_rights(entry, rights)
        if new_rights is None:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if ht_full(self._state.handles):
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        entry.obj.refs += 1
        return NO_ERROR, self._install(entry.obj, new_rights)

    def handle_replace(self, handle, rights):
        """Replace ``handle`` by one with ``rights`` (no right needed) -> (status, handle).

        Errors: ERR_BAD_HANDLE, ERR_INVALID_ARGS (rights not a subset; the old handle stays).
        docs/magenta.md 3.10."""
        self._call()
        arg = Arguments()
        handle, rights = arg.u32(handle), arg.u32(rights)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        status, entry = self._handle(handle)
        if status:
            return status, MX_HANDLE_INVALID
        new_rights = _derived_rights(entry, rights)
        if new_rights is None:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        # The old slot is freed first, so the new handle reuses it with the next generation;
        # the object's reference moves from the old handle to the new one.
        ht_uninstall(self._state.handles, handle)
        return NO_ERROR, self._install(entry.obj, new_rights)

    def object_get_info(self, handle, topic):
        """HANDLE_VALID -> (status, None); HANDLE_BASIC -> (status, HandleBasicInfo); 0 on failure.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE (topics 3-13), ERR_NOT_SUPPORTED (any other
        topic, before the handle is looked up). docs/magenta.md 3.11."""
        self._call()
        arg = Arguments()
        handle, topic = arg.u32(handle), arg.u32(topic)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, 0
        if topic != MX_INFO_HANDLE_VALID and topic != MX_INFO_HANDLE_BASIC \
                and topic not in _WRONG_TYPE_TOPICS:
            return ERR_NOT_SUPPORTED, 0
        status, entry = self._handle(handle)
        if status:
            return status, 0
        if topic == MX_INFO_HANDLE_VALID:
            return NO_ERROR, None
        if topic == MX_INFO_HANDLE_BASIC:
            obj = entry.obj
            kind = MX_OBJ_TYPE_VMEM if isinstance(obj, VmoObject) else MX_OBJ_TYPE_EVENT
            return NO_ERROR, HandleBasicInfo(koid=obj.koid, rights=entry.rights, type=kind,
                                             related_koid=0, props=MX_OBJ_PROP_WAITABLE)
        return ERR_WRONG_TYPE, 0

    def event_create(self, options=0):
        """Create an event (a minimal non-VMO object) -> (status, handle).

        Errors: ERR_INVALID_ARGS (options != 0), ERR_NO_MEMORY (full handle table)."""
        self._call()
        arg = Arguments()
        options = arg.u32(options)
        if arg.out_of_range or options != 0:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if ht_full(self._state.handles):
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        return NO_ERROR, self._install(event_new(self._state), MX_DEFAULT_EVENT_RIGHTS)

    # -- additions (the compiled core has the same) --------------------------------------------
    def vmo_read_bytes(self, handle, offset, length):
        try:
            return self._read_bytes_impl(handle, offset, length)
        finally:
            self._deliver_coherency()

    def _read_bytes_impl(self, handle, offset, length):
        """Up to ``length`` bytes at ``offset`` -> (status, bytes), b"" on failure.

        vmo_read's checks without the buffer ones. Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED
        (READ), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE."""
        self._call()
        arg = Arguments()
        handle, offset, length = arg.u32(handle), arg.u64(offset), arg.u64(length)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, b""
        status, entry = self._vmo(handle, _READ)
        if status:
            return status, b""
        actual = trim_range(offset, length, entry.obj.size)
        if actual is None:
            return ERR_OUT_OF_RANGE, b""
        data = bytearray(actual)
        vmo_transfer(self._state, entry.obj, offset, data, False)
        return NO_ERROR, bytes(data)

    def vmo_committed_bytes(self, handle):
        """Bytes of the pages the VMO itself holds -> (status, int); no rights needed.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE."""
        self._call()
        arg = Arguments()
        handle = arg.u32(handle)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, 0
        status, entry = self._vmo(handle)
        if status:
            return status, 0
        return NO_ERROR, len(entry.obj.pages) * PAGE_SIZE

    # -- test hooks ----------------------------------------------------------------------------
    def _vmo_pages(self, handle):
        """The VMO's own pages -> (status, {page_index: paddr}) ascending, {} on failure.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE."""
        self._ensure_open()
        arg = Arguments()
        handle = arg.u32(handle)
        if arg.out_of_range:
            return ERR_INVALID_ARGS, {}
        status, entry = self._vmo(handle)
        if status:
            return status, {}
        return NO_ERROR, _invariants.vmo_pages(self._state, entry.obj)
