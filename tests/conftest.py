"""Shared fixtures and helpers of the behavioural suite.

Every behavioural test runs twice: on the compiled core (`vmo.Kernel`, id "core") and on the
pure-Python reference model (`vmo._reference.Kernel`, id "reference"). Both implement
docs/api.md and `docs/semantics.md` to the byte, status, handle value and physical address,
so every assertion here is exact and holds for both.

After every test each kernel the test used is checked with its invariant walker
(`k._check()`) and closed.

Helpers (import them with ``from conftest import ...``):
- `expect(result, status, value=ANY)`: assert a syscall's result, status first; the status must
  be the exact `vmo.Status` member; a failing tuple-returning call must give value 0.
- `make_vmo(k, size)`: create a VMO and return its handle, asserting NO_ERROR.
- `lookup(k, handle, offset, size, entries=None)`: LOOKUP into an `array('Q')`.
- `paddr(i, base=BASE)`: the physical address of frame ``i``.
"""

import os
from array import array

import pytest
from hypothesis import strategies as _st

import vmo

PAGE = 4096
MiB = 1 << 20
DEFAULT_MEMORY = 16 * MiB
BASE = 0x100000  # the default memory_base (docs/api.md "The kernel")
U64 = (1 << 64) - 1
MAX = 0xFFFF_FFFF_FFFF_F000  # MX_VMO_MAX_SIZE
SENTINEL = 0xDEAD_BEEF_DEAD_BEEF


class _Any:
    def __repr__(self):
        return "ANY"


ANY = _Any()
IGNORE = _Any()  # expect(..., IGNORE): do not look at the value at all


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "memory_size(n): memory_size of the kernel the `k` fixture builds")
    _fix_hypothesis_seed_under_ci(config)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(params=["core", "reference"])
def kernel_cls(request):
    """The kernel class under test. Imported here, lazily, so that collection works while
    either implementation is missing (its tests then error at setup instead of passing)."""
    if request.param == "core":
        return vmo.Kernel
    from vmo._reference import Kernel

    return Kernel


@pytest.fixture
def make_kernel(kernel_cls):
    """Factory: ``make_kernel(memory_size=16 MiB, **kw)`` returns a new kernel; every kernel
    made is `_check()`ed and closed after the test. Tests that close a kernel themselves
    must build it with ``kernel_cls`` directly."""
    made = []

    def make(memory_size=DEFAULT_MEMORY, **kwargs):
        kernel = kernel_cls(memory_size=memory_size, **kwargs)
        made.append(kernel)
        return kernel

    yield make
    errors = []
    for kernel in made:
        try:
            kernel._check()
        except Exception as exc:  # noqa: BLE001  (keep closing the others)
            errors.append(exc)
        finally:
            kernel.close()
    if errors:
        raise errors[0]


@pytest.fixture
def k(request, make_kernel):
    """A fresh kernel of 16 MiB (or of ``@pytest.mark.memory_size(n)``)."""
    marker = request.node.get_closest_marker("memory_size")
    size = marker.args[0] if marker else DEFAULT_MEMORY
    return make_kernel(memory_size=size)


# -- helpers ------------------------------------------------------------------------------------
def status_of(result):
    """The status of a syscall result (a bare status or a ``(status, value)`` tuple),
    asserting that it is a `vmo.Status` member."""
    status = result[0] if isinstance(result, tuple) else result
    assert isinstance(status, vmo.Status), f"status {status!r} is not a vmo.Status"
    return status


def expect(result, status, value=ANY):
    """Assert that ``result`` has exactly ``status`` (and ``value`` when given); return the
    value (``None`` for calls that return a bare status).

    docs/api.md "Syscall layer": "Each returns the status first; where C has out-parameters, it
    returns a tuple (status, value). On failure the value is 0 (MX_HANDLE_INVALID for handles)."
    """
    got = status_of(result)
    assert got is status, f"expected {status.name}, got {got.name} ({result!r})"
    if isinstance(result, tuple):
        assert len(result) == 2, result
        val = result[1]
        if value is IGNORE:
            return val
        if value is not ANY:
            assert val == value, f"value {val!r} != expected {value!r}"
        elif status is not vmo.Status.NO_ERROR:
            assert val == 0, f"failed call returned value {val!r}, not 0"
        return val
    assert value is ANY or value is IGNORE, "call returned a bare status, no value to compare"
    return None


def make_vmo(k, size):
    """Create a VMO of ``size`` bytes; return its handle (asserting NO_ERROR)."""
    handle = expect(k.vmo_create(size, 0), vmo.Status.NO_ERROR)
    assert handle != 0
    return handle


def make_event(k):
    """Create an event (the non-VMO object of docs/api.md "event_create"); return its handle."""
    handle = expect(k.event_create(0), vmo.Status.NO_ERROR)
    assert handle != 0
    return handle


def dup(k, handle, rights):
    """Duplicate ``handle`` with ``rights``, asserting NO_ERROR."""
    return expect(k.handle_duplicate(handle, rights), vmo.Status.NO_ERROR)


def clone(k, handle, offset, size):
    """A COW clone, asserting NO_ERROR."""
    return expect(k.vmo_clone(handle, vmo.MX_VMO_CLONE_COPY_ON_WRITE, offset, size),
                  vmo.Status.NO_ERROR)


def lookup(k, handle, offset, size, entries=None):
    """LOOKUP ``[offset, offset+size)`` into an ``array('Q')`` of ``entries`` (default: as
    many as the range touches) pre-filled with SENTINEL; return ``(status, list)``."""
    if entries is None:
        first = offset - offset % PAGE
        end = -(-(offset + size) // PAGE) * PAGE
        entries = max((end - first) // PAGE, 0)
    buf = array("Q", [SENTINEL] * entries)
    status = k.vmo_op_range(handle, vmo.MX_VMO_OP_LOOKUP, offset, size, buf)
    status_of(status)
    return status, list(buf)


def paddr(i, base=BASE):
    """Physical address of frame ``i`` (docs/semantics.md: memory_base + f * 4096)."""
    return base + i * PAGE


def read(k, handle, offset, length):
    """vmo_read into a fresh bytearray; return the bytes actually read (asserting NO_ERROR)."""
    buf = bytearray(length)
    actual = expect(k.vmo_read(handle, buf, offset), vmo.Status.NO_ERROR)
    return bytes(buf[:actual])


def write(k, handle, data, offset):
    """vmo_write asserting NO_ERROR; return actual."""
    return expect(k.vmo_write(handle, data, offset), vmo.Status.NO_ERROR)


def rights_of(k, handle):
    """The rights of ``handle`` via MX_INFO_HANDLE_BASIC."""
    info = expect(k.object_get_info(handle, vmo.MX_INFO_HANDLE_BASIC), vmo.Status.NO_ERROR)
    return info.rights


STATS_KEYS = ("total_frames", "free_frames", "committed_frames", "vmos", "handles")


def stats(k):
    """The keys of k.stats() that docs/api.md "stats()" promises, with their consistency checked."""
    full = k.stats()
    assert isinstance(full, dict)
    s = {key: full[key] for key in STATS_KEYS}  # only the keys docs/api.md promises
    assert s["free_frames"] + s["committed_frames"] == s["total_frames"], s
    return s



# Under CI (the environment variable CI is set, as .ci/run's runner does) every hypothesis test
# draws from one fixed seed, so a green run is reproducible and a submission cannot fail on
# an unlucky draw; developers' runs (no CI) draw fresh examples each time and keep exploring
# (HYPOTHESIS_PROFILE=long / fuzz for long runs). `pytest --hypothesis-seed=N` overrides.
def _fix_hypothesis_seed_under_ci(config):
    if os.environ.get("CI") and config.getoption("hypothesis_seed", None) is None:
        from hypothesis import core
        core.global_force_seed = int(os.environ.get("VMO_CI_SEED", "20261126"))


# -- the state machines' snapshot and dirty-log steps (both kernels side by side) ----------------
MAX_SNAPSHOTS = 4


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except vmo.MxError as exc:
        return "MxError", exc.status
    except Exception as exc:  # noqa: BLE001  (compared by type)
        return "raise", type(exc)


def snapshot_pair(pair, snapshots):
    """Both kernels take a snapshot (refused alike while frames are pinned)."""
    if len(snapshots) >= MAX_SNAPSHOTS:
        return
    (kc, sc), (kr, sr) = _outcome(pair.core.snapshot), _outcome(pair.ref.snapshot)
    assert kc == kr, f"snapshot() diverged: core {kc} {sc!r}, reference {kr} {sr!r}"
    if kc == "ok":
        snapshots.append((sc, sr))
    else:
        assert kc == "MxError" and sc == sr == vmo.Status.ERR_BAD_STATE, (sc, sr)


def restore_pair(pair, snapshots, data):
    """Both kernels restore the same live snapshot (the state is compared after the step)."""
    if not snapshots:
        return
    i = data.draw(_st.integers(0, len(snapshots) - 1), label="snapshot")
    sc, sr = snapshots[i]
    (kc, vc), (kr, vr) = _outcome(pair.core.restore, sc), _outcome(pair.ref.restore, sr)
    assert (kc, vc) == (kr, vr), f"restore() diverged: core {kc} {vc!r}, reference {kr} {vr!r}"
    assert kc == "ok" or (kc == "MxError" and vc == vmo.Status.ERR_BAD_STATE), (kc, vc)


def drop_snapshot_pair(snapshots, data):
    """Drop a live snapshot on both kernels (its store merges into the previous one's)."""
    if snapshots:
        del snapshots[data.draw(_st.integers(0, len(snapshots) - 1), label="drop")]


def dirty_log_pair(pair, clear):
    """Both dirty logs agree (read, and cleared or not)."""
    core, ref = pair.core.dirty_log(clear), pair.ref.dirty_log(clear)
    assert type(core) is type(ref) is array and core.typecode == ref.typecode == "Q"
    assert core == ref, f"dirty_log({clear}) diverged:\n  core      {core}\n  reference {ref}"
    assert list(core) == sorted(set(core)), "dirty_log() is not ascending"
