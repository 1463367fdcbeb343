"""`python -m vmo bench`: its arguments, the profiles (sizes, rounds, calls), progress on
stderr, and `main(argv)`, which runs the selected rows and prints the table or the JSON."""

import argparse
import os
import shutil
import sys
import time

from .cases import CASES, GROUPS
from .common import CONTENDERS, GiB, MiB
from .report import render_table, write_json
from .runner import run_bench


class Profile:
    """Sizes, rounds and calls per round of one kind of run. Round counts are per contender,
    in the order of CONTENDERS (vmo, reference, host)."""

    def __init__(self, name, *, big, ref_big, mem, ref_mem, rounds_big, rounds_call,
                 rounds_sparse, rounds_sweep, call_scale, warmup_call, sweep, host_sweep_max,
                 ref_sweep_max, frag=64 * (1 << 30), ref_frag=64 * (1 << 20)):
        self.name = name
        self.frag = frag                # physical memory fragmented for contiguous runs
        self.ref_frag = ref_frag
        self.big = big                  # range of COMMIT/DECOMMIT/LOOKUP/cache ops (vmo, host)
        self.ref_big = ref_big          # the same for the reference model
        self.mem = mem                  # bytes committed/written by the memory rows
        self.ref_mem = ref_mem
        self.rounds_big = rounds_big
        self.rounds_call = rounds_call
        self.rounds_sparse = rounds_sparse
        self.rounds_sweep = rounds_sweep
        self.call_scale = call_scale    # multiplies each case's calls per round
        self.warmup_call = warmup_call  # untimed rounds before the per-call cases
        self.sweep = sweep              # sizes of the COMMIT/LOOKUP sweep; () = none
        self.host_sweep_max = host_sweep_max
        self.ref_sweep_max = ref_sweep_max

    def as_dict(self):
        return dict(vars(self))


PROFILES = {
    "default": Profile(
        "default", big=GiB, ref_big=64 * MiB, mem=GiB, ref_mem=64 * MiB,
        rounds_big=(9, 5, 5), rounds_call=(9, 5, 9), rounds_sparse=(21, 9, 9),
        rounds_sweep=(5, 3, 3),
        call_scale=1.0, warmup_call=1,
        sweep=(MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, GiB, 4 * GiB),
        host_sweep_max=GiB, ref_sweep_max=16 * MiB),
    "quick": Profile(
        "quick", big=64 * MiB, ref_big=4 * MiB, mem=256 * MiB, ref_mem=16 * MiB,
        rounds_big=(5, 3, 3), rounds_call=(5, 3, 5), rounds_sparse=(9, 5, 5),
        rounds_sweep=(3, 3, 3),
        call_scale=0.1, warmup_call=1, sweep=(),
        host_sweep_max=GiB, ref_sweep_max=16 * MiB, frag=4 * GiB, ref_frag=16 * MiB),
}


# The size sweep of `pytest benchmarks/` (parametrised) and of the default profile.
SWEEP_SIZES = PROFILES["default"].sweep


class Progress:
    """Progress on stderr: one updating line on a terminal, one line per cell otherwise."""

    def __init__(self, stream=None, enabled=True):
        self.total = 0
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.t0 = time.monotonic()

    def begin(self, total):
        self.total = total
        self.t0 = time.monotonic()

    def _emit(self, text, final):
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        line = f"[{self.done:3d}/{self.total} {elapsed:5.1f}s] {text}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\033[K" + line[:width])
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, text):
        self._emit(text + " ...", False)

    def finish(self, text):
        self.done += 1
        self._emit(text, True)

    def note(self, text):
        if self.enabled:
            self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
            self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _parser():
    cases = "\n".join(f"  {c.key:<22} {c.group:<9} {c.title}"
                      + (f" [target {c.target.text}]" if c.target else "")
                      for c in CASES.values())
    p = argparse.ArgumentParser(
        prog="python -m vmo bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Benchmark vmo (the compiled core) against the pure-Python reference model and\n"
            "the host Linux kernel doing the equivalent work, and print a table: operation,\n"
            "size, vmo, reference model, host kernel, the ratios host/vmo and ref/vmo, and\n"
            "the project's target for each row with whether the vmo median meets it.\n"
            "Every number comes from the run; progress goes to stderr, the table to stdout."),
        epilog=(
            "profiles:\n"
            "  default  COMMIT/DECOMMIT/LOOKUP/cache ops over 1 GiB (reference: 64 MiB), memory\n"
            "           rows at 1 GiB, a COMMIT and LOOKUP size sweep 1 MiB .. 4 GiB (host up\n"
            "           to 1 GiB, reference up to 16 MiB); under a minute.\n"
            "  --quick  every operation at 64 MiB (reference 4 MiB), fewer rounds and calls,\n"
            "           memory rows at 256 MiB, no sweep; seconds.\n"
            "\n"
            "contenders:\n"
            "  vmo        vmo.Kernel, timed from Python (per-call numbers include the call)\n"
            "  reference  vmo._reference.Kernel, the executable spec, timed the same way\n"
            "  host       vmo/bench/_hostops.c compiled with gcc at run time (cached in\n"
            "             $XDG_CACHE_HOME/vmo-bench or ~/.cache/vmo-bench, or $VMO_BENCH_CACHE),\n"
            "             timed in C; 'n/a' with the reason where it cannot run\n"
            "\n"
            "cases (key, group, operation):\n" + cases + "\n"
            "  sweep: commit_fresh and lookup at each sweep size\n"
            "  floor: each syscall row's loop calling the compiled core's _floor_* twin (vmo\n"
            "         only; n/a where the core has none); the syscall rows show how far above\n"
            "         it they are, their second target being within 20% of it\n"
            "\n"
            "The same cases run under pytest-benchmark: pytest benchmarks/ (see\n"
            "benchmarks/conftest.py; benchmarks/tablize.py turns --benchmark-json into a table)."),
    )
    p.add_argument("--quick", action="store_true", help="the quick profile (seconds)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (machine, versions, every row with all "
                        "rounds, medians, units, sizes, ratios, target, met) instead of the "
                        "table")
    p.add_argument("--only", metavar="NAMES",
                   help="comma-separated groups or case keys to run (groups: "
                        + ", ".join(GROUPS) + ")")
    p.add_argument("--contenders", metavar="NAMES", default=",".join(CONTENDERS),
                   help="comma-separated subset of: " + ", ".join(CONTENDERS)
                        + " (default: all)")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="timed rounds per cell for every contender (default: the profile's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--plot", metavar="FILE",
                   help="also draw the run into FILE (.png or .svg): the COMMIT and LOOKUP "
                        "size sweep, ns/page against size, and the per-call rows as bars; "
                        "needs matplotlib (the 'plot' extra)")
    return p


def main(argv=None):
    """`python -m vmo bench ARGS`: run, then print the table (or --json)."""
    args = _parser().parse_args(argv)
    if args.list:
        for c in CASES.values():
            print(f"{c.key:<22} {c.group:<8} {c.title}")
        return 0
    profile = PROFILES["quick" if args.quick else "default"]
    only = None
    if args.only:
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = only - set(GROUPS) - set(CASES)
        if unknown:
            _parser().error("unknown group or case: {}".format(", ".join(sorted(unknown))))
    contenders = tuple(x.strip() for x in args.contenders.split(",") if x.strip())
    bad = set(contenders) - set(CONTENDERS)
    if bad or not contenders:
        _parser().error("unknown contender: {}".format(", ".join(sorted(bad))))
    if args.rounds is not None and args.rounds < 1:
        _parser().error("--rounds must be at least 1")
    if args.plot is not None:
        _check_plot(args.plot)  # before the run, not after it
    report = run_bench(profile, only, contenders, args.rounds,
                       progress=Progress(enabled=not args.quiet))
    if args.json:
        write_json(report, sys.stdout)
    else:
        sys.stdout.write(render_table(report) + "\n")
    if args.plot is not None:
        from .plot import PlotError, write_plot
        sys.stdout.flush()
        try:
            write_plot(report, args.plot)
        except (PlotError, OSError) as exc:
            sys.stderr.write(f"python -m vmo bench: cannot write the plot: {exc}\n")
            return 1
        if not args.quiet:
            sys.stderr.write(f"plot: {args.plot}\n")
    return 0


def _check_plot(path):
    """Exit (status 2, with the reason) unless --plot FILE can be drawn: a .png or .svg name
    in an existing directory, and matplotlib importable."""
    from .plot import PlotError, check_path, require
    try:
        check_path(path)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise PlotError(f"no directory {directory!r} for {path!r}")
        require()
    except PlotError as exc:
        _parser().error(str(exc))
