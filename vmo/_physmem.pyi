"""Type stubs for vmo/_physmem.pyx: physical memory as devices see it.

The `phys_*` functions are C-level (_physmem.pxd); from Python they are reached through
Kernel.phys_read, Kernel.phys_write and Kernel.phys_view.
"""

class PhysView:
    """The exporter behind `Kernel.phys_view` (pins its frames while exported)."""
    @property
    def address(self) -> int:
        """The host address of the view's first byte (vmo.Pin.address)."""
