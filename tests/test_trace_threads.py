"""Replays and batches run their record loop without the GIL, owning their kernel
(docs/semantics.md "Threads"): another thread makes progress meanwhile, and replays in
threads give what sequential replays give. No timing assertion: only orderings."""

import threading
import time

import vmo
from vmo.batch import Batch

PAGE = 4096


def _mix_batch(h, rounds):
    """COMMIT / LOOKUP / DECOMMIT of one page, `rounds` times, as (records, data)."""
    b = Batch()
    b.commit(h, 0, PAGE)
    b.lookup(h, 0, PAGE)
    b.decommit(h, 0, PAGE)
    return bytes(b.records) * rounds, b""


def _record_long(path, rounds, pages=1):
    """A trace of many blocks: a VMO created, then the mix run as a batch under record()."""
    k = vmo.Kernel(1 << 24)
    with k.record(path):
        _, h = k.vmo_create(16 * PAGE)
        for i in range(pages):
            k.vmo_write(h, b"page %d" % i, i * PAGE)
        res = k.run(_mix_batch(h, rounds))
        assert not any(res.statuses)
    k.close()
    return str(path)


def test_replay_releases_the_gil(tmp_path):
    path = _record_long(tmp_path / "long.trace", 400_000)
    started = threading.Event()
    out = {}

    def replay():
        started.set()
        out["r"] = vmo.replay(path)

    t = threading.Thread(target=replay)
    t.start()
    started.wait()
    # Each step gives the GIL up (sleep(0)) and needs it back: a replay that held the GIL
    # for its record loop would let none of them happen until it returned.
    steps = 0
    while steps < 20 and t.is_alive():
        time.sleep(0)
        steps += 1
    replay_still_running = t.is_alive()
    t.join()
    assert out["r"].mismatches == 0 and out["r"].ops == 1 + 1 + 3 * 400_000
    assert steps == 20 and replay_still_running


def test_batch_releases_the_gil_and_owns_the_kernel():
    k = vmo.Kernel(1 << 24)
    _, h = k.vmo_create(16 * PAGE)
    batch = _mix_batch(h, 400_000)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", k.run(batch)))
    t.start()
    seen_busy = False
    sizes = set()
    while t.is_alive():
        seen_busy = seen_busy or k._busy
        sizes.add(k.vmo_get_size(h))           # waits while the batch owns the kernel
        time.sleep(0)
    t.join()
    assert not any(out["r"].statuses)
    assert seen_busy                            # this thread ran during the record loop
    assert sizes == {(vmo.Status.NO_ERROR, 16 * PAGE)}
    assert k.stats()["committed_frames"] == 0
    k._check()
    k.close()


def _summary(r):
    return (r.ops, r.mismatches, r.first_mismatch, r.stats, r.truncated, r.verified)


def test_two_threads_two_traces_as_sequential(tmp_path):
    a = _record_long(tmp_path / "a.trace", 100_000, pages=1)
    b = _record_long(tmp_path / "b.trace", 150_000, pages=3)
    sequential = [_summary(vmo.replay(p)) for p in (a, b)]
    results = [None, None]

    def run(i, p):
        results[i] = _summary(vmo.replay(p))

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == sequential
    assert sequential[0] != sequential[1]
    assert all(s[1] == 0 for s in sequential)


def test_recording_a_batch_while_another_thread_calls(tmp_path):
    """A batch recorded without the GIL and calls from another thread on the same kernel
    interleave whole: the trace replays without a mismatch."""
    path = str(tmp_path / "mixed.trace")
    k = vmo.Kernel(1 << 24)
    with k.record(path):
        _, h = k.vmo_create(16 * PAGE)
        _, h2 = k.vmo_create(4 * PAGE)
        batch = _mix_batch(h, 200_000)
        t = threading.Thread(target=k.run, args=(batch,))
        t.start()
        n = 0
        while t.is_alive() or n < 10:
            k.vmo_write(h2, b"x" * 10, n % PAGE)
            k.vmo_read_bytes(h2, 0, 16)
            n += 1
            time.sleep(0)
        t.join()
    k.close()
    r = vmo.replay(path)
    assert r.mismatches == 0, r.first_mismatch
    assert r.ops == 2 + 3 * 200_000 + 2 * n
