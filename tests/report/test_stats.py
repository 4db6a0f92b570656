"""The report's statistics beyond one interval: Holm's correction of a family of comparisons, checked
by hand and against its own intervals, and which importance evaluator the report names."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sweeps_by_hand import grid, sweep

from xsweep.report import stats as st
from xsweep.report.analysis import importance
from xsweep.report.render import importance_blocks, to_markdown


def test_holm_adjusts_three_p_values_as_by_hand():
    # Smallest first: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, never below 0.06 before it.
    steps = st.holm([0.01, 0.04, 0.03])
    assert [s.p_adjusted for s in steps] == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06)]
    assert [s.step for s in steps] == [1, 3, 2] and {s.family_size for s in steps} == {3}
    assert [s.significant for s in steps] == [True, False, False]
    # Levels: 1 - 0.05/3 at step 1; Holm stops at step 2 (0.06), so steps 2 and 3 both get 1 - 0.05/2.
    assert [s.confidence for s in steps] == [pytest.approx(1 - 0.05 / 3), pytest.approx(0.975), pytest.approx(0.975)]


def test_holm_caps_at_one_and_leaves_untested_comparisons_out_of_the_family():
    steps = st.holm([0.6, math.nan, 0.2])
    assert steps[1] is None
    assert [steps[0].p_adjusted, steps[2].p_adjusted] == [pytest.approx(0.6), pytest.approx(0.4)]
    assert steps[0].family_size == 2
    assert st.holm([0.9, 0.8, 0.7])[0].p_adjusted == 1.0


def test_an_interval_at_its_holm_level_excludes_zero_exactly_when_the_adjusted_p_is_below_005():
    rng = np.random.default_rng(3)
    disagreements, decided, past_the_stop = [], 0, 0
    for _ in range(1000):
        m = int(rng.integers(2, 7))
        families = [rng.normal(rng.uniform(0, 0.012), 0.01, size=int(rng.integers(4, 10))) for _ in range(m)]
        raw = [st.mean_ci(d) for d in families]
        for diffs, interval, step in zip(families, raw, st.holm([r.p_value for r in raw])):
            at_level = st.mean_ci(diffs, confidence=step.confidence)
            assert at_level.p_value == interval.p_value  # the raw p, whatever the level
            decided += step.significant
            if at_level.excludes_zero != step.significant:
                disagreements.append((interval.p_value, step))
            # Its own step's level, had Holm not stopped before it, would contradict its adjusted p.
            own_step = st.mean_ci(diffs, confidence=1 - st.ALPHA / (m - step.step + 1))
            past_the_stop += own_step.excludes_zero != step.significant
    assert disagreements == []
    assert decided > 100 and past_the_stop > 0  # both outcomes, and the case after the stop, are exercised


def test_a_level_reads_as_short_as_it_is_exact():
    assert [st.level_text(c) for c in (0.95, 0.975, 1 - 0.05 / 6, 1 - 0.05 / 3)] == ["95", "97.5", "99.17", "98.33"]
    assert [st.p_text(p) for p in (0.0004, 0.0351, 0.07, 1.0)] == ["p < 0.001", "p = 0.035", "p = 0.07", "p = 1"]


def test_the_report_names_ped_anova_by_default_and_fanova_when_asked():
    data = sweep(grid())
    finished = [t for t in data.trials if t.finished]
    default = importance(data, finished)
    assert default["error"] is None and sum(default["values"].values()) == pytest.approx(1.0)
    text = to_markdown(importance_blocks({"importance": default}, {}))
    assert text.startswith("PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, Optuna's default)")
    assert "fewer than the 5 Optuna advises" in text  # 16 trials: a top 10% of 2
    fanova = importance(data, finished, evaluator="fanova")
    assert fanova["error"] is None and fanova["name"] == "fANOVA"
    assert to_markdown(importance_blocks({"importance": fanova}, {})).startswith(
        "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0) over the 16 completed trials")
    # fANOVA finds what the grid was built with: residual first (20 points), then activation (5).
    assert list(fanova["values"])[:2] == ["model.residual", "model.activation"]


def test_importance_is_not_computed_when_every_trial_scored_the_same():
    same = [t for t in grid()]
    for t in same:
        t.history["val_accuracy"][-1] = (2, 0.5)
    result = importance(sweep(same), same)
    assert result["values"] == {} and result["error"] == "not computed: every completed trial scored the same"
