"""Measured error rates of the ablation verdicts: thousands of simulated ablation studies, each judged
by the product's own verdict code, for the fixed and the sequential confirmation designs.

What it measures (issue item "Verdicts with measured error rates"):

1. the family-wise rate of a wrong "beats" when no variant differs from another in expected
   accuracy (every true effect 0): the chance that a study's verdict declares any winner at all
   [target <= 5 %];
2. the power to detect a true difference of 1, 2 and 5 percentage points in one comparison (the
   others 0): the chance that it is decided in the right direction, and the chance that it is
   decided in the wrong one;
3. the confirmation trials (seeds x variants) the sequential design spends on average, against the
   fixed design of equal (or the nearest) power.

The study simulated is search_spaces/xception_ablation.yaml: 6 variants (model.residual [true,
false] x model.activation [none, relu, elu]), reference residual on and no activation, so three
comparisons in one family: residual off vs on (3 pairs a seed), ReLU vs none and ELU vs none (2
pairs a seed each). Designs: fixed, confirm_seeds = 3 ... 10, and sequential, confirm_seeds =
{min: 3, max: 10}.

The verdict code is the product's:

* sequential: the rounds are decided by xsweep.search.ablation.next_round, the very function the
  phase-2 searcher calls (with the spec loaded by xsweep.spec.load_spec_text and the --set override
  ablation.confirm_seeds={min: 3, max: 10}); a study's verdict is sequential.pair_up +
  sequential.decide over the trials that ran, as report/verdict.py's _judge_sequentially replays it;
* fixed: report/stats.paired_difference per comparison and report/stats.holm across the family, as
  report/verdict.py's _judge_family does.

Both fast paths are checked, on a few hundred of the same studies, against report/verdict.py's
ablation_verdict itself (the function the report calls) fed a hand-made SweepData of the study's
confirmation trials; the results file says how many studies agreed.

The noise: each simulated trial's accuracy is the reference variant's mean, less the true effect of
its levels, plus a seed's residual, all from real digits confirmation runs
(benchmarks/results/digits_confirmation_seeds.json, written by benchmarks/digits_seed_spread.py). A
simulated seed draws its residuals for all 6 variants together, so that the part of a seed's luck
that the variants share (one seed drives data order, augmentation and initialisation in each)
stays shared, and a pair's difference is as spread as real pairs' are. Three models: "measured",
the headline (multivariate normal with the 6 x 6 sample covariance of the real seeds' residuals:
every simulated seed a new one, as in a real study); "exchangeable", a control (a seed effect
shared by all variants plus independent noise of one spread: the case the paired t-test over
pairs is exact for); "bootstrap" (whole real seeds' residual vectors drawn with replacement:
the real shape, but a study must reuse its few seeds), the last two for the null only.

Besides the single-comparison power scenarios, "all three" gives every comparison the same true
difference: the sequential design saves seeds only where every comparison can be decided early.

    .venv/bin/python benchmarks/verdict_calibration.py [--quick] [--out PATH] [--workers 2]

Full run: about 6 minutes on 2 CPU cores; --quick: about 1,000 studies, about 20 seconds.
Writes benchmarks/results/verdict_calibration.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from host import commit_text, machine  # noqa: E402

from xsweep.report import sequential  # noqa: E402
from xsweep.report import stats as st  # noqa: E402
from xsweep.report.data import SweepData, TrialRun  # noqa: E402
from xsweep.report.labels import level_key  # noqa: E402
from xsweep.report.verdict import ablation_verdict  # noqa: E402
from xsweep.search.ablation import all_variants, next_round, variant_key, variant_label  # noqa: E402
from xsweep.spec import load_spec_text  # noqa: E402
from xsweep.spec.trial import VARIANT_KEY  # noqa: E402
from xsweep.tracking.tags import TAG_ABLATION  # noqa: E402
from xsweep.tracking.writes import flatten  # noqa: E402

SPEC = ROOT / "search_spaces" / "xception_ablation.yaml"
SEEDS_JSON = ROOT / "benchmarks" / "results" / "digits_confirmation_seeds.json"
RESULTS = ROOT / "benchmarks" / "results" / "verdict_calibration.md"
RNG_SEED = 20_240_611
SEQUENTIAL = {"min": 3, "max": 10}
FIXED = list(range(3, 11))  # the fixed designs' confirm_seeds
HEADLINE_FIXED = (3, 5, 10)
EFFECTS_PP = (1, 2, 5)
TARGET_FWER = 0.05
TUNED_LR = 0.05  # every variant's tuned learning rate (the verdict only groups by the factors)
FACTORS = ("model.residual", "model.activation")
# The comparisons a power scenario gives a true difference: (name, factor, level). The level loses
# to the reference by the effect, as the paper claims (residual connections and no activation win).
TARGETS = (("ReLU vs no activation", "model.activation", "relu"),
           ("residual off vs on", "model.residual", False))
MODELS = ("measured", "exchangeable", "bootstrap")  # the noise models (Noise.draw)
SIZES = {  # studies per scenario: the null under each noise model, each power scenario; and how many
    # of every scenario's first studies are also judged by ablation_verdict itself
    "full": dict(null=10000, null_exchangeable=4000, null_bootstrap=2000, power=2000, check=25),
    "quick": dict(null=300, null_exchangeable=100, null_bootstrap=100, power=40, check=2),
}


# ---- the study: its spec, its variants, its trials ------------------------------------------------
def load_specs():
    """The ablation spec as a sequential design and as each fixed one (the --set a user passes)."""
    text = SPEC.read_text()
    source = str(SPEC.relative_to(ROOT))
    sequential_spec = load_spec_text(text, source=source, overrides=[
        f"ablation.confirm_seeds={{min: {SEQUENTIAL['min']}, max: {SEQUENTIAL['max']}}}"])
    fixed = {n: load_spec_text(text, source=source, overrides=[f"ablation.confirm_seeds={n}"]) for n in FIXED}
    return sequential_spec, fixed


@dataclass
class Study:
    """What every simulated study shares: the spec, its variants (picked configurations) in
    all_variants order, and the comparisons' keys in pair_up's (and the verdict's family's) order."""
    spec: object
    fixed_specs: dict
    picked: list[dict]
    keys: list[tuple]  # each variant's variant_key
    levels: list[list]
    reference: list
    comparisons: list[tuple[int, object]]  # (factor index, level key) in pair_up order

    @classmethod
    def build(cls) -> "Study":
        spec, fixed = load_specs()
        variants = all_variants(spec)
        picked = [{**values, "train.lr": TUNED_LR, VARIANT_KEY: variant_label(values)} for values in variants]
        levels = [[level_key(v) for v in spec.search.space[p].values] for p in spec.ablation.factors]
        reference = [level_key(spec.ablation.reference[p]) for p in spec.ablation.factors]
        scores = {variant_key(spec, c): {1: 0.0} for c in picked}
        comparisons = [(c.factor, c.level) for c in sequential.pair_up(scores, levels=levels, reference=reference)]
        return cls(spec, fixed, picked, [variant_key(spec, c) for c in picked], levels, reference, comparisons)

    def comparison_names(self) -> list[str]:
        names = []
        for factor, level in self.comparisons:
            path = self.spec.ablation.factors[factor]
            ref = self.spec.ablation.reference[path]
            value = next(v for v in self.spec.search.space[path].values if level_key(v) == level)
            names.append(f"{variant_label({path: value})} vs {variant_label({path: ref})}")
        return names

    def target_index(self, path: str, level) -> int:
        return self.comparisons.index((self.spec.ablation.factors.index(path), level_key(level)))


# ---- the noise model, from real digits runs ---------------------------------------------------------
@dataclass
class Noise:
    means: np.ndarray  # (6,) each variant's mean accuracy over the real seeds
    residuals: np.ndarray  # (S, 6) each real seed's accuracy minus its variant's mean
    seeds: list[str]
    source: dict  # the JSON's provenance
    lrs: dict  # each variant's tuned learning rate in the real runs, as text

    @classmethod
    def load(cls, path: Path, study: Study) -> "Noise":
        record = json.loads(path.read_text())
        by_label = record["accuracy"]
        labels = [variant_label({p: c[p] for p in FACTORS}) for c in study.picked]
        missing = [label for label in labels if label not in by_label]
        if missing:
            raise SystemExit(f"{path}: no confirmation runs for {', '.join(missing)}")
        seeds = sorted(set.intersection(*[set(by_label[label]) for label in labels]), key=int)
        if len(seeds) < 4:
            raise SystemExit(f"{path}: {len(seeds)} seeds that every variant ran; the noise model needs 4 or more")
        accuracy = np.array([[by_label[label][s] for label in labels] for s in seeds], dtype=float)
        means = accuracy.mean(axis=0)
        source = {k: record.get(k) for k in ("commit", "date", "spec", "overrides", "machine", "sweep_run_id")}
        lrs = {label: f"{v['train.lr']:.3g}" for label, v in (record.get("variants") or {}).items()
               if isinstance(v.get("train.lr"), (int, float))}
        return cls(means=means, residuals=accuracy - means, seeds=seeds, source=source, lrs=lrs)

    def exchangeable(self) -> tuple[float, float]:
        """(SD of a seed's effect shared by every variant, SD of a variant's own noise) of the
        exchangeable control: the own noise makes a pair's difference as spread as the real pairs'
        on average (2 own variance = the mean variance of a difference of two variants at one
        seed), the shared part makes up each variant's real variance on average."""
        cov = np.cov(self.residuals.T, ddof=1)
        v = len(cov)
        pair_variance = np.mean([cov[i, i] + cov[j, j] - 2 * cov[i, j] for i in range(v) for j in range(v) if i != j])
        own = pair_variance / 2
        shared = max(float(np.mean(np.diag(cov))) - own, 0.0)
        return math.sqrt(shared), math.sqrt(own)

    def draw(self, rng: np.random.Generator, rows: int, model: str) -> np.ndarray:
        """(rows, 6): `rows` simulated seeds' residuals, each seed's for all 6 variants together."""
        s, v = self.residuals.shape
        if model == "measured":  # multivariate normal, covariance exactly the real seeds' sample covariance
            return rng.standard_normal((rows, s)) @ self.residuals / math.sqrt(s - 1)
        if model == "exchangeable":  # a seed effect shared by all + independent noise of equal spread
            shared, own = self.exchangeable()
            return shared * rng.standard_normal((rows, 1)) + own * rng.standard_normal((rows, v))
        if model == "bootstrap":  # whole real seeds, with replacement; variance made unbiased
            return self.residuals[rng.integers(s, size=rows)] * math.sqrt(s / (s - 1))
        raise ValueError(model)


# ---- one simulated study through the product's code -------------------------------------------------
def accuracies(study: Study, noise: Noise, effects: np.ndarray, rng, model: str) -> np.ndarray:
    """(max seeds, 6): every seed rank's accuracy for every variant; a design uses what it runs."""
    base = noise.means[0]  # every variant at the reference's mean, less its true effect
    return base - effects + noise.draw(rng, SEQUENTIAL["max"], model)


def run_sequential(study: Study, acc: np.ndarray) -> dict:
    """The sequential design as the product runs it: seeds 1 ... min for every variant, then round by
    round one more seed for the variants next_round names, until it names none; the verdict from the
    trials that ran (pair_up + decide, as report/verdict.py replays it)."""
    spec = study.spec
    scores = {key: {} for key in study.keys}
    for seed in range(1, spec.ablation.min_seeds + 1):
        for j, key in enumerate(study.keys):
            scores[key][seed] = float(acc[seed - 1, j])
    seeds = spec.ablation.min_seeds
    while more := next_round(spec, study.picked, scores, seeds_run=seeds):
        seeds += 1
        for config in more:
            j = study.picked.index(config)
            scores[study.keys[j]][seeds] = float(acc[seeds - 1, j])
    comparisons = sequential.pair_up(scores, levels=study.levels, reference=study.reference)
    design = sequential.Design(min_seeds=spec.ablation.min_seeds, max_seeds=spec.ablation.max_seeds)
    decisions = sequential.decide(comparisons, design, seeds_run=seeds)
    return {"decided": [d.decided for d in decisions],
            "sign": [int(np.sign(d.interval.estimate)) if d.interval else 0 for d in decisions],
            "after": [d.seeds for d in decisions],
            "trials": sum(len(v) for v in scores.values()), "rounds": seeds, "scores": scores}


def run_fixed(study: Study, acc: np.ndarray, n: int) -> dict:
    """A fixed design of n seeds: each comparison's paired t-test (stats.paired_difference) and Holm
    across the family (stats.holm), as report/verdict.py's _judge_family decides."""
    scores = {key: {seed: float(acc[seed - 1, j]) for seed in range(1, n + 1)} for j, key in enumerate(study.keys)}
    comparisons = sequential.pair_up(scores, levels=study.levels, reference=study.reference)
    raws = [st.paired_difference(*c.at(n), bounds=st.DIFFERENCE_BOUNDS) for c in comparisons]
    steps = st.holm([raw.p_value for raw in raws])
    return {"decided": [step is not None and step.significant for step in steps],
            "sign": [int(np.sign(raw.estimate)) for raw in raws],
            "trials": n * len(study.keys), "scores": scores}


def sweep_data(study: Study, scores: dict, *, spec) -> SweepData:
    """A hand-made SweepData of a study's confirmation trials, as the report reads a real one."""
    params = {k: str(v) for k, v in flatten(spec.resolved()).items()}
    base = int(params.get("train.seed", "0"))
    trials = []
    for config, key in zip(study.picked, study.keys):
        for rank, value in scores[key].items():
            trials.append(TrialRun(
                run_id=f"{config[VARIANT_KEY]} s{rank}", name=f"{config[VARIANT_KEY]} s{rank}", status="completed",
                searched={p: config[p] for p in (*FACTORS, "train.lr")},
                config={"train": {"seed": base + rank, "lr": config["train.lr"]}}, seed=base + rank,
                history={"val_accuracy": [(spec.train.epochs, value)]}, phase="confirm"))
    return SweepData(uri="sqlite://", experiment=spec.experiment, experiment_id="1", run_id="sim", run_name="sim",
                     status="finished", params=params,
                     tags={TAG_ABLATION: json.dumps(spec.ablation.model_dump(mode="json"))}, trials=trials)


def verdict_decisions(study: Study, verdict: dict) -> tuple[list[bool], list[int], list]:
    """ablation_verdict's decisions, in the study's comparison order."""
    found = {}
    for index, factor in enumerate(verdict["factors"]):
        for c in factor["comparisons"]:
            found[(index, level_key(c["level"]))] = c
    ordered = [found[key] for key in study.comparisons]
    return ([bool(c["significant"]) for c in ordered],
            [int(np.sign(c["difference"] or 0.0)) for c in ordered],
            [c.get("decided_after_seeds") for c in ordered])


# ---- scenarios, run in worker processes --------------------------------------------------------------
_STUDY: Study | None = None
_NOISE: Noise | None = None


def _setup(seeds_json: str) -> None:
    global _STUDY, _NOISE
    if _STUDY is None:
        _STUDY = Study.build()
        _NOISE = Noise.load(Path(seeds_json), _STUDY)


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str  # the noise model
    targets: tuple = ()  # the comparisons with a true difference, each (name, factor, level)
    effect_pp: float = 0.0  # by how much each target's level loses to its reference
    studies: int = 0


def scenarios_of(sizes: dict) -> list[Scenario]:
    out = [Scenario("null", "measured", studies=sizes["null"]),
           Scenario("null", "exchangeable", studies=sizes["null_exchangeable"]),
           Scenario("null", "bootstrap", studies=sizes["null_bootstrap"])]
    out += [Scenario(f"{t[0]}, {e} pp", "measured", (t,), float(e), sizes["power"]) for t in TARGETS for e in EFFECTS_PP]
    every = tuple((name, path, level) for name, path, level in ALL_THREE)
    out += [Scenario(f"all three, {e} pp", "measured", every, float(e), sizes["power"]) for e in EFFECTS_PP]
    return out


def effects_of(study: Study, targets: tuple, effect_pp: float) -> np.ndarray:
    """(6,): how much each variant loses to the reference: effect_pp for each target level it has
    (additive). A level shifted in every variant that has it leaves the other factor's comparisons
    unchanged, so a comparison that is no target stays at exactly 0."""
    effects = np.zeros(len(study.picked))
    for _, path, level in targets:
        for j, config in enumerate(study.picked):
            if level_key(config[path]) == level_key(level):
                effects[j] += effect_pp / 100
    return effects


def _tally() -> dict:
    return {"studies": 0, "trials": 0, "any": 0, "decided": [], "right": [], "wrong": [], "others_any": 0,
            "all_right": 0, "any_wrong": 0, "rounds": {}, "decided_at": {}}


def _count(t: dict, out: dict, truth: list[int]) -> None:
    m = len(truth)
    for key in ("decided", "right", "wrong"):
        t[key] = t[key] or [0] * m
    t["studies"] += 1
    t["trials"] += out["trials"]
    t["any"] += any(out["decided"])
    others = wrong = False
    right_all = True
    for k in range(m):
        decided, right = out["decided"][k], out["sign"][k] == truth[k]
        t["decided"][k] += decided
        if truth[k] == 0:
            others |= decided
            continue
        t["right"][k] += decided and right
        t["wrong"][k] += decided and not right
        wrong |= decided and not right
        right_all &= decided and right
    t["others_any"] += others
    t["any_wrong"] += wrong
    t["all_right"] += right_all and any(truth)
    if "after" in out:  # the sequential design: where it stopped, and where each comparison was decided
        t["rounds"][out["rounds"]] = t["rounds"].get(out["rounds"], 0) + 1
        for k in range(m):
            if out["decided"][k]:
                at = t["decided_at"].setdefault(k, {})
                at[out["after"][k]] = at.get(out["after"][k], 0) + 1


def simulate(task: tuple) -> dict:
    """A chunk of one scenario's studies: each design's decisions, counted; and the first `check`
    of them judged again by ablation_verdict."""
    seeds_json, index, scenario, first, count, check = task
    _setup(seeds_json)
    study, noise = _STUDY, _NOISE
    tally = {d: _tally() for d in DESIGNS}
    checked = {"studies": 0, "verdicts": 0, "mismatches": 0, "examples": []}
    effects = effects_of(study, scenario.targets, scenario.effect_pp)
    truth = [0] * len(study.comparisons)  # the sign of each comparison's true difference (level - reference)
    for _, path, level in scenario.targets:
        truth[study.target_index(path, level)] = -1
    for i in range(first, first + count):
        rng = np.random.default_rng([RNG_SEED, index, i])  # one stream per study, whichever worker runs it
        acc = accuracies(study, noise, effects, rng, scenario.model)
        outcomes = {"sequential": run_sequential(study, acc), **{f"fixed {n}": run_fixed(study, acc, n) for n in FIXED}}
        for name, out in outcomes.items():
            _count(tally[name], out, truth)
        if i - first < check:  # the same study through ablation_verdict itself
            checked["studies"] += 1
            for name in ("sequential", f"fixed {FIXED[i % len(FIXED)]}"):
                out = outcomes[name]
                spec = study.spec if name == "sequential" else study.fixed_specs[int(name.split()[1])]
                verdict = ablation_verdict(sweep_data(study, out["scores"], spec=spec))
                decided, sign, after = verdict_decisions(study, verdict)
                same = decided == out["decided"] and all(s == o for s, o, d in zip(sign, out["sign"], decided) if d)
                if name == "sequential":
                    same = same and all(a == o for a, o, d in zip(after, out["after"], decided) if d)
                checked["verdicts"] += 1
                if not same:
                    checked["mismatches"] += 1
                    if len(checked["examples"]) < 3:
                        checked["examples"].append({"scenario": scenario.name, "study": i, "design": name,
                                                    "ablation_verdict": [decided, sign, after],
                                                    "simulation": [out["decided"], out["sign"], out.get("after")]})
    return {"tally": tally, "checked": checked}


def _add(into: dict, part: dict) -> None:
    """Add `part`'s counts into `into` (same shapes: numbers, lists of numbers, dicts of either)."""
    for key, value in part.items():
        if isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        elif isinstance(value, list) and key != "examples":
            into[key] = [a + b for a, b in zip(into[key], value)] if into.get(key) else list(value)
        elif key == "examples":
            into[key] = (into.get(key) or []) + value
        else:
            into[key] = into.get(key, 0) + value


# ---- the results file -------------------------------------------------------------------------------
def rate_ci(k: int, n: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95% interval of a rate measured as k in n."""
    from scipy.stats import binomtest
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return ci.low, ci.high


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


def noise_lines(study: Study, noise: Noise) -> list[str]:
    """The real runs' figures: each variant's spread, the seed-shared part, each comparison's pairs."""
    labels = [c[VARIANT_KEY] for c in study.picked]
    res, (s, v) = noise.residuals, noise.residuals.shape
    sd = res.std(axis=0, ddof=1)
    corr = np.corrcoef(res.T)
    off_diagonal = corr[~np.eye(v, dtype=bool)]
    shared, own = noise.exchangeable()
    lines = [
        "| variant | tuned lr | mean accuracy | SD over seeds |",
        "|---|---|---|---|",
        *[f"| {label} | {noise.lrs.get(label, '?')} | {pct(noise.means[j], 2)} | {100 * sd[j]:.2f} pp |"
          for j, label in enumerate(labels)],
        "",
        f"Correlation of two variants' residuals at one seed (the seed-shared part of the luck): mean "
        f"{np.mean(off_diagonal):+.2f}, from {np.min(off_diagonal):+.2f} to {np.max(off_diagonal):+.2f} over the "
        f"{v * (v - 1) // 2} pairs of variants.",
        "",
        "| comparison | pairs a seed | SD of a pair's difference | SD of a seed's mean difference | "
        "correlation of one seed's pairs |",
        "|---|---|---|---|---|",
    ]
    scores = {key: {r + 1: float(res[r, j]) for r in range(s)} for j, key in enumerate(study.keys)}
    comparisons = sequential.pair_up(scores, levels=study.levels, reference=study.reference)
    for name, c in zip(study.comparison_names(), comparisons):
        by_seed: dict[int, list[float]] = {}
        for pair in c.pairs:
            by_seed.setdefault(pair.seed, []).append(pair.a - pair.b)
        d = np.array([by_seed[k] for k in sorted(by_seed)])  # (seeds, pairs a seed)
        # The intra-class correlation of a seed's pairs (one-way ANOVA estimator): 0 when they are
        # independent, as the paired t-test over pairs takes them; 1 when a seed's pairs are one value.
        k = d.shape[1]
        msb = k * np.var(d.mean(axis=1), ddof=1)
        msw = np.mean(np.var(d, axis=1, ddof=1))
        icc = (msb - msw) / (msb + (k - 1) * msw) if msb + (k - 1) * msw > 0 else float("nan")
        lines.append(f"| {name} | {c.per_seed} | {100 * np.std(d.ravel(), ddof=1):.2f} pp | "
                     f"{100 * np.std(d.mean(axis=1), ddof=1):.2f} pp | {icc:+.2f} |")
    lines += ["", f"The exchangeable control's seed effect shared by all variants: SD {100 * shared:.2f} pp; "
                  f"each variant's own noise: SD {100 * own:.2f} pp (a pair's difference: SD "
                  f"{100 * own * math.sqrt(2):.2f} pp)."]
    return lines


def label_of(design: str) -> str:
    if design == "sequential":
        return f"sequential {{min: {SEQUENTIAL['min']}, max: {SEQUENTIAL['max']}}}"
    return f"fixed, {design.split()[1]} seeds"


def write(args, study: Study, noise: Noise, scenarios: list[Scenario], results: list[dict], checked: dict,
          settings: dict, seconds: float) -> list[str]:
    names = study.comparison_names()
    sizes = settings["sizes"]
    by = {(sc.name, sc.model): r["tally"] for sc, r in zip(scenarios, results)}
    source = args.seeds_json.relative_to(ROOT) if args.seeds_json.is_relative_to(ROOT) else args.seeds_json
    lines = [
        "# Verdict calibration: the ablation verdicts' measured error rates",
        "",
        "Written by `benchmarks/verdict_calibration.py" + (" --quick" if args.quick else "") + "` (never by hand): "
        "simulated ablation studies of `search_spaces/xception_ablation.yaml` (6 variants: model.residual "
        "[true, false] x model.activation [none, relu, elu], reference residual on and no activation, so 3 "
        "comparisons in one family: " + ", ".join(names) + "), each judged by the product's own verdict code.",
        "",
        f"- commit measured: {settings['commit']}",
        f"- date: {settings['date']}",
        f"- machine: {machine()}",
        f"- run time: {seconds:.0f} s with {settings['workers']} worker process{'es' if settings['workers'] > 1 else ''}",
        f"- mode: {'quick' if args.quick else 'full'}; studies per scenario: the null {sizes['null']} (measured "
        f"noise), {sizes['null_exchangeable']} (exchangeable), {sizes['null_bootstrap']} (bootstrap); each "
        f"power scenario {sizes['power']}; {sum(sc.studies for sc in scenarios)} studies in all",
        "- every study is judged by every design from the same simulated seeds (seed rank k is one draw, "
        f"whichever design runs it); RNG: numpy's default_rng([{RNG_SEED}, scenario, study]), one stream per study",
        f"- designs: fixed `ablation.confirm_seeds` = {', '.join(map(str, FIXED))}; sequential "
        f"`ablation.confirm_seeds={{min: {SEQUENTIAL['min']}, max: {SEQUENTIAL['max']}}}`; alpha {st.ALPHA} for "
        f"the family; target family-wise rate <= {TARGET_FWER}",
        f"- noise from: `{source}`: {len(noise.seeds)} seeds x 6 variants of real digits confirmation trials "
        f"(commit {noise.source.get('commit')}, {noise.source.get('date')}, `{noise.source.get('spec')}` with "
        f"`--set {' '.join(noise.source.get('overrides') or [])}`, {noise.source.get('machine')})",
        "",
        "## How a study's verdict is reached",
        "",
        "- sequential: seeds 1 to 3 for every variant, then round by round one more seed for the variants that "
        "`xsweep.search.ablation.next_round` names (the function the phase-2 searcher calls, here with the Spec "
        "that `load_spec_text` makes of the ablation spec and `--set ablation.confirm_seeds={min: 3, max: 10}`), "
        "until it names none; the verdict is `report.sequential.pair_up` + `decide` over the trials that ran, as "
        "`report/verdict.py` replays it (" + sequential.METHOD + ").",
        "- fixed: `report.stats.paired_difference` for each comparison and `report.stats.holm` over the family, "
        "as `report/verdict.py`'s `_judge_family` decides: a comparison \"beats\" when its Holm-adjusted p < 0.05.",
        f"- checked against the report's own function: the first {sizes['check']} studies of every scenario were "
        "also built as a `SweepData` of their confirmation trials (as `xsweep report` reads them from MLflow) "
        "and judged by `report.verdict.ablation_verdict`, in the sequential design and in one fixed design each "
        f"(3 to 10 seeds in turn): **{checked['verdicts'] - checked['mismatches']} of {checked['verdicts']} "
        f"verdicts** ({checked['studies']} studies) made the same decisions as the simulation, with the same "
        "direction and, for the sequential design, after the same seeds."
        + ("" if not checked["mismatches"] else f" Differences, the first ones: `{json.dumps(checked['examples'])}`"),
        "",
        "## The noise model",
        "",
        "A simulated trial's final accuracy is the reference variant's real mean, less the true effect of its "
        "levels, plus a simulated seed's residual for its variant. Each simulated seed draws its residuals for "
        "the 6 variants together, from the real runs' residuals (a trial's accuracy less its variant's mean over "
        "the real seeds), so that the part of a seed's luck the variants share (one seed drives the data order, "
        "augmentation and initialisation of each) stays shared, and a pair's difference is as spread as real "
        "pairs' are. Every variant has its own tuned learning rate, as in a real study.",
        "",
        "- **measured** (the headline): multivariate normal with the real residuals' 6 x 6 sample covariance: "
        "each variant's own spread and every correlation between two variants at one seed; every simulated "
        "seed is a new one, as in a real study.",
        "- **exchangeable** (a control): a seed effect shared by all 6 variants plus independent noise of one "
        "spread for each (the real pairs' average): the case the paired t-test over pairs is exact for, so it "
        "tells the product's procedures from the real noise's structure.",
        f"- **bootstrap** (a check of the shape): whole real seeds' residual vectors drawn with replacement, "
        f"scaled by sqrt(S / (S - 1)), S = {len(noise.seeds)}: the real spread's own shape, but a study of n "
        f"seeds reuses some of the S real ones (at 3 seeds {1 - math.perm(len(noise.seeds), 3) / len(noise.seeds) ** 3:.0%} "
        f"of studies do, at 10 seeds all), and two copies of one seed make identical pairs, which a real study "
        f"never has: it overstates the error at this S.",
        "",
        "The real runs:",
        "",
        *noise_lines(study, noise),
        "",
        "The product's paired t-test counts each pair as one observation (n = seeds x pairs a seed). A seed's "
        "pairs that move together (a positive correlation above) are partly one observation, which that test "
        "does not allow for.",
        "",
    ]

    # 1. the null
    lines += ["## 1. Family-wise rate of a wrong \"beats\" (every true effect 0)", "",
              "The chance that a study's verdict declares a winner in any of its 3 comparisons when no variant "
              "differs from another in expected accuracy; by comparison, each one's rate of a (Holm-corrected) "
              "\"beats\". 95% CI: exact (Clopper-Pearson) for the rate measured. *met*: the measured rate <= "
              f"{TARGET_FWER}.", "",
              "| design | noise | studies | family-wise | 95% CI | met | "
              + " | ".join(names) + " | trials (seeds x variants), mean |",
              "|---|---|---|---|---|---|" + "---|" * len(names) + "---|"]
    null_rates = {}
    for model in MODELS:
        for design in DESIGNS:
            t = by[("null", model)][design]
            n = t["studies"]
            rate = t["any"] / n
            low, high = rate_ci(t["any"], n)
            null_rates[(design, model)] = rate
            lines.append(f"| {label_of(design)} | {model} | {n} | {rate:.3f} | [{low:.3f}, {high:.3f}] | "
                         f"{'yes' if rate <= TARGET_FWER else 'no'} | "
                         + " | ".join(f"{d / n:.3f}" for d in t["decided"]) + f" | {t['trials'] / n:.1f} |")
    lines.append("")

    # 2. power
    lines += ["## 2. Power to detect a true difference", "",
              "The target comparison's level loses to its reference by the true difference, in every variant "
              "that has that level (so the other two comparisons stay exactly 0); measured noise. *power*: "
              "decided, in the right direction; *wrong way*: decided in the wrong direction; *false elsewhere*: "
              f"a \"beats\" in either true-null comparison. {sizes['power']} studies a cell (a power's 95% "
              f"interval is at most +-{100 * 1.96 * math.sqrt(0.25 / sizes['power']):.1f} points).", ""]
    for target in TARGETS:
        k = study.target_index(target[1], target[2])
        lines += [f"### {target[0]}", "",
                  "| design | " + " | ".join(f"{e} pp: power | wrong way | false elsewhere" for e in EFFECTS_PP) + " |",
                  "|---|" + "---|---|---|" * len(EFFECTS_PP)]
        for design in DESIGNS:
            cells = []
            for e in EFFECTS_PP:
                t = by[(f"{target[0]}, {e} pp", "measured")][design]
                n = t["studies"]
                cells.append(f"{t['right'][k] / n:.3f} | {t['wrong'][k] / n:.3f} | {t['others_any'] / n:.3f}")
            lines.append(f"| {label_of(design)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### All three comparisons at once", "",
              "Every non-reference level loses to its reference by the true difference (additively: residual off "
              "with ReLU loses both); *all right*: the three comparisons all decided in the right direction.", "",
              "| design | " + " | ".join(f"{e} pp: all right | " + " | ".join(f"{nm}" for nm in names)
                                       + " | any wrong way" for e in EFFECTS_PP) + " |",
              "|---|" + ("---|" * (len(names) + 2)) * len(EFFECTS_PP)]
    for design in DESIGNS:
        cells = []
        for e in EFFECTS_PP:
            t = by[(f"all three, {e} pp", "measured")][design]
            n = t["studies"]
            cells.append(f"{t['all_right'] / n:.3f} | " + " | ".join(f"{r / n:.3f}" for r in t["right"])
                         + f" | {t['any_wrong'] / n:.3f}")
        lines.append(f"| {label_of(design)} | " + " | ".join(cells) + " |")
    lines.append("")

    # 3. seeds spent
    lines += ["## 3. Seeds spent: the sequential design against the fixed design of equal power", "",
              "Trials: confirmation trials (seeds x variants; a fixed design of n seeds runs 6n). Power: the "
              "target decided in the right direction (for all three: all three). *Fixed of equal power*: the "
              "fewest fixed seeds whose power is at least the sequential design's; *nearest*: the fixed design "
              "whose power is closest; *interpolated*: the trials of a fixed design with exactly the sequential "
              "design's power, its power taken as linear between neighbouring seed counts.", "",
              "| scenario | sequential: power | sequential: trials (per variant) | fixed of equal power: seeds, "
              "power, trials | nearest fixed: seeds, power, trials | interpolated fixed: trials | sequential's "
              "trials against equal power |",
              "|---|---|---|---|---|---|---|"]
    for sc in scenarios:
        if sc.model != "measured" or not sc.targets:
            continue
        r = by[(sc.name, sc.model)]
        if len(sc.targets) == 1:
            k = study.target_index(sc.targets[0][1], sc.targets[0][2])
            power = {d: r[d]["right"][k] / r[d]["studies"] for d in DESIGNS}
        else:
            power = {d: r[d]["all_right"] / r[d]["studies"] for d in DESIGNS}
        trials = {d: r[d]["trials"] / r[d]["studies"] for d in DESIGNS}
        p_seq, t_seq = power["sequential"], trials["sequential"]
        at_least = [n for n in FIXED if power[f"fixed {n}"] >= p_seq]
        nearest = min(FIXED, key=lambda n: (abs(power[f"fixed {n}"] - p_seq), n))
        if at_least:
            n_eq = at_least[0]
            equal = f"{n_eq}, {power[f'fixed {n_eq}']:.3f}, {6 * n_eq}"
            saved = f"{t_seq - 6 * n_eq:+.1f} ({(t_seq - 6 * n_eq) / (6 * n_eq):+.0%})"
        else:
            equal, saved = f"none up to {FIXED[-1]} seeds", "-"
        interp = "-"
        if power[f"fixed {FIXED[0]}"] >= p_seq:
            interp = f"<= {6 * FIXED[0]}"
        else:
            for a, b in zip(FIXED, FIXED[1:]):
                pa, pb = power[f"fixed {a}"], power[f"fixed {b}"]
                if pa < p_seq <= pb:
                    interp = f"{6 * (a + (p_seq - pa) / (pb - pa) * (b - a)):.1f}"
                    break
        lines.append(f"| {sc.name} | {p_seq:.3f} | {t_seq:.1f} ({t_seq / 6:.2f}) | {equal} | {nearest}, "
                     f"{power[f'fixed {nearest}']:.3f}, {6 * nearest} | {interp} | {saved} |")
    t_null = by[("null", "measured")]["sequential"]
    to_max = t_null["rounds"].get(SEQUENTIAL["max"], 0) / t_null["studies"]
    lines += ["", f"Under the null (measured noise) the sequential design spends {t_null['trials'] / t_null['studies']:.1f} "
                  f"trials on average, the most it can being {6 * SEQUENTIAL['max']}; {to_max:.1%} of those studies ran "
                  f"to {SEQUENTIAL['max']} seeds. next_round adds a seed to every variant that is a side of a comparison "
                  "still open, and a comparison with no true difference rarely closes before max seeds: one open "
                  "residual comparison (its pairs span all 6 variants) keeps all 6 running, one open activation "
                  "comparison 4 of them. The sequential design saves seeds only where every comparison has a true "
                  "difference large enough to be decided early (the \"all three\" rows).", ""]

    lines += ["### Where the sequential design stopped", "",
              "| scenario | noise | seeds run (rounds): share of studies | target decided after n seeds: share of studies |",
              "|---|---|---|---|"]
    for sc in scenarios:
        t = by[(sc.name, sc.model)]["sequential"]
        n = t["studies"]
        rounds = ", ".join(f"{s}: {c / n:.2f}" for s, c in sorted(t["rounds"].items(), key=lambda kv: int(kv[0])))
        at = "-"
        if len(sc.targets) == 1:
            k = study.target_index(sc.targets[0][1], sc.targets[0][2])
            decided_at = t["decided_at"].get(k) or t["decided_at"].get(str(k)) or {}
            at = ", ".join(f"{s}: {c / n:.2f}" for s, c in sorted(decided_at.items(), key=lambda kv: int(kv[0])))
        lines.append(f"| {sc.name} | {sc.model} | {rounds} | {at or 'never'} |")
    lines.append("")

    lines += ["## Summary", "", "| measure | measured | target | met |", "|---|---|---|---|"]
    for model in MODELS:
        for design in ["sequential"] + [f"fixed {n}" for n in HEADLINE_FIXED]:
            rate = null_rates[(design, model)]
            lines.append(f"| family-wise wrong \"beats\", {label_of(design)}, {model} noise | {rate:.3f} | "
                         f"<= {TARGET_FWER} | {'yes' if rate <= TARGET_FWER else 'no'} |")
    for target in TARGETS:
        k = study.target_index(target[1], target[2])
        for e in EFFECTS_PP:
            r = by[(f"{target[0]}, {e} pp", "measured")]
            cells = "; ".join(f"{d}: {r[d]['right'][k] / r[d]['studies']:.2f}"
                              for d in ["sequential"] + [f"fixed {n}" for n in HEADLINE_FIXED])
            lines.append(f"| power, {target[0]}, {e} pp | {cells} | | |")
    lines.append("")
    return lines


DESIGNS = ["sequential"] + [f"fixed {n}" for n in FIXED]
ALL_THREE = (("residual off vs on", "model.residual", False), ("ReLU vs no activation", "model.activation", "relu"),
             ("ELU vs no activation", "model.activation", "elu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred studies (well under a minute)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"the results file (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--seeds-json", type=Path, default=SEEDS_JSON,
                        help=f"the real runs' accuracies per seed (default {SEEDS_JSON.relative_to(ROOT)})")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    args.seeds_json = args.seeds_json.resolve()
    if not args.seeds_json.is_file():
        sys.exit(f"{args.seeds_json}: not found (benchmarks/digits_seed_spread.py writes it)")
    sizes = SIZES["quick" if args.quick else "full"]
    started = time.time()
    settings = {"commit": commit_text("platform"),
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "sizes": sizes, "workers": args.workers}

    _setup(str(args.seeds_json))
    study, noise = _STUDY, _NOISE
    # The sequential boundaries' Monte Carlo runs once, here: the workers fork with it cached.
    run_sequential(study, accuracies(study, noise, np.zeros(6), np.random.default_rng(0), "measured"))
    print(f"set up in {time.time() - started:.1f} s", flush=True)

    scenarios = scenarios_of(sizes)
    chunk = 25 if args.quick else 100
    tasks = []
    for index, sc in enumerate(scenarios):
        for first in range(0, sc.studies, chunk):
            n = min(chunk, sc.studies - first)
            tasks.append((str(args.seeds_json), index, sc, first, n, max(0, min(n, sizes["check"] - first))))
    results = [{"tally": {d: _tally() for d in DESIGNS}} for _ in scenarios]
    checked = {"studies": 0, "verdicts": 0, "mismatches": 0, "examples": []}
    pool = None
    if args.workers > 1:
        pool = ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("fork"))
        parts = pool.map(simulate, tasks)
    else:
        parts = map(simulate, tasks)
    done, total = 0, sum(sc.studies for sc in scenarios)
    for task, part in zip(tasks, parts):
        _add(results[task[1]]["tally"], part["tally"])
        _add(checked, part["checked"])
        done += task[4]
        print(f"{done}/{total} studies ({task[2].name}, {task[2].model} noise), {time.time() - started:.0f} s",
              flush=True)
    if pool is not None:
        pool.shutdown()
    checked["examples"] = checked["examples"][:3]
    seconds = time.time() - started
    lines = write(args, study, noise, scenarios, results, checked, settings, seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"\nwrote {args.out} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
