"""An ablation's verdict from its confirmation trials: paired by seed and by the other factor's
level, checked against scipy's paired t-test, with the paper's claims judged from the interval."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from xsweep.report import stats as st
from xsweep.report.data import SweepData, TrialRun
from xsweep.report.render import to_markdown
from xsweep.report.sections import blocks, summarize
from xsweep.report.verdict import ablation_verdict
from xsweep.tracking.tags import TAG_ABLATION, TAG_BEST_RUN_ID

# Final accuracy of each variant (residual, activation) and what each seed adds: residual off is
# clearly worse (the paper agrees), ReLU clearly better than none (the paper is contradicted).
BASE = {(True, "none"): 0.90, (True, "relu"): 0.93, (False, "none"): 0.80, (False, "relu"): 0.84}
SEED_EFFECT = {1: 0.0, 2: 0.01, 3: -0.012}
JITTER = {(True, "none", 2): 0.004, (False, "relu", 3): -0.003, (False, "none", 1): 0.002}


def trial(residual: bool, activation: str, seed: int, *, phase: str = "confirm", status: str = "completed",
          lr: float = 0.05, device_seconds: float = 10.0) -> TrialRun:
    acc = BASE[(residual, activation)] + SEED_EFFECT.get(seed, 0.0) + JITTER.get((residual, activation, seed), 0.0)
    return TrialRun(run_id=f"{residual}-{activation}-{seed}-{phase}", name="t", status=status,
                    searched={"model.residual": residual, "model.activation": activation, "train.lr": lr},
                    config={"train": {"seed": seed}}, seed=seed, history={"val_accuracy": [(1, 0.1), (2, acc)]},
                    phase=phase, latest={"device_seconds": device_seconds})


def sweep(trials: list[TrialRun]) -> SweepData:
    ablation = {"factors": ["model.residual", "model.activation"], "tune": ["train.lr"], "budget": 2,
                "confirm_seeds": 3, "reference": {"model.residual": True, "model.activation": "none"}}
    params = {"search.space.model.residual": json.dumps({"choice": [True, False]}),
              "search.space.model.activation": json.dumps({"choice": ["none", "relu"]}),
              "search.space.train.lr": json.dumps({"loguniform": [0.01, 0.2]})}
    return SweepData(uri="sqlite://", experiment="e", experiment_id="1", run_id="p", run_name="p", status="finished",
                     params=params, tags={TAG_ABLATION: json.dumps(ablation)}, trials=trials)


def confirmed(**overrides) -> list[TrialRun]:
    return [trial(r, a, s, **overrides) for (r, a) in BASE for s in SEED_EFFECT]


def comparison(verdict: dict, path: str) -> dict:
    (factor,) = [f for f in verdict["factors"] if f["path"] == path]
    (one,) = factor["comparisons"]
    return one


def test_each_factor_is_judged_by_pairs_of_seed_and_other_level_as_scipys_paired_t_test():
    verdict = ablation_verdict(sweep(confirmed() + [trial(False, "none", 0, phase="tune", lr=0.3)]))
    residual = comparison(verdict, "model.residual")
    off = [trial(False, a, s).final("val_accuracy") for a in ("none", "relu") for s in SEED_EFFECT]
    on = [trial(True, a, s).final("val_accuracy") for a in ("none", "relu") for s in SEED_EFFECT]
    expected = stats.ttest_rel(off, on)
    low, high = expected.confidence_interval(0.95)
    assert residual["n"] == 6
    assert residual["difference"] == pytest.approx(sum(off) / 6 - sum(on) / 6)
    assert (residual["ci_low"], residual["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert residual["verdict"].startswith("residual on beats residual off by ")
    assert residual["paper"]["finding"] == "agreed"
    # Within each activation: the residual effect over the 3 seeds alone.
    assert [(row["at"], row["n"]) for row in residual["within"]] == [("no activation", 3), ("ReLU", 3)]

    relu = comparison(verdict, "model.activation")
    assert relu["label"] == "ReLU" and relu["reference_label"] == "no activation"
    assert relu["verdict"].startswith("ReLU beats no activation by ")
    assert relu["paper"]["finding"] == "contradicted"


def test_a_failed_confirmation_trial_drops_its_pair_and_tuning_trials_never_count():
    trials = [t for t in confirmed() if t.run_id != "False-relu-3-confirm"]
    trials += [trial(False, "relu", 3, status="failed"), trial(True, "none", 1, phase="tune", lr=0.9)]
    residual = comparison(ablation_verdict(sweep(trials)), "model.residual")
    assert residual["n"] == 5  # (off, relu, seed 3) has no partner left
    rows = {v["label"]: v for v in ablation_verdict(sweep(trials))["variants"]}
    assert rows["residual off, ReLU"]["n"] == 2
    assert rows["residual on, no activation"]["tune_trials"] == 1
    assert rows["residual on, no activation"]["tuned_text"] == "lr = 0.05"  # the confirmed value, not the tuning trial's
    # A variant's cost is every trial of it, in both phases, the failed one included.
    assert rows["residual on, no activation"]["device_seconds"] == 4 * 10.0
    assert rows["residual off, ReLU"]["device_seconds"] == 3 * 10.0


def test_one_seed_per_variant_leaves_every_verdict_undecided():
    verdict = ablation_verdict(sweep([trial(r, a, 1) for (r, a) in BASE]))
    residual = comparison(verdict, "model.residual")
    assert residual["n"] == 2
    # Two pairs give no interval: at n = 2 a t-interval spans 12.7 standard errors.
    assert residual["verdict"] == "too few runs to tell at n = 2 (an interval needs 3)"
    single = ablation_verdict(sweep([trial(True, "none", 1), trial(False, "none", 1)]))
    assert comparison(single, "model.residual")["verdict"] == "too few runs to tell at n = 1 (an interval needs 3)"
    assert comparison(single, "model.residual")["paper"]["finding"] == "not decided at this budget"


def test_a_sweep_without_ablation_has_no_verdict():
    data = sweep(confirmed())
    data.tags = {}
    assert ablation_verdict(data) is None


def test_intervals_stay_within_what_accuracy_can_be():
    spread = [0.99, 0.40, 0.98]
    plain, bounded = st.mean_ci(spread), st.mean_ci(spread, bounds=st.ACCURACY_BOUNDS)
    assert plain.low < 0 and plain.high > 1  # the t-interval alone: past 0 % and 100 %
    assert (bounded.low, bounded.high) == (0.0, 1.0) and bounded.estimate == plain.estimate
    swings = st.paired_difference([0.99, 0.02, 0.98], [0.01, 0.97, 0.02], bounds=st.DIFFERENCE_BOUNDS)
    assert -1.0 <= swings.low and swings.high <= 1.0
    two = st.paired_difference([0.9, 0.1], [0.1, 0.9], bounds=st.DIFFERENCE_BOUNDS)
    assert math.isnan(two.low) and st.verdict("a", "b", two).startswith("too few runs to tell at n = 2")


def test_an_ablations_report_compares_as_its_verdict_does_and_says_which_way_a_difference_runs(tmp_path):
    # Phase 1's trials ran each variant at other learning rates; they must not enter a comparison.
    tuning = [trial(r, a, 7, phase="tune", lr=lr) for (r, a) in BASE for lr in (0.01, 0.3)]
    data = sweep(confirmed() + tuning)
    data.tags[TAG_BEST_RUN_ID] = "True-relu-2-confirm"  # the best mean variant's best seed (finish.py)
    summary = summarize(data, workdir=str(tmp_path))

    verdict = comparison(summary["ablation"], "model.residual")
    (table,) = [f for f in summary["factors"] if f["path"] == "model.residual"]
    assert [level["n"] for level in table["levels"]] == [6, 6]  # phase 2's trials only
    (pooled,) = table["comparisons"]  # residual on - residual off, paired like the verdict
    assert pooled["test"] == "paired" and pooled["n"] == verdict["n"]
    assert pooled["difference"] == pytest.approx(-verdict["difference"])
    assert pooled["significant"] and verdict["verdict"].startswith("residual on beats")

    (panel,) = summary["curves"]["model.residual"]  # one panel comparing both levels, not lr bins
    assert {line["label"] for line in panel["lines"]} == {"residual on", "residual off"}
    for line in panel["lines"]:
        curve = line["metrics"]["val_accuracy"]
        assert all(0.0 <= low <= high <= 1.0 for low, high in zip(curve["low"], curve["high"]) if low is not None)

    document = blocks(summary, {})
    headers = [block[1] for block in document if block[0] == "table"]
    assert ["within", "pairs", "residual off - residual on (pp)", "95% CI (pp)", "verdict"] in headers
    text = to_markdown(document)
    assert "clipped to what accuracy can be" in text
    assert "residual on, ReLU (92.93% over 3 seeds)" in summary["best"]["source"]
