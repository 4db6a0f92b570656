"""The one table of metrics: what a trial reports each epoch, and how everything else treats it.

Every consumer reads this table: the trial (which derived metrics to compute), the tracking
callback (which values go to MLflow), the spec (which `search.metric` may be named, and its
`search.mode`), `xsweep reproduce` (which values must repeat, and in what unit), the report and the
console (names and formats). Adding a metric is one `METRICS.add(Metric(...))` plus its test; a
train-step or evaluation metric also needs the line in training/fit.py that measures it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from xsweep.registry import Registry

Source = Literal["train", "eval", "model", "derived"]


@dataclass(frozen=True)
class Metric:
    name: str
    # train: the training pass; eval: the validation pass; model: the model itself (the same every
    # epoch); derived: computed from the others
    source: Source
    label: str  # how the report and the console name it
    mode: Literal["max", "min"] | None = None  # which way is better; None: not a search objective
    percent: bool = False  # a fraction, shown (and compared by reproduce) in percent
    reproducible: bool = True  # the same seed gives the same value (timings do not repeat)
    compute: Callable[[Mapping[str, float]], float] | None = None  # derived only
    curve: bool = False  # drawn as a learning curve in the report
    count: bool = False  # a count (parameters), shown as 142.7k or 22.86M
    size: bool = False  # bytes, shown as 812.4 MiB or 1.25 GiB
    min_classes: int = 0  # measured only for data with at least this many classes (top-5 accuracy)

    def show(self, value: float | None) -> str:
        """The value as the console and summaries print it: 97.12%, 0.1234 or 142.7k."""
        if value is None or not math.isfinite(value):
            return "-"
        if self.size:
            return next((f"{value / 2**p:.4g} {unit}" for p, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB"))
                         if abs(value) >= 2**p), f"{value:.0f} B")
        if self.count:
            return next((f"{value / size:.4g}{suffix}" for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"))
                         if abs(value) >= size), f"{value:.0f}")
        return f"{100 * value:.2f}%" if self.percent else f"{value:.4g}"

    @property
    def unit(self) -> str:
        """What a difference of this metric is counted in: percentage points for percentages."""
        return "pp" if self.percent else ""


METRICS: Registry[Metric] = Registry("metric")
METRICS.add(Metric("val_accuracy", "eval", "validation accuracy", mode="max", percent=True, curve=True))
METRICS.add(Metric("val_loss", "eval", "validation loss", mode="min"))
# The label among the model's 5 highest scores: the paper reports 0.945 on ImageNet (docs/PAPER.md).
TOP5_MIN_CLASSES = 5
METRICS.add(Metric("val_top5_accuracy", "eval", "validation top-5 accuracy", mode="max", percent=True,
                   min_classes=TOP5_MIN_CLASSES))
METRICS.add(Metric("train_accuracy", "train", "training accuracy", mode="max", percent=True))
METRICS.add(Metric("train_loss", "train", "training loss", mode="min", curve=True))
METRICS.add(Metric("lr", "train", "learning rate"))
METRICS.add(Metric("epoch_seconds", "train", "seconds per epoch", reproducible=False))
METRICS.add(Metric("images_per_second", "train", "training images per second", reproducible=False))
# Mean wall-clock seconds of one optimizer step (forward, backward, update) over the epoch.
METRICS.add(Metric("step_seconds", "train", "seconds per training step", mode="min", reproducible=False))
METRICS.add(Metric("params", "model", "parameters", mode="min", count=True))
# Forward FLOPs of one image at the trial's data.image_size (training/cost.py says what is counted).
METRICS.add(Metric("gflops", "model", "forward GFLOPs per image", mode="min"))
# What a trial costs (training/cost.py TrialCost): seconds it has held its devices, summed over them
# (the parent run holds the sweep's total), its peak memory, and its model FLOP utilisation against
# the device's peak (training/peak.py).
COST = "device_seconds"
METRICS.add(Metric(COST, "train", "device-seconds", reproducible=False))
METRICS.add(Metric("peak_memory_bytes", "train", "peak device memory", reproducible=False, size=True))
METRICS.add(Metric("mfu", "train", "model FLOP utilisation", reproducible=False, percent=True))
# How fast a trial starts training (training/trial_start.py): from its start in its process to its first
# optimizer step; what its first epoch took beyond a later one's pace; what torch.compile took.
STARTUP = "startup_seconds"
METRICS.add(Metric(STARTUP, "train", "seconds to the first step", reproducible=False))
METRICS.add(Metric("first_epoch_extra_seconds", "train", "extra seconds of the first epoch", reproducible=False))
METRICS.add(Metric("compile_seconds", "train", "compile seconds", reproducible=False))
STARTUP_METRICS = (STARTUP, "first_epoch_extra_seconds", "compile_seconds")

# What the report compares trials by (final value) and the console's default column.
ACCURACY = "val_accuracy"


def objectives() -> tuple[str, ...]:
    """The metrics a sweep may search on (`search.metric`, `search.objectives`)."""
    return tuple(m.name for m in METRICS if m.mode is not None)


def constant_metrics() -> tuple[str, ...]:
    """The metrics of the model itself, the same every epoch: MLflow gets them once, not a flat line."""
    return tuple(m.name for m in METRICS if m.source == "model")


def curve_metrics() -> tuple[str, ...]:
    """The metrics the report draws learning curves of."""
    return tuple(m.name for m in METRICS if m.curve)


def reproducible() -> tuple[str, ...]:
    """The metrics `xsweep reproduce` compares: those the seed decides."""
    return tuple(m.name for m in METRICS if m.reproducible)


def is_finite_number(value: object) -> bool:
    """A real, finite number (not a bool, not NaN or inf): what a metric's value must be to count."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def best_value(values, *, mode: str) -> float | None:
    """The best finite value of a metric's history (max or min by `mode`); None if there is none."""
    finite = [v for v in values if is_finite_number(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def better(value: float | None, than: float | None, *, mode: str) -> bool:
    """Whether `value` beats `than` in the direction `mode`; nothing beats a value, anything beats None."""
    if value is None:
        return False
    return than is None or (value > than if mode == "max" else value < than)


def best_scored(items, *, score, mode: str):
    """(the item whose `score(item)` is best, that score), the first of equals; (None, None) when
    no item has a score (None)."""
    best, best_score = None, None
    for item in items:
        value = score(item)
        if better(value, best_score, mode=mode):
            best, best_score = item, value
    return best, best_score


def with_derived(measured: Mapping[str, float]) -> dict[str, float]:
    """The measured metrics of an epoch plus every derived one, computed from them in table order."""
    values = dict(measured)
    for metric in METRICS:
        if metric.source == "derived" and metric.compute is not None:
            values[metric.name] = float(metric.compute(values))
    return values
