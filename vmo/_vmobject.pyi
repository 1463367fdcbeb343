"""Type stubs for vmo/_vmobject.pyx: VMO and event objects.

The operations (`vmo_*`, `event_new`) are C-level (_vmobject.pxd); from Python only the
object types are visible (they sit behind handles and are never handed out by the kernel).
"""

class VmoObject:
    @property
    def koid(self) -> int: ...

class EventObject:
    @property
    def koid(self) -> int: ...
