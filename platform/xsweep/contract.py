"""What a trial tells the driver with each epoch's report: written once, here.

The trainable builds a `TrialReport` after every epoch and hands `to_result()` to `tune.report`;
the driver reads it back with `TrialReport.from_result(result)`: the tracking callback (metrics,
tags), the searcher (diverged, stopped early), the console and the summary. The metrics (names
from xsweep.metrics) and the epoch are top-level keys of Tune's result, because Tune's schedulers,
searchers and result files look them up there; everything else travels under the one key
`REPORT_KEY`, never mixed into the metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xsweep.metrics import METRICS, is_finite_number

REPORT_KEY = "xsweep"
EPOCH_KEY = "epoch"  # finished epochs, 1-based; top-level so Tune's result files have it as a column


@dataclass(frozen=True)
class TrialReport:
    epoch: int  # finished epochs, 1-based
    metrics: dict[str, float] = field(default_factory=dict)  # by name, see xsweep.metrics
    diverged: bool = False  # the loss went NaN/inf: the trial stops, its metrics mean nothing
    planned_epochs: int = 0  # the epochs this trial was to run (its own when train.epochs is searched)
    device: str = ""  # where it trained: "cpu" or "cuda:<device name>"
    node_id: str = ""  # Ray's id of its node; the driver maps it to the node's address
    # Set when the restore skipped a damaged checkpoint: what was skipped and where it resumed.
    checkpoint_fallback: str | None = None
    # The system metrics sampled during the epoch: [milliseconds since the epoch, step, {name: value}]
    # (training/system.py), logged by the driver with the epoch's metrics.
    system: list = field(default_factory=list)
    peak: str = ""  # the peak FLOP rate `mfu` is measured against, and its source (training/peak.py)
    # A data-parallel trial's workers, by rank: [node id, device] each (training/data_parallel.py).
    workers: list = field(default_factory=list)

    def to_result(self) -> dict[str, Any]:
        """The dict for `tune.report`."""
        extra = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                 if f.name not in ("epoch", "metrics")}
        return {**self.metrics, EPOCH_KEY: self.epoch, REPORT_KEY: extra}

    @classmethod
    def from_result(cls, result: Mapping[str, Any] | None) -> TrialReport | None:
        """The report inside one of Tune's results, as Tune keeps it (trial.last_result) or as it
        hands it to searchers and schedulers, flattened ("xsweep/diverged"); None for a result no
        epoch made (a trial that failed before its first report)."""
        if not result or EPOCH_KEY not in result:
            return None
        prefix = f"{REPORT_KEY}/"
        extra = result.get(REPORT_KEY) or {k[len(prefix):]: v for k, v in result.items() if k.startswith(prefix)}
        known = {f.name for f in dataclasses.fields(cls)} - {"epoch", "metrics"}
        return cls(epoch=int(result[EPOCH_KEY]), metrics=_metrics(result),
                   **{k: v for k, v in extra.items() if k in known})

    def value(self, metric: str) -> float | None:
        """The metric's value this epoch, if it is a finite number."""
        value = self.metrics.get(metric)
        return value if is_finite_number(value) else None


def _metrics(result: Mapping[str, Any]) -> dict[str, float]:
    return {name: float(result[name]) for name in METRICS.names()
            if isinstance(result.get(name), (int, float)) and not isinstance(result.get(name), bool)}


# ---- the one vocabulary of trial statuses: MLflow's xsweep.status tag, status, the console, the report
PENDING, RUNNING = "pending", "running"
COMPLETED = "completed"  # every planned epoch ran
STOPPED = "stopped"  # stopped early, by the scheduler (ASHA)
DIVERGED = "diverged"  # the loss went NaN/inf
FAILED = "failed"  # an error in the trial, or it never reported
INTERRUPTED = "interrupted"  # stopped with its sweep (Ctrl-C) before its last epoch: `xsweep resume` goes on
STATUSES = (PENDING, RUNNING, COMPLETED, STOPPED, DIVERGED, FAILED, INTERRUPTED)


def ended_status(result: Mapping[str, Any] | None, *, errored: bool = False) -> str:
    """How a trial that ended ended, from its last result."""
    report = TrialReport.from_result(result)
    if errored or report is None:
        return FAILED
    if report.diverged:
        return DIVERGED
    return COMPLETED if report.epoch >= report.planned_epochs else STOPPED


def sweep_end_status(tune_status: str, result: Mapping[str, Any] | None, *, errored: bool, in_flight: bool) -> str:
    """How a trial stood when its sweep returned. `in_flight`: it was training when the sweep was
    interrupted (Tune then marks it TERMINATED like a trial that ended)."""
    if in_flight:
        return INTERRUPTED
    if tune_status == "PENDING":
        return PENDING if TrialReport.from_result(result) is None else INTERRUPTED
    return ended_status(result, errored=errored)


def status_of(tune_status: str, result: Mapping[str, Any] | None) -> str:
    """The status of a trial as Tune holds it (PENDING, RUNNING, PAUSED, TERMINATED, ERROR)."""
    if tune_status == "ERROR":
        return FAILED
    if tune_status == "TERMINATED":
        return ended_status(result)
    if tune_status == "RUNNING":
        return RUNNING
    # Saved while training (a sweep stopped by Ctrl-C): Tune keeps such a trial PENDING, with its results.
    return PENDING if TrialReport.from_result(result) is None else INTERRUPTED
