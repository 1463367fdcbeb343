"""`python -m vmo`: the project's command line.

    python -m vmo bench [--quick] [--json] [--help] ...

runs the benchmark suite (vmo against the reference model and the host kernel) and prints
its table; see `python -m vmo bench --help` and vmo/bench/.
"""

import os
import sys


def main(argv=None):
    """`python -m vmo COMMAND ...`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = ("usage: python -m vmo bench [--quick] [--json] [--help] ...\n\n"
             "commands:\n"
             "  bench   benchmark vmo against the reference model and the host kernel\n"
             "          (python -m vmo bench --help for everything)\n")
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0 if argv else 2
    if argv[0] != "bench":
        sys.stderr.write(f"python -m vmo: unknown command {argv[0]!r}\n\n{usage}")
        return 2
    from .bench.cli import main as bench_main
    try:
        return bench_main(argv[1:])
    except BrokenPipeError:  # e.g. `python -m vmo bench | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
