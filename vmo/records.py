"""Records returned by `object_get_info` (pure Python, shared by both kernels)."""

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["HandleBasicInfo"]


class HandleBasicInfo(NamedTuple):
    """`mx_info_handle_basic_t` (docs/magenta.md 3.11)."""

    koid: int
    rights: int
    type: int
    related_koid: int
    props: int


__all__ += ["Mismatch", "ReplayResult", "BatchResult", "CALL_NAMES"]

#: The trace's call codes (docs/trace-format.md "Calls") by number.
CALL_NAMES = {
    1: "vmo_create", 2: "vmo_read", 3: "vmo_write", 4: "vmo_get_size", 5: "vmo_set_size",
    6: "vmo_op_range", 7: "vmo_clone", 8: "handle_close", 9: "handle_duplicate",
    10: "handle_replace", 11: "object_get_info", 12: "event_create", 13: "vmo_read_bytes",
    14: "vmo_committed_bytes", 15: "vmo_create_contiguous", 16: "phys_read",
    17: "phys_write", 18: "phys_view", 19: "phys_view_release",
}


class Mismatch(NamedTuple):
    """The first record of a replay that did not give what it recorded: its index in the
    trace, its call's name, its arguments (the record's fields: flags, handle, x, a, b, c),
    what was recorded and what happened, each (status, value, c)."""

    index: int
    call: str
    args: dict
    recorded: tuple
    got: tuple


@dataclass(frozen=True)
class ReplayResult:
    """What a replay gives, on either engine (docs/api.md "Traces and batches"): the trace's
    ``path``; records run (``ops``) and wall time (``seconds``, ``ops_per_second``);
    ``mismatches`` (records whose status, value or result ``c`` differ from the recorded
    ones; 0 when not ``checked``) and the first of them (`Mismatch` or None); the kernel's
    final ``stats()``; ``truncated`` (the end mark was missing: the file was cut short) and
    ``stop`` (the byte offset where the readable trace stops: the end of the file when it is
    whole, else the offset of the cut block); ``verified`` (False when the last records came
    from a cut block and ran without a checksum); ``checked``; ``engine`` ("compiled" or
    "reference"). Pickles; equal when every field is."""

    path: str
    ops: int
    seconds: float
    mismatches: int
    first_mismatch: object
    stats: dict
    truncated: bool
    stop: int
    verified: bool = True
    checked: bool = True
    engine: str = "compiled"

    @property
    def ops_per_second(self):
        return self.ops / self.seconds if self.seconds > 0 else float("inf")

    @property
    def clean(self):
        """Checked, every record replayed as recorded, and the trace was whole."""
        return self.checked and self.mismatches == 0 and not self.truncated

    def __repr__(self):
        return ("<ReplayResult %s ops=%d mismatches=%d truncated=%s %.3g calls/s>"
                % (self.path, self.ops, self.mismatches, self.truncated, self.ops_per_second))


class BatchResult:
    """What `Kernel.run(batch)` gives on either engine: per op `statuses` (array('i')), `values`
    (array('Q'): handles, actuals, sizes, koids, LOOKUP hashes) and `c` (array('Q'): read
    hashes, get_info's rights | type << 32 | props << 48); `entries` (array('Q')) holds every
    LOOKUP's entries, op i's at entries[entry_start[i]:entry_start[i + 1]] (`entry_start`:
    array('Q') of len(batch) + 1). Pickles."""

    __slots__ = ("statuses", "values", "c", "entries", "entry_start")

    def __init__(self, statuses, values, c, entries, entry_start):
        self.statuses = statuses
        self.values = values
        self.c = c
        self.entries = entries
        self.entry_start = entry_start

    def __reduce__(self):
        return (BatchResult, tuple(getattr(self, name) for name in self.__slots__))

    def __len__(self):
        return len(self.statuses)

    def lookup_entries(self, i):
        """The entries LOOKUP op `i` wrote (empty for any other op)."""
        return self.entries[self.entry_start[i]:self.entry_start[i + 1]]

    def __eq__(self, other):
        return isinstance(other, BatchResult) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None

    def __repr__(self):
        return "<BatchResult ops=%d>" % len(self.statuses)
