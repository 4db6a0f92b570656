"""xsweep.sweep.algorithms: every registered search algorithm drives a real searcher over a space
of a range and a choice (real Optuna, Ray's OptunaSearch; no Ray runtime), and one that models
ranges is refused, in one line, a space of choices alone."""

from __future__ import annotations

import math

import optuna
import pytest
from ray.tune.search import Searcher

from xsweep import compat
from xsweep.contract import TrialReport
from xsweep.errors import SpecError
from xsweep.spec import load_spec_text
from xsweep.sweep.algorithms import ALGORITHMS
from xsweep.sweep.searcher import build_searcher

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
    assert len({lr for lr, _ in proposed}) == 14  # a continuous range: no configuration twice
    study = compat.optuna_study(searcher.inner)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 14
    assert not [r for r in caplog.records if "independent" in r.getMessage()]  # no warning per trial


@pytest.mark.parametrize("algorithm", [a.name for a in ALGORITHMS if a.needs_a_range])
def test_an_algorithm_of_ranges_refuses_a_space_of_choices_alone(algorithm):
    with pytest.raises(SpecError) as refused:
        load_spec_text(f"name: t\nsearch: {{algorithm: {algorithm}, "
                       f"space: {{model.residual: {{choice: [true, false]}}}}}}", source="s.yaml")
    assert str(refused.value) == (f"s.yaml: search.algorithm: {algorithm} searches ranges, and search.space has none "
                                  "(add one, such as train.lr: {loguniform: [0.01, 0.1]}, or use optuna-tpe)")


def test_the_registry_lists_the_algorithms_the_readme_names():
    assert set(ALGORITHMS.names()) >= {"optuna-tpe", "random", "grid", "optuna-gp", "optuna-cmaes", "qmc"}
