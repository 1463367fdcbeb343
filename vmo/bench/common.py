"""The vocabulary every module of the bench shares: sizes and ops, the three contenders, the
outcomes of a cell (Unavailable, Skipped, BenchError), targets, the Job a case builds, and the
few kernel helpers both the timed cases and the memory rows use."""

from time import perf_counter_ns

from ..constants import Op

PAGE = 4096
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PiB = 1 << 50

COMMIT = int(Op.COMMIT)
DECOMMIT = int(Op.DECOMMIT)
LOOKUP = int(Op.LOOKUP)

CONTENDERS = ("vmo", "reference", "host")
INDEX = {name: i for i, name in enumerate(CONTENDERS)}


class Unavailable(Exception):
    """This contender cannot run this case here; the message says why (shown as n/a)."""


class Skipped(Exception):
    """This contender is deliberately not run at this size (shown as '-')."""


class BenchError(Exception):
    """A call under benchmark failed (a status other than NO_ERROR, or a host errno)."""


def ok(status, what):
    if status:
        raise BenchError(f"{what} returned {status!r}")


def fmt_size(n):
    if n is None:
        return "-"
    for unit, name in ((PiB, "PiB"), (TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit} {name}"
    return f"{n} B"


class Target:
    """One of the project's targets (written in, not measured): `value` is in the row's base
    unit (ns per page or call, bytes, bytes per page, percent)."""

    def __init__(self, op, value, text):
        self.op = op
        self.value = value
        self.text = text

    def met(self, measured):
        if measured is None:
            return None
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def as_dict(self):
        return {"op": self.op, "value": self.value, "text": self.text}


class Job:
    """One contender of one case at one size, ready to run rounds.

    ``setup()`` before each round and ``teardown()`` after it are untimed; ``run()`` does one
    round and returns the nanoseconds it measured around the work alone; ``units`` is the pages
    (or calls) a round does; ``close()`` releases everything (idempotent, also tears down).
    """

    def __init__(self, run, units, setup=None, teardown=None, close=None):
        self.run = run
        self.units = units
        self._setup = setup
        self._teardown = teardown
        self._close = close
        self._armed = False

    def setup(self):
        self.teardown()
        if self._setup is not None:
            self._setup()
        self._armed = True

    def teardown(self, *_ignored):
        if self._armed:
            self._armed = False
            if self._teardown is not None:
                self._teardown()

    def close(self):
        try:
            self.teardown()
        finally:
            close, self._close = self._close, None
            if close is not None:
                close()


class State:
    """Mutable state shared by the closures of one job."""


def timed(fn, *args):
    """Call `fn(*args)` once between two perf_counter_ns readings: (elapsed ns, result)."""
    t0 = perf_counter_ns()
    result = fn(*args)
    return perf_counter_ns() - t0, result


def kernel_class(contender):
    if contender == "vmo":
        from .. import Kernel
        return Kernel
    if contender == "reference":
        from .._reference import Kernel
        return Kernel
    raise ValueError(f"not a kernel contender: {contender!r}")


def kernel_memory(size):
    """Physical memory for a kernel that commits `size` bytes: twice that, at least 64 MiB
    (only reserved, never populated)."""
    return max(64 * MiB, 2 * ((size + PAGE - 1) // PAGE) * PAGE)


def new_vmo(k, size):
    status, handle = k.vmo_create(size)
    ok(status, "vmo_create")
    return handle


def fill(k, h, size, byte=0xA5):
    """Write every byte of [0, size) so each page holds data (dirty frames)."""
    chunk = bytes([byte]) * min(size, MiB)
    for off in range(0, size, len(chunk)):
        status, _ = k.vmo_write(h, chunk[:size - off], off)
        ok(status, "vmo_write")
