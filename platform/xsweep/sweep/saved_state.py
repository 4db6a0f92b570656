"""Tune's saved state of a sweep (its Tuner, searcher and trials) names xsweep's classes by module
path. A module that has moved within xsweep is found at its new place, so a sweep saved before the
move resumes; a module that no longer exists anywhere is one line saying which xsweep to resume with.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import re
import sys

from xsweep.errors import SweepError, UserError
from xsweep.sweep.record import SweepRecord
from xsweep.tracking.tags import TAG_GIT_COMMIT

# Where a module saved state may name lives now: the search machinery left the driver's room.
MOVED_MODULES = {f"xsweep.sweep.{name}": f"xsweep.search.{name}"
                 for name in ("ablation", "algorithms", "grid", "history", "schedulers", "searcher", "tpe_window")}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's old name as its new module (the same object, not a copy)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED_MODULES else None

    def create_module(self, spec):
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module) -> None:
        pass  # the new module ran when it was imported


def accept_moved_modules() -> None:
    """Before reading a sweep's saved state: let its old module paths import (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())


def missing_name(error: Exception) -> str | None:
    """The xsweep module saved state names and this xsweep lacks, or has without the class it
    names (pickle's "Can't get attribute 'C' on <module 'M' ...>"); None for any other error."""
    if isinstance(error, ModuleNotFoundError):
        return error.name if (error.name or "").startswith("xsweep") else None
    found = re.search(r"Can't get attribute '([\w.]+)' on <module '(xsweep[\w.]*)'", str(error))
    return found[2] if found else None


def saved_by_an_older_xsweep(sweep_path: str, record: SweepRecord, *, uri: str, missing: str) -> SweepError:
    """The one line for state naming a module this xsweep has no longer (`missing`): resume it with
    the commit it ran, read from its MLflow parent run while the store is there."""
    import ray

    from xsweep.tracking.store import open_store

    ray.shutdown()
    try:
        commit = open_store(uri, flag="tracking.uri").get_run(record.parent_run_id).data.tags.get(TAG_GIT_COMMIT)
    except UserError:
        commit = None
    where = f"`git checkout {commit[:12]}` (the commit it ran) and resume it there" if commit else \
        "resume it with the xsweep it ran"
    return SweepError(f"{sweep_path}: saved by an older xsweep (its state names the module {missing}, which "
                      f"this version has moved), so it cannot be resumed here: {where}, or start it "
                      f"again with `xsweep run {record.spec_source}`")
