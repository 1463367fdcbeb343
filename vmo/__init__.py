"""vmo: Magenta's virtual memory objects, simulated exactly.

`Kernel` is one simulated machine (physical memory, frame allocator, handle table) with
Magenta's VMO system calls (the syscall layer: statuses returned) and `Vmo` objects (the
Pythonic layer: `MxError` raised). See README.md and docs/semantics.md.
"""

from . import constants as _constants
from ._kernel import Kernel as _CompiledKernel
from ._pythonic import PythonicKernel, Vmo
from .constants import *  # noqa: F401,F403  (the MX_* and ERR_* names of the contract)
from .errors import MxError, Status, status_name
from .records import HandleBasicInfo

__version__ = "0.1.0"


class Kernel(PythonicKernel, _CompiledKernel):
    __doc__ = _CompiledKernel.__doc__
    __slots__ = ()


__all__ = ["Kernel", "Vmo", "MxError", "Status", "status_name", "HandleBasicInfo"]
__all__ += _constants.__all__
