"""Shared fixtures: real PostgreSQL, a real `mlflow server` on it, and the xsweep CLI as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from services import MlflowServer, Postgres, free_port

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "search_spaces"
XSWEEP = Path(sys.executable).parent / "xsweep"


def pytest_collection_modifyitems(config, items):
    """Files with the most slow tests first, each file's tests in their own order. `make test` runs
    two files at a time and hands out files in this order (--no-loadscope-reorder): a slow file left
    for the end keeps one worker busy while the other has nothing left to do."""
    slow_tests: dict[Path, int] = {}
    for item in items:
        slow_tests[item.path] = slow_tests.get(item.path, 0) + bool(item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow_tests[item.path])  # stable: ties keep pytest's order


@pytest.fixture(autouse=True)
def no_tracking_uri_from_another_test(monkeypatch):
    """Every test starts without $MLFLOW_TRACKING_URI: xsweep honours it, so one test's value (or
    mlflow.set_tracking_uri's, which sets it) must not send another test's sweeps elsewhere."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def postgres():
    # Not under pytest's tmp_path: that tree is private to root, and PostgreSQL runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="xsweep-postgres-"))
    server = Postgres(folder=folder, port=free_port()).start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    """`mlflow server` on PostgreSQL with proxied artifacts, as a team would run it."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(
        backend_uri=postgres.create_database("mlflow"),
        artifacts=folder / "artifacts",
        port=free_port(),
        log=folder / "server.log",
    ).start()
    yield server
    server.stop()


def run_xsweep(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `xsweep` console script the way a user does, in its own working folder."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(XSWEEP), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """`xsweep run search_spaces/smoke.yaml` with nothing set, run once per session for every test
    that looks at what that very command prints and leaves behind (tests/sweep/test_sweep_e2e.py,
    tests/sweep/test_console.py): (its working folder, the finished process, the text of the log
    it named as the run left it).

    Only test_sweep_e2e.py's `extend` tests add to it, and they run last there; the other tests
    read the captured output, the log text above, or the folder before those add to it."""
    import re

    workdir = tmp_path_factory.mktemp("smoke")
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), cwd=workdir)
    named = re.search(r"^log: (\S+)", proc.stdout, re.MULTILINE)
    log_text = Path(named.group(1)).read_text() if named and Path(named.group(1)).is_file() else ""
    return workdir, proc, log_text


def sweep_runs(workdir: Path, experiment: str):
    """(client, parent run, child runs) of the one sweep of `experiment` in workdir's ./mlflow.db."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([experiment_id], filter_string="tags.`xsweep.kind` = 'sweep'")
    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return client, parent, children
