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
from xsweep.spec import load_spec_text
from xsweep.spec.trial import RUN_ID_KEY, trial_name
from xsweep.sweep.outcome import best_of_history
from xsweep.tracking.store import open_store
from xsweep.tracking.uri import redact


def print_status(storage: Storage, sweep: str) -> None:
    record = read_sweep_record(storage, sweep)
    spec = load_spec_text(record["spec_text"], source=record["spec_source"], overrides=record["overrides"])
    uri = recorded_tracking_uri(record, spec)
    open_store(uri, flag="tracking.uri")  # the same store the sweep wrote, reachable with these credentials
    from ray.tune import ExperimentAnalysis  # seconds to import: after the checks that may fail

    analysis = ExperimentAnalysis(f"{storage.tune_path}/{sweep}", storage_filesystem=storage.filesystem)
    metric = METRICS.get(spec.search.metric)
    table = Table("trial", "name", "status", "epochs", f"best {metric.name}", "MLflow run",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    trials = sorted(analysis.trials, key=lambda t: t.trial_id)
    for trial in trials:
        report = TrialReport.from_result(trial.last_result)
        best = best_of_history(analysis.trial_dataframes.get(trial.trial_id), metric=metric.name,
                               mode=spec.search.mode)
        planned = report.planned_epochs if report and report.planned_epochs else spec.train.epochs
        table.add_row(trial.trial_id, trial_name(trial.config), status_of(trial.status, trial.last_result),
                      f"{report.epoch if report else 0}/{planned}", "-" if best is None else f"{best:.4f}",
                      trial.config.get(RUN_ID_KEY) or "-")
    # Plain text when piped (no colour codes in a file), a terminal's width otherwise.
    console = Console(highlight=False, width=None if os.isatty(1) else 200)
    console.print(f"sweep {sweep} ({storage.root}/{sweep}): {len(trials)} of {spec.total_trials()} trials")
    console.print(f"MLflow: experiment '{spec.experiment}', parent run {record['parent_run_id']} at {redact(uri)}")
    console.print(table)
