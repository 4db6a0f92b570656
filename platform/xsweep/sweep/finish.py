"""The end of a sweep: counts per status, the best trial, the registered best model, and the sweep's
parent run closed with what it ended with; the driver prints the outcome (outcome.py)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ray import tune

from xsweep.compat import tune_trials
from xsweep.contract import INTERRUPTED, PENDING, sweep_end_status
from xsweep.metrics import COST, STARTUP, best_scored, better
from xsweep.spec.trial import RUN_ID_KEY, resolve_trial_config, sampled_params, trial_name
from xsweep.sweep.best_model import register_best_model
from xsweep.sweep.front import record_pareto_front
from xsweep.search.ablation import TUNE
from xsweep.sweep.outcome import SweepOutcome, best_of_history, startup_spread, sweep_cost
from xsweep.sweep.phases import best_variant, record_verdict
from xsweep.sweep.record import BestTrial, Earlier
from xsweep.tracking.query import child_runs
from xsweep.tracking.writes import set_tags
from xsweep.tracking.tags import (
    TAG_BEST_RUN_ID, TAG_BEST_TRIAL_ID, TAG_BEST_TRIAL_NAME, TAG_DEVICE, TAG_STATUS, TAG_TRIAL_COUNT_PREFIX,
)


def _best(results, spec):
    """The trial with the best value of the metric at any epoch (the one its best checkpoint holds)."""
    metric, mode = spec.search.metric, spec.search.mode
    return best_scored(results, mode=mode,
                       score=lambda result: best_of_history(result.metrics_dataframe, metric=metric, mode=mode))


def _best_confirmed(results, spec, verdict: dict):
    """An ablation's best: of the variant with the best mean over phase 2's seeds (phases.best_variant),
    the trial with the best metric at any epoch, whose checkpoint is registered. (trial, its value,
    the variant's verdict row); no trial when none of that variant's trials ran in `results` (an
    extension that confirmed other variants)."""
    variant = best_variant(verdict)
    if variant is None:
        return None, None, None
    run_ids = set(variant["run_ids"])
    own = [r for r in results if r.config.get(RUN_ID_KEY) in run_ids]
    best, value = _best(own, spec)
    return best, value, variant


def _cost_and_startup(client, parent_run_id: str) -> tuple[dict | None, dict | None]:
    """The sweep's cost from every trial run's latest device-seconds, and their start-up from each
    one's seconds to its first step: all its versions and phases, since every trial is a child of the
    one parent run."""
    trials = child_runs(client, client.get_run(parent_run_id))
    return (sweep_cost((run.data.metrics.get(COST), run.data.tags.get(TAG_DEVICE)) for run in trials),
            startup_spread(run.data.metrics.get(STARTUP) for run in trials))


def _end_interrupted_runs(client, results, statuses) -> None:
    """The runs of trials the sweep stopped (interrupted) or never started (pending): KILLED in MLflow
    and tagged so, not left RUNNING; `xsweep resume` continues them, and ends them as they end."""
    for result, status in zip(results, statuses):
        run_id = (result.config or {}).get(RUN_ID_KEY)
        if status in (INTERRUPTED, PENDING) and run_id:
            set_tags(client, run_id, {TAG_STATUS: status})
            client.set_terminated(run_id, status="KILLED")


def _delete_orphans(runs, results, earlier: Earlier) -> list[str]:
    """The summary's note on child runs no trial owns (opened just before a killed driver's last
    saved state), which are deleted; none when every run has its trial."""
    # An ablation's confirmation phase: its tuning phase's runs are owned too (phases.py).
    owned = {r.config.get(RUN_ID_KEY) for r in results} | set(earlier.run_ids)
    orphans = runs.delete_orphans(owned)
    if not orphans:
        return []
    return [f"MLflow: deleted {len(orphans)} child run(s) no trial owns, opened just before a killed driver's "
            f"last saved state (restorable: mlflow runs restore --run-id ID): {', '.join(orphans)}"]


def _best_of_sweep(results, spec, *, earlier: Earlier, verdict: dict | None) -> tuple[BestTrial | None, tune.Result | None]:
    """The sweep's best trial and, when it is this run's, its Tune result (its checkpoints; else
    None): this run's, unless an earlier version's is better. An ablation's best variant is ranked
    by the verdict over every version's seeds, not by one trial's value."""
    best, value, variant = _best_confirmed(results, spec, verdict) if verdict else (*_best(results, spec), None)
    before = earlier.best
    outdone = best is not None and (variant is not None or better(value, before and before.value,
                                                                      mode=spec.search.mode))
    if before is not None and not outdone:
        return replace(before, earlier=True), None
    if best is None:
        return None, None
    return BestTrial(trial_id=best.metrics.get("trial_id"), run_id=best.config.get(RUN_ID_KEY),
                     name=trial_name(best.config), metric=spec.search.metric, value=value,
                     searched=sampled_params(best.config),
                     config=resolve_trial_config(spec.base_trial_config(), best.config),
                     variant={key: variant[key] for key in ("label", "mean", "n")} if variant else None), best


def _end_statuses(results, in_flight: frozenset) -> list[str]:
    """Each trial's status in xsweep's words. Tune returns normally after Ctrl-C too, with the
    trials it stopped TERMINATED like those that ended: which were still training comes from the
    console's record (`in_flight`)."""
    return [sweep_end_status(tune_status, r.metrics, errored=r.error is not None, in_flight=trial_id in in_flight)
            for r, (trial_id, tune_status) in zip(results, tune_trials(results))]


def finish_sweep(results, spec, *, runs, sweep_path: str, interrupted: bool = False, earlier: Earlier,
                 planned_trials: int | None = None, in_flight: frozenset = frozenset(),
                 undelivered: int = 0) -> SweepOutcome:
    """What the sweep ended with (the driver prints it), recorded in MLflow: its trials' end, its best
    model registered, its parent run closed. earlier: what the versions before it (or an ablation's
    phase 1) ended with, so that the counts and the best trial stay those of the whole sweep;
    planned_trials: this version's own trials (default: the spec's); in_flight: the Tune ids of the
    trials a Ctrl-C stopped while they trained; undelivered: tracking writes left undelivered, which
    keep the sweep resumable (`resume` delivers them)."""
    outcome = SweepOutcome(sweep_path=sweep_path, parent_run_id=runs.parent_run_id, experiment=spec.experiment,
                           tracking_uri=runs.uri, experiment_id=runs.experiment_id, version=runs.version)
    if results is None:
        outcome.interrupted = True
    else:
        statuses = _end_statuses(results, in_flight)
        outcome.counts = dict(Counter(statuses))
        _end_interrupted_runs(runs.client, results, statuses)
        finished = results.num_terminated + results.num_errors
        outcome.interrupted = (interrupted or finished < len(results)
                               or len(results) < (planned_trials or spec.total_trials()))
        confirmed = earlier.phase == TUNE  # this is an ablation's phase 2 (phases.py)
        verdict = None
        if not outcome.interrupted:
            outcome.notes = _delete_orphans(runs, results, earlier)
            if confirmed:
                outcome.verdicts, verdict = record_verdict(spec, runs=runs)
        outcome.best, best_result = _best_of_sweep(results, spec, earlier=earlier, verdict=verdict)
        if best_result is not None and not outcome.interrupted:
            # The registry's `best` is that of a whole sweep.
            outcome.best.model = register_best_model(runs=runs, spec=spec, result=best_result,
                                                     value=outcome.best.value, sweep=Path(sweep_path).name)
        if confirmed:
            tuned = earlier.phase_counts if earlier.phase_counts is not None else earlier.counts
            outcome.phases = {"tune": tuned, "confirm": outcome.counts}
        if spec.search.multi_objective:
            outcome.objectives = spec.search.objective_list
            outcome.front = record_pareto_front(spec, client=runs.client, parent_run_id=runs.parent_run_id)
    outcome.totals = dict(Counter(earlier.counts) + Counter(outcome.counts))
    outcome.cost, outcome.startup = _cost_and_startup(runs.client, runs.parent_run_id)
    _close_parent_run(outcome, spec, runs=runs, undelivered=undelivered)
    return outcome


def _close_parent_run(outcome: SweepOutcome, spec, *, runs, undelivered: int) -> None:
    """The parent run says how the sweep ended: its status, counts, best trial and cost."""
    client = runs.client
    if outcome.interrupted:
        tags = {TAG_STATUS: "interrupted"}
    else:
        tags = {TAG_STATUS: "finished" if not undelivered else "finished, writes undelivered"}
    tags.update({f"{TAG_TRIAL_COUNT_PREFIX}{status}": n for status, n in outcome.totals.items()})
    if outcome.best:
        tags.update({TAG_BEST_TRIAL_ID: outcome.best.trial_id, TAG_BEST_RUN_ID: outcome.best.run_id,
                     TAG_BEST_TRIAL_NAME: outcome.best.name})
        client.log_metric(runs.parent_run_id, f"best_{spec.search.metric}", outcome.best.value)
    if outcome.cost:  # the sweep's total, on its parent run (logged again, larger, by a later version)
        client.log_metric(runs.parent_run_id, COST, outcome.cost["device_seconds"])
    set_tags(client, runs.parent_run_id, tags)
    if outcome.interrupted:
        status = "KILLED"
    else:
        status = "FINISHED" if outcome.exit_code == 0 else "FAILED"
    client.set_terminated(runs.parent_run_id, status=status)


class ImportModelCodeEarly(tune.Callback):
    """Registering the best model at the end (best_model.py) needs torch and mlflow.pytorch, which the
    driver has not imported: seconds at the end of every sweep. They are imported in the
    background once the first result shows the trials training, not during start-up, when the
    trials' own imports need the CPU."""

    def __init__(self) -> None:
        self._started = False

    def __getstate__(self) -> dict:
        return {"_started": False}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self._started:
            self._started = True
            threading.Thread(target=_import_model_code, name="xsweep-imports", daemon=True).start()


def _import_model_code() -> None:
    import mlflow.pytorch  # noqa: F401
    import torch  # noqa: F401

    import xsweep.training.checkpoint  # noqa: F401
    import xsweep.training.fit  # noqa: F401
