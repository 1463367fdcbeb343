"""The reference model: a pure-Python implementation of the VMO syscalls, the executable spec.

`Kernel` here has the same API as the compiled core (`vmo._kernel`) and implements exactly what
`shared/API.md` and `docs/semantics.md` say, with plain dicts, sets and lists (and one mmap for
the bytes of physical memory, so that physical views can be zero copy), so that it can be read
as the specification. The state-machine tests run both kernels side by side and
compare every status, byte, handle value, physical address and allocator state after each step.

Clarity comes before speed. The only concessions are that ranges are walked over the pages a
VMO holds (not over every page index of the range) where the result is the same, and that
clone chains are walked with loops, not recursion, because they may be thousands deep.

Conventions used throughout:
  * Integer arguments go through `operator.index` (TypeError otherwise); then every one is
    checked against its C type (`uint32`/`uint64`) and ERR_INVALID_ARGS is returned before
    anything else if one is out of range. Buffers go through `memoryview` (TypeError without
    the buffer protocol; None is a null pointer/empty buffer). All of these conversions happen
    first, in signature order, so a TypeError is raised before any status is decided
    (`vmo_op_range` converts ``buffer`` and ``buffer_size`` only for LOOKUP).
  * Offsets and sizes are Python ints; the wrapping of C's unsigned 64-bit arithmetic is
    spelled out where the kernel depends on it (TrimRange, InRange, LOOKUP's buffer size).
"""

import ctypes
import functools
import mmap
import operator
import struct
import sys

from ._memmap import memory_map, merge_arenas
from ._pythonic import PythonicKernel
from .constants import (
    MX_DEFAULT_EVENT_RIGHTS,
    MX_DEFAULT_VMO_RIGHTS,
    MX_HANDLE_INVALID,
    MX_INFO_HANDLE_BASIC,
    MX_INFO_HANDLE_VALID,
    MX_MAX_HANDLES,
    MX_OBJ_PROP_WAITABLE,
    MX_OBJ_TYPE_EVENT,
    MX_OBJ_TYPE_VMEM,
    MX_VMO_CLONE_COPY_ON_WRITE,
    MX_VMO_MAX_SIZE,
    PAGE_SIZE,
    Op,
    Rights,
)
from .errors import MxError, Status
from .records import HandleBasicInfo

__all__ = ["Kernel"]

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_ZERO_PAGE = bytes(PAGE_SIZE)
# Reserve address space only, as the core's arena does (the name is in Python >= 3.13 only;
# 0x4000 is its value on Linux for x86 and ARM).
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
_FIRST_KOID = 1024
_SLOT_BITS = 18  # 262,144 slots (MX_MAX_HANDLES)
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_GENERATION_MASK = 0xFFF  # 12-bit generation per slot
_CLONE_EXTRA_RIGHTS = int(Rights.WRITE | Rights.EXECUTE | Rights.MAP)  # W@HEAD's clone rights
_WRONG_TYPE_TOPICS = range(3, 14)  # process, job, thread, resource, vmar, task topics

# Statuses, as module-level names for brevity.
NO_ERROR = Status.NO_ERROR
ERR_NOT_SUPPORTED = Status.ERR_NOT_SUPPORTED
ERR_NO_MEMORY = Status.ERR_NO_MEMORY
ERR_INVALID_ARGS = Status.ERR_INVALID_ARGS
ERR_BAD_HANDLE = Status.ERR_BAD_HANDLE
ERR_WRONG_TYPE = Status.ERR_WRONG_TYPE
ERR_OUT_OF_RANGE = Status.ERR_OUT_OF_RANGE
ERR_BUFFER_TOO_SMALL = Status.ERR_BUFFER_TOO_SMALL
ERR_BAD_STATE = Status.ERR_BAD_STATE
ERR_ACCESS_DENIED = Status.ERR_ACCESS_DENIED

_CACHE_OPS = (Op.CACHE_SYNC, Op.CACHE_INVALIDATE, Op.CACHE_CLEAN, Op.CACHE_CLEAN_INVALIDATE)


# -- small arithmetic helpers --------------------------------------------------------------------

def _u32(value):
    """True if ``value`` fits C's uint32."""
    return 0 <= value <= _U32_MAX


def _u64(value):
    """True if ``value`` fits C's uint64."""
    return 0 <= value <= _U64_MAX


def _page_floor(offset):
    """Index of the page holding byte ``offset``."""
    return offset // PAGE_SIZE


def _page_ceil(offset):
    """Number of pages needed to cover bytes ``[0, offset)``."""
    return -(-offset // PAGE_SIZE)


def _trim_range(offset, length, size):
    """Magenta's TrimRange: the usable length of ``[offset, offset+length)`` in a VMO of
    ``size`` bytes, or None when ``offset+length`` wraps 64 bits or ``offset > size``."""
    if offset + length > _U64_MAX or offset > size:
        return None
    return min(length, size - offset)


def _in_range(offset, length, size):
    """Magenta's InRange: ``[offset, offset+length)`` lies inside ``[0, size)`` without wrapping."""
    end = offset + length
    return end <= _U64_MAX and offset <= size and end <= size


class _Refused:
    """An exporter that has the buffer protocol but refuses to export (a released memoryview,
    a numpy datetime64 array): a bad pointer. Its size is unknown, so a transfer of its
    default length is taken to be nonempty (ERR_INVALID_ARGS), as in the core."""

    nbytes = 1
    readonly = True
    c_contiguous = False
    format = ""

    def release(self):
        pass


def _buffer(obj):
    """A memoryview of ``obj`` (None stays None: a null pointer; an exporter that refuses is
    `_Refused`). TypeError without the buffer protocol."""
    if obj is None:
        return None
    try:
        return memoryview(obj)
    except TypeError:
        raise
    except Exception:
        return _Refused()


def _nbytes(view):
    """Size in bytes of a buffer view (a null pointer has 0)."""
    return 0 if view is None else view.nbytes


def _holds_objects(fmt):
    """True if a struct-module buffer format holds Python object pointers ("O"), outside the
    field names that structured formats put between colons (``"T{<Q:n:O:o:}"``)."""
    return "O" in "".join(fmt.split(":")[0::2])


def _writable(view):
    """True if ``view`` can be written as a flat C array of bytes: writable, C-contiguous,
    and not holding Python object pointers (raw bytes there would crash the interpreter)."""
    return (view is not None and not view.readonly and _contiguous(view)
            and not _holds_objects(view.format))


def _readable(view):
    """True if ``view`` can be read as a flat C array of plain bytes: C-contiguous and not
    holding Python object pointers (host addresses must never reach simulated memory)."""
    return view is not None and _contiguous(view) and not _holds_objects(view.format)


def _contiguous(view):
    """C-contiguous as CPython's PyBuffer_IsContiguous says: an empty buffer always is (a
    memoryview's own flag says no for an empty strided slice)."""
    return view.c_contiguous or view.nbytes == 0


def _bytes_view(view):
    """The contiguous non-empty ``view`` as a flat unsigned-byte memoryview."""
    if view.ndim == 1 and view.format == "B":
        return view
    return view.cast("B")


# -- kernel objects ------------------------------------------------------------------------------

class _VmObject:
    """A paged VMO: byte size, own pages (page index -> frame), and for a clone its parent.

    ``refs`` counts the handles to it plus its live clone children.
    """

    __slots__ = ("koid", "pages", "parent", "parent_offset", "refs", "size")

    def __init__(self, koid, size, parent=None, parent_offset=0):
        self.koid = koid
        self.size = size
        self.pages = {}
        self.parent = parent
        self.parent_offset = parent_offset
        self.refs = 0


class _Event:
    """Magenta's event: a minimal non-VMO object (it only has a koid and references)."""

    __slots__ = ("koid", "refs")

    def __init__(self, koid):
        self.koid = koid
        self.refs = 0


class _Handle:
    """A handle table entry: the object and the rights this handle grants."""

    __slots__ = ("obj", "rights")

    def __init__(self, obj, rights):
        self.obj = obj
        self.rights = rights


def _object_type(obj):
    return MX_OBJ_TYPE_VMEM if isinstance(obj, _VmObject) else MX_OBJ_TYPE_EVENT


class _PinnedBytes:
    """Mixin of the exporters behind `Kernel.phys_view`: a ctypes byte array over the kernel's
    mapping whose ``unpin`` runs when it dies, that is when the last memoryview taken from it
    is released or dropped."""

    def __del__(self):
        unpin = self.__dict__.pop("unpin", None)
        if unpin is not None:
            unpin()


@functools.lru_cache(maxsize=64)
def _pinned_bytes_type(length):
    """The `_PinnedBytes` ctypes array type of ``length`` bytes."""
    return type(f"_PinnedBytes{length}", (_PinnedBytes, ctypes.c_ubyte * length), {})


# -- the kernel ----------------------------------------------------------------------------------

class Kernel(PythonicKernel):
    """One simulated machine: physical memory, its frame allocator and one process's handle table.

    ``Kernel(memory_size=1 << 30, *, memory_base=0x100000)``: ``memory_size`` bytes of physical
    memory starting at physical address ``memory_base``. ``Kernel(memory=[(base, size), ...])``:
    a memory map, RAM ranges with holes between them, allocated in the order given and
    ascending inside each. Bases and sizes must be page multiples, sizes positive, ranges
    disjoint and below 2**64, at most 2**32 - 2 pages in all (a base of 0 is allowed),
    else ValueError; TypeError for non-integers (`vmo._memmap.memory_map`).
    """

    def __init__(self, memory_size=None, *, memory_base=None, memory=None):
        ranges = memory_map(memory_size, memory_base, memory)
        # Arenas, (base, first frame, frames): ranges that touch are one arena, so that
        # physical accesses may cross the seam.
        self._memory_map = tuple(ranges)
        self._arenas = merge_arenas(ranges)
        self._total_frames = sum(size for _, size in ranges) // PAGE_SIZE
        self._closed = False
        # Physical memory: frame f is bytes [f * PAGE_SIZE, (f + 1) * PAGE_SIZE) of one
        # anonymous mapping, reserved but populated by the host only where written (so it
        # may be far larger than the host's RAM). Physical views export slices of it.
        self._mm = mmap.mmap(-1, self._total_frames * PAGE_SIZE,
                             flags=mmap.MAP_PRIVATE | _MAP_NORESERVE)
        self._written = set()  # frames that may hold nonzero bytes; every other frame is zero
        # Frame allocator (docs/semantics.md "Frames and physical addresses"): a LIFO list of
        # freed frames (bottom first) over the fresh region, the frames >= next_fresh that
        # were never handed out, ascending. Contiguous runs may hold fresh frames above the
        # mark: those are in `_held_above`, and the mark steps over them.
        self._next_fresh = 0
        self._free_list = []
        self._held_above = set()
        # Physical views: frame -> number of live views over it; frames a VMO let go of
        # while pinned (held by no VMO, not free either, freed with their last pin).
        self._pins = {}
        self._orphans = set()
        # Handle table: value -> _Handle; slots are taken lowest-first, freed ones reused LIFO.
        self._handles = {}
        self._next_slot = 0
        self._free_slots = []
        self._generations = {}  # slot -> 12-bit generation (absent = 0)
        # Objects: koid -> live object (VMOs, clones, parents kept alive by clones, events).
        self._objects = {}
        self._next_koid = _FIRST_KOID

    # -- lifetime ----------------------------------------------------------------------------
    @property
    def memory_map(self):
        """The RAM ranges, ((base, size), ...), in allocation order (as given)."""
        return self._memory_map

    @property
    def memory_size(self):
        """Bytes of simulated physical memory (all ranges)."""
        return self._total_frames * PAGE_SIZE

    @property
    def memory_base(self):
        """Physical address of frame 0 (the first range's base)."""
        return self._memory_map[0][0]

    @property
    def closed(self):
        """True once `close` has been called."""
        return self._closed

    def close(self):
        """Close every handle and free everything; idempotent. Later calls raise ValueError.

        Live physical views keep the mapping (they hold it): it goes with the last of them."""
        if self._closed:
            return
        for value in sorted(self._handles):
            self._close_handle(value)
        assert not self._objects and not self._handles
        self._closed = True
        mm, self._mm = self._mm, None
        try:
            mm.close()
        except BufferError:  # exported to live views: unmapped when the last one goes
            pass
        self._written = set()
        self._free_list = []

    def _ensure_open(self):
        if self._closed:
            raise ValueError("kernel is closed")

    def __repr__(self):
        if self._closed:
            return "<vmo._reference.Kernel closed>"
        return f"<vmo._reference.Kernel memory={[(hex(b), hex(s)) for b, s in self._memory_map]}>"

    # -- physical memory ---------------------------------------------------------------------
    def _paddr(self, frame):
        """Physical address of ``frame``: arenas hold consecutive frames, in order."""
        for base, first, count in self._arenas:
            if first <= frame < first + count:
                return base + (frame - first) * PAGE_SIZE
        raise AssertionError(f"no frame {frame}")

    def _read_frame(self, frame, start, length):
        """``length`` bytes of ``frame`` from byte ``start``."""
        offset = frame * PAGE_SIZE + start
        return self._mm[offset:offset + length]

    def _write_frame(self, frame, start, data):
        offset = frame * PAGE_SIZE + start
        self._mm[offset:offset + len(data)] = data
        self._written.add(frame)

    def _copy_frame(self, source, dest):
        """Copy the whole page ``source`` into the (zero) frame ``dest``."""
        if source in self._written:
            self._write_frame(dest, 0, self._read_frame(source, 0, PAGE_SIZE))

    # -- frame allocator ---------------------------------------------------------------------
    def _free_frames(self):
        fresh = self._total_frames - self._next_fresh - len(self._held_above)
        return fresh + len(self._free_list)

    def _is_free(self, frame, freed):
        """True if ``frame`` is free; ``freed`` is ``set(self._free_list)``."""
        if frame >= self._next_fresh:
            return frame not in self._held_above
        return frame in freed

    def _step_fresh_mark(self):
        """Keep ``next_fresh`` on a free frame (or the end): step over frames held above it."""
        while self._next_fresh in self._held_above:
            self._held_above.remove(self._next_fresh)
            self._next_fresh += 1

    def _alloc_frame(self):
        """A zero frame: the last freed one, else the lowest fresh one; None when none is left."""
        if self._free_list:
            return self._free_list.pop()
        if self._next_fresh == self._total_frames:
            return None
        frame = self._next_fresh
        self._next_fresh += 1
        self._step_fresh_mark()
        return frame

    def _free_frame(self, frame):
        """Make the unpinned, no longer held ``frame`` free: zeroed (a reused frame reads as
        zero), then back to the fresh region if at or above the mark, else on the list."""
        if frame in self._written:
            self._mm[frame * PAGE_SIZE:(frame + 1) * PAGE_SIZE] = _ZERO_PAGE
            self._written.remove(frame)
        if frame >= self._next_fresh:
            self._held_above.remove(frame)
        else:
            self._free_list.append(frame)

    def _let_go(self, frame):
        """A VMO no longer holds ``frame``: free it, or while a view pins it, orphan it."""
        if frame in self._pins:
            self._orphans.add(frame)
        else:
            self._free_frame(frame)

    def _free_pages(self, vmo, indices):
        """Let go of ``vmo``'s own pages at ``indices``, in ascending page-index order."""
        for index in sorted(indices):
            self._let_go(vmo.pages.pop(index))

    def _find_run(self, count, alignment):
        """First fit: the lowest frame (arenas in order) starting ``count`` free frames inside
        one arena at a physical address that is a multiple of ``alignment``; or None."""
        freed = set(self._free_list)
        for base, first, frames in self._arenas:
            end = first + frames
            start = first + (-base % alignment) // PAGE_SIZE  # the arena's first aligned frame
            while start + count <= end:
                busy = next((f for f in range(start, start + count)
                             if not self._is_free(f, freed)), None)
                if busy is None:
                    return start
                start = busy + 1  # the next candidate: the first aligned frame past it
                start += (-(base + (start - first) * PAGE_SIZE) % alignment) // PAGE_SIZE
        return None

    def _take_run(self, start, count):
        """Take the free frames ``[start, start+count)`` wherever they are: out of the free
        list (the rest keeps its order) or out of the fresh region."""
        run = range(start, start + count)
        self._free_list = [f for f in self._free_list if f not in run]
        self._held_above.update(f for f in run if f >= self._next_fresh)
        self._step_fresh_mark()

    # -- handle table ------------------------------------------------------------------------
    def _handle_table_full(self):
        return not self._free_slots and self._next_slot == MX_MAX_HANDLES

    def _new_handle(self, obj, rights):
        """Install a handle to ``obj``; the caller checked `_handle_table_full` first."""
        if self._free_slots:
            slot = self._free_slots.pop()
        else:
            slot = self._next_slot
            self._next_slot += 1
        generation = self._generations.get(slot, 0)
        value = (((generation << _SLOT_BITS) | slot) << 1) | 1
        self._handles[value] = _Handle(obj, rights)
        obj.refs += 1
        return value

    def _remove_handle(self, value):
        """Take handle ``value`` out of the table (its slot's generation moves on); returns the
        entry. The object's reference is not dropped here."""
        entry = self._handles.pop(value)
        slot = (value >> 1) & _SLOT_MASK
        self._generations[slot] = (self._generations.get(slot, 0) + 1) & _GENERATION_MASK
        self._free_slots.append(slot)
        return entry

    def _close_handle(self, value):
        self._release(self._remove_handle(value).obj)

    def _new_koid(self):
        koid = self._next_koid
        self._next_koid += 1
        return koid

    def _release(self, obj):
        """Drop one reference to ``obj``; destroy it when none is left: free its pages (ascending
        page index), then drop its reference on its parent, and so on up the chain (a loop, as
        clone chains may be thousands deep)."""
        while obj is not None:
            obj.refs -= 1
            if obj.refs:
                return
            del self._objects[obj.koid]
            if not isinstance(obj, _VmObject):
                return
            self._free_pages(obj, list(obj.pages))
            obj.parent, obj = None, obj.parent

    def _get_handle(self, value, rights=0):
        """(status, entry): ERR_BAD_HANDLE, then ERR_ACCESS_DENIED if ``rights`` are missing."""
        entry = self._handles.get(value)
        if entry is None:
            return ERR_BAD_HANDLE, None
        if entry.rights & rights != rights:
            return ERR_ACCESS_DENIED, None
        return NO_ERROR, entry

    def _get_vmo(self, value, rights=0):
        """(status, vmo): ERR_BAD_HANDLE, ERR_ACCESS_DENIED, then ERR_WRONG_TYPE (rights first)."""
        status, entry = self._get_handle(value, rights)
        if status:
            return status, None
        if not isinstance(entry.obj, _VmObject):
            return ERR_WRONG_TYPE, None
        return NO_ERROR, entry.obj

    # -- page faults (docs/semantics.md "Page faults") ----------------------------------------
    def _find_page(self, vmo, offset):
        """Walk up the clone chain looking for the page holding byte ``offset`` of ``vmo``.

        Returns (path, frame): ``frame`` is the first page found (own or an ancestor's) or None;
        ``path`` lists the (vmo, byte_offset) levels visited that do not hold it, starting with
        ``vmo`` itself. Each level bounds the search with its own size at the byte offset asked
        of it; an ancestor offset past 2**64 - 1 finds nothing.
        """
        path = []
        while offset < vmo.size:
            frame = vmo.pages.get(_page_floor(offset))
            if frame is not None:
                return path, frame
            path.append((vmo, offset))
            if vmo.parent is None:
                break
            offset += vmo.parent_offset
            if offset > _U64_MAX:
                break
            vmo = vmo.parent
        return path, None

    def _lookup(self, vmo, offset):
        """The frame ``vmo`` shows at byte ``offset`` (own or an ancestor's), or None."""
        return self._find_page(vmo, offset)[1]

    def _write_fault(self, vmo, offset):
        """(status, frame): the page of ``vmo`` holding byte ``offset``, made its own.

        Own page -> it. Else, if an ancestor holds the page, every level between the holder and
        ``vmo`` gets a private copy of the whole page (the copy closest to the holder is
        allocated first); else ``vmo`` gets a zero frame. ERR_NO_MEMORY when a frame is lacking
        (copies already made stay); ERR_OUT_OF_RANGE for ``offset >= vmo.size``.
        """
        if offset >= vmo.size:
            return ERR_OUT_OF_RANGE, None
        path, frame = self._find_page(vmo, offset)
        if frame is None:
            path = path[:1]  # nobody holds the page: only vmo itself takes a (zero) frame
        for level, level_offset in reversed(path):
            new = self._alloc_frame()
            if new is None:
                return ERR_NO_MEMORY, None
            if frame is not None:
                self._copy_frame(frame, new)
            level.pages[_page_floor(level_offset)] = new
            frame = new
        return NO_ERROR, frame

    def _write_fault_cost(self, vmo, offset):
        """Frames `_write_fault` would allocate for byte ``offset`` of ``vmo`` (0 if it holds
        the page; the holder's depth if an ancestor holds it; else 1)."""
        path, frame = self._find_page(vmo, offset)
        if frame is None:
            return 1
        return len(path)

    # -- data --------------------------------------------------------------------------------
    def _read(self, vmo, offset, length):
        """``length`` bytes of ``vmo`` at ``offset`` (inside the VMO), chunk by chunk."""
        out = bytearray(length)
        done = 0
        while done < length:
            start = offset + done
            in_page = start % PAGE_SIZE
            count = min(PAGE_SIZE - in_page, length - done)
            frame = self._lookup(vmo, start)
            if frame is not None:
                out[done:done + count] = self._read_frame(frame, in_page, count)
            done += count
        return bytes(out)

    def _write(self, vmo, offset, data):
        """Write ``data`` at ``offset`` (inside the VMO) chunk by chunk, write-faulting each page.
        Returns a status; chunks written before an ERR_NO_MEMORY stay written."""
        length = len(data)
        done = 0
        while done < length:
            start = offset + done
            in_page = start % PAGE_SIZE
            count = min(PAGE_SIZE - in_page, length - done)
            status, frame = self._write_fault(vmo, start)
            if status:
                return status
            self._write_frame(frame, in_page, data[done:done + count])
            done += count
        return NO_ERROR

    # -- syscalls: VMOs ----------------------------------------------------------------------
    def vmo_create(self, size, options=0):
        """Create a VMO of ``size`` bytes, nothing committed -> (status, handle).

        Errors: ERR_INVALID_ARGS (options != 0), ERR_NO_MEMORY (size > MX_VMO_MAX_SIZE, full
        handle table)."""
        self._ensure_open()
        size = operator.index(size)
        options = operator.index(options)
        if not (_u64(size) and _u32(options)):
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if options != 0:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if size > MX_VMO_MAX_SIZE:
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        if self._handle_table_full():
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        vmo = _VmObject(self._new_koid(), size)
        self._objects[vmo.koid] = vmo
        return NO_ERROR, self._new_handle(vmo, MX_DEFAULT_VMO_RIGHTS)

    def vmo_create_contiguous(self, size, alignment_log2=0):
        """A VMO of ``size`` bytes rounded up to pages, committed at once to one physically
        contiguous run at a multiple of 2**alignment_log2 bytes (0 means 12) -> (status, handle).

        Spec 3.12 without the resource handle; the run is the first fit (docs/semantics.md
        "Contiguous VMOs"). Errors: ERR_INVALID_ARGS (size 0, alignment_log2 below 12 but not
        0, or 64 and above), ERR_NO_MEMORY (size > MX_VMO_MAX_SIZE, full handle table, no
        such run free). Nothing is created on failure."""
        self._ensure_open()
        size = operator.index(size)
        alignment_log2 = operator.index(alignment_log2)
        if not (_u64(size) and _u32(alignment_log2)):
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if size == 0:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if alignment_log2 == 0:
            alignment_log2 = 12
        if not 12 <= alignment_log2 < 64:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if size > MX_VMO_MAX_SIZE or self._handle_table_full():
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        count = _page_ceil(size)
        if count > self._free_frames():
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        start = self._find_run(count, 1 << alignment_log2)
        if start is None:
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        self._take_run(start, count)
        vmo = _VmObject(self._new_koid(), count * PAGE_SIZE)
        vmo.pages = {index: start + index for index in range(count)}
        self._objects[vmo.koid] = vmo
        return NO_ERROR, self._new_handle(vmo, MX_DEFAULT_VMO_RIGHTS)

    def vmo_read(self, handle, buffer, offset, length=None):
        """Read into ``buffer[0:actual]`` -> (status, actual); never commits.

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (READ), ERR_WRONG_TYPE, ERR_INVALID_ARGS
        (buffer), ERR_OUT_OF_RANGE."""
        self._ensure_open()
        handle = operator.index(handle)
        view = _buffer(buffer)
        try:
            offset = operator.index(offset)
            length = _nbytes(view) if length is None else operator.index(length)
            if not (_u32(handle) and _u64(offset) and _u64(length)):
                return ERR_INVALID_ARGS, 0
            status, vmo = self._get_vmo(handle, Rights.READ)
            if status:
                return status, 0
            if length > 0 and not (_writable(view) and length <= view.nbytes):
                return ERR_INVALID_ARGS, 0
            actual = _trim_range(offset, length, vmo.size)
            if actual is None:
                return ERR_OUT_OF_RANGE, 0
            if actual:
                _bytes_view(view)[:actual] = self._read(vmo, offset, actual)
            return NO_ERROR, actual
        finally:
            if view is not None:
                view.release()

    def vmo_write(self, handle, data, offset, length=None):
        """Write ``data[0:length]`` at ``offset``, committing the pages touched -> (status, actual).

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (WRITE), ERR_WRONG_TYPE, ERR_INVALID_ARGS
        (buffer), ERR_OUT_OF_RANGE, ERR_NO_MEMORY (the chunks written before stay written)."""
        self._ensure_open()
        handle = operator.index(handle)
        view = _buffer(data)
        try:
            offset = operator.index(offset)
            length = _nbytes(view) if length is None else operator.index(length)
            if not (_u32(handle) and _u64(offset) and _u64(length)):
                return ERR_INVALID_ARGS, 0
            status, vmo = self._get_vmo(handle, Rights.WRITE)
            if status:
                return status, 0
            if length > 0 and not (_readable(view) and length <= view.nbytes):
                return ERR_INVALID_ARGS, 0
            actual = _trim_range(offset, length, vmo.size)
            if actual is None:
                return ERR_OUT_OF_RANGE, 0
            if actual:
                status = self._write(vmo, offset, bytes(_bytes_view(view)[:actual]))
                if status:
                    return status, 0
            return NO_ERROR, actual
        finally:
            if view is not None:
                view.release()

    def vmo_get_size(self, handle):
        """The VMO's byte size -> (status, size); no rights needed.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE."""
        self._ensure_open()
        handle = operator.index(handle)
        if not _u32(handle):
            return ERR_INVALID_ARGS, 0
        status, vmo = self._get_vmo(handle)
        if status:
            return status, 0
        return NO_ERROR, vmo.size

    def vmo_set_size(self, handle, size):
        """Resize to ``size`` bytes; shrinking frees the pages past the new end -> status.

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (WRITE), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE
        (size > MX_VMO_MAX_SIZE)."""
        self._ensure_open()
        handle = operator.index(handle)
        size = operator.index(size)
        if not (_u32(handle) and _u64(size)):
            return ERR_INVALID_ARGS
        status, vmo = self._get_vmo(handle, Rights.WRITE)
        if status:
            return status
        if size > MX_VMO_MAX_SIZE:
            return ERR_OUT_OF_RANGE
        if size < vmo.size:
            first_freed = _page_ceil(size)  # the page holding the new end keeps its bytes
            self._free_pages(vmo, [index for index in vmo.pages if index >= first_freed])
        vmo.size = size
        return NO_ERROR

    def vmo_op_range(self, handle, op, offset, size, buffer=None, buffer_size=None):
        """COMMIT, DECOMMIT, LOCK, UNLOCK, LOOKUP or a cache op on a range -> status; no rights.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE, ERR_INVALID_ARGS (op, LOOKUP buffer, size 0 for
        LOOKUP/cache ops), ERR_BUFFER_TOO_SMALL, ERR_OUT_OF_RANGE, ERR_NO_MEMORY (COMMIT,
        LOOKUP), ERR_NOT_SUPPORTED (LOCK/UNLOCK)."""
        self._ensure_open()
        handle = operator.index(handle)
        op = operator.index(op)
        offset = operator.index(offset)
        size = operator.index(size)
        if op != Op.LOOKUP:  # buffer and buffer_size are not even inspected
            if not (_u32(handle) and _u32(op) and _u64(offset) and _u64(size)):
                return ERR_INVALID_ARGS
            status, vmo = self._get_vmo(handle)
            if status:
                return status
            if op == Op.COMMIT:
                return self._commit(vmo, offset, size)
            if op == Op.DECOMMIT:
                return self._decommit(vmo, offset, size)
            if op in (Op.LOCK, Op.UNLOCK):
                return ERR_NOT_SUPPORTED
            if op in _CACHE_OPS:
                return self._cache_op(vmo, offset, size)
            return ERR_INVALID_ARGS
        view = _buffer(buffer)
        try:
            buffer_size = _nbytes(view) if buffer_size is None else operator.index(buffer_size)
            if not (_u32(handle) and _u64(offset) and _u64(size) and _u64(buffer_size)):
                return ERR_INVALID_ARGS
            status, vmo = self._get_vmo(handle)
            if status:
                return status
            return self._lookup_range(vmo, offset, size, view, buffer_size)
        finally:
            if view is not None:
                view.release()

    def _commit(self, vmo, offset, size):
        """COMMIT, all or nothing: write-fault each missing page (a clone copies what it saw)."""
        trimmed = _trim_range(offset, size, vmo.size)
        if trimmed is None:
            return ERR_OUT_OF_RANGE
        if trimmed == 0:
            return NO_ERROR
        first, end = _page_floor(offset), _page_ceil(offset + trimmed)
        held = sum(1 for index in vmo.pages if first <= index < end)
        missing_count = (end - first) - held
        if missing_count == 0:
            return NO_ERROR
        free = self._free_frames()
        if missing_count > free:  # every missing page costs at least one frame
            return ERR_NO_MEMORY
        missing = [index for index in range(first, end) if index not in vmo.pages]
        needed = sum(self._write_fault_cost(vmo, index * PAGE_SIZE) for index in missing)
        if needed > free:
            return ERR_NO_MEMORY
        for index in missing:
            status, _ = self._write_fault(vmo, index * PAGE_SIZE)
            assert status == NO_ERROR, status  # counted above
        return NO_ERROR

    def _decommit(self, vmo, offset, size):
        """DECOMMIT: free the own pages touched by the trimmed range (start rounded down)."""
        trimmed = _trim_range(offset, size, vmo.size)
        if trimmed is None:
            return ERR_OUT_OF_RANGE
        if trimmed == 0:
            return NO_ERROR
        first, end = _page_floor(offset), _page_ceil(offset + trimmed)
        self._free_pages(vmo, [index for index in vmo.pages if first <= index < end])
        return NO_ERROR

    def _cache_op(self, vmo, offset, size):
        """CACHE_*: validate only (uncommitted pages would be skipped; nothing is touched)."""
        if size == 0:
            return ERR_INVALID_ARGS
        if not _in_range(offset, size, vmo.size):
            return ERR_OUT_OF_RANGE
        return NO_ERROR

    def _lookup_range(self, vmo, offset, size, view, buffer_size):
        """LOOKUP: write the paddr of every page touching the range as native uint64 entries."""
        if view is None:
            return ERR_INVALID_ARGS
        if not _writable(view) or buffer_size > view.nbytes:
            return ERR_INVALID_ARGS
        # Computed with wrapping 64-bit arithmetic before any range check, as the kernel did.
        first = offset - offset % PAGE_SIZE
        end = ((offset + size) % (1 << 64) + PAGE_SIZE - 1) % (1 << 64)
        end -= end % PAGE_SIZE
        pages = ((end - first) % (1 << 64)) // PAGE_SIZE
        if pages * 8 > buffer_size:
            return ERR_BUFFER_TOO_SMALL
        if size == 0:
            return ERR_INVALID_ARGS
        if not _in_range(offset, size, vmo.size):
            return ERR_OUT_OF_RANGE
        out = _bytes_view(view)
        for i in range(pages):
            frame = self._lookup(vmo, first + i * PAGE_SIZE)
            if frame is None:
                return ERR_NO_MEMORY  # the entries of earlier pages stay written
            struct.pack_into("=Q", out, 8 * i, self._paddr(frame))
        return NO_ERROR

    def vmo_clone(self, handle, options, offset, size):
        """A copy-on-write clone (a live view) of ``[offset, offset+size)`` -> (status, handle).

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (DUPLICATE|READ), ERR_WRONG_TYPE,
        ERR_INVALID_ARGS (no COW flag, unaligned offset), ERR_OUT_OF_RANGE (size > max,
        offset+size wraps), ERR_NO_MEMORY (full handle table)."""
        self._ensure_open()
        handle = operator.index(handle)
        options = operator.index(options)
        offset = operator.index(offset)
        size = operator.index(size)
        if not (_u32(handle) and _u32(options) and _u64(offset) and _u64(size)):
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        status, entry = self._get_handle(handle, Rights.DUPLICATE | Rights.READ)
        if status:
            return status, MX_HANDLE_INVALID
        parent = entry.obj
        if not isinstance(parent, _VmObject):
            return ERR_WRONG_TYPE, MX_HANDLE_INVALID
        if not options & MX_VMO_CLONE_COPY_ON_WRITE:  # other option bits are ignored
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if size > MX_VMO_MAX_SIZE:
            return ERR_OUT_OF_RANGE, MX_HANDLE_INVALID
        if offset % PAGE_SIZE:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if offset + size > _U64_MAX:
            return ERR_OUT_OF_RANGE, MX_HANDLE_INVALID
        if self._handle_table_full():
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        child = _VmObject(self._new_koid(), size, parent, offset)
        parent.refs += 1
        self._objects[child.koid] = child
        return NO_ERROR, self._new_handle(child, entry.rights | _CLONE_EXTRA_RIGHTS)

    # -- syscalls: handles and objects -------------------------------------------------------
    def handle_close(self, handle):
        """Close ``handle``; the object goes with its last reference -> status.

        Errors: ERR_BAD_HANDLE (also for 0)."""
        self._ensure_open()
        handle = operator.index(handle)
        if not _u32(handle):
            return ERR_INVALID_ARGS
        if handle not in self._handles:
            return ERR_BAD_HANDLE
        self._close_handle(handle)
        return NO_ERROR

    def _derived_rights(self, entry, rights):
        """Rights derived from ``entry``: SAME_RIGHTS (exactly) or a subset, else None."""
        if rights == Rights.SAME_RIGHTS:
            return entry.rights
        if entry.rights & rights != rights:
            return None
        return rights

    def handle_duplicate(self, handle, rights):
        """A new handle to the same object -> (status, handle).

        Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED (DUPLICATE), ERR_INVALID_ARGS (rights not a
        subset), ERR_NO_MEMORY (full handle table)."""
        self._ensure_open()
        handle = operator.index(handle)
        rights = operator.index(rights)
        if not (_u32(handle) and _u32(rights)):
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        status, entry = self._get_handle(handle, Rights.DUPLICATE)
        if status:
            return status, MX_HANDLE_INVALID
        new_rights = self._derived_rights(entry, rights)
        if new_rights is None:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if self._handle_table_full():
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        return NO_ERROR, self._new_handle(entry.obj, new_rights)

    def handle_replace(self, handle, rights):
        """Replace ``handle`` by one with ``rights`` (no right needed) -> (status, handle).

        Errors: ERR_BAD_HANDLE, ERR_INVALID_ARGS (rights not a subset; the old handle stays)."""
        self._ensure_open()
        handle = operator.index(handle)
        rights = operator.index(rights)
        if not (_u32(handle) and _u32(rights)):
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        status, entry = self._get_handle(handle)
        if status:
            return status, MX_HANDLE_INVALID
        new_rights = self._derived_rights(entry, rights)
        if new_rights is None:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        # The old slot is freed first, so the new handle reuses it with the next generation.
        self._remove_handle(handle)
        value = self._new_handle(entry.obj, new_rights)
        entry.obj.refs -= 1  # the reference moved from the old handle to the new one
        return NO_ERROR, value

    def object_get_info(self, handle, topic):
        """HANDLE_VALID -> (status, None); HANDLE_BASIC -> (status, HandleBasicInfo); 0 on failure.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE (topics 3-13), ERR_NOT_SUPPORTED (any other
        topic, before the handle is looked up)."""
        self._ensure_open()
        handle = operator.index(handle)
        topic = operator.index(topic)
        if not (_u32(handle) and _u32(topic)):
            return ERR_INVALID_ARGS, 0
        if topic != MX_INFO_HANDLE_VALID and topic != MX_INFO_HANDLE_BASIC \
                and topic not in _WRONG_TYPE_TOPICS:
            return ERR_NOT_SUPPORTED, 0
        status, entry = self._get_handle(handle)
        if status:
            return status, 0
        if topic == MX_INFO_HANDLE_VALID:
            return NO_ERROR, None
        if topic == MX_INFO_HANDLE_BASIC:
            obj = entry.obj
            return NO_ERROR, HandleBasicInfo(koid=obj.koid, rights=entry.rights,
                                             type=_object_type(obj), related_koid=0,
                                             props=MX_OBJ_PROP_WAITABLE)
        return ERR_WRONG_TYPE, 0

    def event_create(self, options=0):
        """Create an event (a minimal non-VMO object) -> (status, handle).

        Errors: ERR_INVALID_ARGS (options != 0), ERR_NO_MEMORY (full handle table)."""
        self._ensure_open()
        options = operator.index(options)
        if not _u32(options) or options != 0:
            return ERR_INVALID_ARGS, MX_HANDLE_INVALID
        if self._handle_table_full():
            return ERR_NO_MEMORY, MX_HANDLE_INVALID
        event = _Event(self._new_koid())
        self._objects[event.koid] = event
        return NO_ERROR, self._new_handle(event, MX_DEFAULT_EVENT_RIGHTS)

    # -- physical memory access (device models; docs/semantics.md "Physical access") ---------
    def _phys_args(self, paddr, length):
        """Convert the arguments of a physical access (TypeError for non-integers); a
        negative length is ERR_INVALID_ARGS, anything outside uint64 ERR_OUT_OF_RANGE."""
        self._ensure_open()
        paddr = operator.index(paddr)
        length = operator.index(length)
        if length < 0:
            raise MxError(ERR_INVALID_ARGS, "negative length")
        if not (_u64(paddr) and _u64(length)):
            raise MxError(ERR_OUT_OF_RANGE, "not inside physical memory")
        return paddr, length

    def _phys_range(self, paddr, length):
        """(first frame, frames touched) of ``[paddr, paddr+length)``, which must lie inside
        one arena (ERR_OUT_OF_RANGE; a zero-length range may sit anywhere from an arena's start
        to its end) and touch only frames held by a VMO (ERR_BAD_STATE)."""
        for base, first, frames in self._arenas:
            end = base + frames * PAGE_SIZE
            if base <= paddr < end or (length == 0 and paddr == end):
                break
        else:
            raise MxError(ERR_OUT_OF_RANGE, "not inside physical memory")
        if length > end - paddr:
            raise MxError(ERR_OUT_OF_RANGE, "not inside physical memory")
        if length == 0:
            return first, 0
        first += (paddr - base) // PAGE_SIZE
        count = (paddr % PAGE_SIZE + length - 1) // PAGE_SIZE + 1
        freed = set(self._free_list)
        for frame in range(first, first + count):
            if self._is_free(frame, freed) or frame in self._orphans:
                raise MxError(ERR_BAD_STATE, "a page of the range is not held by any VMO")
        return first, count

    def phys_read(self, paddr, length):
        """What a device reads at physical address ``paddr``: ``length`` bytes.

        Raises MxError(ERR_OUT_OF_RANGE) unless the range lies inside one arena of physical
        memory, ERR_BAD_STATE if a page it touches is not held by a VMO."""
        paddr, length = self._phys_args(paddr, length)
        first, _ = self._phys_range(paddr, length)
        return self._read_frame(first, paddr % PAGE_SIZE, length) if length else b""

    def phys_write(self, paddr, data):
        """A device writes ``data`` (any contiguous buffer, else ERR_INVALID_ARGS) at physical
        address ``paddr``; returns the bytes written. Errors as `phys_read`."""
        self._ensure_open()
        paddr = operator.index(paddr)
        view = memoryview(data) if data is None else _buffer(data)  # None: TypeError
        if isinstance(view, _Refused) or not _readable(view):
            view.release()
            raise MxError(ERR_INVALID_ARGS, "the data is not a contiguous buffer of plain bytes")
        with view:
            paddr, length = self._phys_args(paddr, view.nbytes)
            first, count = self._phys_range(paddr, length)
            if length:
                self._write_frame(first, paddr % PAGE_SIZE, view.tobytes())
            self._written.update(range(first, first + count))
            return length

    def phys_view(self, paddr, length):
        """A writable, zero-copy memoryview (format "B") of physical memory, as a device sees
        it. Until the view is released (``view.release()`` or its last reference dropped),
        every frame it touches is pinned: never handed out again, even when its VMO lets go of
        it meanwhile (then it is freed with its last pin). Errors as `phys_read`."""
        paddr, length = self._phys_args(paddr, length)
        first, count = self._phys_range(paddr, length)
        offset = first * PAGE_SIZE + paddr % PAGE_SIZE if length else 0
        exporter = _pinned_bytes_type(length).from_buffer(self._mm, offset)
        for frame in range(first, first + count):
            self._pins[frame] = self._pins.get(frame, 0) + 1
            self._written.add(frame)  # whatever the device writes is not tracked: count it
        exporter.unpin = functools.partial(self._unpin, first, count)
        return memoryview(exporter).cast("B")

    def _unpin(self, first, count):
        """A physical view over frames ``[first, first+count)`` went (ascending frame order):
        a frame whose last pin goes and that no VMO holds is freed now."""
        if self._closed:
            return
        for frame in range(first, first + count):
            self._pins[frame] -= 1
            if self._pins[frame] == 0:
                del self._pins[frame]
                if frame in self._orphans:
                    self._orphans.remove(frame)
                    self._free_frame(frame)

    # -- additions (the compiled core has the same) --------------------------------------------
    def vmo_read_bytes(self, handle, offset, length):
        """Up to ``length`` bytes at ``offset`` -> (status, bytes), b"" on failure.

        vmo_read's checks without the buffer ones. Errors: ERR_BAD_HANDLE, ERR_ACCESS_DENIED
        (READ), ERR_WRONG_TYPE, ERR_OUT_OF_RANGE."""
        self._ensure_open()
        handle = operator.index(handle)
        offset = operator.index(offset)
        length = operator.index(length)
        if not (_u32(handle) and _u64(offset) and _u64(length)):
            return ERR_INVALID_ARGS, b""
        status, vmo = self._get_vmo(handle, Rights.READ)
        if status:
            return status, b""
        actual = _trim_range(offset, length, vmo.size)
        if actual is None:
            return ERR_OUT_OF_RANGE, b""
        return NO_ERROR, self._read(vmo, offset, actual)

    def vmo_committed_bytes(self, handle):
        """Bytes of the pages the VMO itself holds -> (status, int); no rights needed.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE."""
        self._ensure_open()
        handle = operator.index(handle)
        if not _u32(handle):
            return ERR_INVALID_ARGS, 0
        status, vmo = self._get_vmo(handle)
        if status:
            return status, 0
        return NO_ERROR, len(vmo.pages) * PAGE_SIZE

    def stats(self):
        """A dict: total_frames, free_frames, committed_frames (held by a VMO, or pinned after
        their VMO let go), vmos (live VMO objects), handles, pinned_frames (frames with at
        least one live physical view), memory_base, memory_size."""
        self._ensure_open()
        free = self._free_frames()
        return {
            "total_frames": self._total_frames,
            "free_frames": free,
            "committed_frames": self._total_frames - free,
            "vmos": sum(1 for obj in self._objects.values() if isinstance(obj, _VmObject)),
            "handles": len(self._handles),
            "memory_base": self.memory_base,
            "memory_size": self.memory_size,
            "pinned_frames": len(self._pins),
        }

    # -- test hooks ----------------------------------------------------------------------------
    def _vmo_pages(self, handle):
        """The VMO's own pages -> (status, {page_index: paddr}) ascending, {} on failure.

        Errors: ERR_BAD_HANDLE, ERR_WRONG_TYPE."""
        self._ensure_open()
        handle = operator.index(handle)
        if not _u32(handle):
            return ERR_INVALID_ARGS, {}
        status, vmo = self._get_vmo(handle)
        if status:
            return status, {}
        return NO_ERROR, {index: self._paddr(vmo.pages[index]) for index in sorted(vmo.pages)}

    def _allocator_state(self):
        """(next_fresh, freed frames from the bottom of the LIFO list to its top)."""
        self._ensure_open()
        return self._next_fresh, list(self._free_list)

    def _check(self):
        """Walk every invariant; raise AssertionError naming the first one broken."""
        self._ensure_open()
        total = self._total_frames

        # Frames: every frame is exactly one of free (on the list below the fresh mark, or
        # fresh at or above it), held by one VMO, or orphaned (pinned after its VMO let go).
        def fail(message, *args):
            raise AssertionError(message % args)

        mark = self._next_fresh
        if not 0 <= mark <= total:
            fail("next_fresh %d outside [0, %d]", mark, total)
        if mark < total and mark in self._held_above:
            fail("next_fresh %d is held", mark)
        free_set = set()
        for frame in self._free_list:
            if frame in free_set:
                fail("frame %d is on the free list twice", frame)
            if not 0 <= frame < mark:
                fail("free frame %d is not below next_fresh %d", frame, mark)
            free_set.add(frame)
        for frame in self._held_above:
            if not mark <= frame < total:
                fail("frame %d held above the mark is not in [%d, %d)", frame, mark, total)
        owner = {}
        vmos = [obj for obj in self._objects.values() if isinstance(obj, _VmObject)]
        for vmo in vmos:
            limit = _page_ceil(vmo.size)
            for index, frame in vmo.pages.items():
                if frame in owner:
                    fail("frame %d held twice (koids %d and %d)", frame, owner[frame], vmo.koid)
                if not 0 <= frame < total:
                    fail("koid %d holds frame %d beyond memory", vmo.koid, frame)
                if frame in free_set or (frame >= mark and frame not in self._held_above):
                    fail("frame %d is both free and held by koid %d", frame, vmo.koid)
                if frame in self._orphans:
                    fail("frame %d is both orphaned and held by koid %d", frame, vmo.koid)
                if not 0 <= index < limit:
                    fail("koid %d holds page %d past its size %d", vmo.koid, index, vmo.size)
                owner[frame] = vmo.koid
        for frame in self._orphans:
            if not self._pins.get(frame):
                fail("orphaned frame %d has no pin", frame)
            if frame in free_set or (frame >= mark and frame not in self._held_above):
                fail("orphaned frame %d is free", frame)
        for frame, pins in self._pins.items():
            if pins <= 0:
                fail("frame %d has %d pins", frame, pins)
            if frame not in owner and frame not in self._orphans:
                fail("pinned frame %d is neither held nor orphaned", frame)
        not_free = len(owner) + len(self._orphans)
        below = sum(1 for frame in owner if frame < mark) + sum(
            1 for frame in self._orphans if frame < mark)
        if len(free_set) + below != mark:
            fail("free %d + not free %d below the mark != %d", len(free_set), below, mark)
        if not_free - below != len(self._held_above):
            fail("%d frames held above the mark, %d recorded", not_free - below,
                 len(self._held_above))
        if self._free_frames() + not_free != total:
            fail("free count %d + held %d + orphaned %d != total %d", self._free_frames(),
                 len(owner), len(self._orphans), total)
        for frame in self._written:
            if frame not in owner and frame not in self._orphans:
                fail("frame %d has content but is not held", frame)

        # Objects: references, parent links, acyclic chains.
        expected_refs = dict.fromkeys(self._objects, 0)
        for value, entry in self._handles.items():
            koid = entry.obj.koid
            if self._objects.get(koid) is not entry.obj:
                fail("handle %#x refers to a dead object (koid %d)", value, koid)
            expected_refs[koid] += 1
        for vmo in vmos:
            if not 0 <= vmo.size <= MX_VMO_MAX_SIZE:
                fail("koid %d has size %d", vmo.koid, vmo.size)
            parent = vmo.parent
            if parent is not None:
                if self._objects.get(parent.koid) is not parent:
                    fail("koid %d has a dead parent (koid %d)", vmo.koid, parent.koid)
                if not isinstance(parent, _VmObject):
                    fail("koid %d has a non-VMO parent", vmo.koid)
                if vmo.parent_offset % PAGE_SIZE or not _u64(vmo.parent_offset):
                    fail("koid %d has parent offset %d", vmo.koid, vmo.parent_offset)
                expected_refs[parent.koid] += 1
        for koid, obj in self._objects.items():
            if obj.koid != koid or not _FIRST_KOID <= koid < self._next_koid:
                fail("object registered under koid %d has koid %d", koid, obj.koid)
            if obj.refs != expected_refs[koid]:
                fail("koid %d has refcount %d, expected %d", koid, obj.refs, expected_refs[koid])
            if obj.refs <= 0:
                fail("koid %d is live without references", koid)
        acyclic = set()
        for vmo in vmos:
            chain = set()
            node = vmo
            while node is not None and node.koid not in acyclic:
                if node.koid in chain:
                    fail("parent chain through koid %d is cyclic", node.koid)
                chain.add(node.koid)
                node = node.parent
            acyclic |= chain

        # Handle table: live and free slots partition [0, next_slot); generations match.
        if not 0 <= self._next_slot <= MX_MAX_HANDLES:
            fail("next_slot %d outside [0, %d]", self._next_slot, MX_MAX_HANDLES)
        free_slots = set(self._free_slots)
        if len(free_slots) != len(self._free_slots):
            fail("a slot is on the free slot stack twice")
        live_slots = set()
        for value in self._handles:
            if value & 1 == 0 or not 0 < value < (1 << 31):
                fail("handle value %#x is not odd, positive and below 2**31", value)
            slot = (value >> 1) & _SLOT_MASK
            generation = value >> (_SLOT_BITS + 1)
            if slot in live_slots:
                fail("slot %d holds two handles", slot)
            if slot in free_slots:
                fail("slot %d is both free and live", slot)
            if slot >= self._next_slot:
                fail("slot %d is not below next_slot %d", slot, self._next_slot)
            if generation != self._generations.get(slot, 0):
                fail("handle %#x has a stale generation", value)
            live_slots.add(slot)
        for slot in free_slots:
            if not 0 <= slot < self._next_slot:
                fail("free slot %d is not below next_slot %d", slot, self._next_slot)
        if len(live_slots) + len(free_slots) != self._next_slot:
            fail("live %d + free %d slots != next_slot %d", len(live_slots), len(free_slots),
                 self._next_slot)

        # stats() agrees with what was counted here.
        stats = self.stats()
        expected = {"total_frames": total, "free_frames": total - not_free,
                    "committed_frames": not_free, "vmos": len(vmos),
                    "handles": len(self._handles), "pinned_frames": len(self._pins)}
        for key, value in expected.items():
            if stats[key] != value:
                fail("stats()[%r] is %d, expected %d", key, stats[key], value)
