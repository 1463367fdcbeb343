"""Differential state-machine tests: the compiled core against the reference model.

Citations "spec X.Y" are sections of docs/magenta.md.

Both kernels implement ``docs/api.md`` and ``docs/semantics.md`` to the status, the byte, the
handle value and the physical address ("The same sequence of calls on two fresh kernels gives
identical handles and physical addresses"), so one `hypothesis.stateful` program drives a
`vmo.Kernel` and a `vmo._reference.Kernel` side by side and any difference is a failure:

- every call's result (status and value, compared by type and value), every buffer the call
  filled (read buffers, LOOKUP arrays, pre-filled with a sentinel so untouched bytes count too);
- after every step (`@invariant`): ``stats()`` (the five contract keys), ``_allocator_state()``,
  and for every handle value ever returned (closed ones included): ``vmo_get_size``,
  ``vmo_committed_bytes``, ``_vmo_pages``, a full ``vmo_read_bytes`` and a whole-VMO LOOKUP
  when the VMO is small, the whole VMO's ``vmo_lookup_runs``, every change notification
  delivered so far (in order, with the subscription it went to; docs/semantics.md "Change
  notifications"), and both kernels' ``_check()`` invariant walkers;
- at the end, closing every handle must give every frame back on both kernels;
- now and then both kernels are saved and loaded (straight or crossed, through a file or
  the bytes pickling carries: `save_and_load`) and the run goes on with the loaded ones.

Kernels are tiny (4..64 pages) so that ERR_NO_MEMORY, the LIFO reuse of freed frames and the
all-or-nothing COMMIT are exercised constantly. Arguments are aimed at the edges: page
boundaries, the VMO's size, MX_VMO_MAX_SIZE, offsets near 2**64 (so offset+length wraps),
integers outside their C type.

`VmoStateMachine` is the broad one; `RadixStateMachine` aims at the radix page table's node
edges (page indices 511/512, 512**2, 512**3, 2**37...) on huge sparse VMOs, comparing the own
pages (`_vmo_pages`) and small windows instead of full reads.

Budget: the default profile runs the file in well under a minute on two cores. Set
``HYPOTHESIS_PROFILE=long`` for a much longer run (``vmo-long`` is the same profile).
"""

import os
import sys
import tempfile
from array import array

import pytest
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

try:  # the reference model may be mid-edit; the machines then fail at setup, loudly
    from vmo._reference import Kernel as ReferenceKernel
except Exception as exc:  # noqa: BLE001  # pragma: no cover
    ReferenceKernel = None
    _REFERENCE_IMPORT_ERROR = exc

PAGE = 4096
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
MAX = vmo.MX_VMO_MAX_SIZE
SAME_RIGHTS = 0x8000_0000
SENTINEL_BYTE = 0xA5
SENTINEL_Q = 0xDEAD_BEEF_DEAD_BEEF
STATS_KEYS = ("total_frames", "free_frames", "committed_frames", "vmos", "handles")
CACHE_STATS_KEYS = ("cache_lines", "dirty_lines")
S = vmo.Status

# VMOs this small (in bytes) are read and LOOKUPed whole after every step.
SMALL_VMO = 64 * PAGE
# Handle values that were never handed out (or are outside uint32): ERR_BAD_HANDLE or
# ERR_INVALID_ARGS on both kernels.
BOGUS_HANDLES = (0, 2, 7, (1 << 31) - 1, -1, 1 << 32, 1 << 64)

# -- profiles -----------------------------------------------------------------------------------
_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much]}
settings.register_profile("vmo-default", max_examples=300, stateful_step_count=50, **_COMMON)
settings.register_profile("vmo-long", max_examples=4000, stateful_step_count=100, **_COMMON)
settings.register_profile("long", parent=settings.get_profile("vmo-long"))
_PROFILE_NAME = os.environ.get("HYPOTHESIS_PROFILE", "vmo-default")
if _PROFILE_NAME not in ("long", "vmo-long"):
    _PROFILE_NAME = "vmo-default"
SM_SETTINGS = settings.get_profile(_PROFILE_NAME)
_LONG = _PROFILE_NAME != "vmo-default"


# -- comparing the two kernels ------------------------------------------------------------------
def _short(value):
    """A compact repr for failure messages (buffers by type and size)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) > 48:
            return f"{type(value).__name__}(len={len(value)}, {bytes(value[:16])!r}...)"
        return repr(value)
    if isinstance(value, memoryview):
        return (f"memoryview(nbytes={value.nbytes}, readonly={value.readonly}, "
                f"contiguous={value.contiguous})")
    if isinstance(value, array):
        return f"array({value.typecode!r}, len={len(value)})"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 4096:
        return hex(value)
    if isinstance(value, dict) and len(value) > 12:
        head = ", ".join(f"{i}: {a:#x}" for i, a in list(value.items())[:6])
        return f"{{{len(value)} pages: {head} ...}}"
    return repr(value)


def _describe(name, args, kwargs):
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _same(a, b):
    """Equal values of the same type, recursively (so Status vs int, None vs 0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _status(result):
    return result[0] if isinstance(result, tuple) else result


# API calls with a (status, value) result: "On failure the value is 0 (MX_HANDLE_INVALID for
# handles)" (docs/api.md, Syscall layer).
_VALUE_CALLS = {"vmo_create", "vmo_read", "vmo_write", "vmo_get_size", "vmo_clone",
                "handle_duplicate", "handle_replace", "object_get_info", "event_create"}


class Pair:
    """One compiled kernel and one reference kernel of the same memory, called in lockstep."""

    def __init__(self, memory_size, memory_base=0x100000, **options):
        if ReferenceKernel is None:
            raise AssertionError(f"vmo._reference does not import: {_REFERENCE_IMPORT_ERROR!r}")
        # options: the cache model's (coherent, cache_line, cache_lines): docs/cache-model.md
        self.core = vmo.Kernel(memory_size=memory_size, memory_base=memory_base, **options)
        self.ref = ReferenceKernel(memory_size=memory_size, memory_base=memory_base, **options)
        # Change notifications (Vmo.on_change): every callback of each kernel, in order, as
        # (subscription, offset, length), compared after every step.
        self.changes = {"core": [], "reference": []}

    def close(self):
        for k in (self.core, self.ref):
            try:
                k.close()
            except Exception:  # noqa: BLE001,S110  (close the other one anyway)
                pass

    def call(self, name, *args, buffers=None, raises_ok=False, **kwargs):
        """Call ``name`` on both kernels and assert identical outcomes; return the core's result.

        ``buffers`` is a factory returning fresh ``(args, kwargs)`` for one side (so that each
        kernel gets its own buffer objects); the buffers passed are compared afterwards too.
        An exception is a failure unless ``raises_ok`` (arguments no C caller could pass) and
        both raise the same type.
        """
        outcomes = []
        sides = []
        assert self.core._seq == self.ref._seq, ("call counters differ before", name)
        for kernel in (self.core, self.ref):
            if buffers is not None:
                a, kw = buffers()
            else:
                a, kw = args, kwargs
            sides.append((a, kw))
            try:
                outcomes.append(("ok", getattr(kernel, name)(*a, **kw)))
            except Exception as exc:  # noqa: BLE001  (compared below)
                outcomes.append(("raise", exc))
        call = _describe(name, *sides[0])
        (kind_c, core), (kind_r, ref) = outcomes
        if kind_c == "raise" or kind_r == "raise":
            assert kind_c == kind_r and type(core) is type(ref), (
                f"{call} diverged: core {kind_c} {core!r}, reference {kind_r} {ref!r}")
            assert raises_ok, (
                f"{call} raised {core!r} on both kernels (docs/api.md, Syscall layer: the syscalls "
                "never raise for anything a C caller could pass)")
            return None
        assert _same(core, ref), (
            f"{call} diverged:\n  core      {_short(core)}\n  reference {_short(ref)}")
        status = _status(core)
        assert isinstance(status, vmo.Status), f"{call}: status {status!r} is not a vmo.Status"
        if name in _VALUE_CALLS:
            assert isinstance(core, tuple) and len(core) == 2, f"{call} returned {core!r}"
            if status is not S.NO_ERROR:
                assert core[1] == 0 and type(core[1]) is int, (
                    f"{call} failed with {status.name} but returned value {core[1]!r}, not 0 "
                    "(docs/api.md, Syscall layer: 'On failure the value is 0')")
        # The buffers each side was handed must have ended identical.
        (a_c, kw_c), (a_r, kw_r) = sides
        for x, y in zip(list(a_c) + list(kw_c.values()), list(a_r) + list(kw_r.values())):
            bx, by = _contents(x), _contents(y)
            if bx is not None:
                assert bx == by, (
                    f"{call}: the buffers differ after the call (status {status.name}):\n"
                    f"  core      {_diff(bx, by)}\n  reference {_diff(by, bx)}")
        return core

    # -- whole-state comparison ---------------------------------------------------------------
    def watch(self, h, calls_kernel=False):
        """Subscribe a logging callback on both kernels (one that, when `calls_kernel`,
        also asks the kernel for the stats, as an emulator re-reading its mapping would)."""
        results = []
        for name, kernel in (("core", self.core), ("reference", self.ref)):
            log = self.changes[name]

            def callback(offset, length, log=log, kernel=kernel, box=[]):  # noqa: B006
                log.append((box[0] if box else None, offset, length))
                if calls_kernel:
                    log.append(kernel.stats()["free_frames"])
            try:
                result = kernel._watch(h, callback)
            except Exception as exc:  # noqa: BLE001  (compared below)
                result = type(exc)
            if isinstance(result, tuple) and result[0] is S.NO_ERROR:
                callback.__defaults__[2].append(result[1])
            results.append(result)
        assert results[0] == results[1], f"_watch({h}) diverged: {results}"
        return results[0]

    def check_state(self, handles, small=SMALL_VMO):
        changes = self.changes
        assert changes["core"] == changes["reference"], (
            "change notifications diverged:\n  core      %r\n  reference %r"
            % (changes["core"][-6:], changes["reference"][-6:]))
        core_stats, ref_stats = self.core.stats(), self.ref.stats()
        for key in STATS_KEYS:
            assert key in core_stats and key in ref_stats, key
        a = {k: core_stats[k] for k in STATS_KEYS}
        b = {k: ref_stats[k] for k in STATS_KEYS}
        assert a == b, f"stats() diverged:\n  core      {a}\n  reference {b}"
        assert a["free_frames"] + a["committed_frames"] == a["total_frames"], a
        ac, ar = self.core._allocator_state(), self.ref._allocator_state()
        assert _same(ac, ar), (
            f"_allocator_state() diverged:\n  core      {ac!r}\n  reference {ar!r}")
        for h in handles:
            status, size = self.call("vmo_get_size", h)
            self.call("vmo_committed_bytes", h)
            self.call("_vmo_pages", h)
            if status is S.NO_ERROR and size <= small:
                self.call("vmo_read_bytes", h, 0, size)
                self.lookup(h, 0, size, entries=max(1, -(-size // PAGE)))
            if status is S.NO_ERROR:
                self.call("vmo_lookup_runs", h, 0, max(size, 1))
        # The cache model: the same lines, dirty lines and hazard events (each with its
        # address, VMO, offset and call number) on both sides.
        a = {k: core_stats[k] for k in CACHE_STATS_KEYS}
        b = {k: ref_stats[k] for k in CACHE_STATS_KEYS}
        assert a == b, f"stats() diverged:\n  core      {a}\n  reference {b}"
        ec, er = self.core.coherency_events(), self.ref.coherency_events()
        assert ec == er, f"coherency_events() diverged:\n  core      {ec}\n  reference {er}"
        for name, kernel in (("core", self.core), ("reference", self.ref)):
            try:
                kernel._check()
            except AssertionError as exc:
                raise AssertionError(f"{name}._check() failed: {exc}") from exc

    def lookup(self, h, offset, size, entries, misalign=False, buffer_size=None):
        """LOOKUP into a fresh sentinel-filled array('Q') (or a misaligned byte view of one)."""
        def make():
            buf = array("Q", [SENTINEL_Q] * entries)
            if misalign:
                raw = bytearray(b"\xa5" * (8 * entries + 1))
                buf = memoryview(raw)[1:]
            kw = {} if buffer_size is None else {"buffer_size": buffer_size}
            return (h, vmo.MX_VMO_OP_LOOKUP, offset, size, buf), kw
        return self.call("vmo_op_range", buffers=make)

    def close_all(self, handles, check=None):
        """Close every handle value ever seen on both kernels; everything must be freed.
        Then `check_state` over ``check`` (default: all of ``handles``)."""
        for h in handles:
            self.call("handle_close", h)
        for side, kernel in (("core", self.core), ("reference", self.ref)):
            s = kernel.stats()
            left = {k: s[k] for k in STATS_KEYS}
            assert s["free_frames"] == s["total_frames"] and s["vmos"] == 0 \
                and s["handles"] == 0, f"closing every handle left {side} with {left!r}"
        self.check_state(handles if check is None else check)


def _contents(x):
    """The bytes of a writable buffer argument (the whole underlying object of a view)."""
    if isinstance(x, memoryview):
        x = x.obj
    if isinstance(x, (bytearray, array)):
        return bytes(x)
    return None


def _diff(x, y):
    """Where two byte strings first differ, for messages."""
    if len(x) != len(y):
        return f"len {len(x)}: {x[:32]!r}..."
    for i in range(len(x)):
        if x[i] != y[i]:
            return f"from byte {i}: {x[i:i + 24]!r}"
    return "identical"


# -- strategies ---------------------------------------------------------------------------------
def page_edges(max_pages, deltas=(-1, 0, 0, 1)):
    """n*4096 + d for n in [0, max_pages], d in deltas, never negative."""
    return st.builds(lambda n, d: max(0, n * PAGE + d), st.integers(0, max_pages),
                     st.sampled_from(deltas))


SMALL_EDGES = st.sampled_from([0, 1, 2, 7, 8, 4095, 4096, 4097, 8191, 8192, 8193, 12288])
# VMO sizes for create: page edges up to ~80 pages, sometimes the limits.
CREATE_SIZES = st.one_of(
    SMALL_EDGES, page_edges(80), page_edges(8), st.integers(0, 80 * PAGE),
    st.sampled_from([MAX, MAX + 1, MAX - 1, U64, 1 << 63, -1, 1 << 64]))
# Offsets/sizes as specs, resolved against the VMO's current size in the rule:
#   int                -> that value
#   ("size", d)        -> size + d (not below 0)
#   ("top", k)         -> 2**64 - k (offset + length wraps)
#   ("in", k, d)       -> the page edge k/8 of the way into the VMO, + d, inside [0, size]
#   ("rest", d)        -> (lengths) size - offset + d: to the end of the VMO, +- d
#   ("wrap", d)        -> (lengths) 2**64 - offset + d: offset + length wraps by d
#   ("shrink_in_page", d) -> (set_size) d bytes into the page holding the current end
# so that the printed minimal example shows the intent, not just a number.
SIZE_DELTAS = st.sampled_from([-PAGE - 1, -PAGE, -PAGE + 1, -2, -1, 0, 1, 2, PAGE - 1, PAGE,
                               PAGE + 1, 2 * PAGE])
IN_DELTAS = st.sampled_from([0, 0, 1, -1, 7, PAGE - 1, PAGE // 2])
IN_VMO = st.tuples(st.just("in"), st.integers(0, 8), IN_DELTAS)
TOP = st.sampled_from([1, 2, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE, MAX & 0xFFF_FFFF])
# Page-table leaf and interior-node edges (512 and 512**2 pages), for the VMOs big enough:
# snapshots save and restore tables per leaf.
LEAF_EDGES = st.sampled_from([511 * PAGE, 512 * PAGE, 513 * PAGE, 512 * 512 * PAGE - PAGE,
                              512 * 512 * PAGE, 512 ** 3 * PAGE + 5 * PAGE])
OFFSETS = st.one_of(
    SMALL_EDGES, page_edges(70), LEAF_EDGES, st.tuples(st.just("size"), SIZE_DELTAS),
    st.tuples(st.just("size"), SIZE_DELTAS), st.tuples(st.just("top"), TOP),
    st.sampled_from([MAX, U64, 1 << 63, -1, 1 << 64]))
# Range lengths (op_range sizes, clone sizes): like OFFSETS plus "rest of the VMO" forms.
LENGTHS = st.one_of(
    SMALL_EDGES, page_edges(70), st.tuples(st.just("size"), SIZE_DELTAS),
    st.tuples(st.just("rest"), SIZE_DELTAS), st.tuples(st.just("rest"), SIZE_DELTAS),
    st.tuples(st.just("wrap"), st.sampled_from([-1, 0, 1, PAGE])),
    st.sampled_from([U64, MAX, MAX + 1, 1 << 63, -1, 1 << 64]))
SET_SIZES = st.one_of(
    st.tuples(st.just("size"), SIZE_DELTAS),
    st.tuples(st.just("shrink_in_page"), st.integers(1, PAGE - 1)),
    SMALL_EDGES, page_edges(80),
    st.sampled_from([0, MAX, MAX + 1, MAX - 1, U64, -1, 1 << 64]))
OPS = st.one_of(st.integers(0, 10), st.sampled_from([5, 5, 1, 1, 2, 1 << 32, U32, -1]))
RIGHTS = st.one_of(
    st.tuples(st.just("subset"), st.integers(0, 0xFFF)),
    st.tuples(st.just("subset"), st.integers(0, 0xFFF)),
    st.just(SAME_RIGHTS),
    st.tuples(st.just("superset"), st.integers(1, 0xFFF)),
    st.sampled_from([0, 0x3F, 0x3F | 0x40, 0x0F, 0xFFF, SAME_RIGHTS | 1, U32, 1 << 32, -1]))
TOPICS = st.one_of(st.integers(0, 15), st.sampled_from([1, 2, 2, 100, U32, 1 << 32, -1]))


def _tile(pattern, length):
    return (pattern * (length // len(pattern) + 1))[:length]


DATA = st.one_of(
    st.binary(max_size=24),
    st.builds(_tile, st.binary(min_size=1, max_size=8),
              st.one_of(st.integers(0, 3 * PAGE + 2), SMALL_EDGES, page_edges(3))))
# How a write passes its data: the object kind and the length argument.
WRITE_KINDS = st.sampled_from(["bytes", "bytes", "bytearray", "memoryview", "array_B",
                               "noncontig", "none"])
LENGTH_MODES = st.one_of(
    st.sampled_from(["default", "default", "exact", "less", "more", "zero"]),
    st.tuples(st.just("abs"), st.sampled_from([U64, 1 << 63, -1, 1 << 64, 1])))
READ_KINDS = st.sampled_from(["bytearray", "bytearray", "bytearray", "bytes", "offset_view",
                              "array_Q", "noncontig", "none"])
READ_SIZES = st.one_of(SMALL_EDGES, page_edges(3), st.integers(0, 3 * PAGE + 1))
LOOKUP_BUFS = st.sampled_from(["exact", "exact", "exact", "smaller", "larger", "none",
                               "misaligned", "bytes", "bufsize_exact", "bufsize_small",
                               "bufsize_over", "bufsize_invalid", "junk"])
CLONE_OFFSETS = st.one_of(
    st.just(0), st.builds(lambda n: n * PAGE, st.integers(0, 80)),
    st.sampled_from([1, PAGE - 1, PAGE + 1, MAX, U64 - PAGE + 1, 1 << 63, -1, 1 << 64]),
    st.tuples(st.just("size"), SIZE_DELTAS))
CLONE_SIZES = st.one_of(
    SMALL_EDGES, page_edges(80), st.tuples(st.just("size"), SIZE_DELTAS),
    st.sampled_from([MAX, MAX + 1, U64, -1]))
CLONE_OPTIONS = st.sampled_from([1, 1, 1, 1, 3, 0, 2, 0xFFFF_FFFF, 1 << 32])


def resolve(spec, size, offset=0):
    """The integer an offset/length spec stands for, given the VMO's size (and offset)."""
    if isinstance(spec, int):
        return spec
    if spec[0] == "in":
        _, k, d = spec
        edge = (size * k // 8) // PAGE * PAGE
        return min(max(0, edge + d), size)
    kind, d = spec
    if kind == "size":
        return max(0, size + d)
    if kind == "top":
        return (1 << 64) - d
    if kind == "rest":  # up to the end of the VMO, +- d
        return max(0, size - offset + d) if 0 <= offset else 0
    if kind == "wrap":  # offset + length == 2**64 + d
        return max(0, (1 << 64) - offset + d) if 0 <= offset else 0
    if kind == "shrink_in_page":  # a size inside the page holding the current end
        return max(0, ((size - 1) // PAGE) * PAGE + d) if size else d
    raise AssertionError(spec)


def _write_args(kind, data, mode):
    """Fresh (data object, length kwarg) for one vmo_write call."""
    if kind == "bytes":
        obj = bytes(data)
    elif kind == "bytearray":
        obj = bytearray(data)
    elif kind == "memoryview":
        obj = memoryview(bytearray(b"\x00" + data))[1:]
    elif kind == "array_B":
        obj = array("B", data)
    elif kind == "noncontig":  # every other byte of twice the data
        raw = bytearray(2 * len(data))
        raw[::2] = data
        obj = memoryview(raw)[::2]
    else:
        obj = None
    n = len(data) if obj is not None else 0
    return obj, _length(mode, n)


def _length(mode, n):
    """The ``length`` argument (None for the default) for a buffer of ``n`` bytes."""
    if mode == "default":
        return None
    if mode == "exact":
        return n
    if mode == "less":
        return max(0, n - 1 - n // 3)
    if mode == "more":
        return n + 1
    if mode == "zero":
        return 0
    return mode[1]


def _read_buffer(kind, n):
    """A fresh buffer of ``n`` bytes for vmo_read, pre-filled with the sentinel."""
    fill = bytes([SENTINEL_BYTE]) * n
    if kind == "bytearray":
        return bytearray(fill)
    if kind == "bytes":
        return fill  # read-only: ERR_INVALID_ARGS when length > 0
    if kind == "offset_view":
        return memoryview(bytearray(b"\x5a" + fill))[1:]
    if kind == "array_Q":
        return array("Q", [SENTINEL_Q] * (n // 8))
    if kind == "noncontig":
        return memoryview(bytearray(fill + fill))[::2]
    return None


def _buffer_nbytes(buf):
    if buf is None:
        return 0
    return memoryview(buf).nbytes


def _lookup_pages(offset, size):
    """Entries LOOKUP wants, computed as Magenta did (wrapping 64-bit arithmetic)."""
    first = (offset & U64) & ~(PAGE - 1)
    end = (((offset + size) & U64) + PAGE - 1) & U64 & ~(PAGE - 1)
    return ((end - first) & U64) // PAGE


def save_and_load(pair, how):
    """Save both kernels of `pair` and continue on the loaded ones (docs/state-format.md):
    straight (each kernel loads its own file) or crossed (each loads the other's), through a
    file or through the bytes pickling carries. The reference reads both files the same and
    writes the same bytes for the state either way; a core that loads its own file keeps
    every stat."""
    from vmo._reference import _statefile as ref_statefile
    from vmo._statefile import dump_kernel, load_kernel_bytes
    core, ref = pair.core, pair.ref
    if not core.coherent:
        # A kernel with a CPU cache model is not saved (docs/state-format.md "Saving").
        for kernel in (core, ref):
            with pytest.raises(ValueError, match="coherent"):
                kernel.save(os.devnull + ".never")
        return False
    if how.endswith("file"):
        with tempfile.TemporaryDirectory() as directory:
            core_path = os.path.join(directory, "core.state")
            ref_path = os.path.join(directory, "ref.state")
            core.save(core_path)
            ref.save(ref_path)
            core_bytes = open(core_path, "rb").read()
            ref_bytes = open(ref_path, "rb").read()
            if how == "file":
                new_core, new_ref = type(core).load(core_path), type(ref).load(ref_path)
            else:
                new_core, new_ref = type(core).load(ref_path), type(ref).load(core_path)
    else:
        core_bytes, ref_bytes = dump_kernel(core), ref_statefile.dumps(ref)
        if how == "bytes":
            new_core = load_kernel_bytes(type(core), core_bytes)
            new_ref = ref_statefile.loads(type(ref), ref_bytes)
        else:
            new_core = load_kernel_bytes(type(core), ref_bytes)
            new_ref = ref_statefile.loads(type(ref), core_bytes)
    assert ref_statefile.dumps(ref_statefile.loads(type(ref), core_bytes)) == ref_bytes, (
        "the core's file, read by the reference, does not give the reference's file")
    if how in ("file", "bytes"):
        old, new = core.stats(), new_core.stats()
        assert old == new, f"the core's stats changed through {how}: {old} -> {new}"
        assert dump_kernel(new_core) == core_bytes
    new_core._check()
    new_ref._check()
    pair.close()
    pair.core, pair.ref = new_core, new_ref
    return True


SAVE_HOW = st.sampled_from(["file", "bytes", "cross-file", "cross-bytes"])


# -- the broad state machine --------------------------------------------------------------------
class VmoStateMachine(RuleBasedStateMachine):
    """Every syscall with edge arguments, on two tiny kernels compared after every step."""

    handles = Bundle("handles")  # values returned by a successful call (mostly live)
    dead = Bundle("dead")  # values closed by handle_close

    def __init__(self):
        super().__init__()
        self.pair = None
        self.seen = []  # every handle value ever returned, closed ones included
        self.snapshots = []  # [(core Snapshot, reference Snapshot)] alive

    # -- setup / teardown ---------------------------------------------------------------------
    @initialize(target=handles, pages=st.one_of(st.integers(4, 12), st.integers(4, 64)),
                base_pages=st.sampled_from([0x100, 0x100, 1, 0x12345]))
    def make_kernels(self, pages, base_pages):
        self.pair = Pair(pages * PAGE, memory_base=base_pages * PAGE)
        status, h = self.pair.call("vmo_create", 3 * PAGE + 5)
        assert status is S.NO_ERROR
        return self._new(h)

    def teardown(self):
        if self.pair is None:
            return
        try:
            if sys.exc_info()[0] is None:  # the run passed so far: everything must come back
                self.pair.close_all(self.seen)
        finally:
            self.snapshots = []
            self.pair.close()

    def _new(self, h):
        if h not in self.seen:
            self.seen.append(h)
        return h

    def _new_result(self, result):
        status, h = result
        if status is S.NO_ERROR:
            return self._new(h)
        return multiple()

    def _size(self, h):
        """The VMO's current size per the core (0 for non-VMO or invalid handles)."""
        status, size = self.pair.call("vmo_get_size", h)
        return size if status is S.NO_ERROR else 0

    def _rights(self, h):
        """The handle's rights per the core (0 for invalid handles)."""
        status, info = self.pair.call("object_get_info", h, vmo.MX_INFO_HANDLE_BASIC)
        return info.rights if status is S.NO_ERROR and info else 0

    def _rights_arg(self, h, spec):
        if isinstance(spec, int):
            return spec
        kind, mask = spec
        rights = self._rights(h)
        if kind == "subset":
            return rights & mask
        return rights | mask  # superset: ERR_INVALID_ARGS unless mask adds nothing

    any_handle = st.one_of(handles, handles, handles, handles, handles, dead,
                           st.sampled_from(BOGUS_HANDLES))

    # -- creation -----------------------------------------------------------------------------
    @rule(target=handles, size=CREATE_SIZES,
          options=st.sampled_from([0, 0, 0, 0, 0, 0, 0, 1, 2, 1 << 32, -1]))
    def vmo_create(self, size, options):
        return self._new_result(self.pair.call("vmo_create", size, options))

    @rule(target=handles, options=st.sampled_from([0, 0, 0, 1, 1 << 32]))
    def event_create(self, options):
        return self._new_result(self.pair.call("event_create", options))

    @rule(target=handles, h=any_handle, options=CLONE_OPTIONS, offset=CLONE_OFFSETS,
          size=CLONE_SIZES)
    def vmo_clone(self, h, options, offset, size):
        parent_size = self._size(h)
        offset = resolve(offset, parent_size)
        size = resolve(size, parent_size, offset)
        return self._new_result(self.pair.call("vmo_clone", h, options, offset, size))

    @rule(target=handles, h=handles, depth=st.integers(2, 4),
          shifts=st.lists(st.integers(0, 3), min_size=4, max_size=4),
          extra=st.lists(st.sampled_from([-PAGE, 0, 0, 1, PAGE, 2 * PAGE + 7]), min_size=4,
                         max_size=4))
    def clone_chain(self, h, depth, shifts, extra):
        """Clones of clones: each level clones the previous one at a small page offset."""
        made = []
        for level in range(depth):
            size = max(0, self._size(h) - shifts[level] * PAGE + extra[level])
            status, child = self.pair.call("vmo_clone", h, 1, shifts[level] * PAGE, size)
            if status is not S.NO_ERROR:
                break
            made.append(self._new(child))
            h = child
        return multiple(*made)

    @rule(target=handles, leave=st.integers(0, 3), tail=st.sampled_from([0, 0, 1, PAGE - 1]))
    def fill_memory(self, leave, tail):
        """Commit all but ``leave`` free frames in a new VMO, so that the next writes, COMMITs
        and copy-on-write faults run out of memory part way (all-or-nothing COMMIT; chunks of
        a write already written stay)."""
        free = self.pair.core.stats()["free_frames"]
        pages = max(0, free - leave)
        status, h = self.pair.call("vmo_create", pages * PAGE + tail)
        if status is not S.NO_ERROR:
            return multiple()
        self.pair.call("vmo_op_range", h, vmo.MX_VMO_OP_COMMIT, 0, pages * PAGE + tail)
        return self._new(h)

    @rule(target=handles, h=handles, depth=st.integers(1, 3), page=st.integers(0, 5),
          in_page=st.sampled_from([0, 1, PAGE - 1]), data=st.binary(min_size=1, max_size=9),
          how=st.sampled_from(["write", "write", "commit"]))
    def write_through_chain(self, h, depth, page, in_page, data, how):
        """Write (or COMMIT) at the bottom of a fresh clone chain over ``h``: a page held only
        by an ancestor is copied into every intermediate clone (docs/semantics.md,
        ancestor_write), the copy closest to the holder first."""
        made = []
        for _ in range(depth):
            status, child = self.pair.call("vmo_clone", h, 1, 0, self._size(h))
            if status is not S.NO_ERROR:
                break
            made.append(self._new(child))
            h = child
        offset = page * PAGE + in_page
        if how == "write":
            self.pair.call("vmo_write", h, data, offset)
        else:
            self.pair.call("vmo_op_range", h, vmo.MX_VMO_OP_COMMIT, offset, len(data))
        return multiple(*made)

    @rule(h=handles, cut=st.integers(1, PAGE - 1), back=st.sampled_from(["old", "page", "more"]),
          data=st.binary(min_size=1, max_size=8))
    def shrink_and_regrow(self, h, cut, back, data):
        """Write across the end, shrink to inside the last page, grow again: the partial page
        keeps its stale bytes (spec 3.5 step 3; docs/semantics.md "Shrink")."""
        old = self._size(h)
        last = max(0, (old - 1) // PAGE * PAGE)
        self.pair.call("vmo_write", h, _tile(data, PAGE), last)
        self.pair.call("vmo_set_size", h, last + cut)
        grow = {"old": old, "page": last + PAGE, "more": old + 2 * PAGE}[back]
        self.pair.call("vmo_set_size", h, grow)
        self.pair.call("vmo_read_bytes", h, last, 2 * PAGE)

    @rule(target=handles, h=any_handle, rights=RIGHTS)
    def handle_duplicate(self, h, rights):
        return self._new_result(
            self.pair.call("handle_duplicate", h, self._rights_arg(h, rights)))

    @rule(target=handles, h=consumes(handles), rights=RIGHTS)
    def handle_replace(self, h, rights):
        status, new = self.pair.call("handle_replace", h, self._rights_arg(h, rights))
        if status is S.NO_ERROR:
            return self._new(new)
        return h  # "When it fails, the old handle is untouched" (docs/semantics.md)

    @rule(target=handles, h=any_handle, rights=RIGHTS)
    def handle_replace_any(self, h, rights):
        return self._new_result(self.pair.call("handle_replace", h, self._rights_arg(h, rights)))

    @rule(target=dead, h=consumes(handles))
    def handle_close(self, h):
        self.pair.call("handle_close", h)
        return h

    @rule(h=any_handle)
    def handle_close_any(self, h):
        """Closing anything: live, already closed, 0 and other bogus values."""
        self.pair.call("handle_close", h)

    @rule(h=any_handle, topic=TOPICS)
    def object_get_info(self, h, topic):
        self.pair.call("object_get_info", h, topic)

    # -- data ---------------------------------------------------------------------------------
    @rule(h=any_handle, data=DATA, offset=OFFSETS, kind=WRITE_KINDS, mode=LENGTH_MODES)
    def vmo_write(self, h, data, offset, kind, mode):
        offset = resolve(offset, self._size(h))

        def make():
            obj, length = _write_args(kind, data, mode)
            kw = {} if length is None else {"length": length}
            return (h, obj, offset), kw
        self.pair.call("vmo_write", buffers=make)

    @rule(h=handles, data=DATA, offset=IN_VMO,
          kind=st.sampled_from(["bytes", "bytearray", "memoryview"]),
          mode=st.sampled_from(["default", "default", "exact", "less"]))
    def vmo_write_inside(self, h, data, offset, kind, mode):
        """A write that usually succeeds (a live handle, an offset inside the VMO)."""
        self.vmo_write(h, data, offset, kind, mode)

    @rule(h=handles, n=READ_SIZES, offset=IN_VMO,
          kind=st.sampled_from(["bytearray", "bytearray", "offset_view", "array_Q"]),
          mode=st.sampled_from(["default", "default", "exact", "less"]))
    def vmo_read_inside(self, h, n, offset, kind, mode):
        """A read that usually succeeds; the sentinel past ``actual`` must survive."""
        self.vmo_read(h, n, offset, kind, mode)

    @rule(h=any_handle, n=READ_SIZES, offset=OFFSETS, kind=READ_KINDS, mode=LENGTH_MODES)
    def vmo_read(self, h, n, offset, kind, mode):
        offset = resolve(offset, self._size(h))

        def make():
            buf = _read_buffer(kind, n)
            length = _length(mode, _buffer_nbytes(buf))
            kw = {} if length is None else {"length": length}
            return (h, buf, offset), kw
        self.pair.call("vmo_read", buffers=make)

    @rule(h=any_handle, offset=st.one_of(IN_VMO, OFFSETS), length=st.one_of(READ_SIZES, LENGTHS))
    def vmo_read_bytes(self, h, offset, length):
        size = self._size(h)
        offset = resolve(offset, size)
        length = resolve(length, size, offset)
        if 0 <= offset <= size and 0 <= length <= U64 and offset + length <= U64 \
                and min(length, size - offset) > 4 * SMALL_VMO:
            length = 4 * SMALL_VMO  # keep the bytes object small on huge VMOs
        self.pair.call("vmo_read_bytes", h, offset, length)

    @rule(h=any_handle)
    def vmo_get_size(self, h):
        self.pair.call("vmo_get_size", h)

    @rule(h=any_handle, size=SET_SIZES)
    def vmo_set_size(self, h, size):
        self.pair.call("vmo_set_size", h, resolve(size, self._size(h)))

    # -- op_range -----------------------------------------------------------------------------
    @rule(h=any_handle, op=OPS, offset=st.one_of(IN_VMO, OFFSETS), size=LENGTHS,
          buf=LOOKUP_BUFS)
    def vmo_op_range(self, h, op, offset, size, buf):
        vsize = self._size(h)
        offset = resolve(offset, vsize)
        size = resolve(size, vsize, offset)
        if 0 <= offset <= U64 and 0 <= size <= U64:
            needed = _lookup_pages(offset, size)
        else:
            needed = 1
        entries = needed if needed <= 4096 else 3  # too many to allocate: BUFFER_TOO_SMALL
        if buf == "junk":
            if op == vmo.MX_VMO_OP_LOOKUP:
                buf = "none"
            else:  # not even inspected for any op but LOOKUP (docs/semantics.md)
                self.pair.call("vmo_op_range", h, op, offset, size, "not a buffer", -1)
                return
        if buf == "none":
            self.pair.call("vmo_op_range", h, op, offset, size, None)
            return

        def make():
            kw = {}
            if buf in ("exact", "bufsize_exact", "bufsize_small", "bufsize_over",
                       "bufsize_invalid"):
                b = array("Q", [SENTINEL_Q] * entries)
            elif buf == "smaller":
                b = array("Q", [SENTINEL_Q] * max(0, entries - 1))
            elif buf == "larger":
                b = array("Q", [SENTINEL_Q] * (entries + 2))
            elif buf == "misaligned":
                b = memoryview(bytearray(b"\xa5" * (8 * entries + 1)))[1:]
            else:  # "bytes": read-only
                b = b"\xa5" * (8 * entries)
            if buf == "bufsize_exact":
                kw["buffer_size"] = 8 * entries
            elif buf == "bufsize_small":
                kw["buffer_size"] = max(0, 8 * entries - 1)
            elif buf == "bufsize_over":
                kw["buffer_size"] = 8 * entries + 1
            elif buf == "bufsize_invalid":
                kw["buffer_size"] = -1 if entries % 2 else 1 << 64
            return (h, op, offset, size, b), kw
        self.pair.call("vmo_op_range", buffers=make)

    @rule(h=handles, offset=st.one_of(IN_VMO, st.tuples(st.just("size"), SIZE_DELTAS),
                                      st.sampled_from([0, 1, PAGE - 1, PAGE + 1])),
          size=st.one_of(st.sampled_from([0, 0, 1, PAGE, PAGE + 1, U64]),
                         st.tuples(st.just("rest"), st.sampled_from([-1, 0, 0, 1, PAGE])),
                         st.tuples(st.just("wrap"), st.sampled_from([-1, 0, 1]))),
          buf=LOOKUP_BUFS)
    def lookup_edges(self, h, offset, size, buf):
        """LOOKUP's own check order (spec 3.6.4): null buffer, buffer size (wrapping), size
        0, range, then uncommitted pages -> ERR_NO_MEMORY with earlier entries written."""
        self.vmo_op_range(h, vmo.MX_VMO_OP_LOOKUP, offset, size, buf)

    @rule(target=handles, h=handles, keep=st.integers(1, PAGE - 1),
          data=st.binary(min_size=1, max_size=8), shift=st.sampled_from([0, 0, 1]),
          starts=st.lists(st.sampled_from([-PAGE, -2, -1, 0, 1, 5, PAGE]), min_size=1,
                          max_size=3))
    def clone_sees_stale_parent_tail(self, h, keep, data, shift, starts):
        """A parent shrunk to inside a page keeps the page's stale bytes; a clone reading a
        chunk that starts below the parent's end sees the whole page, one starting at or past
        it sees zeros (docs/semantics.md, page faults: the bound is checked at each chunk's
        start)."""
        old = self._size(h)
        if old == 0:
            return multiple()
        last = (old - 1) // PAGE * PAGE
        self.pair.call("vmo_write", h, _tile(data, PAGE), last)
        self.pair.call("vmo_set_size", h, last + keep)
        offset = min(shift * PAGE, last)
        status, c = self.pair.call("vmo_clone", h, 1, offset, old + 2 * PAGE)
        if status is not S.NO_ERROR:
            return multiple()
        end_in_clone = last + keep - offset
        for d in starts:
            start = max(0, end_in_clone + d)
            self.pair.call("vmo_read_bytes", c, start, 2 * PAGE)
        self.pair.lookup(c, last - offset, PAGE, 1)
        return self._new(c)

    @rule(h=handles, offset=IN_VMO, count=st.integers(1, 8),
          op=st.sampled_from([vmo.MX_VMO_OP_COMMIT, vmo.MX_VMO_OP_COMMIT,
                              vmo.MX_VMO_OP_DECOMMIT]))
    def commit_or_decommit_pages(self, h, offset, count, op):
        """A plain COMMIT/DECOMMIT of a few pages inside the VMO, so that memory fills up and
        frees often."""
        self.pair.call("vmo_op_range", h, op, resolve(offset, self._size(h)), count * PAGE)

    @rule(h=handles, data=st.data())
    def lookup_window(self, h, data):
        """LOOKUP of a small window (so that NO_ERROR with real addresses is frequent)."""
        size = self._size(h)
        pages = max(1, -(-size // PAGE))
        first = data.draw(st.integers(0, pages - 1), label="first_page")
        n = data.draw(st.integers(1, min(4, pages - first)), label="pages")
        self.pair.lookup(h, first * PAGE, min(n * PAGE, max(size - first * PAGE, 1)), n,
                         misalign=data.draw(st.booleans(), label="misalign"))

    @rule(dice=st.integers(0, 7), how=SAVE_HOW)
    def save_and_load(self, dice, how):
        """Now and then, save both kernels and continue on the loaded ones (the snapshots
        taken belong to the kernels left behind)."""
        if dice == 0 and save_and_load(self.pair, how):
            self.snapshots = []

    # -- machine services: physical runs, change notifications ------------------------------
    @rule(h=any_handle, offset=st.one_of(IN_VMO, OFFSETS), size=LENGTHS)
    def vmo_lookup_runs(self, h, offset, size):
        vsize = self._size(h)
        offset = resolve(offset, vsize)
        self.pair.call("vmo_lookup_runs", h, offset, resolve(size, vsize, offset))

    @rule(h=any_handle, calls_kernel=st.booleans())
    def on_change(self, h, calls_kernel):
        self.pair.watch(h, calls_kernel)

    @rule(n=st.integers(0, 12))
    def cancel_change(self, n):
        got = (self.pair.core._unwatch(n), self.pair.ref._unwatch(n))
        assert got[0] == got[1], f"_unwatch({n}) diverged: {got}"

    @rule(dice=st.integers(0, 15))
    def close_everything(self, dice):
        """Now and then (dice == 0), close every handle: all frames must come back."""
        if dice == 0:
            self.pair.close_all(self.seen)

    # -- snapshots and the dirty log (docs/semantics.md "Snapshots", "The dirty log") ----------
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
            self.pair.check_state(self.seen + list(BOGUS_HANDLES[:3]))


VmoStateMachine.TestCase.settings = SM_SETTINGS
TestVmoStateMachine = VmoStateMachine.TestCase


# -- radix page-table edges ---------------------------------------------------------------------
# Page indices where a 512-ary radix tree changes node: leaf ends (511/512), level-2 ends
# (512**2), level-3 ends (512**3), and huge ones up to the last page of MX_VMO_MAX_SIZE.
_RADIX_PAGES = sorted({
    p + d
    for p in (0, 16, 512, 1024, 512 * 512, 2 * 512 * 512, 512 ** 3, 512 ** 4, 1 << 28,
              1 << 37, 1 << 38, (1 << 40) // PAGE, (1 << 49) // PAGE, (1 << 50) // PAGE)
    for d in (-1, 0, 1)
    if p + d >= 0} | {(MAX // PAGE) - 1, (MAX // PAGE) - 2, (1 << 52) - 1})
RADIX_PAGE = st.sampled_from(_RADIX_PAGES)
RADIX_SIZES = st.sampled_from([1 << 50, 1 << 50, (1 << 50) + 1, 1 << 51, MAX, MAX, 1 << 63,
                               (1 << 40) + PAGE, 512 * 512 * PAGE + 1])
IN_PAGE = st.sampled_from([0, 0, 1, PAGE - 1, PAGE // 2])


class RadixStateMachine(RuleBasedStateMachine):
    """Huge sparse VMOs on a kernel of a few frames: pages at radix-node edges."""

    vmos = Bundle("vmos")

    def __init__(self):
        super().__init__()
        self.pair = None
        self.seen = []
        self.touched = {}  # handle -> set of byte offsets written/committed
        self.snapshots = []

    @initialize(target=vmos, pages=st.integers(4, 12), size=RADIX_SIZES)
    def make_kernels(self, pages, size):
        self.pair = Pair(pages * PAGE)
        status, h = self.pair.call("vmo_create", size)
        assert status is S.NO_ERROR
        self.seen.append(h)
        return h

    def teardown(self):
        if self.pair is None:
            return
        try:
            if sys.exc_info()[0] is None:
                self.pair.close_all(self.seen)
        finally:
            self.pair.close()

    def _size(self, h):
        status, size = self.pair.call("vmo_get_size", h)
        return size if status is S.NO_ERROR else 0

    def _add(self, result):
        status, h = result
        if status is S.NO_ERROR:
            self.seen.append(h)
            return h
        return multiple()

    def _touch(self, h, offset):
        self.touched.setdefault(h, set()).add(offset - offset % PAGE)

    @rule(target=vmos, size=RADIX_SIZES)
    def create(self, size):
        return self._add(self.pair.call("vmo_create", size))

    @rule(target=vmos, h=vmos, page=st.sampled_from([0, 0, 511, 512, 512 * 512, 1 << 37]),
          size=st.one_of(RADIX_SIZES, st.tuples(st.just("rest"), st.just(0))))
    def clone(self, h, page, size):
        offset = page * PAGE
        size = resolve(size, self._size(h), offset)
        return self._add(self.pair.call("vmo_clone", h, 1, offset, size))

    @rule(h=vmos, page=RADIX_PAGE, in_page=IN_PAGE, data=st.binary(min_size=1, max_size=16),
          spill=st.sampled_from([0, 0, PAGE]))
    def write(self, h, page, in_page, data, spill):
        """A write at a radix edge, sometimes spilling into the next page."""
        offset = page * PAGE + in_page
        payload = _tile(data, len(data) + spill)
        self.pair.call("vmo_write", h, payload, offset)
        self._touch(h, offset)
        self._touch(h, offset + len(payload) - 1)

    @rule(h=vmos, page=RADIX_PAGE, count=st.sampled_from([1, 1, 2, 3]), in_page=IN_PAGE)
    def commit(self, h, page, count, in_page):
        offset = page * PAGE + in_page
        self.pair.call("vmo_op_range", h, vmo.MX_VMO_OP_COMMIT, offset, count * PAGE)
        for i in range(count + 1):
            self._touch(h, offset + i * PAGE)

    @rule(h=vmos, page=RADIX_PAGE, count=st.sampled_from([1, 2, 512, 512 * 512]),
          in_page=IN_PAGE)
    def decommit(self, h, page, count, in_page):
        self.pair.call("vmo_op_range", h, vmo.MX_VMO_OP_DECOMMIT, page * PAGE + in_page,
                       count * PAGE)

    @rule(h=vmos, how=st.sampled_from(["all", "u64", "from1", "from_mid"]))
    def decommit_everything(self, h, how):
        """A whole-range DECOMMIT of a huge VMO must be cheap and free every page."""
        size = self._size(h)
        offset, length = {"all": (0, size), "u64": (0, U64), "from1": (1, U64 - 1),
                          "from_mid": (size // 2, U64 - size // 2)}[how]
        self.pair.call("vmo_op_range", h, vmo.MX_VMO_OP_DECOMMIT, offset, length)

    @rule(h=vmos, how=st.sampled_from(["all", "u64", "tail"]))
    def commit_everything(self, h, how):
        """COMMIT of the whole huge VMO: ERR_NO_MEMORY at once, nothing kept."""
        size = self._size(h)
        offset, length = {"all": (0, size), "u64": (0, U64),
                          "tail": (max(0, size - 3 * PAGE), 3 * PAGE)}[how]
        self.pair.call("vmo_op_range", h, vmo.MX_VMO_OP_COMMIT, offset, length)

    @rule(h=vmos, size=st.one_of(
        st.sampled_from([0, 1, PAGE, 511 * PAGE + 1, 512 * PAGE, 512 * PAGE + 1,
                         512 * 512 * PAGE - 1, 512 * 512 * PAGE, (1 << 40) - PAGE,
                         (1 << 40) + 1, 1 << 49, (1 << 49) + PAGE + 3, 1 << 50, MAX]),
        st.builds(lambda p, d: max(0, p * PAGE + d), RADIX_PAGE, IN_PAGE)))
    def set_size(self, h, size):
        self.pair.call("vmo_set_size", h, size)

    @rule(h=vmos, page=RADIX_PAGE, count=st.sampled_from([1, 2, 3]), in_page=IN_PAGE)
    def lookup(self, h, page, count, in_page):
        self.pair.lookup(h, page * PAGE + in_page, count * PAGE - in_page, count)

    @rule(h=vmos, page=RADIX_PAGE, in_page=IN_PAGE)
    def read(self, h, page, in_page):
        self.pair.call("vmo_read_bytes", h, page * PAGE + in_page, 2 * PAGE)

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

    @rule(h=vmos)
    def close(self, h):
        self.pair.call("handle_close", h)

    @rule(dice=st.integers(0, 7), how=SAVE_HOW)
    def save_and_load(self, dice, how):
        """Now and then, save and load both kernels (huge sparse VMOs: page runs at radix
        node edges) and continue on the loaded ones (without the old kernels' snapshots)."""
        if dice == 0 and save_and_load(self.pair, how):
            self.snapshots = []

    @invariant()
    def same_state(self):
        if self.pair is None:
            return
        self.pair.check_state(self.seen, small=0)
        # Windows around every page ever touched: bytes and LOOKUP, parents and clones alike.
        offsets = sorted(set().union(*self.touched.values())) if self.touched else []
        for h in self.seen:
            for off in offsets:
                self.pair.call("vmo_read_bytes", h, off, PAGE)
                self.pair.lookup(h, off, PAGE, 1)


RadixStateMachine.TestCase.settings = settings(
    SM_SETTINGS, max_examples=2000 if _LONG else 120, stateful_step_count=60 if _LONG else 30)
TestRadixStateMachine = RadixStateMachine.TestCase


# -- a few directed radix-edge checks -----------------------------------------------------------
@pytest.mark.parametrize("pages", [[511, 512], [512 * 512 - 1, 512 * 512],
                                   [(1 << 49) // PAGE, (1 << 40) // PAGE - 1,
                                    (1 << 40) // PAGE + 1], [(MAX // PAGE) - 1, 0]])
def test_radix_edges_commit_write_decommit_shrink(pages):
    """Pages at radix edges of a 2**50 (or MAX) VMO on a 6-frame kernel: write, COMMIT,
    whole-range DECOMMIT, shrink and grow, compared after each call."""
    pair = Pair(6 * PAGE)
    try:
        size = MAX if max(pages) >= (1 << 50) // PAGE else 1 << 50
        seen = [pair.call("vmo_create", size)[1]]
        h = seen[0]
        for i, p in enumerate(pages):
            pair.call("vmo_write", h, bytes([i + 1]) * 10, p * PAGE + PAGE - 5)
        pair.check_state(seen, small=0)
        c = pair.call("vmo_clone", h, 1, (pages[0] // 2) * PAGE, size // 2)[1]
        seen.append(c)
        for p in pages:
            pair.call("vmo_op_range", c, vmo.MX_VMO_OP_COMMIT, p * PAGE, 2 * PAGE)
            pair.lookup(h, p * PAGE, 2 * PAGE, 2)
            pair.lookup(c, p * PAGE, 2 * PAGE, 2)
        pair.check_state(seen, small=0)
        pair.call("vmo_op_range", h, vmo.MX_VMO_OP_DECOMMIT, 0, U64)
        pair.check_state(seen, small=0)
        pair.call("vmo_set_size", c, pages[0] * PAGE + 1)
        pair.call("vmo_set_size", c, size)
        for p in pages:
            pair.call("vmo_read_bytes", c, p * PAGE, 2 * PAGE)
        pair.call("vmo_set_size", h, 0)
        pair.check_state(seen, small=0)
        pair.close_all(seen)
    finally:
        pair.close()


# -- handle-table edges -------------------------------------------------------------------------
def test_handle_generation_wraps_after_4096_reuses():
    """One slot closed and reused 4097 times: the 12-bit generation wraps to 0, so the value
    comes back to 1 (docs/semantics.md: "incremented (mod 4096) every time the slot is
    freed"); both kernels hand out the same values all the way."""
    pair = Pair(4 * PAGE)
    try:
        seen = []
        for _ in range(4097):
            status, h = pair.call("event_create" if len(seen) % 3 else "vmo_create",
                                  *(() if len(seen) % 3 else (PAGE,)))
            assert status is S.NO_ERROR
            seen.append(h)
            pair.call("handle_close", h)
        assert seen[0] == 1 and seen[1] == (1 << 19) | 1 and seen[4096] == 1, seen[:3]
        pair.close_all([1])
    finally:
        pair.close()


def test_full_handle_table():
    """262,144 handles: every creating call then returns ERR_NO_MEMORY on both kernels; a
    replace still works (it frees the old slot first, docs/semantics.md "Handles"); a close
    makes room for exactly one more."""
    pair = Pair(4 * PAGE)
    try:
        status, h = pair.call("vmo_create", 2 * PAGE)
        pair.call("vmo_write", h, b"x", PAGE)
        values = {}
        for name, kernel in (("core", pair.core), ("reference", pair.ref)):
            values[name] = [kernel.handle_duplicate(h, SAME_RIGHTS)[1]
                            for _ in range(vmo.MX_MAX_HANDLES - 1)]
        assert values["core"] == values["reference"], "duplicate values diverged"
        assert 0 not in values["core"]
        for call in (("vmo_create", PAGE), ("event_create",), ("vmo_clone", h, 1, 0, PAGE),
                     ("handle_duplicate", h, SAME_RIGHTS), ("handle_duplicate", h, 0)):
            status, _ = pair.call(*call)
            assert status is S.ERR_NO_MEMORY, (call, status)
        status, r = pair.call("handle_replace", h, 0x5)
        assert status is S.NO_ERROR and r == h + (1 << 19), (status, r)
        pair.call("object_get_info", r, vmo.MX_INFO_HANDLE_BASIC)
        pair.call("handle_close", values["core"][-1])
        status, c = pair.call("vmo_clone", r, 1, 0, PAGE)
        assert status is S.NO_ERROR
        assert pair.call("vmo_create", PAGE)[0] is S.ERR_NO_MEMORY
        pair.check_state([h, r, c], small=0)
        pair.close_all([h, r, c] + values["core"], check=[h, r, c, values["core"][0]])
    finally:
        pair.close()
