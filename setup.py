"""Build the compiled core of vmo.

Variants, chosen by environment variables:
  VMO_DEBUG=1     bounds/wraparound/initialisation checks on, C asserts on, -O0 -g
  VMO_ANNOTATE=1  write Cython's HTML annotation next to each .pyx
  VMO_ASAN=1      AddressSanitizer build (run with LD_PRELOAD of libasan, see README)
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


DEBUG = _flag("VMO_DEBUG")
ASAN = _flag("VMO_ASAN")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
    "binding": False,
}

# Debug: C asserts on (-UNDEBUG) and VMO_DEBUG defined; release: asserts compiled out.
# Release: -O2, plus room for GCC to inline the small helpers every syscall goes through
# (argument conversion, the handle check, the status table, the recording test): the syscall
# modules are large enough to hit its default inlining budget per unit, and each helper left
# out of line costs a call on every syscall (measured: 2-6 ns a call).
RELEASE_ARGS = ["-O2", "-DNDEBUG", "--param=inline-unit-growth=400",
                "--param=max-inline-insns-single=600"]
compile_args = ["-O0", "-g3", "-UNDEBUG", "-DVMO_DEBUG=1"] if DEBUG else RELEASE_ARGS
link_args = []
if ASAN:
    compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"]
    link_args += ["-fsanitize=address"]

common = dict(
    include_dirs=["src_c"],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

# One extension per layer, bottom to top (docs/architecture.md); _status.pxd, _state.pxd and
# api.pxd are declarations only. arena.c goes into the modules that map memory.
extensions = [
    Extension("vmo._frames", ["vmo/_frames.pyx", "src_c/arena.c"], **common),
    Extension("vmo._cache", ["vmo/_cache.pyx"], **common),
    Extension("vmo._pagetable", ["vmo/_pagetable.pyx"], **common),
    Extension("vmo._handles", ["vmo/_handles.pyx", "src_c/arena.c"], **common),
    Extension("vmo._args", ["vmo/_args.pyx"], **common),
    Extension("vmo._vmobject", ["vmo/_vmobject.pyx"], **common),
    Extension("vmo._physmem", ["vmo/_physmem.pyx"], **common),
    Extension("vmo._invariants", ["vmo/_invariants.pyx"], **common),
    Extension("vmo._trace", ["vmo/_trace.pyx"], **common),
    Extension("vmo._snapshot", ["vmo/_snapshot.pyx"], **common),
    Extension("vmo._kernelcore", ["vmo/_kernelcore.pyx"], **common),
    Extension("vmo._statefile", ["vmo/_statefile.pyx"], **common),
    Extension("vmo._exec", ["vmo/_exec.pyx"], **common),
    Extension("vmo._recording", ["vmo/_recording.pyx"], **common),
    Extension("vmo._kernel", ["vmo/_kernel.pyx"], **common),
    Extension("vmo._workloads", ["vmo/_workloads.pyx"], **common),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=_flag("VMO_ANNOTATE"),
        # Debug and release builds must never share generated C.
        force=DEBUG or ASAN,
    ),
)
