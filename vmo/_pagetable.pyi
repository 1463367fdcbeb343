"""Type stubs for vmo/_pagetable.pyx: the radix page table.

Its interface is C-level (`page_table` and the `pt_*` functions in _pagetable.pxd), for
cimport by other Cython modules; nothing is exposed to Python.
"""

def node_bytes() -> int:
    """Bytes of page-table nodes currently allocated in this process (every kernel)."""
    ...
