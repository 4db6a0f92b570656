"""Secrets stay secret: the team MLflow server of docker/ refuses anyone without credentials, and a
sweep run with a Ray token, a password inside its tracking URI and AWS keys set shows none of them
in its output, MLflow params, tags, artifacts, or the files it writes.

The server runs as docker/compose.yaml runs it (`--app-name basic-auth`, docker/basic_auth.ini),
on this session's PostgreSQL instead of the stack's.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import ROOT, SPECS, run_xsweep
from services import MlflowServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

ADMIN = "admin"
ADMIN_PASSWORD = "pw-" + secrets.token_hex(12)
RAY_TOKEN = secrets.token_hex(32)
AWS_KEY_ID = "AKIA" + secrets.token_hex(8).upper()
AWS_SECRET = "aws-" + secrets.token_hex(16)
SECRETS = (ADMIN_PASSWORD, RAY_TOKEN, AWS_KEY_ID, AWS_SECRET)


@pytest.fixture(scope="module")
def auth_server(postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-auth")
    # docker/basic_auth.ini as shipped, pointed at this session's PostgreSQL.
    shipped = (ROOT / "docker" / "basic_auth.ini").read_text()
    auth_db = postgres.create_database("mlflow_auth").replace("postgresql://", "postgresql+psycopg://")
    config = folder / "basic_auth.ini"
    config.write_text("\n".join(f"database_uri = {auth_db}" if line.startswith("database_uri") else line
                                for line in shipped.splitlines()))
    server = MlflowServer(
        backend_uri=postgres.create_database("mlflow_secrets"), artifacts=folder / "artifacts",
        port=free_port(), log=folder / "server.log", app_name="basic-auth",
        env={"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
             "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
             "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)},
    ).start()
    yield server
    server.stop()


def test_the_team_server_refuses_requests_without_credentials(auth_server):
    url = f"{auth_server.uri}/api/2.0/mlflow/experiments/search"
    assert requests.get(url, params={"max_results": 1}, timeout=10).status_code == 401
    assert requests.get(url, params={"max_results": 1}, auth=(ADMIN, "wrong"), timeout=10).status_code == 401
    assert requests.get(url, params={"max_results": 1}, auth=(ADMIN, ADMIN_PASSWORD), timeout=10).ok


def _strings(value) -> list[str]:
    """Every string inside nested dicts / lists / MLflow entities' reprs."""
    return [json.dumps(value, default=repr)]


@pytest.fixture(scope="module")
def secret_sweep(auth_server, tmp_path_factory):
    """A sweep run with a Ray token, a password inside its tracking URI and AWS keys set."""
    workdir = tmp_path_factory.mktemp("secret-sweep")
    uri_with_password = f"http://{ADMIN}:{ADMIN_PASSWORD}@127.0.0.1:{auth_server.port}"
    proc = run_xsweep(
        "run", str(SPECS / "smoke.yaml"), "--set", f"tracking.uri={uri_with_password}",
        "--set", "tracking.experiment=secrets", "--set", "search.num_samples=2", "--set", "train.epochs=1",
        cwd=workdir, timeout=600,
        env={"RAY_AUTH_TOKEN": RAY_TOKEN, "AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
    )
    return workdir, proc, uri_with_password


def test_no_secret_in_output_mlflow_or_files(secret_sweep):
    tmp_path, proc, uri_with_password = secret_sweep
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep finished: 2 completed" in proc.stdout
    # The summary's commands name the sweep's store (not ./mlflow.db), without the password.
    bare = uri_with_password.replace(f"{ADMIN}:{ADMIN_PASSWORD}@", "")
    assert f"reproduce:  xsweep reproduce --experiment secrets --tracking-uri {bare}\n" in proc.stdout, proc.stdout
    # A server's runs page is linked directly, the password left out.
    assert f"({bare}/#/experiments/" in proc.stdout, proc.stdout
    found: dict[str, str] = {"output": proc.stdout + proc.stderr}

    client = MlflowClient(tracking_uri=uri_with_password)
    experiment = client.get_experiment_by_name("secrets")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3  # the parent and its two trials
    for run in runs:
        found[f"run {run.info.run_name}: params, tags, metrics"] = _strings(
            [run.data.params, run.data.tags, run.data.metrics])[0]
        with tempfile.TemporaryDirectory() as folder:
            local = Path(client.download_artifacts(run.info.run_id, "", folder))
            for file in local.rglob("*"):
                if file.is_file():
                    found[f"artifact {file.relative_to(local)}"] = file.read_bytes().decode("latin-1")
    for version in client.search_model_versions("name='secrets'"):
        found[f"model version {version.version}"] = _strings([version.tags, version.source, version.run_link])[0]

    for file in (tmp_path / "results").rglob("*"):
        if file.is_file():
            found[f"file {file.relative_to(tmp_path)}"] = file.read_bytes().decode("latin-1")

    leaks = [(where, secret[:6] + "...") for where, text in found.items() for secret in SECRETS if secret in text]
    assert not leaks, leaks


CREDENTIALS_LINE = ("xsweep: MLflow: the tracking server needs credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME "
                    "and MLFLOW_TRACKING_PASSWORD (a wrong password gives this too)")


def test_every_command_refused_by_the_server_says_so_in_one_line(secret_sweep, auth_server, tmp_path):
    workdir, proc, _ = secret_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (workdir / "results").glob("smoke-*")
    bare = f"http://127.0.0.1:{auth_server.port}"
    commands = {
        "run": ["run", str(SPECS / "smoke.yaml"), "--set", f"tracking.uri={bare}"],
        "resume": ["resume", str(sweep)],
        "status": ["status", str(sweep)],
        "report": ["report", "secrets", "--tracking-uri", bare],
        "reproduce": ["reproduce", "--experiment", "secrets", "--tracking-uri", bare],
    }
    wrong_password = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": "wrong"}
    cases = [*((name, args, {}) for name, args in commands.items()),
             ("run, wrong password", commands["run"], wrong_password)]
    # Side by side: each is a fresh Python that spends most of its time importing, then is refused.
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(lambda case: run_xsweep(*case[1], cwd=tmp_path if case[0].startswith("run") else workdir,
                                                        env=case[2], timeout=300), cases))
    for (name, _, _), refused in zip(cases, results):
        assert refused.returncode == 2, (name, refused.stderr[-3000:])
        assert refused.stderr.strip().splitlines() == [CREDENTIALS_LINE], (name, refused.stderr[-3000:])
    assert list(tmp_path.iterdir()) == []  # nothing written: no mlflow.db, no results
