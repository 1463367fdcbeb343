"""A VMO's page table: a dict of page index -> frame, the spec of the core's radix tree.

Named as the core's (`pt_get`, `pt_set`, `pt_count`, `pt_remove`). Range walks go over the
pages held, never over every index of the range, so their cost follows the pages present as
the radix tree's does.
"""

from ._frames import pool_give

__all__ = ["PAGE_LIMIT", "pt_count", "pt_get", "pt_remove", "pt_set"]

#: Page indices are below 2**52 (MX_VMO_MAX_SIZE / 4096): the end of "every page".
PAGE_LIMIT = 1 << 52


#: ``pt_get(pt, index)``: the frame at page ``index``, or None (dict.get itself: it is called
#: for every level of every fault, and a Python wrapper would only add a frame).
pt_get = dict.get

#: ``pt_set(pt, index, frame)``: put ``frame`` at page ``index`` (which holds none).
pt_set = dict.__setitem__


def pt_count(pt, start, end):
    """Pages held with index in ``[start, end)``."""
    return sum(1 for index in pt if start <= index < end)


def pt_remove(pt, start, end, pool):
    """Take the pages with index in ``[start, end)`` out and give their frames to ``pool``
    in ascending page-index order (so the frame of the highest index is reused first)."""
    indices = sorted(index for index in pt if start <= index < end)
    pool_give(pool, [pt.pop(index) for index in indices])
