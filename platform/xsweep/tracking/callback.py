"""The Tune callback that turns a sweep's events into MLflow writes on its trials' child runs.

It runs in the driver: trials only report to Tune (see runs.py for why), and every write
goes through the driver's one background delivery queue, so tracking stays off the training path.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

from mlflow.entities import Metric as MlflowMetric
from ray import tune

from xsweep.contract import EPOCH_KEY, FAILED, RUNNING, TrialReport, ended_status
from xsweep.metrics import ACCURACY, better, is_finite_number
from xsweep.spec.trial import RUN_ID_KEY
from xsweep.tracking.delivery import shared_delivery
from xsweep.tracking.runs import SweepRuns, set_tags
from xsweep.tracking.tags import (
    TAG_CHECKPOINT_FALLBACK, TAG_DEVICE, TAG_HOSTNAME, TAG_NODE_IP, TAG_PEAK_FLOPS, TAG_STATUS, TAG_WORKER_PREFIX,
)


def _node_address(node_id: str | None) -> str | None:
    """The address Ray knows a node by (what `ray start --node-ip-address` set)."""
    import ray

    if not node_id or not ray.is_initialized():
        return None
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return node.get("NodeManagerAddress")
    return None


# MLflow's limit on the metrics of one log_batch call.
MAX_METRICS_PER_BATCH = 1000


def _system_metrics(samples) -> list[MlflowMetric]:
    """A report's system samples (training/system.py) as MLflow metrics; none when they did not
    survive the way back (a re-sync from Tune's CSV file holds them as text)."""
    if not isinstance(samples, list):
        return []
    return [MlflowMetric(name, float(value), int(ms), int(step))
            for ms, step, values in samples for name, value in values.items() if is_finite_number(value)]


class TrackingCallback(tune.Callback):
    """Turns Tune's events into MLflow writes on the trials' child runs (see module doc)."""

    def __init__(self, runs: SweepRuns, *, metric: str, mode: str):
        self.runs = runs
        self.metric = metric
        self.mode = mode
        self._init_transient()

    def _init_transient(self) -> None:
        self.delivery = shared_delivery()
        self._logged_steps: dict[str, set[int]] = {}  # run id -> epochs already in MLflow
        self._best: dict[str, float] = {}  # run id -> best metric whose checkpoint was uploaded
        self._tagged: set = set()  # run ids (and (run id, fallback) pairs) already tagged
        self._steps_lock = threading.Lock()
        self.callback_seconds = 0.0  # driver time spent in this callback (benchmarks/sweep_overhead.py)
        self.results_seen = 0

    def __getstate__(self) -> dict:
        return {k: self.__dict__[k] for k in ("runs", "metric", "mode")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_transient()

    # ---- metrics -----------------------------------------------------------------------------
    def log_epoch(self, run_id: str, result: dict) -> None:
        report = TrialReport.from_result(result)
        epoch, metrics = report.epoch, report.metrics  # every metric of xsweep.metrics, nothing else
        timestamp = int(float(result.get("timestamp", 0)) * 1000) or None
        system = _system_metrics(report.system)
        self.delivery.submit(f"metrics of epoch {epoch} for run {run_id}",
                             lambda: self._write_epoch(run_id, epoch, metrics, timestamp, system))

    def _write_epoch(self, run_id: str, epoch: int, metrics: dict, timestamp: int | None,
                     system: list[MlflowMetric]) -> None:
        logged = self._steps_of(run_id)
        if epoch in logged:
            return  # already in MLflow (a retried or re-synced epoch): never log a step twice
        ts = timestamp or int(time.time() * 1000)
        # The epoch's system samples first, its metrics last, so that the epoch counts as logged
        # (its val_accuracy is there) only once all of it is. A retry after a partial write sends
        # identical samples again, which MLflow's log_batch skips.
        for start in range(0, len(system), MAX_METRICS_PER_BATCH):
            self.runs.client.log_batch(run_id, metrics=system[start:start + MAX_METRICS_PER_BATCH])
        self.runs.client.log_batch(run_id, metrics=[MlflowMetric(key, value, ts, epoch)
                                                    for key, value in metrics.items()])
        logged.add(epoch)

    def _steps_of(self, run_id: str) -> set[int]:
        with self._steps_lock:
            if run_id not in self._logged_steps:
                history = self.runs.client.get_metric_history(run_id, ACCURACY)  # logged every epoch
                self._logged_steps[run_id] = {m.step for m in history}
            return self._logged_steps[run_id]

    # ---- Tune events -------------------------------------------------------------------------
    def on_trial_result(self, iteration, trials, trial, result, **info):
        started = time.perf_counter()
        self._on_result(trial, result)
        self.callback_seconds += time.perf_counter() - started
        self.results_seen += 1

    def _on_result(self, trial, result) -> None:
        run_id = trial.config.get(RUN_ID_KEY)
        report = TrialReport.from_result(result)
        if not run_id or report is None:
            return
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
            self.delivery.submit(f"tags of run {run_id}", lambda: set_tags(self.runs.client, run_id, tags))
        fallback = report.checkpoint_fallback
        if fallback and (run_id, fallback) not in self._tagged:
            # A damaged checkpoint was skipped on restore (trainable.restore): say so on the run.
            self._tagged.add((run_id, fallback))
            self.delivery.submit(f"checkpoint fallback tag of run {run_id}",
                                 lambda: set_tags(self.runs.client, run_id, {TAG_CHECKPOINT_FALLBACK: fallback}))
        self.log_epoch(run_id, result)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        started = time.perf_counter()
        self._on_checkpoint(trial, checkpoint)
        self.callback_seconds += time.perf_counter() - started

    def _on_checkpoint(self, trial, checkpoint) -> None:
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
        self.delivery.submit(f"best checkpoint of run {run_id}", lambda: self._upload(run_id, staged))

    def _upload(self, run_id: str, staged: str) -> None:
        self.runs.client.log_artifacts(run_id, staged, artifact_path="checkpoints/best")
        shutil.rmtree(staged, ignore_errors=True)

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

        def write() -> None:
            set_tags(self.runs.client, run_id, {TAG_STATUS: status})
            self.runs.client.set_terminated(run_id, status=mlflow_status)

        self.delivery.submit(f"status of run {run_id}", write)

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
