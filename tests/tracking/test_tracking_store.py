"""xsweep.tracking.store: one rule for which store every command opens, stores that several processes
create at once, and one line for a store that cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.exceptions import MlflowException, RestException

from conftest import SPECS, XSWEEP
from services import free_port
from xsweep.errors import ReportError, TrackingError
from xsweep.tracking.store import (
    auth_problem, check_reachable, default_uri, open_store, resolve_uri, sqlite_file,
)


def test_the_rule_is_the_spec_then_the_environment_then_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, workdir=tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db" == default_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_uri(None, workdir=tmp_path) == "http://127.0.0.1:5999"
    assert resolve_uri("sqlite:////tmp/x.db", workdir=tmp_path) == "sqlite:////tmp/x.db"


def test_sqlite_file():
    assert str(sqlite_file("sqlite:////tmp/a/mlflow.db")) == "/tmp/a/mlflow.db"
    assert sqlite_file("http://127.0.0.1:5000") is None and sqlite_file("postgresql://x/y") is None


CREATE_AT = """
import sys
from xsweep.tracking.store import prepare_store
print("ready", flush=True)
sys.stdin.readline()  # every process starts at the same instant: once all three are ready
prepare_store(sys.argv[1])
"""


def test_several_processes_create_one_new_store_at_once(tmp_path):
    # Without the lock, MLflow's migrations of a new sqlite file fail in all but one of them
    # ("table ... already exists", "duplicate column name", alembic's "expected to match one row").
    uri = default_uri(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", CREATE_AT, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    ready = [proc.stdout.readline() for proc in procs]  # each has imported what it needs
    for proc in procs:
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        except BrokenPipeError:  # it died before it was ready: its stderr says why, below
            pass
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert ready == ["ready\n"] * 3, errors
    assert [proc.returncode for proc in procs] == [0, 0, 0], errors
    assert list(tmp_path.iterdir()) == [tmp_path / "mlflow.db"]  # and nothing else beside it


def test_reading_a_store_that_is_not_there_creates_nothing(tmp_path):
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    with pytest.raises(ReportError, match=r"^--tracking-uri: no MLflow store at .*nowhere/mlflow.db"):
        open_store(missing, flag="--tracking-uri", error=ReportError)
    assert list(tmp_path.iterdir()) == []


def test_a_closed_port_is_one_line():
    with pytest.raises(TrackingError, match=r"^tracking.uri: cannot reach http://127.0.0.1:\d+: connection refused"):
        check_reachable(f"http://127.0.0.1:{free_port()}")


@pytest.mark.parametrize(("exc", "status"), [
    (MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 401 != 200. "
                     "Response body: 'You are not authenticated.'"), 401),
    (RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"}), 403),
    (RestException({"error_code": "UNAUTHENTICATED", "message": "no"}), 401),
])
def test_a_refused_credential_is_one_line_naming_the_variables(exc, status):
    problem = auth_problem(exc)
    assert isinstance(problem, TrackingError) and f"HTTP {status}" in str(problem)
    assert "MLFLOW_TRACKING_USERNAME" in str(problem) and "MLFLOW_TRACKING_PASSWORD" in str(problem)
    assert "\n" not in str(problem)


def test_other_mlflow_errors_are_not_credential_problems():
    assert auth_problem(MlflowException("API request failed with error code 500 != 200")) is None
    assert auth_problem(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"})) is None


@pytest.mark.slow
@pytest.mark.cluster
def test_two_sweeps_started_at_once_in_a_fresh_folder_both_finish(tmp_path):
    args = ["run", str(SPECS / "smoke.yaml"), "--set", "search.num_samples=1", "--set", "train.epochs=1"]
    procs = [subprocess.Popen([str(XSWEEP), *args, "--set", f"name=twin{i}"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-3000:] for _, err in outputs]
    assert all("sweep finished: 1 completed" in out for out, _ in outputs)


@pytest.mark.slow
@pytest.mark.cluster
def test_the_ui_shows_the_store_the_rule_names(tmp_path):
    """`make ui` (xsweep ui) opens the store every command opens: here $MLFLOW_TRACKING_URI's. It says
    at once that it is starting, and gives its address only once the UI answers there, with a link
    per experiment that opens on its runs."""
    import requests
    from mlflow.tracking import MlflowClient

    from services import stop_session

    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    experiment_id = MlflowClient(uri).create_experiment("only-here")
    port = free_port()
    ui = subprocess.Popen([str(XSWEEP), "ui", "--port", str(port)], cwd=tmp_path, start_new_session=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri}, stdout=subprocess.PIPE, text=True)
    try:
        assert ui.stdout.readline().startswith("starting the MLflow UI of sqlite:///")
        ready = ui.stdout.readline()
        assert ready.startswith(f"MLflow UI: http://127.0.0.1:{port}"), ready
        search = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search"
        # Answers as soon as it said where: no waiting on the user's side.
        names = {e["name"] for e in requests.get(search, params={"max_results": 10}, timeout=5).json()["experiments"]}
        assert "only-here" in names
        assert ui.stdout.readline().split() == [
            "only-here:", f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"]
        assert not (tmp_path / "mlflow.db").exists()  # not ./mlflow.db
    finally:
        stop_session(ui)
