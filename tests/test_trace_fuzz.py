"""Mutated traces and batches (docs/trace-format.md "What a reader refuses"): the reader
raises ValueError or the replay runs to its end, never crashing or hanging, and a mutated
trace is never reported clean unless its bytes decode to the same records."""

import os
import struct
import tempfile
from array import array

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmo
from vmo import Op

PAGE = 4096


def _trace():
    fd, path = tempfile.mkstemp(suffix=".trace")
    os.close(fd)
    k = vmo.Kernel(1 << 20)
    with k.record(path):
        s, h = k.vmo_create(4 * PAGE)
        for i in range(5):
            k.vmo_op_range(h, Op.COMMIT, 0, PAGE)
            k.vmo_write(h, bytes([i + 1]) * 9, 7 * i)
            k.vmo_read_bytes(h, 0, 40)
            k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, array("Q", [0]))
            s, c = k.vmo_clone(h, 1, 0, PAGE)
            k.object_get_info(c, vmo.MX_INFO_HANDLE_BASIC)
            k.handle_close(c)
    data = open(path, "rb").read()
    os.unlink(path)
    return data


TRACE = _trace()
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@_SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(TRACE) - 1), st.integers(1, 255)), min_size=1,
                max_size=4), st.integers(0, len(TRACE)))
def test_mutated_traces(flips, cut):
    data = bytearray(TRACE)
    for i, x in flips:
        data[i] ^= x
    data = data[:max(cut, 1)] if cut < len(TRACE) else data
    fd, path = tempfile.mkstemp(suffix=".trace")
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            r = vmo.replay(path)
        except ValueError:
            return
        assert r.ops >= 0
        if bytes(data) != TRACE:
            assert not r.clean or r.ops == 41
    finally:
        os.unlink(path)


def _batch():
    b = vmo.Batch()
    h = b.create(4 * PAGE)
    b.commit(h, 0, 2 * PAGE)
    b.write(h, b"abcdef", 3)
    b.read(h, 0, 16)
    b.lookup(h, 0, 2 * PAGE)
    c = b.clone(h, 0, PAGE)
    b.get_info(c, vmo.MX_INFO_HANDLE_BASIC)
    b.phys_read(0x100000, 8)
    b.phys_write(0x100000, b"xy")
    b.close(c)
    return b


BATCH = _batch()


@_SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(BATCH.records) - 1), st.integers(1, 255)),
                min_size=1, max_size=4))
def test_mutated_batches(flips):
    records = bytearray(BATCH.records)
    for i, x in flips:
        records[i] ^= x
    # Keep lengths bounded so a mutated read or write stays quick (not a hang).
    for j in range(len(records) // 48):
        a, b = struct.unpack_from("<QQ", records, 48 * j + 16)
        struct.pack_into("<QQ", records, 48 * j + 16, a % (1 << 24), b % (1 << 24))
    k = vmo.Kernel(1 << 20)
    try:
        res = k.run(vmo.Batch._from_buffers(records, BATCH.data))
    except ValueError:
        return
    assert len(res) == len(BATCH)
    k._check()
