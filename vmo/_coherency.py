"""The cache model's Python face, shared by the compiled core and the reference model: the
`CoherencyEvent` record and the check of the `Kernel` options (docs/cache-model.md)."""

from collections import namedtuple

__all__ = ["EVENT_KINDS", "CoherencyEvent", "cache_options"]

# Indexed by the C event kind (_cache.pxd EV_*).
EVENT_KINDS = ("device-read-dirty", "cpu-read-stale", "invalidate-dirty")

CoherencyEvent = namedtuple("CoherencyEvent", ["kind", "paddr", "koid", "offset", "seq"])
CoherencyEvent.__doc__ = """A coherency hazard found by the cache model of a non-coherent
kernel: ``kind`` (one of EVENT_KINDS), ``paddr`` (the line's physical address), ``koid`` and
``offset`` (the VMO holding the frame as its own page and the line's offset in it; None when
no VMO holds it), ``seq`` (the kernel's call counter at the call that raised it)."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def cache_options(coherent, cache_line, cache_lines):
    """The checked options as (coherent, cache_line, cache_lines): ValueError unless
    cache_line is a power of two from 16 to 4096 and cache_lines is None or a positive int
    (checked on a coherent kernel too, so that a wrong option never goes unnoticed)."""
    if not _is_int(cache_line) or not 16 <= cache_line <= 4096 or cache_line & (cache_line - 1):
        raise ValueError(f"cache_line must be a power of two from 16 to 4096, not {cache_line!r}")
    if cache_lines is not None and (not _is_int(cache_lines) or cache_lines <= 0
                                    or cache_lines >= 1 << 31):
        raise ValueError(f"cache_lines must be None or a positive int below 2**31, "
                         f"not {cache_lines!r}")
    return bool(coherent), cache_line, cache_lines
