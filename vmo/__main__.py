"""`python -m vmo`: the project's command line.

    python -m vmo bench [--quick] [--json] [--help] ...

runs the benchmark suite (vmo against the reference model and the host kernel) and prints
its table; see `python -m vmo bench --help` and vmo/_bench.py.
"""

import sys

from ._bench import main

if __name__ == "__main__":
    sys.exit(main())
