"""The "floor" rows of the benchmarks and the syscall rows' second target, wired with a
stand-in for the compiled core's _floor_* instruments (a subclass of vmo.Kernel), so that
the wiring is tested whether or not this build of the core has them."""

import pytest

import vmo
from vmo import Status
from vmo.bench import (
    CASES,
    PROFILES,
    Unavailable,
    link_floors,
    make_job,
    make_row,
    render_table,
    run_job,
)

FLOORS = {"floor_commit": "_floor_op_range", "floor_lookup": "_floor_op_range",
          "floor_get_size": "_floor_get_size", "floor_read_64": "_floor_read"}
TWINS = {"sys_commit": "floor_commit", "sys_lookup": "floor_lookup",
         "sys_get_size": "floor_get_size", "sys_read_64": "floor_read_64"}


class StandIn(vmo.Kernel):
    """The floor instruments as the compiled core defines them: same arguments, same result
    shape, no work. Counts its calls."""

    calls = 0

    def _floor_get_size(self, handle):
        StandIn.calls += 1
        return (Status.NO_ERROR, 0)

    def _floor_op_range(self, handle, op, offset, size, buffer=None, buffer_size=None):
        StandIn.calls += 1
        return Status.NO_ERROR

    def _floor_read(self, handle, buffer, offset, length=None):
        StandIn.calls += 1
        return (Status.NO_ERROR, 0)


class Lacking(vmo.Kernel):
    """A core without the instruments."""

    _floor_get_size = _floor_op_range = _floor_read = None


def test_every_syscall_row_has_a_floor_row():
    for key, floor in TWINS.items():
        case, twin = CASES[key], CASES[floor]
        assert case.floor == floor
        assert case.floor_target.value == 20
        assert twin.group == "floor"
        assert (twin.size, twin.calls, twin.unit) == (case.size, case.calls, case.unit)


@pytest.mark.parametrize("key", sorted(FLOORS))
def test_floor_runs_its_method_calls_times(key):
    case = CASES[key]
    profile = PROFILES["quick"]
    size = case.size_for("vmo", profile)
    job = make_job(case, "vmo", size, profile, kernel=StandIn)
    before = StandIn.calls
    samples = run_job(job, 2)
    assert len(samples) == 2 and all(s > 0 for s in samples)
    assert StandIn.calls - before == 2 * job.units == 2 * case.calls_for("vmo", profile)


@pytest.mark.parametrize("key", sorted(FLOORS))
def test_floor_is_na_without_the_method(key):
    case = CASES[key]
    with pytest.raises(Unavailable, match=FLOORS[key]):
        make_job(case, "vmo", case.size, PROFILES["quick"], kernel=Lacking)
    for contender in ("reference", "host"):
        with pytest.raises(Unavailable, match="compiled core"):
            make_job(case, contender, case.size, PROFILES["quick"])


def _ok(median):
    return {"status": "ok", "size": None, "median": median}


def _rows(vmo_ns, floor_result):
    rows = [make_row(CASES["sys_get_size"], "syscall", None, {"vmo": _ok(vmo_ns)})]
    if floor_result is not None:
        rows.append(make_row(CASES["floor_get_size"], "floor", None, {"vmo": floor_result}))
    return link_floors(rows)


def _report(rows):
    return {"command": "test", "profile": {"name": "test"}, "elapsed_s": 0.0,
            "machine": {}, "vmo": {}, "rows": rows}


def test_over_floor_within_target():
    row = _rows(60.0, _ok(50.0))[0]
    floor = row["floor"]
    assert floor["status"] == "ok" and floor["ns"] == 50.0
    assert floor["over_ns"] == pytest.approx(10.0)
    assert floor["over_pct"] == pytest.approx(20.0)
    assert floor["met"] is True
    table = render_table(_report(_rows(60.0, _ok(50.0))), legend=False)
    assert "vmo_get_size: 60.0 ns = floor 50.0 + 10.0 (20% over; target floor +20%: ok)" \
        in table
    assert "targets: 2 of 2 met" in table


def test_over_floor_missed():
    rows = _rows(61.0, _ok(50.0))
    assert rows[0]["floor"]["met"] is False
    table = render_table(_report(rows), legend=False)
    assert "ok; MISS" in table
    assert "targets: 1 of 2 met; missed: sys_get_size (floor +20%)" in table


def test_floor_na_or_not_run_is_not_judged():
    reason = "vmo.Kernel has no _floor_get_size in this build"
    rows = _rows(60.0, {"status": "n/a", "size": None, "reason": reason})
    floor = rows[0]["floor"]
    assert (floor["status"], floor["reason"], floor["met"]) == ("n/a", reason, None)
    table = render_table(_report(rows), legend=False)
    assert f"vmo_get_size: floor n/a: {reason}" in table
    assert "targets: 1 of 1 met; 1 not judged" in table
    floor = _rows(60.0, None)[0]["floor"]
    assert floor["status"] == "not run" and floor["met"] is None
