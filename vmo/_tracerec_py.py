"""hash64 of docs/trace-format.md in Python (tests and tools; the C one is _tracerec.pxd)."""


def hash64(data):
    """The trace's hash of bytes: 8-byte little-endian words, the last zero-padded."""
    data = bytes(data)
    n = len(data)
    m = (1 << 64) - 1
    h = (n * 0x9E3779B97F4A7C15) & m
    for i in range(0, n, 8):
        w = int.from_bytes(data[i:i + 8], "little")
        h = ((h ^ w) * 0xFF51AFD7ED558CCD) & m
        h ^= h >> 29
    return h ^ (h >> 32)
