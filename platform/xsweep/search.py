"""From a spec's `search` and `scheduler` sections to Ray Tune's searcher and scheduler.

Every algorithm is Optuna underneath (TPE, random, or grid sampler), so one searcher class carries
every sweep, and `xsweep resume` restores the same kind of state whichever algorithm ran.
On top of it `SweepSearcher` (driver side, pickled into Tune's experiment state) adds two things
Ray's own wrappers do not do together:
  * repeats: each suggested configuration runs `search.repeats` times with seeds
    train.seed + 0, 1, ...; the searcher is told the mean over the repeats;
  * one MLflow child run per trial, created *before* the trial starts, so the run id travels in
    the trial's config (and from there into each of its checkpoints): a retried or restored trial
    keeps its config, hence its run: no duplicate runs.
"""

from __future__ import annotations

import math
import pickle
from typing import Callable

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from xsweep.spec import Spec
from xsweep.trial_config import FIXED_KEY, REPEAT_KEY, RUN_ID_KEY

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _distribution(entry) -> optuna.distributions.BaseDistribution:
    if entry.kind == "loguniform":
        return optuna.distributions.FloatDistribution(entry.low, entry.high, log=True)
    if entry.kind == "uniform":
        return optuna.distributions.FloatDistribution(entry.low, entry.high)
    if entry.kind == "int":
        return optuna.distributions.IntDistribution(int(entry.low), int(entry.high))
    return optuna.distributions.CategoricalDistribution(list(entry.values))


def _sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    if spec.search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.search.algorithm == "grid":
        grid = {path: list(entry.values) for path, entry in spec.search.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


class _FailAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna a diverged trial *failed* instead of crashing on its NaN.

    Ray's OptunaSearch passes the NaN metric of a diverged trial to `study.tell`, which rejects it
    with a warning and leaves the Optuna trial RUNNING forever, so TPE never learns from it.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        value = (result or {}).get(self.metric)
        if (result or {}).get("diverged") or (value is not None and not math.isfinite(value)):
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


class SweepSearcher(Searcher):
    """Repeats each configuration over seeds and opens the MLflow run of each trial (see module doc).

    `open_run(trial_id, sampled) -> run_id` is called in the driver before a trial starts; it must
    be picklable (Tune pickles the searcher into its experiment state for `xsweep resume`).
    """

    def __init__(self, inner: Searcher, *, repeats: int, open_run: Callable[[str, dict], str]):
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner = inner
        self.repeats = repeats
        self.open_run = open_run
        self._group: dict | None = None  # {"primary": trial_id, "config": ..., "members": [...]}
        self._group_of: dict[str, dict] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        if self._group is None or len(self._group["members"]) == self.repeats:
            config = self.inner.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._group = {"primary": trial_id, "config": dict(config), "members": [], "scores": {}}
        group = self._group
        config = dict(group["config"], **{REPEAT_KEY: len(group["members"])})
        group["members"].append(trial_id)
        self._group_of[trial_id] = group
        config[RUN_ID_KEY] = self.open_run(trial_id, config)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        group = self._group_of.get(trial_id)
        if group is not None and self.repeats == 1:
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        group = self._group_of.get(trial_id)
        if group is None:
            return
        if self.repeats == 1:
            self.inner.on_trial_complete(trial_id, result=result, error=error)
            return
        value = (result or {}).get(self.metric)
        diverged = (result or {}).get("diverged") or value is None or not math.isfinite(value)
        group["scores"][trial_id] = None if diverged else value
        if len(group["scores"]) < self.repeats:
            return
        scores = [s for s in group["scores"].values() if s is not None]
        # The searcher sees the mean over seeds; a configuration that diverged for every seed failed.
        summary = {self.metric: sum(scores) / len(scores)} if scores else {"diverged": True}
        self.inner.on_trial_complete(group["primary"], result=summary, error=not scores and error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def build_searcher(spec: Spec, *, open_run: Callable[[str, dict], str]) -> SweepSearcher:
    space = {path: _distribution(entry) for path, entry in spec.search.space.items()}
    # A sweep of one fixed configuration (seeds only) still needs *some* space for Optuna: a single
    # constant that trial_config() ignores, like every other "xsweep/" key.
    space = space or {FIXED_KEY: optuna.distributions.CategoricalDistribution([0])}
    inner = _FailAwareOptunaSearch(
        space=space, metric=spec.search.metric, mode=spec.search.mode, sampler=_sampler(spec)
    )
    return SweepSearcher(inner, repeats=spec.search.repeats, open_run=open_run)


def build_scheduler(spec: Spec):
    if spec.scheduler.kind == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=spec.train.epochs,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    return FIFOScheduler()
