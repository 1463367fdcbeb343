"""Records returned by `object_get_info` (pure Python, shared by both kernels)."""

from typing import NamedTuple

__all__ = ["HandleBasicInfo"]


class HandleBasicInfo(NamedTuple):
    """`mx_info_handle_basic_t` (docs/magenta.md 3.11)."""

    koid: int
    rights: int
    type: int
    related_koid: int
    props: int
