"""The threads row: does long work on two kernels scale to two threads? The same rounds of
COMMIT + LOOKUP + DECOMMIT over a whole VMO on each of two kernels, once by one thread doing
both kernels in turn, once by two threads doing one kernel each (the long calls run with the
GIL released, docs/semantics.md "Threads"). The value is the ratio of the wall times,
two threads / one thread: 1.0 means no parallelism, 0.5 perfect scaling on two cores.
vmo only (the reference model holds the GIL).

A control is reported beside it (`extra`): the same work in two processes / one process,
which no lock of ours can serialise, so it is the machine's own limit for this work (memory
bandwidth, SMT siblings, other load); the thread ratio can only be judged against it."""

import multiprocessing
import statistics
import threading
from array import array
from time import perf_counter_ns

from .common import COMMIT, DECOMMIT, LOOKUP, PAGE, Target, Unavailable, kernel_class, ok

_REASON = "the reference model holds the GIL for every call"


def _work(k, h, size, out, rounds):
    for _ in range(rounds):
        ok(k.vmo_op_range(h, COMMIT, 0, size), "COMMIT")
        ok(k.vmo_op_range(h, LOOKUP, 0, size, out), "LOOKUP")
        ok(k.vmo_op_range(h, DECOMMIT, 0, size), "DECOMMIT")


def _two_threads(vmos, size, rounds):
    """Wall time of two threads, one per kernel, each doing `rounds` rounds on its own."""
    barrier = threading.Barrier(len(vmos) + 1)
    failures = []

    def body(k, h, out):
        try:
            barrier.wait()
            _work(k, h, size, out, rounds)
        except BaseException as exc:  # noqa: BLE001  (re-raised below)
            failures.append(exc)

    threads = [threading.Thread(target=body, args=v) for v in vmos]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = perf_counter_ns()
    for t in threads:
        t.join()
    ns = perf_counter_ns() - t0
    if failures:
        raise failures[0]
    return ns


def _measure(contender, size, rounds, samples):
    """(ratio samples, one-thread ns, two-thread ns) of `samples` paired runs."""
    if contender != "vmo":
        raise Unavailable(_REASON)
    K = kernel_class(contender)
    kernels = [K(memory_size=size + 16 * PAGE) for _ in range(2)]
    try:
        vmos = []
        for k in kernels:
            h = ok_handle(k.vmo_create(size))
            vmos.append((k, h, array("Q", bytes(8 * (size // PAGE)))))
        for k, h, out in vmos:              # warm up: first-touch costs are not the row's
            _work(k, h, size, out, 1)
        ratios, ones, twos = [], [], []
        for _ in range(samples):
            t0 = perf_counter_ns()
            for k, h, out in vmos:
                _work(k, h, size, out, rounds)
            one = perf_counter_ns() - t0
            two = _two_threads(vmos, size, rounds)
            ratios.append(two / one)
            ones.append(one)
            twos.append(two)
        return ratios, ones, twos
    finally:
        for k in kernels:
            k.close()


def _proc_body(size, rounds, nkernels, barrier, results):
    """One process of the control: `nkernels` kernels, warmed up, then timed after all the
    processes meet at `barrier`."""
    from .common import kernel_class as _kc
    K = _kc("vmo")
    vmos = []
    for _ in range(nkernels):
        k = K(memory_size=size + 16 * PAGE)
        h = ok_handle(k.vmo_create(size))
        vmos.append((k, h, array("Q", bytes(8 * (size // PAGE)))))
    for k, h, out in vmos:
        _work(k, h, size, out, 1)
    barrier.wait()
    t0 = perf_counter_ns()
    for k, h, out in vmos:
        _work(k, h, size, out, rounds)
    results.put(perf_counter_ns() - t0)
    for k, _, _ in vmos:
        k.close()


def _processes(size, rounds, nprocs):
    """Wall time of the slowest of `nprocs` processes doing 2 / nprocs kernels each."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(nprocs)
    results = ctx.Queue()
    procs = [ctx.Process(target=_proc_body, args=(size, rounds, 2 // nprocs, barrier, results))
             for _ in range(nprocs)]
    for p in procs:
        p.start()
    times = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def _control(size, rounds, samples):
    """Median of two processes / one process (the same work as the row)."""
    ratios = []
    for _ in range(samples):
        ratios.append(_processes(size, rounds, 2) / _processes(size, rounds, 1))
    return statistics.median(ratios)


def ok_handle(result):
    ok(result[0], "vmo_create")
    return result[1]


class ThreadsCase:
    """The threads row (kind "ratio"): `measure(contender, size, profile)` gives the result
    dict of one cell."""

    kind = "ratio"
    group = "threads"
    unit = None
    rounds = "threads"
    value_unit = "ratio"
    ratios = False
    host = None
    host_doc = None
    host_na = "not a host operation (the ratio is of the compiled core to itself)"
    ref_na = _REASON
    floor = None

    def __init__(self, key, title, *, rounds_per_sample, samples, target):
        self.key = key
        self.title = title
        self.rounds_per_sample = rounds_per_sample
        self.samples = samples
        self.target = target

    def size_for(self, contender, profile):
        return profile.big

    def measure(self, contender, size, profile):
        samples = self.samples if profile.name != "quick" else 3
        ratios, ones, twos = _measure(contender, size, self.rounds_per_sample, samples)
        return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                "samples": ratios, "rounds": samples,
                "extra": {"one_thread_ns": statistics.median(ones),
                          "two_threads_ns": statistics.median(twos),
                          "rounds_per_sample": self.rounds_per_sample,
                          "control_two_processes_ratio": _control(
                              size, self.rounds_per_sample, min(samples, 3))}}


THREADS_CASES = {case.key: case for case in [
    ThreadsCase("threads_two_kernels",
                "2 kernels x (COMMIT + LOOKUP + DECOMMIT whole VMO): 2 threads / 1 thread",
                rounds_per_sample=3, samples=5,
                target=Target("<=", 0.6, "<= 0.6 on 2 cores")),
]}
