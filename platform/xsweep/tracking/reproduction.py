"""The MLflow run that records a reproduction (`xsweep reproduce`): beside the sweep, in its
experiment, tagged with the run it reproduces, so a later reader finds the evidence there."""

from __future__ import annotations

import time

from mlflow.entities import Metric as MlflowMetric
from mlflow.tracking import MlflowClient

from xsweep.metrics import METRICS
from xsweep.tracking.tags import (
    TAG_DIFFERENCE, TAG_IDENTICAL, TAG_KIND, TAG_MODE, TAG_NOTE, TAG_REPRODUCES, TAG_SEED_BAND, TAG_VERDICT,
)
from xsweep.tracking.trials import Trial
from xsweep.tracking.writes import log_params, set_tags


class ReproductionRun:
    """Opened before the work so a re-train's epochs stream into it; left FAILED (KILLED on Ctrl-C)
    if the work never reaches a verdict."""

    def __init__(self, client: MlflowClient, trial: Trial, *, mode: str, params: dict):
        self.client = client
        self.name = f"reproduce {trial.name}"
        self.run_id = client.create_run(trial.experiment_id, run_name=self.name, tags={
            TAG_KIND: "reproduction", TAG_REPRODUCES: trial.run_id, TAG_MODE: mode,
        }).info.run_id
        self.finished = False
        log_params(client, self.run_id, params)

    def __enter__(self) -> ReproductionRun:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if not self.finished:
            self.client.set_terminated(self.run_id, status="KILLED" if kind is KeyboardInterrupt else "FAILED")

    def log(self, epoch: int, metrics: dict) -> None:
        now = int(time.time() * 1000)
        batch = [MlflowMetric(k, float(v), now, epoch) for k, v in metrics.items() if k in METRICS]
        self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, *, passed: bool, difference: str | None = None, identical: bool | None = None,
               seed_band: str | None = None, note: str = "") -> None:
        """Tag the verdict and what it rests on (the difference, with its unit; whether every value
        was bit-equal; "within" or "outside" the seed band), end the run and say where it is."""
        tags = {TAG_VERDICT: "pass" if passed else "fail"}
        if difference is not None:
            tags[TAG_DIFFERENCE] = difference
        if identical is not None:
            tags[TAG_IDENTICAL] = str(identical).lower()
        if seed_band is not None:
            tags[TAG_SEED_BAND] = seed_band
        if note:
            tags[TAG_NOTE] = note
        set_tags(self.client, self.run_id, tags)
        self.client.set_terminated(self.run_id, status="FINISHED")
        self.finished = True
        print(f"logged as run {self.run_id} ('{self.name}')")
