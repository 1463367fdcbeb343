"""Type stubs for the trace and batch executor (vmo/_exec.pyx)."""

from typing import Any

from .records import ReplayResult

def replay(path: Any, *, check: bool = ...) -> ReplayResult: ...
