"""The versions of a sweep: `xsweep extend` continues a sweep as version 2, 3, ... with its own
spec (the first version's plus more --set lines) and its own Tune experiment in the sweep's
folder, under the same MLflow parent run.

xsweep.json keeps version 1 as it always did (spec_text, overrides) and lists the later ones:

    "versions": [{"version": 2, "overrides": [...], "trials": 4, "earlier": {"counts": {...}, "best": {...}}}]

`trials` is how many trials the version runs itself; `earlier` is what the versions before it ended with, so that the sweep's totals and its best trial
stay those of the whole sweep when a later version finishes (or is resumed and finishes again).
"""

from __future__ import annotations

from xsweep.cluster.storage import Storage
from xsweep.spec import Spec, load_spec_text


def versions(record: dict) -> list[dict]:
    """Every version of the sweep, the first included, oldest first."""
    return [{"version": 1, "overrides": list(record["overrides"]), "earlier": {}}, *record.get("versions", [])]


def latest(record: dict) -> dict:
    return versions(record)[-1]


def version_spec(record: dict, version: dict | None = None) -> Spec:
    """The spec a version ran (the latest when `version` is None)."""
    version = version or latest(record)
    return load_spec_text(record["spec_text"], source=record["spec_source"], overrides=version["overrides"])


def tune_location(storage: Storage, sweep: str, version: int) -> tuple[str, str]:
    """(storage_path, name) of a version's Tune experiment: version 1 is the sweep's folder itself,
    later ones its sub-folders v2, v3, ..."""
    if version == 1:
        return storage.tune_path, sweep
    return f"{storage.tune_path}/{sweep}", f"v{version}"


def tune_dir(storage: Storage, sweep: str, version: int) -> str:
    path, name = tune_location(storage, sweep, version)
    return f"{path}/{name}"
