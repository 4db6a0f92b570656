"""A sweep's start-up, overlapped with Ray's.

Starting Ray takes seconds, nearly all of them spent waiting for its processes (GCS, raylet, API
server) to come up. Meanwhile a thread of this process imports what the sweep needs next (Tune,
Optuna, MLflow) and creates the MLflow tables. Done one after the other, these took longer than
Ray itself.

If Ray then refuses the sweep (say, more GPUs per trial than the machine has), a database file
this created is removed again: bad input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import threading

from xsweep.tracking.store import prepare_store, sqlite_file


def _prepare(uri: str, failures: list[BaseException]) -> None:
    try:
        # The modules the driver needs once Ray is up, each taking up to seconds to import.
        import ray.tune  # noqa: F401
        import xsweep.search.searcher  # noqa: F401  (Optuna)
        import xsweep.sweep.finish  # noqa: F401  (MLflow)
        import xsweep.tracking.callback  # noqa: F401  (MLflow)

        prepare_store(uri)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
        failures.append(exc)


@contextlib.contextmanager
def while_ray_starts(uri: str):
    """Run the body (starting or joining Ray) while the thread prepares the rest."""
    database = sqlite_file(uri)
    new_database = database is not None and not database.exists()
    failures: list[BaseException] = []
    thread = threading.Thread(target=_prepare, args=(uri, failures), name="xsweep-startup", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        thread.join()
        if new_database:
            for leftover in (database, database.with_name(database.name + "-journal")):
                leftover.unlink(missing_ok=True)
        raise
    thread.join()
    if failures:
        raise failures[0]
