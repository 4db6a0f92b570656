"""The Tune callback that turns a sweep's events into MLflow writes on its trials' child runs.

It runs in the driver: trials only report to Tune (see runs.py for why). It only decides what to
write: every write goes, in order, to the driver's tracking writer (writer.py), a process of its
own, so tracking stays off the training path and off the driver's CPU.
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path

from ray import tune

from xsweep.contract import EPOCH_KEY, FAILED, RUNNING, TrialReport, ended_status
from xsweep.metrics import better, is_finite_number
from xsweep.spec.trial import RUN_ID_KEY
from xsweep.tracking.runs import SweepRuns
from xsweep.tracking.tags import (
    TAG_CHECKPOINT_FALLBACK, TAG_DEVICE, TAG_HOSTNAME, TAG_NODE_IP, TAG_PEAK_FLOPS, TAG_STATUS, TAG_WORKER_PREFIX,
)
from xsweep.tracking.writer import shared_writer
from xsweep.tracking.writes import end_run, upload_best_checkpoint, write_epoch, write_tags


def _node_address(node_id: str | None) -> str | None:
    """The address Ray knows a node by (what `ray start --node-ip-address` set)."""
    import ray

    if not node_id or not ray.is_initialized():
        return None
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return node.get("NodeManagerAddress")
    return None


def _system_metrics(samples) -> list[tuple[str, float, int, int]]:
    """A report's system samples (training/system.py) as MLflow metrics (name, value, ms, step);
    none when they did not survive the way back (a re-sync from Tune's CSV file holds them as text)."""
    if not isinstance(samples, list):
        return []
    return [(name, float(value), int(ms), int(step))
            for ms, step, values in samples for name, value in values.items() if is_finite_number(value)]


class TrackingCallback(tune.Callback):
    """Turns Tune's events into MLflow writes on the trials' child runs (see module doc)."""

    def __init__(self, runs: SweepRuns, *, metric: str, mode: str):
        self.runs = runs
        self.metric = metric
        self.mode = mode
        self._init_transient()

    def _init_transient(self) -> None:
        self.delivery = shared_writer()
        self._best: dict[str, float] = {}  # run id -> best metric whose checkpoint was uploaded
        self._tagged: set = set()  # run ids (and (run id, fallback) pairs) already tagged

    def __getstate__(self) -> dict:
        return {k: self.__dict__[k] for k in ("runs", "metric", "mode")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_transient()

    # ---- metrics -----------------------------------------------------------------------------
    def log_epoch(self, run_id: str, result: dict, *, tags: dict | None = None) -> None:
        report = TrialReport.from_result(result)
        epoch, metrics = report.epoch, report.metrics  # every metric of xsweep.metrics, nothing else
        timestamp = int(float(result.get("timestamp", 0)) * 1000) or None
        system = _system_metrics(report.system)
        self.delivery.submit(f"metrics of epoch {epoch} for run {run_id}",
                             partial(write_epoch, self.runs.uri, run_id, epoch, metrics, timestamp, system, tags))

    # ---- Tune events -------------------------------------------------------------------------
    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = trial.config.get(RUN_ID_KEY)
        report = TrialReport.from_result(result)
        if not run_id or report is None:
            return
        tags = None  # where the trial runs, sent with its first result's epoch (one request)
        if run_id not in self._tagged:
            self._tagged.add(run_id)
            tags = {
                TAG_STATUS: RUNNING,
                TAG_NODE_IP: _node_address(report.node_id) or result.get("node_ip", ""),
                TAG_HOSTNAME: result.get("hostname", ""),
                TAG_DEVICE: report.device,
                TAG_PEAK_FLOPS: report.peak,
            }
            for rank, (node_id, device) in enumerate(report.workers):  # a data-parallel trial's
                tags[f"{TAG_WORKER_PREFIX}{rank}.node_ip"] = _node_address(node_id) or ""
                tags[f"{TAG_WORKER_PREFIX}{rank}.device"] = device
        fallback = report.checkpoint_fallback
        if fallback and (run_id, fallback) not in self._tagged:
            # A damaged checkpoint was skipped on restore (trainable.restore): say so on the run.
            self._tagged.add((run_id, fallback))
            self.delivery.submit(f"checkpoint fallback tag of run {run_id}",
                                 partial(write_tags, self.runs.uri, run_id, {TAG_CHECKPOINT_FALLBACK: fallback}))
        self.log_epoch(run_id, result, tags=tags)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        run_id = trial.config.get(RUN_ID_KEY)
        report = TrialReport.from_result(trial.last_result)
        value = report.value(self.metric) if report else None
        if not run_id or value is None:
            return
        if not better(value, self._best.get(run_id), mode=self.mode):
            return
        self._best[run_id] = value
        # Copy now: Tune may delete this checkpoint once a better one exists, before the upload runs.
        staged = tempfile.mkdtemp(prefix="xsweep-best-")
        checkpoint.to_directory(staged)
        Path(staged, "best.json").write_text(json.dumps(
            {"epoch": report.epoch, "metric": self.metric, "value": value, "trial_id": trial.trial_id}
        ))
        self.delivery.submit(f"best checkpoint of run {run_id}",
                             partial(upload_best_checkpoint, self.runs.uri, run_id, staged))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end_trial(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end_trial(trial, errored=True)

    def _end_trial(self, trial, *, errored: bool) -> None:
        run_id = trial.config.get(RUN_ID_KEY)
        if not run_id:
            return
        status = ended_status(trial.last_result, errored=errored)
        mlflow_status = "FAILED" if status == FAILED else "FINISHED"
        self.delivery.submit(f"status of run {run_id}", partial(end_run, self.runs.uri, run_id, status, mlflow_status))

    # ---- consistency with Tune's own records ------------------------------------------------
    def sync_results(self, result_grid) -> None:
        """Deliver every epoch Tune recorded that MLflow lacks (e.g. after the driver was killed)."""
        for result in result_grid:
            run_id = (result.config or {}).get(RUN_ID_KEY)
            frame = result.metrics_dataframe
            if not run_id or frame is None or EPOCH_KEY not in frame:
                continue
            for row in frame.to_dict("records"):
                if is_finite_number(row.get(EPOCH_KEY)):
                    self.log_epoch(run_id, row)
