"""The end of a sweep: counts per status, the best trial, the registered best model, the sweep's
parent run closed with what it ended with, and the summary printed."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from ray import tune

from xsweep.compat import tune_trials
from xsweep.contract import INTERRUPTED, PENDING, sweep_end_status
from xsweep.metrics import COST, STARTUP, best_scored, better
from xsweep.spec.trial import RUN_ID_KEY, resolve_trial_config, sampled_params, trial_name
from xsweep.sweep.best_model import register_best_model
from xsweep.sweep.front import record_pareto_front
from xsweep.sweep.outcome import SweepOutcome, best_of_history, print_summary, startup_spread, sweep_cost
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
    from xsweep.sweep.phases import best_variant

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


def finish_sweep(results, spec, *, runs, sweep_path: str, interrupted: bool = False, earlier: dict | None = None,
                 planned_trials: int | None = None, in_flight: frozenset = frozenset(), undelivered: int = 0):
    """earlier: for a later version of an extended sweep, what the versions before it ended with
    (sweep/versions.py), so that the counts and the best trial stay those of the whole sweep;
    planned_trials: that version's own trials (default: the spec's); in_flight: the Tune ids of the
    trials a Ctrl-C stopped while they trained; undelivered: tracking writes left undelivered, which
    keep the sweep resumable (`resume` delivers them)."""
    client = runs.client
    earlier = earlier or {}
    outcome = SweepOutcome(sweep_path=sweep_path, parent_run_id=runs.parent_run_id, experiment=spec.experiment,
                           tracking_uri=runs.uri, experiment_id=runs.experiment_id)
    if results is None:
        outcome.interrupted = True
    else:
        # Tune returns normally after Ctrl-C too, with the trials it stopped TERMINATED like those
        # that ended: which were still training comes from the console's record (`in_flight`).
        statuses = [sweep_end_status(tune_status, r.metrics, errored=r.error is not None,
                                     in_flight=trial_id in in_flight)
                    for r, (trial_id, tune_status) in zip(results, tune_trials(results))]
        outcome.counts = dict(Counter(statuses))
        _end_interrupted_runs(client, results, statuses)
        finished = results.num_terminated + results.num_errors
        outcome.interrupted = (interrupted or finished < len(results)
                               or len(results) < (planned_trials or spec.total_trials()))
        if not outcome.interrupted:
            # An ablation's confirmation phase: its tuning phase's runs are owned too (phases.py).
            owned = {r.config.get(RUN_ID_KEY) for r in results} | set(earlier.get("run_ids", []))
            orphans = runs.delete_orphans(owned)
            if orphans:
                print(f"MLflow: deleted {len(orphans)} child run(s) no trial owns, opened just before a "
                      f"killed driver's last saved state (restorable: mlflow runs restore --run-id ID): "
                      f"{', '.join(orphans)}")
        verdict = None
        if earlier.get("phase") == "tune" and not outcome.interrupted:  # an ablation's phase 2 (phases.py)
            from xsweep.sweep.phases import record_verdict

            outcome.verdicts, verdict = record_verdict(spec, runs=runs)
        best, value, variant = _best_confirmed(results, spec, verdict) if verdict else (*_best(results, spec), None)
        before = earlier.get("best")
        # An earlier version's trial stays the best unless this version's is better; an ablation's
        # best variant is ranked by the verdict over every version's seeds, not by one trial's value.
        outdone = best is not None and (variant is not None or better(value, before and before["value"],
                                                                          mode=spec.search.mode))
        if before is not None and not outdone:
            outcome.best = dict(before, earlier=True)
        elif best is not None:
            outcome.best = {
                "trial_id": best.metrics.get("trial_id"),
                "run_id": best.config.get(RUN_ID_KEY),
                "name": trial_name(best.config),
                "metric": spec.search.metric,
                "value": value,
                "searched": sampled_params(best.config),
                "config": resolve_trial_config(spec.base_trial_config(), best.config),
            }
            if variant:
                outcome.best["variant"] = {key: variant[key] for key in ("label", "mean", "n")}
            if not outcome.interrupted:  # the registry's `best` is that of a whole sweep
                outcome.best["model"] = register_best_model(runs=runs, spec=spec, result=best, value=value,
                                                            sweep=Path(sweep_path).name)
        if earlier.get("phase") == "tune":
            outcome.phases = {"tune": earlier.get("phase_counts", earlier["counts"]), "confirm": outcome.counts}
        if spec.search.multi_objective:
            outcome.objectives = spec.search.objective_list
            outcome.front = record_pareto_front(spec, client=client, parent_run_id=runs.parent_run_id)

    if outcome.interrupted:
        tags = {TAG_STATUS: "interrupted"}
    else:
        tags = {TAG_STATUS: "finished" if not undelivered else "finished, writes undelivered"}
    outcome.version = getattr(runs, "version", 1)
    outcome.totals = dict(Counter(earlier.get("counts", {})) + Counter(outcome.counts))
    tags.update({f"{TAG_TRIAL_COUNT_PREFIX}{status}": n for status, n in outcome.totals.items()})
    if outcome.best:
        tags.update({TAG_BEST_TRIAL_ID: outcome.best["trial_id"], TAG_BEST_RUN_ID: outcome.best["run_id"],
                     TAG_BEST_TRIAL_NAME: outcome.best["name"]})
        client.log_metric(runs.parent_run_id, f"best_{spec.search.metric}", outcome.best["value"])
    outcome.cost, outcome.startup = _cost_and_startup(client, runs.parent_run_id)
    if outcome.cost:  # the sweep's total, on its parent run (logged again, larger, by a later version)
        client.log_metric(runs.parent_run_id, COST, outcome.cost["device_seconds"])
    set_tags(client, runs.parent_run_id, tags)
    if outcome.interrupted:
        status = "KILLED"
    else:
        status = "FINISHED" if outcome.exit_code == 0 else "FAILED"
    client.set_terminated(runs.parent_run_id, status=status)
    print_summary(outcome)
    return outcome


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
