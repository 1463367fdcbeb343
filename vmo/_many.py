"""`vmo.replay_many`: many traces replayed at once on any `concurrent.futures.Executor`."""

import os

__all__ = ["ENGINES", "replay_many", "replay_one"]

ENGINES = ("compiled", "reference")


def _replayer(engine):
    if engine == "reference":
        from ._reference import replay
        return replay
    if engine != "compiled":
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    import vmo
    replay = getattr(vmo, "replay", None)
    if replay is None:
        raise RuntimeError("the compiled trace engine (vmo.replay) is not built in this vmo; "
                           "use engine='reference'")
    return replay


def replay_one(path, check=True, engine="compiled"):
    """Replay one trace with ``engine`` ("compiled": `vmo.replay`; "reference":
    `vmo._reference.replay`). A module-level function, so that executors can pickle it."""
    return _replayer(engine)(path, check=check)


def replay_many(paths, executor=None, *, check=True, engine="compiled"):
    """Replay every trace of ``paths`` on ``executor`` (any `concurrent.futures.Executor`:
    a `ProcessPoolExecutor` of one process per CPU when None, made and shut down here; a Dask
    cluster's ``Client.get_executor()``) and return their results in the order of ``paths``.
    The exceptions of a replay (ValueError for a trace a reader refuses, OSError) are raised
    here, for the first path in order that had one; the results, the paths and the kernel
    configurations all pickle."""
    paths = [os.fspath(p) for p in paths]
    _replayer(engine)  # fail early, before any worker starts
    own = executor is None
    if own:
        from concurrent.futures import ProcessPoolExecutor
        executor = ProcessPoolExecutor()
    try:
        futures = [executor.submit(replay_one, path, check, engine) for path in paths]
        return [future.result() for future in futures]
    finally:
        if own:
            executor.shutdown()
