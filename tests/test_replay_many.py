"""vmo.replay_many: traces replayed on any concurrent.futures executor, in order; results,
paths and kernel configurations pickle; a Dask cluster's executor (the `cluster` extra:
skipped without `distributed`). The compiled engine's runs skip until it is built."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

import vmo
from vmo import workloads
from vmo._reference import Kernel
from vmo._reference import _trace as T

MiB = 1 << 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return [workloads.generate(name, root / f"{name}.t", ops=400, seed=i, memory=8 * MiB,
                               kernel=Kernel)
            for i, name in enumerate(workloads.NAMES)]


def _check(results, corpus):
    assert [r.path for r in results] == [str(p) for p in corpus]
    assert all(r.ops == 400 and r.mismatches == 0 and not r.truncated for r in results)


def test_threads(corpus):
    with ThreadPoolExecutor(2) as pool:
        _check(vmo.replay_many(corpus, pool, engine="reference"), corpus)


def test_processes_by_default(corpus):
    _check(vmo.replay_many(corpus, engine="reference"), corpus)


def test_pickles(corpus):
    result = vmo.replay_many(corpus[:1], ThreadPoolExecutor(1), engine="reference")[0]
    again = pickle.loads(pickle.dumps(result))
    assert again == result and again.ops_per_second > 0
    header = T.read_header(corpus[0])
    assert pickle.loads(pickle.dumps(header)) == header
    assert pickle.loads(pickle.dumps(corpus)) == corpus


def test_errors(corpus, tmp_path):
    junk = tmp_path / "junk.t"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a vmo trace"):
        vmo.replay_many([corpus[0], junk], ThreadPoolExecutor(1), engine="reference")
    with pytest.raises(ValueError, match="engine"):
        vmo.replay_many(corpus, engine="nope")


@pytest.mark.skipif(hasattr(vmo, "replay"), reason="the compiled engine is built")
def test_compiled_engine_missing_is_a_clear_error(corpus):
    with pytest.raises(RuntimeError, match="vmo.replay"):
        vmo.replay_many(corpus)


@pytest.mark.skipif(not hasattr(vmo, "replay"),
                    reason="the compiled trace engine (vmo.replay) is not built in this tree")
def test_compiled(corpus):
    _check(vmo.replay_many(corpus, ThreadPoolExecutor(2)), corpus)


def test_dask_cluster(corpus):
    distributed = pytest.importorskip(
        "distributed", reason="the `cluster` extra (dask[distributed]) is not installed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        engine = "compiled" if hasattr(vmo, "replay") else "reference"
        _check(vmo.replay_many(corpus, client.get_executor(), engine=engine), corpus)
