"""Running: a Job per contender and cell (`make_job`), its rounds (`run_job`, the cyclic GC
off), one cell's outcome (`measure`), and every selected row in turn (`run_bench`), which
returns the report that report.py renders."""

import gc
import statistics
import time

from .cases import CASES, SWEEP_KEYS, sweep_size_for
from .common import CONTENDERS, Skipped, Unavailable, fmt_size, kernel_class
from .hostops import host_ops
from .memory import measure_memory
from .report import cell_brief, link_floors, machine_info, make_row, sweep_summary, vmo_info


def make_job(case, contender, size, profile, host=None, kernel=None):
    """The Job of `contender` for `case` at `size` bytes (`kernel`: the kernel class to use
    instead of the contender's, e.g. a stand-in). Raises Unavailable when the contender has
    no equivalent here."""
    calls = case.calls_for(contender, profile)
    if contender == "host":
        if case.host is None:
            raise Unavailable(case.host_na or "no host equivalent")
        return case.host(host or host_ops(), size, calls)
    if contender == "reference" and getattr(case, "ref_na", None):
        raise Unavailable(case.ref_na)
    return case.kernel(kernel or kernel_class(contender), size, calls)


def run_job(job, rounds, warmup=0):
    """Run `rounds` timed rounds (after `warmup` untimed ones) of `job`, closing it at the
    end; the per-unit nanoseconds of each timed round. The cyclic GC is off meanwhile."""
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup + rounds):
            job.setup()
            try:
                ns = job.run()
            finally:
                job.teardown()
            if i >= warmup:
                samples.append(ns / job.units)
    finally:
        try:
            job.close()
        finally:
            if gc_was_enabled:
                gc.enable()
    return samples


def _summary(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": samples}


def measure(case, contender, size, profile, rounds_override=None, sweep=False):
    """One cell of the table: a result dict with "status" ok / n/a / skipped / error."""
    base = {"size": size}
    try:
        if case.kind == "memory":
            result = measure_memory(case, contender, size)
            return dict(base, status="ok", median=result["value"], rounds=1,
                        extra=result.get("extra", {}))
        if case.kind == "ratio":
            return dict(base, status="ok", **case.measure(contender, size, profile))
        job = make_job(case, contender, size, profile)
        rounds, warmup = case.rounds_for(contender, profile, sweep)
        if rounds_override:
            rounds = rounds_override
        units = job.units
        samples = run_job(job, rounds, warmup)
        return dict(base, status="ok", rounds=rounds, units_per_round=units, **_summary(samples))
    except Unavailable as exc:
        return dict(base, status="n/a", reason=str(exc))
    except Skipped as exc:
        return dict(base, status="skipped", reason=str(exc))
    except Exception as exc:  # noqa: BLE001  (one failing cell must not stop the run)
        return dict(base, status="error", reason=f"{type(exc).__name__}: {exc}")


class _Spec:
    """One row to run: a case, the row size, and each contender's size (or a Skipped)."""

    def __init__(self, case, group, size, sizes, sweep=False):
        self.case = case
        self.group = group
        self.size = size
        self.sizes = sizes
        self.sweep = sweep


def _specs(profile, only=None):
    specs = []
    for case in CASES.values():
        if only and case.group not in only and case.key not in only:
            continue
        sizes = {c: case.size_for(c, profile) for c in CONTENDERS}
        specs.append(_Spec(case, case.group, sizes["vmo"], sizes))
    if profile.sweep and (not only or "sweep" in only):
        for key in SWEEP_KEYS:
            for size in profile.sweep:
                sizes = {}
                for c in CONTENDERS:
                    try:
                        sizes[c] = sweep_size_for(c, size, profile)
                    except Skipped as exc:
                        sizes[c] = exc
                specs.append(_Spec(CASES[key], "sweep", size, sizes, sweep=True))
    return specs


class _Silent:
    """The progress of a run nobody watches."""

    def begin(self, total):
        pass

    def start(self, text):
        pass

    def finish(self, text):
        pass

    def note(self, text):
        pass

    def close(self):
        pass


def run_bench(profile, only=None, contenders=CONTENDERS, rounds=None, progress=None):
    """Run every selected row; the report (the --json document). `progress` (cli.Progress,
    or None for none) hears of each cell."""
    t0 = time.monotonic()
    specs = _specs(profile, only)
    prog = progress if progress is not None else _Silent()
    prog.begin(len(specs) * len(contenders))
    host = host_ops() if "host" in contenders else None
    if host is not None:
        prog.note("host helper: %s" % (host.path if host.available else f"n/a ({host.reason})"))
    rows = []
    for spec in specs:
        case = spec.case
        results = {}
        for contender in CONTENDERS:
            size = spec.sizes[contender]
            if contender not in contenders:
                results[contender] = {"size": None, "status": "skipped",
                                      "reason": "not selected (--contenders)"}
                continue
            label = "{} {}/{} @{}".format("sweep" if spec.sweep else spec.group, case.key,
                                      contender, fmt_size(size) if isinstance(size, int)
                                      else "-")
            if isinstance(size, Skipped):
                results[contender] = {"size": None, "status": "skipped", "reason": str(size)}
                prog.finish(label + ": skipped")
                continue
            prog.start(label)
            results[contender] = res = measure(case, contender, size, profile, rounds,
                                               spec.sweep)
            prog.finish(f"{label}: {cell_brief(case, res)}")
        rows.append(make_row(case, spec.group, spec.size, results, spec.sweep))
    prog.close()
    link_floors(rows)
    return {
        "vmo_bench": 1,
        "command": "python -m vmo bench" + (" --quick" if profile.name == "quick" else ""),
        "profile": profile.as_dict(),
        "machine": machine_info(),
        "vmo": vmo_info(),
        "host_helper": host.as_dict() if host is not None else None,
        "elapsed_s": round(time.monotonic() - t0, 2),
        "rows": rows,
        "sweep_summary": sweep_summary(rows),
    }
