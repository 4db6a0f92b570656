"""The versions of a sweep: `xsweep extend` continues a sweep as version 2, 3, ... with its own
spec (the first version's plus more --set lines) and its own Tune experiment in the sweep's
folder, under the same MLflow parent run. The record lists them (record.py); here is where each
version's Tune experiment lives.
"""

from __future__ import annotations

from xsweep.cluster.storage import Storage


def tune_location(storage: Storage, sweep: str, version: int) -> tuple[str, str]:
    """(storage_path, name) of a version's Tune experiment: version 1 is the sweep's folder itself,
    later ones its sub-folders v2, v3, ..."""
    if version == 1:
        return storage.tune_path, sweep
    return f"{storage.tune_path}/{sweep}", f"v{version}"


def tune_dir(storage: Storage, sweep: str, version: int) -> str:
    path, name = tune_location(storage, sweep, version)
    return f"{path}/{name}"
