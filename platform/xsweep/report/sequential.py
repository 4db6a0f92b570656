"""Sequential confirmation: an ablation's comparisons tested after every round of seeds, seeds added
only where a comparison is still open, with the family's error rate kept at ALPHA however early
each one stops (`ablation.confirm_seeds: {min: 3, max: 10}`).

The method, a group-sequential design with alpha spending and Holm's correction across it:

* Each comparison (a level against its factor's reference) is a paired t-test of the pairs it has
  after each round (a look): after min seeds, then after every seed added, up to max.
* Its boundary at each look comes from Lan & DeMets' (1983) alpha-spending approach with the
  Pocock-type spending function alpha(t) = a * ln(1 + (e - 1) * t), t = pairs / pairs at max seeds
  (its information fraction): the chance under "no difference" of first crossing the boundary at
  look k is alpha(t_k) - alpha(t_(k-1)). Pocock's type spends early, where a large effect should
  stop the seeds, rather than O'Brien & Fleming's, which keeps nearly everything for the last look.
* The boundaries are for the t-statistic itself, not a normal approximation, which at 3 to 10
  pairs would be far off: under "no difference" with normal pair differences the t-statistics of
  the looks have one joint distribution whatever the variance (t is scale-free), drawn here by
  Monte Carlo (NULL_PATHS paths, seeded: the same boundaries on every machine).
* Holm across the family (the group-sequential Holm procedure, Maurer & Bretz 2013, "Multiple
  testing in group sequential trials using graphical approaches", Stat. Biopharm. Res. 5(4)): at
  each look every open comparison is tested at a / m', m' the comparisons still open; when one is
  decided, the rest are tested again at the look with the larger share a / (m' - 1), their
  boundaries those of a design at that level from the start. This keeps the chance of any false
  "beats" in the family at or below ALPHA under optional stopping.

A comparison is decided when its t-statistic crosses its boundary, and then takes no more seeds
for itself; one never decided runs to max seeds. Its interval is the repeated confidence interval
of its look (estimate +- boundary x standard error), which excludes zero exactly when it crossed.

Everything here is plain numbers, so that the searcher deciding the next round (search/ablation.py),
the report (verdict.py) and the calibration benchmark make the same decisions from the same pairs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from xsweep.report import stats as st

NULL_PATHS = 200_000  # Monte Carlo paths of the null t-statistics: the boundaries' error is ~1% of alpha
NULL_SEED = 20_131_001  # fixed: the same boundaries everywhere
METHOD = ("group-sequential paired t-tests with Pocock-type alpha spending (Lan & DeMets 1983), "
          "Holm across the family (Maurer & Bretz 2013)")


def spent(t: float, alpha: float) -> float:
    """Pocock-type spending function (Lan & DeMets 1983): the error spent by information fraction t."""
    return alpha * math.log(1 + (math.e - 1) * min(max(t, 0.0), 1.0))


@functools.lru_cache(maxsize=None)
def _null_t(n: int) -> np.ndarray:
    """|t| after n pairs of each of NULL_PATHS paths of standard normal pair differences. The k-th
    difference of every path is drawn from its own seeded stream, so that a path's first n
    differences are the same whichever n is asked for: the looks of one design share their paths."""
    total, squares = np.zeros(NULL_PATHS), np.zeros(NULL_PATHS)
    for k in range(n):
        z = np.random.default_rng([NULL_SEED, k]).standard_normal(NULL_PATHS)
        total += z
        squares += z * z
    mean = total / n
    sd = np.sqrt(np.maximum(squares - n * mean * mean, 0.0) / (n - 1))
    return (np.abs(mean) / (sd / math.sqrt(n))).astype(np.float32)


def boundaries(looks: Sequence[int], *, max_pairs: int, alpha: float, final: bool = False) -> list[float]:
    """The |t| a comparison must exceed at each look (its pairs then, increasing) to be decided, in
    a design at level `alpha` planned to `max_pairs` pairs. The last look spends what is left of
    alpha when it is `final` (max seeds) or reaches max_pairs."""
    return list(_boundaries(tuple(int(n) for n in looks), int(max_pairs), float(alpha), bool(final)))


@functools.lru_cache(maxsize=4096)
def _boundaries(looks: tuple[int, ...], max_pairs: int, alpha: float, final: bool) -> tuple[float, ...]:
    if any(n < 2 for n in looks) or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks need 2 or more pairs each, increasing (got {looks})")
    alive = np.ones(NULL_PATHS, dtype=bool)
    out, before = [], 0.0
    for k, n in enumerate(looks):
        last = k == len(looks) - 1
        now = alpha if n >= max_pairs or (last and final) else spent(n / max_pairs, alpha)
        paths = _null_t(n)
        crossings = int(round((now - before) * NULL_PATHS))  # paths this look may stop, of all of them
        values = paths[alive]
        if crossings <= 0:
            bound = math.inf
        elif crossings >= len(values):
            bound = 0.0
        else:  # the (crossings + 1)-th largest: exactly `crossings` alive paths lie above it
            bound = float(np.partition(values, len(values) - crossings - 1)[len(values) - crossings - 1])
        out.append(bound)
        alive &= ~(paths > bound)
        before = now
    return tuple(out)


@dataclass(frozen=True)
class Design:
    """A sequential confirmation: seeds from `min_seeds` to `max_seeds`, one seed a round."""
    min_seeds: int
    max_seeds: int
    alpha: float = st.ALPHA

    def looks(self) -> list[int]:
        """The seed counts after which the comparisons are tested."""
        return list(range(self.min_seeds, self.max_seeds + 1))


@dataclass(frozen=True)
class Pair:
    seed: int  # the seed's rank in phase 2, from 1
    a: float  # the level's final accuracy
    b: float  # the reference's, at the same seed and the same levels of the other factors
    at: tuple  # those levels of the other factors


@dataclass
class LevelComparison:
    """One level of a factor against the factor's reference, pair by pair; `per_seed` pairs a seed
    gives it (one per combination of the other factors' levels)."""
    factor: int  # its index in the factors
    level: Hashable  # its level's key
    reference: Hashable  # the reference level's key
    per_seed: int
    pairs: list[Pair] = field(default_factory=list)

    def at(self, seeds: int) -> tuple[list[float], list[float]]:
        """The accuracies (a, b) of its pairs from the first `seeds` seeds."""
        kept = [p for p in self.pairs if p.seed <= seeds]
        return [p.a for p in kept], [p.b for p in kept]

    def involves(self, variant: tuple) -> bool:
        """Whether the variant (level keys, one per factor) is one side of its pairs."""
        return variant[self.factor] in (self.level, self.reference)


def pair_up(scores: Mapping[tuple, Mapping[int, float]], *, levels: Sequence[Sequence[Hashable]],
            reference: Sequence[Hashable]) -> list[LevelComparison]:
    """Every factor's non-reference levels against its reference, from `scores` (variant, a tuple
    of level keys one per factor -> seed rank -> final accuracy): a pair wherever a variant and its
    partner (the reference level in its place) both have a seed."""
    out = []
    for i, keys in enumerate(levels):
        per_seed = math.prod(len(k) for j, k in enumerate(levels) if j != i)
        for level in keys:
            if level == reference[i]:
                continue
            comparison = LevelComparison(factor=i, level=level, reference=reference[i], per_seed=per_seed)
            for variant, by_seed in scores.items():
                if variant[i] != level:
                    continue
                partner = scores.get(variant[:i] + (reference[i],) + variant[i + 1:], {})
                comparison.pairs += [Pair(seed, a, partner[seed], variant[:i] + variant[i + 1:])
                                     for seed, a in sorted(by_seed.items()) if seed in partner]
            out.append(comparison)
    return out


@dataclass
class Decision:
    """Where a comparison stands after the looks so far."""
    decided: bool = False
    seeds: int = 0  # the look that decided it, else the last look
    n: int = 0  # its pairs then
    t: float = math.nan  # |t| then
    boundary: float = math.inf  # what |t| had to exceed then
    level: float = math.nan  # the Holm share of alpha it was tested at then
    interval: st.Interval | None = None  # the repeated confidence interval then (estimate +- boundary x se)


def decide(comparisons: Sequence[LevelComparison], design: Design, *, seeds_run: int) -> list[Decision]:
    """Replay the design's looks up to `seeds_run` seeds (the rounds so far) and return where each
    comparison stands: decided at a look (and then left alone), or open. Looks with fewer than
    stats.MIN_N pairs for a comparison do not test it."""
    decisions = [Decision() for _ in comparisons]
    seen: list[list[int]] = [[] for _ in comparisons]  # each comparison's tested looks (pairs), for its boundaries
    for seeds in [s for s in design.looks() if s <= seeds_run]:
        open_ = [i for i, d in enumerate(decisions) if not d.decided]
        tests = {}
        for i in open_:
            a, b = comparisons[i].at(seeds)
            if len(a) >= st.MIN_N and (not seen[i] or len(a) > seen[i][-1]):
                seen[i].append(len(a))
                tests[i] = (a, b)
        while True:  # Holm: test the open ones at alpha / their number, again after each decision
            share = design.alpha / max(len(open_), 1)
            newly = []
            for i in [i for i in open_ if i in tests]:
                a, b = tests[i]
                bound = boundaries(seen[i], max_pairs=design.max_seeds * comparisons[i].per_seed, alpha=share,
                                   final=seeds == design.max_seeds)[-1]
                decisions[i] = _standing(a, b, bound=bound, share=share, seeds=seeds)
                if decisions[i].decided:
                    newly.append(i)
            if not newly:
                break
            open_ = [i for i in open_ if i not in newly]
    return decisions


def _standing(a: Sequence[float], b: Sequence[float], *, bound: float, share: float, seeds: int) -> Decision:
    """A comparison at one look: its paired t-statistic against its boundary, and its repeated
    confidence interval (estimate +- boundary x standard error, clipped as stats clips)."""
    raw = st.paired_difference(a, b)
    d = [x - y for x, y in zip(a, b)]
    se = math.sqrt(sum((x - raw.estimate) ** 2 for x in d) / (len(d) - 1) / len(d))
    # All differences the same: no spread, so any non-zero one is decided (as the plain t-test has it).
    t = abs(raw.estimate) / se if se > 0 else (math.inf if raw.estimate != 0 else 0.0)
    half = bound * se if math.isfinite(bound) else math.inf
    low, high = st.DIFFERENCE_BOUNDS
    interval = st.Interval(raw.estimate, max(raw.estimate - half, low), min(raw.estimate + half, high), raw.n,
                           df=raw.df, p_value=raw.p_value, confidence=1 - share)
    return Decision(decided=t > bound, seeds=seeds, n=raw.n, t=t, boundary=bound, level=share, interval=interval)


def still_open(decisions: Sequence[Decision]) -> list[int]:
    return [i for i, d in enumerate(decisions) if not d.decided]


def sentence(label_a: str, label_b: str, decision: Decision, design: Design) -> str:
    """A plain sentence on a - b as the sequential design left it, e.g. 'ReLU beats no activation by
    1.2 pp, 99.17% repeated CI [0.4, 2.0], n = 6, decided after 3 seeds (|t| = 7.1 past 6.7)'."""
    if decision.interval is None:
        return f"too few runs to tell (a look needs {st.MIN_N} pairs)"
    n = st.n_text(decision.interval)
    if decision.decided:
        return (f"{st.win_text(label_a, label_b, decision.interval, kind='repeated CI')}, {n}, decided after "
                f"{decision.seeds} seeds (|t| = {decision.t:.2f} past its boundary {decision.boundary:.2f})")
    where = (f"after {decision.seeds} seeds, the design's max" if decision.seeds >= design.max_seeds else
             f"after {decision.seeds} of up to {design.max_seeds} seeds (undecided: `xsweep resume` adds its rounds)")
    return (f"no significant difference at {n} {where} "
            f"({st.difference_text(label_a, label_b, decision.interval, kind='repeated CI')})")


MOST_PAIRS = 10_000  # past this, "more seeds" is no answer: the difference is too small for its spread
POWER = 0.8  # the chance a seeds_to_decide estimate aims the comparison's test to have


def seeds_to_decide(a: Sequence[float], b: Sequence[float], *, per_seed: int, level: float) -> int | None:
    """About how many seeds a comparison needs to be decided at `level` (two-sided) with POWER, if
    its true difference and spread were those observed in pairs (a, b): the paired t-test's power
    from the noncentral t-distribution (a plug-in estimate: a true difference smaller than the one
    observed needs more). None when it cannot tell (fewer than MIN_N pairs, no spread or no difference)
    or when it would take more than MOST_PAIRS pairs."""
    d = [x - y for x, y in zip(a, b)]
    if len(d) < st.MIN_N:
        return None
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    if sd == 0.0 or mean == 0.0:
        return None
    effect = abs(mean) / sd
    n = max(st.MIN_N, 2)
    while n <= MOST_PAIRS:
        critical = scipy_stats.t.ppf(1 - level / 2, n - 1)
        if scipy_stats.nct.sf(critical, n - 1, effect * math.sqrt(n)) >= POWER:
            return math.ceil(n / per_seed)
        n = n + 1 if n < 200 else int(n * 1.05)
    return None
