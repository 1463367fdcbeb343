"""Differential fuzzing of the whole API: the compiled core against the reference model.

Hardening: nothing crashes, nothing leaks, nothing is lost. Every case builds a
compiled `vmo.Kernel` and a `vmo._reference.Kernel` with the same small memory (8-32 pages; a
single range at a low, odd or top-of-address-space base, or a two-range memory map, touching or
with a hole) and runs a random sequence of calls on both, side by side. It covers every call of
the syscall layer (vmo_create, vmo_read, vmo_read_bytes, vmo_write, vmo_get_size, vmo_set_size,
vmo_op_range with every op, vmo_clone, handle_close, handle_duplicate, handle_replace,
object_get_info, event_create, vmo_committed_bytes, vmo_create_contiguous), the embedding calls
(phys_read, phys_write, phys_view; the views are kept, written, read, released, dropped and
passed back in as buffers), the machine services (dirty_log with any `clear`, a snapshot
restored at once, restore of what is no snapshot), stats(), close() (and every call after
it), and the Pythonic layer
(create_vmo, create_contiguous_vmo, every `Vmo` method and property).

Each argument comes from a wide strategy: valid-looking values (live handles, page-edge offsets
and sizes, the sizes of live VMOs, the physical addresses of frames), integers outside their C
type (2**64, 2**64-1, 2**63, -1, -2**63, 2**200 ...), bools, floats, None, strings, bytes,
objects with ``__index__`` (one returning 2**200, one returning a str, one raising), int
subclasses, numpy integers and 0-d arrays, buffers of every kind (bytes, bytearray, memoryview,
read-only, strided, sliced, released; ``array('Q')`` and other typecodes; ctypes arrays; numpy
arrays contiguous, strided, read-only, 2-D C and Fortran order, transposed, 0-d, zero-length,
uint64/uint8/float/complex/bool/structured/void/big-endian dtypes), stale (closed) handles,
even values, another kernel's handles, views of another kernel's memory.

Per call, both kernels must give the same outcome: the same return value, compared by type and
value (statuses must be `vmo.Status` members; handles, sizes, bytes, records, views by content,
`Vmo` objects by handle), or the same exception type (`MxError` also by `.status`); the buffers
handed to each side must end up identical; and no C syscall may raise for arguments a C caller
could pass (docs/api.md, "Syscall layer"). After every step both kernels pass ``_check()`` and
agree on stats() (the five contract keys plus pinned_frames) and on ``_allocator_state()``. At the
end of a case every handle ever seen is compared (size, committed bytes, own pages with their
physical addresses, contents, info), every frame is read through phys_read on both, all views are
released, and closing every handle must give every frame back on both kernels.

A failure prints a standalone Python script that replays the case on both kernels (shrunk
first under the fuzz profile or with VMO_FUZZ_SHRINK=1).

Budgets (the default profile is part of the normal test run):

    python -m pytest tests/test_fuzz.py -q -s -p no:cacheprovider
        default profile: 800 cases of up to 60 calls each, about 30-60 s on two cores;
        ``-s`` prints "vmo fuzz: N fuzz cases run (M calls compared on both kernels)".
    HYPOTHESIS_PROFILE=fuzz python -m pytest tests/test_fuzz.py -q -s -p no:cacheprovider
        the long budget: 100,000 cases of up to 80 calls each (about two hours on one core;
        run as fresh hypothesis runs of 2,000 cases, progress on stderr every 1,000 cases).
    VMO_FUZZ_EXAMPLES=N     overrides the number of cases of either profile.
    VMO_FUZZ_SHRINK=1       lets the default profile shrink a failing case (the fuzz profile
                            always does; it can take hypothesis up to 5 minutes per test).
    VMO_FUZZ_TOLERATE_KNOWN=1
        a divergence that `_known_divergence` recognises as an instance of a bug already
        reported does not fail the test: the case goes on if the call cannot have changed
        either kernel (`STATELESS_KNOWN`), else it ends there; either way it is counted in the
        summary. The commonest trigger (exporters refusing memoryview()) is not generated.
        So a long run can look past the known bugs for new ones. Off by default: the known
        bugs fail the test until they are fixed, except those of `OPEN_KNOWN` (open, and
        pinned by a strict xfail test of tests/test_found_by_fuzz.py), always tolerated so
        that no run fails on a lucky draw. (The seeded smoke tests always tolerate them.)

``python tests/fuzz_atheris.py -atheris_runs=100000`` drives the same engine from atheris
(coverage-guided; see that file).

`test_fuzz_state_file_mutations` (at the end) fuzzes `Kernel.load` on both kernels with
mutated state files (docs/state-format.md); ``VMO_FUZZ_TARGET=statefile`` runs it from
atheris.

Also generated, as the buffer of every call that takes one (vmo_read, vmo_write, LOOKUP,
phys_write, the Pythonic read_into and write): buffers of Python object pointers (numpy
dtype=object arrays, structured dtypes with an object field or an object subarray field,
ctypes py_object arrays, zero-length ones) and, next to them, plain structured buffers whose
field *names* hold an "O". Both kernels refuse the former in both directions with
ERR_INVALID_ARGS (docs/semantics.md "Python-specific argument rules"): bytes written over those
pointers would crash the interpreter, and bytes read from them are host heap addresses that
must never reach simulated memory. Besides the core/reference agreement, an oracle of this
file asserts the refusal itself: for vmo_write and vmo_read, ERR_INVALID_ARGS (value 0)
whenever the integers are in range, the handle checks pass and the transfer is non-empty, and
nothing refused when it is empty; for the Pythonic write and read_into, MxError(ERR_INVALID_ARGS)
likewise; for phys_write of a non-empty one, MxError(ERR_INVALID_ARGS) whatever the address.
A build without the refusal crashes this test or fails it: that is a finding too.
Not generated, on purpose: reads whose result would be between 1 MiB and 2**63 bytes (legal,
but the host would have to allocate it).
"""

import operator
import os
import re
import struct
import sys
import time
import zlib
from array import array

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import vmo
from vmo import MxError, Status, Vmo

try:  # the reference model may be mid-edit; the test then fails at setup, loudly
    from vmo._reference import Kernel as ReferenceKernel
except Exception as exc:  # pragma: no cover
    ReferenceKernel = None
    _REFERENCE_IMPORT_ERROR = exc

PAGE = 4096
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
MAX = vmo.MX_VMO_MAX_SIZE
SAME = 0x8000_0000
SENTINEL = 0xDEAD_BEEF_DEAD_BEEF
STATS_KEYS = ("total_frames", "free_frames", "committed_frames", "vmos", "handles",
              "pinned_frames", "cache_lines", "dirty_lines")
READ_CAP = 1 << 20  # reads whose result would be larger (but < 2**63) are not made

# The C syscalls: "They never raise for anything a C caller could pass" (docs/api.md).
C_SYSCALLS = {"vmo_create", "vmo_read", "vmo_write", "vmo_get_size", "vmo_set_size",
              "vmo_op_range", "vmo_clone", "handle_close", "handle_duplicate", "handle_replace",
              "object_get_info", "event_create", "vmo_committed_bytes",
              "vmo_create_contiguous"}
# Exceptions a call may raise at all (on both kernels alike): argument types (TypeError),
# closed kernels and odd exporters (ValueError, BufferError), impossible result sizes
# (MemoryError, OverflowError), the Pythonic layer and phys_* (MxError), and what our own
# __index__ objects raise (ArithmeticError). Anything else (SystemError, AssertionError,
# RuntimeError, KeyError...) is a bug even when both kernels agree on it.
ALLOWED_EXCEPTIONS = (TypeError, ValueError, BufferError, MemoryError, OverflowError, MxError,
                      ArithmeticError)

# -- the namespace argument expressions are evaluated in (also the reproducer's prelude) -------
HELPERS = r'''
import ctypes, decimal, fractions, functools, math
from array import array
import numpy as np

class Idx:
    """An integer-like object: operator.index() gives `value` (any int, even out of range)."""
    def __init__(self, value):
        self.value = value
    def __index__(self):
        return self.value

class BadIdx:
    """__index__ returns a str: operator.index() raises TypeError."""
    def __index__(self):
        return "7"

class RaisingIdx:
    """__index__ raises ArithmeticError, which must propagate unchanged."""
    def __index__(self):
        raise ArithmeticError("__index__ refuses")

class IntSub(int):
    pass

@functools.lru_cache(maxsize=None)
def pat(n, seed=1):
    """n deterministic bytes."""
    return bytes((i * 131 + seed * 29 + 7) & 0xFF for i in range(n))

def npa(n, dtype="u1", seed=1):
    """A fresh writable numpy array of n items of `dtype`, filled from pat()."""
    dt = np.dtype(dtype)
    return np.frombuffer(pat(n * dt.itemsize, seed), dtype=dt).copy()

def ro(a):
    """`a` made read-only."""
    a.flags.writeable = False
    return a

def released(obj):
    """A released memoryview of `obj`: exporting it raises ValueError."""
    m = memoryview(obj)
    m.release()
    return m

def ct(ctype, n, seed=1):
    """A ctypes array of n `ctype`, filled from pat()."""
    return (ctype * n).from_buffer_copy(pat(n * ctypes.sizeof(ctype), seed))

def use(v):
    """The context-manager protocol of a Vmo: size inside, closed on exit."""
    with v:
        return v.size
'''
NS = {"__name__": "vmo_fuzz_helpers"}
exec(compile(HELPERS, "<vmo fuzz helpers>", "exec"), NS)
for _name in ("vmo", "MxError", "Status", "SENTINEL"):
    NS[_name] = globals()[_name]

_CODE_CACHE = {}
_WRAPPED_INT = re.compile(
    r"\b(?:Idx|IntSub|np\.uint64|np\.int64|np\.uint32)\((-?[0-9*+-]+)\)"
    r"|\bnp\.array\((-?[0-9]+), dtype=np\.uint64\)")


def _unwrap(src):
    """`src` with every integer-like wrapper (Idx(5), np.uint64(5), IntSub(5), a 0-d uint64
    array...) replaced by the plain int it indexes to."""
    return _WRAPPED_INT.sub(lambda m: "(%s)" % (m.group(1) or m.group(2)), src)


def _compile(src):
    fn = _CODE_CACHE.get(src)
    if fn is None:
        fn = eval(compile(src, "<vmo fuzz step>", "eval"), NS)
        if len(_CODE_CACHE) < 20000:
            _CODE_CACHE[src] = fn
    return fn


# -- value pools -------------------------------------------------------------------------------
# (expression, a C caller could pass it) for integer arguments
HOSTILE_INTS = [
    ("2**64", True), ("2**64-1", True), ("2**63", True), ("2**63-1", True), ("-1", True),
    ("-2**63", True), ("-2**64", True), ("2**200", True), ("-2**200", True), ("2**32", True),
    ("2**32-1", True), ("2**31", True), ("2**31-1", True), ("True", True), ("False", True),
    ("Idx(2**200)", True), ("Idx(-1)", True), ("Idx(2**64)", True), ("IntSub(2**64)", True),
    ("np.uint64(2**64-1)", True), ("np.int64(-1)", True), ("np.int8(-1)", True),
    ("np.array(2**63, dtype=np.uint64)", True),
    ("1.0", False), ("0.0", False), ("float('nan')", False), ("float('inf')", False),
    ("None", False), ("'1'", False), ("''", False), ("b'1'", False), ("1j", False),
    ("[1]", False), ("()", False), ("object()", False), ("BadIdx()", False),
    ("RaisingIdx()", False), ("np.float64(1.0)", False), ("np.bool_(True)", False),
    ("np.array([1])", False), ("np.zeros(0)", False), ("decimal.Decimal(1)", False),
    ("fractions.Fraction(1)", False), ("bytearray(1)", False),
]
BOGUS_HANDLES = [0, 1, 2, 3, 5, 7, 0x7FFF_FFFF, 0x8000_0000, 0x8000_0001, U32, 524289, 524291,
                 (4095 << 19) | 1]
BIG_OFFSETS = [MAX, MAX - 1, MAX + 1, MAX - PAGE, U64, U64 - PAGE + 1, U64 - PAGE, 1 << 63,
               (1 << 63) - 1, 1 << 40, 1 << 48, 512 * PAGE, 512 * 512 * PAGE,
               512 ** 3 * PAGE, (1 << 37) * PAGE, 1 << 32]
OPS = [1, 1, 1, 2, 2, 2, 5, 5, 5, 3, 4, 6, 7, 8, 9, 0, 10, 255, U32]
RIGHTS = [SAME, SAME, 0x3F, 0x3E, 0x3B, 0x37, 0x35, 0x3C, 0x05, 0x0D, 0x0F, 0x1F, 0, 1, 0xFF,
          0x7FFF_FFFF, U32, 0x8000_0001, 0x0C]
TOPICS = [1, 2, 1, 2, 0, 3, 7, 13, 14, 255, U32]
CREATE_OPTIONS = [0, 0, 0, 1, 2, U32]
CLONE_OPTIONS = [1, 1, 1, 0, 3, 2, U32]
ALIGNMENTS = [0, 0, 0, 12, 13, 14, 15, 16, 17, 20, 11, 1, 63, 64, U32]
BUF_SIZES = [0, 1, 7, 8, 9, 16, 64, 100, 4095, 4096, 4097, 8192, 3 * PAGE + 5]
NUMPY_DTYPES = ["u1", "u8", "u2", "i4", "f8", "c16", "?", "<u8", ">u4", "f2", "i1"]
# Buffers of Python object pointers (an "O" item code), refused by every call that takes data
# or is given a buffer to fill; the last ones are empty (a zero-length transfer refuses nothing).
OBJECT_BUFFERS = ["np.array([None, 'x', 3, 4.5], dtype=object)",
                  "np.zeros(2, [('n', 'u8'), ('o', 'O')])",
                  "memoryview(np.array([None] * 4, dtype=object))",
                  "np.array([[1, 2], [3, 4]], dtype=object)",
                  "np.zeros(2, [('a', 'O', (2,))])",
                  "np.zeros(2, [('s', [('O', 'u2'), ('p', 'O')])])",
                  "(ctypes.py_object * 3)()",
                  "np.array([None] * 8, dtype=object).reshape(2, 4).T",
                  "np.array([], dtype=object)", "np.zeros(0, [('n', 'u8'), ('o', 'O')])"]
# Plain buffers whose structured format has an "O" only in a field name: accepted both ways.
FIELD_NAMED_O = ["npa(%d, [('Obj', '<u8')], %d)", "npa(%d, [('O', 'u1'), ('xO', '<u4')], %d)",
                 "npa(%d, [('s', [('O', 'u2')])], %d)"]
NON_BUFFERS = ["'abcd'", "[0] * 8", "12", "1.5", "object()", "{1: 2}", "(1, 2)", "Idx(8)"]


class Chooser:
    """Where the engine's choices come from (hypothesis, atheris, or a seeded RNG)."""

    def int(self, lo, hi):  # pragma: no cover - interface
        raise NotImplementedError

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, percent):
        return self.int(0, 99) < percent


class HypothesisChooser(Chooser):
    def __init__(self, data):
        self.data = data

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))


class RandomChooser(Chooser):
    def __init__(self, rng):
        self.rng = rng

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)


class Skip(Exception):
    """The step would be unsafe for the host (a huge allocation); it is not made."""


class KnownDivergence(Exception):
    """A divergence matching a bug already reported; with VMO_FUZZ_TOLERATE_KNOWN it ends the
    case (the kernels may have diverged) instead of failing."""

    def __init__(self, key):
        super().__init__(key)
        self.key = key


# -- normalising outcomes ------------------------------------------------------------------------
def _norm(value):
    """A comparable, printable form of a result: types matter (Status vs int, None vs 0)."""
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_norm(v) for v in value)
    if isinstance(value, memoryview):
        try:
            return ("memoryview", value.nbytes, value.format, value.readonly, value.ndim,
                    value.tobytes())
        except ValueError:
            return ("memoryview", "released")
    if isinstance(value, Vmo):
        return ("Vmo", _norm(value.handle))
    if isinstance(value, array):
        return ("array", value.typecode, value.tobytes())
    if isinstance(value, vmo.HandleBasicInfo):
        return ("HandleBasicInfo",) + tuple(_norm(v) for v in value)
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _norm(v)) for k, v in value.items())))
    if isinstance(value, (bytes, bytearray)):
        return (type(value).__name__, bytes(value))
    if value is None or isinstance(value, (int, str, float)):
        return (type(value).__name__, value)
    return (type(value).__name__, repr(value))


def _invoke(mode, target, attr, args, kwargs):
    """One call ("call"), property read ("get") or property write ("set")."""
    if mode == "call":
        return getattr(target, attr)(*args, **kwargs)
    if mode == "get":
        return getattr(target, attr)
    return setattr(target, attr, args[0])


def _outcome(fn, *args):
    """("ok", result) or ("raise", exception type name, MxError status or None, exception)."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # compared by the caller
        # Without its traceback: its frames would hold the call's arguments (physical views
        # among them) in a reference cycle, keeping frames pinned until the next gc pass.
        exc.__traceback__ = None
        return ("raise", type(exc).__name__, getattr(exc, "status", None), exc)


def _shown(outcome):
    if outcome[0] == "ok":
        text = repr(_norm(outcome[1]))
    else:
        text = "raise %s(%s) %s" % (outcome[1], outcome[2], str(outcome[3])[:120])
    return text if len(text) < 400 else text[:400] + "..."


def _format_holds_objects(fmt):
    """True if a struct-module buffer format has an "O" item code (a Python object pointer);
    field names, which structured formats put between colons ("T{<Q:Obj:O:o:}"), do not
    count."""
    return "O" in "".join(fmt.split(":")[0::2])


def _holds_objects(obj):
    """True if `obj` exports a buffer of Python object pointers (False for anything that is
    not a buffer or refuses to export)."""
    try:
        with memoryview(obj) as m:
            return _format_holds_objects(m.format)
    except Exception:
        return False


def _contents(obj):
    """The bytes of a buffer argument (None if it has none, refuses to export, or holds
    Python object pointers: each side has its own objects, at other addresses)."""
    try:
        with memoryview(obj) as m:
            return None if _format_holds_objects(m.format) else m.tobytes()
    except Exception:
        return None


def _status_of(result):
    return result[0] if isinstance(result, tuple) and result else result


# -- known divergences (bugs already reported; see the module docstring) -------------------------
def _known_divergence(name, out_c, out_r, args_r):
    """The key of the reported bug this divergence is an instance of, or None. (Bugs fixed
    since are kept, marked with the fixing commit: they only label a regression.)"""
    kind_c, kind_r = out_c[0], out_r[0]
    val_c = out_c[1] if kind_c == "ok" else None
    status_c = _status_of(val_c) if kind_c == "ok" else out_c[2]
    # 1. (fixed in 70e682f) LOOKUP: the core returned ERR_INVALID_ARGS for an out-of-range
    #    integer before it had type-checked `buffer` / `buffer_size`; the reference raises
    #    TypeError (semantics: conversions first, TypeError wins).
    if name in ("vmo_op_range", "Vmo.op_range") and kind_r == "raise" and out_r[1] == "TypeError" \
            and status_c == Status.ERR_INVALID_ARGS and not any(a is None for a in args_r[:4]):
        return "lookup-typeerror-after-invalid-args"
    # 1b. (fixed in 70e682f) None where an integer is due, next to an out-of-range integer: the
    #     core's
    #     `_invalid_args` skipped None (meant for the optional length/buffer_size) and
    #     answered ERR_INVALID_ARGS; the reference raises TypeError.
    if kind_r == "raise" and out_r[1] == "TypeError" and status_c == Status.ERR_INVALID_ARGS \
            and any(a is None for a in args_r):
        return "none-not-type-checked-before-invalid-args"
    # 2. (fixed in 28904ad) A refused (non-contiguous) buffer of 0 bytes with the default
    #    length: the core answered ERR_INVALID_ARGS, the reference NO_ERROR (semantics: buffer
    #    checks only when length > 0).
    if name in ("vmo_read", "vmo_write", "Vmo.read_into", "Vmo.write") \
            and status_c == Status.ERR_INVALID_ARGS and any(_empty_refused(a) for a in args_r):
        return "empty-refused-buffer"
    # 3. An exporter that refuses memoryview() (which asks for the format) but grants a plain
    #    byte view (numpy datetime64/timedelta64 arrays): the reference calls it refused
    #    (ERR_INVALID_ARGS; before 70e682f it let memoryview()'s ValueError out, also for
    #    released memoryviews), the core reads it as bytes (vmo_write, phys_write).
    status_r = _status_of(out_r[1]) if kind_r == "ok" else out_r[2]
    if (kind_r == "raise" and out_r[1] in ("ValueError", "BufferError", "NotImplementedError")
            or status_r == Status.ERR_INVALID_ARGS) \
            and any(_refuses_memoryview(a) for a in args_r):
        return "exporter-refuses-memoryview"
    # 4. (fixed in 70e682f) phys_read allocated `length` bytes before validating the range:
    #    MemoryError (or a transient allocation of gigabytes) instead of ERR_OUT_OF_RANGE.
    if name == "phys_read" and kind_c == "raise" and out_c[1] in ("MemoryError",
                                                                   "OverflowError") \
            and kind_r == "raise" and out_r[1] == "MxError":
        return "phys-read-allocates-first"
    # 5. (aligned in 70e682f: both OverflowError) vmo_read_bytes of more than 2**63 - 1
    #    bytes: core MemoryError, reference OverflowError.
    if name in ("vmo_read_bytes", "Vmo.read") and kind_c == "raise" and kind_r == "raise" \
            and {out_c[1], out_r[1]} == {"MemoryError", "OverflowError"}:
        return "read-bytes-huge-exception-type"
    # 5b. (fixed in 70e682f) A zero-length phys_view as LOOKUP's buffer: the core's view
    #     exported a NULL pointer,
    #     which its LOOKUP takes for C's null buffer (ERR_INVALID_ARGS); the reference sees a
    #     0-byte buffer (ERR_BUFFER_TOO_SMALL).
    if name in ("vmo_op_range", "Vmo.op_range") and status_c == Status.ERR_INVALID_ARGS \
            and any(isinstance(a, memoryview) and _is_empty_phys_view(a) for a in args_r):
        return "zero-length-phys-view-exports-null"
    # 5c. (regression of f4daac0, fixed in 0ffb328) The core asked exporters of written
    #     buffers for PyBUF_WRITABLE|PyBUF_FORMAT without PyBUF_ND, which every memoryview
    #     refuses: vmo_read / LOOKUP into any memoryview was ERR_INVALID_ARGS.
    if name in ("vmo_read", "vmo_op_range", "Vmo.read_into", "Vmo.op_range") \
            and status_c == Status.ERR_INVALID_ARGS \
            and any(_writable_memoryview(a) for a in args_r):
        return "memoryview-destination-refused"
    # 6. (fixed in 70e682f) Two arguments that both fail to convert (e.g. a non-buffer and an
    #    __index__ that raises ArithmeticError): the reference reports the first in signature
    #    order; the core converted handle, offset and length before it looked at the buffer.
    if kind_c == "raise" and kind_r == "raise" and out_c[1] != out_r[1] \
            and sum(1 for a in args_r if _unconvertible(a)) >= 2:
        return "conversion-order"
    return None


def _writable_memoryview(obj):
    try:
        return isinstance(obj, memoryview) and not obj.readonly and obj.c_contiguous \
            and not _format_holds_objects(obj.format)
    except ValueError:  # released
        return False


def _is_phys_view(obj):
    try:
        return isinstance(obj, memoryview) and type(obj.obj).__name__.startswith(
            ("PhysView", "_PinnedBytes"))
    except ValueError:
        return False


# Known divergences after which both kernels are still in the same state (the differing call
# changed nothing but, at most, the caller's own buffer): a tolerant case goes on past them
# unless a physical view of the kernel's memory was among the arguments.
STATELESS_KNOWN = {"lookup-typeerror-after-invalid-args",
                   "none-not-type-checked-before-invalid-args", "phys-read-allocates-first",
                   "read-bytes-huge-exception-type", "zero-length-phys-view-exports-null",
                   "conversion-order", "memoryview-destination-refused", "empty-refused-buffer"}


# Known divergences of bugs open at this commit that a strict xfail test of
# tests/test_found_by_fuzz.py pins down deterministically: tolerated even without
# VMO_FUZZ_TOLERATE_KNOWN, so that the normal run cannot fail on a lucky draw of them. The fix
# turns that xfail into a failure (XPASS strict); then drop the xfail and the key here.
OPEN_KNOWN = set()
STATELESS_KNOWN |= OPEN_KNOWN


# Calls that copy between a caller's buffer and a VMO (the buffer may be physical memory).
ALIASING_CALLS = {"vmo_read", "vmo_write", "Vmo.read_into", "Vmo.write"}


def _handle_of(name, target, args):
    """The VMO handle a read or write goes to, as an int (None if it is not one)."""
    try:
        return operator.index(target.handle if name.startswith("Vmo.") else args[0])
    except Exception:
        return None


def _is_empty_phys_view(view):
    try:
        return view.nbytes == 0 and type(view.obj).__name__.startswith(("PhysView",
                                                                           "_PinnedBytes"))
    except ValueError:  # released
        return False


def _unconvertible(obj):
    """True if `obj` is neither None, an integer (operator.index) nor a buffer."""
    if obj is None:
        return False
    try:
        operator.index(obj)
        return False
    except Exception:
        pass
    try:
        memoryview(obj).release()
        return False
    except Exception:
        return True


def _empty_refused(obj):
    """True for a buffer of 0 bytes that refuses a contiguous export (e.g. a strided
    memoryview of nothing)."""
    if isinstance(obj, (int, str, bytes)) or obj is None:
        return False
    try:
        with memoryview(obj) as m:
            return m.nbytes == 0 and not m.c_contiguous
    except Exception:
        return False


def _refuses_memoryview(obj):
    """True if `obj` has the buffer protocol but memoryview() refuses it (ValueError or
    BufferError, e.g. a released memoryview or a datetime64 array)."""
    try:
        memoryview(obj).release()
    except (ValueError, BufferError):
        return True
    except Exception:
        return False
    return False


# -- one side -------------------------------------------------------------------------------------
class Side:
    """One kernel of the pair with its own objects (views, another kernel and its view)."""

    def __init__(self, cls, mem_kwargs):
        self.cls = cls
        self.k = cls(**mem_kwargs)
        self.views = {}
        self.dead = {}
        self.o = cls(memory_size=16 * PAGE)
        for _ in range(3):
            self.o.handle_close(self.o.vmo_create(PAGE)[1])
        self.oh = self.o.vmo_create(2 * PAGE)[1]
        self.o.vmo_write(self.oh, NS["pat"](2 * PAGE, 9), 0)
        self.oe = self.o.event_create()[1]
        self.oview = self.o.phys_view(self.o.memory_base, PAGE)

    def env(self):
        return (self.k, self.views, self.dead, self.oview)

    def dispose(self):
        for d in (self.views, self.dead):
            for view in d.values():
                try:
                    view.release()
                except Exception:
                    pass
            d.clear()
        try:
            self.oview.release()
        except Exception:
            pass
        self.oview = None
        for kernel in (self.k, self.o):
            try:
                kernel.close()
            except Exception:
                pass


OTHER_SETUP = """    o = K(memory_size=16 * 4096)                       # another kernel
    for _ in range(3):
        o.handle_close(o.vmo_create(4096)[1])
    oh = o.vmo_create(2 * 4096)[1]
    o.vmo_write(oh, pat(2 * 4096, 9), 0)
    oe = o.event_create()[1]
    oview = o.phys_view(o.memory_base, 4096)           # a view of another kernel's memory
    views, dead = {}, {}
"""


def _memory_configs(ch):
    """(kwargs, arenas) of a small machine: arenas are (base, frames) in allocation order,
    touching ranges merged; one case in four is a non-coherent machine (the cache model,
    docs/cache-model.md) with a line size and capacity drawn too."""
    kwargs, arenas = _memory_layout(ch)
    if ch.int(0, 3) == 0:
        kwargs = dict(kwargs, coherent=False, cache_line=ch.pick([64, 16, 4096, 32, 256]),
                      cache_lines=ch.pick([None, 1, 4, 16]))
    return kwargs, arenas


def _memory_layout(ch):
    kind = ch.int(0, 9)
    if kind <= 5:
        pages = ch.pick([8, 12, 16, 24, 32, 9, 31])
        base = ch.pick([0x100000, 0x100000, 0x1000, 1 << 32, (1 << 64) - pages * PAGE,
                        0x7FFF_F000 - pages * PAGE])
        if kind <= 3:
            return {"memory_size": pages * PAGE, "memory_base": base} if base != 0x100000 \
                else {"memory_size": pages * PAGE}, [(base, pages)]
        return {"memory": [(base, pages * PAGE)]}, [(base, pages)]
    a = ch.int(4, 16)
    b = ch.int(4, 16)
    layout = ch.int(0, 3)
    if layout == 0:  # touching: one arena
        ranges = [(0x100000, a * PAGE), (0x100000 + a * PAGE, b * PAGE)]
        return {"memory": ranges}, [(0x100000, a + b)]
    if layout == 1:  # a hole between them
        ranges = [(0x100000, a * PAGE), (0x100000 + (a + 3) * PAGE, b * PAGE)]
    elif layout == 2:  # given in descending address order
        ranges = [(0x4000_0000, a * PAGE), (0x100000, b * PAGE)]
    else:  # top of the address space and the bottom
        ranges = [((1 << 64) - a * PAGE, a * PAGE), (PAGE, b * PAGE)]
    return {"memory": ranges}, [(base, size // PAGE) for base, size in ranges]


# -- the engine ---------------------------------------------------------------------------------
class Case:
    """One fuzz case: a pair of kernels, the state the arguments are drawn from, the log."""

    def __init__(self, chooser, tolerate=False, metamorphic=None):
        """`metamorphic`: None for core against reference; else a kernel class run twice,
        the second time with every integer-like argument replaced by its plain int."""
        if ReferenceKernel is None:
            raise AssertionError("vmo._reference does not import: %r" % (_REFERENCE_IMPORT_ERROR,))
        self.ch = chooser
        self.tolerate = tolerate
        self.unwrap = metamorphic is not None
        self.mem_kwargs, self.arenas = _memory_configs(chooser)
        self.total_frames = sum(n for _, n in self.arenas)
        first, second = (metamorphic, metamorphic) if self.unwrap else (vmo.Kernel,
                                                                        ReferenceKernel)
        self.core = Side(first, self.mem_kwargs)
        self.ref = Side(second, self.mem_kwargs)
        self.sides = (self.core, self.ref)
        self.lines = []
        self.calls = 0
        self.open = True
        self.seen = []  # every handle value ever returned, in order
        self.live = []
        self.closed = []
        self.view_ids = []  # live views: keys of Side.views
        self.view_len = {}
        self.dead_ids = []
        self.next_view = 0
        self.other_handles = [self.core.oh, self.core.oe]
        assert self.other_handles == [self.ref.oh, self.ref.oe]
        self.known = None  # the key of a tolerated known divergence that ended the case
        self.tolerated = {}  # known divergences (key -> count) the case went on past
        self.avoid_known = tolerate  # do not even generate the commonest known trigger
        self.wild = True  # this step may use hostile values (else: valid-looking ones only)
        self._held = None
        self.events = set()
        self.oracle_checks = {}  # outcomes the object-buffer oracle asserted (kind -> count)

    def probe(self, name, *args):
        """The core's answer to a call that only steers the fuzzing (sizes, rights), made on
        both kernels so that their call counters (`seq`, in coherency events) stay equal."""
        return [getattr(side.k, name)(*args) for side in self.sides][0]

    # -- reporting -------------------------------------------------------------------------
    def script(self):
        lines = ["# Replays a vmo fuzz case on both kernels (python this_file.py).",
                 "import vmo", "from vmo._reference import Kernel as Reference",
                 HELPERS.strip(), "",
                 "def call(f):",
                 "    try:",
                 "        r = f()",
                 "    except Exception as e:",
                 "        print('   raise', type(e).__name__, getattr(e, 'status', ''), e)",
                 "        return None",
                 "    if isinstance(r, dict):  # stats(): the keys both kernels have",
                 "        r = {key: r[key] for key in %r}" % (STATS_KEYS,),
                 "    print('   ', r)",
                 "    return r", "",
                 "def run(K):",
                 "    k = K(**%r)" % (self.mem_kwargs,)]
        lines.append(OTHER_SETUP.rstrip("\n"))
        lines += ["    " + line for line in self.lines]
        lines += ["    if not k.closed:", "        print('stats', k.stats())", ""]
        if not self.unwrap:
            lines += ["for K in (vmo.Kernel, Reference):", "    print(K.__module__)",
                      "    run(K)"]
            return "\n".join(lines)
        # Metamorphic: the same program with plain ints must print the same.
        lines += [line.replace("def run(K):", "def run_with_plain_ints(K):") if
                  line.startswith("def run(K):") else line for line in
                  _unwrap("\n".join(lines[lines.index("def run(K):"):])).split("\n")]
        lines += ["K = %s.%s" % (self.core.cls.__module__, self.core.cls.__name__),
                  "print('as given'); run(K)", "print('with plain ints'); run_with_plain_ints(K)"]
        return "\n".join(lines)

    def label(self, i):
        if self.unwrap:
            return ("as given:      ", "with plain ints:")[i]
        return ("core:     ", "reference:")[i]

    def fail(self, message):
        raise AssertionError("%s\n\n--- reproducer (%d calls) ---\n%s\n--- end ---" % (
            message, self.calls, self.script()))

    # -- generators ------------------------------------------------------------------------
    def g_int(self, value):
        """A valid integer, sometimes wrapped in an integer-like type."""
        ch = self.ch
        if ch.chance(95 if not self.wild else 80):
            return str(value), True
        wrappers = ["Idx(%d)", "IntSub(%d)"]
        if 0 <= value <= U64:
            wrappers.append("np.uint64(%d)")
            wrappers.append("np.array(%d, dtype=np.uint64)")
        if -(1 << 63) <= value < (1 << 63):
            wrappers.append("np.int64(%d)")
        if 0 <= value <= U32:
            wrappers.append("np.uint32(%d)")
        if value in (0, 1):
            return ch.pick(["True" if value else "False"] + [w % value for w in wrappers]), True
        return ch.pick(wrappers) % value, True

    def g_hostile(self):
        if not self.wild:
            return self.g_int(self.ch.pick([0, 1, U64, MAX]))
        return self.ch.pick(HOSTILE_INTS)

    def g_from(self, pool, hostile=15):
        if self.wild and self.ch.chance(hostile):
            return self.g_hostile()
        return self.g_int(self.ch.pick(pool))

    def vmo_sizes(self):
        sizes = []
        for h in self.live[-8:]:
            status, size = self.probe("vmo_get_size", h) if self.open else (1, 0)
            if status == 0:
                sizes.append(size)
        return sizes

    def g_offset(self, allow_zero=True):
        ch = self.ch
        r = ch.int(0, 99)
        if r < 40 or not self.wild and r < 65:
            sizes = self.vmo_sizes()
            if sizes:  # a page edge inside (or just past) a live VMO
                size = min(ch.pick(sizes), 64 * PAGE)
                value = ch.int(0, size // PAGE + 1) * PAGE + ch.pick([0, 0, 0, 1, -1, 2048])
                return self.g_int(max(0, value))
        if r < 70:
            value = ch.int(0, 40) * PAGE + ch.pick([0, 0, 0, 1, -1, 2048, 8])
            return self.g_int(max(0, value))
        if r < 82:
            sizes = self.vmo_sizes()
            if sizes:
                return self.g_int(max(0, ch.pick(sizes) + ch.pick([0, 0, -1, 1, -PAGE, PAGE])))
            return self.g_int(ch.int(0, 9) * PAGE)
        if r < 92 or not self.wild:
            return self.g_int(ch.pick(BIG_OFFSETS))
        return self.g_hostile()

    g_size = g_offset

    def g_handle(self):
        ch = self.ch
        r = ch.int(0, 99)
        live = self.live
        if live and (r < 60 or not self.wild and r < 92):
            vmos = [h for h in live if h not in self.events]
            if vmos and ch.chance(90):
                return self.g_int(ch.pick(vmos))
            return self.g_int(ch.pick(live))
        if r < 70 and self.closed:
            return str(ch.pick(self.closed)), True
        if r < 75:
            return str(ch.pick(self.other_handles)), True
        if r < 88 or not self.wild:
            return str(ch.pick(BOGUS_HANDLES)), True
        return self.g_hostile()

    def g_buffer(self, purpose):
        """(expression, C-passable, nbytes or None) of a buffer argument. `purpose` is
        "in" (data read by the call) or "out" (filled by the call)."""
        ch = self.ch
        if ch.chance(4):
            # Buffers of Python object pointers, in wild and tame steps alike (a tame step's
            # handle is live, so the refusal itself is reached): refused in both directions
            # (ERR_INVALID_ARGS; see the module docstring), which `oracle_transfer` and
            # `oracle_phys_write` assert. A C caller can pass any pointer: no syscall may raise.
            return ch.pick(OBJECT_BUFFERS), True, None
        r = ch.int(0, 99) if self.wild else ch.int(11, 99)
        if r < 6:
            return "None", True, 0
        if r < 11:
            return ch.pick(NON_BUFFERS), False, None
        if r < 17 and self.view_ids:
            i = ch.pick(self.view_ids)
            return "views[%d]" % i, True, self.view_len[i]
        if r < 19:
            return "oview", True, PAGE
        if self.wild and not self.avoid_known:
            if r < 21 and self.dead_ids:
                return "dead[%d]" % ch.pick(self.dead_ids), False, None
            if r < 22:
                return "released(bytearray(%d))" % ch.pick(BUF_SIZES), False, None
            if r < 23:
                return "np.zeros(%d, 'M8[s]')" % ch.pick([0, 1, 4]), False, None
        n = ch.pick(BUF_SIZES)
        s = ch.int(1, 9)
        kinds = ch.int(0, 21) if self.wild or ch.chance(50) else ch.int(0, 2)
        if kinds == 0:
            return "bytearray(pat(%d, %d))" % (n, s), True, n
        if kinds == 1:
            return "pat(%d, %d)" % (n, s), True, n
        if kinds == 2:
            return "memoryview(bytearray(pat(%d, %d)))" % (n, s), True, n
        if kinds == 3:
            return "memoryview(bytearray(pat(%d, %d))).toreadonly()" % (n, s), True, n
        if kinds == 4:
            return "memoryview(bytearray(pat(%d, %d)))[::2]" % (2 * n, s), True, n
        if kinds == 5:
            return "memoryview(bytearray(pat(%d, %d)))[3:]" % (n + 3, s), True, n
        if kinds == 6:
            m = -(-n // 8)
            return "array('Q', pat(%d, %d))" % (8 * m, s), True, 8 * m
        if kinds == 7:
            code = ch.pick(["B", "b", "H", "I", "d", "f"])
            size = array(code).itemsize
            m = -(-n // size)
            return "array('%s', pat(%d, %d))" % (code, size * m, s), True, size * m
        if kinds == 8:
            m = ch.int(0, 9)
            return "array('Q', [SENTINEL] * %d)" % m, True, 8 * m
        if kinds == 9:
            m = ch.int(0, 9)
            return "np.full(%d, SENTINEL, dtype=np.uint64)" % m, True, 8 * m
        if kinds == 10:
            m = ch.pick(["ubyte", "uint32", "uint64", "char"])
            size = {"ubyte": 1, "uint32": 4, "uint64": 8, "char": 1}[m]
            k = -(-n // size)
            return "ct(ctypes.c_%s, %d, %d)" % (m, k, s), True, size * k
        # numpy
        dt = ch.pick(NUMPY_DTYPES)
        import numpy as np
        isz = np.dtype(dt).itemsize
        items = max(1, n // isz) if n else 0
        if kinds <= 12:
            return "npa(%d, %r, %d)" % (items, dt, s), True, items * isz
        if kinds == 13:
            return "ro(npa(%d, %r, %d))" % (items, dt, s), True, items * isz
        if kinds == 14:
            return "npa(%d, %r, %d)[::2]" % (2 * items, dt, s), True, items * isz
        a = ch.pick([1, 2, 3, 4])
        b = max(1, items // a) if items else 0
        if kinds == 15:
            return "npa(%d, %r, %d).reshape(%d, %d)" % (a * b, dt, s, a, b), True, a * b * isz
        if kinds == 16:
            return "np.asfortranarray(npa(%d, %r, %d).reshape(%d, %d))" % (
                a * b, dt, s, a, b), True, a * b * isz
        if kinds == 17:
            return "npa(%d, %r, %d).reshape(%d, %d).T" % (a * b, dt, s, a, b), True, a * b * isz
        if kinds == 18:
            return "np.array(%d, dtype='u8')" % ch.int(0, 255), True, 8
        if kinds == 19:
            return ch.pick(["np.zeros((0, 3), %r)" % dt, "np.zeros((3, 0), %r)" % dt,
                            "np.zeros(0, %r)" % dt, "np.zeros((2, 0))[:, ::2]",
                            "np.zeros(4, 'u1')[::-1][:0]", "memoryview(bytearray(0))[::2]",
                            "bytearray()", "b''"]), True, 0
        if kinds == 20:
            if ch.chance(30):
                return ch.pick(FIELD_NAMED_O) % (max(1, n // 8), s), True, None
            return ch.pick(["np.zeros(3, [('a', 'u1'), ('b', '<u8')])", "np.zeros(5, 'V3')",
                            "np.zeros(2, 'U2')", "npa(%d, 'u1', %d).reshape(%d, %d)[:, ::2]" % (
                                4 * max(1, n // 4), s, 4, max(1, n // 4))]), True, None
        return "npa(%d, %r, %d)[1:]" % (items + 1, dt, s), True, items * isz

    def g_length(self, nbytes):
        """An explicit length for a read or write (None means: omit it)."""
        ch = self.ch
        r = ch.int(0, 99)
        if r < 40 or not self.wild and r < 70:
            return None
        if r < 75 and nbytes is not None or not self.wild:
            return self.g_int(max(0, (nbytes or 0) + ch.pick([0, 0, -1, 1, -(nbytes or 0), 8])))
        if r < 88:
            return self.g_int(ch.pick([0, 1, 8, 4096, 4097, U64, 1 << 63]))
        return self.g_hostile()

    def held_paddrs(self):
        """Physical addresses of frames held by live VMOs (computed once per step)."""
        if self._held is None:
            self._held = []
            if self.open:
                for h in self.live[-12:]:
                    status, pages = self.core.k._vmo_pages(h)
                    if status == 0:
                        self._held.extend(list(pages.values())[:16])
        return self._held

    def g_paddr(self):
        ch = self.ch
        r = ch.int(0, 99)
        held = self.held_paddrs()
        if held and (r < 35 or not self.wild and r < 75):
            return self.g_int(ch.pick(held) + ch.pick([0, 0, 0, 1, 7, 2048, 4095, 4088, 4096]))
        if r < 70 or not self.wild and r < 95:
            base, frames = ch.pick(self.arenas)
            frame = ch.int(0, frames)
            in_page = ch.pick([0, 0, 0, 1, 7, 2048, 4095, 4088])
            value = base + frame * PAGE + in_page
            if value > U64:
                value = base + (frames - 1) * PAGE + in_page
            return self.g_int(value)
        if r < 88 or not self.wild:
            base, frames = ch.pick(self.arenas)
            return self.g_int(ch.pick([base - 1 if base else 0, base + frames * PAGE - 1,
                                       base + frames * PAGE, 0, U64, U64 - PAGE + 1, 1 << 63,
                                       0x100000, 0xFFFFF]))
        return self.g_hostile()

    def g_phys_length(self):
        ch = self.ch
        r = ch.int(0, 99)
        if r < 80 or not self.wild:
            return self.g_int(ch.pick([0, 1, 8, 100, 4095, 4096, 4097, 8192, 3 * PAGE,
                                       self.total_frames * PAGE, self.total_frames * PAGE + 1]))
        if r < 88:
            return self.g_int(ch.pick([U64, 1 << 63, (1 << 63) - 1, 1 << 40]))
        return self.g_hostile()

    # -- running one call on both ---------------------------------------------------------
    def run(self, name, target, args, kwargs=(), mode="call", c_ok=True, record=None,
            guard=None, both=False, oracle=None):
        """Evaluate `target` and the argument expressions on each side, make the call, and
        compare. ``mode``: "call", "get" (property), "set" (property = args[0]), "expr" (the
        target expression is the whole step). ``guard(tgt, args, kwargs)`` may raise Skip;
        ``oracle(name, tgt, args, kwargs)``, asked before the call, may return what the call
        must give (see `check_oracle`). Returns the core's outcome."""
        kwargs = list(kwargs)
        arg_src = ", ".join([a for a in args] + ["%s=%s" % kv for kv in kwargs])
        if mode == "call":
            line = "%s.%s(%s)" % (target, name.split(".")[-1], arg_src)
        elif mode == "get":
            line = "%s.%s" % (target, name.split(".")[-1])
        elif mode == "set":
            line = "setattr(%s, %r, %s)" % (target, name.split(".")[-1], args[0])
        else:
            line = target
        mat_src = ("lambda k, views, dead, oview: (%s, (%s), {%s})" % (
            target, "".join(a + ", " for a in args),
            ", ".join("%r: %s" % kv for kv in kwargs)) if mode != "expr" else
            "lambda k, views, dead, oview: (None, (), {})")
        mat = _compile(mat_src)
        step = _compile("lambda k, views, dead, oview: " + line)
        # The second side of a metamorphic case gets plain ints instead of integer-likes.
        mats = (mat, _compile(_unwrap(mat_src)) if self.unwrap else mat)
        steps = (step, _compile(_unwrap("lambda k, views, dead, oview: " + line))
                 if self.unwrap else step)
        expected = None
        if guard is not None or oracle is not None and self.open:
            try:
                tgt, a, kw = mat(*self.core.env())
            except Exception:  # the call itself will raise the same, on both sides
                pass
            else:
                if guard is not None:
                    guard(tgt, a, kw)  # raises Skip
                if oracle is not None and self.open:
                    expected = oracle(name, tgt, a, kw)
                del tgt, a, kw
        self.calls += 1
        self.lines.append(("%s = call(lambda: %s)" % (record, line)) if record else
                          "call(lambda: %s)" % line)
        outcomes = []
        materialised = []
        alias_handle = None
        for side, mat, step in zip(self.sides, mats, steps):
            if mode == "expr":
                outcomes.append(_outcome(step, *side.env()))
                materialised.append(())
                continue
            try:
                tgt, a, kw = mat(*side.env())
            except Exception as exc:  # an argument expression itself failed: compare that
                outcomes.append(("raise", type(exc).__name__, None, exc))
                materialised.append(())
                continue
            materialised.append(tuple(a) + tuple(kw.values()))
            if side is self.core and name in ALIASING_CALLS:
                alias_handle = _handle_of(name, tgt, a)
            outcomes.append(_outcome(_invoke, mode, tgt, name.split(".")[-1], a, kw))
        out_c, out_r = outcomes
        self.compare(name, out_c, out_r, materialised, c_ok)
        if expected is not None:
            self.check_oracle(name, expected, out_c)
        if name in ALIASING_CALLS and alias_handle is not None and self.open and any(
                _is_phys_view(x) and x is not self.core.oview for x in materialised[0]):
            self.check_aliased(name, alias_handle)
        return (out_c, out_r) if both else out_c

    # -- the oracle of buffers of Python object pointers -------------------------------------
    def oracle_transfer(self, name, tgt, a, kw):
        """What vmo_read / vmo_write / Vmo.read_into / Vmo.write must give for a buffer of
        Python object pointers (docs/semantics.md "Python-specific argument rules"): with the
        integers in range and the handle checks passed (a live VMO handle with READ, or WRITE),
        ERR_INVALID_ARGS for a non-empty transfer, nothing refused for an empty one; with a
        handle check failing, that check's status (they come first). None (no expectation
        beyond the core/reference agreement) for any other buffer, or when an argument does
        not convert or is out of range."""
        pythonic = name.startswith("Vmo.")
        if pythonic:
            if kw or len(a) > 2:
                return None
            buf, handle, offset, length = a[0], tgt.handle, a[1] if len(a) > 1 else 0, None
        else:
            if kw or len(a) not in (3, 4):
                return None
            buf, handle, offset = a[1], a[0], a[2]
            length = a[3] if len(a) > 3 else None
        if not _holds_objects(buf):
            return None
        try:
            h, off = operator.index(handle), operator.index(offset)
            with memoryview(buf) as m:
                n = m.nbytes if length is None else operator.index(length)
        except Exception:
            return None
        if not (0 <= h <= U32 and 0 <= off <= U64 and 0 <= n <= U64):
            return None  # ERR_INVALID_ARGS for the integers, before anything else
        status, info = self.probe("object_get_info", h, vmo.MX_INFO_HANDLE_BASIC)
        right = vmo.MX_RIGHT_WRITE if name in ("vmo_write", "Vmo.write") else vmo.MX_RIGHT_READ
        if status:
            return ("handle", pythonic, {Status.ERR_BAD_HANDLE})
        failed = set()  # the handle checks come first (which of two failing ones: not asserted)
        if not info.rights & right:
            failed.add(Status.ERR_ACCESS_DENIED)
        if info.type != vmo.MX_OBJ_TYPE_VMEM:
            failed.add(Status.ERR_WRONG_TYPE)
        if failed:
            return ("handle", pythonic, failed)
        if n == 0:
            # Nothing is refused: the range check alone (TrimRange) decides.
            return ("empty", pythonic, {Status.NO_ERROR, Status.ERR_OUT_OF_RANGE})
        return ("refused", pythonic, {Status.ERR_INVALID_ARGS})

    def oracle_phys_write(self, name, tgt, a, kw):
        """phys_write of a non-empty buffer of Python object pointers: MxError(ERR_INVALID_ARGS)
        whatever the address (the buffer is checked before the range), once the address
        converts."""
        if kw or len(a) != 2 or not _holds_objects(a[1]):
            return None
        try:
            operator.index(a[0])
            with memoryview(a[1]) as m:
                if m.nbytes == 0:
                    return None
        except Exception:
            return None
        return ("refused", True, {Status.ERR_INVALID_ARGS})

    def check_oracle(self, name, expected, out):
        """Assert the outcome an oracle predicted, ``(kind, pythonic, statuses)``: one of
        ``statuses`` (a syscall's (status, 0), or for the Pythonic layer and phys_write
        MxError(status), and for an accepted empty transfer the int 0). Both kernels already
        agree on the outcome."""
        kind, pythonic, statuses = expected
        self.oracle_checks[kind] = self.oracle_checks.get(kind, 0) + 1
        if pythonic:
            ok = out[0] == "raise" and out[1] == "MxError" and out[2] in statuses or \
                Status.NO_ERROR in statuses and out[0] == "ok" and type(out[1]) is int \
                and out[1] == 0
            want = " or ".join(sorted("MxError(%s)" % st.name if st else "0"
                                      for st in statuses))
        else:
            ok = out[0] == "ok" and isinstance(out[1], tuple) and len(out[1]) == 2 \
                and _status_of(out[1]) in statuses and out[1][1] == 0
            want = " or ".join(sorted("(%s, 0)" % st.name for st in statuses))
        if not ok:
            what = {"refused": "a non-empty transfer, every check before the buffer's passed",
                    "empty": "an empty transfer: nothing to refuse",
                    "handle": "a failing handle check, which comes before the buffer's"}[kind]
            self.fail("%s with a buffer of Python object pointers (%s) must give %s on both "
                      "kernels (docs/semantics.md \"Python-specific argument rules\"), gave %s"
                      % (name, what, want, _shown(out)))

    def check_aliased(self, name, handle):
        """A read or write whose buffer was a view of this kernel's own memory: the VMO's
        bytes must agree at once (an overlapping copy may corrupt bytes outside the view)."""
        got = [side.k.vmo_read_bytes(handle, 0, 64 * PAGE) for side in self.sides]
        if got[0] != got[1]:
            if self.tolerate:
                raise KnownDivergence("overlapping-memcpy")
            a, b = got[0][1], got[1][1]
            first = next((i for i, (p, q) in enumerate(zip(a, b)) if p != q), None)
            self.fail("%s with a view of the kernel's own memory as its buffer left the VMO "
                      "%#x with other bytes (first at byte %s; known bug 'overlapping-memcpy', "
                      "fixed in 34613fe):\n  %s %r\n  %s %r" % (
                          name, handle, first, self.label(0), a[first:first + 16] if first
                          is not None else a[:16], self.label(1),
                          b[first:first + 16] if first is not None else b[:16]))

    def compare(self, name, out_c, out_r, materialised, c_ok):
        if out_c[0] == "ok" and out_r[0] == "ok":
            n_c, n_r = _norm(out_c[1]), _norm(out_r[1])
            if name == "stats":
                n_c = _norm({k: out_c[1][k] for k in STATS_KEYS})
                n_r = _norm({k: out_r[1][k] for k in STATS_KEYS})
            same = n_c == n_r
        elif out_c[0] == "raise" and out_r[0] == "raise":
            same = out_c[1:3] == out_r[1:3]
        else:
            same = False
        if same:
            # The buffers each side was handed must have ended identical.
            for x, y in zip(*materialised):
                if any(isinstance(v, (int, str, float)) or v is None for v in (x, y)):
                    continue  # (a metamorphic case pairs a 0-d array with its plain int)
                bx, by = _contents(x), _contents(y)
                if bx != by:
                    aliasing = isinstance(x, memoryview) and x is not self.core.oview \
                        and type(x.obj).__name__ == "PhysView" and not self.unwrap
                    if aliasing and self.tolerate:
                        # 7. (fixed in 34613fe) The buffer is a view of this kernel's own
                        #    frames: the core copied between overlapping regions with memcpy
                        #    (undefined behaviour).
                        raise KnownDivergence("overlapping-memcpy")
                    first = next((i for i, (p, q) in enumerate(zip(bx or b"", by or b""))
                                  if p != q), None)
                    self.fail("%s: the buffers differ after the call (first at byte %s)%s:\n"
                              "  %s %r\n  %s %r" % (name, first, " (known bug "
                                                     "'overlapping-memcpy')" if aliasing else "",
                                                     self.label(0),
                                                     (bx or b"")[:64], self.label(1),
                                                     (by or b"")[:64]))
        if not same:
            key = _known_divergence(name, out_c, out_r, materialised[1])
            if self.unwrap and name in ("Vmo.commit", "Vmo.decommit", "Vmo.lookup",
                                        "Vmo.clone") and key is None:
                # 8. The Pythonic layer's size=None ("to the end") is 0 for an integer-like
                #    offset that is not an int (numpy integers, __index__ objects).
                key = "pythonic-size-none-integer-likes"
            if self.unwrap and name == "Vmo.op_range" and key is None and out_c[0] == "raise" \
                    and out_c[1] == "TypeError" and "unhashable" in str(out_c[3]):
                # 9. (fixed; tests/test_found_by_fuzz.py) Vmo.op_range looked its op up in a
                #    dict for the error message, after the syscall: an unhashable
                #    integer-like op (a 0-d numpy array) raised TypeError even when the op
                #    succeeded. The same syscall ran in both runs.
                key = "pythonic-op-range-unhashable-op"
            if key is not None and (self.tolerate or key in OPEN_KNOWN):
                if key in STATELESS_KNOWN and name.startswith(("vmo_", "Vmo.", "phys_read")) \
                        and not any(_is_phys_view(a) for a in materialised[0] +
                                    materialised[1]):
                    self.tolerated[key] = self.tolerated.get(key, 0) + 1
                    return
                raise KnownDivergence(key)
            self.fail("%s diverged%s:\n  %s %s\n  %s %s" % (
                name, " (known bug %r)" % key if key else "", self.label(0), _shown(out_c),
                self.label(1), _shown(out_r)))
        if out_c[0] == "raise":
            exc = out_c[3]
            if not isinstance(exc, ALLOWED_EXCEPTIONS):
                self.fail("%s raised %s on both kernels: %s" % (name, out_c[1], exc))
            if isinstance(exc, ValueError) and not self.open and "closed" in str(exc):
                return
            if (name in C_SYSCALLS or name == "vmo_lookup_runs") and c_ok:
                self.fail("%s raised %s(%s) on both kernels for arguments a C caller could "
                          "pass (docs/api.md: the syscalls never raise for those)" % (
                              name, out_c[1], exc))
        elif name in C_SYSCALLS or name in ("vmo_read_bytes", "vmo_lookup_runs"):
            status = _status_of(out_c[1])
            if type(status) is not Status:
                self.fail("%s returned status %r, not a vmo.Status" % (name, status))
            if isinstance(out_c[1], tuple) and status != 0:
                value = out_c[1][1]
                if name == "vmo_read_bytes":
                    if value != b"":
                        self.fail("vmo_read_bytes failed with %s but returned %r, not b''" % (
                            status.name, value[:16]))
                elif not (value == 0 and type(value) is int):
                    self.fail("%s failed with %s but returned value %r, not 0 (docs/api.md)" % (
                        name, status.name, value))

    # -- the handle bookkeeping --------------------------------------------------------------
    def note_handles(self, outcome):
        """Remember handle values a call returned; refresh which ones are live."""
        if outcome is not None and outcome[0] == "ok":
            value = outcome[1]
            if isinstance(value, Vmo):
                value = (0, value.handle)
            if isinstance(value, tuple) and len(value) == 2 and value[0] == 0 \
                    and type(value[1]) is int and value[1] & 1 and value[1] not in self.seen:
                self.seen.append(value[1])
        if not self.open:
            self.live = []
            return
        live, closed = [], []
        for h in self.seen:
            status, info = self.probe("object_get_info", h, 2)
            if status == 0:
                live.append(h)
                if info.type != vmo.MX_OBJ_TYPE_VMEM:
                    self.events.add(h)
            else:
                closed.append(h)
        self.live, self.closed = live, closed

    # -- guards against host-sized allocations ----------------------------------------------
    def _read_size(self, handle, offset, length):
        """The bytes a read of (handle, offset, length) would return, if that is knowable."""
        try:
            h, off = operator.index(handle), operator.index(offset)
            n = operator.index(length)
        except Exception:
            return None
        if not (0 <= h <= U32 and 0 <= off <= U64 and 0 <= n <= U64) or not self.open:
            return None
        status, size = self.probe("vmo_get_size", h)
        if status or off > size:
            return None
        return min(n, size - off)

    def guard_read_bytes(self, tgt, a, kw):
        size = self._read_size(a[0], a[1], a[2])
        if size is not None and READ_CAP < size < (1 << 63):
            raise Skip

    def guard_vmo_read(self, tgt, a, kw):
        if len(a) >= 2:
            size = self._read_size(tgt.handle, a[0], a[1])
            if size is not None and READ_CAP < size < (1 << 63):
                raise Skip

    def guard_vmo_lookup(self, tgt, a, kw):
        try:
            h = operator.index(tgt.handle)
            off = operator.index(a[0]) if a else 0
            size = a[1] if len(a) > 1 else None
            if size is None:
                status, vsize = self.probe("vmo_get_size", h)
                size = vsize - off if status == 0 and 0 <= off <= vsize else 0
            size = operator.index(size)
        except Exception:
            return
        if off >= 0 and size > 0 and (off % PAGE + size) // PAGE > 4096:
            raise Skip

    # -- the steps ---------------------------------------------------------------------------
    def step(self):
        self.wild = self.ch.chance(35)
        self._held = None
        if self.open and not [h for h in self.live if h not in self.events] \
                and self.ch.chance(60):
            try:
                self.ch.pick([self.s_vmo_create, self.s_vmo_create, self.s_create_vmo,
                              self.s_vmo_create_contiguous])()
            except Skip:
                pass
            self.check()
            return
        r = self.ch.int(0, _STEP_TOTAL - 1)
        for limit, name in _STEP_TABLE:
            if r < limit:
                try:
                    getattr(self, name)()
                except Skip:
                    pass
                break
        self.check()

    def s_vmo_create(self):
        ch = self.ch
        size = self.g_int(ch.pick([0, 1, 4095, 4096, 4097, 2 * PAGE, 3 * PAGE + 1, 5 * PAGE,
                                   8 * PAGE, 16 * PAGE, 40 * PAGE, 1 << 30, MAX, MAX + 1, U64])) \
            if ch.chance(85) else self.g_hostile()
        args = [size]
        if ch.chance(50):
            args.append(self.g_from(CREATE_OPTIONS))
        out = self.run("vmo_create", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args))
        self.note_handles(out)

    def s_vmo_create_contiguous(self):
        ch = self.ch
        size = self.g_int(ch.pick([1, 4096, 4097, 2 * PAGE, 3 * PAGE, 4 * PAGE, 8 * PAGE,
                                   16 * PAGE, 33 * PAGE, 0, MAX, U64, 1 << 40])) \
            if ch.chance(85) else self.g_hostile()
        args = [size]
        if ch.chance(70):
            args.append(self.g_from(ALIGNMENTS))
        out = self.run("vmo_create_contiguous", "k", [a for a, _ in args],
                       c_ok=all(ok for _, ok in args))
        self.note_handles(out)

    def s_vmo_read(self):
        h = self.g_handle()
        buf, ok_b, nbytes = self.g_buffer("out")
        off = self.g_offset()
        args = [h, (buf, ok_b), off]
        length = self.g_length(nbytes)
        if length is not None:
            args.append(length)
        self.run("vmo_read", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args),
                 oracle=self.oracle_transfer)

    def s_vmo_read_bytes(self):
        ch = self.ch
        args = [self.g_handle(), self.g_offset(),
                self.g_int(ch.pick([0, 1, 100, 4096, 4097, 3 * PAGE, U64, 1 << 63, 64 * PAGE]))
                if ch.chance(85) else self.g_hostile()]
        self.run("vmo_read_bytes", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args),
                 guard=self.guard_read_bytes)

    def s_vmo_write(self):
        h = self.g_handle()
        buf, ok_b, nbytes = self.g_buffer("in")
        off = self.g_offset()
        args = [h, (buf, ok_b), off]
        length = self.g_length(nbytes)
        if length is not None:
            args.append(length)
        self.run("vmo_write", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args),
                 oracle=self.oracle_transfer)

    def s_vmo_get_size(self):
        h = self.g_handle()
        self.run("vmo_get_size", "k", [h[0]], c_ok=h[1])

    def s_vmo_committed_bytes(self):
        h = self.g_handle()
        self.run("vmo_committed_bytes", "k", [h[0]], c_ok=h[1])

    def s_vmo_lookup_runs(self):
        args = [self.g_handle(), self.g_offset(), self.g_size()]
        self.run("vmo_lookup_runs", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args))

    def s_vmo_set_size(self):
        args = [self.g_handle(), self.g_size()]
        self.run("vmo_set_size", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args))

    def s_vmo_op_range(self):
        ch = self.ch
        op = self.g_from(OPS, hostile=8)
        args = [self.g_handle(), op, self.g_offset(), self.g_size()]
        r = ch.int(0, 9)
        if op[0] == "5" or r < 3:
            if ch.chance(90):
                buf, ok_b, nbytes = self.g_buffer("out") if ch.chance(40) else \
                    self._lookup_buffer()
                args.append((buf, ok_b))
                if ch.chance(35):
                    args.append((self.g_length(nbytes) or ("None", True)))
        self.run("vmo_op_range", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args))

    def _lookup_buffer(self):
        ch = self.ch
        m = ch.pick([0, 1, 2, 3, 4, 8, 16, 16, 16, 41])
        return ch.pick([("array('Q', [SENTINEL] * %d)" % m, True, 8 * m),
                        ("np.full(%d, SENTINEL, dtype=np.uint64)" % m, True, 8 * m),
                        ("bytearray(b'\\xa5' * %d)" % (8 * m + 1), True, 8 * m + 1),
                        ("np.full(%d, SENTINEL, dtype=np.uint64)[::2]" % (2 * m), True, 8 * m),
                        ("memoryview(bytearray(b'\\xa5' * %d))[1:]" % (8 * m + 1), True, 8 * m)])

    def s_vmo_clone(self):
        offset = self.g_offset() if self.wild else self.g_int(self.ch.int(0, 12) * PAGE)
        args = [self.g_handle(), self.g_from(CLONE_OPTIONS, hostile=8), offset, self.g_size()]
        out = self.run("vmo_clone", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args))
        self.note_handles(out)

    def s_handle_close(self):
        h = self.g_handle()
        self.run("handle_close", "k", [h[0]], c_ok=h[1])
        self.note_handles(None)

    def s_handle_duplicate(self):
        args = [self.g_handle(), self.g_from(RIGHTS, hostile=8)]
        out = self.run("handle_duplicate", "k", [a for a, _ in args],
                       c_ok=all(ok for _, ok in args))
        self.note_handles(out)

    def s_handle_replace(self):
        args = [self.g_handle(), self.g_from(RIGHTS, hostile=8)]
        out = self.run("handle_replace", "k", [a for a, _ in args],
                       c_ok=all(ok for _, ok in args))
        self.note_handles(out)

    def s_object_get_info(self):
        args = [self.g_handle(), self.g_from(TOPICS, hostile=8)]
        self.run("object_get_info", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args))

    def s_event_create(self):
        args = [] if self.ch.chance(50) else [self.g_from([0, 0, 0, 1, U32])]
        out = self.run("event_create", "k", [a for a, _ in args],
                       c_ok=all(ok for _, ok in args))
        self.note_handles(out)

    def s_stats(self):
        self.run("stats", "k", [])

    def s_dirty_log(self):
        """The dirty log, read and cleared or not (docs/semantics.md "The dirty log"): the
        same addresses on both kernels, live views' frames included; any object as `clear`."""
        clear = self.ch.pick(["", "True", "False", "0", "1", "None", "[]", "[0]", "2 ** 200",
                              "'no'", "b''"])
        self.run("dirty_log", "k", [clear] if clear else [])

    def s_snapshot_restore(self):
        """A snapshot restored at once (state unchanged) or refused alike while a view pins
        frames; a restore of what is no snapshot: TypeError on both."""
        if self.ch.chance(50):
            self.run("restore", "k", ["k.snapshot()"])
        else:
            self.run("restore", "k", [self.ch.pick(["None", "0", "k", "views", "b''"])])

    def s_close(self):
        if self.ch.chance(40):  # rare: the rest of the case runs against closed kernels
            self.run("close", "k", [])
            self.open = False
            self.note_handles(None)

    def s_phys_read(self):
        args = [self.g_paddr(), self.g_phys_length()]
        self.run("phys_read", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args))

    def s_phys_write(self):
        buf, ok_b, _ = self.g_buffer("in")
        args = [self.g_paddr(), (buf, ok_b)]
        self.run("phys_write", "k", [a for a, _ in args], c_ok=all(ok for _, ok in args),
                 oracle=self.oracle_phys_write)

    def s_phys_view(self):
        args = [self.g_paddr(), self.g_phys_length()]
        vid = self.next_view
        out_c, out_r = self.run("phys_view", "k", [a for a, _ in args],
                                c_ok=all(ok for _, ok in args), record="views[%d]" % vid,
                                both=True)
        if out_c[0] != "ok":
            self.lines[-1] = self.lines[-1].split(" = ", 1)[1]  # nothing to keep
        else:  # run() compared them: keep both sides' views
            self.next_view += 1
            self.core.views[vid], self.ref.views[vid] = out_c[1], out_r[1]
            self.view_ids.append(vid)
            self.view_len[vid] = out_c[1].nbytes

    def s_view_op(self):
        ch = self.ch
        if not self.view_ids:
            return self.s_phys_view()
        vid = ch.pick(self.view_ids)
        n = self.view_len[vid]
        r = ch.int(0, 9)
        if r < 3:  # a device writes through the view
            start = ch.int(0, n)
            length = ch.pick([0, 1, 8, n - start, n - start + 1]) if ch.chance(90) else 2
            length = max(0, length)
            self.run("view write", "views[%d].__setitem__(slice(%d, %d), pat(%d, %d))" % (
                vid, start, start + length, length, ch.int(1, 9)), [], mode="expr")
        elif r < 5:  # a device reads through the view
            start = ch.int(0, n)
            self.run("view read", "bytes(views[%d][%d:%d])" % (vid, start, ch.int(start, n + 1)),
                     [], mode="expr")
        elif r < 8:  # release
            self.run("view release", "dead.__setitem__(%d, views.pop(%d)) or dead[%d].release()"
                     % (vid, vid, vid), [], mode="expr")
            self.view_ids.remove(vid)
            self.dead_ids.append(vid)
        else:  # drop the last reference
            self.run("view drop", "(views.pop(%d), None)[1]" % vid, [], mode="expr")
            self.view_ids.remove(vid)

    # -- the Pythonic layer ----------------------------------------------------------------
    def s_create_vmo(self):
        ch = self.ch
        size = self.g_int(ch.pick([0, 1, 4096, 3 * PAGE + 7, 8 * PAGE, MAX, MAX + 1])) \
            if ch.chance(85) else self.g_hostile()
        out = self.run("create_vmo", "k", [size[0]])
        self.note_handles(out)

    def s_create_contiguous_vmo(self):
        ch = self.ch
        args = [self.g_int(ch.pick([1, 4096, 2 * PAGE, 4 * PAGE, 0, U64])) if ch.chance(85)
                else self.g_hostile()]
        if ch.chance(60):
            args.append(self.g_from(ALIGNMENTS))
        out = self.run("create_contiguous_vmo", "k", [a for a, _ in args])
        self.note_handles(out)

    def s_vmo_method(self):
        ch = self.ch
        target = "k.vmo(%s)" % self.g_handle()[0]
        r = ch.int(0, 25)
        guard = None
        mode = "call"
        args = []
        if r == 0:
            name, mode = "size", "get"
        elif r == 1:
            name, mode, args = "size", "set", [self.g_size()[0]]
        elif r == 2:
            name, mode = "committed_bytes", "get"
        elif r == 3:
            name, mode = "rights", "get"
        elif r == 4:
            name = "read"
            args = [self.g_offset()[0], self.g_int(ch.pick([0, 1, 4096, 5000, U64]))[0]
                    if ch.chance(85) else self.g_hostile()[0]]
            guard = self.guard_vmo_read
        elif r == 5:
            name = "read_into"
            args = [self.g_buffer("out")[0]] + ([self.g_offset()[0]] if ch.chance(60) else [])
        elif r == 6:
            name = "write"
            args = [self.g_buffer("in")[0]] + ([self.g_offset()[0]] if ch.chance(70) else [])
        elif r == 7:
            name = "op_range"
            args = [self.g_from(OPS, hostile=8)[0], self.g_offset()[0], self.g_size()[0]]
            if ch.chance(50):
                args.append(self._lookup_buffer()[0])
        elif r in (8, 9, 10, 11):
            name = ["commit", "decommit", "lookup", "clone"][r - 8]
            if ch.chance(70):
                args.append(self.g_offset()[0])
                if ch.chance(60):
                    args.append(self.g_size()[0])
            if name == "lookup":
                guard = self.guard_vmo_lookup
        elif r == 12:
            name = ch.pick(["cache_sync", "cache_invalidate", "cache_clean",
                            "cache_clean_invalidate"])
            args = [self.g_offset()[0], self.g_size()[0]]
        elif r == 13:
            name = "duplicate"
            if ch.chance(60):
                args = [self.g_from(RIGHTS, hostile=8)[0]]
        elif r == 14:
            name, args = "replace", [self.g_from(RIGHTS, hostile=8)[0]]
        elif r == 15:
            name = "info"
        elif r == 16:
            name = "close"
        elif r == 17:
            name, mode, target = "use", "expr", "use(%s)" % target
        elif r == 18:
            name, mode, target = "repr", "expr", "repr(%s)" % target
        elif r == 19:
            name, mode = "closed", "get"
        else:  # the common ones again, so that data moves
            name = ch.pick(["write", "commit", "clone", "decommit", "duplicate", "read"])
            if name == "write":
                args = [self.g_buffer("in")[0], self.g_offset()[0]]
            elif name == "read":
                args = [self.g_offset()[0], self.g_int(ch.pick([1, 4096, 3 * PAGE]))[0]]
                guard = self.guard_vmo_read
        out = self.run("Vmo." + name, target, args, mode=mode, guard=guard,
                       oracle=self.oracle_transfer if name in ("write", "read_into") else None)
        self.note_handles(out)

    # -- after every step ------------------------------------------------------------------
    def check(self):
        self.note_handles(None)
        if not self.open:
            for side in self.sides:
                for hook in (side.k.stats, side.k._check, side.k._allocator_state):
                    try:
                        hook()
                    except ValueError:
                        continue
                    self.fail("%s.%s() did not raise ValueError after close()" % (
                        side.cls.__module__, hook.__name__))
            return
        sc, sr = self.core.k.stats(), self.ref.k.stats()
        a = {key: sc[key] for key in STATS_KEYS}
        b = {key: sr[key] for key in STATS_KEYS}
        if a != b:
            self.fail("stats() diverged:\n  core      %s\n  reference %s" % (a, b))
        if a["free_frames"] + a["committed_frames"] != a["total_frames"]:
            self.fail("stats() inconsistent: %s" % a)
        ec, er = self.core.k.coherency_events(), self.ref.k.coherency_events()
        if ec != er:
            self.fail("coherency_events() diverged:\n  core      %s\n  reference %s" % (ec, er))
        for side in self.sides:
            try:
                side.k._check()
            except AssertionError as exc:
                self.fail("%s._check() failed: %s" % (side.cls.__module__, exc))
        ac, ar = self.core.k._allocator_state(), self.ref.k._allocator_state()
        if _norm(tuple(ac)) != _norm(tuple(ar)) or list(ac[1]) != list(ar[1]):
            self.fail("_allocator_state() diverged:\n  core      %r\n  reference %r" % (ac, ar))

    # -- the end of a case -------------------------------------------------------------------
    def finish(self):
        ch = self.ch
        if self.open:
            self.deep_compare()
        # Release every view (some released, some dropped), while the kernels are open or not.
        for vid in list(self.view_ids):
            if ch.chance(50):
                self.run("view release", "views.pop(%d).release()" % vid, [], mode="expr")
            else:
                self.run("view drop", "(views.pop(%d), None)[1]" % vid, [], mode="expr")
            self.view_ids.remove(vid)
            self.check()
        if self.open:
            s = {key: self.core.k.stats()[key] for key in STATS_KEYS}
            if s["pinned_frames"]:
                self.fail("pinned_frames %d with every view released" % s["pinned_frames"])
            # Close every live handle (in a random order): every frame must come back.
            live = list(self.live)
            while live:
                h = live.pop(ch.int(0, len(live) - 1))
                self.run("handle_close", "k", [str(h)])
                self.check()
            for side in self.sides:
                s = side.k.stats()
                expect = {"free_frames": s["total_frames"], "committed_frames": 0, "vmos": 0,
                          "handles": 0, "pinned_frames": 0}
                got = {key: s[key] for key in expect}
                if got != expect:
                    self.fail("%s leaked after closing every handle: %s" % (
                        side.cls.__module__, got))
            self.run("close", "k", [])
            self.open = False

    def deep_compare(self):
        for h in self.seen + self.other_handles[:1] + [0]:
            hs = str(h)
            for name in ("vmo_get_size", "vmo_committed_bytes", "_vmo_pages"):
                self.run(name, "k", [hs])
            self.run("object_get_info", "k", [hs, "2"])
            status, size = self.probe("vmo_get_size", h)
            if status == 0:
                self.run("vmo_read_bytes", "k", [hs, "0", str(min(size, 16 * PAGE))])
                self.run("vmo_lookup_runs", "k", [hs, "0", str(max(size, 1))])
                status, pages = self.core.k._vmo_pages(h)
                for idx in list(pages)[:8]:
                    if idx * PAGE < size:
                        self.run("vmo_read_bytes", "k", [hs, str(idx * PAGE), str(PAGE)])
        for base, frames in self.arenas:
            for f in range(frames):
                self.run("phys_read", "k", [str(base + f * PAGE), str(PAGE)])
        self.check()

    def dispose(self):
        for side in self.sides:
            side.dispose()


# (weight, method)
STEP_WEIGHTS = [
    (90, "s_vmo_create"), (35, "s_vmo_create_contiguous"), (60, "s_vmo_read"),
    (30, "s_vmo_read_bytes"), (90, "s_vmo_write"), (20, "s_vmo_get_size"),
    (15, "s_vmo_committed_bytes"), (45, "s_vmo_set_size"), (120, "s_vmo_op_range"),
    (70, "s_vmo_clone"), (50, "s_handle_close"), (35, "s_handle_duplicate"),
    (25, "s_handle_replace"), (20, "s_object_get_info"), (15, "s_event_create"),
    (5, "s_stats"), (5, "s_close"), (25, "s_phys_read"), (30, "s_phys_write"),
    (40, "s_phys_view"), (50, "s_view_op"), (15, "s_create_vmo"),
    (10, "s_create_contiguous_vmo"), (95, "s_vmo_method"), (10, "s_dirty_log"),
    (5, "s_snapshot_restore"), (20, "s_vmo_lookup_runs"),
]
_STEP_TABLE = []
_STEP_TOTAL = 0
for _weight, _method in STEP_WEIGHTS:
    _STEP_TOTAL += _weight
    _STEP_TABLE.append((_STEP_TOTAL, _method))


class Tally:
    """What ran: cases, calls, tolerated known divergences."""

    def __init__(self, progress_every=0):
        self.cases = 0
        self.calls = 0
        self.known = {}
        self.oracle = {}
        self.started = time.monotonic()
        self.progress_every = progress_every

    def add(self, case):
        self.cases += 1
        self.calls += case.calls
        if case.known:
            self.known[case.known] = self.known.get(case.known, 0) + 1
        for key, n in case.tolerated.items():
            self.known[key] = self.known.get(key, 0) + n
        for key, n in case.oracle_checks.items():
            self.oracle[key] = self.oracle.get(key, 0) + n
        if self.progress_every and self.cases % self.progress_every == 0:
            print("vmo fuzz: %d cases, %d calls so far" % (self.cases, self.calls),
                  file=sys.stderr, flush=True)

    def summary(self):
        text = "vmo fuzz: %d fuzz cases run (%d calls compared on both kernels)" % (
            self.cases, self.calls)
        if self.oracle:
            text += ("; object-pointer buffers asserted: %d refused, %d empty transfers, %d "
                     "failing handle checks first" % (self.oracle.get("refused", 0),
                                                      self.oracle.get("empty", 0),
                                                      self.oracle.get("handle", 0)))
        if self.known:
            text += "; tolerated known divergences: %s" % ", ".join(
                "%s x%d" % kv for kv in sorted(self.known.items()))
        return text


def run_case(chooser, max_steps, tolerate=False, metamorphic=None):
    """Build a case from `chooser`, run up to `max_steps` steps and the end checks; return it."""
    case = Case(chooser, tolerate=tolerate, metamorphic=metamorphic)
    try:
        steps = chooser.int(1, max_steps)
        for _ in range(steps):
            case.step()
        case.finish()
    except KnownDivergence as known:
        case.known = known.key
    finally:
        case.dispose()
    return case


# -- hypothesis profiles ---------------------------------------------------------------------------
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much,
                                      HealthCheck.large_base_example])
# The default profile does not shrink: a failing case is reported at once, as the standalone
# reproducer script of up to 60 calls (shrinking one can take hypothesis up to 5 minutes).
_NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
settings.register_profile("vmo-fuzz-default", max_examples=800, phases=_NO_SHRINK, **_COMMON)
settings.register_profile("fuzz", max_examples=100_000, **_COMMON)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")
_LONG = _PROFILE in ("fuzz", "vmo-fuzz")
FUZZ_SETTINGS = settings(settings.get_profile("fuzz" if _LONG else "vmo-fuzz-default"))
if os.environ.get("VMO_FUZZ_SHRINK", "") not in ("", "0"):
    FUZZ_SETTINGS = settings(FUZZ_SETTINGS, phases=tuple(Phase))
if os.environ.get("VMO_FUZZ_EXAMPLES"):
    FUZZ_SETTINGS = settings(FUZZ_SETTINGS, max_examples=int(os.environ["VMO_FUZZ_EXAMPLES"]))
MAX_STEPS = 80 if _LONG else 60
BATCH = 2000
TOLERATE = os.environ.get("VMO_FUZZ_TOLERATE_KNOWN", "") not in ("", "0")


def test_fuzz_core_against_reference():
    """The differential fuzz: see the module docstring. With ``-s`` it prints how many cases
    ran ("vmo fuzz: N fuzz cases run ..."). A long budget runs as a series of fresh hypothesis
    runs of at most BATCH cases each, because one hypothesis run keeps a record of every case
    it tried (about 0.2 MiB per case here)."""
    tally = Tally(progress_every=1000 if _LONG else 0)
    total = FUZZ_SETTINGS.max_examples
    done = 0
    try:
        while done < total:
            batch = min(BATCH, total - done)

            @settings(FUZZ_SETTINGS, max_examples=batch)
            @given(st.data())
            def one_case(data):
                tally.add(run_case(HypothesisChooser(data), MAX_STEPS, TOLERATE))

            one_case()
            done += batch
    finally:
        print("\n" + tally.summary())
    assert tally.cases > 0


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_fuzz_integer_likes_behave_as_their_int(impl):
    """Metamorphic: the same random program run twice on one implementation, the second time
    with every integer-like argument (numpy integers, 0-d arrays, __index__ objects, int
    subclasses) replaced by the int it indexes to, must behave identically (semantics:
    "Integer arguments are converted with operator.index"). This reaches the Pythonic layer,
    which both kernels share and the core/reference comparison therefore cannot check."""
    cls = vmo.Kernel if impl == "core" else ReferenceKernel
    tally = Tally()

    @settings(FUZZ_SETTINGS, max_examples=max(1, FUZZ_SETTINGS.max_examples // 8))
    @given(st.data())
    def one_case(data):
        tally.add(run_case(HypothesisChooser(data), MAX_STEPS, TOLERATE, metamorphic=cls))

    try:
        one_case()
    finally:
        print("\n" + tally.summary().replace("vmo fuzz", "vmo metamorphic fuzz (%s)" % impl)
              .replace("on both kernels", "as given and with plain ints"))


@pytest.mark.parametrize("impl", ["core", "reference"])
@pytest.mark.parametrize("wrap", ["np.int64", "np.uint64", "Idx", "IntSub"])
@pytest.mark.parametrize("method", ["commit", "decommit", "lookup", "clone"])
def test_integer_like_offset_with_default_size(impl, wrap, method):
    """The metamorphic property above, made deterministic for the case it found: a `Vmo`
    method whose size defaults to "to the end" (docs/api.md: size=None) must treat an integer-like
    offset as the int it indexes to (semantics: numpy integers work wherever an integer is
    due). (Open at a691102: `_to_end` tests isinstance(offset, int), so the size becomes 0.)"""
    cls = vmo.Kernel if impl == "core" else ReferenceKernel
    results = []
    for offset in (PAGE, eval("%s(%d)" % (wrap, PAGE), NS)):
        with cls(memory_size=64 * PAGE) as k, k.create_vmo(4 * PAGE) as v:
            # COMMIT starts from page 0 only; DECOMMIT and LOOKUP from every page committed.
            v.commit(0, PAGE if method == "commit" else 4 * PAGE)
            try:
                value = getattr(v, method)(offset)
                value = (value.size, value.close())[0] if isinstance(value, Vmo) else value
                outcome = ("ok", _norm(value), v.committed_bytes)
            except MxError as exc:
                outcome = ("MxError", exc.status, v.committed_bytes)
            results.append(outcome)
    assert results[0] == results[1], "v.%s(%s(%d)) gave %r, v.%s(%d) gave %r" % (
        method, wrap, PAGE, results[1], method, PAGE, results[0])


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_seeded_smoke(seed):
    """A few fixed-seed cases, so that the engine itself is exercised deterministically. These
    tolerate the known (reported) divergences; test_fuzz_core_against_reference does not."""
    import random

    case = run_case(RandomChooser(random.Random(seed)), 120, tolerate=True)
    assert case.calls > 0


# -- the state file (docs/state-format.md): both kernels' load against mutated files ------------
# A saved file is mutated (bits flipped, bytes set, fields overwritten with edge values, bytes
# inserted, cut or removed), and half the time its CRC-32s and END are recomputed so that the
# mutation reaches the checks behind them. Both kernels load it: each must either raise
# ValueError or give a kernel that passes `_check()`, and they must agree: both refuse, or
# both accept the same state (compared through the reference's canonical file of it).
_STATE_SECTION = struct.Struct("<4sIQ")
_STATE_TRAILER = struct.Struct("<II")
_STATE_EDGES = [0, 1, 2, 7, 8, 1023, 1024, 1025, 4095, 4096, 0x7FFF_FFFF, 0xFFFF_FFFF,
                1 << 32, 1 << 52, 1 << 63, (1 << 64) - 1, 0xFFFF_FFFF_FFFF_F000]
_state_seeds = []


def state_seed_files():
    """A few saved files of small kernels (clones, events, freed frames and slots)."""
    if not _state_seeds:
        for memory in (32 * PAGE, [(0x40_0000, 8 * PAGE), (0x1000, 16 * PAGE)]):
            k = vmo.Kernel(memory=memory) if isinstance(memory, list) else vmo.Kernel(
                memory_size=memory)
            a = k.vmo_create(6 * PAGE + 9)[1]
            k.vmo_write(a, b"seed" * 300, PAGE - 2)
            c = k.vmo_clone(a, 1, PAGE, 4 * PAGE)[1]
            k.vmo_write(c, b"own", 2 * PAGE)
            k.vmo_clone(c, 1, 0, PAGE)
            k.event_create()
            b = k.vmo_create(3 * PAGE)[1]
            k.vmo_op_range(b, vmo.MX_VMO_OP_COMMIT, 0, 3 * PAGE)
            k.handle_close(k.handle_duplicate(a, vmo.MX_RIGHT_SAME_RIGHTS)[1])
            k.vmo_op_range(b, vmo.MX_VMO_OP_DECOMMIT, PAGE, PAGE)
            k.vmo_create_contiguous(2 * PAGE)
            k.handle_close(c)
            big = k.vmo_create(1 << 50)[1]
            grown = k.vmo_clone(big, 1, 1 << 49, PAGE)[1]
            k.vmo_set_size(grown, vmo.MX_VMO_MAX_SIZE)  # parent_offset + size past 2**64
            k.vmo_write(grown, b"end", vmo.MX_VMO_MAX_SIZE - 3)
            from vmo._statefile import dump_kernel
            _state_seeds.append(dump_kernel(k))
            _state_seeds.append(_reference_statefile().dumps(
                _reference_statefile().loads(ReferenceKernel, _state_seeds[-1])))
            k.close()
    return _state_seeds


def _reference_statefile():
    from vmo._reference import _statefile
    return _statefile


def refresh_state_file(data):
    """`data` with every section trailer's CRC-32 and END recomputed, as far as its framing
    parses (the rest is left as it is)."""
    data = bytes(data)
    if len(data) < 16:
        return data
    parts, headers, pos = [data[:16]], [data[:16]], 16
    while pos + _STATE_SECTION.size <= len(data):
        tag, zero, length = _STATE_SECTION.unpack_from(data, pos)
        start = pos + _STATE_SECTION.size
        if length > len(data) - start - _STATE_TRAILER.size:
            break
        payload = data[start:start + length]
        if tag == b"END " and length == 16:
            total = sum(map(len, parts)) + _STATE_SECTION.size + 16 + _STATE_TRAILER.size
            payload = struct.pack("<QII", total, zlib.crc32(b"".join(headers)), 0)
        header = data[pos:start]
        trailer = _STATE_TRAILER.pack(zlib.crc32(payload), 0)
        parts += [header, payload, trailer]
        headers += [header, trailer]
        pos = start + length + _STATE_TRAILER.size
    parts.append(data[pos:])
    return b"".join(parts)


def _memory_of(data):
    """Bytes of memory the file's KERN section names (0 if it does not parse)."""
    try:
        tag, _, length = _STATE_SECTION.unpack_from(data, 16)
        nranges = struct.unpack_from("<I", data, 16 + 16 + 24)[0]
        if tag != b"KERN" or nranges > 64:
            return 0
        return sum(struct.unpack_from("<Q", data, 16 + 16 + 32 + 16 * i + 8)[0]
                   for i in range(nranges))
    except struct.error:
        return 0


def mutate_state_file(chooser, data):
    """(mutated bytes, description) of `data`."""
    data = bytearray(data)
    done = []
    for _ in range(chooser.int(1, 4)):
        # Most mutations land in the sections before the frame contents.
        hot = min(len(data), 16 + sum(16 + length + 8 for _, length in _state_lengths(data)))
        pos = chooser.int(0, max(0, (hot if chooser.chance(80) else len(data)) - 1))
        kind = chooser.int(0, 5)
        if kind == 0 and data:
            bit = chooser.int(0, 7)
            data[pos] ^= 1 << bit
            done.append("flip bit %d of byte %d" % (bit, pos))
        elif kind == 1 and data:
            value = chooser.int(0, 255)
            data[pos] = value
            done.append("byte %d = %d" % (pos, value))
        elif kind == 2:
            del data[pos:]
            done.append("cut at %d" % pos)
        elif kind == 3:
            extra = bytes(chooser.int(0, 255) for _ in range(chooser.int(1, 16)))
            data[pos:pos] = extra
            done.append("insert %r at %d" % (extra, pos))
        elif kind == 4:
            width = chooser.pick([4, 8])
            pos -= pos % width
            value = chooser.pick(_STATE_EDGES) & ((1 << (8 * width)) - 1)
            data[pos:pos + width] = value.to_bytes(width, "little")
            done.append("u%d at %d = %#x" % (8 * width, pos, value))
        else:
            n = chooser.int(1, 64)
            del data[pos:pos + n]
            done.append("remove %d bytes at %d" % (n, pos))
    if chooser.chance(50):
        data = refresh_state_file(data)
        done.append("CRC-32s recomputed")
    return bytes(data), done


def _state_lengths(data):
    """[(tag, length)] of the sections before DATA, as far as they parse."""
    out, pos = [], 16
    while pos + 16 <= len(data):
        tag, _, length = _STATE_SECTION.unpack_from(data, pos)
        if tag in (b"DATA", b"END ") or length > len(data):
            break
        out.append((tag, length))
        pos += 16 + length + 8
    return out


def state_file_case(chooser):
    """One mutated file loaded by both kernels (see above). Returns "refused", "loaded" or
    "skipped" (a memory map too large to reserve for a test)."""
    from vmo._statefile import dump_kernel, load_kernel_bytes
    ref_statefile = _reference_statefile()
    data, done = mutate_state_file(chooser, chooser.pick(state_seed_files()))
    if _memory_of(data) > 64 << 20:
        return "skipped"
    outcomes = []
    for load in (lambda: load_kernel_bytes(vmo.Kernel, data),
                 lambda: ref_statefile.loads(ReferenceKernel, data)):
        try:
            outcomes.append(load())
        except ValueError as exc:
            outcomes.append(exc)
        except Exception as exc:  # noqa: BLE001  (reported below)
            raise AssertionError("loading the mutated file (%s) raised %r, not ValueError"
                                 % ("; ".join(done), exc)) from exc
    core, ref = outcomes
    try:
        assert isinstance(core, ValueError) == isinstance(ref, ValueError), (
            "the kernels disagree on the mutated file (%s): core %r, reference %r"
            % ("; ".join(done), core, ref))
        if isinstance(core, ValueError):
            return "refused"
        core._check()
        ref._check()
        canonical = ref_statefile.dumps(ref)
        assert ref_statefile.dumps(ref_statefile.loads(ReferenceKernel, dump_kernel(core))) \
            == canonical, "the kernels loaded different states from (%s)" % "; ".join(done)
        return "loaded"
    finally:
        for k in outcomes:
            if not isinstance(k, ValueError):
                k.close()


def test_fuzz_state_file_mutations():
    """Mutated state files: see above. With ``-s`` it prints how many were refused, loaded
    and skipped."""
    counts = {"refused": 0, "loaded": 0, "skipped": 0}

    @settings(FUZZ_SETTINGS, max_examples=max(1, FUZZ_SETTINGS.max_examples // 2))
    @given(st.data())
    def one_case(data):
        counts[state_file_case(HypothesisChooser(data))] += 1

    try:
        one_case()
    finally:
        print("\nvmo state file fuzz: %(refused)d refused, %(loaded)d loaded, %(skipped)d "
              "skipped" % counts)
    assert counts["refused"] > 0
