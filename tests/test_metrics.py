"""xsweep.metrics: the best of a history and of a set of trials, in either direction, NaN never best."""

from __future__ import annotations

import math

from xsweep.metrics import METRICS, best_scored, best_value, better, with_derived


def test_best_value_of_a_history_skips_what_is_not_a_number():
    assert best_value([0.2, math.nan, 0.5, 0.4], mode="max") == 0.5
    assert best_value([2.0, math.inf, 1.5], mode="min") == 1.5
    assert best_value([math.nan, None], mode="max") is None


def test_better_never_prefers_nothing():
    assert better(0.5, None, mode="max") and not better(None, 0.5, mode="max")
    assert better(1.0, 2.0, mode="min") and not better(1.0, 1.0, mode="min")


def test_best_scored_keeps_the_first_of_equals_and_ignores_the_unscored():
    trials = [("a", 0.7), ("b", None), ("c", 0.9), ("d", 0.9)]
    assert best_scored(trials, score=lambda t: t[1], mode="max") == (("c", 0.9), 0.9)
    assert best_scored(trials, score=lambda t: t[1], mode="min") == (("a", 0.7), 0.7)
    assert best_scored([("b", None)], score=lambda t: t[1], mode="max") == (None, None)


def test_derived_metrics_are_added_and_measured_ones_kept():
    measured = {name: 0.25 for name in METRICS.names()}
    assert with_derived(measured) == measured  # the built-in table derives nothing
