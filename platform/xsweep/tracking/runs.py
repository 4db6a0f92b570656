"""MLflow for a sweep: the sweep is a parent run and every trial a child run under it.

All MLflow writes are the driver's, never the trial processes': trials report to Tune, and the
driver's Tune callback turns each report into one batched MLflow request per epoch, delivered in
the background by the driver's tracking writer, a process of its own (writer.py; the writes are
writes.py, the callback is callback.py). That keeps tracking off the training path and off the
driver's CPU, lets a trial on any node be tracked even to a local sqlite store, and means a
single place retries when the server is away. Tune's results on storage stay the source of truth: `sync_results`
delivers whatever MLflow is missing (after a driver crash, say), skipping epochs already there.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import tempfile
import threading
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Callable

from mlflow.tracking import MlflowClient

from xsweep.tracking.delivery import retry
from xsweep.tracking.provenance import (
    EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, MLFLOW_SOURCE_NAME, PACKAGES_ARTIFACT, installed_packages, packages_text,
    source_tags,
)
from xsweep.tracking.query import search_all
from xsweep.tracking.tags import (
    TAG_ABLATION, TAG_GIT_COMMIT, TAG_GIT_DIRTY, TAG_KIND, TAG_RAY_ADDRESS, TAG_SPEC_SHA256, TAG_STATUS,
    TAG_STORAGE_PATH, TAG_SWEEP_PATH, TAG_SWEEP_VERSION, TAG_TRIAL_ID, TAG_VERSION_PREFIX,
)
from xsweep.tracking.writer import shared_writer
from xsweep.tracking.writes import claim_run, create_reserved_run, delete_run, flatten, log_params

# How long opening a trial's run may wait for an absent server before the sweep gives up.
OPEN_RUN_DEADLINE_S = 600.0


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


# From this many trials at once, trial runs are made ahead of need. Below it each trial's run is made
# when Tune asks for the trial (50-110 ms, nothing beside a trial's seconds), so that MLflow's
# Duration is the trial's: a reserved run starts when it is made, and it waits in the reserve for a
# trial (MLflow cannot move a run's start).
RESERVE_FROM_CONCURRENT = 16

# How long Tune's loop waits for a trial's run before it goes on and asks again (searcher.py): long
# enough for a server that answers, short enough that an absent one never holds up the running
# trials' results, checkpoints and stops.
OPEN_WAIT_S = 1.0


def runs_ahead(*, trials: int, concurrent: int) -> int:
    """How many trial runs a sweep reserves ahead: none below RESERVE_FROM_CONCURRENT trials at once;
    from it, four rounds of them, at most 64, never more than the sweep's trials. Trials that end
    together start their successors in a burst, each taking a reserved run while the writer makes the
    next ones; with 8 for 16 trials at a time, a simulated 64-GPU sweep started trials at 0.41x the
    stock rate, waiting on the writer inside suggest, and with 64 at 0.99x (docs/SCALING.md)."""
    if concurrent < RESERVE_FROM_CONCURRENT:
        return 0
    return min(trials, 64, 4 * concurrent)


def reserve_of(spec) -> dict:
    """SweepRuns' reserve for a sweep spec: how many runs ahead, and how many in all: its trials (for
    a resumed or extended sweep an upper bound; past it, a run is made when a trial needs one)."""
    trials = spec.total_trials()
    return {"ahead": runs_ahead(trials=trials, concurrent=spec.search.max_concurrent), "most": trials}


class ReservedRuns:
    """Child runs for the sweep's next trials, made by the tracking writer (writer.py) so that Tune's
    event loop never waits on the tracking server: `take` hands out a run that is ready, or says
    "not yet". `ahead` runs are made ahead of need (at scale, so that a burst of trial starts finds
    them ready, docs/SCALING.md); with none ahead a run is ordered when a trial asks for one. A
    reserved run is tagged xsweep.kind=reserved, which every query of trials leaves out, until a
    trial claims it."""

    def __init__(self, create: Callable[[], str], delete: Callable[[str], None], *, ahead: int = 0,
                 most: int | None = None) -> None:
        # `create()` makes a run and `delete(run_id)` deletes one: both picklable, they run in the writer.
        self._create, self._delete = create, delete
        self._lock = threading.Lock()
        self.closed = False
        self._ahead = ahead
        self._left = most  # runs it may still reserve ahead (None: no end), so a sweep leaves none unclaimed
        self._coming: collections.deque[Future] = collections.deque()
        for _ in range(ahead):
            self._reserve_one()

    def _order_run(self) -> None:
        self._coming.append(shared_writer().call("opening a trial run", partial(
            retry, "opening a trial run", self._create, deadline_s=OPEN_RUN_DEADLINE_S)))

    def _reserve_one(self) -> None:
        if self._left is not None:
            if self._left == 0:
                return
            self._left -= 1
        self._order_run()

    def take(self, *, wait_s: float) -> str | None:
        """The next run, or None when the writer has not made it within `wait_s` (the server is slow
        or away): the caller asks again later. Raises what the writer met when it gave up."""
        with self._lock:
            if not self._coming:
                self._order_run()  # none ahead, or more trials than reserved: made on demand
            future = self._coming[0]
        try:
            run_id = future.result(timeout=wait_s)
        except TimeoutError:
            return None
        except Exception:
            self._drop(future)
            raise
        with self._lock:
            self._drop(future)
            if self._ahead:
                self._reserve_one()  # keeps `ahead` runs in the reserve
        return run_id

    def _drop(self, future: Future) -> None:
        if self._coming and self._coming[0] is future:  # not if `close` has emptied the queue meanwhile
            self._coming.popleft()

    def close(self) -> None:
        """Stop reserving, and delete the runs made and never claimed. The deletions go to the
        tracking writer, which the end of a sweep flushes: a tracking server that is down right then
        delays them (or leaves them, hidden as reserved), never the sweep's end."""
        with self._lock:
            self.closed = True
            unclaimed, self._coming = list(self._coming), collections.deque()
        for future in unclaimed:
            future.add_done_callback(self._discard)  # now, or once the writer has made it

    def _discard(self, future: Future) -> None:
        if future.exception() is None:
            run_id = future.result()
            shared_writer().submit(f"deleting the unclaimed run {run_id}", partial(self._delete, run_id))


_reserves: list[ReservedRuns] = []  # every reserve of this process (a resumed searcher has its own)


def release_reserved_runs() -> None:
    """At the end of a sweep, finished or not: stop every reserve and delete its unclaimed runs."""
    while _reserves:
        _reserves.pop().close()


class SweepRuns:
    """The sweep's parent run and the opening of its child runs. Picklable (Tune pickles it)."""

    def __init__(self, *, uri: str, experiment_id: str, parent_run_id: str, base_config: dict, version: int = 1,
                 ahead: int = 0, most: int | None = None, spec_source: str | None = None):
        self.uri = uri
        self.reserve = {"ahead": ahead, "most": most}  # trial runs to reserve ahead, and in all (reserve_of)
        self.version = version  # of the sweep (xsweep extend): tagged on every child run it opens
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.base_config = base_config
        self.opened: dict[str, str] = {}  # trial id -> its run id
        self._client: MlflowClient | None = None
        # Tagged on every trial run: the spec the sweep started from (a resumed or extended sweep's
        # parent holds it), the commit of the code opening the runs.
        if spec_source is None:
            spec_source = self.client.get_run(parent_run_id).data.tags.get(MLFLOW_SOURCE_NAME)
        self.provenance = source_tags(spec_source, git_commit())
        self._reserve: ReservedRuns | None = None
        self._restored = False
        shared_writer()  # it makes the trials' runs: started now, it is up when the first trial is asked for

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def __getstate__(self) -> dict:
        # Unpickled means restored by `xsweep resume`: trials opened after the state was saved have
        # runs this object does not know, which it then looks for before opening new ones.
        return dict(self.__dict__, _client=None, _reserve=None, _restored=True)

    def __call__(self, trial_id: str, tune_config: dict) -> str | None:
        """The child run of a trial (the same one if asked again); called by the searcher before the
        trial starts. Takes a run the writer has made and queues the trial's name, tags and params to
        the tracking writer (delivered before anything else of the trial, in order). None when no run
        is ready within OPEN_WAIT_S: the server is slow or away, and the searcher asks again later."""
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
        if getattr(self, "_reserve", None) is None or self._reserve.closed:
            self._reserve = ReservedRuns(self._create_reserved, partial(delete_run, self.uri),
                                         **getattr(self, "reserve", {}))
            _reserves.append(self._reserve)
        run_id = self._reserve.take(wait_s=OPEN_WAIT_S)
        if run_id is None:
            return None
        opened[trial_id] = run_id
        shared_writer().submit(f"the run of trial {trial_id}", partial(
            claim_run, self.uri, run_id, trial_id=trial_id, tune_config=tune_config, base_config=self.base_config,
            provenance=getattr(self, "provenance", {})))
        return run_id

    def _find(self, trial_id: str) -> str | None:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' "
                           f"and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"),
            max_results=1,
        )
        return found[0].info.run_id if found else None

    @property
    def _create_reserved(self) -> Callable[[], str]:
        """Makes a reserved run of this sweep; picklable, without this object's trial record."""
        return partial(create_reserved_run, self.uri, self.experiment_id, self.parent_run_id,
                       getattr(self, "version", 1))

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
    if experiment is None:
        experiment_id = client.create_experiment(spec.experiment, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    else:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
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
    tags.update(source_tags(spec.source, commit))
    if commit:
        tags[TAG_GIT_COMMIT] = commit
        # A commit alone cannot tell that the code that ran had local edits.
        tags[TAG_GIT_DIRTY] = str(git_dirty()).lower()
    run = client.create_run(experiment_id, run_name=Path(sweep_path).name, tags=tags)
    run_id = run.info.run_id
    params = flatten(resolved)
    for path in spec.search.space:  # not the default no trial used: each trial run holds its value
        params[path] = f"searched (search.space.{path})"
    log_params(client, run_id, params)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.yaml").write_text(spec.text)
        Path(tmp, "spec.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        client.log_artifacts(run_id, tmp, artifact_path="spec")
    client.log_text(run_id, packages_text(installed_packages()), PACKAGES_ARTIFACT)
    return SweepRuns(uri=uri, experiment_id=experiment_id, parent_run_id=run_id, base_config=spec.base_trial_config(),
                     spec_source=spec.source, **reserve_of(spec))
