"""`storage.path: s3://...` end to end against a real S3 server (moto) on 127.0.0.1.

The console script runs as a user runs it: a sweep whose results, checkpoints and records live
only in the bucket; an interrupted one resumed from its s3:// folder; and the one-line refusals
for no credentials, an endpoint nobody listens on, and a missing bucket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.fs
import pytest
from mlflow.tracking import MlflowClient

from conftest import SPECS, XSWEEP, run_xsweep
from services import MotoS3, free_port

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

BUCKET = "xsweep-results"
SMOKE = str(SPECS / "smoke.yaml")
# Nothing may leave this machine: no Ray usage statistics, no MLflow telemetry.
OFFLINE = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3 server with an empty bucket; this process and every xsweep it starts get fake keys."""
    folder = tmp_path_factory.mktemp("moto")
    with pytest.MonkeyPatch.context() as env:
        # An AWS profile or endpoint of the machine must not send the clients anywhere else.
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            env.delenv(name)
        for name, value in {**MotoS3.ENV, **OFFLINE}.items():
            env.setenv(name, value)
        server = MotoS3(port=free_port(), log=folder / "moto.log").start()
        try:
            server.create_bucket(BUCKET)
            yield server
        finally:
            server.stop()


def _storage(s3: MotoS3, prefix: str, endpoint_url: str | None = None) -> list[str]:
    return ["--set", f"storage.path=s3://{BUCKET}/{prefix}",
            "--set", f"storage.endpoint_url={endpoint_url or s3.endpoint_url}"]


def _files(s3: MotoS3, prefix: str) -> list[str]:
    """Every object under `prefix`, as the S3 server lists it."""
    selector = pyarrow.fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
    return sorted(i.path[len(f"{BUCKET}/{prefix}/"):] for i in s3.filesystem().get_file_info(selector)
                  if i.type == pyarrow.fs.FileType.File)


def _record(s3: MotoS3, folder: str) -> dict:
    with s3.filesystem().open_input_stream(f"{BUCKET}/{folder}/xsweep.json") as f:
        return json.loads(f.read())


def _child_runs(workdir: Path, parent_run_id: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    return client.search_runs([experiment.experiment_id], max_results=1000,
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")


@pytest.fixture(scope="module")
def s3_sweep(s3, tmp_path_factory):
    """One smoke sweep into the bucket, shared by the tests that only read what it left."""
    workdir = tmp_path_factory.mktemp("s3-sweep")
    proc = run_xsweep("run", SMOKE, *_storage(s3, "sweeps"), cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep = re.search(rf"results in s3://{BUCKET}/sweeps/(\S+)", proc.stdout)[1]
    return workdir, proc, sweep


def test_sweep_keeps_its_record_trials_and_checkpoints_in_the_bucket(s3, s3_sweep):
    workdir, proc, sweep = s3_sweep
    assert "sweep finished: 4 completed" in proc.stdout
    assert f"results:    s3://{BUCKET}/sweeps/{sweep}" in proc.stdout
    files = _files(s3, f"sweeps/{sweep}")
    assert "xsweep.json" in files
    # Ray's and Tune's output, written locally while the sweep ran, is copied into its folder.
    assert "output.log" in files and f"copied to s3://{BUCKET}/sweeps/{sweep}/output.log" in proc.stdout
    trials = {f.split("/")[0] for f in files if f.startswith("trial_")}
    assert len(trials) == 4, files
    for trial in trials:
        # What a restarted or reproduced trial loads: a checkpoint with its checksum.
        assert any(re.fullmatch(rf"{trial}/checkpoint_\d+/state\.pt", f) for f in files), trial
        assert any(re.fullmatch(rf"{trial}/checkpoint_\d+/state\.pt\.sha256", f) for f in files), trial
    assert not (workdir / "results").exists()  # nothing went to a local folder instead
    children = _child_runs(workdir, _record(s3, f"sweeps/{sweep}")["parent_run_id"])
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 4


def test_status_of_an_s3_sweep_lists_every_trial(s3, s3_sweep):
    workdir, _, sweep = s3_sweep
    status = run_xsweep("status", f"s3://{BUCKET}/sweeps/{sweep}", "--endpoint-url", s3.endpoint_url, cwd=workdir)
    assert status.returncode == 0, status.stderr[-3000:]
    rows = [line for line in status.stdout.splitlines() if re.match(r"[0-9a-f]{8}  ", line)]
    assert len(rows) == 4 and all("completed" in row and "2/2" in row for row in rows), status.stdout


def test_interrupted_s3_sweep_resumes_with_every_trial_finished_once(s3, tmp_path):
    """SIGINT the driver once a checkpoint is in the bucket, then `xsweep resume s3://...`."""
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(XSWEEP), "run", SMOKE, "--set", "train.epochs=3", "--set", "search.num_samples=3",
             *_storage(s3, "interrupted")],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if any("/checkpoint_000000/" in f for f in _files(s3, "interrupted")):
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    out = log.read_text()
    assert "resume:" in out, out[-3000:]
    (sweep,) = {f.split("/")[0] for f in _files(s3, "interrupted")}

    # The endpoint from the variable the cluster entrypoint uses (status above takes the flag).
    resumed = run_xsweep("resume", f"s3://{BUCKET}/interrupted/{sweep}", cwd=tmp_path,
                         env={"XSWEEP_S3_ENDPOINT_URL": s3.endpoint_url})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "sweep finished: 3 completed" in resumed.stdout

    parent_id = _record(s3, f"interrupted/{sweep}")["parent_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(parent_id).info.status == "FINISHED"
    children = _child_runs(tmp_path, parent_id)
    assert len(children) == 3
    for child in children:
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy"))
        assert steps == [1, 2, 3], (child.info.run_name, steps)  # every epoch exactly once
    assert len({f.split("/")[1] for f in _files(s3, "interrupted") if f.split("/")[1].startswith("trial_")}) == 3


def _refused(args: list[str], *, cwd: Path, env: dict) -> str:
    """Run xsweep expecting a user error: exit 2, one line, no traceback, soon. Returns the line."""
    started = time.monotonic()
    proc = subprocess.run([str(XSWEEP), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xsweep: "), proc.stderr[-3000:]
    # Imports and the data check only (seconds on a loaded 2-core machine); a sweep that got as
    # far as Ray and its first write would take minutes, retrying a dead endpoint longer still.
    assert elapsed < 60, f"took {elapsed:.0f} s"
    return lines[0]


def _wrote_nothing(workdir: Path) -> None:
    """No local results folder, no MLflow run."""
    assert not (workdir / "results").exists()
    if (workdir / "mlflow.db").exists():
        client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []


def test_s3_without_any_credentials_is_refused_before_anything_starts(s3, tmp_path):
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    env = {n: v for n, v in os.environ.items() if not n.startswith("AWS_")}
    # No key variables and no ~/.aws. Metadata off is no credential: it only keeps the SDK from
    # asking 169.254.169.254 should the check ever let this through.
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true")
    line = _refused(["run", SMOKE, *_storage(s3, "no-credentials")], cwd=workdir, env=env)
    assert line.startswith(f"xsweep: storage.path: s3://{BUCKET}/no-credentials: no AWS credentials"), line
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line
    _wrote_nothing(workdir)
    assert _files(s3, "no-credentials") == []


def test_unreachable_endpoint_or_missing_bucket_is_refused_in_one_line(s3, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # bound once and released: nothing listens there
    line = _refused(["run", SMOKE, *_storage(s3, "closed", endpoint_url=closed)], cwd=tmp_path, env=dict(os.environ))
    assert line.startswith(f"xsweep: storage.endpoint_url: cannot reach {closed}"), line
    _wrote_nothing(tmp_path)

    line = _refused(["status", f"s3://{BUCKET}/sweeps/smoke-20260101-000000", "--endpoint-url", closed],
                    cwd=tmp_path, env=dict(os.environ))
    assert line.startswith(f"xsweep: --endpoint-url: cannot reach {closed}"), line

    line = _refused(["run", SMOKE, "--set", "storage.path=s3://no-such-bucket/sweeps",
                     "--set", f"storage.endpoint_url={s3.endpoint_url}"], cwd=tmp_path, env=dict(os.environ))
    assert line == (f"xsweep: storage.path: s3://no-such-bucket/sweeps: bucket 'no-such-bucket' does not exist "
                    f"on {s3.endpoint_url} (create it, or fix storage.path)"), line
    _wrote_nothing(tmp_path)
