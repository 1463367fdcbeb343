"""`python -m vmo`: the project's command line, one subcommand per job.

    python -m vmo --help                  the subcommands
    python -m vmo bench [--quick] ...     the benchmark table (python -m vmo bench --help)
    python -m vmo trace generate|info ... trace files (python -m vmo trace --help)
    python -m vmo replay FILE ...         replay traces, checking every call

A subcommand is a module with `main(argv)` returning the exit status, registered in COMMANDS
(name: module, one-line summary); the module is imported only when its subcommand runs.
"""

import importlib
import os
import sys

COMMANDS = {
    "bench": ("vmo.bench.cli",
              "benchmark vmo against the reference model and the host kernel"),
    "trace": ("vmo.tracecli", "generate a workload's trace file; describe trace files"),
    "replay": ("vmo.replaycli", "replay trace files and check every call (--jobs N)"),
}


def usage():
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m vmo COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "python -m vmo COMMAND --help tells each command's arguments."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run the subcommand named by argv[0] with the rest; its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        sys.stderr.write(usage())
        return 2
    if argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if argv[0] not in COMMANDS:
        sys.stderr.write(f"python -m vmo: unknown command {argv[0]!r}\n\n{usage()}")
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return module.main(argv[1:])
    except BrokenPipeError:  # e.g. `python -m vmo bench | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
