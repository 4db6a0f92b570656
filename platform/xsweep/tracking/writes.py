"""The MLflow writes of a sweep, as functions of plain arguments that the tracking writer process
(writer.py) runs: each is queued pickled, as `functools.partial(write, uri, ...)`, so it names
its tracking server instead of carrying a client, and can cross into the writer's process.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from typing import Any

from mlflow.entities import Metric as MlflowMetric
from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from xsweep.contract import PENDING
from xsweep.metrics import ACCURACY, constant_metrics
from xsweep.tracking.tags import (
    TAG_CONFIG, TAG_KIND, TAG_PHASE, TAG_SEARCHED, TAG_STATUS, TAG_SWEEP_VERSION, TAG_TRIAL_ID, TAG_VARIANT,
)

MLFLOW_BATCH_LIMIT = 100  # params or tags per log_batch request (MLflow's limit)
MAX_METRICS_PER_BATCH = 1000  # metrics per log_batch request (MLflow's limit)
TRIAL_KIND, RESERVED_KIND = "trial", "reserved"  # a reserved run is not a trial's until claimed

_clients: dict[str, MlflowClient] = {}
_logged_steps: dict[str, set[int]] = {}  # run id -> epochs already in MLflow, as this process knows
_lock = threading.Lock()


def client_for(uri: str) -> MlflowClient:
    """This process's one client of a tracking server (a client holds its database connections)."""
    with _lock:
        if uri not in _clients:
            _clients[uri] = MlflowClient(tracking_uri=uri)
        return _clients[uri]


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


def log_batches(client: MlflowClient, run_id: str, *, params: dict | None = None, tags: dict | None = None) -> None:
    """Params and tags in as few log_batch requests as MLflow's limits allow (each request is one
    transaction, and one round trip to the server)."""
    params = [Param(k, "None" if v is None else str(v)) for k, v in (params or {}).items()]
    tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for start in range(0, max(len(params), len(tags)), MLFLOW_BATCH_LIMIT):
        client.log_batch(run_id, params=params[start:start + MLFLOW_BATCH_LIMIT],
                         tags=tags[start:start + MLFLOW_BATCH_LIMIT])


def log_params(client: MlflowClient, run_id: str, params: dict) -> None:
    log_batches(client, run_id, params=params)


def set_tags(client: MlflowClient, run_id: str, tags: dict) -> None:
    log_batches(client, run_id, tags=tags)


def write_tags(uri: str, run_id: str, tags: dict) -> None:
    set_tags(client_for(uri), run_id, tags)


def write_epoch(uri: str, run_id: str, epoch: int, metrics: dict, timestamp: int | None,
                system: list[tuple[str, float, int, int]], tags: dict | None = None) -> None:
    """One epoch's metrics and its system samples (name, value, ms, step), each epoch once; `tags`
    (a trial's first result sets some) go in the same request, and are set even if the epoch is not."""
    client = client_for(uri)
    logged = _steps_of(client, run_id)
    if tags and (epoch in logged or len(tags) > MLFLOW_BATCH_LIMIT):
        set_tags(client, run_id, tags)
        tags = None
    if epoch in logged:
        return  # already in MLflow (a retried or re-synced epoch): never log a step twice
    if logged:  # the model's own figures (parameters, GFLOPs) with the run's first epoch only
        metrics = {key: value for key, value in metrics.items() if key not in constant_metrics()}
    ts = timestamp or int(time.time() * 1000)
    # One request when it fits (MLflow writes a batch in one transaction). Whatever the split,
    # val_accuracy goes last: the epoch counts as logged once it is there, so only once all of
    # it is. A retry after a partial write sends identical values again, which log_batch skips.
    batch = [MlflowMetric(*sample) for sample in system]
    batch += sorted((MlflowMetric(key, value, ts, epoch) for key, value in metrics.items()),
                    key=lambda metric: metric.key == ACCURACY)
    size = MAX_METRICS_PER_BATCH
    chunks = [batch[start:start + size] for start in range(0, len(batch), size)] or [[]]
    for chunk in chunks[:-1]:
        client.log_batch(run_id, metrics=chunk)
    client.log_batch(run_id, metrics=chunks[-1], tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
    logged.add(epoch)


def _steps_of(client: MlflowClient, run_id: str) -> set[int]:
    with _lock:
        if run_id not in _logged_steps:
            history = client.get_metric_history(run_id, ACCURACY)  # logged every epoch
            _logged_steps[run_id] = {m.step for m in history}
        return _logged_steps[run_id]


def upload_best_checkpoint(uri: str, run_id: str, staged: str) -> None:
    client_for(uri).log_artifacts(run_id, staged, artifact_path="checkpoints/best")
    shutil.rmtree(staged, ignore_errors=True)


def end_run(uri: str, run_id: str, status: str, mlflow_status: str) -> None:
    client = client_for(uri)
    set_tags(client, run_id, {TAG_STATUS: status})
    client.set_terminated(run_id, status=mlflow_status)


def create_reserved_run(uri: str, experiment_id: str, parent_run_id: str, version: int) -> str:
    """A child run of the sweep that no trial owns yet (runs.py ReservedRuns)."""
    return client_for(uri).create_run(experiment_id, tags={
        "mlflow.parentRunId": parent_run_id, TAG_KIND: RESERVED_KIND, TAG_STATUS: PENDING,
        TAG_SWEEP_VERSION: str(version),
    }).info.run_id


def delete_run(uri: str, run_id: str) -> None:
    client_for(uri).delete_run(run_id)


def claim_run(uri: str, run_id: str, *, trial_id: str, tune_config: dict, base_config: dict,
              provenance: dict[str, str]) -> None:
    """Make a reserved run the trial's: its name, the data it trains on, its tags and params."""
    from xsweep.errors import DataError
    from xsweep.spec.trial import PHASE_KEY, VARIANT_KEY, resolve_trial_config, sampled_params, trial_name
    from xsweep.tracking.provenance import dataset_input
    from xsweep.training.datasets import data_fingerprint

    client = client_for(uri)
    config = resolve_trial_config(base_config, tune_config)
    # The data it trains on, as MLflow's dataset input (provenance.py): reproduce compares it.
    # Data that cannot be read now (moved mid-sweep) leaves the input out, not the run's tags.
    try:
        fingerprint = data_fingerprint(config["data"])
    except (DataError, OSError):
        fingerprint = None
    if fingerprint is not None:
        client.log_inputs(run_id, datasets=[dataset_input(fingerprint)])
    log_batches(client, run_id, params=flatten(config), tags={
        MLFLOW_RUN_NAME: trial_name(tune_config),  # MLflow renames the run from this tag
        TAG_KIND: TRIAL_KIND,
        TAG_TRIAL_ID: trial_id,
        TAG_SEARCHED: json.dumps(sampled_params(tune_config), sort_keys=True),
        # The exact config `fit` runs, typed (params are strings): `xsweep reproduce`
        # re-runs a trial from MLflow alone.
        TAG_CONFIG: json.dumps(config, sort_keys=True),
        **provenance,  # the Source and Version columns (provenance.source_tags)
        # An ablation's trials (search/ablation.py): which phase, which variant.
        **({TAG_PHASE: tune_config[PHASE_KEY], TAG_VARIANT: tune_config.get(VARIANT_KEY, "")}
           if PHASE_KEY in tune_config else {}),
    })
    with _lock:  # a reserved run has no metrics: its first epoch need not ask MLflow which it has
        _logged_steps.setdefault(run_id, set())
