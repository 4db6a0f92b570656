"""An ablation study (a spec with `ablation:`), run as one sweep in two phases:

    phase 1, tune:    every variant (one combination of the factors' levels) searches the tuned
                      fields with its own Optuna study, `budget` trials each, the variants'
                      trials interleaved; a scheduler such as ASHA compares a trial only with
                      trials of its own variant, so that one architecture never stops another's;
    phase 2, confirm: each variant's best configuration re-trained at the full epoch count with
                      seeds train.seed + 1 ... + confirm_seeds, the same seeds for every variant,
                      so that two variants compare pair by pair, seed by seed. A sequential
                      design (confirm_seeds: {min, max}) runs min seeds, then one seed a round
                      for the variants whose comparisons are still open (report/sequential.py).

Why tune each variant: the paper warns that reusing the residual network's optimizer settings for
the non-residual one "may be uncharitable" to it. Why fresh seeds in phase 2: the tuning seed
picked the winner, so its own score is biased upwards (the winner's curse); new seeds are not.

Phase 1 is the sweep's Tune experiment (its folder), phase 2 the sub-folder `confirm`; both report
to the same MLflow parent run, and every trial run is tagged with its phase and variant.
"""

from __future__ import annotations

import itertools
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from xsweep.contract import TrialReport
from xsweep.metrics import ACCURACY
from xsweep.report import sequential
from xsweep.report.labels import level_key
from xsweep.spec import Spec
from xsweep.spec.trial import PHASE_KEY, REPEAT_KEY, VARIANT_KEY, sampled_params, values_label

TUNE, CONFIRM = "tune", "confirm"
CONFIRM_DIR = "confirm"  # phase 2's Tune experiment, inside the sweep's folder


def all_variants(spec: Spec) -> list[dict[str, Any]]:
    """Every combination of the factors' levels, in the order search.space lists them."""
    factors = spec.ablation.factors
    levels = [spec.search.space[path].values or [] for path in factors]
    return [dict(zip(factors, combination)) for combination in itertools.product(*levels)]


def variant_label(values: dict[str, Any]) -> str:
    return values_label(values)


def tuned_spec(spec: Spec) -> Spec:
    """The spec one variant's own study searches: the tuned fields only."""
    space = {path: entry for path, entry in spec.search.space.items() if path in spec.ablation.tune}
    return spec.model_copy(update={"search": spec.search.model_copy(update={"space": space})})


class VariantSearcher(Searcher):
    """Phase 1's searcher: one study per variant, asked in turn (the variant with the fewest trials
    first), each until its budget is spent. Tune sees one searcher; each suggestion carries its
    variant's factor levels, the tuned values its study drew, and the phase and variant keys."""

    def __init__(self, spec: Spec, make_study_searcher, *, variants: list[dict] | None = None):
        super().__init__(metric=spec.search.metric, mode=spec.search.mode)
        self.variants = variants if variants is not None else all_variants(spec)  # an extension's: the new ones
        self.budget = spec.ablation.budget
        self.searchers = [make_study_searcher(index) for index in range(len(self.variants))]
        self.suggested = [0] * len(self.variants)
        self.variant_of: dict[str, int] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # every study was built with its space, metric and mode

    def suggest(self, trial_id: str) -> dict | None:
        while True:
            open_variants = [i for i, n in enumerate(self.suggested) if n < self.budget]
            if not open_variants:
                return Searcher.FINISHED
            index = min(open_variants, key=lambda i: self.suggested[i])
            config = self.searchers[index].suggest(trial_id)
            if config is None:  # its study waits on running trials (never, without a limiter)
                return None
            if config == Searcher.FINISHED:  # a tuned space of choices, every point tried
                self.suggested[index] = self.budget
                continue
            self.suggested[index] += 1
            self.variant_of[trial_id] = index
            values = self.variants[index]
            return {**values, **config, PHASE_KEY: TUNE, VARIANT_KEY: variant_label(values)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.variant_of:
            self.searchers[self.variant_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.variant_of:
            self.searchers[self.variant_of[trial_id]].on_trial_complete(trial_id, result=result, error=error)


class ConfirmSearcher(Searcher):
    """Phase 2's searcher: the planned (configuration, seed repeat) items in order (phases.py)."""

    def __init__(self, configurations: list[dict], *, metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.configurations = configurations
        self.next = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if self.next == len(self.configurations):
            return Searcher.FINISHED
        self.next += 1
        return dict(self.configurations[self.next - 1], **{PHASE_KEY: CONFIRM})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


class SequentialConfirmSearcher(ConfirmSearcher):
    """Phase 2 of a sequential design: every picked configuration over seeds 1 ... min, then round
    by round one more seed for the configurations whose comparisons are still open (next_round),
    each round once the one before has ended, until none is open or max seeds have run. Tune
    pickles it with its experiment, so that `xsweep resume` continues at the round it stopped in."""

    def __init__(self, spec: Spec, picked: list[dict], *, metric: str, mode: str):
        first = [dict(config, **{REPEAT_KEY: seed}) for seed in range(1, spec.ablation.min_seeds + 1)
                 for config in picked]
        super().__init__(first, metric=metric, mode=mode)
        self.spec, self.picked = spec, picked
        self.seeds = spec.ablation.min_seeds  # the seeds planned so far
        self.config_of: dict[str, dict] = {}  # trials suggested and not ended yet
        self.scores: dict[tuple, dict[int, float]] = {}  # variant -> seed rank -> final accuracy

    def suggest(self, trial_id: str) -> dict | None:
        if self.next == len(self.configurations):
            if self.config_of:
                return None  # the round is still training: the next one depends on it
            more = next_round(self.spec, self.picked, self.scores, seeds_run=self.seeds)
            if not more:
                return Searcher.FINISHED
            self.seeds += 1
            self.configurations += [dict(config, **{REPEAT_KEY: self.seeds}) for config in more]
        config = super().suggest(trial_id)
        self.config_of[trial_id] = config
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        config = self.config_of.pop(trial_id, None)
        accuracy = final_accuracy(result, error=error)
        if config is not None and accuracy is not None:
            variant = variant_key(self.spec, config)
            self.scores.setdefault(variant, {})[int(config[REPEAT_KEY])] = accuracy


def final_accuracy(result: dict | None, *, error: bool = False) -> float | None:
    """A confirmation trial's final accuracy, if it ran every epoch without diverging."""
    report = TrialReport.from_result(result or {})
    if error or report is None or report.diverged or report.epoch < report.planned_epochs:
        return None
    value = (result or {}).get(ACCURACY)
    return float(value) if value is not None else None


def variant_key(spec: Spec, config: dict) -> tuple:
    """A trial's variant as level keys, one per factor (report/sequential.py's pairing)."""
    return tuple(level_key(config.get(path)) for path in spec.ablation.factors)


def next_round(spec: Spec, picked: list[dict], scores: dict[tuple, dict[int, float]], *, seeds_run: int) -> list[dict]:
    """The picked configurations a sequential design gives one more seed after `seeds_run` seeds
    (`scores`: what those ended with): each one that is a side of a comparison still open; none once
    max seeds have run or every comparison is decided."""
    ablation = spec.ablation
    if seeds_run >= ablation.max_seeds:
        return []
    levels = [[level_key(v) for v in spec.search.space[path].values or []] for path in ablation.factors]
    reference = [level_key(ablation.reference[path]) for path in ablation.factors]
    comparisons = sequential.pair_up(scores, levels=levels, reference=reference)
    design = sequential.Design(min_seeds=ablation.min_seeds, max_seeds=ablation.max_seeds)
    decisions = sequential.decide(comparisons, design, seeds_run=seeds_run)
    open_ = [comparisons[i] for i in sequential.still_open(decisions)]
    return [config for config in picked if any(c.involves(variant_key(spec, config)) for c in open_)]


def sequential_trials_due(spec: Spec, picked: list[dict], results) -> int:
    """How many trials a sequential phase 2 calls for, given its Tune `results` so far: more than it
    ran when it stopped before its design did (the sweep is then resumable)."""
    scores: dict[tuple, dict[int, float]] = {}
    for result in results or []:
        accuracy = final_accuracy(result.metrics, error=result.error is not None)
        if accuracy is not None and REPEAT_KEY in result.config:
            scores.setdefault(variant_key(spec, result.config), {})[int(result.config[REPEAT_KEY])] = accuracy
    due, seeds = len(picked) * spec.ablation.min_seeds, spec.ablation.min_seeds
    while more := next_round(spec, picked, scores, seeds_run=seeds):
        due, seeds = due + len(more), seeds + 1
        if not any(scores.get(variant_key(spec, c), {}).get(seeds) is not None for c in more):
            break  # that round has not run: it is due, and nothing after it can be known yet
    return due


class VariantScheduler(FIFOScheduler):
    """The spec's trial scheduler once per variant: ASHA compares a trial's accuracy at a rung with
    trials of its own variant only. Otherwise every residual-off trial could be stopped for being
    behind residual-on ones, and the ablation would tune nothing for it."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        self.per_variant: dict[str, TrialScheduler] = {}
        self.metric_mode: tuple[str | None, str | None] = (None, None)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        self.metric_mode = (metric, mode)
        return True

    def _of(self, trial) -> TrialScheduler:
        from xsweep.search.schedulers import build_trial_scheduler

        label = trial.config.get(VARIANT_KEY, "")
        if label not in self.per_variant:
            scheduler = build_trial_scheduler(self.spec)
            scheduler.set_search_properties(*self.metric_mode)
            self.per_variant[label] = scheduler
        return self.per_variant[label]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{label}: {s.debug_string()}" for label, s in self.per_variant.items())


def picked_configurations(results, spec: Spec, variants: list[dict] | None = None) -> tuple[list[dict], list[str]]:
    """Each variant's best phase-1 configuration (by the final value of search.metric over the trials
    that ran every epoch), as Tune configs to confirm; and the labels of variants with none."""
    metric, sign = spec.search.metric, 1 if spec.search.mode == "max" else -1
    best: dict[str, tuple[float, dict]] = {}
    for result in results:
        report = TrialReport.from_result(result.metrics)
        value = (result.metrics or {}).get(metric)
        if result.error is not None or report is None or report.diverged or value is None or \
                report.epoch < report.planned_epochs:
            continue
        label = result.config.get(VARIANT_KEY)
        if label not in best or sign * value > sign * best[label][0]:
            best[label] = (value, result.config)
    picked, missing = [], []
    for values in variants if variants is not None else all_variants(spec):
        label = variant_label(values)
        if label in best:
            picked.append({**sampled_params(best[label][1]), VARIANT_KEY: label})
        else:
            missing.append(label)
    return picked, missing
