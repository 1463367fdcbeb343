"""The reference model: a pure-Python implementation of the VMO syscalls, the executable spec.

`Kernel` here has the same API as the compiled core (`vmo._kernel`) and implements exactly what
`docs/api.md` and `docs/semantics.md` say, with plain dicts, sets and lists (and one mmap for
the bytes of physical memory, so that physical views can be zero copy), so that it can be read
as the specification. The state-machine tests run both kernels side by side and compare every
status, byte, handle value, physical address and allocator state after each step.

The modules mirror the core's, one layer each, with the same function names
(docs/architecture.md), so that a difference can be chased to the same function on both
sides. Bottom to top:

  `_frames`      the frame allocator (`FramePool`, `pool_*`) and the bytes of physical memory
  `_pagetable`   a VMO's page table, a dict (`pt_*`): the spec of the core's radix tree
  `_handles`     the handle table (`HandleTable`, `ht_*`)
  `_state`       `KernelState`: what every layer above takes as its first argument
  `_vmobject`    VMO and event objects and their unchecked operations (`vmo_*`)
  `_physmem`     physical memory as devices see it (`phys_*`)
  `_args`        the Python-to-C boundary: one argument converter (`Arguments`)
  `_invariants`  the invariant walker (`check`) and the test shims
  `_snapshot`    snapshots (copies of the state), restore, the dirty log's reading
  `_kernel`      `Kernel`, the syscall layer only
  `_trace`       the trace file (docs/trace-format.md): codec, writer, reader, record checks
  `_exec`        runs records: the executor, `Kernel.run`'s batches, `replay`
  `_recorder`    the recording hooks behind `Kernel.record`

Clarity comes before speed. The only concessions are that ranges are walked over the pages a
VMO holds (not over every page index of the range) where the result is the same, and that
clone chains are walked with loops, not recursion, because they may be thousands deep.

Conventions used throughout:
  * Every layer below the syscalls takes plain objects and returns a status
    (`vmo.errors.Status`) where Magenta's code does, else a value or None ("no page").
    Frames are frame numbers, never addresses; `pool_paddr` turns one into a physical
    address only where a call reports one (LOOKUP, the test shims).
  * Integer arguments go through `operator.index` (TypeError otherwise); then every one is
    checked against its C type (`uint32`/`uint64`) and ERR_INVALID_ARGS is returned before
    anything else if one is out of range. Buffers go through `memoryview` (TypeError without
    the buffer protocol; None is a null pointer/empty buffer). All of these conversions happen
    first, in signature order, so a TypeError is raised before any status is decided
    (`vmo_op_range` converts ``buffer`` and ``buffer_size`` only for LOOKUP).
  * Offsets and sizes are Python ints; the wrapping of C's unsigned 64-bit arithmetic is
    spelled out where the kernel depends on it (TrimRange, InRange, LOOKUP's buffer size).
  * Magenta's behaviour is cited as ``docs/magenta.md 3.6.4`` (section numbers), the
    contract as ``docs/api.md``.
"""

from ..records import ReplayResult
from ._exec import replay
from ._kernel import Kernel

__all__ = ["Kernel", "ReplayResult", "replay"]
