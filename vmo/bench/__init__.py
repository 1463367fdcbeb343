"""The benchmark suite of vmo: every case, defined once, and the `python -m vmo bench` runner.

Three contenders do the same work side by side:

* ``vmo``: the compiled core (`vmo.Kernel`), timed from Python with `time.perf_counter_ns`
  around the call(s), so per-call numbers include the Python call (and the loop around it);
* ``reference``: the pure-Python reference model (`vmo._reference.Kernel`), timed the same
  way, at smaller sizes where it would be slow (the table marks the size it ran at);
* ``host``: the Linux kernel doing the equivalent work with system calls
  (`vmo/bench/_hostops.c`, compiled at run time with gcc, loaded with ctypes), timed in C
  with clock_gettime(CLOCK_MONOTONIC) around the system call(s) only.

A case (`Case`) says how each contender sets up, runs and tears down one round of one
operation, and the unit it is reported in (per page of the range, or per call). The runner
(`python -m vmo bench`) and `benchmarks/test_*.py` (pytest-benchmark, through
`benchmarks/conftest.py`) both build their rounds from these definitions. Memory rows
(`MemoryCase`) run each measurement in a fresh subprocess and read /proc/self/statm.

Every number in the output is measured by the run; only the targets (the project's goals)
are written in, to be compared against.

The "floor" rows run each per-call syscall row's loop calling the compiled core's _floor_*
twin of the method (the same arguments converted, the same result shape, no work); the
syscall rows report how far above their floor they are, against the project's target of 20%.

The modules, one job each: common (shared vocabulary), hostops (the host helper), memory (the
memory rows), cases (the timed cases and CASES), runner (jobs, rounds, a run), report (rows,
ratios, floors, table, JSON), plot (the --plot figure, matplotlib optional), cli (arguments,
profiles, progress, main).
"""

from .cases import CASES, GROUPS, SWEEP_KEYS, Case, sweep_size_for
from .cli import PROFILES, SWEEP_SIZES, Profile, main
from .common import CONTENDERS, BenchError, Job, Skipped, Unavailable, fmt_size
from .hostops import host_ops
from .memory import MemoryCase, measure_memory
from .report import link_floors, make_row, render_table, sweep_summary
from .runner import make_job, measure, run_bench, run_job

__all__ = [
    "CASES", "CONTENDERS", "GROUPS", "PROFILES", "SWEEP_KEYS", "SWEEP_SIZES", "BenchError",
    "Case", "Job", "MemoryCase", "Profile", "Skipped", "Unavailable", "fmt_size", "host_ops",
    "link_floors", "main", "make_job", "make_row", "measure", "measure_memory", "render_table",
    "run_bench", "run_job", "sweep_size_for", "sweep_summary",
]
