"""`xsweep submit` / `jobs` / `stop` against a real 2-node Ray cluster with token auth.

The cluster: a head at 127.0.0.2 and a worker at 127.0.0.3 (loopback aliases), one CPU each, so
the smoke sweep's two concurrent trials run one per node. The sweep's driver is the Ray job on the
head; it tracks to the session's `mlflow server` on PostgreSQL with proxied artifacts. What a user
relies on: the job's log and outcome here, trials on both nodes, the whole run tree in MLflow, and
`xsweep reproduce` of the best trial from the server's data alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, SPECS, XSWEEP, run_xsweep
from services import RayCluster, descendants, free_port, kill_remembered, listening_ports, still_running

sys.path.insert(0, str(ROOT / "jobs"))
import entrypoint  # noqa: E402 - jobs/ is not a package

EXPERIMENT = "cluster-smoke"
# Long enough that the worker node's trial process (a cold Python importing torch: ~20 s here)
# is up before the head's first trial ends; Tune would otherwise hand it the next trial.
EPOCHS = 5
JOB_ID = re.compile(r"job (xsweep-[\w-]+) submitted")


# ---- without a cluster -------------------------------------------------------------------------------

def test_a_bad_spec_fails_before_anything_is_sent(tmp_path):
    # The address is dead too: the spec error must come first, proving nothing was contacted.
    proc = run_xsweep("submit", str(SPECS / "smoke.yaml"), "--set", "train.optimizer=adam",
                      "--address", f"http://127.0.0.1:{free_port()}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "--set train.optimizer: 'adam' is not allowed (one of sgd, rmsprop, adamw)"]


def test_unreachable_address_is_one_line_and_exit_2(tmp_path):
    address = f"http://127.0.0.1:{free_port()}"
    for args in (["submit", str(SPECS / "smoke.yaml")], ["jobs"], ["stop", "some-job"]):
        proc = run_xsweep(*args, "--address", address, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1] == (
            f"xsweep: --address: cannot reach Ray's Jobs API at {address} "
            f"(check the address and that the head node is up)"), (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_unreadable_token_file_is_one_line(tmp_path):
    missing = tmp_path / "no-token"
    proc = run_xsweep("jobs", "--address", "http://127.0.0.1:1", cwd=tmp_path,
                      env={"RAY_AUTH_TOKEN_PATH": str(missing)}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"xsweep: RAY_AUTH_TOKEN_PATH: {missing} cannot be read or is empty "
                                   f"(point it at a file holding the head's token, or unset it)")


def test_spec_outside_a_project_is_refused(tmp_path):
    spec = tmp_path / "mine.yaml"
    shutil.copy(SPECS / "smoke.yaml", spec)
    proc = run_xsweep("submit", str(spec), "--address", "http://127.0.0.1:1", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"xsweep: {spec}: not inside an xsweep project (no jobs/entrypoint.py in a "
                                   f"folder above it); put the spec under the project's search_spaces/")


def test_what_is_uploaded():
    from xsweep.cluster.submit import entrypoint as command, runtime_env

    env = runtime_env(ROOT)
    assert env["working_dir"] == str(ROOT)
    assert env["py_modules"] == [str(ROOT / "platform" / "xsweep")]
    for heavy in ("/.venv/", "/.git/", "/results/", "/data/", "mlflow.db", "/mlruns/", "__pycache__/"):
        assert heavy in env["excludes"]
    assert command("search_spaces/smoke.yaml", ["tracking.uri=http://h:5000", "a.b=x y"]) == (
        "python jobs/entrypoint.py search_spaces/smoke.yaml --set tracking.uri=http://h:5000 --set 'a.b=x y'")


def test_entrypoint_fills_what_the_spec_leaves_to_the_cluster(monkeypatch):
    from xsweep.spec import load_spec

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("XSWEEP_STORAGE_PATH", "s3://ray-results/sweeps")
    monkeypatch.setenv("XSWEEP_S3_ENDPOINT_URL", "http://minio:9000")
    spec = load_spec(SPECS / "smoke.yaml")  # tracking.uri null, storage.path relative
    assert entrypoint.env_overrides(spec, []) == [
        "tracking.uri=http://mlflow:5000", "storage.path=s3://ray-results/sweeps",
        "storage.endpoint_url=http://minio:9000"]
    # What the user --set always wins; an absolute path is left alone.
    given = ["tracking.uri=http://other:5000", "storage.path=/shared/results"]
    assert entrypoint.env_overrides(load_spec(SPECS / "smoke.yaml", overrides=given), given) == []


# ---- on a 2-node cluster -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    # Under /tmp, short: Ray's unix sockets live below it (108-byte path limit).
    folder = Path(tempfile.mkdtemp(prefix="xsweep-ray-"))
    ray = RayCluster(folder, worker_resources={"worker_node": 1})
    try:
        ray.start()
        yield ray
    finally:
        ray.stop()
        stopped = ray.head.stopped_tree + ray.worker.stopped_tree
        # SIGKILLed processes take a moment to be gone, and their sockets too: CI once saw two of
        # the lost node's ports still listened on with no process left holding them.
        deadline = time.monotonic() + 30
        while (still_running(stopped) or listening_ports(ray.ports)) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = still_running(stopped)
        left = listening_ports(ray.ports)
        shutil.rmtree(folder, ignore_errors=True)
    assert not survivors, f"processes of the cluster still running: {survivors}"
    assert not left, f"ports of the cluster still listened on (port: pid command): {left}"


@pytest.fixture(scope="module")
def submitted(ray_cluster, mlflow_server, tmp_path_factory):
    """One real `xsweep submit` of the smoke sweep; the tests below read what it left."""
    shared = tmp_path_factory.mktemp("shared-results")  # both nodes are on this machine: shared storage
    workdir = tmp_path_factory.mktemp("submit")
    started = time.monotonic()
    proc = run_xsweep(
        "submit", str(SPECS / "smoke.yaml"), "--address", ray_cluster.address,
        "--set", f"tracking.uri={mlflow_server.uri}", "--set", f"tracking.experiment={EXPERIMENT}",
        "--set", f"storage.path={shared}", "--set", f"train.epochs={EPOCHS}",
        cwd=workdir, env=ray_cluster.client_env, timeout=600)
    return proc, time.monotonic() - started


def _runs(uri: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`xsweep.kind` = 'sweep'")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return client, parent, children


@pytest.mark.slow
@pytest.mark.cluster
def test_submit_streams_the_job_and_exits_with_its_outcome(submitted, ray_cluster, mlflow_server):
    proc, seconds = submitted
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    job_id = JOB_ID.search(proc.stdout).group(1)
    assert f"MLflow: experiment '{EXPERIMENT}' at {mlflow_server.uri}" in proc.stdout
    assert "sweep finished: 4 completed" in proc.stdout  # the job's own log, streamed here
    assert proc.stdout.rstrip().splitlines()[-2] == f"job {job_id}: SUCCEEDED"
    assert ray_cluster.token not in out  # the token is sent, never shown
    print(f"submit to result: {seconds:.0f} s")

    listed = run_xsweep("jobs", "--address", ray_cluster.address, cwd=ray_cluster.folder,
                        env=ray_cluster.client_env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(job_id)]
    assert row.split()[1] == "SUCCEEDED" and "jobs/entrypoint.py search_spaces/smoke.yaml" in row


@pytest.mark.slow
@pytest.mark.cluster
def test_trials_ran_on_both_nodes_and_mlflow_holds_every_run(submitted, mlflow_server):
    client, parent, children = _runs(mlflow_server.uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["xsweep.ray_address"] == "auto"
    assert len(children) == 4
    nodes = {c.data.tags.get("xsweep.node_ip") for c in children}
    assert nodes == {"127.0.0.2", "127.0.0.3"}, nodes
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["xsweep.status"] == "completed"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (child.info.run_name, steps)
        best = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoints/best")}
        assert {"checkpoints/best/state.pt", "checkpoints/best/best.json"} <= best, best


@pytest.mark.slow
@pytest.mark.cluster
def test_reproduce_the_best_trial_from_the_server_alone(submitted, mlflow_server, tmp_path):
    # A fresh folder on "another machine": no results, no Ray, only the tracking server.
    proc = run_xsweep("reproduce", "--experiment", EXPERIMENT, "--tracking-uri", mlflow_server.uri,
                      cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.cluster
def test_token_problems_are_one_line(ray_cluster, tmp_path):
    # No token anywhere: not in the environment, none in this HOME's ~/.ray/auth_token.
    bare = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    bare["HOME"] = str(tmp_path)
    cases = {
        "needs a Ray token": bare,
        "needs a Ray token; set": dict(bare, RAY_AUTH_MODE="token"),
        "rejected the Ray token": dict(bare, RAY_AUTH_TOKEN="not-the-token"),
    }
    for expected, env in cases.items():
        proc = subprocess.run([str(XSWEEP), "jobs", "--address", ray_cluster.address], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
        assert proc.stderr.startswith(f"xsweep: --address: {ray_cluster.address} {expected}"), proc.stderr
        assert "not-the-token" not in proc.stderr


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _node_ids(cluster: RayCluster) -> dict[str, str]:
    """node IP -> node id of the cluster's live nodes, from the head's state API."""
    import requests

    response = requests.get(f"{cluster.address}/api/v0/nodes", timeout=5,
                            headers={"Authorization": f"Bearer {cluster.token}"})
    rows = response.json()["data"]["result"]["result"]
    return {n["node_ip"]: n["node_id"] for n in rows if n["state"] == "ALIVE"}


def _wait_until_the_cluster_is_idle(cluster: RayCluster, seconds: float) -> None:
    """A stopped job holds CPUs for a while after it ended: its trials' placement groups (a CPU
    bundle each) and actors go after their owner. A sweep submitted before they are gone waits for
    CPUs, or puts both trials on the head."""
    import requests

    def listed(kind: str, state: str) -> list[dict]:
        response = requests.get(
            f"{cluster.address}/api/v0/{kind}", timeout=10,
            params={"filter_keys": "state", "filter_predicates": "=", "filter_values": state, "limit": 1000},
            headers={"Authorization": f"Bearer {cluster.token}"})
        return response.json()["data"]["result"]["result"]

    deadline = time.monotonic() + seconds
    while True:
        busy = [g["placement_group_id"] for state in ("CREATED", "PENDING", "RESCHEDULING")
                for g in listed("placement_groups", state)]
        busy += [a["class_name"] for a in listed("actors", "ALIVE") if a["class_name"] == "ImplicitFunc"]
        if not busy:
            return
        assert time.monotonic() < deadline, f"the cluster is still busy after {seconds:.0f} s: {busy}"
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.cluster
def test_stop_ends_a_running_submission_with_exit_1_and_frees_the_cluster(
        submitted, ray_cluster, mlflow_server, tmp_path):
    # After the sweep above (one CPU per node); its own experiment, so `reproduce` above is unaffected.
    proc = subprocess.Popen(
        [str(XSWEEP), "submit", str(SPECS / "smoke.yaml"), "--address", ray_cluster.address,
         "--set", f"tracking.uri={mlflow_server.uri}", "--set", "tracking.experiment=stopped",
         "--set", f"storage.path={tmp_path}", "--set", "train.epochs=200"],
        cwd=tmp_path, env=dict(os.environ, **ray_cluster.client_env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if JOB_ID.search(line):
                break
        job_id = JOB_ID.search("".join(lines)).group(1)
        # Stop a sweep that is training, as a user does: both trials have reported an epoch. (Stopped
        # while Tune was still creating the trials' placement groups, Ray once kept two of them, and a
        # trial actor, for minutes after the job had ended.)
        deadline = time.monotonic() + 300
        while len([t for t in tmp_path.glob("smoke-*/trial_*") if _results(t)]) < 2:
            assert time.monotonic() < deadline, "the stopped sweep's two trials never both reported an epoch"
            time.sleep(0.5)
        stop = run_xsweep("stop", job_id, "--address", ray_cluster.address, cwd=tmp_path,
                          env=ray_cluster.client_env, timeout=180)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert stop.stdout.strip().splitlines()[-1] == f"job {job_id}: STOPPED"
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, rest[-3000:]
    assert f"job {job_id}: STOPPED" in rest
    # A stopped sweep holds no CPU of the cluster: its trials and their placement groups are gone.
    _wait_until_the_cluster_is_idle(ray_cluster, seconds=120)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_two_worker_trial_trains_across_both_nodes(submitted, ray_cluster, mlflow_server, tmp_path):
    """resources.workers_per_trial: 2 with one CPU per node: Ray places one data-parallel worker on
    each node (training/data_parallel.py), and their gloo group trains the trial across the two."""
    _wait_until_the_cluster_is_idle(ray_cluster, seconds=60)
    proc = run_xsweep(
        "submit", str(SPECS / "smoke.yaml"), "--address", ray_cluster.address,
        "--set", f"tracking.uri={mlflow_server.uri}", "--set", "tracking.experiment=two-nodes",
        "--set", f"storage.path={tmp_path}", "--set", "train.epochs=2", "--set", "search.num_samples=1",
        "--set", "resources.workers_per_trial=2", "--set", "resources.cpus_per_trial=2",
        cwd=tmp_path, env=ray_cluster.client_env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("two-nodes").experiment_id
    (run,) = client.search_runs([experiment], filter_string="tags.`xsweep.kind` != 'sweep'")
    assert run.data.tags["xsweep.status"] == "completed"
    assert {run.data.tags[f"xsweep.worker.{rank}.node_ip"] for rank in (0, 1)} == {"127.0.0.2", "127.0.0.3"}
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
    assert steps == [1, 2]


@pytest.mark.slow
@pytest.mark.cluster
def test_lost_node_its_trial_resumes_on_the_other_node(submitted, ray_cluster, mlflow_server, tmp_path):
    """The worker node's raylet is SIGKILLed while a trial trains there: the trial goes on on the
    head, from its last checkpoint in the shared storage. Last in this module: the node stays dead."""
    nodes = _node_ids(ray_cluster)
    worker_id, head_id = nodes[ray_cluster.worker_ip], nodes[ray_cluster.head_ip]
    epochs = 8
    _wait_until_the_cluster_is_idle(ray_cluster, seconds=60)
    proc = subprocess.Popen(
        [str(XSWEEP), "submit", str(SPECS / "smoke.yaml"), "--address", ray_cluster.address,
         "--set", f"tracking.uri={mlflow_server.uri}", "--set", "tracking.experiment=lost-node",
         "--set", f"storage.path={tmp_path}", "--set", f"train.epochs={epochs}",
         "--set", "search.num_samples=2", "--set", "failure.max_failures=2"],
        cwd=tmp_path, env=dict(os.environ, **ray_cluster.client_env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker_tree = descendants(ray_cluster.worker.process.pid)
    try:
        deadline, victim = time.monotonic() + 400, None
        while victim is None and time.monotonic() < deadline:
            for trial in tmp_path.glob("smoke-*/trial_*"):  # storage.path/<sweep>/trial_<id>
                results = _results(trial)
                if results and results[-1]["xsweep"]["node_id"] == worker_id and 2 <= results[-1]["epoch"] < epochs:
                    victim = trial
            time.sleep(0.2)
        if victim is None:  # say where each trial trained, and what the submission printed
            seen = {t.name: [(r["epoch"], r["xsweep"]["node_id"][:8]) for r in _results(t)]
                    for t in tmp_path.glob("smoke-*/trial_*")}
            proc.kill()
            printed, _ = proc.communicate(timeout=60)
            raise AssertionError(f"no trial trained on the worker node {worker_id[:8]}: {seen}\n{printed[-3000:]}")
        killed_at_epoch = _results(victim)[-1]["epoch"]
        (raylet,) = [pid for pid, _ in descendants(ray_cluster.worker.process.pid)
                     if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet"]
        os.kill(raylet, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kill_remembered(worker_tree)  # what is left of the lost node
    assert proc.returncode == 0, out[-4000:]

    results = _results(victim)
    epochs_seen = [r["epoch"] for r in results]
    # Continued, never restarted: after the loss it picks up from a checkpoint, not from epoch 1.
    assert epochs_seen == sorted(epochs_seen) and epochs_seen[-1] == epochs, epochs_seen
    assert epochs_seen.count(1) == 1
    assert results[-1]["xsweep"]["node_id"] == head_id  # what a trial tells the driver: xsweep.contract
    assert {r["xsweep"]["node_id"] for r in results if r["epoch"] <= killed_at_epoch} >= {worker_id}

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("lost-node").experiment_id
    (run,) = client.search_runs([experiment],
                                filter_string=f"tags.`xsweep.trial_id` = '{victim.name.removeprefix('trial_')}'")
    assert run.data.tags["xsweep.status"] == "completed"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
    assert steps == list(range(1, epochs + 1))
