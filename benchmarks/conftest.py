"""pytest-benchmark glue for the cases of `vmo.bench` (each case is defined once, there).

    pytest benchmarks/                          # the default profile (as `python -m vmo bench`)
    pytest benchmarks/ --benchmark-disable      # smoke test: the quick profile, one round each
    pytest benchmarks/ --benchmark-json=out.json && python benchmarks/tablize.py out.json

Not part of the default test run (pyproject.toml's testpaths is ["tests"]). Every test is one
case (`key`) for one contender ("vmo", "reference", "host"); its pytest-benchmark group is the
case, so the contenders of an operation sit side by side. A round is a `Job` of `vmo.bench`:
`benchmark.pedantic(job.run, setup=job.setup, teardown=job.teardown, rounds=...)`, and
`extra_info` records what `tablize.py` needs to normalise it (units per round, unit, size,
and the contender's own timing of each round). A contender without an equivalent here (no
gcc, no MADV_POPULATE_WRITE, no host cache-maintenance syscall) is skipped with the reason.
Nothing here asserts on time.

Options: --vmo-profile=default|quick picks sizes, rounds and calls per round (default:
"quick" with --benchmark-disable, else "default").
"""

import os
import statistics
import sys

import pytest

try:
    from vmo import bench  # the installed package
except ImportError:  # a source checkout that is not installed: use its in-place build
    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(_root, "vmo", "__init__.py")):
        sys.path.insert(0, _root)
    from vmo import bench


def pytest_addoption(parser):
    group = parser.getgroup("vmo-bench", "vmo benchmarks")
    group.addoption("--vmo-profile", choices=sorted(bench.PROFILES), default=None,
                    help="sizes, rounds and calls of the vmo benchmarks (default: 'quick' "
                         "with --benchmark-disable, else 'default')")


@pytest.fixture(scope="session")
def vmo_profile(pytestconfig):
    name = pytestconfig.getoption("--vmo-profile")
    if name is None:
        disabled = pytestconfig.getoption("benchmark_disable", default=False)
        name = "quick" if disabled else "default"
    return bench.PROFILES[name]


def _record(benchmark, case, contender, size, profile, **extra):
    benchmark.group = case.key
    benchmark.extra_info.update(
        key=case.key, group=case.group, operation=case.title, contender=contender,
        size=size, unit=case.value_unit, kind=case.kind, profile=profile.name, **extra)


@pytest.fixture
def bench_case(benchmark, vmo_profile):
    """``bench_case(key, contender, size=None, sweep=False)``: benchmark one case for one
    contender (at the profile's size unless `size` is given)."""

    def run(key, contender, size=None, sweep=False):
        case = bench.CASES[key]
        if size is None:
            size = case.size_for(contender, vmo_profile)
        elif sweep:
            try:
                size = bench.sweep_size_for(contender, size, vmo_profile)
            except bench.Skipped as exc:
                pytest.skip(str(exc))
        try:
            job = bench.make_job(case, contender, size, vmo_profile)
        except bench.Unavailable as exc:
            pytest.skip(f"{contender}: {exc}")
        rounds, warmup = case.rounds_for(contender, vmo_profile, sweep)
        inner = []

        def target():
            ns = job.run()
            inner.append(ns)
            return ns

        _record(benchmark, case, contender, size, vmo_profile, sweep=sweep,
                units_per_round=job.units)
        if sweep:
            benchmark.group = "sweep-" + case.key
        try:
            benchmark.pedantic(target, setup=job.setup, teardown=job.teardown, rounds=rounds,
                               warmup_rounds=warmup, iterations=1)
        finally:
            job.close()  # pedantic skips teardown when benchmarks are disabled
        timed = inner[-rounds:] if len(inner) > rounds else inner
        benchmark.extra_info["inner_ns_per_round"] = timed
        benchmark.extra_info["inner_median_per_unit"] = statistics.median(timed) / job.units

    return run


@pytest.fixture
def bench_memory(benchmark, vmo_profile):
    """``bench_memory(key, contender)``: one memory measurement in a fresh subprocess. The
    value is in extra_info (the benchmark's time is the subprocess's, not a result)."""

    def run(key, contender):
        case = bench.CASES[key]
        size = case.size_for(contender, vmo_profile)
        if contender == "host":
            try:
                bench.host_ops().require()
            except bench.Unavailable as exc:
                pytest.skip(f"host: {exc}")
        result = {}

        def target():
            result.update(bench.measure_memory(case, contender, size))

        _record(benchmark, case, contender, size, vmo_profile)
        benchmark.pedantic(target, rounds=1, iterations=1)
        benchmark.extra_info["value"] = result["value"]
        benchmark.extra_info["extra"] = result.get("extra", {})

    return run
