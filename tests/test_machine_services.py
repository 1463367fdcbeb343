"""Machine services for emulators: pins with host addresses, physical runs with ownership,
change notifications (docs/api.md "Machine services", docs/semantics.md "Pins", "Physical
runs", "Change notifications"), on both kernels (the `k` / `kernel_cls` fixtures of
conftest.py).

- pins: the attributes, the host address (read back with ctypes), the errors of phys_view,
  idempotent unpin, the context manager, BufferError with numpy arrays, ctypes objects,
  slices, casts and other memoryviews made from `view` (the frames stay pinned, nothing
  changes), the frames of a pin outliving their VMO, a pin recorded and replayed;
- lookup_runs: the statuses in check order, maximal runs (consecutive frames, the same owner
  flag), recycled frames handed out in descending order, clones (own / ancestor's frames,
  uncommitted pages skipped, offsets and sizes of each level), contiguous VMOs, deep chains;
- on_change: DECOMMIT, shrink, the destroying close, a clone's copy-on-write fault and an
  ancestor's change seen by a clone; nothing for in-place writes, commits of plain VMOs or
  a close that does not destroy; cancel, dropping the Subscription, callbacks calling the
  kernel, exceptions in callbacks, the kernel's close, batches and long calls.
"""

import ctypes
import gc
from array import array

import numpy as np
import pytest
from conftest import PAGE

import vmo
from vmo import MxError, Op, Status

S = Status


def frames_of(k):
    return k.stats()["pinned_frames"], k.stats()["free_frames"]


# -- pins -----------------------------------------------------------------------------------------
def test_pin_attributes_address_and_view(k):
    v = k.create_vmo(3 * PAGE)
    v.write(b"guest RAM", 10)
    base = v.lookup(0, PAGE)[0]
    with k.pin(base + 10, 9) as p:
        assert isinstance(p, vmo.Pin)
        assert (p.paddr, p.length) == (base + 10, 9)
        assert ctypes.string_at(p.address, 9) == b"guest RAM"
        assert p.view.tobytes() == b"guest RAM" and not p.view.readonly
        ctypes.memmove(p.address, b"G", 1)            # a store through the host address
        assert v.read(10, 3) == b"Gue"
        p.view[1:3] = b"UE"
        assert v.read(10, 3) == b"GUE"
        assert k.stats()["pinned_frames"] == 1 and p.pinned
    assert not p.pinned and k.stats()["pinned_frames"] == 0
    p.unpin()                                         # idempotent
    with pytest.raises(ValueError):
        p.view.tobytes()                              # released with the pin


def test_pin_has_the_checks_of_phys_view(k):
    v = k.create_vmo(PAGE)
    v.commit()
    base = v.lookup()[0]
    for paddr, length, status in [(base - 1, 1, S.ERR_OUT_OF_RANGE),
                                  (base + PAGE, 1, S.ERR_BAD_STATE),
                                  (base, 2 * PAGE, S.ERR_BAD_STATE),
                                  (base, -1, S.ERR_INVALID_ARGS),
                                  (1 << 64, 1, S.ERR_OUT_OF_RANGE)]:
        with pytest.raises(MxError) as info:
            k.pin(paddr, length)
        assert info.value.status is status
        with pytest.raises(MxError) as same:
            k.phys_view(paddr, length)
        assert same.value.status is status
    with pytest.raises(TypeError):
        k.pin("0", 1)
    empty = k.pin(base, 0)
    assert empty.length == 0 and empty.view.nbytes == 0
    empty.unpin()
    assert k.stats()["pinned_frames"] == 0


@pytest.mark.parametrize("make", ["numpy", "numpy_view", "ctypes", "slice", "cast",
                                  "memoryview", "exporter"])
def test_unpin_refuses_while_a_buffer_made_from_the_view_lives(k, make):
    v = k.create_vmo(2 * PAGE)
    v.commit()
    base = v.lookup(0, PAGE)[0]
    p = k.pin(base, 2 * PAGE)
    if make == "numpy":
        held = np.frombuffer(p.view, dtype=np.uint8)
    elif make == "numpy_view":
        held = np.frombuffer(p.view, dtype=np.uint32)[10:20]
    elif make == "ctypes":
        held = (ctypes.c_char * 16).from_buffer(p.view, 4)
    elif make == "slice":
        held = p.view[PAGE:]
    elif make == "cast":
        held = p.view.cast("Q")
    elif make == "memoryview":
        held = memoryview(p.view)
    else:
        held = memoryview(p.view.obj)             # the exporter itself, taken again
    before = frames_of(k)
    v.decommit()                                  # the frames are pinned: not freed
    with pytest.raises(BufferError):
        p.unpin()
    assert p.pinned and frames_of(k) == before    # nothing changed
    p.view[0] = 7                                 # the view still works
    del held
    gc.collect()
    p.unpin()
    assert not p.pinned
    assert frames_of(k)[0] == 0 and frames_of(k)[1] == k.stats()["total_frames"]


def test_pin_frames_outlive_their_vmo_until_unpin(k):
    v = k.create_vmo(PAGE)
    v.write(b"dma")
    paddr = v.lookup()[0]
    p = k.pin(paddr, PAGE)
    v.close()
    w = k.create_vmo(PAGE)
    w.commit()
    assert w.lookup()[0] != paddr                 # the pinned frame is not handed out
    assert ctypes.string_at(p.address, 3) == b"dma"
    w.decommit()
    p.unpin()                                     # freed now: the last frame freed
    u = k.create_vmo(PAGE)
    u.commit()
    assert u.lookup()[0] == paddr and u.read(0, 3) == bytes(3)   # reused first, zeroed


def test_dropping_a_pin_unpins(k):
    v = k.create_vmo(PAGE)
    v.commit()
    k.pin(v.lookup()[0], PAGE)
    gc.collect()
    assert k.stats()["pinned_frames"] == 0


def test_pin_is_recorded_as_a_phys_view_and_replays_exactly(tmp_path, kernel_cls):
    path = tmp_path / "pin.trace"
    k = kernel_cls(memory_size=64 * PAGE)
    try:
        with k.record(path):
            v = k.create_vmo(2 * PAGE)
            v.write(b"x", 0)
            p = k.pin(v.lookup(0, PAGE)[0], PAGE)
            p.view[100:103] = b"dev"
            v.decommit()
            p.unpin()
            w = k.create_vmo(PAGE)
            w.commit()
            w.read(0, 8)
    finally:
        k.close()
    result = vmo.replay(path)
    assert result.mismatches == 0


# -- physical runs ---------------------------------------------------------------------------
def test_lookup_runs_statuses_in_check_order(k):
    h = k.create_vmo(4 * PAGE).handle
    ev = k.event_create()[1]
    assert k.vmo_lookup_runs(12345, 0, 0) == (S.ERR_BAD_HANDLE, 0)
    assert k.vmo_lookup_runs(ev, 0, 0) == (S.ERR_WRONG_TYPE, 0)
    assert k.vmo_lookup_runs(h, 5 * PAGE, 0) == (S.ERR_INVALID_ARGS, 0)   # size 0 first
    assert k.vmo_lookup_runs(h, 0, 4 * PAGE + 1) == (S.ERR_OUT_OF_RANGE, 0)
    assert k.vmo_lookup_runs(h, 1, (1 << 64) - 1) == (S.ERR_OUT_OF_RANGE, 0)
    assert k.vmo_lookup_runs(h, -1, 1) == (S.ERR_INVALID_ARGS, 0)
    assert k.vmo_lookup_runs(h, 0, 1 << 64) == (S.ERR_INVALID_ARGS, 0)
    assert k.vmo_lookup_runs(h, 0, 4 * PAGE) == (S.NO_ERROR, [])   # nothing committed
    ro = k.handle_duplicate(h, vmo.MX_RIGHT_DUPLICATE)[1]
    assert k.vmo_lookup_runs(ro, 0, PAGE) == (S.NO_ERROR, [])       # no rights needed
    v = k.vmo(h)
    with pytest.raises(MxError) as info:
        v.lookup_runs(0, 0)
    assert info.value.status is S.ERR_INVALID_ARGS
    with pytest.raises(MxError) as info:
        v.lookup_runs(PAGE, 4 * PAGE)
    assert info.value.status is S.ERR_OUT_OF_RANGE


def test_lookup_runs_are_maximal(k):
    v = k.create_vmo(8 * PAGE)
    v.commit(0, 3 * PAGE)                 # frames 0, 1, 2: one run
    v.commit(5 * PAGE, PAGE)              # frame 3 at page 5
    base = v.lookup(0, PAGE)[0]
    assert v.lookup_runs() == [(0, base, 3 * PAGE, True), (5 * PAGE, base + 3 * PAGE, PAGE, True)]
    assert v.lookup_runs(PAGE + 1, 1) == [(PAGE, base + PAGE, PAGE, True)]   # pages touched
    assert v.lookup_runs(3 * PAGE, 2 * PAGE) == []                          # skipped
    # Recycled frames come back last-freed first: consecutive pages, descending frames.
    v.decommit(0, 3 * PAGE)
    v.commit(0, 3 * PAGE)
    runs = v.lookup_runs(0, 3 * PAGE)
    assert [r[2] for r in runs] == [PAGE] * 3
    assert [r[1] for r in runs] == list(v.lookup(0, 3 * PAGE))


def test_lookup_runs_of_clones_say_who_owns_each_frame(k):
    parent = k.create_vmo(8 * PAGE)
    parent.write(b"p" * 8 * PAGE)
    pa = list(parent.lookup())
    child = parent.clone(2 * PAGE, 5 * PAGE)
    assert child.lookup_runs() == [(0, pa[2], 5 * PAGE, False)]
    child.write(b"c", PAGE + 7)           # copy-on-write: its own frame at page 1
    own = child.lookup(PAGE, 1)[0]
    assert child.lookup_runs() == [(0, pa[2], PAGE, False), (PAGE, own, PAGE, True),
                                   (2 * PAGE, pa[4], 3 * PAGE, False)]
    parent.decommit(5 * PAGE, PAGE)       # page 3 of the child: nothing behind it now
    assert child.lookup_runs(2 * PAGE) == [(2 * PAGE, pa[4], PAGE, False),
                                           (4 * PAGE, pa[6], PAGE, False)]
    grandchild = child.clone(PAGE, 2 * PAGE)
    assert grandchild.lookup_runs() == [(0, own, PAGE, False), (PAGE, pa[4], PAGE, False)]
    parent.size = 5 * PAGE                # the parent shrinks under both clones
    assert grandchild.lookup_runs() == [(0, own, PAGE, False), (PAGE, pa[4], PAGE, False)]
    parent.size = 4 * PAGE
    assert grandchild.lookup_runs() == [(0, own, PAGE, False)]
    assert child.committed_bytes == PAGE


def test_lookup_runs_of_a_contiguous_vmo_is_one_run(k):
    v = k.create_contiguous_vmo(5 * PAGE)
    assert v.lookup_runs() == [(0, v.lookup(0, PAGE)[0], 5 * PAGE, True)]


def test_lookup_runs_through_a_deep_chain(kernel_cls):
    k = kernel_cls(memory_size=64 * PAGE)
    try:
        root = k.create_vmo(2 * PAGE)
        root.write(b"r", PAGE)
        chain = [root]
        for _ in range(3000):
            chain.append(chain[-1].clone(0, 2 * PAGE))
        assert chain[-1].lookup_runs() == [(PAGE, root.lookup(PAGE, 1)[0], PAGE, False)]
    finally:
        k.close()


def test_lookup_runs_agree_with_lookup(k):
    v = k.create_vmo(40 * PAGE)
    for i in (0, 1, 2, 7, 8, 20, 39, 3):
        v.write(b"x", i * PAGE)
    c = v.clone(0, 40 * PAGE)
    for i in (2, 8, 30):
        c.write(b"y", i * PAGE)
    for obj in (v, c):
        pages = {}
        for off, paddr, length, _ in obj.lookup_runs():
            for n in range(length // PAGE):
                pages[off // PAGE + n] = paddr + n * PAGE
        for index, paddr in pages.items():
            assert obj.lookup(index * PAGE, 1)[0] == paddr


# -- change notifications --------------------------------------------------------------------
def watch(v):
    log = []
    sub = v.on_change(lambda offset, length: log.append((offset, length)))
    return log, sub


def test_decommit_and_shrink_notify_the_ranges_that_lost_frames(k):
    v = k.create_vmo(10 * PAGE)
    v.commit(0, 4 * PAGE)
    v.commit(6 * PAGE, 3 * PAGE)
    log, sub = watch(v)
    assert isinstance(sub, vmo.Subscription) and sub.active
    v.decommit(PAGE + 1, 6 * PAGE)        # pages 1..7: frames at 1-3 and 6-7
    assert log == [(PAGE, 3 * PAGE), (6 * PAGE, 2 * PAGE)]
    v.decommit(PAGE, PAGE)                # nothing there any more
    assert len(log) == 2
    v.size = 8 * PAGE + 1                 # page 8 keeps its frame (it holds the new end)
    assert len(log) == 2
    v.size = PAGE // 2
    assert log[2:] == [(8 * PAGE, PAGE)]
    v.size = 0
    assert log[3:] == [(0, PAGE)]


def test_no_events_for_in_place_changes(k):
    v = k.create_vmo(4 * PAGE)
    log, _ = watch(v)
    v.write(b"x" * 3 * PAGE, 0)           # new frames: nothing was backed before
    v.write(b"y" * 3 * PAGE, 10)          # bytes change in place
    v.commit()
    v.size = 8 * PAGE
    dup = v.duplicate()
    dup.close()                           # not the last handle: nothing destroyed
    c = v.clone(0, PAGE)
    c.write(b"c")                         # the clone's copy: the parent keeps its frame
    k.phys_write(v.lookup(0, 1)[0], b"device")
    assert log == []


def test_destroying_close_notifies_the_whole_vmo_and_ends_the_subscription(k):
    v = k.create_vmo(3 * PAGE + 5)
    log, sub = watch(v)
    d = v.duplicate()
    v.close()
    assert log == [] and sub.active
    d.close()
    assert log == [(0, 4 * PAGE)] and not sub.active
    empty = k.create_vmo(0)
    log, sub = watch(empty)
    empty.close()
    assert log == [] and not sub.active


def test_clone_copy_on_write_and_ancestor_changes(k):
    parent = k.create_vmo(8 * PAGE)
    parent.write(b"p" * 8 * PAGE)
    child = parent.clone(2 * PAGE, 4 * PAGE)
    grandchild = child.clone(0, 4 * PAGE)
    plog, _ = watch(parent)
    clog, _ = watch(child)
    glog, _ = watch(grandchild)
    child.write(b"c" * (PAGE + 2), PAGE)  # pages 1-2 of the child get their own copies
    assert plog == [] and clog == [(PAGE, 2 * PAGE)] and glog == [(PAGE, 2 * PAGE)]
    parent.decommit(0, 8 * PAGE)          # the child still sees its pages 0 and 3 there
    assert plog == [(0, 8 * PAGE)]
    assert clog[1:] == [(0, PAGE), (3 * PAGE, PAGE)] and glog[1:] == clog[1:]
    grandchild.commit()                   # copies of what it sees: pages 1 and 2 (zeros
    assert glog[3:] == [(PAGE, 2 * PAGE)]  # elsewhere: nothing was backed there)
    child.size = PAGE                     # the child's own pages 1-2 go; the grandchild has
    assert clog[3:] == [(PAGE, 2 * PAGE)] and glog[4:] == []   # its own copies there


def test_a_write_fault_through_two_levels_notifies_the_middle_one(k):
    a = k.create_vmo(4 * PAGE)
    a.write(b"a" * 4 * PAGE)
    b = a.clone(0, 4 * PAGE)
    c = b.clone(PAGE, 3 * PAGE)
    d = b.clone(0, 4 * PAGE)
    blog, _ = watch(b)
    dlog, _ = watch(d)
    c.write(b"c", 0)                      # b gets a copy of a's page 1 on the way
    assert blog == [(PAGE, PAGE)] and dlog == [(PAGE, PAGE)]


def test_cancel_and_dropping_the_subscription(k):
    v = k.create_vmo(4 * PAGE)
    v.commit()
    log, sub = watch(v)
    del sub
    gc.collect()
    v.decommit(0, PAGE)
    assert log == [(0, PAGE)]             # dropping it did not cancel it
    log2, sub2 = watch(v)
    sub2.cancel()
    sub2.cancel()
    assert not sub2.active
    v.decommit(PAGE, PAGE)
    assert log2 == [] and log == [(0, PAGE), (PAGE, PAGE)]


def test_callbacks_run_after_the_call_and_may_call_the_kernel(k):
    v = k.create_vmo(4 * PAGE)
    v.commit()
    seen = []

    def remap(offset, length):
        # The call has finished: the state is the new one, and the kernel is callable.
        seen.append((offset, length, v.lookup_runs(), k.stats()["free_frames"]))
        if offset == 0:
            v.decommit(3 * PAGE, PAGE)    # its event comes after the pending ones

    v.on_change(remap)
    v.decommit(0, PAGE)
    free = k.stats()["free_frames"]
    assert [s[:2] for s in seen] == [(0, PAGE), (3 * PAGE, PAGE)]
    assert seen[0][3] == free - 1 and seen[1][3] == free


def test_an_exception_in_a_callback_is_raised_after_the_others_ran(k):
    v = k.create_vmo(4 * PAGE)
    v.commit()
    calls = []

    def bad(offset, length):
        calls.append("bad")
        raise RuntimeError("emulator bug")

    v.on_change(bad)
    v.on_change(lambda o, n: calls.append("good"))
    with pytest.raises(RuntimeError, match="emulator bug"):
        v.decommit(0, PAGE)
    assert calls == ["bad", "good"]
    assert v.committed_bytes == 3 * PAGE          # the call itself took effect
    k._check()
    with pytest.raises(RuntimeError):
        k.vmo_op_range(v.handle, Op.DECOMMIT, PAGE, PAGE)   # the syscall layer too
    assert v.committed_bytes == 2 * PAGE


def test_on_change_errors(k):
    v = k.create_vmo(PAGE)
    ev = k.event_create()[1]
    with pytest.raises(MxError) as info:
        k.vmo(ev).on_change(print)
    assert info.value.status is S.ERR_WRONG_TYPE
    v.close()
    with pytest.raises(MxError) as info:
        v.on_change(print)
    assert info.value.status is S.ERR_BAD_HANDLE
    with pytest.raises(TypeError):
        k.create_vmo(PAGE).on_change(None)


def test_a_callback_may_close_the_kernel(kernel_cls):
    k = kernel_cls(memory_size=16 * PAGE)
    v = k.create_vmo(4 * PAGE)
    v.commit()
    seen = []
    v.on_change(lambda o, n: (seen.append((o, n)), k.close()))
    v.on_change(lambda o, n: seen.append("second"))
    assert k.vmo_op_range(v.handle, Op.DECOMMIT, 0, 2 * PAGE) is S.NO_ERROR
    assert seen == [(0, 2 * PAGE)] and k.closed      # the close ended the others
    with pytest.raises(ValueError):
        k.stats()


def test_subscriptions_across_a_restore(k):
    v = k.create_vmo(4 * PAGE)
    v.commit()
    log, sub = watch(v)
    snap = k.snapshot()
    late = k.create_vmo(PAGE)
    late.commit()
    late_log, late_sub = watch(late)
    v.decommit(0, PAGE)
    assert log == [(0, PAGE)]
    k.restore(snap)                       # no events; v's subscription follows v
    assert log == [(0, PAGE)] and late_log == []
    assert sub.active and not late_sub.active   # `late` did not exist at the snapshot
    v.decommit(PAGE, PAGE)
    assert log == [(0, PAGE), (PAGE, PAGE)]
    handle = v.handle
    v.close()                             # destroyed: the subscription ends...
    assert log[-1] == (0, 4 * PAGE) and not sub.active
    k.restore(snap)                       # ...and stays ended when v comes back
    k.vmo(handle).decommit()
    assert log[-1] == (0, 4 * PAGE) and not sub.active


def test_kernel_close_ends_every_subscription(kernel_cls):
    k = kernel_cls(memory_size=16 * PAGE)
    v = k.create_vmo(PAGE)
    v.commit()
    log, sub = watch(v)
    k.close()
    assert log == [] and not sub.active


def test_events_of_a_batch_and_of_a_long_call(kernel_cls):
    k = kernel_cls(memory_size=1024 * PAGE)
    try:
        v = k.create_vmo(600 * PAGE)
        v.commit()
        log, _ = watch(v)
        v.decommit(0, 500 * PAGE)             # a long call: the core runs it without the GIL
        assert log == [(0, 500 * PAGE)]
        batch = vmo.Batch()
        batch.op_range(v.handle, Op.DECOMMIT, 500 * PAGE, PAGE)
        batch.op_range(v.handle, Op.DECOMMIT, 599 * PAGE, PAGE)
        k.run(batch)
        assert log[1:] == [(500 * PAGE, PAGE), (599 * PAGE, PAGE)]
    finally:
        k.close()


def test_lookup_runs_stay_right_with_on_change(k):
    """An emulator's mapping kept by on_change never goes stale."""
    v = k.create_vmo(16 * PAGE)
    v.write(b"r" * 16 * PAGE)
    c = v.clone(0, 16 * PAGE)
    mapping = {}

    def refresh(offset, length):
        for page in range(offset // PAGE, (offset + length) // PAGE):
            mapping.pop(page, None)
        for off, paddr, n, own in c.lookup_runs(offset, min(length, c.size - offset) or 1) \
                if offset < c.size else []:
            for i in range(n // PAGE):
                mapping[off // PAGE + i] = (paddr + i * PAGE, own)

    c.on_change(refresh)
    refresh(0, 16 * PAGE)
    for op in [lambda: c.write(b"w", 5 * PAGE), lambda: v.decommit(0, 4 * PAGE),
               lambda: c.commit(0, 8 * PAGE), lambda: c.decommit(6 * PAGE, 2 * PAGE),
               lambda: setattr(c, "size", 10 * PAGE), lambda: v.decommit(8 * PAGE)]:
        op()
        want = {}
        for off, paddr, n, own in c.lookup_runs():
            for i in range(n // PAGE):
                want[off // PAGE + i] = (paddr + i * PAGE, own)
        # Never stale: what is mapped is what lookup_runs gives (pages that gained a frame
        # are mapped on their first fault, as an emulator does).
        assert all(want.get(page) == m for page, m in mapping.items())


def test_vmo_lookup_runs_buffer_types(k):
    v = k.create_vmo(PAGE)
    v.commit()
    runs = v.lookup_runs()
    assert all(type(x) is int for x in runs[0][:3]) and runs[0][3] is True
    assert array("Q", [runs[0][1]]) == v.lookup()
