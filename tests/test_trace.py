"""Traces, recording, replay and batches on the compiled core (docs/trace-format.md,
docs/api.md "Traces and batches")."""

import os
import pickle
import struct
from array import array

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

import vmo
from vmo import Op, Status
from vmo._trace import TraceReader, crc32, header_bytes

PAGE = 4096
S = Status


def _record(tmp_path, program, memory=1 << 24, name="t.trace"):
    path = str(tmp_path / name)
    k = vmo.Kernel(memory)
    with k.record(path):
        program(k)
    k.close()
    return path


def _every_call(k):
    """A program of every call, successes and failures, through every layer."""
    s, h = k.vmo_create(8 * PAGE)
    k.vmo_create(1, 1)
    k.vmo_create(-1)                                   # ARG_RANGE
    k.vmo_write(h, b"hello world", 5)
    k.vmo_write(h, b"x", 1 << 40)                      # ERR_OUT_OF_RANGE
    k.vmo_write(h, bytes(2), 0, 10)                    # BAD_BUFFER (length > data)
    k.vmo_write(h, None, 0, 0)                         # NULL_BUFFER, nothing
    k.vmo_write(h, None, 0, 3)                         # NULL_BUFFER, ERR_INVALID_ARGS
    buf = bytearray(32)
    k.vmo_read(h, buf, 0)
    k.vmo_read(h, bytes(4), 0)                         # read-only: BAD_BUFFER
    k.vmo_read(0, buf, 0)
    k.vmo_read_bytes(h, 3, 20)
    k.vmo_read_bytes(h, 1 << 40, 1)
    k.vmo_get_size(h)
    k.vmo_get_size(12345)
    k.vmo_set_size(h, 6 * PAGE)
    for op in (Op.COMMIT, Op.DECOMMIT, Op.LOCK, Op.CACHE_SYNC, 99):
        k.vmo_op_range(h, op, 0, 2 * PAGE)
    k.vmo_op_range(h, Op.COMMIT, 0, 3 * PAGE)
    entries = array("Q", [0] * 8)
    k.vmo_op_range(h, Op.LOOKUP, 0, 3 * PAGE, entries)
    k.vmo_op_range(h, Op.LOOKUP, 0, 5 * PAGE, entries)  # ERR_NO_MEMORY after 3 entries
    k.vmo_op_range(h, Op.LOOKUP, 0, 5 * PAGE, None)
    k.vmo_op_range(h, Op.LOOKUP, 0, 5 * PAGE, entries, 8)
    k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, bytes(8))   # read-only: BAD_BUFFER
    k.vmo_op_range(h, Op.LOOKUP, 0, 5 * PAGE, entries, 1 << 70)
    s, c = k.vmo_clone(h, 1, 0, 4 * PAGE)
    k.vmo_clone(h, 0, 0, PAGE)
    k.vmo_write(c, b"cow", 100)
    k.vmo_op_range(c, Op.LOOKUP, 0, 2 * PAGE, entries)
    k.vmo_op_range(c, Op.LOOKUP, 0, 4 * PAGE, entries)
    s, d = k.handle_duplicate(h, vmo.MX_RIGHT_SAME_RIGHTS)
    k.handle_duplicate(h, 1 << 31)
    s, r = k.handle_replace(d, 0x5)
    k.object_get_info(r, vmo.MX_INFO_HANDLE_BASIC)
    k.object_get_info(r, vmo.MX_INFO_HANDLE_VALID)
    k.object_get_info(r, 99)
    s, e = k.event_create()
    k.event_create(1)
    k.vmo_read(e, buf, 0)
    k.object_get_info(e, vmo.MX_INFO_HANDLE_BASIC)
    k.vmo_committed_bytes(h)
    k.vmo_committed_bytes(e)
    s, g = k.vmo_create_contiguous(3 * PAGE, 13)
    k.vmo_create_contiguous(0)
    k.handle_close(r)
    k.handle_close(r)
    k.handle_close(c)
    # Physical access, successes and the MxError failures.
    k.vmo_op_range(g, Op.LOOKUP, 0, PAGE, entries)
    base = entries[0]
    assert k.phys_write(base + 7, b"device") == 6
    assert k.phys_read(base, 16)[7:13] == b"device"
    for call in (lambda: k.phys_read(0, 4), lambda: k.phys_read(base, -1),
                 lambda: k.phys_read(base, 1 << 70), lambda: k.phys_write(0, b"x"),
                 lambda: k.phys_view(0, 1)):
        with pytest.raises(vmo.MxError):
            call()
    view = k.phys_view(base + PAGE, 64)
    view[3:9] = b"dmadma"                              # behind the kernel's back
    view.release()
    assert k.vmo_read_bytes(g, PAGE, 16)[1][3:9] == b"dmadma"
    # The Pythonic layer goes through the syscall layer: recorded too.
    with k.create_vmo(2 * PAGE) if hasattr(k, "create_vmo") else _nullvmo(k) as v:
        v.write(b"pythonic", 10)
        v.read(0, 30)


class _nullvmo:
    def __init__(self, k):
        s, h = k.vmo_create(2 * PAGE)
        self.v = vmo.Vmo(k, h)

    def __enter__(self):
        return self.v

    def __exit__(self, *exc):
        self.v.close()


def test_round_trip_every_call(tmp_path):
    path = _record(tmp_path, _every_call)
    r = vmo.replay(path)
    assert r.mismatches == 0, r.first_mismatch
    assert not r.truncated and r.clean
    calls = {rec[0] for blk, _ in TraceReader(path).records() for rec in
             struct.iter_unpack("<BbHIIIQQQQ", blk)}
    assert calls == set(range(1, 20))
    assert r.ops > 60 and r.ops_per_second > 0
    assert r.stats["handles"] > 0
    r2 = pickle.loads(pickle.dumps(r))
    assert (r2.ops, r2.mismatches, r2.stats) == (r.ops, r.mismatches, r.stats)


def test_same_calls_same_bytes(tmp_path):
    a = _record(tmp_path, _every_call, name="a.trace")
    b = _record(tmp_path, _every_call, name="b.trace")
    assert open(a, "rb").read() == open(b, "rb").read()


def test_record_needs_initial_state(tmp_path):
    k = vmo.Kernel(1 << 20)
    k.vmo_create(PAGE)
    with pytest.raises(ValueError, match="initial state"):
        k.record(str(tmp_path / "x"))
    k2 = vmo.Kernel(1 << 20)
    with k2.record(str(tmp_path / "y")):
        with pytest.raises(ValueError, match="already recording"):
            k2.record(str(tmp_path / "z"))


def test_end_mark_written_on_exception(tmp_path):
    path = str(tmp_path / "e.trace")
    k = vmo.Kernel(1 << 20)
    with pytest.raises(RuntimeError):
        with k.record(path):
            k.vmo_create(PAGE)
            raise RuntimeError
    assert not k.recording
    r = vmo.replay(path)
    assert r.clean and r.ops == 1


def test_mismatch_reported(tmp_path):
    def prog(k):
        s, h = k.vmo_create(PAGE)
        k.vmo_write(h, b"abc", 0)
        k.vmo_read_bytes(h, 0, 3)
    path = _record(tmp_path, prog)
    data = bytearray(open(path, "rb").read())
    # Rewrite the read's recorded hash: decode, change, re-encode as a valid file.
    rd = TraceReader(path)
    (recs, side), = rd.records()
    recs = bytearray(recs)
    struct.pack_into("<Q", recs, 2 * 48 + 32, 12345)
    hdr = header_bytes(rd.memory_map)
    from vmo._trace import encode_records
    enc = encode_records(recs)
    blk = b"VMOB" + struct.pack("<III", 3, len(enc), len(side)) + enc + side
    blk += struct.pack("<I", crc32(blk))
    end = b"VMOB" + struct.pack("<IIIQ", 0, 0, 8, 3)
    end += struct.pack("<I", crc32(end))
    open(path, "wb").write(hdr + blk + end)
    assert data != open(path, "rb").read()
    r = vmo.replay(path)
    assert r.mismatches == 1
    m = r.first_mismatch
    assert (m.index, m.call) == (2, "vmo_read_bytes")
    assert m.recorded[2] == 12345 and m.got[2] != 12345
    assert vmo.replay(path, check=False).mismatches == 0


def _small_trace(tmp_path):
    def prog(k):
        s, h = k.vmo_create(4 * PAGE)
        for i in range(6):
            k.vmo_op_range(h, Op.COMMIT, 0, PAGE)
            k.vmo_write(h, bytes([i]) * 5, i)
            k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, array("Q", [0]))
            k.vmo_op_range(h, Op.DECOMMIT, 0, PAGE)
        k.handle_close(h)
    return _record(tmp_path, prog)


def test_truncation_at_every_byte(tmp_path):
    path = _small_trace(tmp_path)
    data = open(path, "rb").read()
    full = vmo.replay(path)
    hl = struct.unpack_from("<I", data, 12)[0]
    cut_path = str(tmp_path / "cut.trace")
    last_ops = 0
    for n in range(len(data)):
        open(cut_path, "wb").write(data[:n])
        if n < hl:
            with pytest.raises(ValueError):
                vmo.replay(cut_path)
            continue
        r = vmo.replay(cut_path)
        assert r.truncated and r.mismatches == 0, n
        assert r.ops >= last_ops and r.ops <= full.ops
        last_ops = r.ops
    assert last_ops == full.ops      # cut in the end mark: every record replayed


def test_flipped_bytes_never_clean(tmp_path):
    path = _small_trace(tmp_path)
    data = open(path, "rb").read()
    bad = str(tmp_path / "bad.trace")
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            mutated = bytearray(data)
            mutated[i] ^= bit
            open(bad, "wb").write(mutated)
            try:
                r = vmo.replay(bad)
            except ValueError:
                continue
            assert not r.clean, (i, bit)


def test_reader_refusals(tmp_path):
    path = _small_trace(tmp_path)
    data = open(path, "rb").read()
    bad = str(tmp_path / "bad.trace")

    def refuses(blob, match):
        open(bad, "wb").write(blob)
        with pytest.raises(ValueError, match=match):
            vmo.replay(bad)

    refuses(b"NOTATRACE" + data[9:], "magic")
    refuses(data[:8] + struct.pack("<I", 2) + data[12:], "is newer")
    hl = struct.unpack_from("<I", data, 12)[0]
    # A block claiming 2**32 - 1 records, and an end mark claiming 2**63 records.
    blk = b"VMOB" + struct.pack("<III", 0xFFFFFFFF, 100, 0)
    refuses(data[:hl] + blk + bytes(104), "claims")
    end = b"VMOB" + struct.pack("<IIIQ", 0, 0, 8, 1 << 63)
    end += struct.pack("<I", crc32(end))
    refuses(data[:hl] + end, "end mark")
    refuses(data + b"x", "after the end mark")
    # An unknown call code in a whole block (re-encoded with a valid CRC).
    from vmo._trace import encode_records
    rec = struct.pack("<BbHIIIQQQQ", 42, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    enc = encode_records(rec)
    blk = b"VMOB" + struct.pack("<III", 1, len(enc), 0) + enc
    blk += struct.pack("<I", crc32(blk))
    refuses(data[:hl] + blk, r"record 0 .*unknown call code")


def test_writes_sit_in_the_side_section(tmp_path):
    payload = os.urandom(3 * PAGE)

    def prog(k):
        s, h = k.vmo_create(4 * PAGE)
        k.vmo_write(h, payload, 0)
        assert k.vmo_read_bytes(h, 0, len(payload))[1] == payload
    path = _record(tmp_path, prog)
    (recs, side), = TraceReader(path).records()
    assert side == payload
    assert vmo.replay(path).clean


def test_bytes_per_call(tmp_path):
    def prog(k):
        s, h = k.vmo_create(16 * PAGE)
        buf = array("Q", [0])
        for _ in range(3000):
            k.vmo_op_range(h, Op.COMMIT, 0, PAGE)
            k.vmo_op_range(h, Op.LOOKUP, 0, PAGE, buf)
            k.vmo_op_range(h, Op.DECOMMIT, 0, PAGE)
    path = _record(tmp_path, prog)
    assert os.path.getsize(path) / 9001 <= 16


# -- batches --------------------------------------------------------------------------------
def test_batch_of_every_call():
    k = vmo.Kernel(1 << 24)
    b = vmo.Batch()
    h = b.create(8 * PAGE)
    b.write(h, b"hello", 3)
    b.write(h, bytes(100), 200)                       # NO_DATA
    rd = b.read(h, 0, 16)
    b.read_bytes(h, 0, 16)
    b.get_size(h)
    b.set_size(h, 6 * PAGE)
    b.commit(h, 0, 2 * PAGE)
    lk = b.lookup(h, 0, 2 * PAGE)
    b.decommit(h, PAGE, PAGE)
    lk2 = b.lookup(h, 0, 2 * PAGE)                    # ERR_NO_MEMORY after 1 entry
    c = b.clone(h, 0, PAGE)
    d = b.duplicate(h, vmo.MX_RIGHT_SAME_RIGHTS)
    r = b.replace(d, 0x5)
    info = b.get_info(r, vmo.MX_INFO_HANDLE_BASIC)
    e = b.event_create()
    b.committed_bytes(h)
    g = b.create_contiguous(2 * PAGE)
    b.close(c)
    b.op_range(h, Op.CACHE_SYNC, 0, PAGE)
    assert len(b) == 20
    res = k.run(b)
    assert len(res) == 20
    assert all(st == 0 for i, st in enumerate(res.statuses) if i != lk2.index), res.statuses
    assert res.statuses[lk2.index] == S.ERR_NO_MEMORY
    # The same calls through the syscall layer give the same results.
    k2 = vmo.Kernel(1 << 24)
    s, h2 = k2.vmo_create(8 * PAGE)
    assert res.values[h.index] == h2
    k2.vmo_write(h2, b"hello", 3)
    data = k2.vmo_read_bytes(h2, 0, 16)[1]
    from vmo._tracerec_py import hash64
    assert res.c[rd.index] == hash64(data) and res.values[rd.index] == 16
    assert len(res.lookup_entries(lk.index)) == 2
    assert len(res.lookup_entries(lk2.index)) == 1
    assert res.lookup_entries(lk.index)[0] == res.lookup_entries(lk2.index)[0]
    assert res.values[info.index] >= 1024
    assert res.c[info.index] & 0xFFFFFFFF == 0x5
    assert res.values[e.index] and res.values[g.index]
    assert list(res.entry_start)[-1] == len(res.entries) == 3
    pickle.loads(pickle.dumps(res))


def test_batch_phys():
    k = vmo.Kernel(1 << 24)
    b = vmo.Batch()
    g = b.create_contiguous(PAGE)
    b.lookup(g, 0, PAGE)
    res = k.run(b)
    base = res.lookup_entries(1)[0]
    b2 = vmo.Batch()
    b2.phys_write(base + 1, b"dev")
    b2.phys_read(base, 8)
    b2.phys_read(0, 8)
    res2 = k.run(b2)
    assert list(res2.statuses) == [0, 0, S.ERR_OUT_OF_RANGE]
    assert res2.values[0] == 3
    assert k.phys_read(base, 8) == b"\0dev\0\0\0\0"


def test_ref_semantics():
    k = vmo.Kernel(1 << 20)
    b = vmo.Batch()
    bad = b.create(1, options=1)                      # fails: handle 0
    b.get_size(bad)
    good = b.create(PAGE)
    b.get_size(good)
    res = k.run(b)
    assert list(res.statuses) == [S.ERR_INVALID_ARGS, S.ERR_BAD_HANDLE, 0, 0]
    assert res.values[3] == PAGE
    with pytest.raises(ValueError):
        vmo.Batch().get_size(vmo.BatchRef(0))          # no such record yet
    raw = bytearray(b.records)
    struct.pack_into("<I", raw, 48 + 4, 3)             # REF to a later record
    with pytest.raises(ValueError, match="batch record 1"):
        k.run(vmo.Batch._from_buffers(raw, b.data))
    raw[0] = 77
    with pytest.raises(ValueError, match="batch record 0"):
        k.run(vmo.Batch._from_buffers(raw, b.data))
    assert k.stats()["handles"] == 1                   # nothing of those batches ran


def test_batch_recorded(tmp_path):
    path = str(tmp_path / "b.trace")
    k = vmo.Kernel(1 << 20)
    b = vmo.Batch()
    h = b.create(PAGE)
    b.write(h, b"abc", 0)
    b.read(h, 0, 3)
    b.close(h)
    with k.record(path):
        k.run(b)
        k.vmo_create(PAGE)
    r = vmo.replay(path)
    assert r.clean and r.ops == 5


def test_numpy_batches():
    np = pytest.importorskip("numpy")
    dt = np.dtype(vmo.BATCH_DTYPE)
    assert dt.itemsize == 48
    b = vmo.Batch()
    h = b.create(PAGE)
    b.commit(h, 0, PAGE)
    b.write(h, b"xyz", 0)
    arr = np.frombuffer(bytes(b.records), dtype=dt).copy()
    b2 = vmo.Batch.from_array(arr, data=b.data)
    assert b2.records == b.records
    res = vmo.Kernel(1 << 20).run(b2)
    assert list(res.statuses) == [0, 0, 0]
    with pytest.raises(ValueError):
        vmo.Batch.from_array(np.zeros(3, dtype=np.uint64))
    with pytest.raises(ValueError):
        vmo.Batch.from_array(np.zeros((2, 2), dtype=dt))
    wrong = np.dtype([(n, "<u8" if n == "x" else f) for n, f in vmo.BATCH_DTYPE])
    with pytest.raises(ValueError):
        vmo.Batch.from_array(np.zeros(2, dtype=wrong))
    with pytest.raises(ValueError):
        vmo.Batch.from_array(np.zeros(2, dtype=np.dtype("V48")))


# -- a recording of the state machine replays with 0 mismatches -----------------------------
from test_state_machine import VmoStateMachine  # noqa: E402


class RecordedStateMachine(VmoStateMachine):
    @initialize(target=VmoStateMachine.handles,
                pages=st.integers(4, 24), base_pages=st.sampled_from([0x100, 1]))
    def make_kernels(self, pages, base_pages):
        import tempfile

        from test_state_machine import Pair
        self.pair = Pair(pages * PAGE, memory_base=base_pages * PAGE)
        fd, self.path = tempfile.mkstemp(suffix=".trace")
        os.close(fd)
        self.recording = self.pair.core.record(self.path)
        self.recording.__enter__()
        status, h = self.pair.call("vmo_create", 3 * PAGE + 5)
        assert status is S.NO_ERROR
        return self._new(h)

    # Only the core records here: a recording kernel refuses snapshots (docs/semantics.md
    # "Snapshots": a trace has no record for them), so the snapshot steps become that check.
    @rule()
    def snapshot(self):
        with pytest.raises(ValueError, match="recording"):
            self.pair.core.snapshot()

    def restore(self, data):
        pass

    def drop_snapshot(self, data):
        pass

    # The trace is of the kernel that records: continuing on a loaded one would leave it
    # behind (a loaded kernel is not recording), so no save-and-load steps here.
    def save_and_load(self, dice, how):
        pass

    def teardown(self):
        rec = getattr(self, "recording", None)
        try:
            super().teardown()
        finally:
            if rec is not None:
                rec.__exit__(None, None, None)
                r = vmo.replay(self.path)
                os.unlink(self.path)
                assert r.clean, (r, r.first_mismatch)


TestRecordedStateMachine = RecordedStateMachine.TestCase
TestRecordedStateMachine.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None,
    suppress_health_check=list(HealthCheck))
