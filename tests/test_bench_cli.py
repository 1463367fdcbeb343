"""The command line of the benchmarks (`python -m vmo`, `python -m vmo bench`): the subcommand
dispatcher, --plot with and without matplotlib. Fast: synthetic reports, or one quick row of
one contender."""

import json
import os
import subprocess
import sys

import pytest

import vmo
from vmo.bench import CASES, make_row

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(vmo.__file__)))


def _python(code, *args, cwd):
    """Run `code` in a fresh interpreter that imports this same vmo package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT,
                                                      env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _ok(median, size):
    return {"status": "ok", "size": size, "median": median, "samples": [median]}


def _report():
    """A small report in run_bench's shape: two sweep sizes of COMMIT and LOOKUP, the main
    LOOKUP row and two per-call rows, one contender n/a."""
    rows = []
    for key in ("commit_fresh", "lookup"):
        for size in (1 << 20, 16 << 20):
            results = {"vmo": _ok(3.0, size), "reference": _ok(700.0, size),
                       "host": _ok(1500.0, size)}
            rows.append(make_row(CASES[key], "sweep", size, results, sweep=True))
    rows.append(make_row(CASES["lookup"], "lookup", 64 << 20,
                         {"vmo": _ok(0.5, 64 << 20), "reference": _ok(350.0, 4 << 20),
                          "host": _ok(12.0, 64 << 20)}))
    rows.append(make_row(CASES["sys_get_size"], "syscall", None,
                         {"vmo": _ok(60.0, None), "reference": _ok(240.0, None),
                          "host": _ok(135.0, None)}))
    rows.append(make_row(CASES["phys_read"], "embed", 4096,
                         {"vmo": _ok(100.0, 4096), "reference": _ok(800.0, 4096),
                          "host": {"status": "n/a", "size": None, "reason": "none"}}))
    return {"command": "python -m vmo bench", "profile": {"name": "test"},
            "machine": {"cpu": "test cpu", "cores": 2}, "vmo": {"git_commit": None},
            "elapsed_s": 0.0, "rows": rows}


def test_dispatcher_lists_the_subcommands(tmp_path):
    proc = _python("import sys; from vmo.__main__ import main; sys.exit(main(['--help']))",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "bench" in proc.stdout and "usage" in proc.stdout
    proc = _python("import sys; from vmo.__main__ import main; sys.exit(main(['nope']))",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown command 'nope'" in proc.stderr


@pytest.mark.parametrize("ext", [".png", ".svg"])
def test_plot_is_written(tmp_path, ext):
    pytest.importorskip("matplotlib")
    from vmo.bench.plot import call_rows, sweep_points, write_plot

    report = _report()
    assert [size for size, _ in sweep_points(report, "lookup")["vmo"]] == [1 << 20, 16 << 20]
    assert [label for label, _ in call_rows(report)] == [
        "syscall: vmo_get_size", "embed: phys_read, 4 KiB"]
    path = tmp_path / ("figure" + ext)
    write_plot(report, str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") if ext == ".png" else b"<svg" in data


def test_plot_and_json_from_one_run(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from vmo.bench.cli import main

    path = tmp_path / "run.png"
    assert main(["--quick", "--only", "sys_get_size", "--contenders", "vmo", "--rounds", "1",
                 "-q", "--json", "--plot", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["key"] for row in report["rows"]] == ["sys_get_size"]
    assert path.read_bytes().startswith(b"\x89PNG")


def test_plot_refuses_other_formats(tmp_path, capsys):
    from vmo.bench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--only", "sys_get_size", "-q", "--plot", str(tmp_path / "x.pdf")])
    assert exc.value.code == 2
    assert "PNG or SVG" in capsys.readouterr().err


def test_plot_without_matplotlib_fails_cleanly(tmp_path):
    path = tmp_path / "figure.png"
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from vmo.bench.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    proc = _python(code, "--quick", "--only", "sys_get_size", "--contenders", "vmo", "-q",
                   "--plot", str(path), cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "--plot needs matplotlib" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # refused before the run
    assert not path.exists()
    # Everything else works without matplotlib.
    proc = _python(code, "--quick", "--only", "sys_get_size", "--contenders", "vmo", "-q",
                   "--rounds", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "vmo_get_size" in proc.stdout
