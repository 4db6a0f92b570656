"""An ablation's verdict from its confirmation trials: paired by seed and by the other factor's
level, checked against scipy's paired t-test, corrected for its family of comparisons with Holm's
method, with the paper's claims judged from the corrected decision."""

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
    assert verdict["family"]["size"] == 0 and verdict["family"]["untested"] == 2
    text = to_markdown(blocks(summarize(sweep([trial(r, a, 1) for (r, a) in BASE]), workdir="/nowhere"), {}))
    assert "No comparison has the 3 pairs a test needs: there is no family to correct." in text
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
    assert ["within", "pairs", "residual off - residual on (pp)", "95% CI (pp)",
            "exploratory verdict (uncorrected)"] in headers
    text = to_markdown(document)
    assert "clipped to what accuracy can be" in text
    assert "residual on, ReLU (92.93% over 3 seeds)" in summary["best"]["source"]


# One factor of three levels, over seeds 1-3: each level's paired differences from no activation are
# significant on their own (p 0.035 and 0.044) but not as a family of 2 (Holm: 0.070 both).
NONE_BY_SEED = {1: 0.80, 2: 0.82, 3: 0.79}
AGAINST_NONE = {"none": [0.0, 0.0, 0.0], "relu": [0.010, 0.020, 0.015], "elu": [-0.010, -0.022, -0.016]}


def one_factor_sweep() -> SweepData:
    trials = [TrialRun(run_id=f"{act}-{seed}", name="t", status="completed",
                       searched={"model.activation": act, "train.lr": 0.05}, config={"train": {"seed": seed}},
                       seed=seed, history={"val_accuracy": [(1, 0.1), (2, NONE_BY_SEED[seed] + diffs[seed - 1])]},
                       phase="confirm")
              for act, diffs in AGAINST_NONE.items() for seed in NONE_BY_SEED]
    ablation = {"factors": ["model.activation"], "tune": ["train.lr"], "budget": 2, "confirm_seeds": 3,
                "reference": {"model.activation": "none"}}
    params = {"search.space.model.activation": json.dumps({"choice": ["none", "relu", "elu"]}),
              "search.space.train.lr": json.dumps({"loguniform": [0.01, 0.2]})}
    return SweepData(uri="sqlite://", experiment="e", experiment_id="1", run_id="p", run_name="p", status="finished",
                     params=params, tags={TAG_ABLATION: json.dumps(ablation)}, trials=trials)


def test_a_comparison_significant_alone_but_not_in_its_family_reads_no_significant_difference():
    verdict = ablation_verdict(one_factor_sweep())
    (factor,) = verdict["factors"]
    relu, elu = factor["comparisons"]
    raw = {c["label"]: stats.ttest_1samp(AGAINST_NONE[c["level"]], 0.0).pvalue for c in (relu, elu)}
    assert raw == {"ReLU": pytest.approx(0.0351, abs=1e-4), "ELU": pytest.approx(0.0438, abs=1e-4)}
    assert verdict["family"] | {"intervals": None} == {"method": "Holm", "alpha": 0.05, "size": 2, "untested": 0,
                                                       "intervals": None}
    for c in (relu, elu):
        assert c["p_value"] == pytest.approx(raw[c["label"]], rel=1e-9)
        assert c["ci_low"] > 0 or c["ci_high"] < 0  # the raw 95% interval alone would say "beats"
        # Holm: the smaller p times 2 is 0.070; the larger is never adjusted below it.
        assert c["p_adjusted"] == pytest.approx(2 * raw["ReLU"], rel=1e-9)
        assert not c["significant"] and c["holm_confidence"] == pytest.approx(0.975)
        assert c["holm_ci_low"] < 0 < c["holm_ci_high"]  # consistent with the adjusted p
        assert c["verdict"].startswith(f"no significant difference at n = 3 after Holm's correction ({c['label']} "
                                       "- no activation = ")
        assert "97.5% CI [" in c["verdict"]
        assert f"p = {raw[c['label']]:.2g}, Holm-adjusted p = 0.07 over 2 comparisons" in c["verdict"]
    # The paper's claim (no activation beats ELU) is judged by the corrected decision.
    assert elu["paper"]["finding"] == "not decided at this budget"
    # The rows within other levels are exploratory: a single factor has none but the whole.
    assert [row["at"] for row in relu["within"]] == ["-"]


def test_the_report_states_the_family_and_shows_both_p_values():
    summary = summarize(one_factor_sweep(), workdir="/nowhere")
    text = to_markdown(blocks(summary, {}))
    section = text.split("## 1. Ablation verdict")[1].split("\n## ")[0]
    assert "The verdicts are one family: 2 comparisons, Holm, every non-reference level" in section
    assert "(from 97.5% for the smallest p to 95% for the largest; after a step where Holm stops" in section
    assert "The tables within each level of the other factors are exploratory" in section
    for c in summary["ablation"]["factors"][0]["comparisons"]:
        assert f"Verdict: {c['verdict']}." in section
        assert "Holm-adjusted p = 0.07" in c["verdict"]
    assert "not corrected for multiplicity. The ablation verdict is the one corrected" in text


def test_a_family_counts_only_the_comparisons_with_a_test_and_wording_follows_holm():
    # Residual: 5 pairs far apart; activation: 2 pairs only, too few to test, not one of the family.
    trials = confirmed() + [trial(True, "none", 4), trial(False, "none", 4)]
    trials = [t for t in trials if not (t.searched["model.activation"] == "relu" and t.seed in (2, 3))]
    verdict = ablation_verdict(sweep(trials))
    assert verdict["family"]["size"] == 1 and verdict["family"]["untested"] == 1
    residual, relu = comparison(verdict, "model.residual"), comparison(verdict, "model.activation")
    assert relu["p_adjusted"] is None and relu["verdict"].startswith("too few runs to tell at n = 2")
    # A family of one is the plain test: nothing to adjust, the 95% interval.
    assert residual["p_adjusted"] == pytest.approx(residual["p_value"])
    assert (residual["holm_ci_low"], residual["holm_ci_high"]) == (residual["ci_low"], residual["ci_high"])
    assert residual["verdict"].startswith("residual on beats residual off by ")
    assert residual["verdict"].endswith("over 1 comparison")
    text = to_markdown(blocks(summarize(sweep(trials), workdir="/nowhere"), {}))
    assert "one family: 1 comparison, Holm (not counted: 1 more with too few pairs to test)" in text
    assert "(95%: a family of one is the plain test)" in text


def test_each_verdict_says_what_it_cost_by_phase_and_an_undecided_one_what_would_decide_it():
    tuning = [trial(r, a, 0, phase="tune", device_seconds=100.0) for (r, a) in BASE]
    noisy = {(True, "relu", 1): -0.07, (True, "relu", 2): 0.05}  # ReLU's lead, made uncertain
    trials = [trial(r, a, s, device_seconds=36.0) for (r, a) in BASE for s in SEED_EFFECT] + tuning
    for t in trials:
        shift = noisy.get((t.searched["model.residual"], t.searched["model.activation"], t.seed), 0.0)
        t.history["val_accuracy"][-1] = (2, t.final("val_accuracy") + shift)
    verdict = ablation_verdict(sweep(trials))
    residual, relu = comparison(verdict, "model.residual"), comparison(verdict, "model.activation")
    # Residual's verdict compares all four variants; each had one tuning trial and three seeds.
    assert residual["price"]["tune_hours"] == pytest.approx(4 * 100 / 3600)
    assert residual["price"]["confirm_hours"] == pytest.approx(12 * 36 / 3600)
    assert residual["significant"] and "more_seeds" not in residual["price"]
    assert not relu["significant"]
    diffs = [trial(r, "relu", s).final("val_accuracy") + noisy.get((r, "relu", s), 0.0)
             - trial(r, "none", s).final("val_accuracy") for r in (True, False) for s in SEED_EFFECT]
    effect = abs(sum(diffs) / 6) / stats.tstd(diffs)
    more = relu["price"]["more_seeds"]
    # The estimate: the seeds (2 pairs each) at which the paired t-test at ReLU's Holm level has 80% power.
    n = 2 * (3 + more)
    level = 1 - relu["holm_confidence"]

    def power(pairs: int) -> float:
        return stats.nct.sf(stats.t.ppf(1 - level / 2, pairs - 1), pairs - 1, effect * math.sqrt(pairs))

    assert power(n) >= 0.8 > power(n - 2)
    text = to_markdown(blocks(summarize(sweep(trials), workdir="."), {}))
    assert f"about {more} more seeds per variant would decide it with 80% power" in text
