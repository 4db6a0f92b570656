"""An ablation's verdict (a sweep with `ablation:`, search/ablation.py), from its confirmation trials:

* for each factor, each level against the reference level at each variant's own tuned settings:
  the paired difference of final accuracy, pairs matched by seed and by the other factors'
  levels, with its raw 95% interval and p-value;
* these comparisons, every factor's together, as one family corrected with Holm's step-down
  method (stats.holm): each one's adjusted p-value, its interval at its Holm step's level, and a
  sentence worded by the adjusted decision (stats.family_verdict);
* the same difference within each level of the other factors (the interaction table), exploratory:
  95% per row, uncorrected (stats.verdict);
* each variant's tuned values and confirmed accuracy, so that a reader sees whether a variant lost
  by its architecture or by its learning rate;
* the paper's claims beside the verdicts: agreed, contradicted, or not decided at this budget.

Plain JSON-able dicts, accuracies as fractions, like analysis.py.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

from xsweep.metrics import ACCURACY
from xsweep.report import sequential
from xsweep.report import stats as st
from xsweep.report.data import SweepData, TrialRun
from xsweep.report.labels import level_key, level_label
from xsweep.spec.trial import format_value

# What the paper says about a level against the reference (docs/PAPER.md): (factor, level, reference)
# -> (the reference wins, the paper's words).
PAPER_CLAIMS = {
    ("model.residual", False, True): "residual connections are \"clearly essential in helping with "
                                     "convergence, both in terms of speed and final classification performance\" "
                                     "(Figure 9)",
    ("model.activation", "relu", "none"): "\"the absence of any non-linearity leads to both faster convergence "
                                          "and better final performance\" (Figure 10)",
    ("model.activation", "elu", "none"): "\"the absence of any non-linearity leads to both faster convergence "
                                         "and better final performance\" (Figure 10)",
    ("model.arch", "inception_v3", "xception"): "Xception 0.790 against Inception V3's 0.782 top-1 on ImageNet "
                                                "(Table 1), at about the same parameter count (22.9M against "
                                                "23.6M, Table 3)",
}


def ablation_verdict(data: SweepData) -> dict | None:
    """The verdict of an ablation sweep; None for any other sweep."""
    ablation = data.ablation
    if ablation is None:
        return None
    factors, reference = ablation["factors"], ablation["reference"]
    confirmed = [t for t in data.trials if t.phase == "confirm" and t.finished]
    by_variant: dict[tuple, list[TrialRun]] = defaultdict(list)
    for trial in confirmed:
        by_variant[tuple(level_key(trial.searched.get(p)) for p in factors)].append(trial)

    # Every factor's comparisons against its reference, one family: (comparison, its pairs, its raw
    # test, the factor's path).
    out_factors, family = [], []
    for index, path in enumerate(factors):
        ref = reference[path]
        others = [p for p in factors if p != path]
        comparisons = []
        for level in _levels(data, path):
            if level_key(level) == level_key(ref):
                continue
            pairs, within = [], defaultdict(list)
            for variant, trials in by_variant.items():
                if variant[index] != level_key(level):
                    continue
                partner = variant[:index] + (level_key(ref),) + variant[index + 1:]
                partners = {t.seed: t for t in by_variant.get(partner, [])}
                for trial in trials:
                    if trial.seed in partners:
                        pair = (trial.final(ACCURACY), partners[trial.seed].final(ACCURACY))
                        pairs.append(pair)
                        within[tuple(variant[:index] + variant[index + 1:])].append(pair)
            diff = st.paired_difference([a for a, _ in pairs], [b for _, b in pairs], bounds=st.DIFFERENCE_BOUNDS)
            label, ref_label = level_label(path, level), level_label(path, ref)
            rows = []
            order = [[level_key(v) for v in _levels(data, p)] for p in others]  # the spec's order of levels
            for rest, rest_pairs in sorted(within.items(), key=lambda kv: [o.index(k) for o, k in zip(order, kv[0])]):
                d = st.paired_difference([a for a, _ in rest_pairs], [b for _, b in rest_pairs],
                                         bounds=st.DIFFERENCE_BOUNDS)
                rows.append({"at": ", ".join(level_label(p, v) for p, (_, v) in zip(others, rest)) or "-",
                             "n": d.n, "difference": st.finite_or_none(d.estimate), "ci_low": st.finite_or_none(d.low), "ci_high": st.finite_or_none(d.high),
                             "verdict": st.verdict(label, ref_label, d)})
            comparisons.append({
                "level": level, "label": label, "reference": ref, "reference_label": ref_label,
                "price": _price(data, factors, path, [level, ref], pairs,
                                per_seed=math.prod(len(_levels(data, p)) for p in others)),
                "n": diff.n, "difference": st.finite_or_none(diff.estimate), "ci_low": st.finite_or_none(diff.low), "ci_high": st.finite_or_none(diff.high),
                "p_value": st.finite_or_none(diff.p_value), "within": rows,
            })
            family.append((comparisons[-1], pairs, diff, path))
        out_factors.append({"path": path, "reference": ref, "comparisons": comparisons})
    seeds = ablation["confirm_seeds"]
    if isinstance(seeds, dict):  # a sequential design
        design = sequential.Design(min_seeds=seeds["min"], max_seeds=seeds["max"])
        family_text = _judge_sequentially(data, family, by_variant, factors=factors, reference=reference,
                                          design=design)
    else:
        tested = _judge_family(family)
        for comparison, *_ in family:
            _still_needed(comparison, level=1 - (comparison["holm_confidence"] or st.CONFIDENCE), seeds_run=seeds)
        family_text = {"method": "Holm", "alpha": st.ALPHA, "size": tested, "untested": len(family) - tested,
                       "intervals": "each at its Holm step's level, 1 - alpha / (m - step + 1); after the step "
                                    "where Holm stops, that step's level"}
    return {"factors": out_factors, "variants": _variants(data, factors, ablation["tune"], by_variant),
            "family": family_text, "confirm_seeds": seeds, "split_seed": bool(ablation.get("split_seed")),
            "budget": ablation["budget"],
            "seeds": sorted({t.seed for t in confirmed if t.seed is not None})}


def _judge_family(family: list[tuple[dict, list, st.Interval, str]]) -> int:
    """Correct the comparisons for each other with Holm's method and word each by its adjusted
    decision: adds p_adjusted, significant, the interval at its Holm level (holm_*), its verdict and
    the paper's claim to each comparison. Returns the family's size (the comparisons with a test)."""
    steps = st.holm([raw.p_value for _, _, raw, _ in family])
    for (comparison, pairs, _, path), step in zip(family, steps):
        # The same paired t-test as the raw interval, at the comparison's Holm level.
        interval = st.paired_difference([a for a, _ in pairs], [b for _, b in pairs], bounds=st.DIFFERENCE_BOUNDS,
                                        confidence=step.confidence if step else st.CONFIDENCE)
        significant = step is not None and step.significant
        comparison.update({
            "p_adjusted": step.p_adjusted if step else None, "holm_step": step.step if step else None,
            "holm_confidence": step.confidence if step else None,
            "holm_ci_low": st.finite_or_none(interval.low), "holm_ci_high": st.finite_or_none(interval.high),
            "significant": significant,
            "verdict": st.family_verdict(label_a=comparison["label"], label_b=comparison["reference_label"],
                                         interval=interval, holm_step=step),
            "paper": _paper(path, comparison["level"], comparison["reference"], estimate=interval.estimate,
                            significant=significant),
        })
    return sum(step is not None for step in steps)


def _judge_sequentially(data: SweepData, family: list[tuple[dict, list, st.Interval, str]], by_variant,
                        *, factors: list[str], reference: dict, design: sequential.Design) -> dict:
    """A sequential design's decisions (report/sequential.py), replayed from the confirmation trials
    as its searcher made them round by round: adds each comparison's decision, its repeated
    interval, its verdict and the paper's claim. Returns the family's description."""
    base_seed = int(data.params.get("train.seed", 0) or 0)  # a trial's seed is base + its round's rank
    scores = {variant: {t.seed - base_seed: t.final(ACCURACY) for t in trials if t.seed is not None}
              for variant, trials in by_variant.items()}
    levels = [[level_key(v) for v in _levels(data, p)] for p in factors]
    comparisons = sequential.pair_up(scores, levels=levels, reference=[level_key(reference[p]) for p in factors])
    seeds_run = max((rank for by_seed in scores.values() for rank in by_seed), default=0)
    decisions = sequential.decide(comparisons, design, seeds_run=seeds_run)
    by_key = {(factors[c.factor], c.level): d for c, d in zip(comparisons, decisions)}
    for comparison, _, _, path in family:
        decision = by_key[(path, level_key(comparison["level"]))]
        interval = decision.interval
        if decision.decided:  # what it cost to reach: the seeds up to the look that decided it
            comparison["price"] = _price(data, factors, path, [comparison["level"], comparison["reference"]],
                                         comparison["price"]["pairs"], per_seed=comparison["price"]["per_seed"],
                                         last_seed=base_seed + decision.seeds)
        comparison.update({
            "p_adjusted": None, "decided": decision.decided, "decided_after_seeds": decision.seeds or None,
            "t": st.finite_or_none(decision.t), "boundary": st.finite_or_none(decision.boundary),
            "holm_confidence": 1 - decision.level if interval else None,
            "holm_ci_low": st.finite_or_none(interval.low) if interval else None,
            "holm_ci_high": st.finite_or_none(interval.high) if interval else None,
            "significant": decision.decided,
            "verdict": sequential.sentence(comparison["label"], comparison["reference_label"], decision, design),
            "paper": _paper(path, comparison["level"], comparison["reference"],
                            estimate=interval.estimate if interval else 0.0, significant=decision.decided),
        })
    for comparison, _, _, path in family:
        share = by_key[(path, level_key(comparison["level"]))].level  # NaN: never tested
        _still_needed(comparison, level=share if math.isfinite(share) else design.alpha, seeds_run=seeds_run)
    return {"method": "Holm, group-sequential", "alpha": design.alpha, "size": len(family), "untested": 0,
            "sequential": {"min": design.min_seeds, "max": design.max_seeds, "seeds_run": seeds_run,
                           "method": sequential.METHOD},
            "intervals": "repeated confidence intervals at each comparison's Holm share of alpha, at the look "
                         "that decided it (else its last)"}


def _price(data: SweepData, factors: list[str], path: str, levels: list[Any], pairs: list[tuple[float, float]],
           *, per_seed: int, last_seed: int | None = None) -> dict:
    """What a comparison cost: the device-hours of every trial of the variants it compares (its level
    and the reference, at every level of the other factors), phase 1 and phase 2 apart; phase 2 up
    to `last_seed` when given (a sequential verdict: the seeds run after it decided bought others)."""
    keys = {level_key(v) for v in levels}
    compared = [t for t in data.trials if level_key(t.searched.get(path)) in keys
                and all(p in t.searched for p in factors)
                and (last_seed is None or t.phase != "confirm" or (t.seed is not None and t.seed <= last_seed))]
    hours = {phase: st.sum_or_none([t.device_seconds for t in compared if t.phase == phase])
             for phase in ("tune", "confirm")}
    return {"tune_hours": hours["tune"] / 3600 if hours["tune"] is not None else None,
            "confirm_hours": hours["confirm"] / 3600 if hours["confirm"] is not None else None,
            "per_seed": per_seed, "pairs": [list(p) for p in pairs]}


def _still_needed(comparison: dict, *, level: float, seeds_run: int) -> None:
    """For an undecided comparison: about how many more seeds would decide it, were its difference
    and spread those observed (sequential.seeds_to_decide); the pairs are dropped once used."""
    price = comparison["price"]
    pairs = price.pop("pairs")
    if comparison["significant"]:
        return
    total = sequential.seeds_to_decide([a for a, _ in pairs], [b for _, b in pairs], per_seed=price["per_seed"],
                                       level=level)
    price["more_seeds"] = None if total is None else max(total - seeds_run, 1)


def _levels(data: SweepData, path: str) -> list[Any]:
    """The factor's levels as the spec lists them, then any an extension added (the parent run's
    params are the first version's): in the order the trials show them."""
    levels = list(data.space.get(path, {}).get("choice", []))
    for trial in data.trials:
        value = trial.searched.get(path)
        if path in trial.searched and level_key(value) not in {level_key(v) for v in levels}:
            levels.append(value)
    return levels


def _paper(path: str, level: Any, ref: Any, *, estimate: float, significant: bool) -> dict | None:
    """The paper's claim on level vs reference, and whether this sweep agrees with it (by the
    Holm-corrected decision)."""
    claim = PAPER_CLAIMS.get((path, level, ref))
    if claim is None:
        return None
    if not significant:
        finding = "not decided at this budget"
    else:  # every claim of the paper has the reference level winning
        finding = "agreed" if estimate < 0 else "contradicted"
    return {"claim": claim, "finding": finding}


def _variants(data: SweepData, factors: list[str], tuned: list[str], by_variant) -> list[dict]:
    """Each variant: its tuned values, phase-1 trials, and confirmed accuracy over seeds."""
    tuning, every = defaultdict(list), defaultdict(list)
    for trial in data.trials:
        variant = tuple(level_key(trial.searched.get(p)) for p in factors)
        every[variant].append(trial)
        if trial.phase == "tune":
            tuning[variant].append(trial)
    rows = []
    for combination in itertools.product(*[_levels(data, p) for p in factors]):
        variant = tuple(level_key(v) for v in combination)
        confirmed = by_variant.get(variant, [])
        ci = st.mean_ci([t.final(ACCURACY) for t in confirmed], bounds=st.ACCURACY_BOUNDS)
        values = confirmed[0].searched if confirmed else {}
        tried = tuning.get(variant, [])
        rows.append({
            "label": ", ".join(level_label(p, v) for p, v in zip(factors, combination)),
            "tuned": {p: values.get(p) for p in tuned},
            "tuned_text": ", ".join(f"{p.split('.')[-1]} = {format_value(values[p])}" for p in tuned if p in values)
            or "not confirmed",
            "tune_trials": len(tried), "tune_completed": sum(t.finished for t in tried),
            # What the variant cost in both phases: every trial of it, whatever its status.
            "device_seconds": st.sum_or_none([t.device_seconds for t in every.get(variant, [])]),
            "n": ci.n, "mean": st.finite_or_none(ci.estimate), "ci_low": st.finite_or_none(ci.low), "ci_high": st.finite_or_none(ci.high),
            "run_ids": [t.run_id for t in confirmed],
        })
    return rows
