"""A sweep whose driver (`xsweep run`) is SIGKILLed mid-sweep, then `xsweep resume`d.

What a user relies on after a crash of the machine's login session or an OOM kill: the embedded
Ray it started goes with it, the resume runs only what had not finished, the Optuna study goes on
where it was, and MLflow holds one parent run and one child run per trial. While it runs, the
embedded Ray listens on loopback only.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import SPECS, XSWEEP, run_xsweep
from services import descendants, listening_addresses, still_running

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SAMPLES, REPEATS, EPOCHS = 3, 2, 3


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trial_dirs(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("results/smoke-*/trial_*"))


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Runs a sweep until one trial has finished and another is training, then SIGKILLs the driver."""
    workdir = tmp_path_factory.mktemp("killed-driver")
    proc = subprocess.Popen(
        [str(XSWEEP), "run", str(SPECS / "smoke.yaml"), "--set", f"search.num_samples={SAMPLES}",
         "--set", f"search.repeats={REPEATS}", "--set", f"train.epochs={EPOCHS}"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        epochs = [r[-1]["epoch"] for r in map(_results, _trial_dirs(workdir)) if r]
        if EPOCHS in epochs and any(e < EPOCHS for e in epochs):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no trial finished while another ran: " + proc.communicate()[0][-3000:])
    tree = descendants(proc.pid)
    listening = listening_addresses([proc.pid, *(pid for pid, _ in tree)])
    before = {d.name: _results(d) for d in _trial_dirs(workdir)}
    proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    proc.communicate(timeout=60)
    return workdir, tree, listening, before, killed_at


def test_embedded_ray_listens_on_loopback_only(killed):
    _, _, listening, _, _ = killed
    assert listening, "found no listening socket of the sweep's processes"
    assert {address.rpartition(":")[0] for address in listening} == {"127.0.0.1"}, sorted(listening)


def test_resume_after_a_killed_driver_finishes_each_trial_once(killed):
    workdir, _, _, before, _ = killed
    resumed = run_xsweep("resume", "smoke", cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"sweep finished: {SAMPLES * REPEATS} completed" in resumed.stdout

    every = {d: _results(d) for d in _trial_dirs(workdir)}
    # A trial Tune created just before the kill, after its last saved state, is not in the state the
    # resume restores: its folder has no result.json (it may hold a first checkpoint) and the resume
    # suggests afresh (its MLflow run is deleted as an orphan, checked below).
    trials = {d.name: results for d, results in every.items() if results}
    assert len(trials) == SAMPLES * REPEATS, sorted(d.name for d in every)
    for name, results in trials.items():
        epochs = [r["epoch"] for r in results]
        assert epochs[-1] == EPOCHS and sorted(set(epochs)) == list(range(1, EPOCHS + 1)), (name, epochs)
        if epochs != list(range(1, EPOCHS + 1)):
            # Tune's result.json is append-only. A trial that reported an epoch after the last state
            # the driver saved re-trains it from its last saved checkpoint: it may repeat epochs but
            # never skip one, and only a trial that was training at the kill does so (MLflow still
            # holds each epoch once, checked below).
            assert before.get(name) and before[name][-1]["epoch"] < EPOCHS, (name, epochs)
            assert all(later <= earlier + 1 for earlier, later in zip(epochs, epochs[1:])), (name, epochs)
    # Trials finished before the kill were not run again: their results are exactly as they were.
    finished = [name for name, results in before.items() if results and results[-1]["epoch"] == EPOCHS]
    assert finished
    for name in finished:
        assert trials[name] == before[name]

    # The Optuna study went on: one study trial per configuration, those told before the kill kept.
    (folder,) = workdir.glob("results/smoke-*")
    state_file = max(folder.glob("searcher-state-*.pkl"))  # the resume's, by its timestamp
    with open(state_file, "rb") as f:
        study = pickle.load(f)["inner"]._ot_study
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * SAMPLES
    configs = {json.dumps(t.params, sort_keys=True) for t in study.trials}
    assert len(configs) == SAMPLES

    # MLflow: one parent, one child per trial, each epoch exactly once, all finished.
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke").experiment_id
    (parent,) = client.search_runs([experiment], filter_string="tags.`xsweep.kind` = 'sweep'")
    assert parent.info.status == "FINISHED"
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == SAMPLES * REPEATS
    assert {c.data.tags["xsweep.trial_id"] for c in children} == {n.removeprefix("trial_") for n in trials}
    for child in children:
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy"))
        assert steps == list(range(1, EPOCHS + 1)), (child.info.run_name, steps)
        assert child.info.status == "FINISHED"


def test_killed_driver_takes_its_embedded_ray_with_it(killed):
    """Runs after the resume test, which gives Ray's agents time: they notice their raylet is gone
    and exit on their own, about 90 s after the kill."""
    _, tree, _, _, killed_at = killed
    deadline = killed_at + 240
    while still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not still_running(tree), [open(f"/proc/{pid}/cmdline").read()[:120] for pid in still_running(tree)]
