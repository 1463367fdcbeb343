"""The state file (docs/state-format.md): `save`, `load`, and the bytes pickling uses.

The executable spec of the core's `vmo/_statefile.pyx`: the same format, written and read
with `struct` and `zlib.crc32`. A file written by either kernel loads in either.

Loading reads and checks every section but the frame contents first (lengths against the
file's size, CRC-32s, every count, every cross reference), builds the kernel only then, and
streams the contents into it; any failure closes what was built and raises ValueError
naming the byte offset or the section.
"""

import io
import os
import struct
import zlib

from .._atomicfile import atomic_write
from .._memmap import memory_map
from ..constants import MX_MAX_HANDLES, MX_VMO_MAX_SIZE, PAGE_SIZE
from ..errors import MxError, Status
from ._handles import Handle
from ._state import FIRST_KOID
from ._vmobject import EventObject, VmoObject, page_ceil

__all__ = ["dumps", "load", "loads", "save"]

MAGIC = b"VMOSTATE"
VERSION = 1
HEADER = struct.Struct("<8sII")          # magic, version, flags
SECTION = struct.Struct("<4sIQ")         # tag, 0, payload length
TRAILER = struct.Struct("<II")           # CRC-32 of the payload, 0
SECTIONS = (b"KERN", b"POOL", b"HNDL", b"OBJS", b"DATA", b"END ")
KERN = struct.Struct("<QQQII")           # next_koid, released_runs, zeroed_frames, nranges, 0
RANGE = struct.Struct("<QQ")             # base, size
POOL = struct.Struct("<QQQ")             # next_fresh, freed list length, dirty free frames
SLOTS = struct.Struct("<II")             # slots, free slots
SLOT = struct.Struct("<QIHH")            # koid (0: free), rights, generation, 0
OBJECT = struct.Struct("<IIQQ")          # type, 0, koid, refs
VMO = struct.Struct("<QQQQ")             # size, parent koid (0: none), parent_offset, runs
PAGE_RUN = struct.Struct("<QII")         # first page index, first frame, pages
DATA = struct.Struct("<QQ")              # runs, frames
DATA_RUN = struct.Struct("<II")          # first frame, frames
END = struct.Struct("<QII")              # file length, CRC-32 of headers and trailers, 0
TYPE_VMO = 1
TYPE_EVENT = 2
CHUNK = 1 << 20                          # bytes of frame contents per read or write


# -- saving ----------------------------------------------------------------------------------

def _pad8(payload):
    return payload + bytes(-len(payload) % 8)


def _runs(items):
    """[(start, count)] of the ascending integers ``items``, consecutive ones merged."""
    runs = []
    for item in items:
        if runs and runs[-1][0] + runs[-1][1] == item:
            runs[-1][1] += 1
        else:
            runs.append([item, 1])
    return runs


def _objects(state):
    """The payload of OBJS: every live object, ascending koid."""
    out = [struct.pack("<Q", len(state.objects))]
    for koid in sorted(state.objects):
        obj = state.objects[koid]
        if isinstance(obj, VmoObject):
            runs = []  # [page, frame, count]: consecutive pages on consecutive frames
            for index in sorted(obj.pages):
                frame = obj.pages[index]
                if runs and runs[-1][0] + runs[-1][2] == index \
                        and runs[-1][1] + runs[-1][2] == frame:
                    runs[-1][2] += 1
                else:
                    runs.append([index, frame, 1])
            out.append(OBJECT.pack(TYPE_VMO, 0, koid, obj.refs))
            parent = obj.parent
            out.append(VMO.pack(obj.size, 0 if parent is None else parent.koid,
                                obj.parent_offset, len(runs)))
            out.extend(PAGE_RUN.pack(*run) for run in runs)
        else:
            out.append(OBJECT.pack(TYPE_EVENT, 0, koid, obj.refs))
    return b"".join(out)


def _handles(ht):
    """The payload of HNDL: every slot ever used, then the free-slot stack, bottom first."""
    owner = {}
    for value, entry in ht.entries.items():
        owner[(value >> 1) & 0x3FFFF] = entry
    out = [SLOTS.pack(ht.next_slot, len(ht.free_slots))]
    for slot in range(ht.next_slot):
        entry = owner.get(slot)
        out.append(SLOT.pack(0 if entry is None else entry.obj.koid,
                             0 if entry is None else entry.rights,
                             ht.generations.get(slot, 0), 0))
    out.append(struct.pack(f"<{len(ht.free_slots)}I", *ht.free_slots))
    return _pad8(b"".join(out))


def _write_state(kernel, file):
    """Write the whole state of ``kernel`` (open, nothing pinned) to ``file``."""
    state = kernel._state
    pool = state.pool
    headers = []  # the file header, every section header and trailer: END's CRC-32
    length = 0

    def put(data, header=False):
        nonlocal length
        if header:
            headers.append(data)
        file.write(data)
        length += len(data)

    def section(tag, payload):
        put(SECTION.pack(tag, 0, len(payload)), True)
        put(payload)
        put(TRAILER.pack(zlib.crc32(payload), 0), True)

    put(HEADER.pack(MAGIC, VERSION, 0), True)
    ranges = kernel.memory_map
    section(b"KERN", KERN.pack(state.next_koid, 0, 0, len(ranges), 0)
            + b"".join(RANGE.pack(base, size) for base, size in ranges))
    section(b"POOL", _pad8(POOL.pack(pool.next_fresh, len(pool.free_list), 0)
                           + struct.pack(f"<{len(pool.free_list)}I", *pool.free_list)))
    section(b"HNDL", _handles(state.handles))
    section(b"OBJS", _objects(state))
    # DATA, streamed: run headers and contents, the CRC-32 chained over them.
    runs = _runs(sorted(pool.written))
    frames = sum(count for _, count in runs)
    put(SECTION.pack(b"DATA", 0, DATA.size + DATA_RUN.size * len(runs) + frames * PAGE_SIZE),
        True)
    head = DATA.pack(len(runs), frames)
    put(head)
    crc = zlib.crc32(head)
    for first, count in runs:
        run = DATA_RUN.pack(first, count)
        put(run)
        crc = zlib.crc32(run, crc)
        stop = (first + count) * PAGE_SIZE
        for start in range(first * PAGE_SIZE, stop, CHUNK):
            chunk = pool.mem[start:min(start + CHUNK, stop)]
            put(chunk)
            crc = zlib.crc32(chunk, crc)
    put(TRAILER.pack(crc, 0), True)
    section(b"END ", END.pack(length + SECTION.size + END.size + TRAILER.size,
                              zlib.crc32(b"".join(headers)), 0))


def _saveable(kernel):
    kernel._ensure_open()
    if not kernel.coherent:
        raise ValueError("a non-coherent kernel cannot be saved (its CPU cache is not in the "
                         "state file: docs/state-format.md)")
    if kernel._state.pool.pins:
        raise MxError(Status.ERR_BAD_STATE,
                      "save: physical memory is pinned by a live view or pin")


def save(kernel, path):
    """Write the kernel's whole state to ``path`` atomically (docs/state-format.md).
    ValueError if the kernel is closed, MxError(ERR_BAD_STATE) while a physical view or
    pin is live, OSError from the file system (``path`` is then untouched)."""
    _saveable(kernel)
    atomic_write(path, lambda file: _write_state(kernel, file))


def dumps(kernel):
    """The state file's bytes (what pickling carries). Errors as `save`."""
    _saveable(kernel)
    file = io.BytesIO()
    _write_state(kernel, file)
    return file.getvalue()


# -- loading ---------------------------------------------------------------------------------

def _fail(message, *args):
    raise ValueError("vmo state file: " + (message % args if args else message))


class _Reader:
    """Sequential reads of a file of known size, failing with the byte offset."""

    def __init__(self, file, size):
        self.file = file
        self.size = size
        self.offset = 0
        self.headers = []

    def read(self, n, what):
        if n > self.size - self.offset:
            _fail("truncated: %s at byte %d needs %d bytes, %d left", what, self.offset, n,
                  self.size - self.offset)
        data = self.file.read(n)
        if len(data) != n:
            _fail("truncated: %s at byte %d (the file shrank while read)", what, self.offset)
        self.offset += n
        return data

    def header(self, n, what):
        """``n`` bytes that END's CRC-32 covers (the file header, section headers, trailers)."""
        data = self.read(n, what)
        self.headers.append(data)
        return data

    def section(self, tag):
        """The header of the next section, which must be ``tag``: (payload length, the
        section's byte offset)."""
        at = self.offset
        header = self.header(SECTION.size, "the header of section %s" % tag.decode())
        found, zero, length = SECTION.unpack(header)
        if found != tag or zero:
            _fail("expected section %s at byte %d, found %r", tag.decode(), at, header[:8])
        left = self.size - self.offset
        if length > left or left - length < TRAILER.size:
            _fail("section %s at byte %d claims %d bytes, the file has %d left", tag.decode(),
                  at, length, left)
        return length, at

    def trailer(self, name, crc):
        found, zero = TRAILER.unpack(self.header(TRAILER.size, name))
        if found != crc or zero:
            _fail("%s: CRC-32 mismatch", name)

    def payload(self, tag):
        """The payload of the next section ``tag``, its CRC-32 checked."""
        length, at = self.section(tag)
        name = "section %s at byte %d" % (tag.decode(), at)
        payload = self.read(length, name)
        self.trailer(name, zlib.crc32(payload))
        return _Payload(tag.decode(), payload, at)


class _Payload:
    """Reads of fixed-size records from one section's payload."""

    def __init__(self, name, data, at):
        self.name = name
        self.data = data
        self.at = at
        self.pos = 0

    def fail(self, message, *args):
        _fail("section %s at byte %d: %s", self.name, self.at,
              message % args if args else message)

    def take(self, record, count=None):
        """One record of struct ``record`` (a tuple), or a list of ``count`` of them."""
        n = 1 if count is None else count
        if n > (len(self.data) - self.pos) // record.size:
            self.fail("%d records of %d bytes at payload byte %d do not fit in %d bytes",
                      n, record.size, self.pos, len(self.data))
        out = list(record.iter_unpack(self.data[self.pos:self.pos + record.size * n]))
        self.pos += record.size * n
        return out[0] if count is None else out

    def u32s(self, count):
        if count > (len(self.data) - self.pos) // 4:
            self.fail("%d entries at payload byte %d do not fit", count, self.pos)
        out = struct.unpack_from(f"<{count}I", self.data, self.pos)
        self.pos += 4 * count
        return out

    def end(self, padded=False):
        rest = self.data[self.pos:]
        if (padded and (len(rest) >= 8 or any(rest))) or (not padded and rest):
            self.fail("%d unexpected bytes at payload byte %d", len(rest), self.pos)


def _parse(reader):
    """Read and check everything but the frame contents: a dict describing the state."""
    header = reader.header(HEADER.size, "the file header")
    magic, version, flags = HEADER.unpack(header)
    if magic != MAGIC:
        _fail("not a vmo state file (magic %r at byte 0)", magic)
    if version > VERSION:
        _fail("version %d is newer than this vmo reads (%d)", version, VERSION)
    if version != VERSION or flags:
        _fail("unknown version %d / flags %#x at byte 8", version, flags)
    state = {}

    # KERN: the memory map and the counters.
    kern = reader.payload(b"KERN")
    next_koid, released, zeroed, nranges, zero = kern.take(KERN)
    if zero or not 1 <= nranges <= 64:
        kern.fail("%d memory ranges (1 to 64)", nranges)
    ranges = kern.take(RANGE, nranges)
    kern.end()
    try:
        ranges = memory_map(memory=ranges)
    except ValueError as exc:
        kern.fail("bad memory map: %s", exc)
    if next_koid < FIRST_KOID:
        kern.fail("koid counter %d below %d", next_koid, FIRST_KOID)
    nframes = sum(size for _, size in ranges) // PAGE_SIZE
    state.update(ranges=ranges, next_koid=next_koid, nframes=nframes)

    # POOL: the allocator (checked against the owners once OBJS is read).
    pool = reader.payload(b"POOL")
    next_fresh, nlist, ndirty = pool.take(POOL)
    if next_fresh > nframes:
        pool.fail("next fresh frame %d past the %d frames", next_fresh, nframes)
    free_list = pool.u32s(nlist)
    dirty_free = pool.u32s(ndirty)
    pool.end(padded=True)

    # HNDL: the slots and the free-slot stack.
    hndl = reader.payload(b"HNDL")
    nslots, nfree = hndl.take(SLOTS)
    if nslots > MX_MAX_HANDLES or nfree > nslots:
        hndl.fail("%d slots, %d free (at most %d slots)", nslots, nfree, MX_MAX_HANDLES)
    slots = hndl.take(SLOT, nslots)
    free_slots = hndl.u32s(nfree)
    hndl.end(padded=True)

    # OBJS: every live object.
    objs = reader.payload(b"OBJS")
    (count,) = objs.take(struct.Struct("<Q"))
    if count > len(objs.data) // OBJECT.size:
        objs.fail("%d objects cannot fit", count)
    objects = {}  # koid -> dict
    owned = []    # (first frame, count, koid)
    previous = FIRST_KOID - 1
    for _ in range(count):
        kind, zero, koid, refs = objs.take(OBJECT)
        if zero or kind not in (TYPE_VMO, TYPE_EVENT):
            objs.fail("object of unknown type %d at payload byte %d", kind, objs.pos)
        if not previous < koid < next_koid:
            objs.fail("koid %d out of order or not below the counter %d", koid, next_koid)
        previous = koid
        obj = {"type": kind, "refs": refs, "expected": 0}  # expected: handles + clones
        if kind == TYPE_VMO:
            size, parent, parent_offset, nruns = objs.take(VMO)
            if size > MX_VMO_MAX_SIZE:
                objs.fail("koid %d has size %d", koid, size)
            if parent:
                if parent >= koid or objects.get(parent, {}).get("type") != TYPE_VMO:
                    objs.fail("koid %d has parent %d, not an earlier VMO", koid, parent)
                # (offset + size may pass 2**64: a clone may grow after it was made.)
                if parent_offset % PAGE_SIZE:
                    objs.fail("koid %d has parent offset %d", koid, parent_offset)
                objects[parent]["expected"] += 1
            elif parent_offset:
                objs.fail("koid %d has a parent offset but no parent", koid)
            if nruns > (len(objs.data) - objs.pos) // PAGE_RUN.size:
                objs.fail("koid %d: %d page runs cannot fit", koid, nruns)
            runs = objs.take(PAGE_RUN, nruns)
            limit = page_ceil(size)
            end = 0
            for index, frame, pages in runs:
                if pages == 0 or index < end or index + pages > limit:
                    objs.fail("koid %d: page run %d+%d out of order or past its size",
                              koid, index, pages)
                if frame + pages > nframes:
                    objs.fail("koid %d: frames %d+%d beyond memory", koid, frame, pages)
                end = index + pages
                owned.append((frame, pages, koid))
            obj.update(size=size, parent=parent, parent_offset=parent_offset, runs=runs)
        objects[koid] = obj
    objs.end()

    # Cross references: each frame held once; references; handles; the allocator.
    owned.sort()
    for (f1, n1, k1), (f2, _, k2) in zip(owned, owned[1:]):
        if f1 + n1 > f2:
            objs.fail("frame %d held by koids %d and %d", f2, k1, k2)
    held = sum(n for _, n, _ in owned)

    def is_owned(frame):
        lo, hi = 0, len(owned)
        while lo < hi:
            mid = (lo + hi) // 2
            if owned[mid][0] <= frame:
                lo = mid + 1
            else:
                hi = mid
        return lo > 0 and frame < owned[lo - 1][0] + owned[lo - 1][1]

    handles = []  # (slot, koid, rights, generation)
    free = set()
    for slot, (koid, rights, generation, zero) in enumerate(slots):
        if zero or generation > 0xFFF:
            hndl.fail("slot %d has generation %d", slot, generation)
        if koid == 0:
            if rights:
                hndl.fail("free slot %d has rights", slot)
            free.add(slot)
            continue
        if koid not in objects:
            hndl.fail("slot %d refers to koid %d, not a live object", slot, koid)
        objects[koid]["expected"] += 1
        handles.append((slot, koid, rights, generation))
    if sorted(free_slots) != sorted(free) or len(set(free_slots)) != len(free_slots):
        hndl.fail("the free-slot stack is not the %d free slots", len(free))
    for koid, obj in objects.items():
        if obj["refs"] != obj["expected"] or obj["refs"] == 0:
            objs.fail("koid %d has refcount %d, %d handles and children refer to it",
                      koid, obj["refs"], obj["expected"])

    if len(set(free_list)) != len(free_list):
        pool.fail("a frame is on the freed list twice")
    for frame in free_list:
        if frame >= next_fresh or is_owned(frame):
            pool.fail("freed frame %d is held or not below the fresh mark", frame)
    below = sum(max(0, min(f + n, next_fresh) - f) for f, n, _ in owned)
    if len(free_list) + below != next_fresh:
        pool.fail("%d freed + %d held frames below the fresh mark %d", len(free_list), below,
                  next_fresh)
    if next_fresh < nframes and is_owned(next_fresh):
        pool.fail("the fresh mark %d is on a held frame", next_fresh)
    for a, b in zip(dirty_free, dirty_free[1:]):
        if a >= b:
            pool.fail("dirty free frames out of order")
    for frame in dirty_free:
        if frame >= nframes or is_owned(frame):
            pool.fail("dirty free frame %d is held or beyond memory", frame)
    state.update(free_list=free_list, dirty_free=dirty_free, next_fresh=next_fresh,
                 released=released, zeroed=zeroed, nslots=nslots, free_slots=free_slots,
                 slots=slots, handles=handles, objects=objects, owned=owned, held=held,
                 is_owned=is_owned)
    return state


def _build(cls, state):
    """A kernel in the parsed state, every frame zero (DATA is streamed in afterwards)."""
    kernel = cls(memory=state["ranges"])
    ks = kernel._state
    made = {}
    for koid, obj in state["objects"].items():  # ascending: parents come first
        if obj["type"] == TYPE_VMO:
            parent = made[obj["parent"]] if obj["parent"] else None
            new = VmoObject(koid, obj["size"], parent, obj["parent_offset"])
            for index, frame, pages in obj["runs"]:
                for i in range(pages):
                    new.pages[index + i] = frame + i
        else:
            new = EventObject(koid)
        new.refs = obj["refs"]
        made[koid] = new
    ks.objects = made
    ks.next_koid = state["next_koid"]
    ht = ks.handles
    ht.next_slot = state["nslots"]
    ht.free_slots = list(state["free_slots"])
    ht.generations = {slot: gen for slot, (_, _, gen, _) in enumerate(state["slots"]) if gen}
    for slot, koid, rights, generation in state["handles"]:
        value = (((generation << 18) | slot) << 1) | 1
        ht.entries[value] = Handle(made[koid], rights)
    pool = ks.pool
    pool.next_fresh = state["next_fresh"]
    pool.free_list = list(state["free_list"])
    pool.held_above = set()
    for frame, pages, _ in state["owned"]:
        pool.held_above.update(range(max(frame, pool.next_fresh), frame + pages))
    return kernel


def _read_data(reader, kernel, state):
    """Stream DATA into the built kernel's frames, then check END."""
    length, at = reader.section(b"DATA")
    name = "section DATA at byte %d" % at
    if length < DATA.size:
        _fail("%s: %d bytes", name, length)
    head = reader.read(DATA.size, name)
    nruns, frames = DATA.unpack(head)
    if nruns > length // DATA_RUN.size or frames > state["held"] or \
            DATA.size + DATA_RUN.size * nruns + frames * PAGE_SIZE != length:
        _fail("%s: %d runs of %d frames do not make its %d bytes", name, nruns, frames, length)
    crc = zlib.crc32(head)
    pool = kernel._state.pool
    end = 0
    seen = 0
    for _ in range(nruns):
        run = reader.read(DATA_RUN.size, name)
        crc = zlib.crc32(run, crc)
        first, count = DATA_RUN.unpack(run)
        if count == 0 or first < end or first + count > state["nframes"] or \
                count > frames - seen:
            _fail("%s: run %d+%d out of order, empty or beyond memory", name, first, count)
        for frame in range(first, first + count):
            if not state["is_owned"](frame):
                _fail("%s: frame %d has contents but is not held", name, frame)
        end = first + count
        seen += count
        for start in range(first * PAGE_SIZE, end * PAGE_SIZE, CHUNK):
            stop = min(start + CHUNK, end * PAGE_SIZE)
            data = reader.read(stop - start, name)
            crc = zlib.crc32(data, crc)
            pool.mem[start:stop] = data
        pool.written.update(range(first, end))
    if seen != frames:
        _fail("%s: runs hold %d frames, the header says %d", name, seen, frames)
    reader.trailer(name, crc)
    headers_crc = zlib.crc32(b"".join(reader.headers))
    length, at = reader.section(b"END ")
    name = "section END at byte %d" % at
    if length != END.size:
        _fail("%s has %d bytes", name, length)
    payload = reader.read(END.size, name)
    reader.trailer(name, zlib.crc32(payload))
    total, crc, zero = END.unpack(payload)
    if zero or total != reader.size or reader.offset != reader.size:
        _fail("the file is %d bytes, %s says %d", reader.size, name, total)
    if crc != headers_crc:
        _fail("the headers' CRC-32 (%s) does not match", name)


def _load(cls, file, size):
    reader = _Reader(file, size)
    state = _parse(reader)
    kernel = _build(cls, state)
    try:
        _read_data(reader, kernel, state)
    except BaseException:
        kernel.close()
        raise
    return kernel


def load(cls, path):
    """A new ``cls`` kernel in the state saved at ``path``. ValueError, naming the byte
    offset or section, for a truncated, corrupted, foreign or newer file (nothing is left
    built); OSError if it cannot be read."""
    with open(path, "rb") as file:
        return _load(cls, file, os.fstat(file.fileno()).st_size)


def loads(cls, data):
    """A new ``cls`` kernel from a state file's bytes (unpickling). Errors as `load`."""
    data = bytes(data)
    return _load(cls, io.BytesIO(data), len(data))
