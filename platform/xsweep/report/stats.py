"""The report's statistics: pure functions of lists of numbers, checked against scipy by the tests.

Intervals use Student's t: the mean of n values (mean_ci), the mean of n paired differences
(paired_difference), and the difference of two means with unequal variances (welch_difference,
Welch-Satterthwaite degrees of freedom). Fewer than MIN_N values (or pairs, or of either group)
give no interval: its ends are NaN and the verdict says there are too few runs to tell. At n = 2
the t-interval's half-width is 12.7 standard errors, wider than anything accuracy can do.

An interval is clipped to what the quantity can be (`bounds`): a mean accuracy to [0, 1]
(ACCURACY_BOUNDS), a difference of two to [-1, 1] (DIFFERENCE_BOUNDS). Clipping never changes
whether an interval excludes zero, so the verdicts are those of the plain t-test.

Several comparisons judged together (an ablation's verdict) are one family, corrected with Holm's
step-down method (holm, family_verdict): the chance that any "beats" among them is false stays
below ALPHA, where a 95% interval each would let it grow with the number of comparisons.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence

from scipy import stats

ALPHA = 0.05  # a test's error rate, and a family's under Holm's correction
CONFIDENCE = 1 - ALPHA
MIN_N = 3
ACCURACY_BOUNDS = (0.0, 1.0)
DIFFERENCE_BOUNDS = (-1.0, 1.0)
METHOD = (f"95% Student's t-intervals, given from n = {MIN_N} (fewer: too few to tell), clipped to what "
          "accuracy can be (0 to 100 % for a mean, -100 to +100 pp for a difference)")
Bounds = tuple[float, float] | None


@dataclass(frozen=True)
class Interval:
    """A mean (or a difference of means) with its confidence interval and sample size."""

    estimate: float
    low: float
    high: float
    n: int  # values, pairs, or for Welch the first group's size
    n_b: int = 0  # Welch only: the second group's size
    df: float = math.nan  # degrees of freedom of the t-distribution used
    p_value: float = math.nan  # two-sided test of estimate == 0 (differences only); whatever the level
    confidence: float = CONFIDENCE  # the interval's level

    @property
    def excludes_zero(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _variance(values: Sequence[float]) -> float:
    """The sample variance (n - 1 in the denominator)."""
    m = _mean(values)
    return math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)


def _t_interval(estimate: float, se: float, df: float, n: int, confidence: float) -> Interval:
    if se == 0.0:  # every value equal: no spread, the interval is the point itself
        p = 1.0 if estimate == 0 else 0.0
        return Interval(estimate, estimate, estimate, n, df=df, p_value=p, confidence=confidence)
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    p = 2 * stats.t.sf(abs(estimate) / se, df)
    return Interval(estimate, estimate - half, estimate + half, n, df=float(df), p_value=float(p),
                    confidence=confidence)


def _clipped(interval: Interval, bounds: Bounds) -> Interval:
    if bounds is None or not math.isfinite(interval.low):
        return interval
    return dataclasses.replace(interval, low=max(interval.low, bounds[0]), high=min(interval.high, bounds[1]))


def mean_ci(values: Sequence[float], *, bounds: Bounds = None, confidence: float = CONFIDENCE) -> Interval:
    """The mean of `values` with its t-interval (95% unless `confidence`), clipped to `bounds`;
    p_value tests mean == 0."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence=confidence)
    if n < MIN_N:
        return Interval(_mean(values), math.nan, math.nan, n, confidence=confidence)
    return _clipped(_t_interval(_mean(values), math.sqrt(_variance(values) / n), n - 1, n, confidence), bounds)


def paired_difference(a: Sequence[float], b: Sequence[float], *, bounds: Bounds = None,
                      confidence: float = CONFIDENCE) -> Interval:
    """Mean of a[i] - b[i] with its t-interval (the paired t-test's; 95% unless `confidence`); a and
    b are aligned pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs aligned pairs (got {len(a)} and {len(b)} values)")
    return mean_ci([float(x) - float(y) for x, y in zip(a, b)], bounds=bounds, confidence=confidence)


def welch_difference(a: Sequence[float], b: Sequence[float], *, bounds: Bounds = None) -> Interval:
    """mean(a) - mean(b) with Welch's 95% t-interval (unequal variances), clipped to `bounds`."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        return Interval(math.nan, math.nan, math.nan, len(a), n_b=len(b))
    estimate = _mean(a) - _mean(b)
    if min(len(a), len(b)) < MIN_N:
        return Interval(estimate, math.nan, math.nan, len(a), n_b=len(b))
    va, vb = _variance(a) / len(a), _variance(b) / len(b)
    se2 = va + vb
    if se2 == 0.0:
        df = len(a) + len(b) - 2
        return dataclasses.replace(_t_interval(estimate, 0.0, df, len(a), CONFIDENCE), n_b=len(b))
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return _clipped(dataclasses.replace(_t_interval(estimate, math.sqrt(se2), df, len(a), CONFIDENCE), n_b=len(b)),
                    bounds)


def finite_or_none(value: float | None) -> float | None:
    """A number for JSON: NaN (no interval) becomes None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def mean_or_none(values) -> float | None:
    """The mean of the values that are not None; None when there is none."""
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def sum_or_none(values) -> float | None:
    """The sum of the values that are not None; None when there is none."""
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


def pp(fraction: float) -> str:
    """An accuracy difference (as a fraction) in percentage points: 0.0123 -> '1.2'."""
    return f"{100 * fraction:.1f}"


def n_text(diff: Interval) -> str:
    """'n = 6' (values or pairs), or 'n = 3 and 4' for Welch's two groups."""
    return f"n = {diff.n} and {diff.n_b}" if diff.n_b else f"n = {diff.n}"


def level_text(confidence: float) -> str:
    """A confidence level in percent, as short as it is exact to 0.01: 0.95 -> '95', 0.975 -> '97.5',
    1 - 0.05 / 6 -> '99.17'."""
    return f"{100 * confidence:.2f}".rstrip("0").rstrip(".")


def p_text(p: float) -> str:
    """'p = 0.031', or 'p < 0.001' where two digits would only show noise."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def verdict(label_a: str, label_b: str, diff: Interval) -> str:
    """A plain sentence on a - b (accuracies as fractions), e.g.
    'no activation beats ReLU by 1.2 pp, 95% CI [0.4, 2.0], n = 6'. The winner is named first, so
    the difference and its interval read as positive numbers. One comparison on its own: uncorrected
    for any others (family_verdict corrects a family)."""
    n = n_text(diff)
    if not math.isfinite(diff.low):
        return f"too few runs to tell at {n} (an interval needs {MIN_N})"
    if not diff.excludes_zero:
        return f"no significant difference at {n} ({difference_text(label_a, label_b, diff)})"
    return f"{win_text(label_a, label_b, diff)}, {n}"


def difference_text(label_a: str, label_b: str, diff: Interval, *, kind: str = "CI") -> str:
    """'ReLU - no activation = 1.2 pp, 95% CI [-0.3, 2.7]' (`kind`: what the interval is)."""
    return (f"{label_a} - {label_b} = {pp(diff.estimate)} pp, "
            f"{level_text(diff.confidence)}% {kind} [{pp(diff.low)}, {pp(diff.high)}]")


def win_text(label_a: str, label_b: str, diff: Interval, *, kind: str = "CI") -> str:
    """'ReLU beats no activation by 1.2 pp, 95% CI [0.4, 2.0]': the winner first, so that the
    difference and its interval read as positive numbers."""
    if diff.estimate > 0:
        winner, loser, est, low, high = label_a, label_b, diff.estimate, diff.low, diff.high
    else:
        winner, loser, est, low, high = label_b, label_a, -diff.estimate, -diff.high, -diff.low
    return f"{winner} beats {loser} by {pp(est)} pp, {level_text(diff.confidence)}% {kind} [{pp(low)}, {pp(high)}]"


# ---- a family of comparisons: Holm's step-down correction ------------------------------------------
@dataclass(frozen=True)
class HolmStep:
    """Where one comparison of a family stands under Holm's method."""

    step: int  # its rank in the family, smallest p first (from 1)
    family_size: int  # m: the family's comparisons that have a p-value
    p_adjusted: float
    # The level of its interval: 1 - ALPHA / (m - step + 1), its step's test, so that the interval
    # excludes zero exactly when p_adjusted < ALPHA (see holm).
    confidence: float

    @property
    def significant(self) -> bool:
        return self.p_adjusted < ALPHA


def holm(p_values: Sequence[float]) -> list[HolmStep | None]:
    """Holm's (1979) step-down correction of a family's p-values, in the order given.

    The m p-values are taken smallest first; the one at step i (from 1) is multiplied by m - i + 1,
    capped at 1, and never falls below an earlier step's: the procedure rejects in order and stops
    at its first failure, so nothing after that step is rejected. A NaN (a comparison with too few
    runs to test) gets None and is not one of the m.

    Each comparison's interval level is that of its step's test, 1 - ALPHA / (m - i + 1), so that
    it excludes zero exactly when Holm rejects. After the step where Holm stops, a comparison gets
    the stopping step's level instead: its own, narrower, could exclude zero where Holm never
    reached it, and would then contradict its adjusted p."""
    tested = sorted((float(p), index) for index, p in enumerate(p_values) if math.isfinite(p))
    m = len(tested)
    out: list[HolmStep | None] = [None] * len(p_values)
    adjusted, stopped_at = 0.0, None
    for step, (p, index) in enumerate(tested, start=1):
        adjusted = max(adjusted, min(1.0, (m - step + 1) * p))
        if stopped_at is None and adjusted >= ALPHA:
            stopped_at = step
        level_step = step if stopped_at is None else stopped_at
        out[index] = HolmStep(step=step, family_size=m, p_adjusted=adjusted,
                              confidence=1 - ALPHA / (m - level_step + 1))
    return out


def family_verdict(*, label_a: str, label_b: str, interval: Interval, holm_step: HolmStep | None) -> str:
    """A plain sentence on a - b as one comparison of a Holm-corrected family: worded by the adjusted
    p, with the interval at the comparison's Holm level (`interval`, whose p_value is the raw one),
    e.g. 'ReLU beats no activation by 1.2 pp, 97.5% CI [0.4, 2.0], n = 6; p = 0.0042, Holm-adjusted
    p = 0.0084 over 2 comparisons'."""
    if holm_step is None or not math.isfinite(interval.low):
        return verdict(label_a, label_b, interval)  # too few runs to test: not one of the family
    m = holm_step.family_size
    p_values = (f"{p_text(interval.p_value)}, Holm-adjusted {p_text(holm_step.p_adjusted)} over "
                f"{m} comparison{'s' if m != 1 else ''}")
    if holm_step.significant:
        return f"{win_text(label_a, label_b, interval)}, {n_text(interval)}; {p_values}"
    return (f"no significant difference at {n_text(interval)} after Holm's correction "
            f"({difference_text(label_a, label_b, interval)}; {p_values})")
