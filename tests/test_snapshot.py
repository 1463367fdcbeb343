"""Snapshots, restore and the dirty log (docs/semantics.md "Snapshots", "The dirty log";
docs/api.md "Machine services"), on both kernels.

The central test: a kernel runs a prefix of calls, takes a snapshot, runs unrelated calls,
restores, then runs a suffix; a second kernel runs the prefix and the suffix only. Every
status, value, byte, physical address and stat of the suffix and of the end state agrees:
after a restore the kernel is indistinguishable from the moment of the snapshot.
"""

import gc
import random

import pytest
from conftest import BASE, PAGE, expect, make_vmo

import vmo
from vmo import MxError

S = vmo.Status
COMMIT = vmo.MX_VMO_OP_COMMIT
DECOMMIT = vmo.MX_VMO_OP_DECOMMIT
MEMORY = 64 * PAGE


# -- a random program of calls, the same on every kernel it runs on ---------------------------
def _program(seed, steps):
    """A list of (name, args) of syscalls; handles are chosen at run time by index into the
    handles the run has seen (so the program means the same on every kernel)."""
    rng = random.Random(seed)
    prog = []
    for _ in range(steps):
        kind = rng.choice(["create", "create", "write", "write", "write", "clone", "commit",
                           "decommit", "set_size", "close", "dup", "event", "phys_write",
                           "read", "lookup"])
        prog.append((kind, rng.randrange(1 << 30), rng.randrange(1 << 30), rng.randrange(256)))
    return prog


def _run(k, prog, seen):
    """Run a program; return every result, LOOKUP array and read included."""
    out = []
    for kind, a, b, c in prog:
        h = seen[a % len(seen)] if seen else 1
        if kind == "create":
            r = k.vmo_create((a % 12) * PAGE + c)
            if r[0] is S.NO_ERROR:
                seen.append(r[1])
        elif kind == "event":
            r = k.event_create()
            if r[0] is S.NO_ERROR:
                seen.append(r[1])
        elif kind == "write":
            r = k.vmo_write(h, bytes([c]) * (b % (3 * PAGE) + 1), a % (10 * PAGE))
        elif kind == "clone":
            r = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, (b % 3) * PAGE, (a % 8) * PAGE)
            if r[0] is S.NO_ERROR:
                seen.append(r[1])
        elif kind == "commit":
            r = k.vmo_op_range(h, COMMIT, (b % 6) * PAGE, (c % 4 + 1) * PAGE)
        elif kind == "decommit":
            r = k.vmo_op_range(h, DECOMMIT, (b % 6) * PAGE, (c % 4 + 1) * PAGE)
        elif kind == "set_size":
            r = k.vmo_set_size(h, (b % 10) * PAGE + c)
        elif kind == "close":
            r = k.handle_close(h)
        elif kind == "dup":
            r = k.handle_duplicate(h, vmo.MX_RIGHT_SAME_RIGHTS)
            if r[0] is S.NO_ERROR:
                seen.append(r[1])
        elif kind == "phys_write":
            try:
                r = ("ok", k.phys_write(BASE + (b % 64) * PAGE + c, bytes([a & 0xFF]) * 9))
            except MxError as exc:
                r = ("MxError", exc.status)
        elif kind == "read":
            r = k.vmo_read_bytes(h, (b % 8) * PAGE, c * 40)
        else:  # lookup
            buf = bytearray(b"\xa5" * 32)
            r = (k.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, (b % 4) * PAGE, 4 * PAGE, buf),
                 bytes(buf))
        if kind != "event" and kind != "phys_write":
            r = (r, k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC))
        out.append((kind, r))
    return out


def _fingerprint(k, seen):
    """Everything observable: stats (all keys), the allocator's order, and per handle ever
    seen its size, own pages, info and every byte."""
    state = [k.stats(), k._allocator_state()]
    for h in sorted(set(seen)) + [1, 3]:
        status, size = k.vmo_get_size(h)
        state.append((h, status, size, k._vmo_pages(h), k.object_get_info(h, 2),
                      k.vmo_committed_bytes(h)))
        if status is S.NO_ERROR:
            state.append(k.vmo_read_bytes(h, 0, min(size, 16 * PAGE)))
    for paddr in range(BASE, BASE + MEMORY, PAGE):
        try:
            state.append(k.phys_read(paddr, PAGE))
        except MxError as exc:
            state.append(exc.status)
    return state


@pytest.mark.parametrize("seed", range(12))
def test_prefix_snapshot_unrelated_restore_suffix(kernel_cls, seed):
    """docs/semantics.md "Snapshots": the restored kernel and a kernel that never ran the
    unrelated calls give the same results for everything after."""
    prefix, unrelated, suffix = (_program(seed * 3 + i, n) for i, n in enumerate((40, 60, 60)))
    a = kernel_cls(memory_size=MEMORY)
    b = kernel_cls(memory_size=MEMORY)
    try:
        seen_a, seen_b = [], []
        assert _run(a, prefix, seen_a) == _run(b, prefix, seen_b)
        snap = a.snapshot()
        _run(a, unrelated, list(seen_a))
        a.restore(snap)
        a._check()
        assert _fingerprint(a, seen_a) == _fingerprint(b, seen_b)
        assert _run(a, suffix, seen_a) == _run(b, suffix, seen_b)
        assert _fingerprint(a, seen_a) == _fingerprint(b, seen_b)
        a._check()
        # The same snapshot again, after the suffix: back to the prefix's end.
        a.restore(snap)
        c = kernel_cls(memory_size=MEMORY)
        try:
            seen_c = []
            _run(c, prefix, seen_c)
            assert _fingerprint(a, seen_a) == _fingerprint(c, seen_a)
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_several_snapshots_restored_in_any_order(kernel_cls):
    """Several live snapshots, each restorable any number of times, in any order; dropping
    one leaves the others restorable."""
    k = kernel_cls(memory_size=MEMORY)
    try:
        seen = []
        snaps, prints = [], []
        for i in range(4):
            _run(k, _program(100 + i, 30), seen)
            snaps.append(k.snapshot())
            prints.append((list(seen), _fingerprint(k, seen)))
        _run(k, _program(200, 30), seen)
        for i in (2, 0, 3, 3, 1, 0, 2, 1, 3):
            k.restore(snaps[i])
            k._check()
            assert _fingerprint(k, prints[i][0]) == prints[i][1], f"restore of snapshot {i}"
            _run(k, _program(300 + i, 20), seen)
        del snaps[1], prints[1]    # a middle one goes: its pre-images merge into the older
        gc.collect()
        for i in (2, 0, 1, 2):
            k.restore(snaps[i])
            assert _fingerprint(k, prints[i][0]) == prints[i][1]
            _run(k, _program(400 + i, 20), seen)
        del snaps[0], prints[0]    # the oldest goes
        for i in (1, 0, 1):
            k.restore(snaps[i])
            assert _fingerprint(k, prints[i][0]) == prints[i][1]
            _run(k, _program(500 + i, 20), seen)
        k._check()
    finally:
        k.close()


def test_snapshot_of_a_fresh_kernel_and_handle_generations(k):
    """Handle values, generations and the free-slot order come back exactly."""
    fresh = k.snapshot()
    h1 = make_vmo(k, PAGE)
    h2 = make_vmo(k, PAGE)
    expect(k.handle_close(h1), S.NO_ERROR)
    mid = k.snapshot()
    h3 = make_vmo(k, PAGE)        # reuses h1's slot with the next generation
    assert h3 != h1
    k.restore(fresh)
    assert k.stats()["handles"] == 0 and k.stats()["vmos"] == 0
    assert make_vmo(k, PAGE) == h1
    k.restore(mid)
    assert make_vmo(k, PAGE) == h3
    expect(k.vmo_get_size(h2), S.NO_ERROR, PAGE)
    k.restore(mid)
    info = k.object_get_info(make_vmo(k, PAGE), vmo.MX_INFO_HANDLE_BASIC)[1]
    assert info.koid == 1026      # the koid counter came back too


def test_restore_refused_with_a_live_view(k):
    """restore (and snapshot) with a live physical view: MxError(ERR_BAD_STATE), nothing
    changes."""
    h = make_vmo(k, 2 * PAGE)
    k.vmo_write(h, b"abc", 0)
    snap = k.snapshot()
    k.vmo_write(h, b"xyz", 0)
    paddr = k._vmo_pages(h)[1][0]
    view = k.phys_view(paddr, PAGE)
    before = _fingerprint(k, [h])
    with pytest.raises(MxError) as err:
        k.restore(snap)
    assert err.value.status is S.ERR_BAD_STATE
    with pytest.raises(MxError) as err:
        k.snapshot()
    assert err.value.status is S.ERR_BAD_STATE
    assert _fingerprint(k, [h]) == before
    view.release()
    k.restore(snap)
    assert k.vmo_read_bytes(h, 0, 3) == (S.NO_ERROR, b"abc")


def test_restore_errors(kernel_cls):
    """Another kernel's snapshot, a closed kernel, not a snapshot: clear errors."""
    a = kernel_cls(memory_size=MEMORY)
    b = kernel_cls(memory_size=MEMORY)
    snap = a.snapshot()
    with pytest.raises(ValueError, match="another kernel"):
        b.restore(snap)
    with pytest.raises(TypeError):
        b.restore(object())
    a.close()
    with pytest.raises(ValueError):
        a.restore(snap)
    with pytest.raises(ValueError):
        a.snapshot()
    with pytest.raises(ValueError):
        a.dirty_log()
    del snap                      # dropped after its kernel closed: harmless
    gc.collect()
    b._check()
    b.close()


def test_snapshot_outlives_its_kernel_reference(kernel_cls):
    """A snapshot keeps its kernel alive; dropping both in any order is harmless."""
    k = kernel_cls(memory_size=MEMORY)
    h = make_vmo(k, PAGE)
    k.vmo_write(h, b"q", 0)
    snap = k.snapshot()
    k.vmo_write(h, b"r", 0)
    del k
    gc.collect()
    snap.kernel.restore(snap)
    assert snap.kernel.vmo_read_bytes(h, 0, 1) == (S.NO_ERROR, b"q")
    del snap
    gc.collect()


def test_frames_freed_and_reused_come_back(kernel_cls):
    """Frames freed, reused and zeroed after a snapshot hold their old bytes after restore
    (the allocator's order too: the next frames handed out are the same)."""
    k = kernel_cls(memory_size=MEMORY)
    try:
        h = make_vmo(k, 8 * PAGE)
        for i in range(8):
            k.vmo_write(h, bytes([i + 1]) * PAGE, i * PAGE)
        k.vmo_op_range(h, DECOMMIT, 2 * PAGE, 3 * PAGE)
        snap = k.snapshot()
        pages = k._vmo_pages(h)
        k.handle_close(h)
        h2 = make_vmo(k, 40 * PAGE)
        k.vmo_write(h2, b"\xff" * 40 * PAGE, 0)
        k.restore(snap)
        assert k._vmo_pages(h) == pages
        assert k.vmo_read_bytes(h, 0, 8 * PAGE)[1] == b"".join(
            bytes([i + 1 if i not in (2, 3, 4) else 0]) * PAGE for i in range(8))
        a = make_vmo(k, 3 * PAGE)
        k.vmo_op_range(a, COMMIT, 0, 3 * PAGE)
        other = kernel_cls(memory_size=MEMORY)
        try:
            g = make_vmo(other, 8 * PAGE)
            for i in range(8):
                other.vmo_write(g, bytes([i + 1]) * PAGE, i * PAGE)
            other.vmo_op_range(g, DECOMMIT, 2 * PAGE, 3 * PAGE)
            b = make_vmo(other, 3 * PAGE)
            other.vmo_op_range(b, COMMIT, 0, 3 * PAGE)
            assert k._vmo_pages(a) == other._vmo_pages(b)
            assert k.vmo_read_bytes(a, 0, 3 * PAGE) == other.vmo_read_bytes(b, 0, 3 * PAGE)
            assert k._allocator_state() == other._allocator_state()
        finally:
            other.close()
    finally:
        k.close()


# -- the dirty log ------------------------------------------------------------------------------
def test_dirty_log_rules(k):
    """docs/semantics.md "The dirty log": what enters it, reading, clearing."""
    assert list(k.dirty_log()) == []
    h = make_vmo(k, 4 * PAGE)
    k.vmo_op_range(h, COMMIT, 0, 4 * PAGE)
    assert list(k.dirty_log()) == []            # committing writes no byte
    k.vmo_write(h, b"a", 2 * PAGE)
    k.vmo_read_bytes(h, 0, 4 * PAGE)
    pages = k._vmo_pages(h)[1]
    assert list(k.dirty_log(clear=False)) == [pages[2]]
    assert list(k.dirty_log()) == [pages[2]]    # not cleared by clear=False
    assert list(k.dirty_log()) == []
    k.phys_write(pages[0] + 5, b"dev")
    assert list(k.dirty_log()) == [pages[0]]
    # Copy-on-write of a written page logs the copy; of a zero page, nothing is copied.
    c = expect(k.vmo_clone(h, 1, 0, 4 * PAGE), S.NO_ERROR)
    k.vmo_write(c, b"b", 0)
    k.vmo_op_range(c, COMMIT, PAGE, PAGE)
    cp = k._vmo_pages(c)[1]
    assert list(k.dirty_log()) == [cp[0]]
    # A pinned frame is in every result while pinned.
    view = k.phys_view(pages[3], 10)
    assert list(k.dirty_log()) == [pages[3]]
    assert list(k.dirty_log()) == [pages[3]]
    view.release()
    assert list(k.dirty_log()) == [pages[3]]    # pinned since the last clear
    assert list(k.dirty_log()) == []
    # A written frame freed is logged (it reads as zero from then on); a clean one is not.
    k.vmo_op_range(h, DECOMMIT, 0, 2 * PAGE)
    assert list(k.dirty_log()) == [pages[0]]
    k.handle_close(c)
    assert list(k.dirty_log()) == [cp[0]]


def test_dirty_log_across_restore(k):
    """A restore logs every frame whose bytes changed since the snapshot."""
    h = make_vmo(k, 4 * PAGE)
    k.vmo_write(h, b"x" * 4 * PAGE, 0)
    pages = k._vmo_pages(h)[1]
    snap = k.snapshot()
    k.dirty_log()
    k.vmo_write(h, b"y", PAGE)
    k.vmo_write(h, b"z", 3 * PAGE)
    k.dirty_log()
    k.restore(snap)
    assert list(k.dirty_log()) == [pages[1], pages[3]]
    k.restore(snap)                             # still the frames changed since the snapshot
    assert list(k.dirty_log()) == [pages[1], pages[3]]


def test_dirty_log_is_sorted_by_address_across_arenas(kernel_cls):
    """Ascending physical addresses, whatever the memory map's order."""
    k = kernel_cls(memory=[(0x300000, 2 * PAGE), (0x100000, 2 * PAGE)])
    try:
        h = make_vmo(k, 4 * PAGE)
        k.vmo_write(h, b"1" * 4 * PAGE, 0)
        assert list(k.dirty_log()) == [0x100000, 0x101000, 0x300000, 0x301000]
    finally:
        k.close()


def test_dirty_log_through_batches(k):
    """Writes through Kernel.run are logged as the calls are."""
    h = make_vmo(k, 2 * PAGE)
    k.vmo_op_range(h, COMMIT, 0, 2 * PAGE)
    batch = vmo.Batch()
    batch.write(h, b"hello", PAGE + 3)
    k.run(batch)
    assert list(k.dirty_log()) == [k._vmo_pages(h)[1][1]]


@pytest.mark.parametrize("pages", [3, 63, 64, 300, 2000])
def test_dirty_log_many_frames_out_of_order(kernel_cls, pages):
    """Frames logged in a scattered order come out ascending, each once (the core sorts the
    log's list: insertion sort when short, a radix sort when long)."""
    k = kernel_cls(memory_size=4096 * PAGE)
    try:
        h = make_vmo(k, pages * PAGE)
        k.vmo_op_range(h, COMMIT, 0, pages * PAGE)
        order = [(i * 7919) % pages for i in range(pages)]
        for i in order:
            k.vmo_write(h, b"\x01", i * PAGE)
            k.vmo_write(h, b"\x02", i * PAGE + 1)      # logged once
        expected = sorted(k._vmo_pages(h)[1].values())
        assert list(k.dirty_log(clear=False)) == expected
        assert list(k.dirty_log()) == expected
        assert list(k.dirty_log()) == []
    finally:
        k.close()



def test_deep_clone_chain(kernel_cls):
    """A clone chain thousands deep is snapshotted and restored (no recursion anywhere)."""
    k = kernel_cls(memory_size=MEMORY)
    try:
        h = make_vmo(k, PAGE)
        k.vmo_write(h, b"root", 0)
        chain = [h]
        for _ in range(3000):
            chain.append(expect(k.vmo_clone(chain[-1], 1, 0, PAGE), S.NO_ERROR))
        for x in chain[:-1]:
            k.handle_close(x)
        snap = k.snapshot()
        k.vmo_write(chain[-1], b"leaf", 0)
        k.handle_close(chain[-1])
        assert k.stats()["vmos"] == 0
        k.restore(snap)
        assert k.stats()["vmos"] == 3001
        assert k.vmo_read_bytes(chain[-1], 0, 4) == (S.NO_ERROR, b"root")
        k._check()
        k.handle_close(chain[-1])
        assert k.stats()["vmos"] == 0
    finally:
        k.close()


def test_snapshot_is_made_by_the_kernel_only():
    with pytest.raises(TypeError):
        vmo.Snapshot()
    with vmo.Kernel(memory_size=MEMORY) as k:
        snap = k.snapshot()
        assert snap.kernel is k and "Snapshot" in repr(snap)


# -- page tables saved per leaf: many leaves, interior nodes and huge sparse offsets ----------
# Page indices at the edges of leaves (512 pages) and interior nodes (512**2, 512**3, ...),
# up to the last page of the largest VMO (2**52 - 2): a VMO holding them has leaves under
# several interior nodes on every level of a six-level tree.
LEAF_PAGES = [0, 1, 511, 512, 513, 1023, 512 * 512 - 1, 512 * 512, 512 * 512 + 512,
              3 * 512 * 512 + 7, 512 ** 3 - 1, 512 ** 3, 512 ** 4 + 511, 512 ** 5 - 512,
              (1 << 52) - 513, (1 << 52) - 512, (1 << 52) - 2]
HUGE = (1 << 64) - PAGE          # MX_VMO_MAX_SIZE: every page index below 2**52
STAT_KEYS = ("total_frames", "free_frames", "committed_frames", "vmos", "handles",
             "pinned_frames")


def _leafy_program(seed, steps):
    """Calls on VMOs of the largest size whose pages sit at LEAF_PAGES: commits and decommits
    of a few pages (or of huge ranges), writes (faults), copy-on-write clones and writes into
    them, shrinks and regrowths, closes."""
    rng = random.Random(seed)
    prog = []
    for _ in range(steps):
        kind = rng.choice(["commit", "commit", "commit", "decommit", "decommit_huge", "write",
                           "write", "clone", "clone_write", "shrink", "grow", "close",
                           "create"])
        prog.append((kind, rng.choice(LEAF_PAGES), rng.randrange(1, 4), rng.randrange(1 << 30)))
    return prog


def _leafy_run(k, prog, vmos):
    """Run a leafy program on `k`; `vmos` is the list of handles in play (grown by creates
    and clones). Returns every result."""
    out = []
    for kind, page, n, r in prog:
        h = vmos[r % len(vmos)]
        off = page * PAGE
        if kind == "commit":
            res = k.vmo_op_range(h, COMMIT, off, n * PAGE)
        elif kind == "decommit":
            res = k.vmo_op_range(h, DECOMMIT, off, n * PAGE)
        elif kind == "decommit_huge":
            res = k.vmo_op_range(h, DECOMMIT, off, HUGE - off)
        elif kind == "write":
            res = k.vmo_write(h, bytes([r & 0xFF]) * (n * 1000), off)
        elif kind == "clone":
            res = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 0, HUGE)
            if res[0] is S.NO_ERROR:
                vmos.append(res[1])
        elif kind == "clone_write":
            res = k.vmo_write(vmos[-1], bytes([r & 0x7F]) * 10, off + 17)
        elif kind == "shrink":
            res = k.vmo_set_size(h, off)
        elif kind == "grow":
            res = k.vmo_set_size(h, HUGE)
        elif kind == "close":
            res = k.handle_close(h)
        else:
            res = k.vmo_create(HUGE)
            if res[0] is S.NO_ERROR:
                vmos.append(res[1])
        out.append((kind, res))
    return out


def _leafy_print(k, vmos, memory):
    """Everything observable of a leafy run: stats, the allocator's order, and per handle its
    size, own pages, committed bytes and the bytes of each LEAF_PAGES page; every frame.
    (The stats both kernels keep: the core's host-memory counters are its own.)"""
    stats = k.stats()
    state = [{key: stats[key] for key in STAT_KEYS}, k._allocator_state()]
    for h in sorted(set(vmos)):
        state.append((h, k.vmo_get_size(h), k._vmo_pages(h), k.vmo_committed_bytes(h)))
        for page in LEAF_PAGES:
            state.append(k.vmo_read_bytes(h, page * PAGE, 24))
    for paddr in range(BASE, BASE + memory, PAGE):
        try:
            state.append(k.phys_read(paddr, PAGE))
        except MxError as exc:
            state.append(exc.status)        # a free frame
    return state


def _leafy_pair(memory):
    from vmo._reference import Kernel as Reference

    pair = [vmo.Kernel(memory_size=memory), Reference(memory_size=memory)]
    vmos = []
    for k in pair:
        vmos = [make_vmo(k, HUGE), make_vmo(k, HUGE)]
        for page in LEAF_PAGES[::2]:
            expect(k.vmo_op_range(vmos[0], COMMIT, page * PAGE, PAGE), S.NO_ERROR)
            k.vmo_write(vmos[1], b"base", page * PAGE + 8)
    return pair, vmos


@pytest.mark.parametrize("seed", range(6))
def test_restore_leaves_after_commits_decommits_shrinks_faults_and_closes(seed):
    """Both kernels run the same leafy program: snapshots at random points, restores of the
    live ones in random order, drops; every result agrees, every restore gives back what
    the snapshot saw (and what the reference model gives), `_check()` holds throughout."""
    memory = 256 * PAGE
    rng = random.Random(seed)
    pair, vmos0 = _leafy_pair(memory)
    try:
        vmos = [list(vmos0), list(vmos0)]
        snaps = []          # (core snapshot, reference snapshot, handles, fingerprint)
        for step in range(12):
            prog = _leafy_program(seed * 100 + step, 12)
            assert _leafy_run(pair[0], prog, vmos[0]) == _leafy_run(pair[1], prog, vmos[1])
            what = rng.choice(["snap", "snap", "restore", "restore", "drop"])
            if what == "snap" or not snaps:
                print_ = _leafy_print(pair[0], vmos[0], memory)
                assert print_ == _leafy_print(pair[1], vmos[1], memory)
                snaps.append((pair[0].snapshot(), pair[1].snapshot(), list(vmos[0]), print_))
            elif what == "restore":
                core, ref, handles, print_ = rng.choice(snaps)
                pair[0].restore(core)
                pair[1].restore(ref)
                vmos = [list(handles), list(handles)]
                pair[0]._check()
                pair[1]._check()
                assert _leafy_print(pair[0], vmos[0], memory) == print_
                assert _leafy_print(pair[1], vmos[1], memory) == print_
            else:
                del snaps[rng.randrange(len(snaps))]
                gc.collect()
            pair[0]._check()
        for core, ref, handles, print_ in reversed(snaps):
            pair[0].restore(core)
            pair[1].restore(ref)
            pair[0]._check()
            assert _leafy_print(pair[0], handles, memory) == print_
            assert _leafy_print(pair[1], handles, memory) == print_
    finally:
        for k in pair:
            k.close()


@pytest.mark.parametrize("how", ["close", "decommit", "shrink", "clone_close"])
def test_restore_a_vmo_destroyed_with_many_leaves(kernel_cls, how):
    """A VMO whose pages sit in leaves under several interior nodes is destroyed (or
    emptied) after the snapshot; the restore rebuilds it from its leaves' pre-images."""
    memory = 128 * PAGE
    k = kernel_cls(memory_size=memory)
    try:
        h = make_vmo(k, HUGE)
        for i, page in enumerate(LEAF_PAGES):
            k.vmo_write(h, bytes([i + 1]) * 100, page * PAGE + 5)
        c = expect(k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 0, HUGE), S.NO_ERROR)
        k.vmo_write(c, b"own", LEAF_PAGES[3] * PAGE)
        before = _leafy_print(k, [h, c], memory)
        snap = k.snapshot()
        if how == "close":
            k.handle_close(h)
            k.handle_close(c)
        elif how == "decommit":
            expect(k.vmo_op_range(h, DECOMMIT, 0, HUGE), S.NO_ERROR)
        elif how == "shrink":
            expect(k.vmo_set_size(h, PAGE), S.NO_ERROR)
        else:
            k.handle_close(h)       # the clone keeps its parent alive: then it goes too
            k.vmo_write(c, b"x", LEAF_PAGES[-1] * PAGE)
            k.handle_close(c)
        assert k.stats()["free_frames"] != before[0]["free_frames"]
        k.restore(snap)
        k._check()
        assert _leafy_print(k, [h, c], memory) == before
        k.restore(snap)             # again, after nothing
        assert _leafy_print(k, [h, c], memory) == before
    finally:
        k.close()


def test_commit_restore_loop_saves_one_leaf_once():
    """The snapshot fuzzer's loop (restore, commit one page, restore, ...) on a VMO with
    many committed pages: the first commit saves one leaf (not the table), and the store
    does not grow from one iteration to the next."""
    with vmo.Kernel(memory_size=8 << 20) as k:
        h = make_vmo(k, 4 << 20)
        expect(k.vmo_op_range(h, COMMIT, 0, 2 << 20), S.NO_ERROR)      # 512 pages: 1 leaf
        expect(k.vmo_op_range(h, COMMIT, 3 << 20, 1 << 20), S.NO_ERROR)
        snap = k.snapshot()
        assert snap._preimages[2] == 0
        expect(k.vmo_op_range(h, DECOMMIT, 5 * PAGE, PAGE), S.NO_ERROR)
        assert snap._preimages[2] == 1                  # one leaf, not the table's three
        expect(k.vmo_op_range(h, COMMIT, 5 * PAGE, PAGE), S.NO_ERROR)
        assert snap._preimages[2] == 1                  # that leaf again: saved already
        sizes = []
        for _ in range(5):
            k.restore(snap)
            expect(k.vmo_op_range(h, COMMIT, (2 << 20) + 7 * PAGE, PAGE), S.NO_ERROR)  # new leaf
            expect(k.vmo_op_range(h, DECOMMIT, 9 * PAGE, 2 * PAGE), S.NO_ERROR)
            sizes.append(snap._preimages)
        assert len(set(sizes)) == 1 and sizes[0][2] == 2
        k.restore(snap)
        k._check()
        assert k.vmo_committed_bytes(h) == (S.NO_ERROR, 3 << 20)


def test_restore_leaves_in_every_order_of_three_snapshots(kernel_cls):
    """Three snapshots between leaf changes at sparse offsets, restored in every order
    (each several times), one dropped in the middle: each gives back what it saw."""
    import itertools

    memory = 64 * PAGE
    k = kernel_cls(memory_size=memory)
    try:
        h = make_vmo(k, HUGE)
        vmos = [h]
        snaps = []
        for i, page in enumerate(LEAF_PAGES[:9]):
            k.vmo_write(h, bytes([i + 1]), LEAF_PAGES[-1 - i] * PAGE)
            expect(k.vmo_op_range(h, DECOMMIT, LEAF_PAGES[i] * PAGE, PAGE), S.NO_ERROR)
            k.vmo_write(h, bytes([i + 1]) * 3, page * PAGE)
            if i % 3 == 2:
                snaps.append((k.snapshot(), _leafy_print(k, vmos, memory)))
        for order in itertools.permutations(range(3)):
            for i in order:
                k.restore(snaps[i][0])
                k._check()
                assert _leafy_print(k, vmos, memory) == snaps[i][1]
                k.vmo_write(h, b"later", LEAF_PAGES[i + 4] * PAGE)
                expect(k.vmo_op_range(h, DECOMMIT, LEAF_PAGES[i] * PAGE, HUGE // 2), S.NO_ERROR)
        del snaps[1]
        gc.collect()
        for i in (1, 0, 1, 0):
            k.restore(snaps[i][0])
            assert _leafy_print(k, vmos, memory) == snaps[i][1]
            expect(k.vmo_op_range(h, DECOMMIT, 0, HUGE), S.NO_ERROR)
        k._check()
    finally:
        k.close()
