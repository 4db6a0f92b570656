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
import queue
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from xsweep.contract import PENDING
from xsweep.spec.trial import PHASE_KEY, VARIANT_KEY, resolve_trial_config, sampled_params, trial_name
from xsweep.tracking.delivery import retry, shared_delivery
from xsweep.tracking.provenance import (
    MLFLOW_GIT_COMMIT, PACKAGES_ARTIFACT, dataset_input, installed_packages, packages_text,
)
from xsweep.tracking.query import search_all
from xsweep.tracking.tags import (
    TAG_ABLATION, TAG_CONFIG, TAG_GIT_COMMIT, TAG_GIT_DIRTY, TAG_KIND, TAG_PHASE, TAG_RAY_ADDRESS, TAG_SEARCHED, TAG_SPEC_SHA256,
    TAG_STATUS, TAG_STORAGE_PATH, TAG_SWEEP_PATH, TAG_SWEEP_VERSION, TAG_TRIAL_ID, TAG_VARIANT, TAG_VERSION_PREFIX,
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


# Trial runs created ahead of need: enough for a burst of suggestions when a sweep starts.
RUNS_AHEAD = 8
TRIAL_KIND, RESERVED_KIND = "trial", "reserved"  # a reserved run is not a trial's until claimed


class ReservedRuns:
    """Child runs created ahead of need by a thread of their own, so that opening a trial's run
    inside searcher.suggest, on Tune's event loop, takes one from a queue instead of waiting for
    the tracking server (48-107 ms a trial before, docs/SCALING.md). A reserved run is tagged
    xsweep.kind=reserved, which every query of trials leaves out, until a trial claims it."""

    def __init__(self, create: Callable[[], str], delete: Callable[[str], None], *, ahead: int = RUNS_AHEAD) -> None:
        self._create, self._delete = create, delete
        self._ready: queue.Queue[str] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="xsweep-run-reserve", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        while not self._stop.is_set():
            try:
                run_id = retry("reserving a trial run", self._create, deadline_s=OPEN_RUN_DEADLINE_S)
            except Exception:  # noqa: BLE001 - take() creates runs in place from now on, and says why
                return
            while not self._stop.is_set():
                try:
                    self._ready.put(run_id, timeout=0.5)  # waits while the reserve is full
                    break
                except queue.Full:
                    continue
            else:
                self._discard(run_id)  # reserved as the sweep ended: no trial will claim it
        self._drain()  # a run put just as close() drained

    def take(self) -> str | None:
        """A reserved run, or None when none can come (the thread gave up)."""
        while True:
            try:
                return self._ready.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive():
                    return None

    def close(self) -> None:
        """Stop reserving, and delete the runs reserved and never claimed. The deletions go to the
        delivery queue, which the end of a sweep flushes: a tracking server that is down right then
        delays them (or leaves them, hidden as reserved), never the sweep's end."""
        self._stop.set()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                run_id = self._ready.get_nowait()
            except queue.Empty:
                return
            self._discard(run_id)

    def _discard(self, run_id: str) -> None:
        shared_delivery().submit(f"deleting the unclaimed run {run_id}", lambda: self._delete(run_id))


_reserves: list[ReservedRuns] = []  # every reserve of this process (a resumed searcher has its own)


def release_reserved_runs() -> None:
    """At the end of a sweep, finished or not: stop every reserve and delete its unclaimed runs."""
    while _reserves:
        _reserves.pop().close()


class SweepRuns:
    """The sweep's parent run and the opening of its child runs. Picklable (Tune pickles it)."""

    def __init__(self, *, uri: str, experiment_id: str, parent_run_id: str, base_config: dict, version: int = 1):
        self.uri = uri
        self.version = version  # of the sweep (xsweep extend): tagged on every child run it opens
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.base_config = base_config
        self.opened: dict[str, str] = {}  # trial id -> its run id
        self.git_commit = git_commit()  # of the code opening the runs, tagged on every trial run
        self._client: MlflowClient | None = None
        self._reserve: ReservedRuns | None = None
        self._restored = False

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def __getstate__(self) -> dict:
        # Unpickled means restored by `xsweep resume`: trials opened after the state was saved have
        # runs this object does not know, which it then looks for before opening new ones.
        return dict(self.__dict__, _client=None, _reserve=None, _restored=True)

    def __call__(self, trial_id: str, tune_config: dict) -> str:
        """The child run of a trial (the same one if asked again); called by the searcher before the
        trial starts. Takes a reserved run and queues the trial's name, tags and params on the
        delivery thread (delivered before anything else of the trial, in order)."""
        opened = getattr(self, "opened", None)
        if opened is None:  # state pickled before runs were reserved
            self.opened = opened = {}
        if trial_id not in opened and getattr(self, "_restored", True):
            found = retry(f"finding the run of trial {trial_id}", lambda: self._find(trial_id),
                          deadline_s=OPEN_RUN_DEADLINE_S)
            if found:
                opened[trial_id] = found
        if trial_id in opened:
            return opened[trial_id]
        if getattr(self, "_reserve", None) is None:
            self._reserve = ReservedRuns(self._create_reserved, lambda run_id: self.client.delete_run(run_id))
            _reserves.append(self._reserve)
        run_id = self._reserve.take() or retry("opening a trial run", self._create_reserved,
                                               deadline_s=OPEN_RUN_DEADLINE_S)
        opened[trial_id] = run_id
        shared_delivery().submit(f"the run of trial {trial_id}", lambda: self._claim(run_id, trial_id, tune_config))
        return run_id

    def _find(self, trial_id: str) -> str | None:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' "
                           f"and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"),
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def _create_reserved(self) -> str:
        return self.client.create_run(self.experiment_id, tags={
            "mlflow.parentRunId": self.parent_run_id, TAG_KIND: RESERVED_KIND, TAG_STATUS: PENDING,
            TAG_SWEEP_VERSION: str(getattr(self, "version", 1)),
        }).info.run_id

    def _claim(self, run_id: str, trial_id: str, tune_config: dict) -> None:
        from xsweep.errors import DataError
        from xsweep.training.datasets import data_fingerprint

        config = resolve_trial_config(self.base_config, tune_config)
        self.client.update_run(run_id, name=trial_name(tune_config))
        # The data it trains on, as MLflow's dataset input (provenance.py): reproduce compares it.
        # Data that cannot be read now (moved mid-sweep) leaves the input out, not the run's tags.
        try:
            fingerprint = data_fingerprint(config["data"])
        except (DataError, OSError):
            fingerprint = None
        if fingerprint is not None:
            self.client.log_inputs(run_id, datasets=[dataset_input(fingerprint)])
        set_tags(self.client, run_id, {
            TAG_KIND: TRIAL_KIND,
            TAG_TRIAL_ID: trial_id,
            TAG_SEARCHED: json.dumps(sampled_params(tune_config), sort_keys=True),
            # The exact config `fit` runs, typed (params are strings): `xsweep reproduce`
            # re-runs a trial from MLflow alone.
            TAG_CONFIG: json.dumps(config, sort_keys=True),
            **({MLFLOW_GIT_COMMIT: self.git_commit} if getattr(self, "git_commit", None) else {}),
            # An ablation's trials (sweep/ablation.py): which phase, which variant.
            **({TAG_PHASE: tune_config[PHASE_KEY], TAG_VARIANT: tune_config.get(VARIANT_KEY, "")}
               if PHASE_KEY in tune_config else {}),
        })
        log_params(self.client, run_id, flatten(config))

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
    if spec.ablation is not None:
        tags[TAG_ABLATION] = json.dumps(spec.ablation.model_dump(mode="json"))
    commit = git_commit()
    if commit:
        tags[TAG_GIT_COMMIT] = tags[MLFLOW_GIT_COMMIT] = commit
        # A commit alone cannot tell that the code that ran had local edits.
        tags[TAG_GIT_DIRTY] = str(git_dirty()).lower()
    run = client.create_run(experiment_id, run_name=Path(sweep_path).name, tags=tags)
    run_id = run.info.run_id
    log_params(client, run_id, flatten(resolved))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.yaml").write_text(spec.text)
        Path(tmp, "spec.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        client.log_artifacts(run_id, tmp, artifact_path="spec")
    client.log_text(run_id, packages_text(installed_packages()), PACKAGES_ARTIFACT)
    return SweepRuns(uri=uri, experiment_id=experiment_id, parent_run_id=run_id, base_config=spec.base_trial_config())
