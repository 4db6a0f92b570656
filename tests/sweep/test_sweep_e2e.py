"""`xsweep run` / `resume` / `status` end to end: real embedded Ray on loopback, real MLflow (sqlite).

These run the console script in a temp working folder exactly as a user does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import SPECS, XSWEEP, run_xsweep

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def _child_runs(client: MlflowClient, experiment: str, parent_run_id: str):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              max_results=1000)


def _sweep_folder(workdir: Path, name: str) -> Path:
    (folder,) = sorted((workdir / "results").glob(f"{name}-*"))
    return folder


# smoke_sweep (tests/conftest.py): one real smoke sweep, shared by the tests that only read what it
# left behind, and by the extend tests at the end of this module, which add to it.


def test_smoke_sweep_runs_every_trial_and_prints_the_best(smoke_sweep):
    workdir, proc, _ = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "sweep finished: 4 completed" in proc.stdout
    assert "best trial:" in proc.stdout and "xsweep reproduce --experiment smoke" in proc.stdout
    folder = _sweep_folder(workdir, "smoke")
    record = json.loads((folder / "xsweep.json").read_text())
    trial_dirs = [d for d in folder.iterdir() if d.is_dir() and d.name.startswith("trial_")]
    assert len(trial_dirs) == 4
    for trial in trial_dirs:
        # Every epoch reported a checkpoint; Tune kept the best and the latest.
        checkpoints = sorted(trial.glob("checkpoint_*"))
        assert 1 <= len(checkpoints) <= 2, checkpoints
        assert all((c / "state.pt").exists() and (c / "state.pt.sha256").exists() for c in checkpoints)
    assert record["parent_run_id"]
    assert record["tracking_uri"] == f"sqlite:///{workdir.resolve()}/mlflow.db"  # what resume and status open


def test_a_clean_run_prints_no_warning(smoke_sweep):
    _, proc, _ = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    output = proc.stdout + proc.stderr
    assert "warning" not in output.lower(), output[-4000:]


def test_status_words_every_trial_as_mlflow_does(tmp_path):
    # ASHA stops some trials early: status says "stopped", as MLflow's tag and the report do,
    # never Tune's "terminated".
    asha = ["scheduler.kind=asha", "scheduler.grace_period=1", "search.max_concurrent=1"]  # one at a time: the
    # same trials stop in every run (2 of the 4, their first epoch below the first trial's)
    sets = [arg for item in asha for arg in ("--set", item)]
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), *sets, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    status = run_xsweep("status", "smoke", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    shown = {line.split()[0]: line.split()[-6] for line in status.stdout.splitlines()
             if line.split()[:1] and len(line.split()[0]) == 8 and line.split()[0] != "trial"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = json.loads((_sweep_folder(tmp_path, "smoke") / "xsweep.json").read_text())["parent_run_id"]
    tagged = {run.data.tags["xsweep.trial_id"]: run.data.tags["xsweep.status"]
              for run in _child_runs(client, "smoke", parent)}
    assert shown == tagged and "stopped" in shown.values(), (status.stdout, tagged)
    assert "terminated" not in status.stdout.lower()


def test_smoke_sweep_is_tracked_as_a_parent_with_child_runs(smoke_sweep):
    workdir, proc, _ = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    folder = _sweep_folder(workdir, "smoke")
    parent_id = json.loads((folder / "xsweep.json").read_text())["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["train.epochs"] == "2"
    assert len(parent.data.tags["xsweep.spec_sha256"]) == 64
    assert parent.data.tags["xsweep.trials.completed"] == "4"
    children = _child_runs(client, "smoke", parent_id)
    assert len(children) == 4
    best_value = float(parent.data.metrics["best_val_accuracy"])
    seen_best = 0.0
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["xsweep.status"] == "completed"
        assert child.info.run_name.startswith("lr=") and child.info.run_name.endswith(" s0")
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == [1, 2]  # every epoch exactly once, step = epoch
        seen_best = max(seen_best, *(m.value for m in history))
        # digits has 10 classes: top-5 accuracy is logged each epoch, and is at least the top-1
        top5 = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val_top5_accuracy")}
        assert sorted(top5) == [1, 2] and all(top5[m.step] >= m.value for m in history)
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id, "checkpoints/best")]
        assert "checkpoints/best/state.pt" in artifacts
        # What the trial cost: each epoch's device-seconds (growing), peak memory and FLOP utilisation,
        # and the trial process's system metrics, sampled in the trial, on the UI's System metrics tab.
        spent = [m.value for m in sorted(client.get_metric_history(child.info.run_id, "device_seconds"),
                                         key=lambda m: m.step)]
        assert len(spent) == 2 and 0 < spent[0] < spent[1]
        assert child.data.metrics["peak_memory_bytes"] > 50 * 2**20 and 0 < child.data.metrics["mfu"] < 1
        assert child.data.tags["xsweep.peak_flops"].startswith("CPU: measured fp32")
        cpu = client.get_metric_history(child.info.run_id, "system/process_cpu_utilization_percentage")
        assert len(cpu) >= 2 and all(m.value > 0 for m in cpu)  # one sample at least per epoch
        assert client.get_metric_history(child.info.run_id, "system/process_memory_rss_megabytes")
        # How fast it started training: to its first step every epoch; the first epoch's extra cost
        # once the second gave the pace. Two trials at a time on 2 cores: neither compiles on a CPU.
        startup = client.get_metric_history(child.info.run_id, "startup_seconds")
        assert sorted(m.step for m in startup) == [1, 2] and all(0 < m.value < 600 for m in startup)
        assert [m.step for m in client.get_metric_history(child.info.run_id, "first_epoch_extra_seconds")] == [2]
        assert "compile_seconds" not in child.data.metrics
        # The model's own figures, the same every epoch, are logged once: no flat line in the UI.
        assert [m.step for m in client.get_metric_history(child.info.run_id, "params")] == [1]
        assert child.data.metrics["params"] > 0 and child.data.metrics["gflops"] > 0
    assert best_value == pytest.approx(seen_best)
    # MLflow's Duration is each trial's own: two at a time, so the last two trials' runs are made once
    # an earlier trial has run, not all when the sweep began.
    first_epoch_logged = min(m.timestamp for child in children
                             for m in client.get_metric_history(child.info.run_id, "val_accuracy"))
    assert all(start > first_epoch_logged for start in sorted(c.info.start_time for c in children)[2:])
    # Two trials at a time: the first two start their processes (torch's import, the data); a later
    # trial that gets a process an earlier one left (Tune's result names the process) starts sooner.
    pid_of = {d.name.removeprefix("trial_"): json.loads((d / "result.json").read_text().splitlines()[0])["pid"]
              for d in folder.glob("trial_*")}
    seen, fresh, reused = set(), [], []
    for child in sorted(children, key=lambda c: c.info.start_time):
        pid = pid_of[child.data.tags["xsweep.trial_id"]]
        (reused if pid in seen else fresh).append(child.data.metrics["startup_seconds"])
        seen.add(pid)
    assert reused and max(reused) < min(fresh), (fresh, reused)
    # The sweep's cost on its parent: every trial's device-seconds, summed, and in the summary.
    total = sum(child.data.metrics["device_seconds"] for child in children)
    assert parent.data.metrics["device_seconds"] == pytest.approx(total)
    assert re.search(r"^cost: +[0-9.e-]+ device-hours \(\d+ device-seconds\) over 4 trials on cpu$", proc.stdout, re.M), \
        proc.stdout[-2000:]
    version = client.get_model_version_by_alias("smoke", "best")
    assert version.tags["xsweep.trial_run_id"] in {c.info.run_id for c in children}
    # Tagged with what a later sweep sharing the model must beat to take the alias.
    assert version.tags["xsweep.sweep"] == folder.name and version.tags["xsweep.metric"] == "val_accuracy"
    assert float(version.tags["xsweep.value"]) == pytest.approx(best_value)
    assert f"  registered model 'smoke' version {version.version} (alias best)\n" in proc.stdout


def test_status_lists_every_trial(smoke_sweep):
    workdir, proc, _ = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    status = run_xsweep("status", "smoke", cwd=workdir)
    assert status.returncode == 0, status.stderr
    lines = [line for line in status.stdout.splitlines() if line.split()[:1] and len(line.split()[0]) == 8 and line.split()[0] != "trial"]
    assert len(lines) == 4 and all("completed" in line and "2/2" in line for line in lines)
    assert "first step" in status.stdout and all(re.search(r" \d+(\.\d)?s ", line) for line in lines), status.stdout
    # In the order the searcher made the trials (Tune numbers them in its saved state), and the best
    # accuracy as a percentage, as the console shows it.
    numbers = {}
    for state in _sweep_folder(workdir, "smoke").glob("experiment_state*.json"):
        for trial, _ in json.loads(state.read_text())["trial_data"]:
            trial = json.loads(trial)
            numbers[trial["trial_id"]] = int(trial["experiment_tag"].split("_")[0])
    shown = [numbers[line.split()[0]] for line in lines]
    assert shown == sorted(shown), status.stdout
    assert all(re.search(r" 2/2 +\d+\.\d\d% ", line) for line in lines), status.stdout
    assert re.search(r"^cost: .* over 4 trials on cpu$", status.stdout, re.M), status.stdout


def test_resume_of_a_finished_sweep_starts_nothing_and_registers_nothing(smoke_sweep):
    workdir, proc, _ = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    versions = [v.version for v in client.search_model_versions("name='smoke'")]
    resumed = run_xsweep("resume", "smoke", cwd=workdir)
    folder = _sweep_folder(workdir, "smoke")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines() == [
        f"sweep {folder.name} has finished (4 completed): nothing to resume. `xsweep extend {folder.name}` adds "
        f"trials to it; `xsweep status {folder.name}` lists them."], resumed.stdout
    assert not resumed.stderr.strip(), resumed.stderr
    # No Ray, no trial, no second version of the registered model: the alias stays where it was.
    assert [v.version for v in client.search_model_versions("name='smoke'")] == versions


def test_interrupted_sweep_resumes_with_every_trial_finished_once(tmp_path):
    """Ctrl-C mid-sweep, then `xsweep resume`: every configured trial finishes exactly once."""
    env = dict(os.environ)
    # A process group of its own, which the SIGINT below goes to, as a terminal's Ctrl-C goes to its
    # foreground group: every process the sweep started there gets it too.
    proc = subprocess.Popen(
        [str(XSWEEP), "run", str(SPECS / "smoke.yaml"), "--set", "train.epochs=3", "--set", "search.num_samples=3"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    # Wait until some trial has reported its first epoch, then interrupt the driver.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if list(tmp_path.glob("results/smoke-*/trial_*/checkpoint_000000")):
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert "resume:" in out, out[-3000:]
    # No traceback (the tracking writer keeps delivering), no writes lost, no run left reserved.
    assert "Traceback" not in out and "could not be delivered" not in out, out[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke").experiment_id
    assert not client.search_runs([experiment], filter_string="tags.`xsweep.kind` = 'reserved'")
    # The trials it stopped are interrupted, not failed, in the summary and in MLflow; none is left RUNNING.
    counts = re.search(r"^sweep interrupted: (.+)$", out, re.M)
    assert counts and "interrupted" in counts[1] and "failed" not in counts[1], out[-3000:]
    trial_runs = client.search_runs([experiment], filter_string="tags.`xsweep.kind` = 'trial'")
    assert trial_runs and all(r.info.status != "RUNNING" for r in trial_runs), [r.info.status for r in trial_runs]
    assert any(r.data.tags.get("xsweep.status") == "interrupted" and r.info.status == "KILLED" for r in trial_runs)

    resumed = run_xsweep("resume", "smoke", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "sweep finished: 3 completed" in resumed.stdout
    assert "deleted" not in resumed.stdout, resumed.stdout  # no run of the interrupted sweep was left over

    folder = _sweep_folder(tmp_path, "smoke")
    parent_id = json.loads((folder / "xsweep.json").read_text())["parent_run_id"]
    assert len(client.search_runs([experiment], filter_string="tags.`xsweep.kind` = 'sweep'")) == 1
    children = _child_runs(client, "smoke", parent_id)
    assert len(children) == 3
    for child in children:
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy"))
        assert steps == [1, 2, 3], (child.info.run_name, steps)
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_a_reader_that_stops_reading_stops_the_sweep_as_ctrl_c_does(tmp_path):
    """`xsweep run ... | sed '/.../q'`: the pipe closes once a trial has started; the sweep stops
    gracefully (exit 130, no traceback, one line on how to resume), nothing left RUNNING in MLflow."""
    err = tmp_path / "stderr.txt"
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {XSWEEP} run {SPECS / 'smoke.yaml'} 2>{err} | sed '/started (trial 1 /q'"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stdout + err.read_text()
    assert "started (trial 1 of 4)" in proc.stdout
    folder = _sweep_folder(tmp_path, "smoke")
    assert err.read_text() == (f"xsweep: the sweep stopped, as on Ctrl-C, since its output was closed; "
                               f"xsweep resume {folder}\n")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(json.loads((folder / "xsweep.json").read_text())["parent_run_id"])
    assert parent.info.status == "KILLED" and parent.data.tags["xsweep.status"] == "interrupted"
    trials = _child_runs(client, "smoke", parent.info.run_id)
    ended = [(t.info.status, t.data.tags.get("xsweep.status")) for t in trials]
    assert ("KILLED", "interrupted") in ended and not any(status == "RUNNING" for status, _ in ended), ended


def test_diverging_trial_is_marked_and_the_sweep_goes_on(tmp_path):
    """lr = 1000 blows up: that trial ends as 'diverged' in Tune, MLflow and the Optuna study."""
    import pickle

    proc = run_xsweep(
        "run", str(SPECS / "smoke.yaml"), "--set", "search.algorithm=grid", "--set", "search.num_samples=2",
        "--set", 'search.space={"train.lr": {"choice": [0.05, 1000.0]}}', cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep finished: 1 completed, 1 diverged" in proc.stdout

    folder = _sweep_folder(tmp_path, "smoke")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent_id = json.loads((folder / "xsweep.json").read_text())["parent_run_id"]
    by_lr = {json.loads(c.data.tags["xsweep.config"])["train"]["lr"]: c for c in _child_runs(client, "smoke", parent_id)}
    assert by_lr[1000.0].data.tags["xsweep.status"] == "diverged"
    assert by_lr[0.05].data.tags["xsweep.status"] == "completed"
    assert client.get_run(parent_id).data.tags["xsweep.best_run_id"] == by_lr[0.05].info.run_id

    # The searcher was told: Optuna's study holds the diverged configuration as FAILED.
    (state_file,) = folder.glob("searcher-state-*.pkl")
    with open(state_file, "rb") as f:
        searcher_state = pickle.load(f)
    study = searcher_state["inner"]._ot_study
    states = {t.params["train.lr"]: t.state.name for t in study.trials}
    assert states == {0.05: "COMPLETE", 1000.0: "FAIL"}


def test_relative_data_root_means_the_folder_the_sweep_was_started_in(tmp_path):
    """Trials run in folders of their own; `data.root: images` must still be ./images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "data.dataset=imagefolder",
                      "--set", "data.root=images", "--set", "search.num_samples=1", "--set", "train.epochs=1",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep finished: 1 completed" in proc.stdout
    record = json.loads((_sweep_folder(tmp_path, "smoke") / "xsweep.json").read_text())
    assert f'data.root="{tmp_path / "images"}"' in record["overrides"]  # what `resume` will use


FIXTURES = Path(__file__).resolve().parent / "fixtures"  # tests/sweep/fixtures


def test_a_sweep_interrupted_before_the_rooms_change_is_refused_in_one_line(tmp_path):
    """Tune's saved state of a sweep run by xsweep before its modules moved into subpackages (made
    with commit cad3fac and interrupted after its first epoch) names modules that no longer exist."""
    folder = tmp_path / "results" / "smoke-20261201-094841"
    folder.mkdir(parents=True)
    for file in (FIXTURES / "sweep-before-rooms").iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.create_run(client.create_experiment("smoke"), tags={"xsweep.git_commit": "cad3fac" + "0" * 33})
    record = json.loads((folder / "xsweep.json").read_text())
    record |= {"workdir": str(tmp_path), "parent_run_id": parent.info.run_id, "spec_source": "search_spaces/smoke.yaml"}
    (folder / "xsweep.json").write_text(json.dumps(record))
    proc = run_xsweep("resume", str(folder), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line == (f"xsweep: {folder}: saved by an older xsweep (its state names the module xsweep.search, which "
                    f"this version has moved), so it cannot be resumed here: `git checkout cad3fac00000` (the commit "
                    f"it ran) and resume it there, or start it again with `xsweep run search_spaces/smoke.yaml`")
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"  # as it was: nothing written


# ---- `xsweep extend` and `search.warm_start`, on the smoke sweep above (these run last: they add to it)

def _searcher_study(folder: Path):
    import pickle

    state_file = max(folder.glob("searcher-state-*.pkl"))
    with open(state_file, "rb") as f:
        return pickle.load(f)["inner"]._ot_study


@pytest.fixture(scope="module")
def extended(smoke_sweep):
    """The smoke sweep (4 trials of 2 choices x 2 choices x lr) extended by a third activation and two
    configurations more."""
    workdir, proc, _ = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = _sweep_folder(workdir, "smoke")
    before = (folder / "xsweep.json").read_text()
    refused = {
        "num_samples": run_xsweep("extend", "smoke", "--set", "search.num_samples=4", cwd=workdir),
        "name": run_xsweep("extend", "smoke", "--set", "name=other", cwd=workdir),
    }
    unchanged = (folder / "xsweep.json").read_text() == before and not (folder / "v2").exists()
    proc = run_xsweep("extend", "smoke", "--set", "search.num_samples=6",
                      "--set", "search.space.model.activation={choice: [none, relu, elu]}", cwd=workdir)
    return workdir, folder, proc, refused, unchanged


def test_extend_trains_only_new_configurations_as_version_two_under_the_same_parent(extended, smoke_sweep):
    workdir, folder, proc, _, _ = extended
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "as version 2: 2 new trials" in proc.stdout
    assert "4 configuration(s) carried into the new space as the searcher's evidence, 0 trial(s) outside" in proc.stdout
    assert "sweep version 2 finished: 2 completed; all versions: 6 completed" in proc.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    record = json.loads((folder / "xsweep.json").read_text())
    parent = client.get_run(record["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["xsweep.sweep_version"] == "2" and parent.data.tags["xsweep.trials.completed"] == "6"
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "spec/v2")} >= {
        "spec/v2/spec.yaml", "spec/v2/spec.resolved.yaml", "spec/v2/overrides.txt"}
    children = _child_runs(client, "smoke", parent.info.run_id)
    versions = sorted(c.data.tags.get("xsweep.sweep_version") for c in children)
    assert versions == ["1"] * 4 + ["2"] * 2
    configurations = [c.data.tags["xsweep.searched"] for c in children]
    assert len(set(configurations)) == 6  # no configuration trained twice
    for child in children:  # the first version's runs are as they were: each epoch once
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy"))
        assert steps == [1, 2] and child.data.tags["xsweep.status"] == "completed"
    # The new version's Optuna study holds the four earlier configurations as evidence.
    study = _searcher_study(folder / "v2")
    history = [t for t in study.trials if t.user_attrs.get("xsweep_history")]
    assert len(history) == 4 and all(t.state.name == "COMPLETE" for t in history)
    earlier = {c.data.tags["xsweep.searched"] for c in children if c.data.tags.get("xsweep.sweep_version") == "1"}
    assert {json.dumps(t.params, sort_keys=True) for t in history} == earlier


def test_status_and_report_show_each_trials_version(extended):
    workdir, _, proc, _, _ = extended
    assert proc.returncode == 0
    status = run_xsweep("status", "smoke", cwd=workdir)
    assert status.returncode == 0, status.stderr
    assert "6 of 6 trials, 2 versions" in status.stdout
    rows = [line.split() for line in status.stdout.splitlines() if " completed " in line]
    assert sorted(row[row.index("completed") - 1] for row in rows) == ["1"] * 4 + ["2"] * 2
    report = run_xsweep("report", "smoke", "--no-log", cwd=workdir)
    assert report.returncode == 0, report.stderr
    (markdown,) = workdir.glob("reports/*/report.md")
    table = markdown.read_text().split("## All trials", 1)[1]
    assert "| trial | version | status |" in table
    assert sorted(line.split(" | ")[1] for line in table.splitlines() if line.startswith("| lr=")) == \
        ["1"] * 4 + ["2"] * 2


def test_extend_refuses_in_one_line_what_it_cannot_do_and_writes_nothing(extended):
    workdir, folder, _, refused, unchanged = extended
    assert unchanged
    assert refused["num_samples"].returncode == 2
    assert refused["num_samples"].stderr.strip().splitlines() == [
        "--set search.num_samples: the sweep has 4 configurations in this space already and num_samples is 4 "
        "(raise it to train more)"]
    assert refused["name"].returncode == 2
    assert refused["name"].stderr.strip().splitlines() == [
        f"--set name: an extended sweep keeps its name (start a new sweep with `xsweep run {SPECS / 'smoke.yaml'} "
        "--set name=other` instead)"]
    # A sweep folder whose spec no longer matches what its MLflow parent ran is not extended.
    record = json.loads((folder / "xsweep.json").read_text())
    tampered = dict(record, overrides=[*record["overrides"], "train.batch_size=32"], versions=[])
    (folder / "xsweep.json").write_text(json.dumps(tampered))
    try:
        proc = run_xsweep("extend", "smoke", "--set", "search.num_samples=8", cwd=workdir)
    finally:
        (folder / "xsweep.json").write_text(json.dumps(record))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert f"its MLflow parent run {record['parent_run_id']} records spec hash" in line
    assert "the folder and the tracking store are not of one sweep" in line


def test_a_warm_start_seeds_a_new_sweep_with_the_trials_its_space_holds(extended):
    workdir, _, proc, _, _ = extended
    assert proc.returncode == 0
    warm = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "name=warm", "--set", "search.num_samples=2",
                      "--set", "search.warm_start={experiment: smoke}", cwd=workdir)
    assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    smoke_runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id],
                                    filter_string="tags.`xsweep.kind` = 'trial'")
    # Of the six smoke trials, those the extension ran with elu lie outside this space (none, relu).
    outside = sum(json.loads(r.data.tags["xsweep.searched"])["model.activation"] == "elu" for r in smoke_runs)
    assert (f"warm start: {6 - outside} configuration(s) of experiment 'smoke' seed the searcher "
            f"({outside} trial(s) outside") in warm.stdout
    study = _searcher_study(_sweep_folder(workdir, "warm"))
    assert len([t for t in study.trials if t.user_attrs.get("xsweep_history")]) == 6 - outside
    smoke = {json.dumps(t.params, sort_keys=True) for t in study.trials if t.user_attrs.get("xsweep_history")}
    (parent,) = client.search_runs([client.get_experiment_by_name("warm").experiment_id],
                                   filter_string="tags.`xsweep.kind` = 'sweep'")
    new = {c.data.tags["xsweep.searched"] for c in _child_runs(client, "warm", parent.info.run_id)}
    assert len(new) == 2 and not new & smoke  # nothing the warm start knew is trained again

    missing = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "name=warm2",
                         "--set", "search.warm_start={experiment: nope}", cwd=workdir)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"{SPECS / 'smoke.yaml'}: search.warm_start.experiment: no experiment 'nope' in "
        f"sqlite:///{workdir.resolve()}/mlflow.db (name one whose sweeps ran there)"]
    assert not list(workdir.glob("results/warm2-*"))
