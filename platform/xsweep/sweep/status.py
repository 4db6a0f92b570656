"""`xsweep status`: a table of a sweep's trials, from Tune's records on storage and the sweep's
MLflow runs, in the one vocabulary of statuses (xsweep.contract) that MLflow and the report use."""

from __future__ import annotations

import os

from rich import box
from rich.console import Console
from rich.table import Table

from xsweep.cluster.storage import Storage
from xsweep.contract import TrialReport, status_of
from xsweep.metrics import COST, METRICS, STARTUP
from xsweep.spec.trial import RUN_ID_KEY, trial_name
from xsweep.search.ablation import CONFIRM, TUNE
from xsweep.sweep.console import clock
from xsweep.sweep.outcome import best_of_history, cost_line, seconds_text, sweep_cost
from xsweep.sweep.phases import confirm_location
from xsweep.sweep.record import SweepRecord, Version, load_record
from xsweep.sweep.saved_state import accept_moved_modules
from xsweep.sweep.versions import tune_dir
from xsweep.tracking.store import open_store
from xsweep.text import counted
from xsweep.tracking.uri import redact


def print_status(storage: Storage, sweep: str) -> None:
    record = load_record(storage, sweep)
    spec = record.spec_of()  # the latest version's
    uri = record.tracking_uri_for(spec)
    open_store(uri, flag="tracking.uri")  # the same store the sweep wrote, reachable with these credentials
    from ray.tune import ExperimentAnalysis  # seconds to import: after the checks that may fail

    accept_moved_modules()  # trials saved with a module path that has moved

    metric = METRICS.get(spec.search.metric)
    ablation = spec.ablation is not None
    table = Table("trial", "name", "version", *(["phase"] if ablation else []), "status", "epochs",
                  f"best {metric.name}", "first step", "device time", "MLflow run", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    shown = planned_total = 0
    spent = []  # (device-seconds, device) of each trial, as of its last epoch
    for version in record.versions():
        planned_total += _planned(record, version)
        for phase, folder in _experiments(storage, sweep, record, version.version, ablation=ablation):
            analysis = ExperimentAnalysis(folder, storage_filesystem=storage.filesystem)
            for trial in sorted(analysis.trials, key=_started_order):
                report = TrialReport.from_result(trial.last_result)
                best = best_of_history(analysis.trial_dataframes.get(trial.trial_id), metric=metric.name,
                                       mode=spec.search.mode)
                planned = report.planned_epochs if report and report.planned_epochs else spec.train.epochs
                table.add_row(trial.trial_id, trial_name(trial.config), str(version.version),
                              *([phase] if ablation else []), status_of(trial.status, trial.last_result),
                              f"{report.epoch if report else 0}/{planned}", metric.show(best),
                              seconds_text(report.value(STARTUP) if report else None),
                              clock(report.value(COST) if report else None), trial.config.get(RUN_ID_KEY) or "-")
                shown += 1
                if report:
                    spent.append((report.value(COST), report.device))
    # Plain text when piped (no colour codes in a file), a terminal's width otherwise.
    console = Console(highlight=False, width=None if os.isatty(1) else 200)
    console.print(f"sweep {sweep} ({storage.root}/{sweep}): {shown} of {counted(planned_total, 'trial')}"
                  + (f", {len(record.versions())} versions" if len(record.versions()) > 1 else ""))
    console.print(f"MLflow: experiment '{spec.experiment}', parent run {record.parent_run_id} at {redact(uri)}")
    console.print(table)
    cost = sweep_cost(spent)
    if cost:
        console.print(cost_line(cost))


def _started_order(trial) -> tuple[int, str]:
    """Trials in the order the searcher created them: Tune numbers its experiment tags (3_train.lr=...)."""
    number = trial.experiment_tag.split("_", 1)[0]
    return (int(number) if number.isdigit() else 0, trial.trial_id)


def _experiments(storage: Storage, sweep: str, record: SweepRecord, version: int, *, ablation: bool):
    """(phase, Tune experiment folder) of a version: one, or an ablation's two once phase 2 started."""
    if not ablation:
        yield "", tune_dir(storage, sweep, version)
        return
    state = record.ablation_state(version)
    if state.variants != []:  # an extension that adds seeds only has no phase 1
        yield TUNE, tune_dir(storage, sweep, version)
    if state.phase == CONFIRM:
        yield CONFIRM, "/".join(confirm_location(storage, sweep, version))


def _planned(record: SweepRecord, version: Version) -> int:
    """The trials a version plans: an ablation's phase 1 and phase 2 (its plan once it started)."""
    spec = record.spec_of(version)
    if spec.ablation is None:
        return version.trials or spec.total_trials()
    state = record.ablation_state(version.version)
    phase_1 = version.trials if version.version > 1 else spec.search.num_samples
    if spec.ablation.sequential:  # at most: its rounds stop where its comparisons are decided
        confirmed = len(state.picked) if state.phase == CONFIRM else phase_1 // spec.ablation.budget
        return phase_1 + confirmed * spec.ablation.max_seeds
    if state.phase == CONFIRM:
        return phase_1 + len(state.items)
    tuned = phase_1 // spec.ablation.budget
    new_seeds = spec.ablation.confirm_seeds - state.first_new_seed + 1
    return phase_1 + tuned * spec.ablation.confirm_seeds + len(state.earlier_picked) * new_seeds
