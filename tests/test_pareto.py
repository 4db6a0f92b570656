"""xsweep.pareto: the front that the sweep's tags, pareto_front.csv, the report and --pick share,
checked against Optuna's own front of the same trials."""

from __future__ import annotations

import math
import random

import optuna
import pytest

from xsweep.pareto import dominates, pareto_front


def test_dominance_needs_as_good_everywhere_and_better_somewhere():
    modes = ["max", "min"]
    assert dominates([0.9, 100], [0.8, 100], modes=modes)
    assert not dominates([0.9, 200], [0.8, 100], modes=modes)  # a trade-off: neither dominates
    assert not dominates([0.9, 100], [0.9, 100], modes=modes)  # equals do not dominate each other


@pytest.mark.parametrize("seed", range(5))
def test_the_front_is_optunas_front_of_the_same_trials(seed):
    rng = random.Random(seed)
    points = [[round(rng.random(), 2), rng.choice([1e5, 2e5, 3e5]), rng.random()] for _ in range(40)]
    modes = ["max", "min", "min"]
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for p in points:
        study.add_trial(optuna.trial.create_trial(values=p, params={}, distributions={}))
    ours = pareto_front(range(len(points)), values=lambda i: points[i], modes=modes)
    assert sorted(ours) == sorted(t.number for t in study.best_trials)
    firsts = [points[i][0] for i in ours]
    assert firsts == sorted(firsts, reverse=True)  # best first on the first objective


def test_missing_or_non_finite_values_are_on_no_front():
    values = {"a": [0.5, 10.0], "b": None, "c": [math.nan, 1.0], "d": [0.9, math.inf]}
    assert pareto_front(list(values), values=values.get, modes=["max", "min"]) == ["a"]
