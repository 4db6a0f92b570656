"""`xsweep status`: a table of a sweep's trials, from Tune's records on storage and the sweep's
MLflow runs, in the one vocabulary of statuses (xsweep.contract) that MLflow and the report use."""

from __future__ import annotations

import os

from rich import box
from rich.console import Console
from rich.table import Table

from xsweep.cluster.storage import Storage, read_sweep_record, recorded_tracking_uri
from xsweep.contract import TrialReport, status_of
from xsweep.metrics import METRICS
from xsweep.spec.trial import RUN_ID_KEY, trial_name
from xsweep.sweep.outcome import best_of_history
from xsweep.sweep.versions import tune_dir, version_spec, versions
from xsweep.tracking.store import open_store
from xsweep.tracking.uri import redact


def print_status(storage: Storage, sweep: str) -> None:
    record = read_sweep_record(storage, sweep)
    spec = version_spec(record)  # the latest version's
    uri = recorded_tracking_uri(record, spec)
    open_store(uri, flag="tracking.uri")  # the same store the sweep wrote, reachable with these credentials
    from ray.tune import ExperimentAnalysis  # seconds to import: after the checks that may fail

    metric = METRICS.get(spec.search.metric)
    table = Table("trial", "name", "version", "status", "epochs", f"best {metric.name}", "MLflow run",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    count = planned_total = 0
    for version in versions(record):
        analysis = ExperimentAnalysis(tune_dir(storage, sweep, version["version"]),
                                      storage_filesystem=storage.filesystem)
        planned_total += version.get("trials") or version_spec(record, version).total_trials()
        for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
            report = TrialReport.from_result(trial.last_result)
            best = best_of_history(analysis.trial_dataframes.get(trial.trial_id), metric=metric.name,
                                   mode=spec.search.mode)
            planned = report.planned_epochs if report and report.planned_epochs else spec.train.epochs
            table.add_row(trial.trial_id, trial_name(trial.config), str(version["version"]),
                          status_of(trial.status, trial.last_result),
                          f"{report.epoch if report else 0}/{planned}", "-" if best is None else f"{best:.4f}",
                          trial.config.get(RUN_ID_KEY) or "-")
            count += 1
    # Plain text when piped (no colour codes in a file), a terminal's width otherwise.
    console = Console(highlight=False, width=None if os.isatty(1) else 200)
    console.print(f"sweep {sweep} ({storage.root}/{sweep}): {count} of {planned_total} trials"
                  + (f", {len(versions(record))} versions" if len(versions(record)) > 1 else ""))
    console.print(f"MLflow: experiment '{spec.experiment}', parent run {record['parent_run_id']} at {redact(uri)}")
    console.print(table)
