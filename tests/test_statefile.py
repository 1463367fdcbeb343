"""Save and load of whole kernels, and pickling (docs/state-format.md, docs/api.md "Save
and load").

Every test runs on both kernels (the `kernel_cls` fixture); the cross tests save on one and
load on the other. The central property: a kernel that runs a prefix of calls, is saved and
loaded (or pickled, or sent to another process), then runs a suffix, gives exactly what a
kernel running prefix + suffix gives: every status, value, byte and stat. Hostile files
(truncated, corrupted, foreign, newer, with huge counts) raise ValueError and build nothing.
"""

import concurrent.futures
import gc
import os
import pickle
import random
import struct
import tracemalloc
import zlib
from array import array

import pytest

import vmo
from vmo import _atomicfile
from vmo._reference import Kernel as ReferenceKernel
from vmo._reference import _statefile as ref_statefile

PAGE = 4096
MiB = 1 << 20
KINDS = [vmo.Kernel, ReferenceKernel]
KIND_IDS = ["core", "reference"]


# -- workloads -----------------------------------------------------------------------------------
def populate(k):
    """A state with every kind of thing the file holds: VMOs with pages in runs and alone,
    clone chains with their own and inherited pages, events, a contiguous VMO, freed frames
    in LIFO order (some written), freed handle slots with moved-on generations. Returns the
    handle values made (live or not)."""
    handles = []

    def keep(result):
        status, h = result
        assert status == vmo.NO_ERROR
        handles.append(h)
        return h

    a = keep(k.vmo_create(40 * PAGE + 123))
    k.vmo_write(a, bytes(range(256)) * 64, 5)
    k.vmo_write(a, b"tail", 40 * PAGE + 100)
    k.vmo_op_range(a, vmo.MX_VMO_OP_COMMIT, 10 * PAGE, 8 * PAGE)
    b = keep(k.vmo_create(MiB))
    k.vmo_write(b, b"\xab" * (300 * 1024), 0)
    c1 = keep(k.vmo_clone(a, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 0, 20 * PAGE))
    k.vmo_write(c1, b"clone one", 2 * PAGE + 7)
    c2 = keep(k.vmo_clone(c1, vmo.MX_VMO_CLONE_COPY_ON_WRITE, PAGE, 30 * PAGE))
    k.vmo_write(c2, b"clone two", 5 * PAGE)
    keep(k.event_create())
    d = keep(k.handle_duplicate(a, vmo.MX_RIGHT_READ | vmo.MX_RIGHT_DUPLICATE))
    k.handle_close(d)
    keep(k.vmo_create_contiguous(16 * PAGE, 14))
    e = keep(k.vmo_create(64 * PAGE))
    k.vmo_write(e, b"\x01" * (20 * PAGE), 0)
    k.vmo_op_range(e, vmo.MX_VMO_OP_COMMIT, 30 * PAGE, 10 * PAGE)
    k.vmo_op_range(e, vmo.MX_VMO_OP_DECOMMIT, 3 * PAGE, 30 * PAGE)
    k.vmo_set_size(b, 200 * 1024 + 5)
    k.handle_close(c1)  # its child keeps it alive
    r = keep(k.handle_replace(e, vmo.MX_RIGHT_READ | vmo.MX_RIGHT_WRITE | vmo.MX_RIGHT_MAP))
    handles.append(e)
    f = keep(k.vmo_create(4 * PAGE))
    k.vmo_write(f, b"gone", 0)
    k.handle_close(f)
    del r
    return handles


def random_calls(k, seed, count, handles):
    """`count` calls chosen by `seed` over `handles` (extended with what they create);
    returns every call's result, buffers' contents included."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        op = rng.randrange(12)
        h = rng.choice(handles + [0, 3, 0x7FFF_FFFF])
        offset = rng.choice([0, 1, PAGE - 1, PAGE, 3 * PAGE + 17, rng.randrange(64 * PAGE)])
        n = rng.choice([0, 1, 100, PAGE, 3 * PAGE + 5, 20 * PAGE])
        if op == 0:
            result = k.vmo_create(rng.choice([0, PAGE, 10 * PAGE + 1, 200 * PAGE]))
        elif op == 1:
            result = k.vmo_write(h, bytes([rng.randrange(256)]) * n, offset)
        elif op == 2:
            buf = bytearray(n)
            result = (k.vmo_read(h, buf, offset), bytes(buf))
        elif op == 3:
            result = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, offset & ~(PAGE - 1), n)
        elif op == 4:
            result = k.handle_close(h)
        elif op == 5:
            result = k.vmo_op_range(h, rng.choice([vmo.MX_VMO_OP_COMMIT,
                                                   vmo.MX_VMO_OP_DECOMMIT]), offset, n)
        elif op == 6:
            result = k.vmo_set_size(h, rng.choice([0, PAGE, 5 * PAGE + 3, 100 * PAGE]))
        elif op == 7:
            result = k.handle_duplicate(h, vmo.MX_RIGHT_SAME_RIGHTS)
        elif op == 8:
            result = k.event_create()
        elif op == 9:
            buf = array("Q", [0] * 4)
            result = (k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, offset, 4 * PAGE, buf),
                      list(buf))
        elif op == 10:
            result = k.vmo_create_contiguous(rng.choice([PAGE, 8 * PAGE]), 0)
        else:
            result = k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC)
        if isinstance(result, tuple) and len(result) == 2 and result[0] == vmo.NO_ERROR \
                and op in (0, 3, 7, 8, 10):
            handles.append(result[1])
        out.append((op, result))
    return out


def state_of(k, handles):
    """Everything observable about `k` through `handles`: stats, the allocator, and per
    handle its size, info, own pages and bytes."""
    stats = k.stats()
    out = {"stats": {key: stats[key] for key in sorted(stats)}, "alloc": k._allocator_state()}
    for h in sorted(set(handles)):
        status, size = k.vmo_get_size(h)
        out[h] = (status, size, k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC),
                  k._vmo_pages(h), k.vmo_read_bytes(h, 0, size) if status == 0 else None)
    return out


def comparable(state):
    """A state without the core-only statistics (the reference does not keep them)."""
    state = dict(state)
    state["stats"] = {key: value for key, value in state["stats"].items()
                      if key not in ("released_runs", "zeroed_frames")}
    return state


def dumps(k):
    """The state file's bytes of either kernel."""
    if isinstance(k, ReferenceKernel):
        return ref_statefile.dumps(k)
    from vmo._statefile import dump_kernel
    return dump_kernel(k)


def loads(cls, data):
    if issubclass(cls, ReferenceKernel):
        return ref_statefile.loads(cls, data)
    from vmo._statefile import load_kernel_bytes
    return load_kernel_bytes(cls, data)


@pytest.fixture
def tmp_state(tmp_path):
    return str(tmp_path / "kernel.state")


# -- round trips ---------------------------------------------------------------------------------
def test_round_trip_through_a_file(kernel_cls, tmp_state):
    k = kernel_cls(memory_size=4 * MiB)
    handles = populate(k)
    k.save(tmp_state)
    loaded = kernel_cls.load(tmp_state)
    assert type(loaded) is kernel_cls
    loaded._check()
    assert state_of(loaded, handles) == state_of(k, handles)
    assert loaded.memory_map == k.memory_map
    # The same calls give the same everything afterwards.
    assert random_calls(loaded, 7, 300, list(handles)) == random_calls(k, 7, 300, list(handles))
    assert state_of(loaded, handles) == state_of(k, handles)
    loaded._check()
    k.close()
    loaded.close()


def test_round_trip_through_pickle(kernel_cls):
    k = kernel_cls(memory_size=4 * MiB)
    handles = populate(k)
    loaded = pickle.loads(pickle.dumps(k))
    assert type(loaded) is kernel_cls
    loaded._check()
    assert state_of(loaded, handles) == state_of(k, handles)
    assert random_calls(loaded, 3, 200, list(handles)) == random_calls(k, 3, 200, list(handles))
    k.close()
    loaded.close()


def test_fresh_and_memory_map_kernels_round_trip(kernel_cls, tmp_state):
    memory = [(0x4000_0000, 8 * PAGE), (0x1000, 4 * PAGE), (0x4000_8000, 2 * PAGE)]
    k = kernel_cls(memory=memory)
    kernel_cls.save(k, tmp_state)
    fresh = kernel_cls.load(tmp_state)
    assert fresh.memory_map == k.memory_map and fresh.stats() == k.stats()
    h = k.vmo_create(14 * PAGE)[1]
    k.vmo_write(h, b"x" * (14 * PAGE), 0)
    k.save(tmp_state)
    full = kernel_cls.load(tmp_state)
    full._check()
    assert state_of(full, [h]) == state_of(k, [h])
    assert full.vmo_create_contiguous(PAGE) == k.vmo_create_contiguous(PAGE)
    for kernel in (k, fresh, full):
        kernel.close()


def test_saving_twice_gives_the_same_bytes_and_overwrites(kernel_cls, tmp_state):
    k = kernel_cls(memory_size=4 * MiB)
    populate(k)
    k.save(tmp_state)
    first = open(tmp_state, "rb").read()
    k.save(tmp_state)
    assert open(tmp_state, "rb").read() == first == dumps(k)
    assert dumps(kernel_cls.load(tmp_state)) == first
    assert [name for name in os.listdir(os.path.dirname(tmp_state))] == ["kernel.state"]
    k.close()


@pytest.mark.parametrize("saver", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("loader", KINDS, ids=KIND_IDS)
def test_across_kernels(saver, loader, tmp_state):
    """A file saved by either kernel loads in either; the reference writes the same bytes for
    the state whichever kernel saved it (the core adds its own statistics)."""
    k = saver(memory_size=4 * MiB)
    handles = populate(k)
    k.save(tmp_state)
    loaded = loader.load(tmp_state)
    loaded._check()
    assert comparable(state_of(loaded, handles)) == comparable(state_of(k, handles))
    assert random_calls(loaded, 11, 300, list(handles)) == random_calls(k, 11, 300,
                                                                       list(handles))
    assert comparable(state_of(loaded, handles)) == comparable(state_of(k, handles))
    k.close()
    loaded.close()


def test_both_kernels_write_the_same_file():
    core, ref = vmo.Kernel(memory_size=4 * MiB), ReferenceKernel(memory_size=4 * MiB)
    populate(core)
    populate(ref)
    core_bytes, ref_bytes = dumps(core), dumps(ref)
    # The core also lists the freed frames it has yet to zero (the reference zeroes at once).
    assert ref_statefile.dumps(ref_statefile.loads(ReferenceKernel, core_bytes)) == ref_bytes
    # A core that never released or zeroed frames writes the reference's bytes exactly.
    core2, ref2 = vmo.Kernel(memory_size=MiB), ReferenceKernel(memory_size=MiB)
    for k in (core2, ref2):
        h = k.vmo_create(10 * PAGE)[1]
        k.vmo_write(h, b"same", 3 * PAGE)
        k.vmo_clone(h, 1, 0, PAGE)
        k.event_create()
    assert dumps(core2) == dumps(ref2)
    for k in (core, ref, core2, ref2):
        k.close()


def test_a_clone_grown_past_the_end_of_the_address_space(kernel_cls, tmp_state):
    """A clone may grow after it was made until parent_offset + size passes 2**64 (its pages
    past the wrap read as zero): a state like any other, saved and loaded."""
    k = kernel_cls(memory_size=MiB)
    h = k.vmo_create(1 << 50)[1]
    k.vmo_write(h, b"parent", (1 << 49) + 5)
    c = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 1 << 49, PAGE)[1]
    assert k.vmo_set_size(c, vmo.MX_VMO_MAX_SIZE) == vmo.NO_ERROR
    k.vmo_write(c, b"own", vmo.MX_VMO_MAX_SIZE - 3)
    k.save(tmp_state)
    loaded = kernel_cls.load(tmp_state)
    loaded._check()
    for offset in (5, vmo.MX_VMO_MAX_SIZE - 3, (1 << 64) - (1 << 49) + 7):
        assert loaded.vmo_read_bytes(c, offset, 6) == k.vmo_read_bytes(c, offset, 6)
    for kernel in (k, loaded):
        assert kernel._vmo_pages(c)[1] == k._vmo_pages(c)[1]
        assert kernel.stats() == k.stats()
        assert kernel._allocator_state() == k._allocator_state()
    k.close()
    loaded.close()


# -- the test: prefix, save/load, suffix ------------------------------------------------
def _prefix(k):
    handles = populate(k)
    random_calls(k, 1, 150, handles)
    return handles


def _through_file(k, tmp):
    k.save(tmp)
    return type(k).load(tmp)


def _through_pickle(k, tmp):
    return pickle.loads(pickle.dumps(k))


@pytest.mark.parametrize("carry", [_through_file, _through_pickle], ids=["file", "pickle"])
def test_prefix_save_load_suffix(kernel_cls, carry, tmp_state):
    saved = kernel_cls(memory_size=2 * MiB)
    handles = _prefix(saved)
    loaded = carry(saved, tmp_state)
    # The saved kernel is left as it was; close it so nothing can be shared with it.
    saved.close()
    whole = kernel_cls(memory_size=2 * MiB)
    assert _prefix(whole) == handles
    suffix_handles = list(handles)
    assert random_calls(loaded, 2, 400, list(handles)) == random_calls(whole, 2, 400,
                                                                      suffix_handles)
    assert state_of(loaded, suffix_handles) == state_of(whole, suffix_handles)
    loaded._check()
    loaded.close()
    whole.close()


def _run_suffix(kernel, handles):
    """In a worker process: the suffix on the kernel received, and its state after."""
    handles = list(handles)
    results = random_calls(kernel, 2, 400, handles)
    return results, state_of(kernel, handles)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_kernel_travels_to_a_worker_process(kind):
    k = kind(memory_size=2 * MiB)
    handles = _prefix(k)
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        remote = pool.submit(_run_suffix, k, handles).result(timeout=120)
    assert remote == _run_suffix(k, handles)
    k.close()


# -- refusals and atomicity ----------------------------------------------------------------------
def test_save_refuses_while_a_physical_view_is_live(kernel_cls, tmp_state):
    k = kernel_cls(memory_size=MiB)
    h = k.vmo_create(PAGE)[1]
    k.vmo_write(h, b"pinned", 0)
    (paddr,) = k.vmo(h).lookup()
    view = k.phys_view(paddr, PAGE)
    with pytest.raises(vmo.MxError) as info:
        k.save(tmp_state)
    assert info.value.status == vmo.ERR_BAD_STATE
    with pytest.raises(vmo.MxError):
        pickle.dumps(k)
    assert not os.path.exists(tmp_state)
    view.release()
    k.save(tmp_state)
    assert kernel_cls.load(tmp_state).vmo_read_bytes(h, 0, 6) == (vmo.NO_ERROR, b"pinned")
    k.close()


def test_closed_kernels_are_refused(kernel_cls, tmp_state):
    k = kernel_cls(memory_size=MiB)
    k.close()
    with pytest.raises(ValueError):
        k.save(tmp_state)
    with pytest.raises(ValueError):
        pickle.dumps(k)


def test_a_failed_save_leaves_the_previous_file(tmp_path):
    path = str(tmp_path / "f")
    _atomicfile.atomic_write(path, lambda file: file.write(b"old"))

    def half(file):
        file.write(b"new, but")
        raise OSError("disk full")

    with pytest.raises(OSError):
        _atomicfile.atomic_write(path, half)
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["f"]
    os.chmod(path, 0o640)
    _atomicfile.atomic_write(path, lambda file: file.write(b"newer"))
    assert open(path, "rb").read() == b"newer"
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_a_save_that_fails_in_the_kernel_leaves_the_previous_file(tmp_state, monkeypatch):
    k = ReferenceKernel(memory_size=MiB)
    populate(k)
    k.save(tmp_state)
    before = open(tmp_state, "rb").read()
    k.vmo_create(PAGE)

    def broken(state):
        raise RuntimeError("mid-save")

    monkeypatch.setattr(ref_statefile, "_objects", broken)
    with pytest.raises(RuntimeError):
        k.save(tmp_state)
    assert open(tmp_state, "rb").read() == before
    assert os.listdir(os.path.dirname(tmp_state)) == ["kernel.state"]
    k.close()


def test_save_streams_the_frame_contents(kernel_cls, tmp_state):
    """Saving a kernel with 32 MiB written holds no more than a few MiB of Python memory."""
    k = kernel_cls(memory_size=64 * MiB)
    h = k.vmo_create(32 * MiB)[1]
    chunk = bytes(range(256)) * 4096
    for offset in range(0, 32 * MiB, len(chunk)):
        k.vmo_write(h, chunk, offset)
    tracemalloc.start()
    try:
        k.save(tmp_state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, peak
    assert os.path.getsize(tmp_state) > 32 * MiB
    loaded = kernel_cls.load(tmp_state)
    assert loaded.vmo_read_bytes(h, 32 * MiB - 300, 300) == k.vmo_read_bytes(h, 32 * MiB - 300,
                                                                              300)
    k.close()
    loaded.close()


# -- hostile files -------------------------------------------------------------------------------
SECTION = struct.Struct("<4sIQ")
TRAILER = struct.Struct("<II")


def sections(data):
    """[(tag, payload offset, payload length)] of a well-formed file."""
    out = []
    pos = 16
    while pos < len(data):
        tag, _, length = SECTION.unpack_from(data, pos)
        out.append((tag, pos + SECTION.size, length))
        pos += SECTION.size + length + TRAILER.size
    return out


def rebuild(data, tag, edit):
    """The file with section `tag`'s payload replaced by `edit(payload)`, every CRC-32 and
    END recomputed: a file whose framing is right and whose content is hostile."""
    parts = [data[:16]]
    headers = [data[:16]]
    for found, at, length in sections(data):
        payload = data[at:at + length]
        if found == b"END ":
            total = sum(len(p) for p in parts) + SECTION.size + 16 + TRAILER.size
            payload = struct.pack("<QII", total, zlib.crc32(b"".join(headers)), 0)
        elif found == tag:
            payload = edit(payload)
        header = SECTION.pack(found, 0, len(payload))
        trailer = TRAILER.pack(zlib.crc32(payload), 0)
        parts += [header, payload, trailer]
        headers += [header, trailer]
    return b"".join(parts)


def _live_kernels():
    gc.collect()
    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, (vmo.Kernel, ReferenceKernel)) and not obj.closed)


def refuse(cls, data, tmp_state, match=None, count=True):
    """Loading `data` raises ValueError and leaves no open kernel behind (counted unless
    `count` is False: the loops count once around themselves); returns the message."""
    before = _live_kernels() if count else None
    with open(tmp_state, "wb") as file:
        file.write(data)
    with pytest.raises(ValueError, match=match) as info:
        cls.load(tmp_state)
    with pytest.raises(ValueError, match=match):
        loads(cls, data)
    if count:
        assert _live_kernels() == before
    return str(info.value)


@pytest.fixture(scope="module")
def saved():
    k = vmo.Kernel(memory_size=2 * MiB)
    populate(k)
    data = dumps(k)
    k.close()
    return data


def test_truncation_at_every_page_boundary_and_in_the_header(kernel_cls, saved, tmp_state):
    cuts = sorted(set(range(0, len(saved), PAGE)) | set(range(0, 200)) | {len(saved) - 1})
    before = _live_kernels()
    for cut in cuts:
        message = refuse(kernel_cls, saved[:cut], tmp_state, count=False)
        assert "truncated" in message or "byte" in message or "not a vmo" in message, message
    assert _live_kernels() == before


def test_flipped_bytes(kernel_cls, saved, tmp_state):
    rng = random.Random(5)
    positions = sorted(set(range(0, 120)) | {rng.randrange(len(saved)) for _ in range(150)}
                       | {at for _, at, _ in sections(saved)})
    before = _live_kernels()
    for pos in positions:
        for mask in (0x01, 0x80):
            data = bytearray(saved)
            data[pos] ^= mask
            refuse(kernel_cls, bytes(data), tmp_state, count=False)
    assert _live_kernels() == before


def test_foreign_newer_and_padded_files(kernel_cls, saved, tmp_state):
    assert "not a vmo state file" in refuse(kernel_cls, b"PK\x03\x04" + saved[4:], tmp_state)
    assert "truncated" in refuse(kernel_cls, b"", tmp_state)
    newer = saved[:8] + struct.pack("<I", 2) + saved[12:]
    assert "newer" in refuse(kernel_cls, newer, tmp_state)
    refuse(kernel_cls, saved + b"\0", tmp_state)
    refuse(kernel_cls, saved + saved, tmp_state)
    swapped = bytearray(saved)
    at = sections(saved)[1][1] - SECTION.size
    swapped[at:at + 4] = b"KERN"
    assert "expected section POOL" in refuse(kernel_cls, bytes(swapped), tmp_state)


def _u64(payload, offset, value):
    return payload[:offset] + struct.pack("<Q", value) + payload[offset + 8:]


def _u32(payload, offset, value):
    return payload[:offset] + struct.pack("<I", value) + payload[offset + 4:]


HOSTILE = {
    # section, edit, what the message names
    "huge section length": None,
    "huge memory": (b"KERN", lambda p: _u64(p, 40, 1 << 63), "memory map"),
    "no ranges": (b"KERN", lambda p: _u32(p, 24, 0), "memory ranges"),
    "koid counter": (b"KERN", lambda p: _u64(p, 0, 5), "koid counter"),
    "koid counter behind": (b"KERN", lambda p: _u64(p, 0, 1025), "koid"),
    "huge freed list": (b"POOL", lambda p: _u64(p, 8, 1 << 60), "POOL"),
    "fresh mark past memory": (b"POOL", lambda p: _u64(p, 0, 1 << 40), "fresh"),
    "fresh mark moved": (b"POOL", lambda p: _u64(p, 0, struct.unpack_from("<Q", p)[0] + 1),
                         "fresh mark"),
    "freed frame twice": (b"POOL", lambda p: _u32(p, 28, struct.unpack_from("<I", p, 24)[0]),
                          "POOL"),
    "huge slot count": (b"HNDL", lambda p: _u32(p, 0, 0xFFFF_FFFF), "slots"),
    "huge free count": (b"HNDL", lambda p: _u32(p, 4, 0xFFFF_FFF0), "slots"),
    "slot to nothing": (b"HNDL", lambda p: _u64(p, 8, 99999), "not a live object"),
    "generation": (b"HNDL", lambda p: p[:20] + b"\xff\xff" + p[22:], "generation"),
    "huge object count": (b"OBJS", lambda p: _u64(p, 0, 1 << 62), "objects"),
    "object type": (b"OBJS", lambda p: _u32(p, 8, 7), "type"),
    "refcount": (b"OBJS", lambda p: _u64(p, 24, 1 << 40), "refcount"),
    "size": (b"OBJS", lambda p: _u64(p, 32, (1 << 64) - 1), "size"),
    "page runs": (b"OBJS", lambda p: _u64(p, 56, 1 << 50), "page runs"),
    "page run beyond size": (b"OBJS", lambda p: _u64(p, 64, 1 << 40), "past its size"),
    "frame beyond memory": (b"OBJS", lambda p: _u32(p, 72, 0xFFFF_FFF0), "beyond memory"),
    "data runs": (b"DATA", lambda p: _u64(p, 0, 1 << 62), "DATA"),
    "data frames": (b"DATA", lambda p: _u64(p, 8, 1 << 40), "DATA"),
    "data frame not held": (b"DATA", lambda p: _u32(p, 16, 0x1F0), "DATA"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_content_with_valid_checksums(kernel_cls, saved, tmp_state, case):
    if HOSTILE[case] is None:
        at = sections(saved)[3][1] - 8
        data = saved[:at] + struct.pack("<Q", 1 << 62) + saved[at + 8:]
        assert "claims" in refuse(kernel_cls, data, tmp_state)
        return
    tag, edit, word = HOSTILE[case]
    data = rebuild(saved, tag, edit)
    assert data != saved
    assert word in refuse(kernel_cls, data, tmp_state)


def test_rebuild_keeps_a_good_file_good(kernel_cls, saved):
    assert rebuild(saved, b"KERN", lambda p: p) == saved
    loads(kernel_cls, saved).close()


def test_cross_references(kernel_cls, tmp_state):
    """Files whose framing and counts are right but whose state is impossible."""
    k = vmo.Kernel(memory_size=MiB)
    a = k.vmo_create(4 * PAGE)[1]
    k.vmo_write(a, b"a" * (2 * PAGE), 0)
    b = k.vmo_create(4 * PAGE)[1]
    k.vmo_write(b, b"b", 0)
    k.vmo_clone(a, 1, 0, PAGE)
    data = dumps(k)
    k.close()
    objs = next(at for tag, at, _ in sections(data) if tag == b"OBJS")
    objs_payload_start = objs
    # Object records: a (24 + 32 + 16), b (24 + 32 + 16), clone (24 + 32).
    a_run = 8 + 24 + 32
    b_run = a_run + 16 + 24 + 32
    clone = b_run + 16
    assert data[objs_payload_start + 8 + 8:objs_payload_start + 16 + 8] == struct.pack(
        "<Q", 1024)
    both = rebuild(data, b"OBJS", lambda p: _u32(p, b_run + 8, 1))  # b's frame is a's second
    assert "held by koids" in refuse(kernel_cls, both, tmp_state)
    cyclic = rebuild(data, b"OBJS", lambda p: _u64(p, 8 + 24 + 8, 1026))  # a's parent: clone
    assert "parent" in refuse(kernel_cls, cyclic, tmp_state)
    event_parent = rebuild(data, b"OBJS", lambda p: _u64(p, clone + 24 + 8, 1025))
    # The clone's parent is now b: a and b's refcounts no longer match.
    assert "refcount" in refuse(kernel_cls, event_parent, tmp_state)
    unaligned = rebuild(data, b"OBJS", lambda p: _u64(p, clone + 24 + 16, 5))
    assert "parent offset" in refuse(kernel_cls, unaligned, tmp_state)


def test_save_owns_the_kernel_against_other_threads(tmp_state):
    """While the core saves, a thread writing to the kernel waits: the file holds one moment
    (each write of the counter, one call across a page boundary, is in it whole or not at
    all), and the loaded kernel passes `_check()`."""
    import threading

    k = vmo.Kernel(memory_size=64 * MiB)
    h = k.vmo_create(32 * MiB)[1]
    k.vmo_write(h, b"\x01" * (32 * MiB), 0)  # enough to make a save take a while
    counter = k.vmo_create(2 * PAGE)[1]
    stop = threading.Event()

    def writer():
        n = 0
        while not stop.is_set():
            n += 1
            value = n.to_bytes(8, "little")
            k.vmo_write(counter, value + value, PAGE - 8)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            k.save(tmp_state)
            loaded = vmo.Kernel.load(tmp_state)
            loaded._check()
            both = loaded.vmo_read_bytes(counter, PAGE - 8, 16)[1]
            assert both[:8] == both[8:]
            loaded.close()
    finally:
        stop.set()
        thread.join()
    k.close()


def test_machine_services_and_save(kernel_cls, tmp_state):
    """A live pin refuses a save; snapshots, the dirty log and subscriptions are not saved
    (docs/semantics.md "Save, load and pickling")."""
    k = kernel_cls(memory_size=MiB)
    v = k.create_vmo(4 * PAGE)
    v.write(b"pinned", 0)
    (paddr,) = v.lookup(0, PAGE)
    with k.pin(paddr, PAGE):
        with pytest.raises(vmo.MxError) as info:
            k.save(tmp_state)
        assert info.value.status == vmo.ERR_BAD_STATE
    events = []
    v.on_change(lambda offset, length: events.append((offset, length)))
    snap = k.snapshot()
    v.write(b"after", 0)
    k.save(tmp_state)
    loaded = kernel_cls.load(tmp_state)
    loaded._check()
    assert loaded.vmo_read_bytes(v.handle, 0, 6) == k.vmo_read_bytes(v.handle, 0, 6)
    assert len(loaded.dirty_log(clear=False)) == 0
    with pytest.raises(ValueError):
        loaded.restore(snap)
    loaded.vmo(v.handle).decommit()
    assert events == []          # no subscription came along
    k.restore(snap)
    assert k.vmo_read_bytes(v.handle, 0, 6)[1] == b"pinned"
    loaded.close()
    k.close()


def test_a_non_coherent_kernel_is_not_saved(kernel_cls, tmp_state):
    """Its CPU cache is not in the format (docs/state-format.md "Saving")."""
    k = kernel_cls(memory_size=MiB, coherent=False)
    with pytest.raises(ValueError, match="coherent"):
        k.save(tmp_state)
    with pytest.raises(ValueError, match="coherent"):
        pickle.dumps(k)
    assert not os.path.exists(tmp_state)
    k.close()
