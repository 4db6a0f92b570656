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


def test_no_secret_in_output_mlflow_or_files(auth_server, tmp_path):
    uri_with_password = f"http://{ADMIN}:{ADMIN_PASSWORD}@127.0.0.1:{auth_server.port}"
    proc = run_xsweep(
        "run", str(SPECS / "smoke.yaml"), "--set", f"tracking.uri={uri_with_password}",
        "--set", "tracking.experiment=secrets", "--set", "search.num_samples=2", "--set", "train.epochs=1",
        cwd=tmp_path, timeout=600,
        env={"RAY_AUTH_TOKEN": RAY_TOKEN, "AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep finished: 2 completed" in proc.stdout
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
