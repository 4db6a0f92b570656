"""A tracked trial, read back from MLflow alone, as `xsweep reproduce` re-runs it: which run (the one
named, the best of the latest sweep, or a place on a sweep's Pareto front), its exact config, its
sweep's search metric, its logged history, its best checkpoint and the final values of its
variant's confirmation seeds. The Ray results folder may be on another machine: nothing here reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xsweep.contract import COMPLETED, STOPPED
from xsweep.errors import ReproduceError
from xsweep.metrics import ACCURACY, reproducible
from xsweep.tracking.provenance import recorded_digest
from xsweep.tracking.query import best_at_any_epoch, child_runs, find_experiment, latest_sweep, search_all
from xsweep.tracking.tags import (
    TAG_BEST_RUN_ID, TAG_CONFIG, TAG_DEVICE, TAG_KIND, TAG_PARETO, TAG_PARETO_RANK, TAG_PHASE, TAG_STATUS,
    TAG_TRIAL_ID, TAG_VARIANT,
)

FINISHED_STATUSES = (COMPLETED, STOPPED)  # trial statuses that left a full, usable history


@dataclass
class Trial:
    run_id: str
    name: str
    experiment_id: str
    config: dict
    metric: str  # the sweep's search.metric
    mode: str  # max | min
    device_tag: str  # where the sweep ran it ("cpu", "cuda:<name>"), "" if unknown
    tags: dict = field(default_factory=dict)  # its own run's tags
    sweep_tags: dict = field(default_factory=dict)  # the parent run's tags: provenance
    parent_run_id: str | None = None
    data_digest: str | None = None  # what its dataset input recorded (provenance.py)
    logged: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> metrics


def find_trial_run(client: MlflowClient, *, experiment: str, run_id: str | None = None, uri: str = "",
                   pick: int | None = None) -> Trial:
    """--run's trial, else the best trial of the experiment's latest sweep (or of --run's sweep);
    with --pick, that sweep's pick-th trial of its Pareto front instead of its best."""
    exp = find_experiment(client, experiment, uri=uri, flag="--experiment", error=ReproduceError)
    if run_id:
        run = _get_run(client, run_id, experiment=exp)
        if run.data.tags.get(TAG_KIND) == "sweep":  # a sweep's id: reproduce its best trial
            run = _front_member(client, run, pick) if pick is not None else _best_trial(client, run)
        elif pick is not None:
            raise ReproduceError(f"--pick: run {run_id} is a trial, not a sweep (pass the sweep's parent run id "
                                 "as --run, or leave --run out for the latest sweep)")
    else:
        sweep = latest_sweep(client, exp.experiment_id)
        if sweep is None:
            raise ReproduceError(f"--experiment: experiment '{experiment}' has no sweep "
                                 f"(run one with `xsweep run SPEC`, or pass --run RUN_ID)")
        run = _front_member(client, sweep, pick) if pick is not None else _best_trial(client, sweep)
    return _trial(client, run, flag="--run" if run_id else "--experiment")


def _front_member(client: MlflowClient, sweep, pick: int):
    """The sweep's trial at place `pick` of its Pareto front (1 = best on the first objective), as
    the tags written at the end of the sweep order it (sweep/front.py)."""
    name = sweep.info.run_name
    if "search.objectives" not in sweep.data.params:
        raise ReproduceError(f"--pick: sweep {name} searched one objective, so it has no Pareto front "
                             "(leave --pick out for its best trial, or pass --run RUN_ID)")
    front = [run for run in child_runs(client, sweep) if run.data.tags.get(TAG_PARETO) == "true"]
    front.sort(key=lambda run: int(run.data.tags.get(TAG_PARETO_RANK, "0")))
    if not front:
        raise ReproduceError(f"--pick: sweep {name} has no Pareto front yet (it is tagged when the sweep ends: "
                             "wait for it, or `xsweep resume` it)")
    if not 1 <= pick <= len(front):
        raise ReproduceError(f"--pick: the Pareto front of sweep {name} has {len(front)} trial(s) "
                             f"(pick 1 to {len(front)}; 1 is the best on the first objective)")
    return front[pick - 1]


def _get_run(client: MlflowClient, run_id: str, *, experiment):
    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.info.experiment_id != experiment.experiment_id:
        raise ReproduceError(f"--run: no run {run_id} in experiment '{experiment.name}' "
                             f"(pass a trial's run id from `xsweep run`'s output or the MLflow UI)")
    return run


def _best_trial(client: MlflowClient, sweep):
    """The sweep's recorded best trial; without one (interrupted sweep), the best finished child."""
    best_id = sweep.data.tags.get(TAG_BEST_RUN_ID)
    if best_id:
        try:
            return client.get_run(best_id)
        except MlflowException:
            pass  # deleted since: choose again below
    metric, mode = _search(sweep)
    finished = [run for run in child_runs(client, sweep) if run.data.tags.get(TAG_STATUS) in FINISHED_STATUSES]
    best = best_at_any_epoch(client, finished, metric=metric, mode=mode)
    if best is None:
        raise ReproduceError(f"--experiment: the latest sweep {sweep.info.run_name} has no finished trial "
                             f"(wait for it to finish, `xsweep resume` it, or pass --run RUN_ID)")
    return best


def _search(sweep) -> tuple[str, str]:
    params = sweep.data.params if sweep is not None else {}
    return params.get("search.metric", ACCURACY), params.get("search.mode", "max")


def _trial(client: MlflowClient, run, *, flag: str) -> Trial:
    tags = run.data.tags
    if TAG_CONFIG not in tags:
        # Also the case for trials of sweeps run before xsweep recorded the config as a tag.
        raise ReproduceError(f"{flag}: run {run.info.run_id} has no {TAG_CONFIG} tag, so it cannot be re-run "
                             f"(pass the run id of a trial, or of a sweep, run by this xsweep)")
    parent_id = tags.get("mlflow.parentRunId")
    try:
        parent = client.get_run(parent_id) if parent_id else None
    except MlflowException:
        parent = None
    metric, mode = _search(parent)
    trial = Trial(run_id=run.info.run_id, name=run.info.run_name or tags.get(TAG_TRIAL_ID, run.info.run_id),
                  experiment_id=run.info.experiment_id, config=json.loads(tags[TAG_CONFIG]), metric=metric,
                  mode=mode, device_tag=tags.get(TAG_DEVICE, ""), tags=dict(tags),
                  sweep_tags=parent.data.tags if parent is not None else {},
                  parent_run_id=parent.info.run_id if parent is not None else None, data_digest=recorded_digest(run))
    trial.logged = logged_history(client, run.info.run_id)
    if not trial.logged:
        raise ReproduceError(f"{flag}: run {run.info.run_id} has no logged epochs yet "
                             f"(wait for its first epoch, or pass another --run)")
    return trial


def logged_history(client: MlflowClient, run_id: str) -> dict[int, dict[str, float]]:
    """epoch -> {metric: value}, from MLflow's metric history (step = epoch), of the metrics the
    seed decides (xsweep.metrics.reproducible)."""
    history: dict[int, dict[str, float]] = {}
    for key in reproducible():
        # If a step was ever logged twice, the later write is what the UI shows: keep that one.
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            history.setdefault(int(m.step), {})[key] = m.value
    return dict(sorted(history.items()))


def download_checkpoint(client: MlflowClient, trial: Trial, *, dst: str) -> Path:
    """checkpoints/best/ of the trial's run into `dst`; the path of state.pt in it."""
    names = {Path(a.path).name for a in client.list_artifacts(trial.run_id, "checkpoints/best")}
    if "state.pt" not in names:
        raise ReproduceError(f"--from-checkpoint: run {trial.run_id} has no checkpoints/best/state.pt artifact "
                             f"(re-train instead: drop --from-checkpoint)")
    folder = client.download_artifacts(trial.run_id, "checkpoints/best", dst_path=dst)
    return Path(folder, "state.pt")


def confirmation_finals(client: MlflowClient, *, trial: Trial) -> list[float]:
    """The final value of the sweep's search metric of every completed confirmation seed of the
    trial's variant (an ablation's phase 2, search/ablation.py), the trial among them; none when
    the trial is not a confirmation seed."""
    variant = trial.tags.get(TAG_VARIANT)
    if trial.tags.get(TAG_PHASE) != "confirm" or not variant or not trial.parent_run_id:
        return []
    siblings = search_all(client, [trial.experiment_id],
                          f"tags.`mlflow.parentRunId` = '{trial.parent_run_id}' and tags.`{TAG_PHASE}` = 'confirm' "
                          f"and tags.`{TAG_VARIANT}` = '{variant}' and tags.`{TAG_STATUS}` = '{COMPLETED}'")
    finals = []
    for run in siblings:
        history = client.get_metric_history(run.info.run_id, trial.metric)
        if history:
            finals.append(max(history, key=lambda m: m.step).value)
    return finals
