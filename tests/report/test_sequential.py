"""The sequential confirmation's statistics (report/sequential.py) and its searcher's rounds
(search/ablation.py), driven by hand as Tune drives them: boundaries against the plain t-test, the
family's error rate under optional stopping, Holm's re-testing at a look, and which variants get
the next seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray.tune.search import Searcher
from scipy import stats

from xsweep.contract import TrialReport
from xsweep.report import sequential as sq
from xsweep.search.ablation import SequentialConfirmSearcher, next_round, variant_key
from xsweep.spec import load_spec_text
from xsweep.spec.trial import REPEAT_KEY, VARIANT_KEY

from conftest import SPECS


def test_one_look_at_max_is_the_plain_t_tests_boundary():
    for n in (3, 6, 12):
        (bound,) = sq.boundaries([n], max_pairs=n, alpha=0.05)
        assert bound == pytest.approx(stats.t.ppf(0.975, n - 1), rel=0.02)


def test_the_boundaries_spend_early_and_end_near_the_fixed_tests():
    bounds = sq.boundaries(range(3, 11), max_pairs=10, alpha=0.05)
    assert all(a > b for a, b in zip(bounds, bounds[1:]))  # each look asks less than the one before
    assert bounds[0] < 2 * stats.t.ppf(1 - sq.spent(0.3, 0.05) / 2, 2)  # the first look can decide
    assert bounds[-1] > stats.t.ppf(0.975, 9)  # the price of looking eight times: above the fixed test


def _study(rng, effects, *, per_seed=1, max_seeds=10):
    return [sq.LevelComparison(factor=0, level=("int", i), reference=("int", 0), per_seed=per_seed,
                               pairs=[sq.Pair(seed, 0.8 + effect + rng.normal(0, 0.02), 0.8 + rng.normal(0, 0.02), ())
                                      for seed in range(1, max_seeds + 1)])
            for i, effect in enumerate(effects, start=1)]


def test_any_false_beats_in_a_family_stays_near_alpha_however_early_each_stops():
    rng, design, studies = np.random.default_rng(7), sq.Design(min_seeds=3, max_seeds=10), 1500
    wrong = sum(any(d.decided for d in sq.decide(_study(rng, [0, 0, 0]), design, seeds_run=10))
                for _ in range(studies))
    # Each of the three comparisons is looked at 8 times: uncorrected 95% tests would be wrong in
    # about a third of the studies.
    assert wrong / studies <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / studies)


def test_a_large_effect_is_decided_at_the_first_look_and_a_null_one_runs_to_max():
    rng = np.random.default_rng(1)
    decided, null = sq.decide(_study(rng, [0.2, 0.0]), sq.Design(min_seeds=3, max_seeds=6), seeds_run=6)
    assert (decided.decided, decided.seeds, decided.n) == (True, 3, 3)
    assert decided.interval.low > 0 and decided.interval.confidence == pytest.approx(1 - 0.05 / 2)
    assert not null.decided and null.seeds == 6 and null.interval.low < 0 < null.interval.high
    assert null.level == pytest.approx(0.05)  # tested at the whole alpha once the other was decided


def test_holm_tests_the_rest_again_at_the_look_that_decided_one():
    # One look (min = max = 5 seeds): b's |t| = 3.0 lies between the two-sided 2.5% boundary
    # (3.50 at 4 df) and the 5% one (2.78), so b is decided only once a, decided first, leaves it
    # the whole alpha.
    z = np.array([-2, -1, 0, 1, 2]) / np.std([-2, -1, 0, 1, 2], ddof=1)
    b_diff = 3.0 * 0.01 / math.sqrt(5) + 0.01 * z
    a = sq.LevelComparison(factor=0, level="a", reference="r", per_seed=1,
                           pairs=[sq.Pair(s, 0.9 + 0.001 * s, 0.5, ()) for s in range(1, 6)])
    b = sq.LevelComparison(factor=0, level="b", reference="r", per_seed=1,
                           pairs=[sq.Pair(s, 0.5 + d, 0.5, ()) for s, d in enumerate(b_diff, start=1)])
    design = sq.Design(min_seeds=5, max_seeds=5)
    first, second = sq.decide([a, b], design, seeds_run=5)
    assert first.decided and second.decided and second.level == pytest.approx(0.05)
    assert second.t == pytest.approx(3.0)
    (alone,) = sq.decide([b], design, seeds_run=5)  # the same data as a family of one
    (with_null,) = sq.decide([b, sq.LevelComparison(factor=0, level="c", reference="r", per_seed=1, pairs=[
        sq.Pair(s, 0.5, 0.5 + 0.01 * z[s - 1], ()) for s in range(1, 6)])], design, seeds_run=5)[:1]
    assert alone.decided and not with_null.decided


def test_pairs_match_seed_and_the_other_factors_levels():
    scores = {("on", "none"): {1: 0.9, 2: 0.8}, ("off", "none"): {1: 0.7, 2: 0.6},
              ("on", "relu"): {1: 0.85}, ("off", "relu"): {1: 0.5, 2: 0.4}}
    residual, activation = sq.pair_up(scores, levels=[["on", "off"], ["none", "relu"]], reference=["on", "none"])
    assert (residual.per_seed, activation.per_seed) == (2, 2)
    assert sorted((p.seed, p.a, p.b, p.at) for p in residual.pairs) == [
        (1, 0.5, 0.85, ("relu",)), (1, 0.7, 0.9, ("none",)), (2, 0.6, 0.8, ("none",))]  # off relu s2 has no partner
    assert sorted((p.seed, p.a, p.b) for p in activation.pairs) == [(1, 0.5, 0.7), (1, 0.85, 0.9), (2, 0.4, 0.6)]
    assert activation.involves(("off", "none")) and activation.involves(("on", "relu"))


@pytest.fixture(scope="module")
def spec():
    return load_spec_text((SPECS / "xception_ablation.yaml").read_text(), source="xception_ablation.yaml",
                          overrides=["ablation.confirm_seeds={min: 3, max: 5}"])


def _picked(spec):
    return [{"model.residual": r, "model.activation": a, "train.lr": 0.05, VARIANT_KEY: f"{r} {a}"}
            for r in (True, False) for a in ("none", "relu", "elu")]


def _accuracy(config) -> float:
    """Residual off and ELU each lose 30 pp at every seed (decided at once); ReLU ties with no
    activation up to noise (open)."""
    seed, activation = config[REPEAT_KEY], config["model.activation"]
    return (0.9 - 0.3 * (not config["model.residual"]) - 0.3 * (activation == "elu")
            + 0.004 * math.sin(7 * seed + len(activation)))


def _scores(spec, picked, seeds):
    return {variant_key(spec, c): {s: _accuracy({**c, REPEAT_KEY: s}) for s in seeds} for c in picked}


def test_next_round_gives_a_seed_only_to_the_variants_of_open_comparisons(spec):
    picked = _picked(spec)
    more = next_round(spec, picked, _scores(spec, picked, (1, 2, 3)), seeds_run=3)
    # Residual and ELU are decided; ReLU against no activation is open, over both residual levels.
    assert sorted((c["model.residual"], c["model.activation"]) for c in more) == [
        (False, "none"), (False, "relu"), (True, "none"), (True, "relu")]
    assert next_round(spec, picked, _scores(spec, picked, (1, 2, 3, 4, 5)), seeds_run=5) == []  # max seeds


def test_the_searcher_waits_for_each_round_and_finishes_at_max(spec):
    picked = _picked(spec)
    searcher = SequentialConfirmSearcher(spec, picked, metric="val_accuracy", mode="max")
    suggested, round_sizes = 0, []
    while True:
        batch = []
        while (config := searcher.suggest(f"t{suggested}")) not in (None, Searcher.FINISHED):
            batch.append((f"t{suggested}", config))
            suggested += 1
        if config == Searcher.FINISHED:
            break
        assert batch, "the searcher waits with no round running"
        round_sizes.append(len(batch))
        for trial_id, config in batch:
            report = TrialReport(epoch=6, planned_epochs=6, metrics={"val_accuracy": _accuracy(config)})
            searcher.on_trial_complete(trial_id, result=report.to_result())
    assert round_sizes == [18, 4, 4]  # every variant over seeds 1 ... min, then ReLU's and its reference's
