"""Magenta constants of the VMO family (docs/magenta.md section 2), as plain ints and as enums.

Pure Python, shared by the compiled core and the reference model.
"""

from enum import IntEnum, IntFlag

from .errors import Status

__all__ = [
    "Op", "Rights", "PAGE_SIZE", "PAGE_SHIFT", "MX_VMO_MAX_SIZE", "MX_HANDLE_INVALID",
    "MX_VMO_CLONE_COPY_ON_WRITE", "MX_INFO_NONE", "MX_INFO_HANDLE_VALID",
    "MX_INFO_HANDLE_BASIC", "MX_OBJ_TYPE_NONE", "MX_OBJ_TYPE_VMEM", "MX_OBJ_TYPE_EVENT",
    "MX_OBJ_PROP_NONE", "MX_OBJ_PROP_WAITABLE", "MX_DEFAULT_VMO_RIGHTS",
    "MX_DEFAULT_EVENT_RIGHTS", "MX_MAX_HANDLES",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MX_VMO_MAX_SIZE = 0xFFFF_FFFF_FFFF_F000  # ROUNDDOWN(UINT64_MAX, PAGE_SIZE), docs/magenta.md 2.6
MX_HANDLE_INVALID = 0
MX_VMO_CLONE_COPY_ON_WRITE = 1

MX_INFO_NONE = 0
MX_INFO_HANDLE_VALID = 1
MX_INFO_HANDLE_BASIC = 2
MX_OBJ_TYPE_NONE = 0
MX_OBJ_TYPE_VMEM = 3
MX_OBJ_TYPE_EVENT = 5
MX_OBJ_PROP_NONE = 0
MX_OBJ_PROP_WAITABLE = 1

MX_MAX_HANDLES = 1 << 18  # kMaxHandleCount, docs/magenta.md 2.5


class Op(IntEnum):
    """`vmo_op_range` opcodes (docs/magenta.md 2.1)."""

    COMMIT = 1
    DECOMMIT = 2
    LOCK = 3
    UNLOCK = 4
    LOOKUP = 5
    CACHE_SYNC = 6
    CACHE_INVALIDATE = 7
    CACHE_CLEAN = 8
    CACHE_CLEAN_INVALIDATE = 9


class Rights(IntFlag):
    """Handle rights (docs/magenta.md 2.3)."""

    NONE = 0
    DUPLICATE = 1 << 0
    TRANSFER = 1 << 1
    READ = 1 << 2
    WRITE = 1 << 3
    EXECUTE = 1 << 4
    MAP = 1 << 5
    GET_PROPERTY = 1 << 6
    SET_PROPERTY = 1 << 7
    ENUMERATE = 1 << 8
    DESTROY = 1 << 9
    SET_POLICY = 1 << 10
    GET_POLICY = 1 << 11
    SAME_RIGHTS = 1 << 31


# Defaults of the normative era (docs/magenta.md 2.4): DUPLICATE|TRANSFER|READ|WRITE|EXECUTE|MAP.
MX_DEFAULT_VMO_RIGHTS = 0x3F
# Magenta's event: DUPLICATE|TRANSFER|READ|WRITE.
MX_DEFAULT_EVENT_RIGHTS = 0x0F


def _export_flat_names(namespace):
    """Put MX_VMO_OP_*, MX_RIGHT_* and the status names into ``namespace``."""
    for name, op in Op.__members__.items():
        namespace["MX_VMO_OP_" + name] = op.value
    for name, right in Rights.__members__.items():
        namespace["MX_RIGHT_" + name] = right.value
    for name, member in Status.__members__.items():
        namespace[name] = member
    return [n for n in namespace if n.startswith(("MX_VMO_OP_", "MX_RIGHT_", "ERR_", "NO_ERROR"))]


__all__ += _export_flat_names(globals())
