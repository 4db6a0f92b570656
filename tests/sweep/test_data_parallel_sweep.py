"""A sweep of data-parallel trials (resources.workers_per_trial: 2) on the embedded Ray: Ray Train's
two gloo workers inside the Tune trial (training/data_parallel.py), one of them SIGKILLed mid-trial.

What a user relies on: the trial is one MLflow run with its worker count as a param and each
worker's node and device as tags; a lost worker costs the epoch it was in, not the trial (it goes
on from its last checkpoint, and MLflow holds each epoch once); and `xsweep reproduce` re-trains
it on two local processes, bit for bit, or on another count with the tolerance as the judge.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SPECS, XSWEEP, run_xsweep, sweep_runs
from services import OutputLines, descendants

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

EPOCHS = 3
SETTINGS = ["resources.workers_per_trial=2", "resources.cpus_per_trial=2", "search.num_samples=1",
            "search.max_concurrent=1", f"train.epochs={EPOCHS}"]
EPOCH_LINE = re.compile(rf"epoch (\d+)/{EPOCHS} ")


def _train_workers(pid: int) -> list[int]:
    """The Ray Train worker processes below `pid` (Ray titles an actor's process after its class)."""
    found = []
    for child, _ in descendants(pid):
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if title.startswith("ray::RayTrainWorker"):
            found.append(child)
    return found


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The sweep, with one of its two workers SIGKILLed once the trial has reported epoch 1.

    The clock is the console's own epoch lines, printed as the driver receives each result (whose
    checkpoint is persisted by then); Tune's result.json is flushed lazily, in bursts of epochs, so
    on a fast run it showed epoch 1 only after the last epoch had begun."""
    workdir = tmp_path_factory.mktemp("data-parallel")
    command = [str(XSWEEP), "run", str(SPECS / "smoke.yaml")]
    for item in SETTINGS:
        command += ["--set", item]
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = OutputLines(proc)
    try:
        deadline, killed_after = time.monotonic() + 400, None
        while killed_after is None and time.monotonic() < deadline and proc.poll() is None:
            reported = [int(m.group(1)) for line in output.so_far() if (m := EPOCH_LINE.search(line))]
            workers = _train_workers(proc.pid)
            if reported and reported[-1] < EPOCHS and len(workers) == 2:
                os.kill(workers[-1], signal.SIGKILL)
                killed_after = reported[-1]
            time.sleep(0.1)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = output.text()
    assert killed_after is not None, f"no worker was ever seen training: {out[-3000:]}"
    return workdir, proc, out, killed_after


def test_the_trial_is_one_run_with_its_workers_and_each_epoch_once(swept):
    workdir, proc, out, _ = swept
    assert proc.returncode == 0, out[-4000:]
    assert "sweep finished: 1 completed" in out
    client, parent, (child,) = sweep_runs(workdir, "smoke")
    assert child.data.tags["xsweep.status"] == "completed"
    assert child.data.params["resources.workers_per_trial"] == "2"
    assert child.data.params["train.sync_bn"] == "True"  # on by default with more than one worker
    for rank in (0, 1):
        assert child.data.tags[f"xsweep.worker.{rank}.node_ip"] == "127.0.0.1"
        assert child.data.tags[f"xsweep.worker.{rank}.device"] == "cpu"
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
    assert sorted(steps) == list(range(1, EPOCHS + 1)), steps
    best = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoints/best")}
    assert "checkpoints/best/state.pt" in best, best
    # The trial's CPUs are its workers' (one each), counted for both: device-seconds sum over workers.
    seconds = [m.value for m in client.get_metric_history(child.info.run_id, "device_seconds")]
    assert seconds == sorted(seconds) and seconds[-1] > 0


def test_a_killed_worker_costs_its_epoch_not_the_trial(swept):
    workdir, proc, out, killed_after = swept
    assert proc.returncode == 0, out[-4000:]
    # Every epoch the trial reported, in the order the driver received them.
    epochs = [int(m.group(1)) for m in EPOCH_LINE.finditer(out)]
    # Went on from the last checkpoint (the epoch reported before the kill), never from 1.
    assert killed_after in epochs and epochs.count(1) == 1 and epochs[-1] == EPOCHS, out[-4000:]
    assert epochs == sorted(epochs) and set(epochs) == set(range(1, EPOCHS + 1)), out[-4000:]
    assert len(epochs) <= EPOCHS + 1, out[-4000:]  # at most the interrupted epoch again
    assert "failed, retrying: " in out, out[-4000:]  # the console said what happened
    trial = next(workdir.glob("results/smoke-*/trial_*"))
    assert not list(trial.glob("workers-*")), "Ray Train's own copies of the checkpoints were left behind"


def test_reproduce_retrains_it_on_two_local_processes_bit_for_bit(swept):
    workdir = swept[0]
    proc = run_xsweep("reproduce", "--experiment", "smoke", cwd=workdir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"re-training {EPOCHS} epoch(s) on 2 local worker processes" in proc.stdout
    assert "verdict: pass - identical" in proc.stdout


def test_reproduce_on_another_worker_count_says_the_tolerance_judges(swept):
    workdir = swept[0]
    # The two runs' float sums differ; on these short digits runs that alone moves accuracy by
    # whole points (so does a change of thread count), hence the wide tolerance here.
    proc = run_xsweep("reproduce", "--experiment", "smoke", "--workers", "1", "--tolerance", "100",
                      cwd=workdir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "re-training" in proc.stdout and "in-process" in proc.stdout
    assert "note: the sweep trained it on 2 worker(s) and this re-trains it on 1" in proc.stdout
    assert "verdict: pass - val_accuracy" in proc.stdout and "tolerance 100 pp" in proc.stdout
    refused = run_xsweep("reproduce", "--experiment", "smoke", "--workers", "3", cwd=workdir, timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "--workers: train.batch_size 64 (the global batch) does not split evenly over 3 workers (use a divisor of 64)")


def test_a_batch_the_workers_cannot_split_is_refused_before_anything_runs(tmp_path):
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "resources.workers_per_trial=3",
                      cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{SPECS / 'smoke.yaml'}: train.batch_size: 64 does not split evenly over resources.workers_per_trial (3) "
        f"workers (use a multiple of 3: it is the global batch)"]
    assert list(tmp_path.iterdir()) == []


def test_workers_that_no_node_can_hold_are_refused_in_one_line(tmp_path):
    # This machine's embedded Ray has os.cpu_count() CPUs: ask each worker for more than that.
    cpus = 2 * (os.cpu_count() + 1)
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "resources.workers_per_trial=2",
                      "--set", f"resources.cpus_per_trial={cpus}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"xsweep: resources.cpus_per_trial: {cpus} per trial, {cpus // 2} for each of its 2 workers, but the "
        f"largest node has {os.cpu_count()} CPUs and the cluster {os.cpu_count()} (lower it, or add CPU nodes "
        f"to the cluster)")
    assert "Traceback" not in proc.stderr
