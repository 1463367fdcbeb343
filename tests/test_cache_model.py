"""The cache model (docs/cache-model.md) on both kernels: each line transition and hazard,
lines straddling a range's ends, ranges over uncommitted pages, clones, eviction, freed
frames with dirty lines, line sizes 16 and 4096, the options and the callback."""

import pytest

import vmo


def kern(make_kernel, **kw):
    return make_kernel(coherent=False, **kw)


def page_paddr(v, offset=0):
    return v.lookup(offset, 1)[0]


def kinds(k):
    return [(e.kind, e.paddr, e.koid, e.offset) for e in k.coherency_events()]


def test_coherent_default_has_no_cache(make_kernel):
    k = make_kernel()
    assert (k.coherent, k.cache_line, k.cache_lines) == (True, 64, None)
    v = k.create_vmo(4096)
    v.write(b"abc", 0)
    assert k.phys_read(page_paddr(v), 3) == b"abc"
    v.cache_invalidate(0, 4096)
    assert v.read(0, 3) == b"abc"
    assert k.coherency_events() == []
    s = k.stats()
    assert (s["cache_lines"], s["dirty_lines"]) == (0, 0)


@pytest.mark.parametrize("bad", [{"cache_line": 8}, {"cache_line": 8192}, {"cache_line": 48},
                                 {"cache_line": 64.0}, {"cache_lines": 0},
                                 {"cache_lines": -1}, {"cache_lines": 2.5}])
def test_options_validated(kernel_cls, bad):
    with pytest.raises(ValueError):
        kernel_cls(1 << 20, coherent=False, **bad)


def test_write_is_dirty_until_clean(make_kernel):
    k = kern(make_kernel)
    v = k.create_vmo(8192)
    v.write(b"x" * 100, 10)                      # lines 0 and 1 (bytes 0..127)
    p = page_paddr(v)
    assert k.stats()["cache_lines"] == 2 and k.stats()["dirty_lines"] == 2
    assert k.phys_read(p + 10, 100) == bytes(100)
    assert kinds(k) == [("device-read-dirty", p, v.info().koid, 0),
                        ("device-read-dirty", p + 64, v.info().koid, 64)]
    v.cache_clean(70, 1)                         # only line 1
    assert k.phys_read(p + 64, 64) == b"x" * 46 + bytes(18)
    assert k.stats()["dirty_lines"] == 1 and k.stats()["cache_lines"] == 2
    v.cache_sync(0, 1)                           # SYNC cleans
    assert k.phys_read(p, 128) == bytes(10) + b"x" * 100 + bytes(18)
    assert k.coherency_events() == []


def test_device_write_makes_lines_stale(make_kernel):
    k = kern(make_kernel)
    v = k.create_vmo(4096)
    v.commit()
    p = page_paddr(v)
    assert v.read(60, 8) == bytes(8)             # straddles lines 0 and 1: both cached
    k.phys_write(p + 62, b"DD")                  # bytes 62..63 (line 0) only
    assert v.read(60, 8) == bytes(8)
    assert kinds(k) == [("cpu-read-stale", p, v.info().koid, 0)]
    v.write(b"c", 0)                             # a write leaves the line stale
    v.read(0, 1)
    assert [e.kind for e in k.coherency_events()] == ["cpu-read-stale"]
    v.cache_clean(0, 1)                          # write-back ends staleness (device bytes lost)
    assert v.read(0, 64) == b"c" + bytes(63)
    assert k.phys_read(p, 64) == b"c" + bytes(63)
    assert k.coherency_events() == []


def test_clean_of_clean_stale_line_keeps_it_stale(make_kernel):
    k = kern(make_kernel)
    v = k.create_vmo(4096)
    v.commit()
    v.read(0, 1)
    k.phys_write(page_paddr(v), b"Z")
    v.cache_clean(0, 4096)
    assert v.read(0, 1) == b"\0"
    assert [e.kind for e in k.coherency_events()] == ["cpu-read-stale"]
    v.cache_clean_invalidate(0, 4096)
    assert v.read(0, 1) == b"Z" and k.coherency_events() == []


def test_invalidate_discards_dirty_bytes(make_kernel):
    k = kern(make_kernel)
    v = k.create_vmo(4096)
    v.write(b"lost", 100)
    v.cache_invalidate(100, 1)
    assert kinds(k) == [("invalidate-dirty", page_paddr(v) + 64, v.info().koid, 64)]
    assert v.read(100, 4) == bytes(4)
    assert k.stats()["cache_lines"] == 1        # filled again by the read


def test_ops_skip_uncommitted_pages_and_check_as_before(make_kernel):
    k = kern(make_kernel)
    v = k.create_vmo(3 * 4096)
    v.write(b"a", 2 * 4096)
    assert v.read(0, 8) == bytes(8)              # no frame: nothing cached
    assert k.stats()["cache_lines"] == 1
    h = v.handle
    assert k.vmo_op_range(h, vmo.MX_VMO_OP_CACHE_CLEAN, 0, 0) == vmo.ERR_INVALID_ARGS
    assert k.vmo_op_range(h, vmo.MX_VMO_OP_CACHE_CLEAN, 0, 4 * 4096) == vmo.ERR_OUT_OF_RANGE
    assert k.vmo_op_range(h, vmo.MX_VMO_OP_CACHE_CLEAN, 0, 3 * 4096) == vmo.NO_ERROR
    assert k.phys_read(page_paddr(v, 2 * 4096), 1) == b"a"


def test_clone_ops_act_on_parent_frame(make_kernel):
    k = kern(make_kernel)
    parent = k.create_vmo(4096)
    parent.write(b"p", 0)                        # dirty line of the parent's frame
    child = parent.clone()
    child.cache_clean(0, 1)                      # LOOKUP through the clone: the parent's page
    assert k.phys_read(page_paddr(parent), 1) == b"p"
    assert child.read(0, 1) == b"p"
    k.phys_write(page_paddr(parent), b"q")
    assert child.read(0, 1) == b"p"
    assert kinds(k) == [("cpu-read-stale", page_paddr(parent), parent.info().koid, 0)]


def test_copy_on_write_goes_through_the_cache(make_kernel):
    k = kern(make_kernel)
    parent = k.create_vmo(4096)
    parent.write(b"old", 0)                      # dirty in the cache, RAM still zero
    child = parent.clone()
    child.write(b"N", 1)                         # copy: CPU read of the parent's lines
    assert child.read(0, 3) == b"oNd"
    assert k.phys_read(page_paddr(child), 3) == bytes(3)
    child.cache_clean(0, 4096)
    assert k.phys_read(page_paddr(child), 3) == b"oNd"


def test_eviction_writes_back_lru(make_kernel):
    k = kern(make_kernel, cache_lines=2)
    v = k.create_vmo(4096)
    v.write(b"A", 0)
    v.write(b"B", 64)
    v.read(0, 1)                                 # line 0 most recent
    v.write(b"C", 128)                           # evicts line 1 (written back)
    p = page_paddr(v)
    assert k.stats()["cache_lines"] == 2
    assert k.phys_read(p + 64, 1) == b"B"
    assert k.phys_read(p, 1) == b"\0"            # line 0 still dirty in the cache
    assert [e.offset for e in k.coherency_events()] == [0]


def test_freed_frame_loses_dirty_lines(make_kernel):
    k = kern(make_kernel)
    v = k.create_vmo(2 * 4096)
    v.write(b"x" * 8192, 0)
    assert k.stats()["dirty_lines"] == 128
    v.decommit(4096, 4096)
    assert k.stats()["cache_lines"] == 64
    v.size = 0
    assert k.stats()["cache_lines"] == 0 and k.coherency_events() == []
    w = k.create_vmo(4096)
    w.commit()
    assert w.read(0, 4096) == bytes(4096)
    assert k.phys_read(page_paddr(w), 4096) == bytes(4096)


@pytest.mark.parametrize("line", [16, 4096])
def test_line_sizes(make_kernel, line):
    k = kern(make_kernel, cache_line=line)
    v = k.create_vmo(4096)
    v.write(b"y", 20)
    assert k.stats()["cache_lines"] == 1
    k.phys_read(page_paddr(v), 4096)
    e, = k.coherency_events()
    assert e.paddr == page_paddr(v) + (20 // line) * line and e.offset == (20 // line) * line


def test_callback_and_seq(make_kernel):
    got = []
    k = kern(make_kernel, on_coherency_event=got.append)
    v = k.create_vmo(4096)
    v.write(b"z", 0)
    k.phys_read(page_paddr(v), 1)
    assert len(got) == 1 and got[0].kind == "device-read-dirty"
    k.phys_read(page_paddr(v), 1)
    assert got[1].seq > got[0].seq
    k.on_coherency_event = None
    k.phys_read(page_paddr(v), 1)
    assert len(got) == 2 and len(k.coherency_events(clear=False)) == 3
    assert len(k.coherency_events()) == 3 and k.coherency_events() == []


def test_trace_carries_cache_options(kernel_cls, tmp_path):
    """A trace of a non-coherent kernel records its cache options (header option 1), so a
    replay builds the same kernel: the device read of dirty bytes replays as zeros."""
    from vmo._reference import replay as ref_replay

    k = kernel_cls(1 << 22, coherent=False, cache_line=32, cache_lines=5)
    path = str(tmp_path / "nc.vmotrace")
    with k.record(path):
        v = k.create_vmo(8192)
        v.write(b"hello", 0)
        assert k.phys_read(v.lookup(0, 1)[0], 5) == bytes(5)
    k.close()
    for replay in (vmo.replay, ref_replay):
        result = replay(path)
        assert result.mismatches == 0 and result.ops == 5


def test_coherent_trace_header_unchanged(tmp_path):
    from vmo._trace import header_bytes

    assert header_bytes([(0x100000, 1 << 20)]) == header_bytes([(0x100000, 1 << 20)],
                                                               (True, 64, None))
    nc = header_bytes([(0x100000, 1 << 20)], (False, 128, None))
    assert len(nc) == len(header_bytes([(0x100000, 1 << 20)])) + 12


@pytest.mark.parametrize("line,lines", [(8, 0), (100, 0), (64, 1 << 31)])
def test_trace_refuses_bad_cache_option(tmp_path, line, lines):
    import struct
    import zlib

    from vmo._reference._trace import TraceReader, encode_header

    head = encode_header([(0x100000, 1 << 20)], [(1, struct.pack("<II", line, lines))])
    path = tmp_path / "bad.vmotrace"
    path.write_bytes(head)
    assert zlib.crc32(head[:-4]) == struct.unpack("<I", head[-4:])[0]
    with pytest.raises(ValueError, match="cache"):
        vmo.replay(str(path))
    with pytest.raises(ValueError, match="cache"):
        TraceReader(str(path))


def test_snapshot_refused_when_not_coherent(make_kernel):
    k = kern(make_kernel)
    k.create_vmo(4096).write(b"x", 0)
    with pytest.raises(ValueError, match="non-coherent"):
        k.snapshot()
