"""MLflow for a sweep: the sweep is a parent run and every trial a child run under it.

All MLflow writes happen in the driver, never in the trial processes: trials report to Tune,
and the driver's Tune callback turns each report into one batched MLflow request per epoch,
delivered in the background (delivery.py; the callback is callback.py). That keeps tracking off
the training path, lets a trial on any node be tracked even to a local sqlite store, and means a
single place retries when the server is away. Tune's results on storage stay the source of truth: `sync_results`
delivers whatever MLflow is missing (after a driver crash, say), skipping epochs already there.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from xsweep.contract import PENDING
from xsweep.spec.trial import resolve_trial_config, sampled_params, trial_name
from xsweep.tracking.delivery import retry
from xsweep.tracking.query import search_all
from xsweep.tracking.tags import (
    TAG_CONFIG, TAG_GIT_COMMIT, TAG_GIT_DIRTY, TAG_KIND, TAG_RAY_ADDRESS, TAG_SEARCHED, TAG_SPEC_SHA256, TAG_STATUS,
    TAG_STORAGE_PATH, TAG_SWEEP_PATH, TAG_SWEEP_VERSION, TAG_TRIAL_ID, TAG_VERSION_PREFIX,
)

MLFLOW_BATCH_LIMIT = 100  # params or tags per log_batch request (MLflow's limit)
# How long opening a trial's run may wait for an absent server before the sweep gives up.
OPEN_RUN_DEADLINE_S = 600.0


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


@contextlib.contextmanager
def fluent_tracking_to(uri: str):
    """MLflow's fluent API (mlflow.start_run, mlflow.<flavor>.log_model) writes to `uri` for the
    block. mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI for the whole process: restored
    afterwards, so a notebook's later MLflow calls and sweeps go where they went before."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None unsets the variable again


def _versions() -> dict[str, str]:
    """The installed versions, read from package metadata: importing torch here just to ask
    would cost the driver seconds of start-up."""
    from importlib.metadata import version

    return {f"{TAG_VERSION_PREFIX}{name}": version(name) for name in ("ray", "torch", "mlflow", "optuna")}


class SweepRuns:
    """The sweep's parent run and the opening of its child runs. Picklable (Tune pickles it)."""

    def __init__(self, *, uri: str, experiment_id: str, parent_run_id: str, base_config: dict, version: int = 1):
        self.uri = uri
        self.version = version  # of the sweep (xsweep extend): tagged on every child run it opens
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
            filter_string=(f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' "
                           f"and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"),
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
                TAG_STATUS: PENDING,
                TAG_SEARCHED: json.dumps(sampled_params(tune_config), sort_keys=True),
                # The exact config `fit` runs, typed (params are strings): `xsweep reproduce`
                # re-runs a trial from MLflow alone.
                TAG_CONFIG: json.dumps(config, sort_keys=True),
                TAG_SWEEP_VERSION: str(getattr(self, "version", 1)),  # state pickled before versions: 1
            },
        )
        log_params(self.client, run.info.run_id, flatten(config))
        return run.info.run_id


    def child_run_ids(self) -> list[str]:
        """The child runs of this version of the sweep (runs opened before versions existed: 1)."""
        found = search_all(self.client, [self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'")
        version = str(getattr(self, "version", 1))
        return [run.info.run_id for run in found if run.data.tags.get(TAG_SWEEP_VERSION, "1") == version]

    def delete_orphans(self, trial_run_ids: set[str]) -> list[str]:
        """Soft-delete child runs of this version no trial of it owns: those the searcher opened
        just before a killed driver's last saved state, which the resume then suggested afresh.
        Returns them."""
        orphans = [run_id for run_id in self.child_run_ids() if run_id not in trial_run_ids]
        for run_id in orphans:
            self.client.delete_run(run_id)
        return orphans


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
        TAG_SPEC_SHA256: spec.sha256(),
        TAG_RAY_ADDRESS: ray_address,
        TAG_STORAGE_PATH: sweep_path,
        **_versions(),
    }
    commit = git_commit()
    if commit:
        tags[TAG_GIT_COMMIT] = commit
        # A commit alone cannot tell that the code that ran had local edits.
        tags[TAG_GIT_DIRTY] = str(git_dirty()).lower()
    run = client.create_run(experiment_id, run_name=Path(sweep_path).name, tags=tags)
    run_id = run.info.run_id
    log_params(client, run_id, flatten(resolved))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.yaml").write_text(spec.text)
        Path(tmp, "spec.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        client.log_artifacts(run_id, tmp, artifact_path="spec")
    return SweepRuns(uri=uri, experiment_id=experiment_id, parent_run_id=run_id,
                     base_config=spec.base_trial_config())
