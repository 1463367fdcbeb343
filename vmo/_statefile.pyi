"""Type stubs for the state file engine of the compiled core (vmo/_statefile.pyx,
docs/state-format.md)."""

from typing import Any, Type, TypeVar

from ._kernelcore import KernelCore

K = TypeVar("K", bound=KernelCore)

MAGIC: bytes
VERSION: int

def save_kernel(k: KernelCore, path: Any) -> None: ...
def dump_kernel(k: KernelCore) -> bytes: ...
def load_kernel(cls: Type[K], path: Any) -> K: ...
def load_kernel_bytes(cls: Type[K], data: Any) -> K: ...
