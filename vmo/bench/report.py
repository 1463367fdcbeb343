"""The report of a run: rows (a dict per row, as in --json), ratios between contenders, the
sweep summary, the machine and version header, and the plain-text table with its legend."""

import json
import os
import platform
import shutil
import subprocess
import textwrap
from pathlib import Path

from .cases import CASES
from .common import CONTENDERS, PAGE, KiB, MiB, fmt_size


def _ratio(results, num, den, per_page=True):
    a, b = results.get(num), results.get(den)
    if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
        return None
    if not per_page and a.get("size") != b.get("size"):
        return None  # a per-call cost at two different sizes does not compare
    if a["median"] is None or b["median"] is None or b["median"] <= 0 or a["median"] < 0:
        return None
    return a["median"] / b["median"]


def make_row(case, group, size, results, sweep=False):
    """A table row (a dict, as in --json) from the contenders' results."""
    target = None if sweep else case.target
    vmo = results.get("vmo", {})
    vmo_value = vmo.get("median") if vmo.get("status") == "ok" else None
    with_ratios = getattr(case, "ratios", True)
    per_page = getattr(case, "unit", None) == "page" or case.kind == "memory"
    return {
        "key": case.key, "group": group, "operation": case.title, "size": size,
        "kind": case.kind, "unit": case.value_unit, "sweep": sweep,
        "results": results,
        "ratios": {"host/vmo": _ratio(results, "host", "vmo", per_page) if with_ratios
                   else None,
                   "ref/vmo": _ratio(results, "reference", "vmo", per_page) if with_ratios
                   else None},
        "target": target.as_dict() if target else None,
        "met": target.met(vmo_value) if target else None,
        "floor": _floor_skeleton(case) if not sweep else None,
    }


def _floor_skeleton(case):
    """The "floor" of a row whose case has one, until link_floors finds the floor row."""
    key = getattr(case, "floor", None)
    if key is None:
        return None
    return {"key": key, "status": "not run",
            "reason": f"the floor row {key} is not in this run (--only: add floor)",
            "ns": None, "over_ns": None, "over_pct": None,
            "target": case.floor_target.as_dict(), "met": None}


def link_floors(rows):
    """Fill in the "floor" of each row that has one from its floor row in `rows` (the same
    run): the floor's vmo median, how far the row's vmo median is above it (ns and percent
    of the floor) and whether that meets the row's floor target."""
    floors = {row["key"]: row for row in rows if not row["sweep"]}
    for row in rows:
        floor = row.get("floor")
        if not floor:
            continue
        vmo = row["results"].get("vmo", {})
        source = floors.get(floor["key"])
        if source is None:
            continue
        result = source["results"].get("vmo", {})
        if result.get("status") != "ok" or not result.get("median"):
            floor.update(status=result.get("status", "not run"),
                         reason=result.get("reason", "no vmo result"))
            continue
        ns = result["median"]
        floor.update(status="ok", reason=None, ns=ns)
        if vmo.get("status") == "ok" and vmo.get("median") is not None:
            over = vmo["median"] - ns
            floor.update(over_ns=over, over_pct=100.0 * over / ns)
            target = floor["target"]
            floor["met"] = (floor["over_pct"] <= target["value"] if target["op"] == "<="
                            else floor["over_pct"] >= target["value"])
    return rows


def cell_brief(case, res):
    if res["status"] != "ok":
        return "{} ({})".format(res["status"], res.get("reason", ""))
    value, unit = _scaled(res["median"], case.value_unit, res["median"])
    return f"{fmt_num(value)} {unit}"


def sweep_summary(rows):
    """Per sweep operation, from the vmo medians: ns/page by size, max/min over all sizes
    and over sizes from 16 MiB (where the per-call fixed part is small), and a fit of the
    time per call as fixed + slope * pages (least squares on relative errors)."""
    by_key = {}
    for row in rows:
        res = row["results"].get("vmo", {})
        if row["sweep"] and res.get("status") == "ok":
            by_key.setdefault(row["key"], {})[row["size"]] = res["median"]
    summary = {}
    for key, by_size in by_key.items():
        values = list(by_size.values())
        large = [v for size, v in by_size.items() if size >= 16 * MiB]
        entry = {"ns_per_page_by_size": {str(s): v for s, v in by_size.items()},
                 "max_over_min": max(values) / min(values) if min(values) > 0 else None,
                 "max_over_min_from_16MiB": max(large) / min(large)
                 if large and min(large) > 0 else None,
                 "fit_ns_per_page": None, "fit_fixed_ns": None}
        if len(by_size) >= 2:
            # Weighted least squares with relative errors (weights 1 / t**2), so that the
            # small sizes, where the fixed part shows, count as much as the large ones.
            xs = [size / PAGE for size in by_size]
            ts = [v * x for v, x in zip(by_size.values(), xs)]
            ws = [1.0 / (t * t) if t > 0 else 0.0 for t in ts]
            sw = sum(ws)
            if sw > 0:
                mx = sum(w * x for w, x in zip(ws, xs)) / sw
                mt = sum(w * t for w, t in zip(ws, ts)) / sw
                sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs))
                if sxx > 0:
                    slope = sum(w * (x - mx) * (t - mt) for w, x, t in zip(ws, xs, ts)) / sxx
                    entry["fit_ns_per_page"] = slope
                    entry["fit_fixed_ns"] = mt - slope * mx
        summary[key] = entry
    return summary


# -- machine and version info -------------------------------------------------------------------
def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    thp = None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read().strip()
    except OSError:
        pass
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "usable_cores": usable, "machine": platform.machine(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "os": f"{platform.system()} {platform.release()}",
            "transparent_hugepage": thp}


def vmo_info():
    from .. import __version__
    pkg = Path(__file__).resolve().parents[1]
    info = {"version": __version__, "path": str(pkg), "git_commit": None, "git_dirty": None}
    root = pkg.parent
    if (root / ".git").exists() and shutil.which("git"):
        try:
            head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                  capture_output=True, text=True, timeout=10, check=False)
            if head.returncode == 0:
                info["git_commit"] = head.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                        "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=10,
                                       check=False)
                info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 \
                    else None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


# -- the table ----------------------------------------------------------------------------------
def fmt_num(x):
    if x is None:
        return "-"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2g}"


def fmt_ratio(r):
    if r is None:
        return "-"
    if r >= 10:
        return f"{r:,.0f}x"
    if r >= 1:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def _scaled(value, unit, anchor):
    """`value` in the display unit chosen for a row whose typical value is `anchor`; a
    time per MiB shows as a rate (MiB/s)."""
    if unit == "ns/MiB":
        return (1e9 / value if value else float("inf")), "MiB/s"
    if unit.startswith("ns/"):
        per = unit[3:]
        if anchor is not None and anchor >= 1e6:
            return value / 1e6, "ms/" + per
        if anchor is not None and anchor >= 1e4:
            return value / 1e3, "us/" + per
        return value, unit
    if unit == "bytes":
        if anchor is not None and anchor >= MiB:
            return value / MiB, "MiB"
        return value / KiB, "KiB"
    return value, unit


def _row_cells(row):
    results = row["results"]
    vmo = results.get("vmo", {})
    ok_values = [r["median"] for r in results.values()
                 if r.get("status") == "ok" and r.get("median") is not None]
    anchor = vmo.get("median") if vmo.get("status") == "ok" else (min(ok_values)
                                                                    if ok_values else None)
    _, unit = _scaled(0.0, row["unit"], anchor)
    cells = []
    for c in CONTENDERS:
        r = results.get(c, {"status": "skipped"})
        if r["status"] == "ok" and r.get("median") is not None:
            text = fmt_num(_scaled(r["median"], row["unit"], anchor)[0])
            if r.get("size") != row["size"] and r.get("size") is not None:
                text += " @" + fmt_size(r["size"])
        elif r["status"] == "ok":
            text = "-"
        else:
            text = {"n/a": "n/a", "skipped": "-", "error": "error"}[r["status"]]
        cells.append(text)
    targets = [(row["target"], row["met"])] if row["target"] else []
    if row.get("floor"):
        targets.append((row["floor"]["target"], row["floor"]["met"]))
    target = "; ".join(t["text"] for t, _ in targets)
    met = "; ".join("-" if m is None else ("ok" if m else "MISS") for _, m in targets)
    if len(targets) == 1 and targets[0][1] is None:
        met = ""
    return [row["group"], row["operation"], fmt_size(row["size"]), unit, *cells,
            fmt_ratio(row["ratios"]["host/vmo"]), fmt_ratio(row["ratios"]["ref/vmo"]), target,
            met]


def floor_note(row):
    """The line under a row's group saying how far its vmo median is above its floor."""
    f = row["floor"]
    name = row["operation"] + (f" {fmt_size(row['size'])}" if row.get("size") else "")
    if f["status"] != "ok":
        return f"  {name}: floor {f['status']}: {f['reason']}"
    if f["over_ns"] is None:
        return f"  {name}: floor {fmt_num(f['ns'])} ns; no vmo result to compare"
    vmo = row["results"]["vmo"]["median"]
    pct = f["over_pct"]
    share = f"{pct:.0f}% over" if pct >= 0 else f"{-pct:.0f}% under"
    return "  {}: {} ns = floor {} {} {} ({}; target {}: {})".format(
        name, fmt_num(vmo), fmt_num(f["ns"]), "+" if f["over_ns"] >= 0 else "-",
        fmt_num(abs(f["over_ns"])), share, f["target"]["text"], "ok" if f["met"] else "MISS")


_HEADERS = ["group", "operation", "size", "unit", "vmo", "reference", "host", "host/vmo",
            "ref/vmo", "target", "met"]
_RIGHT = {2, 4, 5, 6, 7, 8}


def _format_grid(headers, body):
    grid = [headers] + [r for r in body if not isinstance(r, str)]
    widths = [max(len(str(r[i])) for r in grid) for i in range(len(headers))]

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            out.append(str(cell).rjust(widths[i]) if i in _RIGHT else
                       str(cell).ljust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(headers), rule]
    previous = None
    for cells in body:
        if isinstance(cells, str):  # a note under the group above, as it is
            lines.append(cells)
            continue
        if previous is not None and cells[0] != previous:
            lines.append("")
        previous = cells[0]
        lines.append(line(cells))
    return "\n".join(lines)


def render_table(report, legend=True):
    """The plain-text table of a report (run_bench's, or one tablize.py builds)."""
    m, v = report["machine"], report["vmo"]
    commit = v.get("git_commit")
    commit = (commit[:12] + (" (dirty)" if v.get("git_dirty") else "")) if commit else "n/a"
    title = report.get("title") or "{}  [{} profile, {:.1f} s]".format(
        report.get("command", "vmo bench"), report["profile"]["name"], report["elapsed_s"])
    out = [title,
           "vmo {}(commit {}) | {} | {}, {} cores | {} | THP {}".format(
               v["version"] + " " if v.get("version") else "", commit, m.get("python"),
               m.get("cpu"), m.get("cores"), m.get("os"),
               m.get("transparent_hugepage") or "n/a"),
           ""]
    body, notes = [], []
    for i, row in enumerate(report["rows"]):
        body.append(_row_cells(row))
        if row.get("floor"):
            notes.append(floor_note(row))
        following = report["rows"][i + 1]["group"] if i + 1 < len(report["rows"]) else None
        if notes and following != row["group"]:
            body += ["  over the floor (the same loop calling the _floor_* twin):"] + notes
            notes = []
    out.append(_format_grid(_HEADERS, body))
    failures = [(row, c, r) for row in report["rows"] for c, r in row["results"].items()
                if r["status"] in ("error",)]
    out.append("")
    if report.get("sweep_summary"):
        for key, e in report["sweep_summary"].items():
            sizes = sorted(int(x) for x in e["ns_per_page_by_size"])
            out.append("sweep {}, vmo ns/page at {}: {}".format(
                key, " .. ".join((fmt_size(sizes[0]), fmt_size(sizes[-1]))),
                ", ".join(fmt_num(e["ns_per_page_by_size"][str(x)]) for x in sizes)))
            fit = ""
            if e.get("fit_ns_per_page") is not None:
                fit = "; fit: {} ns/page + {} ns per call".format(
                    fmt_num(e["fit_ns_per_page"]), fmt_num(e["fit_fixed_ns"]))
            out.append("    max/min {} over all sizes, {} from 16 MiB{}".format(
                fmt_ratio(e["max_over_min"]), fmt_ratio(e["max_over_min_from_16MiB"]), fit))
        out.append("")
    checks = target_checks(report["rows"])
    judged = [c for c in checks if c[2] is not None]
    missed = [c for c in judged if not c[2]]
    missed_text = ", ".join(f"{key} ({text})" for key, text, _ in missed)
    unjudged = len(checks) - len(judged)
    out.append(f"targets: {len(judged) - len(missed)} of {len(judged)} met"
               + (f"; missed: {missed_text}" if missed else "")
               + (f"; {unjudged} not judged (no vmo result or no floor)" if unjudged else ""))
    for row, c, r in failures:
        out.append("error: {} / {}: {}".format(row["key"], c, r.get("reason")))
    if legend:
        out.append(_legend(report))
    return "\n".join(out)


def target_checks(rows):
    """Every target of the rows: (row key, target text, met: True, False or None)."""
    checks = []
    for row in rows:
        if row["target"]:
            checks.append((row["key"], row["target"]["text"], row["met"]))
        if row.get("floor"):
            checks.append((row["key"], row["floor"]["target"]["text"], row["floor"]["met"]))
    return checks


def _legend(report):
    na = {}
    for row in report["rows"]:
        for c, r in row["results"].items():
            if r["status"] in ("n/a", "skipped") and r.get("reason"):
                text = "{} {}: {}".format(c, r["status"], r["reason"])
                na.setdefault(text, []).append(row["key"])
    host = report.get("host_helper") or {}
    paragraphs = [
        "Each number is the median over the rounds of this run (--json has every round).",
    ] + list(report.get("notes", [])) + [
        ("ns/page: round time / pages in the range; ns/call (us/, ms/): round time / calls in "
        "the round. vmo and reference are timed from Python with perf_counter_ns around the "
        "call(s), so per-call numbers include the Python call and its loop "
        "(`for _ in range(N): k.vmo_get_size(h)`). host: Linux doing the equivalent work, "
        "timed in C (clock_gettime) around the system call(s) only, on 4 KiB pages."),
        ("'n @64 MiB': that contender ran at another size than the row's (per-page numbers "
        "stay comparable). host/vmo, ref/vmo: ratio of the medians (above 1x: vmo is faster, "
        "or uses less memory). Memory rows: one fresh subprocess per cell, RSS from "
        "/proc/self/statm. target: the project's target for the vmo median; met: ok or MISS. "
        "'-': not run at this size; n/a: no equivalent here (reasons below)."),
        ("floor: the syscall row's loop calling the compiled core's _floor_* twin of the "
         "method, which converts the same arguments and returns the same-shaped result "
         "without doing the work; 'floor +20%': the project's target that the call cost at "
         "most 20% more than its floor."),
    ]
    lines = ["", "Legend:"]
    for text in paragraphs:
        lines += textwrap.wrap(text, 92, initial_indent="  ", subsequent_indent="  ")
    lines.append("  Host equivalents:")
    for case in CASES.values():
        if case.host_doc:
            lines.append(f"    {case.key:<22} {case.host_doc}")
    if host and not host.get("available"):
        lines.append("  host helper: n/a ({})".format(host.get("reason")))
    for text, keys in na.items():
        lines += textwrap.wrap("{} [{}]".format(text, ", ".join(dict.fromkeys(keys))), 92,
                               initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def write_json(report, stream):
    """The --json document: the report as it is, indented."""
    json.dump(report, stream, indent=1)
    stream.write("\n")
