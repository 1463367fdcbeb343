"""Threads calling into one compiled kernel at once (hardening: no crash, no leak).

README: "The kernel holds the GIL for every call: one kernel is safe to share between threads,
and calls do not run in parallel." So calls are serialised; what these tests prove is that
every invariant holds however the calls of several threads interleave: no crash, no deadlock
(each thread is joined with a timeout; one still running is a failure), no exception but the
expected statuses, each thread's own data intact, `_check()` passing, and every frame back
once every handle is closed.

Each test starts its threads together on a `threading.Barrier` and sets
``sys.setswitchinterval(1e-6)`` (restored afterwards) so the interpreter switches threads as
often as it can. Every loop is bounded by an iteration count, never by time. Handle
generations are 12 bits (docs/semantics.md), so a slot freed and reused 4096 times makes an old
handle value valid again; the iteration counts keep every slot far below that.
"""

import random
import sys
import threading
from array import array

import pytest

import vmo
from vmo import MxError, Status

PAGE = 4096
S = Status
OK = S.NO_ERROR
COMMIT, DECOMMIT, LOOKUP = vmo.MX_VMO_OP_COMMIT, vmo.MX_VMO_OP_DECOMMIT, vmo.MX_VMO_OP_LOOKUP
SAME = vmo.MX_RIGHT_SAME_RIGHTS
JOIN_TIMEOUT = 120.0  # seconds; only a deadlock (or a crashed interpreter) can reach it
THREADS = 6


@pytest.fixture
def fast_switching():
    """Switch threads as often as the interpreter allows; restore the interval afterwards."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class Failures:
    """Failures recorded by worker threads (an assert in a thread would only print)."""

    def __init__(self):
        self.items = []
        self.lock = threading.Lock()

    def add(self, text):
        with self.lock:
            self.items.append(text)

    def check(self):
        assert not self.items, "%d failures in threads, first ones:\n%s" % (
            len(self.items), "\n".join(self.items[:10]))


def run_threads(targets, failures):
    """Start one thread per target (each called as target(barrier)), all released together by a
    barrier; join them with a timeout. A thread still alive afterwards is a deadlock."""
    barrier = threading.Barrier(len(targets))

    def wrap(target, index):
        def body():
            try:
                barrier.wait(timeout=JOIN_TIMEOUT)
                target()
            except BaseException as exc:  # noqa: BLE001  (reported by the test)
                import traceback

                failures.add("thread %d raised %r\n%s" % (index, exc, traceback.format_exc()))
        return body

    threads = [threading.Thread(target=wrap(t, i), name="vmo-worker-%d" % i, daemon=True)
               for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, "threads still running after %ss (deadlock?): %s" % (JOIN_TIMEOUT, hung)


def expect_status(failures, what, result, *allowed):
    status = result[0] if isinstance(result, tuple) else result
    if type(status) is not Status:
        failures.add("%s returned %r: not a vmo.Status" % (what, result))
    elif status not in allowed:
        failures.add("%s returned %s, expected one of %s" % (
            what, status.name, [s.name for s in allowed]))
    return status


def assert_all_free(k):
    k._check()
    s = k.stats()
    assert s["handles"] == 0 and s["vmos"] == 0, s
    assert s["pinned_frames"] == 0, s
    assert s["free_frames"] == s["total_frames"] and s["committed_frames"] == 0, s


# -- every kind of call from every thread, each on its own objects ------------------------------
class Worker:
    """One thread's random session on its own VMOs. Plain VMOs of whole pages are modelled byte
    for byte (writes, DECOMMIT, resizing), so data another thread's call corrupted would show;
    clones, events and contiguous VMOs are used but not modelled."""

    def __init__(self, k, index, iterations, failures, trace):
        self.k = k
        self.index = index
        self.rng = random.Random(1000 + index)
        self.iterations = iterations
        self.failures = failures
        self.trace = trace
        self.model = {}  # handle -> bytearray: exactly what the VMO holds
        self.others = []  # clones, duplicates, events, contiguous VMOs (handles)
        self.views = []
        self.counts = {}

    def fail(self, text):
        self.failures.add("thread %d: %s" % (self.index, text))

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def plain(self):
        return self.rng.choice(list(self.model)) if self.model else None

    def run(self):
        ops = [self.op_create, self.op_write, self.op_write, self.op_read, self.op_read,
               self.op_commit, self.op_decommit, self.op_lookup, self.op_clone, self.op_dup,
               self.op_close, self.op_resize, self.op_contiguous, self.op_view, self.op_event,
               self.op_read_bytes, self.op_pythonic]
        for _ in range(self.iterations):
            self.trace.append(self.index)
            self.rng.choice(ops)()
        self.cleanup()

    # -- operations --------------------------------------------------------------------------
    def op_create(self):
        if len(self.model) >= 6:
            return self.op_close()
        pages = self.rng.randint(1, 8)
        status, h = self.k.vmo_create(pages * PAGE)
        if expect_status(self.failures, "vmo_create", (status, h), OK) is OK:
            self.model[h] = bytearray(pages * PAGE)
            self.count("create")

    def op_write(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        model = self.model[h]
        offset = self.rng.randrange(0, len(model))
        data = bytes([self.index * 16 + self.rng.randrange(16)]) * self.rng.randint(1, 3 * PAGE)
        status, actual = self.k.vmo_write(h, data, offset)
        st = expect_status(self.failures, "vmo_write", status, OK, S.ERR_NO_MEMORY)
        if st is OK:
            expected = min(len(data), len(model) - offset)
            if actual != expected:
                self.fail("vmo_write wrote %d, expected %d" % (actual, expected))
            model[offset:offset + actual] = data[:actual]
            self.count("write")
        else:
            self.forget(h)

    def forget(self, h):
        """The VMO's content is no longer known exactly (a write ran out of memory)."""
        self.others.append(h)
        del self.model[h]

    def op_read(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        model = self.model[h]
        offset = self.rng.randrange(0, len(model))
        buf = bytearray(self.rng.randint(1, 3 * PAGE))
        status, actual = self.k.vmo_read(h, buf, offset)
        if expect_status(self.failures, "vmo_read", status, OK) is OK:
            expected = bytes(model[offset:offset + len(buf)])
            if bytes(buf[:actual]) != expected:
                self.fail("vmo_read of handle %#x at %d returned other bytes than written" % (
                    h, offset))
            self.count("read")

    def op_read_bytes(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        model = self.model[h]
        status, data = self.k.vmo_read_bytes(h, 0, len(model))
        if expect_status(self.failures, "vmo_read_bytes", status, OK) is OK \
                and data != bytes(model):
            self.fail("vmo_read_bytes of handle %#x differs from what was written" % h)

    def op_commit(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        status = self.k.vmo_op_range(h, COMMIT, 0, len(self.model[h]))
        expect_status(self.failures, "COMMIT", status, OK, S.ERR_NO_MEMORY)
        self.count("commit")

    def op_decommit(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        model = self.model[h]
        pages = len(model) // PAGE
        first = self.rng.randrange(pages)
        count = self.rng.randint(1, pages - first)
        status = self.k.vmo_op_range(h, DECOMMIT, first * PAGE, count * PAGE)
        if expect_status(self.failures, "DECOMMIT", status, OK) is OK:
            model[first * PAGE:(first + count) * PAGE] = bytes(count * PAGE)
            self.count("decommit")

    def op_lookup(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        size = len(self.model[h])
        if self.k.vmo_op_range(h, COMMIT, 0, size) is not OK:
            return
        out = array("Q", [0] * (size // PAGE))
        status = self.k.vmo_op_range(h, LOOKUP, 0, size, out)
        if expect_status(self.failures, "LOOKUP", status, OK) is OK:
            if len(set(out)) != len(out):
                self.fail("LOOKUP gave one frame to two pages: %s" % list(out))
            # What a device reads at those addresses is the VMO's content.
            i = self.rng.randrange(len(out))
            if self.k.phys_read(out[i], PAGE) != bytes(self.model[h][i * PAGE:(i + 1) * PAGE]):
                self.fail("phys_read of a LOOKUP address differs from the VMO's bytes")
            self.count("lookup")

    def op_clone(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        size = len(self.model[h])
        status, c = self.k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 0, size)
        if expect_status(self.failures, "vmo_clone", status, OK) is OK:
            # A fresh clone is a live view of its parent.
            status, data = self.k.vmo_read_bytes(c, 0, size)
            if data != bytes(self.model[h]):
                self.fail("a fresh clone does not read as its parent")
            status, _ = self.k.vmo_write(c, b"\xee" * 10, 0)  # copy-on-write: parent unchanged
            expect_status(self.failures, "vmo_write(clone)", status, OK, S.ERR_NO_MEMORY)
            self.others.append(c)
            self.count("clone")

    def op_dup(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        status, d = self.k.handle_duplicate(h, SAME)
        if expect_status(self.failures, "handle_duplicate", status, OK) is OK:
            self.others.append(d)
            self.count("duplicate")

    def op_event(self):
        status, e = self.k.event_create()
        if expect_status(self.failures, "event_create", status, OK) is OK:
            expect_status(self.failures, "vmo_get_size(event)", self.k.vmo_get_size(e),
                          S.ERR_WRONG_TYPE)
            self.others.append(e)

    def op_close(self):
        if self.others and self.rng.random() < 0.6:
            h = self.others.pop(self.rng.randrange(len(self.others)))
        elif self.model:
            h = self.plain()
            del self.model[h]
        else:
            return
        expect_status(self.failures, "handle_close", self.k.handle_close(h), OK)
        # A closed handle is ERR_BAD_HANDLE (its slot's generation moved on).
        expect_status(self.failures, "vmo_get_size(closed)", self.k.vmo_get_size(h),
                      S.ERR_BAD_HANDLE)
        self.count("close")

    def op_resize(self):
        h = self.plain()
        if h is None:
            return self.op_create()
        pages = self.rng.randint(1, 8)
        if expect_status(self.failures, "vmo_set_size", self.k.vmo_set_size(h, pages * PAGE),
                         OK) is OK:
            model = self.model[h]
            if pages * PAGE < len(model):
                del model[pages * PAGE:]
            else:
                model.extend(bytes(pages * PAGE - len(model)))
            self.count("resize")

    def op_contiguous(self):
        pages = self.rng.choice([1, 2, 4, 16, 64])
        status, h = self.k.vmo_create_contiguous(pages * PAGE, self.rng.choice([0, 12, 16]))
        if expect_status(self.failures, "vmo_create_contiguous", status, OK,
                         S.ERR_NO_MEMORY) is OK:
            out = array("Q", [0] * pages)
            expect_status(self.failures, "LOOKUP(contiguous)",
                          self.k.vmo_op_range(h, LOOKUP, 0, pages * PAGE, out), OK)
            if list(out) != [out[0] + i * PAGE for i in range(pages)]:
                self.fail("a contiguous VMO is not physically contiguous")
            self.others.append(h)
            self.count("contiguous")

    def op_view(self):
        if self.views and self.rng.random() < 0.5:
            view, h, page = self.views.pop(self.rng.randrange(len(self.views)))
            view.release()
            return
        h = self.plain()
        if h is None:
            return self.op_create()
        model = self.model[h]
        page = self.rng.randrange(len(model) // PAGE)
        if self.k.vmo_op_range(h, COMMIT, page * PAGE, PAGE) is not OK:
            return
        out = array("Q", [0])
        expect_status(self.failures, "LOOKUP", self.k.vmo_op_range(
            h, LOOKUP, page * PAGE, PAGE, out), OK)
        view = self.k.phys_view(out[0], PAGE)
        if bytes(view) != bytes(model[page * PAGE:(page + 1) * PAGE]):
            self.fail("a physical view does not show the VMO's bytes")
        # The device writes through the view; the driver sees it.
        value = bytes([0x80 | self.index]) * 16
        view[100:116] = value
        model[page * PAGE + 100:page * PAGE + 116] = value
        self.views.append((view, h, page))
        self.count("view")

    def op_pythonic(self):
        try:
            with self.k.create_vmo(2 * PAGE) as v:
                v.write(b"py%d" % self.index, PAGE - 1)
                with v.clone() as c:
                    if c.read(PAGE - 1, 3) != b"py%d" % self.index:
                        self.fail("Vmo clone reads other bytes")
                v.commit()
                if len(v.lookup()) != 2:
                    self.fail("Vmo.lookup length")
                v.decommit(0, PAGE)
        except MxError as exc:
            if exc.status is not S.ERR_NO_MEMORY:
                self.fail("Pythonic layer raised %r" % exc)

    def cleanup(self):
        for view, _h, _page in self.views:
            view.release()
        self.views = []
        # Everything this thread wrote is still there.
        for h, model in self.model.items():
            status, data = self.k.vmo_read_bytes(h, 0, len(model))
            if status is not OK or data != bytes(model):
                self.fail("handle %#x lost its bytes (%s)" % (h, status))
        for h in list(self.model) + self.others:
            expect_status(self.failures, "handle_close(cleanup)", self.k.handle_close(h), OK)
        self.model = {}
        self.others = []


@pytest.mark.parametrize("memory_pages", [4096, 192])
def test_threads_each_on_their_own_objects(fast_switching, memory_pages):
    """THREADS threads make every kind of call at once on one kernel; with 192 pages they also
    compete for memory (ERR_NO_MEMORY is then an expected status of commits, writes and
    contiguous creates)."""
    failures = Failures()
    trace = []
    with vmo.Kernel(memory_size=memory_pages * PAGE) as k:
        workers = [Worker(k, i, 400, failures, trace) for i in range(THREADS)]
        run_threads([w.run for w in workers], failures)
        failures.check()
        assert_all_free(k)
        totals = {}
        for w in workers:
            for what, n in w.counts.items():
                totals[what] = totals.get(what, 0) + n
        for what in ("create", "write", "read", "clone", "duplicate", "close", "commit",
                     "decommit"):
            assert totals.get(what, 0) > 0, "no successful %s at all: %s" % (what, totals)
        # How much the threads interleaved depends on the scheduler, not on vmo: reported,
        # not asserted (a run where they did not interleave proves less, but nothing failed).
        switches = sum(1 for a, b in zip(trace, trace[1:]) if a != b)
        print("threads switched %d times between calls" % switches)


# -- shared handles: close racing use -----------------------------------------------------------
def test_close_races_use_of_shared_handles(fast_switching):
    """Some threads close shared handles while others keep using them: every use gives its
    normal result or ERR_BAD_HANDLE (MxError(ERR_BAD_HANDLE) in the Pythonic layer, ERR_BAD_STATE
    for a physical access to frames already freed), never a crash; each shared handle is closed
    successfully exactly once; the contents never change (every writer writes the same bytes)."""
    shared_count = 24
    size = 4 * PAGE
    pattern = bytes((i * 7 + 3) & 0xFF for i in range(size))
    failures = Failures()
    closes = []  # successful closes of shared handles (list.append is atomic)
    with vmo.Kernel(memory_size=4096 * PAGE) as k:
        shared = []
        for _ in range(shared_count):
            status, h = k.vmo_create(size)
            assert status is OK
            assert k.vmo_write(h, pattern, 0) == (OK, size)
            shared.append(h)
        start_handles = k.stats()["handles"]

        def closer(seed):
            rng = random.Random(seed)

            def body():
                order = shared[:]
                rng.shuffle(order)
                for h in order:
                    for _ in range(rng.randint(0, 40)):  # let the users run a little
                        k.vmo_get_size(order[0])
                    status = k.handle_close(h)
                    if expect_status(failures, "handle_close(shared)", status, OK,
                                     S.ERR_BAD_HANDLE) is OK:
                        closes.append(h)
            return body

        def user(seed):
            rng = random.Random(seed)

            def body():
                mine = []
                for _ in range(500):
                    h = rng.choice(shared)
                    r = rng.randrange(11)
                    if r == 0:
                        buf = bytearray(PAGE)
                        status, n = k.vmo_read(h, buf, PAGE)
                        if expect_status(failures, "vmo_read", status, OK,
                                         S.ERR_BAD_HANDLE) is OK \
                                and bytes(buf) != pattern[PAGE:2 * PAGE]:
                            failures.add("a shared VMO changed its bytes")
                    elif r == 1:
                        status, n = k.vmo_write(h, pattern[:3000], 0)
                        expect_status(failures, "vmo_write", status, OK, S.ERR_BAD_HANDLE)
                    elif r == 2:
                        expect_status(failures, "COMMIT", k.vmo_op_range(h, COMMIT, 0, size),
                                      OK, S.ERR_BAD_HANDLE)
                    elif r == 3:
                        out = array("Q", [0] * 4)
                        status = k.vmo_op_range(h, LOOKUP, 0, size, out)
                        if expect_status(failures, "LOOKUP", status, OK,
                                         S.ERR_BAD_HANDLE) is OK:
                            # The VMO may be closed (and its frames reused) right after.
                            try:
                                with k.phys_view(out[1], 64) as view:
                                    view.tobytes()
                            except MxError as exc:
                                if exc.status is not S.ERR_BAD_STATE:
                                    failures.add("phys_view raised %r" % exc)
                    elif r == 4:
                        status, c = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 0, size)
                        if expect_status(failures, "vmo_clone", status, OK,
                                         S.ERR_BAD_HANDLE) is OK:
                            mine.append(c)
                    elif r == 5:
                        status, d = k.handle_duplicate(h, SAME)
                        if expect_status(failures, "handle_duplicate", status, OK,
                                         S.ERR_BAD_HANDLE) is OK:
                            mine.append(d)
                    elif r == 6:
                        status, got = k.vmo_get_size(h)
                        if expect_status(failures, "vmo_get_size", status, OK,
                                         S.ERR_BAD_HANDLE) is OK and got != size:
                            failures.add("vmo_get_size gave %d" % got)
                    elif r == 7:
                        expect_status(failures, "object_get_info",
                                      k.object_get_info(h, vmo.MX_INFO_HANDLE_BASIC), OK,
                                      S.ERR_BAD_HANDLE)
                    elif r == 8:
                        try:
                            if k.vmo(h).read(0, 64) != pattern[:64]:
                                failures.add("Vmo.read of a shared VMO changed")
                        except MxError as exc:
                            if exc.status is not S.ERR_BAD_HANDLE:
                                failures.add("Vmo.read raised %r" % exc)
                    elif r == 9 and mine:
                        c = mine.pop(rng.randrange(len(mine)))
                        # Our own clone or duplicate: it outlives the shared handle it came
                        # from and still reads the pattern.
                        status, data = k.vmo_read_bytes(c, 2 * PAGE, 100)
                        if status is not OK or data != pattern[2 * PAGE:2 * PAGE + 100]:
                            failures.add("an own clone/duplicate read %s %r" % (
                                status, data[:8]))
                        expect_status(failures, "handle_close(own)", k.handle_close(c), OK)
                    else:
                        expect_status(failures, "DECOMMIT of nothing",
                                      k.vmo_op_range(h, DECOMMIT, 0, 0), OK, S.ERR_BAD_HANDLE)
                for c in mine:
                    expect_status(failures, "handle_close(own)", k.handle_close(c), OK)
            return body

        targets = [closer(1), closer(2)] + [user(10 + i) for i in range(THREADS - 2)]
        run_threads(targets, failures)
        failures.check()
        k._check()
        # Every shared handle was closed exactly once, by one of the closers.
        assert sorted(closes) == sorted(shared), (len(closes), len(shared))
        for h in shared:
            assert k.handle_close(h) is S.ERR_BAD_HANDLE
            assert k.vmo_read(h, bytearray(8), 0) == (S.ERR_BAD_HANDLE, 0)
        assert start_handles == shared_count
        assert_all_free(k)


def test_threads_share_one_vmo_and_its_views(fast_switching):
    """Threads write disjoint pages of one VMO (and of its clones) through the syscalls and
    through physical views at once; at the end each page holds exactly its writer's bytes."""
    pages_per_thread = 4
    failures = Failures()
    with vmo.Kernel(memory_size=1024 * PAGE) as k:
        status, h = k.vmo_create(THREADS * pages_per_thread * PAGE)
        assert status is OK

        def worker(i):
            rng = random.Random(i)

            def body():
                first = i * pages_per_thread
                for n in range(150):
                    page = first + rng.randrange(pages_per_thread)
                    fill = bytes([(i << 4) | (n & 15)]) * PAGE
                    r = rng.randrange(4)
                    if r == 0:
                        expect_status(failures, "vmo_write",
                                      k.vmo_write(h, fill, page * PAGE), OK)
                    elif r == 1:
                        expect_status(failures, "COMMIT",
                                      k.vmo_op_range(h, COMMIT, page * PAGE, PAGE), OK)
                        out = array("Q", [0])
                        expect_status(failures, "LOOKUP",
                                      k.vmo_op_range(h, LOOKUP, page * PAGE, PAGE, out), OK)
                        with k.phys_view(out[0], PAGE) as view:
                            view[:] = fill
                    elif r == 2:
                        status, c = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE,
                                                page * PAGE, PAGE)
                        if expect_status(failures, "vmo_clone", status, OK) is OK:
                            k.vmo_write(c, b"\x00" * PAGE, 0)  # the clone's own copy
                            k.handle_close(c)
                    else:
                        status, data = k.vmo_read_bytes(h, first * PAGE,
                                                        pages_per_thread * PAGE)
                        expect_status(failures, "vmo_read_bytes", status, OK)
                        for p in range(pages_per_thread):
                            chunk = data[p * PAGE:(p + 1) * PAGE]
                            if chunk != bytes(PAGE) and chunk[0] >> 4 != i \
                                    or len(set(chunk)) > 1:
                                failures.add("page %d of thread %d holds foreign bytes" % (
                                    first + p, i))
                # The final state of each of our pages: a known fill.
                for p in range(pages_per_thread):
                    k.vmo_write(h, bytes([(i << 4) | p]) * PAGE, (first + p) * PAGE)
            return body

        run_threads([worker(i) for i in range(THREADS)], failures)
        failures.check()
        k._check()
        for i in range(THREADS):
            for p in range(pages_per_thread):
                page = i * pages_per_thread + p
                assert k.vmo_read_bytes(h, page * PAGE, PAGE) == (OK, bytes([(i << 4) | p]) * PAGE)
        assert k.handle_close(h) is OK
        assert_all_free(k)


# -- long calls run without the GIL -------------------------------------------------------------
# A long call (COMMIT/DECOMMIT/LOOKUP of more than 256 pages, a read or write of more than
# 64 KiB, a shrink or close freeing many pages, a large contiguous create, a large phys_read or
# phys_write) owns its kernel (`Kernel._busy`) and releases the GIL while it works; any other
# call on that kernel waits until it is done (docs/semantics.md "Threads"). Nothing here is
# timed: every loop is bounded by a count, and what is asserted holds for every interleaving
# that a working implementation allows.
BIG = 1 << 30                        # 262144 pages: one COMMIT walks them without the GIL
MAX_ROUNDS = 400


def _long_rounds(k, h, size, seen, done, failures, lookup=None):
    """COMMIT (+ LOOKUP) + DECOMMIT of the whole VMO until `seen` is set (at most MAX_ROUNDS)."""
    try:
        for _ in range(MAX_ROUNDS):
            expect_status(failures, "COMMIT", k.vmo_op_range(h, COMMIT, 0, size), OK)
            if lookup is not None:
                expect_status(failures, "LOOKUP", k.vmo_op_range(h, LOOKUP, 0, size, lookup), OK)
            expect_status(failures, "DECOMMIT", k.vmo_op_range(h, DECOMMIT, 0, size), OK)
            if seen.is_set():
                break
    finally:
        done.set()


def test_a_long_commit_releases_the_gil(fast_switching):
    """While one thread's long COMMIT/LOOKUP/DECOMMIT runs, another Python thread runs: it
    sees the kernel busy (which it can only see while the first thread's call is in progress,
    since `busy` is set and cleared inside one call) and makes calls on another kernel then.
    With the GIL held for the whole call, it could never see the kernel busy."""
    failures = Failures()
    seen, done = threading.Event(), threading.Event()
    progress = []
    with vmo.Kernel(memory_size=BIG + (1 << 20)) as k, vmo.Kernel(memory_size=1 << 20) as k2:
        status, h = k.vmo_create(BIG)
        assert status is OK
        status, h2 = k2.vmo_create(PAGE)
        assert status is OK
        lookup = array("Q", bytes(8 * (BIG // PAGE)))

        def observer():
            while not done.is_set():
                if k._busy:
                    # Inside the long call: another kernel answers at once, in this thread.
                    for _ in range(10):
                        expect_status(failures, "k2.COMMIT", k2.vmo_op_range(h2, COMMIT, 0, PAGE),
                                      OK)
                        progress.append(k._busy)
                    seen.set()
                    return

        run_threads([lambda: _long_rounds(k, h, BIG, seen, done, failures, lookup), observer],
                    failures)
        failures.check()
        assert seen.is_set(), "no other thread ran during %d long COMMITs" % MAX_ROUNDS
        assert len(progress) == 10
        k._check()
        k2._check()


def test_short_calls_wait_for_a_long_one(fast_switching):
    """A call that finds the kernel busy waits until the long call is done: it never sees a
    COMMIT or DECOMMIT half done (the committed frame count is all or nothing), and its own
    call then succeeds."""
    failures = Failures()
    seen, done = threading.Event(), threading.Event()
    pages = BIG // PAGE
    observed = []
    with vmo.Kernel(memory_size=BIG + (1 << 20)) as k:
        status, h = k.vmo_create(BIG)
        assert status is OK
        status, small = k.vmo_create(PAGE)
        assert status is OK
        assert k.vmo_write(small, b"x" * 10, 0) == (OK, 10)

        def waiter():
            while not done.is_set():
                if k._busy:
                    observed.append(k.stats()["committed_frames"])   # waits for the owner
                    observed.append(k.vmo_read_bytes(small, 0, 10))
                    observed.append(k.vmo_op_range(h, LOOKUP, 0, PAGE, array("Q", [0]))
                                    in (OK, S.ERR_NO_MEMORY))
                    k._check()
                    seen.set()
                    return

        run_threads([lambda: _long_rounds(k, h, BIG, seen, done, failures), waiter], failures)
        failures.check()
        assert seen.is_set(), "no other thread ran during %d long COMMITs" % MAX_ROUNDS
        assert observed[0] in (1, 1 + pages), observed[0]
        assert observed[1] == (OK, b"x" * 10)
        assert observed[2] is True
        k._check()


def _session(k, seed, mask=False):
    """A deterministic mix of long and short calls on `k`'s own objects; returns every
    result, so two runs (one in a thread, one sequential) can be compared. `mask`: record
    no handle value or physical address (they depend on other threads' calls)."""
    rng = random.Random(seed)
    out = []
    big = 4 << 20                                     # 1024 pages: long COMMIT/LOOKUP
    status, h = k.vmo_create(big)
    out.append(status if mask else (status, h))
    for i in range(30):
        choice = rng.randrange(7)
        if choice == 0:
            out.append(k.vmo_op_range(h, COMMIT, 0, big))
            buf = array("Q", bytes(8 * (big // PAGE)))
            out.append(k.vmo_op_range(h, LOOKUP, 0, big, buf))
            out.append(len(set(buf)) if mask else buf.tobytes())
        elif choice == 1:
            data = bytes([i & 0xFF]) * (rng.randrange(1, 200) * 1024)   # up to 200 KiB: long
            out.append(k.vmo_write(h, data, rng.randrange(0, big - len(data))))
        elif choice == 2:
            out.append(k.vmo_read_bytes(h, rng.randrange(0, big), rng.randrange(0, 300 * 1024)))
        elif choice == 3:
            status, c = k.vmo_clone(h, vmo.MX_VMO_CLONE_COPY_ON_WRITE, 0, big)
            out.append(status)
            out.append(k.vmo_write(c, b"clone", 5 * PAGE))
            out.append(k.vmo_op_range(c, COMMIT, 0, big))            # long, on a clone
            out.append(k.vmo_read_bytes(c, 5 * PAGE, 5))
            out.append(k.handle_close(c))                            # long close
        elif choice == 4:
            out.append(k.vmo_op_range(h, DECOMMIT, 0, big))
        elif choice == 5:
            out.append(k.vmo_set_size(h, PAGE))                       # long shrink
            out.append(k.vmo_set_size(h, big))
        else:
            status, c = k.vmo_create_contiguous(2 << 20)              # 512 pages: long
            out.append(status)
            if status is OK:
                buf = array("Q", [0])
                k.vmo_op_range(c, LOOKUP, 0, PAGE, buf)
                out.append(k.phys_write(buf[0], b"\x5a" * (128 * 1024)))   # long phys_write
                out.append(k.phys_read(buf[0], 128 * 1024))               # long phys_read
                out.append(k.handle_close(c))
    out.append(k.vmo_read_bytes(h, 0, big))
    out.append(k.handle_close(h))
    return out


def test_two_kernels_in_two_threads_match_sequential_runs(fast_switching):
    """Each thread works on its own kernel: handles, statuses, bytes and physical addresses
    are those of the same session run alone on a fresh kernel."""
    failures = Failures()
    results = {}
    kernels = [vmo.Kernel(memory_size=64 << 20) for _ in range(2)]

    def run(i):
        results[i] = _session(kernels[i], 100 + i)

    run_threads([lambda: run(0), lambda: run(1)], failures)
    failures.check()
    for i, k in enumerate(kernels):
        assert_all_free(k)
        k.close()
        with vmo.Kernel(memory_size=64 << 20) as alone:
            assert _session(alone, 100 + i) == results[i], "kernel %d differs" % i


def test_long_and_short_calls_share_one_kernel(fast_switching):
    """Threads mix long COMMITs, LOOKUPs, writes, reads, clones, shrinks, closes, contiguous
    creates and physical accesses on one kernel (each on its own objects) while others make
    short calls: every invariant holds throughout and afterwards, and each thread's results
    are those of its session run alone (they depend only on its own objects; handle values
    and physical addresses, which depend on the interleaving, are left out)."""
    failures = Failures()
    results = {}
    checks = []
    with vmo.Kernel(memory_size=256 << 20) as k:
        def run(i):
            results[i] = _session(k, 200 + i, mask=True)

        def checker():
            for _ in range(50):
                k._check()
                checks.append(k.stats()["handles"])

        def short():
            for i in range(300):
                status, h = k.vmo_create(PAGE)
                expect_status(failures, "create", (status,), OK)
                expect_status(failures, "write", k.vmo_write(h, b"s%d" % i, 0), OK)
                if k.vmo_read_bytes(h, 0, 8)[1][:len(b"s%d" % i)] != b"s%d" % i:
                    failures.add("short VMO lost its bytes")
                expect_status(failures, "close", k.handle_close(h), OK)

        workers = [Worker(k, 6 + i, 150, failures, []) for i in range(2)]
        run_threads([lambda: run(0), lambda: run(1), checker, short] + [w.run for w in workers],
                    failures)
        failures.check()
        assert_all_free(k)
        assert len(checks) == 50

    for i in range(2):
        with vmo.Kernel(memory_size=256 << 20) as alone:
            assert _session(alone, 200 + i, mask=True) == results[i], "session %d differs" % i


def test_close_waits_for_a_long_call(fast_switching):
    """Kernel.close() from another thread while a long call runs waits for it; the long
    thread's next call raises ValueError; nothing crashes; every invariant held until then."""
    failures = Failures()
    seen, done = threading.Event(), threading.Event()
    errors = []
    k = vmo.Kernel(memory_size=BIG + (1 << 20))
    status, h = k.vmo_create(BIG)
    assert status is OK

    def long_thread():
        try:
            _long_rounds(k, h, BIG, seen, done, failures)
        except ValueError as exc:
            errors.append(exc)

    def closer():
        while not done.is_set():
            if k._busy:
                k.close()
                seen.set()
                return

    run_threads([long_thread, closer], failures)
    failures.check()
    assert k.closed
    assert seen.is_set() or not errors
    with pytest.raises(ValueError):
        k.stats()


def test_a_view_released_during_a_long_call(fast_switching):
    """A physical view dropped by one thread while another owns the kernel unpins its
    frames after the long call (never during it): the invariants hold and every frame comes
    back."""
    failures = Failures()
    seen, done = threading.Event(), threading.Event()
    with vmo.Kernel(memory_size=BIG + (1 << 20)) as k:
        status, h = k.vmo_create(BIG)
        assert status is OK
        status, small = k.vmo_create(PAGE)
        assert k.vmo_write(small, b"v", 0) == (OK, 1)
        buf = array("Q", [0])
        assert k.vmo_op_range(small, LOOKUP, 0, PAGE, buf) is OK
        views = [k.phys_view(buf[0], PAGE) for _ in range(20)]
        assert k.handle_close(small) is OK                # the frame is now held by pins only

        def releaser():
            while not done.is_set():
                if k._busy:
                    while views:
                        views.pop().release()
                    seen.set()
                    return

        run_threads([lambda: _long_rounds(k, h, BIG, seen, done, failures), releaser],
                    failures)
        failures.check()
        views.clear()
        assert k.handle_close(h) is OK
        assert_all_free(k)
