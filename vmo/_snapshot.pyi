"""Type stubs for vmo/_snapshot.pyx: snapshots of a kernel (`Kernel.snapshot`,
`Kernel.restore`) and the dirty log's reading (`Kernel.dirty_log`).

The C-level interface (`snap_take`, `snap_restore`, `dirty_log_read`, `dirty_log_copy`) is
declared in _snapshot.pxd.
"""

from typing import Any

class Snapshot:
    """The state of a kernel at one moment, for `Kernel.restore`. Opaque; it keeps its
    kernel alive; dropping it frees what it holds."""

    @property
    def kernel(self) -> Any: ...
    @property
    def _preimages(self) -> tuple[int, int, int]:
        """Test shim: (frames' bytes, allocator entries, page-table leaves) saved in this
        snapshot's own store."""
        ...
