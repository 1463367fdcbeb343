"""Differential state machine for the embedding features: memory maps, contiguous VMOs,
physical reads, writes and pinned views, the compiled core against the reference model.

Like ``test_state_machine.py`` (same comparison approach): one `hypothesis.stateful` program
drives a `vmo.Kernel` and a `vmo._reference.Kernel` built on the same small memory map (1 to
3 RAM ranges, drawn in `@initialize`: some touching, and then merged into one arena when
they are consecutive in the order given, some with holes between them, sometimes given out
of address order, sometimes ending at 2**64) and any difference fails:

- pins (`k.pin`): made like views, their bytes read through their host addresses after
  every step, unpinned with BufferError while a numpy array, ctypes object or slice of the
  view lives (on both kernels alike), then for good;
- every call's outcome: the status and value, or the exception's type (and `MxError`'s
  status) for the physical accesses, which raise; every memoryview `phys_view` returns;
- after every step (`@invariant`): ``stats()`` (the contract keys plus ``pinned_frames``,
  ``memory_base``, ``memory_size``), ``_allocator_state()`` (the fresh mark and the freed
  list, bottom first), for every handle value ever returned ``vmo_get_size``,
  ``vmo_committed_bytes``, ``_vmo_pages``, the whole VMO's bytes and LOOKUP, a ``phys_read``
  of every frame of physical memory (bytes or the same error: free and orphaned frames are
  ERR_BAD_STATE), the bytes seen through every live view, and both ``_check()`` walkers;
- at the end, releasing every view and closing every handle must give every frame back
  (or, when the run drew ``close_with_views``, closing the kernels with views alive must leave
  the views usable, and releasing them afterwards must be harmless).

Views are kept in a list (each entry one memoryview per kernel, some of them slices of an
earlier view, which share its pins) and released in random order, by ``release()`` or by
dropping the last reference.

Budget: well under a minute (``HYPOTHESIS_PROFILE=long`` for a long run).
"""

import ctypes
import gc
import os
import sys

import numpy as np
from conftest import dirty_log_pair, drop_snapshot_pair, restore_pair, snapshot_pair
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

import vmo
from vmo import MxError

try:  # the reference model may be mid-edit; the machine then fails at setup, loudly
    from vmo._reference import Kernel as ReferenceKernel
except Exception as exc:  # pragma: no cover
    ReferenceKernel = None
    _REFERENCE_IMPORT_ERROR = exc

PAGE = 4096
U64 = (1 << 64) - 1
S = vmo.Status
LOOKUP = vmo.MX_VMO_OP_LOOKUP
COMMIT = vmo.MX_VMO_OP_COMMIT
DECOMMIT = vmo.MX_VMO_OP_DECOMMIT
STATS_KEYS = ("total_frames", "free_frames", "committed_frames", "vmos", "handles",
              "pinned_frames", "memory_base", "memory_size")
SENTINEL_Q = 0xDEAD_BEEF_DEAD_BEEF
BOGUS_HANDLES = (0, 2, 7, -1, 1 << 32)

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
_LONG = os.environ.get("HYPOTHESIS_PROFILE", "") in ("long", "vmo-long")
SM_SETTINGS = settings(max_examples=2000 if _LONG else 200,
                       stateful_step_count=80 if _LONG else 50, **_COMMON)


# -- comparing the two kernels ------------------------------------------------------------------
def _same(a, b):
    """Equal values of the same type, recursively (so Status vs int, None vs 0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, memoryview):
        return (a.format, a.readonly, a.shape, a.nbytes, a.tobytes()) == (
            b.format, b.readonly, b.shape, b.nbytes, b.tobytes())
    return a == b


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except MxError as exc:
        return "MxError", exc.status
    except Exception as exc:  # noqa: BLE001  (compared by type)
        return "raise", type(exc)


def _short(value):
    if isinstance(value, (bytes, bytearray)) and len(value) > 32:
        return "%s(len=%d, %r...)" % (type(value).__name__, len(value), bytes(value[:16]))
    if isinstance(value, memoryview):
        return "memoryview(nbytes=%d, %r...)" % (value.nbytes, value.tobytes()[:16])
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 4096:
        return hex(value)
    return repr(value)


class Pair:
    """A core kernel and a reference kernel on the same memory map, called in lockstep."""

    def __init__(self, memory):
        if ReferenceKernel is None:
            raise AssertionError("vmo._reference does not import: %r" % (_REFERENCE_IMPORT_ERROR,))
        self.core = vmo.Kernel(memory=memory)
        self.ref = ReferenceKernel(memory=memory)

    def call(self, name, *args, raises_ok=False):
        """Call ``name`` on both kernels; assert the same outcome; return the core's
        (kind, value) where kind is "ok", "MxError" (value: the status) or "raise"."""
        out_c = _outcome(getattr(self.core, name), *args)
        out_r = _outcome(getattr(self.ref, name), *args)
        what = "%s(%s)" % (name, ", ".join(_short(a) for a in args))
        assert out_c[0] == out_r[0] and _same(out_c[1], out_r[1]), (
            "%s diverged:\n  core      %s %s\n  reference %s %s" % (
                what, out_c[0], _short(out_c[1]), out_r[0], _short(out_r[1])))
        if out_c[0] == "raise":
            assert raises_ok, "%s raised %r on both kernels" % (what, out_c[1])
        if out_c[0] == "ok" and name.startswith(("vmo_", "handle_")):
            status = out_c[1][0] if isinstance(out_c[1], tuple) else out_c[1]
            assert isinstance(status, S), "%s: status %r is not a vmo.Status" % (what, status)
        return out_c, out_r

    def value(self, name, *args):
        """The core's plain result of a call compared on both kernels."""
        return self.call(name, *args)[0][1]

    def lookup(self, h, size):
        pages = max(1, -(-size // PAGE))
        bufs = []
        for kernel in (self.core, self.ref):
            buf = bytearray(SENTINEL_Q.to_bytes(8, "little") * pages)
            bufs.append((kernel.vmo_op_range(h, LOOKUP, 0, size, buf), bytes(buf)))
        assert _same(bufs[0], bufs[1]), "LOOKUP(%#x, 0, %d) diverged: %r" % (h, size, bufs)

    def check_state(self, handles, views):
        a = {k: self.core.stats()[k] for k in STATS_KEYS}
        b = {k: self.ref.stats()[k] for k in STATS_KEYS}
        assert a == b, "stats() diverged:\n  core      %s\n  reference %s" % (a, b)
        assert a["free_frames"] + a["committed_frames"] == a["total_frames"], a
        ac, ar = self.core._allocator_state(), self.ref._allocator_state()
        assert _same(ac, ar), "_allocator_state() diverged:\n  core      %r\n  reference %r" % (
            ac, ar)
        for h in handles:
            status, size = self.value("vmo_get_size", h)
            self.value("vmo_committed_bytes", h)
            self.value("_vmo_pages", h)
            if status is S.NO_ERROR:
                self.value("vmo_read_bytes", h, 0, size)
                self.lookup(h, size)
        for base, size in self.core.memory_map:
            for paddr in range(base, base + size, PAGE):
                self.call("phys_read", paddr, PAGE)
        for vc, vr in views:
            assert vc.tobytes() == vr.tobytes(), "a view's bytes diverged"
        for h in handles:
            self.value("vmo_lookup_runs", h, 0, max(1, self.core.vmo_get_size(h)[1]))
        for name, kernel in (("core", self.core), ("reference", self.ref)):
            try:
                kernel._check()
            except AssertionError as exc:
                raise AssertionError("%s._check() failed: %s" % (name, exc)) from exc

    def close(self):
        for k in (self.core, self.ref):
            try:
                k.close()
            except Exception:  # noqa: BLE001
                pass


# -- memory maps --------------------------------------------------------------------------------
@st.composite
def memory_maps(draw):
    """1 to 3 ranges of 1 to 6 pages laid out in address order with gaps of 0 (touching) to 3
    pages, then given in a drawn order; sometimes the highest one ends at 2**64."""
    n = draw(st.integers(1, 3), label="ranges")
    sizes = [draw(st.integers(1, 6), label="pages") * PAGE for _ in range(n)]
    gaps = [draw(st.sampled_from([0, 0, 1, 3]), label="gap") * PAGE for _ in range(n - 1)]
    span = sum(sizes) + sum(gaps)
    start = draw(st.sampled_from([0x100000, 0x100000, PAGE, (1 << 64) - span, 0x1234_5000]),
                 label="base")
    ranges = []
    for i, size in enumerate(sizes):
        ranges.append((start, size))
        start += size + (gaps[i] if i < n - 1 else 0)
    order = draw(st.sampled_from([list(range(n)), list(range(n)), list(range(n))[::-1],
                                  draw(st.permutations(list(range(n))))]), label="order")
    return [ranges[i] for i in order]


def _arena_edges(memory):
    """Interesting physical addresses of a memory map: range edges, holes, the top."""
    out = {0, U64, (1 << 64) - PAGE}
    for base, size in memory:
        out |= {base, base - 1, base + 1, base + PAGE - 1, base + size - 1, base + size,
                base + size - PAGE, base + size + PAGE, base + size // 2}
    return sorted(p for p in out if 0 <= p <= U64)


SIZES = st.one_of(st.integers(1, 10 * PAGE),
                  st.builds(lambda n, d: max(0, n * PAGE + d), st.integers(0, 8),
                            st.sampled_from([-1, 0, 0, 1])))
LENGTHS = st.one_of(st.sampled_from([0, 1, 7, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 3 * PAGE]),
                    st.integers(0, 3 * PAGE))
DATA = st.builds(lambda pattern, n: (pattern * (n // len(pattern) + 1))[:n],
                 st.binary(min_size=1, max_size=8),
                 st.one_of(st.integers(0, 2 * PAGE + 3), st.sampled_from([0, 1, PAGE])))


class EmbeddingStateMachine(RuleBasedStateMachine):
    """VMOs, clones, contiguous VMOs and device access to physical memory, compared after
    every step."""

    handles = Bundle("handles")

    def __init__(self):
        super().__init__()
        self.pair = None
        self.seen = []     # every handle value ever returned
        self.views = []    # [(core memoryview, reference memoryview)] of live views
        self.pins = []     # [(core Pin, reference Pin)] (k.pin), pinned or not
        self.snapshots = []  # [(core Snapshot, reference Snapshot)] alive
        self.close_with_views = False

    @initialize(target=handles, memory=memory_maps(), close_with_views=st.booleans())
    def make_kernels(self, memory, close_with_views):
        self.pair = Pair(memory)
        self.memory = memory
        self.edges = _arena_edges(memory)
        self.close_with_views = close_with_views
        status, h = self.pair.value("vmo_create", 3 * PAGE + 5)
        assert status is S.NO_ERROR
        self.pair.value("vmo_write", h, b"first page", 0)
        return self._new(h)

    def teardown(self):
        if self.pair is None:
            return
        try:
            if sys.exc_info()[0] is None:
                if self.close_with_views:
                    self._close_kernels_with_views()
                else:
                    self._release_all_and_close()
        finally:
            self.views = []
            self.pins = []
            self.snapshots = []
            self.pair.close()

    def _release_all_and_close(self):
        for pins in self.pins:
            for p in pins:
                p.unpin()
        self.pins = []
        while self.views:
            for v in self.views.pop():
                v.release()
        for h in self.seen:
            self.pair.value("handle_close", h)
        self.pair.check_state(self.seen, [])
        s = self.pair.core.stats()
        assert s["free_frames"] == s["total_frames"] and s["pinned_frames"] == 0, s
        assert s["vmos"] == 0 and s["handles"] == 0, s

    def _close_kernels_with_views(self):
        """Closing a kernel with live views: every call raises ValueError, the views keep
        working (the arena stays mapped) and agree; releasing them afterwards is harmless."""
        self.pair.core.close()
        self.pair.ref.close()
        for name in ("stats", "_check"):
            for kernel in (self.pair.core, self.pair.ref):
                try:
                    getattr(kernel, name)()
                except ValueError:
                    pass
                else:
                    raise AssertionError("%s after close did not raise ValueError" % name)
        for i, (vc, vr) in enumerate(self.views):
            if vc.nbytes:
                vc[0] = vr[0] = i & 0xFF
            assert vc.tobytes() == vr.tobytes()
        while self.views:
            for v in self.views.pop():
                v.release()
        for pc, pr in self.pins:
            if pc.pinned:
                assert ctypes.string_at(pc.address, pc.length) == \
                    ctypes.string_at(pr.address, pr.length)
            pc.unpin()
            pr.unpin()
        self.pins = []
        gc.collect()

    def _new(self, h):
        if h not in self.seen:
            self.seen.append(h)
        return h

    def _new_result(self, result):
        status, h = result
        return self._new(h) if status is S.NO_ERROR else multiple()

    def _size(self, h):
        status, size = self.pair.core.vmo_get_size(h)
        return size if status is S.NO_ERROR else 0

    def _paddrs(self, data):
        """A physical address: a page some VMO holds (often), an arena edge, a hole."""
        held = []
        for h in self.seen:
            status, pages = self.pair.core._vmo_pages(h)
            if status is S.NO_ERROR:
                held.extend(pages.values())
        kind = data.draw(st.sampled_from(["held", "held", "held", "edge"]), label="where")
        if kind == "held" and held:
            base = data.draw(st.sampled_from(sorted(held)), label="held page")
            return base + data.draw(st.sampled_from([0, 0, 1, PAGE // 2, PAGE - 1, PAGE]),
                                    label="in page")
        return data.draw(st.sampled_from(self.edges), label="edge")

    # -- VMOs ---------------------------------------------------------------------------------
    @rule(target=handles, size=SIZES)
    def vmo_create(self, size):
        return self._new_result(self.pair.value("vmo_create", size))

    @rule(target=handles, size=st.integers(1, 6 * PAGE),
          align=st.sampled_from([0, 0, 12, 12, 13, 13, 14, 15, 16]))
    def vmo_create_contiguous(self, size, align):
        return self._new_result(self.pair.value("vmo_create_contiguous", size, align))

    @rule(target=handles, size=st.one_of(SIZES, st.sampled_from([0, U64, 1 << 64, -1])),
          align=st.sampled_from([0, 12, 13, 1, 11, 63, 64, U64, 1 << 32, -1]))
    def vmo_create_contiguous_edges(self, size, align):
        return self._new_result(self.pair.value("vmo_create_contiguous", size, align))

    @rule(h=handles, data=DATA, page=st.integers(0, 8),
          in_page=st.sampled_from([0, 0, 1, PAGE - 3]))
    def vmo_write(self, h, data, page, in_page):
        self.pair.value("vmo_write", h, data, page * PAGE + in_page)

    @rule(h=handles, data=DATA, page=st.integers(0, 3))
    def vmo_write_low(self, h, data, page):
        self.vmo_write(h, data, page, 0)

    @rule(h=handles, page=st.integers(0, 8), count=st.integers(1, 4),
          op=st.sampled_from([COMMIT, COMMIT, DECOMMIT]))
    def commit_or_decommit(self, h, page, count, op):
        self.pair.value("vmo_op_range", h, op, page * PAGE, count * PAGE)

    @rule(h=handles, page=st.integers(0, 3), count=st.integers(1, 3),
          op=st.sampled_from([COMMIT, DECOMMIT]))
    def commit_or_decommit_low(self, h, page, count, op):
        self.commit_or_decommit(h, page, count, op)

    @rule(h=handles, size=st.one_of(SIZES, st.sampled_from([0, 1, PAGE - 1, PAGE + 1])))
    def vmo_set_size(self, h, size):
        self.pair.value("vmo_set_size", h, size)

    @rule(target=handles, h=handles, page=st.integers(0, 3), size=SIZES)
    def vmo_clone(self, h, page, size):
        return self._new_result(self.pair.value("vmo_clone", h, 1, page * PAGE, size))

    @rule(h=consumes(handles))
    def handle_close(self, h):
        self.pair.value("handle_close", h)

    @rule(h=st.sampled_from(BOGUS_HANDLES))
    def handle_close_bogus(self, h):
        self.pair.value("handle_close", h)

    # -- physical access ----------------------------------------------------------------------
    @rule(data=st.data(), length=st.one_of(LENGTHS, st.sampled_from([-1, U64, 1 << 64])))
    def phys_read(self, data, length):
        self.pair.call("phys_read", self._paddrs(data), length)

    @rule(data=st.data(), payload=DATA)
    def phys_write(self, data, payload):
        self.pair.call("phys_write", self._paddrs(data), payload)

    @rule(data=st.data(), length=LENGTHS)
    def phys_view(self, data, length):
        (kind_c, vc), (_kind_r, vr) = self.pair.call("phys_view", self._paddrs(data), length)
        if kind_c == "ok":
            assert vc.format == "B" and not vc.readonly and vc.nbytes == length
            self.views.append((vc, vr))

    @rule(data=st.data(), length=st.sampled_from([1, 100, PAGE, 2 * PAGE]))
    def phys_view_held(self, data, length):
        """A view at the start of a page some VMO holds (usually succeeds)."""
        held = sorted({p for h in self.seen
                       for p in self.pair.core._vmo_pages(h)[1].values()})
        if held:
            paddr = data.draw(st.sampled_from(held), label="held page")
            (kind_c, vc), (_kind_r, vr) = self.pair.call("phys_view", paddr, length)
            if kind_c == "ok":
                self.views.append((vc, vr))

    @rule(data=st.data(), length=st.sampled_from([0, 1, 100, PAGE, 2 * PAGE]),
          anywhere=st.booleans())
    def pin(self, data, length, anywhere):
        """k.pin: phys_view's checks; its host address shows the pinned bytes."""
        held = sorted({p for h in self.seen
                       for p in self.pair.core._vmo_pages(h)[1].values()})
        if anywhere or not held:
            paddr = self._paddrs(data)
        else:
            paddr = data.draw(st.sampled_from(held), label="held page")
        (kind_c, pc) = _outcome(self.pair.core.pin, paddr, length)
        (kind_r, pr) = _outcome(self.pair.ref.pin, paddr, length)
        assert kind_c == kind_r and (kind_c == "ok" or _same(pc, pr)), (
            "pin(%#x, %d) diverged: core %s %r, reference %s %r" % (
                paddr, length, kind_c, pc, kind_r, pr))
        assert kind_c != "raise", "pin raised %r" % (pc,)
        if kind_c == "ok":
            assert (pc.paddr, pc.length) == (pr.paddr, pr.length) == (paddr, length)
            assert ctypes.string_at(pc.address, length) == pc.view.tobytes() == \
                ctypes.string_at(pr.address, length)
            self.pins.append((pc, pr))

    @rule(data=st.data(), hold=st.sampled_from([None, "numpy", "ctypes", "slice"]))
    def unpin(self, data, hold):
        """Pin.unpin: BufferError (nothing changes) while a buffer made from the view lives,
        on both kernels alike; idempotent."""
        if not self.pins:
            return
        i = data.draw(st.integers(0, len(self.pins) - 1), label="pin")
        pins = self.pins[i]
        if hold is not None and pins[0].pinned and pins[0].length:
            held = [np.frombuffer(p.view, dtype=np.uint8) if hold == "numpy" else
                    (ctypes.c_char * 1).from_buffer(p.view) if hold == "ctypes" else
                    p.view[1:] for p in pins]
            for p in pins:
                try:
                    p.unpin()
                except BufferError:
                    pass
                else:
                    raise AssertionError("unpin with a live %s of the view did not raise" % hold)
            assert pins[0].pinned and pins[1].pinned
            self.pair.check_state(self.seen, self.views)
            del held
        for p in pins:
            p.unpin()
        assert not pins[0].pinned and not pins[1].pinned

    @rule(data=st.data())
    def slice_view(self, data):
        """A slice of a live view: it shares the view's pins until both are gone."""
        if not self.views:
            return
        i = data.draw(st.integers(0, len(self.views) - 1), label="view")
        vc, vr = self.views[i]
        a = data.draw(st.integers(0, vc.nbytes), label="start")
        b = data.draw(st.integers(a, vc.nbytes), label="stop")
        self.views.append((vc[a:b], vr[a:b]))

    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=64))
    def write_through_view(self, data, payload):
        """A device writes through a view; vmo_read (checked after the step) must see it."""
        if not self.views:
            return
        i = data.draw(st.integers(0, len(self.views) - 1), label="view")
        vc, vr = self.views[i]
        if vc.nbytes == 0:
            return
        at = data.draw(st.integers(0, vc.nbytes - 1), label="at")
        chunk = payload[:vc.nbytes - at]
        vc[at:at + len(chunk)] = chunk
        vr[at:at + len(chunk)] = chunk

    @rule(data=st.data(), how=st.sampled_from(["release", "drop"]))
    def release_view(self, data, how):
        if not self.views:
            return
        i = data.draw(st.integers(0, len(self.views) - 1), label="view")
        pair = self.views.pop(i)
        if how == "release":
            for v in pair:
                v.release()
        del pair  # "drop": the last references go here

    # -- snapshots and the dirty log (docs/semantics.md "Snapshots", "The dirty log") ----------
    # Views pin frames: a snapshot or a restore is refused alike (ERR_BAD_STATE) while any
    # frame is pinned; a pinned frame is in every dirty log.
    @rule()
    def snapshot(self):
        snapshot_pair(self.pair, self.snapshots)

    @rule(data=st.data())
    def restore(self, data):
        restore_pair(self.pair, self.snapshots, data)

    @rule(data=st.data())
    def drop_snapshot(self, data):
        drop_snapshot_pair(self.snapshots, data)

    @rule(clear=st.booleans())
    def dirty_log(self, clear):
        dirty_log_pair(self.pair, clear)

    # -- comparisons after every step ---------------------------------------------------------
    @invariant()
    def same_state(self):
        if self.pair is not None:
            self.pair.check_state(self.seen + list(BOGUS_HANDLES[:2]), self.views)
            for pc, pr in self.pins:
                assert pc.pinned == pr.pinned
                if pc.pinned:
                    assert ctypes.string_at(pc.address, pc.length) == \
                        ctypes.string_at(pr.address, pr.length), "a pin's bytes diverged"


EmbeddingStateMachine.TestCase.settings = SM_SETTINGS
TestEmbeddingStateMachine = EmbeddingStateMachine.TestCase
