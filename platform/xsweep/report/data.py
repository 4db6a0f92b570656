"""The report's data: one sweep and its trials, read from MLflow alone (the layout is in
tracking/query.py): the experiment's latest sweep unless a run id is given."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xsweep.contract import COMPLETED
from xsweep.errors import ReportError
from xsweep.metrics import ACCURACY, COST, curve_metrics, is_finite_number
from xsweep.search.algorithms import ALGORITHMS
from xsweep.tracking.query import child_runs, find_experiment, latest_sweep
from xsweep.tracking.store import open_store
from xsweep.tracking.tags import (
    TAG_ABLATION, TAG_BEST_RUN_ID, TAG_CONFIG, TAG_KIND, TAG_PHASE, TAG_SEARCHED, TAG_STATUS, TAG_SWEEP_VERSION,
)
from xsweep.tracking.uri import redact

FINISHED = COMPLETED  # the only status whose final accuracy is comparable: every epoch ran


@dataclass
class TrialRun:
    run_id: str
    name: str
    status: str  # completed | stopped | diverged | failed | pending | running
    searched: dict[str, Any]  # dotted path -> value
    config: dict
    seed: int | None
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(epoch, value)]
    latest: dict[str, float] = field(default_factory=dict)  # every metric at its last logged epoch
    version: int = 1  # of the sweep it ran in (xsweep extend)
    phase: str | None = None  # an ablation's trial: "tune" or "confirm"

    @property
    def finished(self) -> bool:
        return self.status == FINISHED and self.final(ACCURACY) is not None

    @property
    def device_seconds(self) -> float | None:
        """What the trial cost: seconds it held its devices, summed over them (its latest count)."""
        value = self.latest.get(COST)
        return float(value) if is_finite_number(value) else None

    def final(self, metric: str) -> float | None:
        """The metric at the last epoch logged, if finite."""
        points = self.history.get(metric) or []
        if not points:
            return None
        value = max(points)[1]
        return value if math.isfinite(value) else None


@dataclass
class SweepData:
    uri: str
    experiment: str
    experiment_id: str
    run_id: str
    run_name: str
    status: str
    params: dict[str, str]  # the flattened resolved spec
    tags: dict[str, str]
    trials: list[TrialRun]

    @property
    def algorithm(self) -> str:
        return self.params.get("search.algorithm", "")

    @property
    def runs_a_grid(self) -> bool:
        """Whether its algorithm runs every configuration of its choices once (its registry entry
        says so): any two levels of a factor then come in pairs that share all else."""
        return self.algorithm in ALGORITHMS and ALGORITHMS.get(self.algorithm).choices_only

    @property
    def repeats(self) -> int:
        return int(self.params.get("search.repeats", "1") or 1)

    @property
    def epochs(self) -> int | None:
        value = self.params.get("train.epochs")
        return int(value) if value and value.isdigit() else None

    @property
    def metric(self) -> str:
        return self.params.get("search.metric", ACCURACY)

    @property
    def mode(self) -> str:
        return self.params.get("search.mode", "max")

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """[(metric, mode)] searched on: several for a multi-objective sweep, the first being `metric`."""
        try:
            listed = json.loads(self.params.get("search.objectives") or "null")
        except json.JSONDecodeError:
            listed = None
        if isinstance(listed, list) and listed:
            return [(o["metric"], o["mode"]) for o in listed]
        return [(self.metric, self.mode)]

    @property
    def space(self) -> dict[str, dict]:
        """The searched paths and their entries, e.g. {'train.lr': {'choice': [0.05, 0.1]}}."""
        prefix = "search.space."
        space = {}
        for key, value in self.params.items():
            if key.startswith(prefix):
                try:
                    space[key[len(prefix):]] = json.loads(value)
                except json.JSONDecodeError:
                    space[key[len(prefix):]] = {}
        # Trials know their searched paths even if the params were cut short.
        for trial in self.trials:
            for path in trial.searched:
                space.setdefault(path, {})
        return space

    @property
    def ablation(self) -> dict | None:
        """An ablation sweep's section (factors, tune, budget, confirm_seeds, reference); else None."""
        value = _json_tag(self.tags, TAG_ABLATION)
        return value or None

    @property
    def best_run_id(self) -> str | None:
        return self.tags.get(TAG_BEST_RUN_ID)


def find_sweep(client: MlflowClient, *, experiment: str, sweep: str | None, uri: str):
    """The experiment's sweep run: --sweep's, else the latest."""
    exp = find_experiment(client, experiment, uri=uri, flag="EXPERIMENT", error=ReportError)
    if sweep:
        try:
            run = client.get_run(sweep)
        except MlflowException:
            raise ReportError(f"--sweep: no run {sweep} in {redact(uri)} (pass the sweep's parent run id, "
                              "or leave --sweep out for the latest sweep)") from None
        if run.info.experiment_id != exp.experiment_id or run.data.tags.get(TAG_KIND) != "sweep":
            raise ReportError(f"--sweep: run {sweep} is not a sweep of experiment '{experiment}' (pass the "
                              "parent run id that `xsweep run` printed, or leave --sweep out)")
        return exp, run
    latest = latest_sweep(client, exp.experiment_id)
    if latest is None:
        raise ReportError(f"EXPERIMENT: experiment '{experiment}' has no sweep (run one with `xsweep run SPEC`)")
    return exp, latest


def _json_tag(tags: dict, key: str) -> dict:
    try:
        value = json.loads(tags.get(key) or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def load_trial(client: MlflowClient, run) -> TrialRun:
    tags = run.data.tags
    config = _json_tag(tags, TAG_CONFIG)
    seed = (config.get("train") or {}).get("seed")
    history = {}
    for metric in curve_metrics():
        points = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)}
        history[metric] = sorted(points.items())
    return TrialRun(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        status=tags.get(TAG_STATUS, "unknown"),
        searched=_json_tag(tags, TAG_SEARCHED),
        config=config,
        seed=int(seed) if isinstance(seed, int) else None,
        history=history,
        latest=dict(run.data.metrics),
        version=int(tags.get(TAG_SWEEP_VERSION, "1")),
        phase=tags.get(TAG_PHASE),
    )


def load_sweep(uri: str, *, experiment: str, sweep: str | None = None,
               flag: str = "--tracking-uri") -> tuple[MlflowClient, SweepData]:
    client = open_store(uri, flag=flag, error=ReportError)
    exp, run = find_sweep(client, experiment=experiment, sweep=sweep, uri=uri)
    children = child_runs(client, run)
    if not children:
        raise ReportError(f"--sweep: sweep {run.info.run_id} of '{experiment}' has no trials yet "
                          "(wait for it to start, or pass another --sweep)")
    trials = [load_trial(client, child) for child in children]
    data = SweepData(
        uri=uri,
        experiment=experiment,
        experiment_id=exp.experiment_id,
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        status=run.data.tags.get(TAG_STATUS, "unknown"),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        trials=trials,
    )
    return client, data
