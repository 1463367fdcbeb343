"""`python -m vmo trace` and `python -m vmo replay`, through main(argv) and one subprocess."""

import os
import subprocess
import sys

import pytest

import vmo
from vmo import replaycli, tracecli
from vmo.__main__ import COMMANDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registered():
    assert {"trace", "replay"} <= set(COMMANDS)


@pytest.mark.parametrize("text,value", [("4096", 4096), ("64M", 64 << 20), ("1G", 1 << 30),
                                        ("2T", 2 << 40), ("16k", 16 << 10), ("8MiB", 8 << 20)])
def test_sizes(text, value):
    assert tracecli.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "1.5G", "-1", "12X", "G"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        tracecli.parse_size(text)


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "mixed.t"
    assert tracecli.main(["generate", "mixed", "--ops", "1500", "--seed", "2", "--memory",
                          "16M", "-o", str(path), "--reference"]) == 0
    return path


def test_info(trace, capsys):
    assert tracecli.main(["info", str(trace)]) == 0
    out = capsys.readouterr().out
    for text in ("format version 1", "0x100000+16M", "records      1,500", "a call",
                 "complete", "vmo_write"):
        assert text in out


def test_info_truncated_and_unreadable(trace, tmp_path, capsys):
    cut = tmp_path / "cut.t"
    cut.write_bytes(trace.read_bytes()[:5000])
    junk = tmp_path / "junk.t"
    junk.write_bytes(b"not a trace at all, no" * 3)
    assert tracecli.main(["info", str(cut)]) == 0
    assert "TRUNCATED" in capsys.readouterr().out
    assert tracecli.main(["info", str(junk)]) == 1
    assert "magic" in capsys.readouterr().err


def test_replay_reference(trace, tmp_path, capsys):
    assert replaycli.main([str(trace), "--reference", "-q"]) == 0
    out = capsys.readouterr().out
    assert "mismatches   0" in out and "ops          1,500" in out and "stats" in out
    cut = tmp_path / "cut.t"
    cut.write_bytes(trace.read_bytes()[:5000])
    assert replaycli.main([str(trace), str(cut), "--reference", "-j", "2"]) == 1
    assert "TRUNCATED" in capsys.readouterr().out
    junk = tmp_path / "junk.t"
    junk.write_bytes(b"\0" * 100)
    assert replaycli.main([str(junk), "--reference"]) == 1
    assert "UNREADABLE" in capsys.readouterr().out
    assert replaycli.main([str(trace), "--reference", "--no-check"]) == 0
    assert "not checked" in capsys.readouterr().out


def test_replay_reports_a_mismatch(trace, tmp_path, capsys):
    from vmo._reference import _trace as T

    # The same calls recorded on a bigger memory, replayed with the smaller map's header.
    src = [r for _, block, _ in T.TraceReader(trace) for r in block]
    bad = tmp_path / "bad.t"
    w = T.TraceWriter(bad, ((0x100000, 16 << 20),))
    w.add((1, 0, 0, 0, 0, 4096, 0, 0, 3))   # the handle would be 1, not 3
    w.close()
    assert src
    assert replaycli.main([str(bad), "--reference"]) == 1
    assert "first" in capsys.readouterr().out


@pytest.mark.skipif(hasattr(vmo, "replay"), reason="the compiled engine is built")
def test_replay_without_the_engine_says_so(trace, capsys):
    assert replaycli.main([str(trace)]) == 2
    assert "--reference" in capsys.readouterr().err


@pytest.mark.skipif(not (hasattr(vmo, "replay") and hasattr(vmo.Kernel, "record")),
                    reason="the compiled trace engine is not built in this tree")
def test_generate_and_replay_compiled(tmp_path, capsys):
    path = tmp_path / "heap.t"
    assert tracecli.main(["generate", "heap", "--ops", "5000", "--memory", "64M",
                          "-o", str(path)]) == 0
    ref = tmp_path / "heap-ref.t"
    assert tracecli.main(["generate", "heap", "--ops", "5000", "--memory", "64M",
                          "-o", str(ref), "--reference"]) == 0
    assert path.read_bytes() == ref.read_bytes()
    assert replaycli.main([str(path), str(ref), "-j", "2", "-q"]) == 0


def test_subprocess(trace):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "vmo", "trace", "info", str(trace)],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0 and "records" in out.stdout
    out = subprocess.run([sys.executable, "-m", "vmo", "--help"], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    assert "replay" in out.stdout and "trace" in out.stdout
