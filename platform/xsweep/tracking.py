"""MLflow for a sweep: the sweep is a parent run and every trial a child run under it.

All MLflow writes happen in the driver, never in the trial processes: trials report to Tune,
and the driver's Tune callback turns each report into one batched MLflow request per epoch,
delivered in the background (xsweep.delivery). That keeps tracking off the training path, lets
a trial on any node be tracked even to a local sqlite store, and means a single place retries
when the server is away. Tune's results on storage stay the source of truth: `sync_results`
delivers whatever MLflow is missing (after a driver crash, say), skipping epochs already there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

# Our own retry loop (delivery.py) handles outages; MLflow's built-in one would block a single
# request for minutes before we could even log that the server is gone.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from ray import tune  # noqa: E402

from xsweep.delivery import retry, shared_delivery  # noqa: E402
from xsweep.errors import UserError  # noqa: E402
from xsweep.trial_config import RUN_ID_KEY, resolve_trial_config, sampled_params, trial_name  # noqa: E402

log = logging.getLogger("xsweep.tracking")

EPOCH_METRICS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "epoch_seconds",
    "images_per_second",
)
TAG_KIND = "xsweep.kind"  # "sweep" | "trial" | "reproduction"
TAG_TRIAL_ID = "xsweep.trial_id"
TAG_STATUS = "xsweep.status"
TAG_SWEEP_PATH = "xsweep.sweep_path"
TAG_CONFIG = "xsweep.config"
MLFLOW_BATCH_LIMIT = 100  # params or tags per log_batch request (MLflow's limit)
# How long opening a trial's run may wait for an absent server before the sweep gives up.
OPEN_RUN_DEADLINE_S = 600.0


class TrackingUnavailable(UserError):
    """The tracking server cannot be reached; the message is one line naming tracking.uri."""


def default_uri(workdir: str | os.PathLike) -> str:
    """MLflow's own default (sqlite:///mlflow.db), made absolute: trials run in other folders."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def redact(uri: str) -> str:
    """The URI without a password, for messages and tags."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def check_reachable(uri: str, *, timeout_s: float = 5.0) -> None:
    """Fail fast, before any trial starts, when the tracking store cannot be reached."""
    import requests
    import sqlalchemy

    where = f"tracking.uri: cannot reach {redact(uri)}"
    if uri.startswith(("http://", "https://")):
        auth = None
        if os.environ.get("MLFLOW_TRACKING_USERNAME"):
            auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s, auth=auth)
        except requests.RequestException as exc:
            raise TrackingUnavailable(f"{where}: {_reason(exc)} (start the server or fix tracking.uri)") from None
        if response.status_code >= 500:
            raise TrackingUnavailable(f"{where}: HTTP {response.status_code} (check the server's log)")
        return
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir():
            raise TrackingUnavailable(f"{where}: folder {folder} does not exist (create it or fix tracking.uri)")
        return
    if uri.startswith(("postgresql", "mysql", "mssql")):
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=_connect_timeout(uri, timeout_s))
            with engine.connect():
                pass
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any driver error means "unreachable" to the user
            raise TrackingUnavailable(f"{where}: {_reason(exc)} (start the database or fix tracking.uri)") from None


def _connect_timeout(uri: str, timeout_s: float) -> dict:
    return {"connect_timeout": int(timeout_s)} if uri.startswith("postgresql") else {}


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "timed out", "could not connect"):
        if known.lower() in text.lower():
            return known.lower()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return redact(first)[:160]


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1}; lists and search-space entries become JSON."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not path.startswith("search.space."):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
    for chunk in _chunks(items, MLFLOW_BATCH_LIMIT):
        client.log_batch(run_id, params=chunk)


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    items = [RunTag(k, str(v)) for k, v in tags.items()]
    for chunk in _chunks(items, MLFLOW_BATCH_LIMIT):
        client.log_batch(run_id, tags=chunk)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty() -> bool:
    """Whether the project's checkout has uncommitted or untracked changes."""
    out = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10,
                         cwd=Path(__file__).resolve().parent)
    return bool(out.stdout.strip())


def _versions() -> dict[str, str]:
    import optuna
    import ray
    import torch

    return {
        "xsweep.version.ray": ray.__version__,
        "xsweep.version.torch": torch.__version__,
        "xsweep.version.mlflow": mlflow.__version__,
        "xsweep.version.optuna": optuna.__version__,
    }


class SweepRuns:
    """The sweep's parent run and the opening of its child runs. Picklable (Tune pickles it)."""

    def __init__(self, *, uri: str, experiment_id: str, parent_run_id: str, base_config: dict):
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.base_config = base_config
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _client=None)

    def __call__(self, trial_id: str, tune_config: dict) -> str:
        """Open (or find again) the child run of a trial; called by the searcher before it starts."""
        return retry(f"opening the run of trial {trial_id}", lambda: self._open(trial_id, tune_config),
                     deadline_s=OPEN_RUN_DEADLINE_S)

    def _open(self, trial_id: str, tune_config: dict) -> str:
        # A resumed sweep can ask again for a trial it already opened: find it rather than duplicate.
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        config = resolve_trial_config(self.base_config, tune_config)
        run = self.client.create_run(
            self.experiment_id,
            run_name=trial_name(tune_config),
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                TAG_KIND: "trial",
                TAG_TRIAL_ID: trial_id,
                TAG_STATUS: "pending",
                "xsweep.searched": json.dumps(sampled_params(tune_config), sort_keys=True),
                # The exact config `fit` runs, typed (params are strings): `xsweep reproduce`
                # re-runs a trial from MLflow alone.
                TAG_CONFIG: json.dumps(config, sort_keys=True),
            },
        )
        log_params(self.client, run.info.run_id, flatten(config))
        return run.info.run_id


def start_sweep(spec, *, uri: str, sweep_path: str, ray_address: str) -> SweepRuns:
    """Create the experiment (once) and the sweep's parent run with the spec and provenance."""
    import yaml

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(spec.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(spec.experiment)
    resolved = spec.resolved()
    tags = {
        TAG_KIND: "sweep",
        TAG_SWEEP_PATH: sweep_path,
        TAG_STATUS: "running",
        "xsweep.spec_sha256": spec.sha256(),
        "xsweep.ray_address": ray_address,
        "xsweep.storage_path": sweep_path,
        **_versions(),
    }
    commit = git_commit()
    if commit:
        tags["xsweep.git_commit"] = commit
        # A commit alone cannot tell that the code that ran had local edits.
        tags["xsweep.git_dirty"] = str(git_dirty()).lower()
    run = client.create_run(experiment_id, run_name=Path(sweep_path).name, tags=tags)
    run_id = run.info.run_id
    log_params(client, run_id, flatten(resolved))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.yaml").write_text(spec.text)
        Path(tmp, "spec.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        client.log_artifacts(run_id, tmp, artifact_path="spec")
    return SweepRuns(uri=uri, experiment_id=experiment_id, parent_run_id=run_id,
                     base_config=spec.base_trial_config())


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def trial_status(result: dict | None, *, epochs: int, errored: bool) -> str:
    """completed | stopped (early, by ASHA) | diverged | failed — the status tag users filter on."""
    if errored:
        return "failed"
    if not result:
        return "failed"
    if result.get("diverged"):
        return "diverged"
    return "completed" if int(result.get("epoch", 0)) >= epochs else "stopped"


class TrackingCallback(tune.Callback):
    """Turns Tune's events into MLflow writes on the trials' child runs (see module doc)."""

    def __init__(self, runs: SweepRuns, *, metric: str, mode: str, epochs: int):
        self.runs = runs
        self.metric = metric
        self.mode = mode
        self.epochs = epochs
        self._init_transient()

    def _init_transient(self) -> None:
        self.delivery = shared_delivery()
        self._logged_steps: dict[str, set[int]] = {}  # run id -> epochs already in MLflow
        self._best: dict[str, float] = {}  # run id -> best metric whose checkpoint was uploaded
        self._tagged: set[str] = set()
        self._steps_lock = threading.Lock()
        self.callback_seconds = 0.0  # driver time spent in this callback (benchmarks/sweep_overhead.py)
        self.results_seen = 0

    def __getstate__(self) -> dict:
        return {k: self.__dict__[k] for k in ("runs", "metric", "mode", "epochs")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_transient()

    # ---- metrics -----------------------------------------------------------------------------
    def log_epoch(self, run_id: str, result: dict) -> None:
        epoch = int(result["epoch"])
        metrics = {k: float(result[k]) for k in EPOCH_METRICS if k in result and result[k] is not None}
        timestamp = int(float(result.get("timestamp", 0)) * 1000) or None
        self.delivery.submit(f"metrics of epoch {epoch} for run {run_id}",
                             lambda: self._write_epoch(run_id, epoch, metrics, timestamp))

    def _write_epoch(self, run_id: str, epoch: int, metrics: dict, timestamp: int | None) -> None:
        logged = self._steps_of(run_id)
        if epoch in logged:
            return  # already in MLflow (a retried or re-synced epoch): never log a step twice
        ts = timestamp or int(time.time() * 1000)
        batch = [Metric(key, value, ts, epoch) for key, value in metrics.items()]
        self.runs.client.log_batch(run_id, metrics=batch)
        logged.add(epoch)

    def _steps_of(self, run_id: str) -> set[int]:
        with self._steps_lock:
            if run_id not in self._logged_steps:
                history = self.runs.client.get_metric_history(run_id, "val_accuracy")
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
        if not run_id or "epoch" not in result:
            return
        if run_id not in self._tagged:
            self._tagged.add(run_id)
            tags = {
                TAG_STATUS: "running",
                "xsweep.node_ip": result.get("node_ip", ""),
                "xsweep.hostname": result.get("hostname", ""),
                "xsweep.device": result.get("device", ""),
            }
            self.delivery.submit(f"tags of run {run_id}", lambda: set_tags(self.runs.client, run_id, tags))
        self.log_epoch(run_id, result)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        started = time.perf_counter()
        self._on_checkpoint(trial, checkpoint)
        self.callback_seconds += time.perf_counter() - started

    def _on_checkpoint(self, trial, checkpoint) -> None:
        run_id = trial.config.get(RUN_ID_KEY)
        result = trial.last_result or {}
        value = result.get(self.metric)
        if not run_id or not _finite(value):
            return
        best = self._best.get(run_id)
        if best is not None and (value <= best if self.mode == "max" else value >= best):
            return
        self._best[run_id] = value
        # Copy now: Tune may delete this checkpoint once a better one exists, before the upload runs.
        staged = tempfile.mkdtemp(prefix="xsweep-best-")
        checkpoint.to_directory(staged)
        Path(staged, "best.json").write_text(json.dumps(
            {"epoch": result.get("epoch"), "metric": self.metric, "value": value, "trial_id": trial.trial_id}
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
        status = trial_status(trial.last_result, epochs=self.epochs, errored=errored)
        mlflow_status = "FAILED" if status == "failed" else "FINISHED"

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
            if not run_id or frame is None or "epoch" not in frame:
                continue
            for row in frame.to_dict("records"):
                if _finite(row.get("epoch")):
                    self.log_epoch(run_id, row)
