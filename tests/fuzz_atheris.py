"""Coverage-guided fuzzing of the vmo API with atheris (not collected by pytest).

The engine is `tests/test_fuzz.py`'s: each input is decoded (through atheris's
FuzzedDataProvider) into a machine (memory size or map) and a sequence of calls, run on a
compiled `vmo.Kernel` and a `vmo._reference.Kernel` side by side with exactly the comparison of
that file (same results, same exception types, `_check()`, stats() and the allocator's state
after every step, every frame back at the end), and with its oracle for buffers of Python
object pointers, which are refused in both directions: as the data of vmo_write, the Pythonic
write and phys_write as much as the destination of vmo_read and read_into (ERR_INVALID_ARGS,
see that file's docstring). The pure-Python parts of `vmo` (the reference
model, the Pythonic layer, argument handling) are instrumented, so atheris steers towards new
branches of the specification; the compiled core is not instrumented (it is a Cython
extension built without sanitizer coverage) but is checked against the reference on every call.

    pip install atheris                          # not a dependency of the project
    python tests/fuzz_atheris.py -atheris_runs=100000
    python tests/fuzz_atheris.py -max_total_time=600 /tmp/vmo-corpus   # keep a corpus
    python tests/fuzz_atheris.py -atheris_runs=100000 -max_len=4096     # long call sequences

(libFuzzer starts with tiny inputs and lengthens them slowly; every choice takes a byte or more,
so -max_len / -len_control=0 make long call sequences appear sooner.)

    VMO_FUZZ_TARGET=statefile python tests/fuzz_atheris.py -atheris_runs=100000

runs the state-file target instead (docs/state-format.md; `state_file_case` of test_fuzz.py):
each input mutates a saved file (bits, bytes, edge values, cuts, insertions; half the time
with the CRC-32s recomputed), both kernels load it, and they must both refuse it with
ValueError or both load the same state, which passes `_check()`.

A divergence raises AssertionError with a standalone reproducer script in its message; atheris
prints it and writes the input as ./crash-<sha1>. Environment: VMO_FUZZ_TOLERATE_KNOWN=1 as in
test_fuzz.py (known, reported divergences end an input instead of failing it);
VMO_FUZZ_MAX_STEPS (default 60) bounds the calls per input.
"""

import atexit
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import atheris  # noqa: E402
import hypothesis  # noqa: E402,F401
import numpy  # noqa: E402,F401  (imported before instrumentation: not worth instrumenting)

with atheris.instrument_imports(include=["vmo"]):
    import vmo  # noqa: E402,F401
    import vmo._reference  # noqa: E402,F401

import test_fuzz as engine  # noqa: E402

MAX_STEPS = int(os.environ.get("VMO_FUZZ_MAX_STEPS", "60"))
TARGET = os.environ.get("VMO_FUZZ_TARGET", "calls")
TOLERATE = engine.TOLERATE


class FuzzedChooser(engine.Chooser):
    """Choices decoded from atheris's bytes; once they run out every choice is its lowest."""

    def __init__(self, fdp):
        self.fdp = fdp

    def int(self, lo, hi):
        return self.fdp.ConsumeIntInRange(lo, hi)


tally = engine.Tally()


state_file_outcomes = {"refused": 0, "loaded": 0, "skipped": 0}


def test_state_file_input(data):
    outcome = engine.state_file_case(FuzzedChooser(atheris.FuzzedDataProvider(data)))
    state_file_outcomes[outcome] += 1


def test_one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    chooser = FuzzedChooser(fdp)
    case = engine.Case(chooser, tolerate=TOLERATE)
    try:
        steps = 0
        while fdp.remaining_bytes() and steps < MAX_STEPS:
            case.step()
            steps += 1
        case.finish()
    except engine.KnownDivergence as known:
        case.known = known.key
    finally:
        case.dispose()
    tally.add(case)


@atexit.register
def _summary():
    if TARGET == "statefile":
        print("\nvmo atheris state file fuzz: %(refused)d refused, %(loaded)d loaded, "
              "%(skipped)d skipped" % state_file_outcomes, flush=True)
        return
    print("\n" + tally.summary().replace("vmo fuzz", "vmo atheris fuzz"), flush=True)


def main():
    atheris.Setup(sys.argv, test_state_file_input if TARGET == "statefile" else test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
