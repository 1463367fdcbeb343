"""`--plot FILE`: the figure of one run's report, drawn with matplotlib (optional; imported
only here, with the Agg backend): the size sweep of COMMIT and LOOKUP (ns per page against
size, log-log, one panel each) and the per-call rows as horizontal bars (log axis), the
three contenders side by side."""

import os

from .common import CONTENDERS, fmt_size

FORMATS = (".png", ".svg")
COLORS = {"vmo": "#1f5fa8", "reference": "#e07b1a", "host": "#3a9a3a"}
MARKERS = {"vmo": "o", "reference": "s", "host": "^"}
SWEEP_PANELS = (("commit_fresh", "COMMIT, fresh VMO"), ("lookup", "LOOKUP into array('Q')"))


class PlotError(Exception):
    """The figure cannot be drawn here (no matplotlib, or a file name it cannot write)."""


def check_path(path):
    """Raise PlotError unless `path` ends in .png or .svg (the format follows the name)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in FORMATS:
        raise PlotError(f"--plot writes PNG or SVG: {path!r} ends in neither .png nor .svg")


def require():
    """Import matplotlib with the Agg backend, or raise PlotError saying how to get it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot
    except ImportError as exc:
        raise PlotError(
            "--plot needs matplotlib, which is not installed here "
            f"({exc}); pip install matplotlib (the 'plot' extra of vmo)") from None


def _ok_median(result):
    if result and result.get("status") == "ok" and result.get("median") is not None:
        return result["median"]
    return None


def sweep_points(report, key):
    """{contender: [(size in bytes, ns per page), ...]} of the sweep rows of `key`; without a
    sweep in the run, the one row of `key` (each contender at its own size)."""
    rows = [r for r in report["rows"] if r["key"] == key and r["sweep"]]
    if not rows:
        rows = [r for r in report["rows"] if r["key"] == key and not r["sweep"]]
    points = {c: [] for c in CONTENDERS}
    for row in rows:
        for c in CONTENDERS:
            result = row["results"].get(c)
            value = _ok_median(result)
            if value is not None and value > 0 and result.get("size"):
                points[c].append((result["size"], value))
    return {c: sorted(p) for c, p in points.items()}


def call_rows(report):
    """The per-call rows (ns/call, not the sweep) in table order: [(label, {contender: ns})]."""
    out = []
    for row in report["rows"]:
        if row["sweep"] or row.get("kind") != "time" or row["unit"] != "ns/call":
            continue
        size = f", {fmt_size(row['size'])}" if row.get("size") else ""
        label = f"{row['group']}: {row['operation']}{size}"
        values = {c: _ok_median(row["results"].get(c)) for c in CONTENDERS}
        out.append((label, values))
    return out


def _title(report):
    vmo = report.get("vmo") or {}
    commit = (vmo.get("git_commit") or "")[:12]
    machine = report.get("machine") or {}
    parts = [report.get("command", "python -m vmo bench"),
             f"{report['profile']['name']} profile"]
    if commit:
        parts.append(f"commit {commit}" + (" (dirty)" if vmo.get("git_dirty") else ""))
    if machine.get("cpu"):
        parts.append(f"{machine['cpu']}, {machine.get('cores')} cores")
    return " | ".join(parts)


def _size_ticks(ax, sizes):
    sizes = sorted(set(sizes))
    if sizes:
        ax.set_xticks(sizes)
        ax.set_xticklabels([fmt_size(s) for s in sizes], rotation=30, fontsize=8)
        ax.minorticks_off()


def _draw_sweep(ax, report, key, title):
    points = sweep_points(report, key)
    swept = any(r["sweep"] and r["key"] == key for r in report["rows"])
    sizes = []
    for c in CONTENDERS:
        if points[c]:
            xs, ys = zip(*points[c])
            sizes += xs
            ax.plot(xs, ys, marker=MARKERS[c], color=COLORS[c], label=c)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title + ("" if swept else "\n(no size sweep in this run: the row's sizes)"),
                 fontsize=10)
    ax.set_xlabel("size")
    ax.set_ylabel("ns per page")
    ax.grid(True, which="major", alpha=0.3)
    _size_ticks(ax, sizes)
    if sizes:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)


def _draw_calls(ax, rows):
    n = len(rows)
    height = 0.8 / len(CONTENDERS)
    for i, c in enumerate(CONTENDERS):
        ys = [j + (i - 1) * height for j in range(n)]
        values = [values.get(c) for _, values in rows]
        kept = [(y, v) for y, v in zip(ys, values) if v is not None and v > 0]
        if kept:
            ax.barh([y for y, _ in kept], [v for _, v in kept], height=height,
                    color=COLORS[c], label=c)
    for j, (_, values) in enumerate(rows):
        if not any(v is not None and v > 0 for v in values.values()):
            ax.text(0.005, j, "n/a (no result in this run)", fontsize=7, va="center",
                    color="0.4", transform=ax.get_yaxis_transform())
    ax.set_yticks(range(n))
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ns per call (log scale; vmo and reference include the Python call)")
    ax.set_title("per-call rows", fontsize=10)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    if n:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no per-call rows in this run", ha="center", va="center",
                transform=ax.transAxes)


def write_plot(report, path):
    """Draw `report` (run_bench's) into `path` (.png or .svg)."""
    check_path(path)
    require()
    import matplotlib.pyplot as plt

    rows = call_rows(report)
    bars_height = max(2.5, 0.32 * len(rows) + 1.2)
    fig = plt.figure(figsize=(12, 4.4 + bars_height), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.4, bars_height])
    for ax, (key, title) in zip(top.subplots(1, 2), SWEEP_PANELS):
        _draw_sweep(ax, report, key, title)
    _draw_calls(bottom.subplots(), rows)
    fig.suptitle(_title(report), fontsize=10)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
