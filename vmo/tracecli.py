"""`python -m vmo trace`: generate a workload's trace, describe a trace file.

    python -m vmo trace generate WORKLOAD --ops N --seed S --memory SIZE -o FILE
    python -m vmo trace info FILE ...

`trace info` needs only the reference reader (pure Python).
"""

import argparse
import re
import sys

__all__ = ["main", "parse_size"]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text):
    """Bytes from ``"4096"``, ``"64M"``, ``"1G"``, ``"2T"`` (K, M, G, T: powers of 1024; an
    optional trailing B or iB). ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
    if not match:
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M, G or T)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _size(text):
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser():
    from .workloads import NAMES
    p = argparse.ArgumentParser(prog="python -m vmo trace",
                                description="Generate and describe trace files "
                                            "(docs/trace-format.md, docs/workloads.md).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    g = sub.add_parser("generate", help="run a workload on a fresh kernel and record it",
                       description="Run a workload (docs/workloads.md) on a fresh kernel "
                                   "while it records, into FILE.")
    g.add_argument("workload", choices=NAMES, metavar="WORKLOAD",
                   help="one of: " + ", ".join(NAMES))
    g.add_argument("--ops", type=int, default=100_000, help="calls (default 100000)")
    g.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    g.add_argument("--memory", type=_size, default=1 << 30,
                   help="the kernel's memory: bytes or with K, M, G, T (default 1G)")
    g.add_argument("-o", "--output", required=True, metavar="FILE", help="the trace file")
    g.add_argument("--reference", action="store_true",
                   help="record on the reference model (pure Python, slow) instead of the "
                        "compiled core")
    i = sub.add_parser("info", help="describe trace files",
                       description="Header (version, memory map, options), records, a call "
                                   "histogram, bytes, bytes per call, truncated or not.")
    i.add_argument("files", nargs="+", metavar="FILE")
    return p


def _fmt_size(n):
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def describe(info):
    """The text `trace info` prints for one `vmo._reference._trace.trace_info` dict."""
    lines = [f"{info['path']}: vmo trace, format version {info['version']}"]
    ranges = ", ".join(f"{base:#x}+{_fmt_size(size)}" for base, size in info["memory_map"])
    lines.append(f"  memory map   {ranges}")
    lines.append(f"  options      {dict(info['options']) or 'none'}")
    n = info["records"]
    lines.append(f"  records      {n:,}")
    per = f"{info['bytes_per_call']:.1f}" if n else "-"
    lines.append(f"  bytes        {info['bytes']:,} ({per} a call; side bytes "
                 f"{info['side_bytes']:,})")
    if info["truncated"]:
        state = f"TRUNCATED: the trace stops at byte {info['stop']:,} (no end mark)"
        if not info["verified"]:
            state += "; the last records come from a cut block, unverified"
    else:
        state = "complete (end mark present)"
    lines.append(f"  state        {state}")
    if info["histogram"]:
        lines.append("  calls")
        width = max(len(name) for name in info["histogram"])
        for name, count in info["histogram"].items():
            lines.append(f"    {name:<{width}}  {count:>12,}  {100 * count / n:5.1f}%")
    return "\n".join(lines)


def main(argv=None):
    """`python -m vmo trace ARGS`; the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "generate":
        from .workloads import generate
        kernel = None
        if args.reference:
            from ._reference import Kernel as kernel
        try:
            generate(args.workload, args.output, ops=args.ops, seed=args.seed,
                     memory=args.memory, kernel=kernel)
        except (RuntimeError, ValueError, OSError) as exc:
            sys.stderr.write(f"python -m vmo trace generate: {exc}\n")
            return 1
        return 0
    from ._reference._trace import trace_info
    status = 0
    for path in args.files:
        try:
            print(describe(trace_info(path)))
        except (ValueError, OSError) as exc:
            sys.stderr.write(f"python -m vmo trace info: {path}: {exc}\n")
            status = 1
    return status
