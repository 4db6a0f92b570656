"""`xsweep reproduce` end to end: one real smoke sweep (Ray, sqlite MLflow), then re-train its best
trial and evaluate its checkpoint from MLflow alone, as a user does in the sweep's folder.

One sweep serves every test, and its reproductions run side by side (each is a fresh Python that
spends most of its time importing torch): the ones that damage the record (an altered metric, a
damaged checkpoint) work on copies of the store, so the true record stays intact for the others.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from conftest import SPECS, XSWEEP, run_xsweep

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

ALTERED_BY = 0.1  # added to the best trial's final val_accuracy: 10 percentage points


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def _best_run_id(workdir: Path) -> str:
    client = _client(workdir)
    exp = client.get_experiment_by_name("smoke")
    (sweep,) = client.search_runs([exp.experiment_id], filter_string="tags.`xsweep.kind` = 'sweep'")
    return sweep.data.tags["xsweep.best_run_id"]


def _sql(workdir: Path, statement: str, **values) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{workdir / 'mlflow.db'}")
    with engine.begin() as db:
        db.execute(sqlalchemy.text(statement), values)
    engine.dispose()


def _copy_store(workdir: Path, into: Path) -> Path:
    """A copy of the sqlite store; its runs still point at the original artifacts by absolute path."""
    into.mkdir()
    shutil.copy(workdir / "mlflow.db", into / "mlflow.db")
    return into


def _alter_final_val_accuracy(workdir: Path) -> None:
    """Change the logged value in place, in both tables MLflow reads (history and latest)."""
    run_id = _best_run_id(workdir)
    final = max(m.step for m in _client(workdir).get_metric_history(run_id, "val_accuracy"))
    for table in ("metrics", "latest_metrics"):
        _sql(workdir, f"UPDATE {table} SET value = value + :delta "
                      f"WHERE run_uuid = :run AND key = 'val_accuracy' AND step = :step",
             delta=ALTERED_BY, run=run_id, step=final)


def _damage_checkpoint(workdir: Path) -> None:
    """Give the best run its own copy of its artifacts, then overwrite bytes of state.pt in it."""
    run_id = _best_run_id(workdir)
    # sqlite's default artifact store: ./mlruns/<experiment id>/<run id>/artifacts (path or file:// URI).
    original = Path(unquote(urlparse(_client(workdir).get_run(run_id).info.artifact_uri).path))
    artifacts = shutil.copytree(original, workdir / "artifacts")
    _sql(workdir, "UPDATE runs SET artifact_uri = :uri WHERE run_uuid = :run", uri=str(artifacts), run=run_id)
    state = artifacts / "checkpoints" / "best" / "state.pt"
    data = state.read_bytes()
    state.write_bytes(data[:-64] + bytes(64))


def _change_provenance(workdir: Path) -> None:
    """As if the data and two packages had changed since the sweep: its dataset digest rewritten,
    and the parent run given its own copy of its artifacts with another packages.txt."""
    _sql(workdir, "UPDATE datasets SET digest = :digest", digest="feedface" * 4)
    client = _client(workdir)
    parent_id = client.get_run(_best_run_id(workdir)).data.tags["mlflow.parentRunId"]
    original = Path(unquote(urlparse(client.get_run(parent_id).info.artifact_uri).path))
    artifacts = shutil.copytree(original, workdir / "parent-artifacts")
    _sql(workdir, "UPDATE runs SET artifact_uri = :uri WHERE run_uuid = :run", uri=str(artifacts), run=parent_id)
    packages = artifacts / "environment" / "packages.txt"
    lines = [line for line in packages.read_text().splitlines() if not line.startswith("torch==")]
    packages.write_text("\n".join([*lines, "torch==0.0.1", "long-gone==1.0"]) + "\n")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One finished smoke sweep: two trials, one wave (the smallest sweep that still picks a best)."""
    workdir = tmp_path_factory.mktemp("reproduce")
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "search.num_samples=2", cwd=workdir)
    assert proc.returncode == 0, _show(proc)
    return workdir


@pytest.fixture(scope="module")
def reproduced(sweep, tmp_path_factory):
    """Every reproduction the tests look at, started at once and awaited together."""
    altered = _copy_store(sweep, tmp_path_factory.mktemp("altered") / "store")
    _alter_final_val_accuracy(altered)
    damaged = _copy_store(sweep, tmp_path_factory.mktemp("damaged") / "store")
    _damage_checkpoint(damaged)
    changed = _copy_store(sweep, tmp_path_factory.mktemp("changed") / "store")
    _change_provenance(changed)
    commands = {
        "retrain": (sweep, ["--experiment", "smoke"]),
        "checkpoint": (sweep, ["--experiment", "smoke", "--from-checkpoint"]),
        "altered": (altered, ["--experiment", "smoke"]),
        "damaged": (damaged, ["--experiment", "smoke", "--from-checkpoint"]),
        "changed": (changed, ["--experiment", "smoke", "--from-checkpoint"]),
        "unknown": (sweep, ["--experiment", "nope"]),
    }
    started = {
        name: subprocess.Popen([str(XSWEEP), "reproduce", *args], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (cwd, args) in commands.items()
    }
    done = {}
    for name, proc in started.items():
        stdout, stderr = proc.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return done | {"stores": {"altered": altered, "damaged": damaged}}


def _logged_as(proc) -> str:
    match = re.search(r"logged as run ([0-9a-f]{32})", proc.stdout)
    assert match, _show(proc)
    return match.group(1)


def _show(proc) -> str:
    return f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_retrain_reproduces_the_best_trial_bit_for_bit(sweep, reproduced):
    proc = reproduced["retrain"]
    assert proc.returncode == 0, _show(proc)
    out = proc.stdout
    assert _best_run_id(sweep) in out
    assert "val_accuracy (%)" in out and "train_loss" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    assert [row[0] for row in rows] == ["1", "2"], out  # one row per epoch
    # CPU, same seed and thread count: every cell equal, and the difference columns say so.
    for _, acc_logged, acc_repro, acc_diff, loss_logged, loss_repro, loss_diff in rows:
        assert (acc_logged, acc_diff, loss_logged, loss_diff) == (acc_repro, "same", loss_repro, "same")
    assert "verdict: pass - identical" in out


def test_reproduction_is_logged_as_its_own_run(sweep, reproduced):
    proc = reproduced["retrain"]
    assert proc.returncode == 0, _show(proc)
    client = _client(sweep)
    run = client.get_run(_logged_as(proc))
    trial = client.get_run(_best_run_id(sweep))
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == trial.info.experiment_id
    assert run.info.run_name == f"reproduce {trial.info.run_name}"
    assert "mlflow.parentRunId" not in run.data.tags  # beside the sweep, not one of its trials
    tags = run.data.tags
    assert (tags["xsweep.kind"], tags["xsweep.reproduces"], tags["xsweep.mode"], tags["xsweep.verdict"]) == (
        "reproduction", trial.info.run_id, "retrain", "pass")
    logged = client.get_metric_history(trial.info.run_id, "val_accuracy")
    again = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in again] == [(m.step, m.value) for m in logged]


def test_from_checkpoint_matches_the_logged_metric(sweep, reproduced):
    proc = reproduced["checkpoint"]
    assert proc.returncode == 0, _show(proc)
    assert "verdict: pass" in proc.stdout
    tags = _client(sweep).get_run(_logged_as(proc)).data.tags
    assert (tags["xsweep.kind"], tags["xsweep.mode"], tags["xsweep.verdict"]) == ("reproduction", "checkpoint", "pass")


def test_an_altered_logged_metric_fails_the_reproduction(reproduced):
    proc, store = reproduced["altered"], reproduced["stores"]["altered"]
    # The alteration is what MLflow now shows for the run.
    client = _client(store)
    run = client.get_run(_best_run_id(store))
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert max(history, key=lambda m: m.step).value == run.data.metrics["val_accuracy"]

    assert proc.returncode == 1, _show(proc)
    assert "verdict: fail - val_accuracy at epoch 2" in proc.stdout
    assert "difference -10 pp" in proc.stdout
    assert client.get_run(_logged_as(proc)).data.tags["xsweep.verdict"] == "fail"


def test_a_damaged_checkpoint_fails_on_its_sha256(reproduced):
    proc = reproduced["damaged"]
    assert proc.returncode == 1, _show(proc)
    assert "sha256" in proc.stdout and "verdict: fail" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_unknown_experiment_is_one_line_and_exit_2(reproduced):
    proc = reproduced["unknown"]
    assert proc.returncode == 2, _show(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xsweep: --experiment: no experiment 'nope'"), proc.stderr


def test_the_record_names_the_code_packages_and_data_where_mlflow_shows_them(sweep):
    from importlib.metadata import version

    from xsweep.training.datasets import data_fingerprint

    client = _client(sweep)
    best = client.get_run(_best_run_id(sweep))
    parent = client.get_run(best.data.tags["mlflow.parentRunId"])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=SPECS).stdout.strip()
    for run in (parent, best):  # the UI's Source column
        assert run.data.tags["mlflow.source.git.commit"] == commit
    packages = Path(client.download_artifacts(parent.info.run_id, "environment/packages.txt")).read_text()
    assert f"torch=={version('torch')}" in packages.splitlines()
    (data,) = best.inputs.dataset_inputs  # the UI's Datasets column
    config = json.loads(best.data.tags["xsweep.config"])
    assert (data.dataset.name, data.dataset.digest) == ("digits", data_fingerprint(config["data"]).digest)


def test_reproduce_says_whether_the_packages_and_data_are_the_sweeps(reproduced):
    same = reproduced["retrain"].stdout
    assert "data: the same as the sweep's (digits " in same
    assert re.search(r"^packages: the same \d+ as the sweep's$", same, re.M), same
    changed = reproduced["changed"]
    assert changed.returncode == 0, _show(changed)  # what differs is said; the numbers still decide
    from importlib.metadata import version

    assert (f"note: 2 package(s) differ from the sweep's: long-gone 1.0: not installed here, "
            f"torch 0.0.1 -> {version('torch')}") in changed.stdout
    assert "note: the data differs from the sweep's: its digest was feedfacefeed, here digits " in changed.stdout
