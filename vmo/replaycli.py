"""`python -m vmo replay FILE... [--jobs N] [--no-check] [-q] [--reference]`: replay traces
on fresh kernels and check every call; the exit status is not 0 when a replay mismatched, a
trace was cut short or a file could not be read."""

import argparse
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

__all__ = ["main"]


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m vmo replay",
        description="Replay trace files (docs/trace-format.md) on fresh kernels of their "
                    "memory maps, checking every status, value and hash; print per file its "
                    "ops, ops/s, mismatches, first mismatch and final stats.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="replay N files at once in worker processes (default 1: in this "
                        "process)")
    p.add_argument("--no-check", action="store_true",
                   help="run the calls without comparing them with the recorded results")
    p.add_argument("--reference", action="store_true",
                   help="replay on the reference model (pure Python, slow)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    return p


class _Bar:
    """A progress bar on stderr, only on a terminal, and only once a second has passed."""

    def __init__(self, total, enabled):
        self.total = total
        self.done = 0
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.shown = False

    def update(self, done=None):
        if done is not None:
            self.done = done
        elapsed = time.monotonic() - self.t0
        if not self.enabled or elapsed < 1.0:
            return
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 40))
        fill = width * self.done // max(self.total, 1)
        sys.stderr.write(f"\r\033[K[{'#' * fill}{'.' * (width - fill)}] "
                         f"{self.done}/{self.total} files  {elapsed:6.1f}s")
        sys.stderr.flush()
        self.shown = True

    def close(self):
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _report(path, result):
    """Lines for one result; whether it is clean."""
    lines = [f"{path}:"]
    ops_s = result.ops_per_second
    lines.append(f"  ops          {result.ops:,} in {result.seconds:.3f} s "
                 f"({ops_s:,.0f} ops/s)")
    checked = getattr(result, "checked", True)
    if checked:
        lines.append(f"  mismatches   {result.mismatches:,}")
        if result.first_mismatch is not None:
            lines.append(f"  first        {result.first_mismatch}")
    else:
        lines.append("  mismatches   not checked (--no-check)")
    truncated = bool(result.truncated)
    if truncated:
        stop = getattr(result, "stop", None)
        where = f" at byte {stop:,}" if isinstance(stop, int) else ""
        lines.append(f"  TRUNCATED    the trace was cut short{where}")
    stats = result.stats or {}
    keys = ("total_frames", "free_frames", "committed_frames", "vmos", "handles",
            "pinned_frames")
    lines.append("  stats        " + ", ".join(f"{k}={stats[k]}" for k in keys if k in stats))
    clean = not truncated and (not checked or result.mismatches == 0)
    return lines, clean


def main(argv=None):
    """`python -m vmo replay ARGS`; the exit status."""
    from ._many import _replayer, replay_one

    args = _parser().parse_args(argv)
    if args.jobs < 1:
        _parser().error("--jobs must be at least 1")
    engine = "reference" if args.reference else "compiled"
    try:
        _replayer(engine)
    except RuntimeError as exc:
        sys.stderr.write(f"python -m vmo replay: {exc} (--reference)\n")
        return 2
    check = not args.no_check
    bar = _Bar(len(args.files), not args.quiet)
    outcomes = {}
    if args.jobs == 1:
        for i, path in enumerate(args.files):
            bar.update(i)
            try:
                outcomes[path] = replay_one(path, check, engine)
            except (ValueError, OSError) as exc:
                outcomes[path] = exc
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            pending = {pool.submit(replay_one, path, check, engine): path
                       for path in args.files}
            while pending:
                finished, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in finished:
                    path = pending.pop(future)
                    try:
                        outcomes[path] = future.result()
                    except (ValueError, OSError) as exc:
                        outcomes[path] = exc
                bar.update(len(outcomes))
    bar.update(len(outcomes))
    bar.close()
    status = 0
    for path in args.files:
        outcome = outcomes[path]
        if isinstance(outcome, Exception):
            print(f"{path}:\n  UNREADABLE   {outcome}")
            status = 1
            continue
        lines, clean = _report(path, outcome)
        print("\n".join(lines))
        if not clean:
            status = 1
    return status
