"""An ablation study (a spec with `ablation:`), run as one sweep in two phases:

    phase 1, tune:    every variant (one combination of the factors' levels) searches the tuned
                      fields with its own Optuna study, `budget` trials each, the variants'
                      trials interleaved; a scheduler such as ASHA compares a trial only with
                      trials of its own variant, so that one architecture never stops another's;
    phase 2, confirm: each variant's best configuration re-trained at the full epoch count with
                      seeds train.seed + 1 ... + confirm_seeds, the same seeds for every variant,
                      so that two variants compare pair by pair, seed by seed.

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
from xsweep.spec import Spec
from xsweep.spec.trial import PHASE_KEY, VARIANT_KEY, sampled_params, values_label

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
