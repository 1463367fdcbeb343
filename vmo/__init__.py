"""vmo: Magenta's virtual memory objects, simulated exactly.

`Kernel` is one simulated machine (physical memory, frame allocator, handle table) with
Magenta's VMO system calls (the syscall layer: statuses returned) and `Vmo` objects (the
Pythonic layer: `MxError` raised). See README.md and docs/semantics.md.
"""

import os as _os
import sys as _sys


def _find_compiled_core():
    """Run from a source checkout (its directory first on sys.path, as `python -m` does)
    after `pip install .`, this package has no compiled modules: extend its __path__ to the
    installed copy that has them, as pkgutil.extend_path does for split packages."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    if any(name.startswith("_kernel.") and name.endswith((".so", ".pyd"))
           for name in _os.listdir(here)):
        return
    for entry in _sys.path:
        candidate = _os.path.join(_os.path.abspath(entry or "."), "vmo")
        if candidate != here and _os.path.isdir(candidate) and any(
                name.startswith("_kernel.") and name.endswith((".so", ".pyd"))
                for name in _os.listdir(candidate)):
            __path__.append(candidate)
            return


_find_compiled_core()

from . import constants as _constants  # noqa: E402
from ._coherency import CoherencyEvent  # noqa: E402
from ._kernel import Kernel as _CompiledKernel  # noqa: E402
from ._kernel import replay  # noqa: E402
from ._many import replay_many  # noqa: E402
from ._pin import Pin  # noqa: E402
from ._pythonic import PythonicKernel, Subscription, Vmo  # noqa: E402
from ._snapshot import Snapshot  # noqa: E402
from .batch import BATCH_DTYPE, Batch, BatchRef  # noqa: E402
from .constants import *  # noqa: E402,F401,F403  (the MX_* and ERR_* names of the contract)
from .errors import MxError, Status, status_name  # noqa: E402
from .records import BatchResult, HandleBasicInfo, Mismatch, ReplayResult  # noqa: E402

__version__ = "0.1.0"


class Kernel(PythonicKernel, _CompiledKernel):
    __doc__ = _CompiledKernel.__doc__
    __slots__ = ()


__all__ = ["Kernel", "Vmo", "Pin", "Subscription", "MxError", "Status", "status_name",
           "HandleBasicInfo", "CoherencyEvent", "Batch",
           "BatchRef", "BatchResult", "BATCH_DTYPE", "replay", "ReplayResult", "Mismatch",
           "replay_many", "Snapshot"]
__all__ += _constants.__all__
