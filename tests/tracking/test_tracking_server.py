"""Sweeps tracked to a team MLflow server (`mlflow server` on PostgreSQL, proxied artifacts).

What a user relies on: the run tree, run names, params, one metric point per epoch, checkpoint
artifacts and the registry alias — also when a trial's worker is SIGKILLed mid-trial, and when
the tracking server goes away for a while during the sweep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import SPECS, XSWEEP
from xception import Xception
from xsweep.tracking.runs import fluent_tracking_to

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

EPOCHS = 4


def _start_sweep(workdir: Path, uri: str, experiment: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(XSWEEP), "run", str(SPECS / "smoke.yaml"), "--set", f"tracking.uri={uri}",
         "--set", f"tracking.experiment={experiment}", "--set", f"train.epochs={EPOCHS}",
         "--set", "failure.max_failures=2", *extra],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for_epoch(workdir: Path, epoch: int, *, timeout: float = 300) -> Path:
    """A trial whose result.json has reached `epoch`, with epochs still to run unless `epoch` is the
    last. Tune copies result.json into the results folder in bursts, so it can skip past `epoch`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for trial_dir in workdir.glob("results/smoke-*/trial_*"):
            results = _results(trial_dir)
            reached = results[-1].get("epoch", 0) if results else 0
            if epoch <= reached and (reached < EPOCHS or epoch == EPOCHS):
                return trial_dir
        time.sleep(0.2)
    raise TimeoutError(f"no trial reached epoch {epoch}")


def _wait_for_output(workdir: Path, text: str, *, timeout: float = 300) -> None:
    """The sweep's console output (its copy in the results folder) has said `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in log.read_text() for log in workdir.glob("results/smoke-*/output.log")):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the sweep never said {text!r}")


def _children(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`xsweep.kind` = 'sweep'")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, children


def test_killed_worker_resumes_its_trial_and_its_run(mlflow_server, tmp_path):
    proc = _start_sweep(tmp_path, mlflow_server.uri, "killed-worker")
    victim = _wait_for_epoch(tmp_path, 2)
    pid = _results(victim)[-1]["pid"]  # the trial's own worker process, as Tune recorded it
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]

    # Tune: the trial restarted from its last checkpoint, so its epochs continue, never restart.
    epochs = [r["epoch"] for r in _results(victim)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == EPOCHS, epochs

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    parent, children = _children(client, "killed-worker")
    assert parent.info.status == "FINISHED"
    assert len(children) == 4  # no duplicate run for the restarted trial
    trial_id = victim.name.removeprefix("trial_")
    (restarted,) = [c for c in children if c.data.tags["xsweep.trial_id"] == trial_id]
    for child in children:
        for key in ("val_accuracy", "train_loss", "lr"):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.info.run_name, key, steps)
        assert child.data.tags["xsweep.status"] == "completed"
        assert child.data.params["train.epochs"] == str(EPOCHS)
        assert json.loads(child.data.tags["xsweep.config"])["train"]["epochs"] == EPOCHS
        assert child.data.tags["xsweep.node_ip"] == "127.0.0.1"
    assert restarted.info.status == "FINISHED"

    # The best checkpoint is an artifact, served through the tracking server (proxied artifacts).
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            run_id=restarted.info.run_id, artifact_path="checkpoints/best", tracking_uri=mlflow_server.uri,
            dst_path=folder,
        )
        state = torch.load(Path(local, "state.pt"), weights_only=True)
        best = json.loads(Path(local, "best.json").read_text())
        assert state["epoch"] == best["epoch"] and state["mlflow_run_id"] == restarted.info.run_id

    # The sweep's best model is registered under the experiment's name with alias `best`, in a form
    # that loads without unpickling code, and predicts what the best trial's best checkpoint does.
    with fluent_tracking_to(mlflow_server.uri):
        model = mlflow.pytorch.load_model("models:/killed-worker@best")
        info = mlflow.models.get_model_info("models:/killed-worker@best")
    images = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    version = client.get_model_version_by_alias("killed-worker", "best")
    with tempfile.TemporaryDirectory() as folder, fluent_tracking_to(mlflow_server.uri):
        saved = Path(mlflow.artifacts.download_artifacts("models:/killed-worker@best", dst_path=folder))
        # torch.export's archive (weights and graph, no pickled code), not a pickled module.
        assert (saved / "data" / "model.pt2").is_file() and not list(saved.rglob("*.pth"))
        local = mlflow.artifacts.download_artifacts(run_id=version.tags["xsweep.trial_run_id"],
                                                    artifact_path="checkpoints/best", dst_path=folder)
        state = torch.load(Path(local, "state.pt"), weights_only=True)
    assert state["epoch"] == int(version.tags["xsweep.best_epoch"])
    original = Xception(**info.metadata["model_args"])
    original.load_state_dict(state["model"])
    with torch.no_grad():
        torch.testing.assert_close(model(images), original.eval()(images), rtol=1e-5, atol=1e-6)


def test_tracking_outage_loses_no_metric(mlflow_server, tmp_path):
    """The server is stopped mid-sweep and started again: the sweep finishes, nothing missing.

    It stays down from a trial's first epoch until a trial has finished, so epochs and a trial's end
    happen while it is away, and the next trials wait for it to make their runs."""
    proc = _start_sweep(tmp_path, mlflow_server.uri, "outage")
    _wait_for_epoch(tmp_path, 1)
    mlflow_server.stop()
    try:
        _wait_for_output(tmp_path, f"completed after {EPOCHS}/{EPOCHS} epochs")
    finally:
        mlflow_server.start()  # also when the wait failed: later tests use this server
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    parent, children = _children(client, "outage")
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.info.run_name, steps)
