"""xsweep.tracking.runs: what a sweep writes to MLflow, on a real sqlite store: the parent run with
its spec and provenance, one child run per trial (found again, never duplicated), and params in
batches MLflow accepts."""

from __future__ import annotations

import json
import os
import pickle
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import SPECS
from xsweep.spec import load_spec
from xsweep.spec.trial import REPEAT_KEY
from xsweep.tracking.writer import shared_writer
from xsweep.tracking.query import child_runs
from xsweep.tracking.runs import fluent_tracking_to, release_reserved_runs, start_sweep
from xsweep.tracking.writes import MLFLOW_BATCH_LIMIT, flatten, log_params


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """A sqlite store keeps its artifacts under ./mlruns of the folder its experiment is made in: the
    test's own, not the checkout, which other tests (test_gpu_sweep.py) check is left clean."""
    monkeypatch.chdir(tmp_path)


def _sweep(tmp_path, *overrides: str):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = load_spec(SPECS / "smoke.yaml", overrides=overrides)
    return spec, uri, start_sweep(spec, uri=uri, sweep_path=str(tmp_path / "results" / "smoke-1"),
                                  ray_address="embedded (127.0.0.1)")


def _open(runs, trial_id: str, config: dict) -> str:
    """A trial's run, asked for as Tune's loop asks the searcher: again until the writer has made it."""
    deadline = time.monotonic() + 120
    while (run_id := runs(trial_id, config)) is None:
        assert time.monotonic() < deadline, "no run made in 120 s"
    return run_id


def _wait_for_reserved(client, parent, count: int) -> set[str]:
    deadline = time.monotonic() + 60
    while len(child_runs(client, parent, kind="reserved")) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return {run.info.run_id for run in child_runs(client, parent, kind="reserved")}


def test_the_parent_run_holds_the_spec_and_its_provenance(tmp_path):
    spec, uri, runs = _sweep(tmp_path)
    client = MlflowClient(uri)
    parent = client.get_run(runs.parent_run_id)
    assert parent.info.run_name == "smoke-1" and parent.data.tags["xsweep.kind"] == "sweep"
    assert parent.data.tags["xsweep.spec_sha256"] == spec.sha256()
    assert {"xsweep.version.ray", "xsweep.version.torch", "xsweep.version.mlflow"} <= set(parent.data.tags)
    assert parent.data.params["train.epochs"] == "2" and "search.space.train.lr" in parent.data.params
    # A searched field shows no default as if a trial had used it.
    assert parent.data.params["train.lr"] == "searched (search.space.train.lr)"
    artifacts = sorted(a.path for a in client.list_artifacts(runs.parent_run_id, "spec"))
    assert artifacts == ["spec/spec.resolved.yaml", "spec/spec.yaml"]


def test_a_trial_run_is_opened_once_and_found_again(tmp_path):
    _, uri, runs = _sweep(tmp_path)
    tune_config = {"train.lr": 0.05, "model.residual": True, "model.activation": "relu", REPEAT_KEY: 1}
    run_id = _open(runs, "trial-1", tune_config)
    assert _open(runs, "trial-1", tune_config) == run_id  # asked again: the same run
    assert shared_writer().flush(timeout=60) == 0  # its name, tags and params go to the tracking writer
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.run_name == "lr=0.05 res=on act=relu s1"
    assert json.loads(run.data.tags["xsweep.config"])["train"]["seed"] == 1  # train.seed 0 + repeat 1
    assert run.data.tags["xsweep.status"] == "pending" and run.data.params["train.lr"] == "0.05"
    # Tune pickles the searcher, and with it this object: without its client. Restored by a resume,
    # it finds again the runs it opened after its state was saved.
    assert pickle.loads(pickle.dumps(runs))("trial-1", tune_config) == run_id
    forgetful = pickle.loads(pickle.dumps(runs))
    forgetful.opened.clear()
    assert forgetful("trial-1", tune_config) == run_id
    release_reserved_runs()


def test_trial_runs_are_reserved_ahead_and_the_unclaimed_ones_deleted_at_the_end(tmp_path):
    # 16 trials at a time: four rounds of them (64) reserved ahead, so that a round's starts wait on nobody.
    _, uri, runs = _sweep(tmp_path, "search.num_samples=200", "search.max_concurrent=16")
    client = MlflowClient(uri)
    parent = client.get_run(runs.parent_run_id)
    first = _open(runs, "trial-1", {"train.lr": 0.05})
    reserved = _wait_for_reserved(client, parent, 64)
    assert len(reserved) == 64 and first not in reserved  # ready for the next suggestions
    second = _open(runs, "trial-2", {"train.lr": 0.06})
    assert second in reserved  # taken from the reserve, not created while Tune waits
    assert shared_writer().flush(timeout=60) == 0
    assert [run.info.run_name for run in child_runs(client, parent)] == ["lr=0.05 s0", "lr=0.06 s0"]
    release_reserved_runs()
    assert shared_writer().flush(timeout=60) == 0  # the deletions are queued, as the end of a sweep flushes
    left = [run for run in child_runs(client, parent, kind=None)]
    assert {run.info.run_id for run in left} == {first, second}  # every unclaimed run deleted


def test_a_few_trials_at_a_time_reserve_nothing_so_a_runs_duration_is_its_trials(tmp_path):
    # The smoke sweep runs 2 trials at a time: each run is made when its trial is asked for, since
    # MLflow's Duration counts from a run's creation and a reserved run would wait for its trial.
    _, uri, runs = _sweep(tmp_path)
    _open(runs, "trial-1", {"train.lr": 0.05})
    assert shared_writer().flush(timeout=60) == 0  # whatever the first trial's run queued is made
    client = MlflowClient(uri)
    assert child_runs(client, client.get_run(runs.parent_run_id), kind="reserved") == []
    asked = int(time.time() * 1000)
    run_id = _open(runs, "trial-2", {"train.lr": 0.06})
    assert client.get_run(run_id).info.start_time >= asked
    release_reserved_runs()


def test_a_sweep_reserves_no_more_runs_than_it_has_trials(tmp_path):
    """Nothing to delete at the end of a sweep that ran all its trials: MLflow's trash stays empty."""
    from mlflow.entities import ViewType

    spec, uri, runs = _sweep(tmp_path, "search.num_samples=20", "search.max_concurrent=16")  # all 20 reserved
    client = MlflowClient(uri)
    parent = client.get_run(runs.parent_run_id)
    opened = [_open(runs, f"trial-{i}", {"train.lr": 0.01 * i}) for i in range(1, spec.total_trials() + 1)]
    assert shared_writer().flush(timeout=60) == 0
    assert child_runs(client, parent, kind="reserved") == []  # every reserved run was claimed
    # One more than it planned (a resumed sweep's count is an upper bound): made when needed.
    opened.append(_open(runs, "one-more", {"train.lr": 0.2}))
    release_reserved_runs()
    assert shared_writer().flush(timeout=60) == 0
    trial_runs = [run.info.run_id for run in child_runs(client, parent)]
    assert len(trial_runs) == len(opened) and set(trial_runs) == set(opened)
    deleted = client.search_runs([parent.info.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert deleted == []


def test_runs_no_trial_owns_are_deleted_at_the_end(tmp_path):
    _, uri, runs = _sweep(tmp_path)
    kept = _open(runs, "kept", {"train.lr": 0.05})
    orphan = _open(runs, "orphan", {"train.lr": 0.06})
    release_reserved_runs()
    assert shared_writer().flush(timeout=60) == 0  # as at the end of a sweep: every write delivered first
    assert runs.delete_orphans({kept}) == [orphan]
    assert MlflowClient(uri).get_run(orphan).info.lifecycle_stage == "deleted"


def test_params_go_in_batches_mlflow_accepts(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("many")).info.run_id
    params = {f"p{i}": i for i in range(MLFLOW_BATCH_LIMIT * 2 + 5)} | {"nothing": None}
    log_params(client, run_id, params)
    logged = client.get_run(run_id).data.params
    assert len(logged) == len(params) and logged["p204"] == "204" and logged["nothing"] == "None"


def test_flatten_keeps_search_space_entries_whole():
    assert flatten({"train": {"lr": 0.1, "betas": [0.9, 0.99]},
                    "search": {"space": {"train.lr": {"choice": [0.1]}}}}) == {
        "train.lr": 0.1, "train.betas": "[0.9, 0.99]", "search.space.train.lr": '{"choice": [0.1]}'}


def test_the_fluent_api_writes_where_asked_and_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/else.db")
    with fluent_tracking_to(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////somewhere/else.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with fluent_tracking_to(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ
