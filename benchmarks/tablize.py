"""Turn pytest-benchmark's --benchmark-json output of `pytest benchmarks/` into the table of
`python -m vmo bench`: per operation and size, each contender's median per page (or per
call, or the memory value), normalised to vmo (host/vmo, ref/vmo), the target and whether
vmo meets it; with the machine, Python and commit the results came from.

    pytest benchmarks/ --benchmark-json=results.json
    python benchmarks/tablize.py results.json            # or: ... < results.json
    python benchmarks/tablize.py results.json --json     # the rows as JSON

A time is pytest-benchmark's median round time divided by the round's units (pages or
calls), so for the host it includes the one Python -> C call of a round (under a
microsecond, against rounds of milliseconds); --inner uses instead each contender's own
timing of its rounds (recorded in extra_info), which is what `python -m vmo bench` shows.
"""

import argparse
import json
import os
import sys

try:
    from vmo import bench as vmo_bench
except ImportError:  # a source checkout that is not installed: use its in-place build
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from vmo import bench as vmo_bench


def _per_unit(bench, inner):
    info = bench["extra_info"]
    if info.get("kind") == "memory":
        return info.get("value")
    if inner and info.get("inner_median_per_unit") is not None:
        return info["inner_median_per_unit"]
    return bench["stats"]["median"] * 1e9 / info["units_per_round"]


def build_report(data, inner=False, source="results"):
    """A report in the shape of `vmo.bench.run_bench`'s, from pytest-benchmark JSON."""
    cells = {}
    profiles = set()
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        key = info.get("key")
        if key not in vmo_bench.CASES or info.get("contender") not in vmo_bench.CONTENDERS:
            continue  # not one of ours
        profiles.add(info.get("profile"))
        sweep = bool(info.get("sweep"))
        row_id = (key, sweep, info["size"] if sweep else None)
        result = {"status": "ok", "size": info.get("size"), "median": _per_unit(bench, inner),
                  "rounds": bench["stats"].get("rounds")}
        if info.get("units_per_round"):
            result["units_per_round"] = info["units_per_round"]
        if info.get("extra"):
            result["extra"] = info["extra"]
        cells.setdefault(row_id, {})[info["contender"]] = result

    order = {key: i for i, key in enumerate(vmo_bench.CASES)}
    rows = []
    for (key, sweep, sweep_size) in sorted(cells, key=lambda r: (r[1], order[r[0]], r[2] or 0)):
        case = vmo_bench.CASES[key]
        results = cells[(key, sweep, sweep_size)]
        for contender in vmo_bench.CONTENDERS:
            if contender == "host" and getattr(case, "host", True) is None:
                missing = {"status": "n/a", "size": None, "reason": case.host_na}
            elif contender == "reference" and getattr(case, "ref_na", None):
                missing = {"status": "n/a", "size": None, "reason": case.ref_na}
            else:
                missing = {"status": "skipped", "size": None,
                           "reason": "not in the results (skipped or not run)"}
            results.setdefault(contender, missing)
        size = sweep_size if sweep else (results["vmo"].get("size")
                                         or next((r["size"] for r in results.values()
                                                  if r.get("size")), None))
        if not sweep and case.kind == "time" and case.scale == "fixed":
            size = case.size
        rows.append(vmo_bench.make_row(case, "sweep" if sweep else case.group, size, results,
                                    sweep))
    vmo_bench.link_floors(rows)

    machine = data.get("machine_info", {})
    cpu = machine.get("cpu") or {}
    commit = data.get("commit_info", {})
    profile = ", ".join(sorted(p for p in profiles if p)) or "?"
    return {
        "title": "pytest-benchmark results {} ({} profile, {}, {})".format(
            source, profile, data.get("datetime", "?"),
            "contenders' own timing" if inner else "pytest-benchmark medians"),
        "profile": {"name": profile},
        "elapsed_s": 0.0,
        "machine": {
            "cpu": cpu.get("brand_raw") or machine.get("processor") or machine.get("machine"),
            "cores": cpu.get("count"),
            "python": "{} {}".format(machine.get("python_implementation", "?"),
                                 machine.get("python_version", "?")),
            "os": "{} {}".format(machine.get("system", "?"), machine.get("release", "?")),
            "transparent_hugepage": None,
        },
        "vmo": {"version": None, "git_commit": commit.get("id"), "git_dirty": commit.get("dirty"),
                "git_branch": commit.get("branch")},
        "host_helper": None,
        "notes": [
            "Times here: %s." % (
                "each contender's own timing of its rounds (extra_info)" if inner else
                "pytest-benchmark's median round time / units per round (for the host this "
                "includes the one Python -> C call of a round; --inner uses the contenders' "
                "own timing)"),
        ],
        "rows": rows,
        "sweep_summary": vmo_bench.sweep_summary(rows),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/tablize.py",
        description="Tabulate `pytest benchmarks/ --benchmark-json=FILE` output, normalised "
                    "to vmo.")
    parser.add_argument("file", nargs="?", help="the JSON file (default: stdin)")
    parser.add_argument("--inner", action="store_true",
                        help="use each contender's own timing of its rounds (extra_info) "
                             "instead of pytest-benchmark's")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--no-legend", action="store_true", help="omit the legend")
    args = parser.parse_args(argv)
    if args.file:
        with open(args.file) as f:
            data = json.load(f)
    else:
        data = json.load(sys.stdin)
    report = build_report(data, args.inner, args.file or "<stdin>")
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(vmo_bench.render_table(report, legend=not args.no_legend) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
