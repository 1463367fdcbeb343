"""vmo.workloads (docs/workloads.md): deterministic by seed, well-formed records, sensible
status mixes on the reference model; the compiled runs skip until the engine lands."""

import collections

import pytest

import vmo
from vmo import workloads
from vmo._reference import Kernel, replay
from vmo._reference import _trace as T

MiB = 1 << 20


@pytest.mark.parametrize("name", workloads.NAMES)
def test_deterministic_by_seed(name):
    a = workloads.buffers(name, 2000, 42, 16 * MiB)
    assert a == workloads.buffers(name, 2000, 42, 16 * MiB)
    assert a != workloads.buffers(name, 2000, 43, 16 * MiB)
    assert len(a[0]) == 2000 * 48
    # A shorter batch is a prefix of a longer one of the same seed.
    short = workloads.buffers(name, 500, 42, 16 * MiB)
    assert a[0][:500 * 48] == short[0]


@pytest.mark.parametrize("name", workloads.NAMES)
def test_records_are_well_formed(name):
    records, data = workloads.buffers(name, 3000, 1, 16 * MiB)
    recs = T.check_batch(records, data)          # calls known, REFs earlier, bytes in data
    for i, rec in enumerate(recs):
        assert rec[1] == 0 and rec[8] == 0, i    # results are the kernel's to fill
        assert records[48 * i + 12:48 * i + 16] == bytes(4)   # reserved
        assert rec[2] & ~(T.REF | T.NO_DATA) == 0
        if rec[0] not in (T.VMO_CREATE, T.VMO_CREATE_CONTIGUOUS):
            assert rec[2] & T.REF, (i, rec)      # every handle comes from the batch


EXPECTED = {  # the calls each workload must make succeed at least once
    "heap": {"vmo_create", "vmo_op_range", "vmo_write", "vmo_read", "vmo_read_bytes"},
    "churn": {"vmo_create", "vmo_write", "handle_close", "handle_duplicate", "handle_replace",
              "object_get_info"},
    "fork": {"vmo_clone", "vmo_write", "handle_close", "vmo_op_range"},
    "dma": {"vmo_create_contiguous", "vmo_op_range", "vmo_write", "handle_close"},
    "mixed": {"vmo_create", "vmo_clone", "vmo_create_contiguous", "handle_replace"},
}


@pytest.mark.parametrize("name", workloads.NAMES)
def test_runs_on_the_reference_model(name):
    records, data = workloads.buffers(name, 4000, 3, 16 * MiB)
    k = Kernel(memory_size=16 * MiB)
    result = k.run((records, data))
    k._check()
    calls = [rec[0] for rec in T.check_batch(records, data)]
    mix = collections.Counter(vmo.Status(s) for s in result.statuses)
    assert mix[vmo.NO_ERROR] >= 0.9 * len(calls), mix
    assert mix[vmo.ERR_BAD_HANDLE] == 0, mix      # the model never uses a dead handle
    ok = {T.CALL_NAMES[c] for c, s in zip(calls, result.statuses) if s == 0}
    assert EXPECTED[name] <= ok
    assert k.stats()["free_frames"] > 0
    k.close()


def test_arguments():
    with pytest.raises(ValueError, match="unknown workload"):
        workloads.buffers("nope", 10, 0, 16 * MiB)
    with pytest.raises(ValueError, match="64 pages"):
        workloads.buffers("heap", 10, 0, 4096)
    assert workloads.buffers("churn", 0, 0, 16 * MiB)[0] == bytearray()
    assert set(workloads.NAMES) == {"heap", "churn", "fork", "dma", "mixed"}


def test_generate_on_the_reference_model(tmp_path):
    path = workloads.generate("dma", tmp_path / "dma.t", ops=800, seed=5, memory=8 * MiB,
                              kernel=Kernel)
    info = T.trace_info(path)
    assert info["records"] == 800 and not info["truncated"]
    assert replay(path).mismatches == 0


@pytest.mark.skipif(not hasattr(vmo, "Batch"), reason="vmo.Batch (the compiled engine) is "
                    "not built in this tree")
def test_batch_is_a_vmo_batch():
    b = workloads.batch("heap", 100, 0, 16 * MiB)
    assert isinstance(b, vmo.Batch)
    assert bytes(b.records) == bytes(workloads.buffers("heap", 100, 0, 16 * MiB)[0])


@pytest.mark.skipif(not (hasattr(vmo.Kernel, "run") and hasattr(vmo, "Batch")),
                    reason="Kernel.run and vmo.Batch (the compiled engine) are not built in "
                           "this tree")
@pytest.mark.parametrize("name", workloads.NAMES)
def test_compiled_run_matches_reference(name):
    b = workloads.batch(name, 3000, 8, 16 * MiB)
    with vmo.Kernel(memory_size=16 * MiB) as k:
        got = k.run(b)
    ref = Kernel(memory_size=16 * MiB)
    want = ref.run(workloads.buffers(name, 3000, 8, 16 * MiB))
    ref.close()
    assert list(got.statuses) == list(want.statuses)
    assert list(got.values) == list(want.values)
    assert list(got.c) == list(want.c)
