"""From a spec's `search` section to Ray Tune's searcher.

Every algorithm is an Optuna sampler underneath (algorithms.py), so one searcher class carries
every sweep, and `xsweep resume` restores the same kind of state whichever algorithm ran.
On top of it `SweepSearcher` (driver side, pickled into Tune's experiment state) adds two things
Ray's own wrappers do not do together:
  * repeats: each suggested configuration runs `search.repeats` times with seeds
    train.seed + 0, 1, ...; the searcher is told the mean over the repeats (of each objective);
  * one MLflow child run per trial, created *before* the trial starts, so the run id travels in
    the trial's config (and from there into each of its checkpoints): a retried or restored trial
    keeps its config, hence its run: no duplicate runs.
"""

from __future__ import annotations

import itertools
import math
import pickle
import random
from typing import Callable

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from xsweep import compat
from xsweep.contract import TrialReport
from xsweep.defaults import quiet_optuna
from xsweep.spec import Spec
from xsweep.spec.trial import FIXED_KEY, REPEAT_KEY, RUN_ID_KEY
from xsweep.search.algorithms import ALGORITHMS, distribution
from xsweep.search.history import Evidence, add_to_study, gather


# How many times a searcher may propose configurations already tried before xsweep picks an
# untried one itself (or, when none is left, ends the search).
MAX_DUPLICATE_DRAWS = 20


def metric_list(metric: str | list[str]) -> list[str]:
    """A searcher's metric as a list: Ray's OptunaSearch takes a list for several objectives."""
    return list(metric) if isinstance(metric, list) else [metric]


def configuration_key(params: dict) -> str:
    return repr(sorted(params.items()))


class _SweepOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, told what the sweep's trials really did.

    * A diverged trial *failed*: Ray's class passes its NaN to `study.tell`, which rejects it and
      leaves the Optuna trial RUNNING forever, so TPE never learns from it.
    * A trial ASHA stopped early was *pruned*, not completed: Ray's class reports its last value
      as final, so TPE would rank a late bloomer stopped at epoch 1 by its epoch-1 accuracy.
    * A configuration is run once: training is deterministic for a seed, so a repeat (TPE in a
      small discrete space proposes the same point again and again) costs a trial and teaches
      nothing. A repeated draw is told to Optuna as failed (user attribute `duplicate_of`) and
      Optuna is asked again; after MAX_DUPLICATE_DRAWS an untried configuration of a discrete
      space is picked at random, and when every one has been tried the search is finished.
      Seeds are repeated on purpose through `search.repeats`, outside this class.
    """

    def __init__(self, *args, deduplicate: bool = True, seed: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._deduplicate = deduplicate
        self._tried: dict[str, str] = {}  # configuration -> the trial id that ran it
        self._rng = random.Random(seed)

    def suggest(self, trial_id: str):
        if not self._deduplicate:
            return super().suggest(trial_id)
        for _ in range(MAX_DUPLICATE_DRAWS):
            config = super().suggest(trial_id)
            if self._remember(trial_id):
                return config
        if not self._enumerable():
            config = super().suggest(trial_id)  # continuous dimensions: a repeat is all but impossible
            self._tried.setdefault(configuration_key(compat.optuna_trials(self)[trial_id].params), trial_id)
            return config
        untried = self._untried_configuration()
        if untried is None:
            return Searcher.FINISHED
        compat.optuna_study(self).enqueue_trial(untried)
        config = super().suggest(trial_id)
        self._remember(trial_id)
        return config

    def add_history(self, evidence, *, space: dict) -> None:
        """Past trials (history.py) into the study, as the sampler's evidence, and their
        configurations into those never trained again."""
        add_to_study(compat.optuna_study(self), evidence, space=space)
        for key in evidence.carried:
            self._tried.setdefault(key, "history")

    def _remember(self, trial_id: str) -> bool:
        """Record the configuration just drawn for `trial_id`; if it was tried before, tell Optuna
        this draw failed as a duplicate and return False."""
        key = configuration_key(compat.optuna_trials(self)[trial_id].params)
        if key not in self._tried:
            self._tried[key] = trial_id
            return True
        ot_trial = compat.optuna_trials(self).pop(trial_id)
        ot_trial.set_user_attr("duplicate_of", self._tried[key])
        compat.optuna_study(self).tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        return False

    def _enumerable(self) -> bool:
        return all(isinstance(d, (optuna.distributions.CategoricalDistribution,
                                  optuna.distributions.IntDistribution)) for d in compat.search_space(self).values())

    def _untried_configuration(self) -> dict | None:
        """A random configuration no trial has run, of a space whose points can be listed."""
        space = compat.search_space(self)
        values = [list(d.choices) if isinstance(d, optuna.distributions.CategoricalDistribution)
                  else list(range(d.low, d.high + 1, d.step)) for d in space.values()]
        configurations = (dict(zip(space, point)) for point in itertools.product(*values))
        untried = [config for config in configurations if configuration_key(config) not in self._tried]
        return self._rng.choice(untried) if untried else None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in compat.completed_trials(self) or trial_id not in compat.optuna_trials(self):
            return
        report = TrialReport.from_result(result)
        values = [(result or {}).get(metric) for metric in metric_list(self.metric)]
        measured = None not in values
        if (report and report.diverged) or any(v is not None and not math.isfinite(v) for v in values):
            state = optuna.trial.TrialState.FAIL
        elif measured and not error and report and report.epoch < report.planned_epochs:
            # Optuna takes its last reported epoch (one objective; several keep no epochs).
            state = optuna.trial.TrialState.PRUNED
        else:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        compat.optuna_study(self).tell(compat.optuna_trials(self)[trial_id], state=state)
        compat.completed_trials(self).add(trial_id)


class SweepSearcher(Searcher):
    """Repeats each configuration over seeds and opens the MLflow run of each trial (see module doc).

    `open_run(trial_id, sampled) -> run_id` is called in the driver before a trial starts; it must
    be picklable (Tune pickles the searcher into its experiment state for `xsweep resume`). When it
    returns None (the tracking server has not made the run yet) suggest returns None, which tells
    Tune to go on with its loop and ask again: the configuration waits for the next trial id.
    """

    def __init__(self, inner: Searcher, *, repeats: int, open_run: Callable[[str, dict], str | None]):
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner = inner
        self.repeats = repeats
        self.open_run = open_run
        self._group: dict | None = None  # {"primary": trial_id, "config": ..., "members": [...]}
        self._group_of: dict[str, dict] = {}
        self._waiting: tuple[dict, dict] | None = None  # (group, config) whose run is not made yet

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        waiting = getattr(self, "_waiting", None)  # a searcher saved before runs could wait has none
        if waiting is None:
            if self._group is None or len(self._group["members"]) == self.repeats:
                config = self.inner.suggest(trial_id)
                if config is None or config == Searcher.FINISHED:
                    return config
                # The inner searcher knows the configuration by this first id ("primary").
                self._group = {"primary": trial_id, "config": dict(config), "members": [], "scores": {}}
            group = self._group
            config = dict(group["config"])
            # An ablation's confirmation names each item's seed repeat itself (ablation.py).
            config.setdefault(REPEAT_KEY, len(group["members"]))
            waiting = self._waiting = (group, config)
        group, config = waiting
        run_id = self.open_run(trial_id, config)
        if run_id is None:
            return None
        self._waiting = None
        group["members"].append(trial_id)
        self._group_of[trial_id] = group
        config[RUN_ID_KEY] = run_id
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        group = self._group_of.get(trial_id)
        if group is not None and self.repeats == 1:
            self.inner.on_trial_result(group["primary"], result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        group = self._group_of.get(trial_id)
        if group is None:
            return
        if self.repeats == 1:
            self.inner.on_trial_complete(group["primary"], result=result, error=error)
            return
        report = TrialReport.from_result(result)
        metrics = metric_list(self.metric)
        values = [report.value(m) for m in metrics] if report and not report.diverged else [None]
        group["scores"][trial_id] = None if None in values else values
        if len(group["scores"]) < self.repeats:
            return
        # A searcher state saved before several objectives held one number per repeat.
        scores = [s if isinstance(s, list) else [s] for s in group["scores"].values() if s is not None]
        # The searcher sees the mean over seeds; a configuration that diverged for every seed failed.
        summary = {m: sum(s[i] for s in scores) / len(scores) if scores else math.nan for i, m in enumerate(metrics)}
        self.inner.on_trial_complete(group["primary"], result=summary, error=not scores and error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def optuna_space(spec: Spec) -> dict[str, optuna.distributions.BaseDistribution]:
    space = {path: distribution(entry.kind, low=entry.low, high=entry.high, values=entry.values or ())
             for path, entry in spec.search.space.items()}
    # A sweep of one fixed configuration (seeds only) still needs *some* space for Optuna: a single
    # constant that resolve_trial_config ignores, like every other "xsweep/" key.
    return space or {FIXED_KEY: optuna.distributions.CategoricalDistribution([0])}


def _study_searcher(spec: Spec) -> _SweepOptunaSearch:
    """One Optuna study over the spec's space, with the spec's sampler."""
    objectives = spec.search.objective_list
    several = len(objectives) > 1
    return _SweepOptunaSearch(
        space=optuna_space(spec),
        metric=[o.metric for o in objectives] if several else spec.search.metric,
        mode=[o.mode for o in objectives] if several else spec.search.mode,
        sampler=ALGORITHMS.get(spec.search.algorithm).sampler(spec),
        deduplicate=bool(spec.search.space), seed=spec.search.seed,
    )


def build_searcher(spec: Spec, *, open_run: Callable[[str, dict], str | None], past_runs=None,
                   variants: list[dict] | None = None) -> SweepSearcher:
    """The sweep's searcher; `past_runs` (MLflow trial runs of earlier versions, or of a warm
    start's experiment) become its evidence where the spec's space holds them: the returned
    searcher's `evidence` says how many did (history.py). An ablation's phase 1 searches each
    variant (of `variants`, by default all) with a study of its own (ablation.py)."""
    quiet_optuna()
    if spec.ablation is not None:
        from xsweep.search.ablation import VariantSearcher, tuned_spec

        tuned = tuned_spec(spec)
        # Each variant's sampler gets its own seed: the same seed would make every variant try the
        # same learning rates in the same order, which is a grid in disguise, not a search.
        inner = VariantSearcher(spec, lambda index: _study_searcher(tuned.model_copy(update={
            "search": tuned.search.model_copy(update={"seed": tuned.search.seed + index})})), variants=variants)
        searcher = SweepSearcher(inner, repeats=1, open_run=open_run)
        searcher.evidence = Evidence()
        return searcher
    space = optuna_space(spec)
    objectives = spec.search.objective_list
    inner = _study_searcher(spec)
    searcher = SweepSearcher(inner, repeats=spec.search.repeats, open_run=open_run)
    searcher.evidence = Evidence()
    if past_runs is not None and spec.search.space:
        searcher.evidence = gather(past_runs, space=space, base_config=spec.base_trial_config(),
                                   objectives=[o.metric for o in objectives], key=configuration_key)
        inner.add_history(searcher.evidence, space=space)
    return searcher


def build_confirm_searcher(spec: Spec, items: list[dict], *, picked: list[dict],
                           open_run: Callable[[str, dict], str | None]) -> SweepSearcher:
    """An ablation's phase 2: the planned items, each a configuration with its seed repeat
    (phases.py); for a sequential design, the `picked` configurations round by round instead."""
    from xsweep.search.ablation import ConfirmSearcher, SequentialConfirmSearcher

    if spec.ablation.sequential:
        inner = SequentialConfirmSearcher(spec, picked, metric=spec.search.metric, mode=spec.search.mode)
    else:
        inner = ConfirmSearcher(items, metric=spec.search.metric, mode=spec.search.mode)
    return SweepSearcher(inner, repeats=1, open_run=open_run)
