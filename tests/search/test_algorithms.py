"""xsweep.search.algorithms: every registered search algorithm drives a real searcher over a space
of a range and a choice (real Optuna, Ray's OptunaSearch; no Ray runtime), and one that models
ranges is refused, in one line, a space of choices alone."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
from ray.tune.search import Searcher

from xsweep import compat
from xsweep.contract import TrialReport
from xsweep.errors import SpecError
from xsweep.spec import load_spec_text
from xsweep.search.algorithms import ALGORITHMS
from xsweep.search.searcher import build_searcher

SPEC = """
name: t
search:
  algorithm: {algorithm}
  num_samples: 14
  space:
    train.lr: {{loguniform: [0.001, 0.3]}}
    model.residual: {{choice: [true, false]}}
"""


@pytest.mark.parametrize("algorithm", [a.name for a in ALGORITHMS if not a.choices_only])
def test_each_algorithm_proposes_valid_configurations_and_learns_from_results(algorithm, caplog):
    spec = load_spec_text(SPEC.format(algorithm=algorithm), source="s.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)  # none in the sweep's log
        searcher = build_searcher(spec, open_run=lambda trial_id, config: f"run-{trial_id}")
    proposed = []
    for i in range(14):  # past every sampler's random start-up trials (GP's 10)
        config = searcher.suggest(f"t{i}")
        assert config not in (None, Searcher.FINISHED)
        lr, residual = config["train.lr"], config["model.residual"]
        assert 0.001 <= lr <= 0.3 and residual in (True, False)
        proposed.append((lr, residual))
        accuracy = 1.0 - abs(math.log10(lr) + 1.5) / 3 - 0.1 * (not residual)  # best near lr 0.03, residual on
        searcher.on_trial_complete(f"t{i}", result=TrialReport(epoch=2, planned_epochs=2,
                                                                 metrics={"val_accuracy": accuracy}).to_result())
    assert len(set(proposed)) == 14  # no configuration twice
    if algorithm != "nsga2":  # NSGA-II's crossover hands a parent's learning rate on as it was
        assert len({lr for lr, _ in proposed}) == 14  # a continuous range: no rate twice
    study = compat.optuna_study(searcher.inner)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 14
    # Any other study trial is a repeated draw, told failed and drawn again (searcher.py).
    assert all("duplicate_of" in t.user_attrs for t in study.trials if t not in complete)
    assert not [r for r in caplog.records if "independent" in r.getMessage()]  # no warning per trial


@pytest.mark.parametrize("algorithm", [a.name for a in ALGORITHMS if a.needs_a_range])
def test_an_algorithm_of_ranges_refuses_a_space_of_choices_alone(algorithm):
    with pytest.raises(SpecError) as refused:
        load_spec_text(f"name: t\nsearch: {{algorithm: {algorithm}, "
                       f"space: {{model.residual: {{choice: [true, false]}}}}}}", source="s.yaml")
    assert str(refused.value) == (f"s.yaml: search.algorithm: {algorithm} searches ranges, and search.space has none "
                                  "(add one, such as train.lr: {loguniform: [0.01, 0.1]}, or use optuna-tpe)")


@pytest.mark.parametrize("algorithm", [a.name for a in ALGORITHMS if a.multi_objective and not a.choices_only])
def test_each_multi_objective_algorithm_searches_two_objectives_over_repeats(algorithm):
    spec = load_spec_text(SPEC.format(algorithm=algorithm) + "  repeats: 2\n  objectives: "
                          "[{metric: val_accuracy}, {metric: params}]\n", source="s.yaml")
    searcher = build_searcher(spec, open_run=lambda trial_id, config: f"run-{trial_id}")
    for i in range(24):  # 12 configurations, each over two seeds
        config = searcher.suggest(f"t{i}")
        lr, residual = config["train.lr"], config["model.residual"]
        seed_effect = 0.01 * config["xsweep/repeat"]
        accuracy = 1.0 - abs(math.log10(lr) + 1.5) / 3 + seed_effect
        metrics = {"val_accuracy": accuracy, "params": 2e5 if residual else 1e5}
        searcher.on_trial_complete(f"t{i}", result=TrialReport(epoch=2, planned_epochs=2, metrics=metrics).to_result())
    study = compat.optuna_study(searcher.inner)
    assert len(study.directions) == 2
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 12
    for trial in complete:  # told the mean over the two seeds, of each objective
        lr = trial.params["train.lr"]
        assert trial.values[0] == pytest.approx(1.0 - abs(math.log10(lr) + 1.5) / 3 + 0.005)
        assert trial.values[1] == (2e5 if trial.params["model.residual"] else 1e5)


def test_a_trial_stopped_early_in_a_multi_objective_search_is_pruned_not_completed():
    spec = load_spec_text(SPEC.format(algorithm="nsga2") + "  objectives: [{metric: val_accuracy}, {metric: params}]\n",
                          source="s.yaml")
    searcher = build_searcher(spec, open_run=lambda trial_id, config: f"run-{trial_id}")
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", result=TrialReport(epoch=1, planned_epochs=3, metrics={
        "val_accuracy": 0.5, "params": 1e5}).to_result())
    (trial,) = compat.optuna_study(searcher.inner).trials
    assert trial.state == optuna.trial.TrialState.PRUNED


@pytest.mark.parametrize("concurrent, liar", [(1, False), (4, True)])
def test_tpe_is_multivariate_and_lies_constantly_only_when_trials_run_in_parallel(concurrent, liar):
    spec = load_spec_text(SPEC.format(algorithm="optuna-tpe") + f"  max_concurrent: {concurrent}\n", source="s.yaml")
    sampler = ALGORITHMS.get("optuna-tpe").sampler(spec)
    assert sampler._constant_liar is liar and sampler._multivariate is True


def test_the_registry_lists_the_algorithms_the_readme_names():
    assert set(ALGORITHMS.names()) >= {"optuna-tpe", "random", "grid", "optuna-gp", "optuna-cmaes", "qmc", "nsga2"}
