"""A damaged checkpoint is caught by its checksum on restore; the trial continues from the newest
intact one, and says so in the driver's log and on its MLflow run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray import tune

from conftest import SPECS, XSWEEP, run_xsweep
from services import OutputLines
from xsweep.training.checkpoint import save_checkpoint
from xsweep.training.trainable import CHECKPOINT_FILE, restore


def _trial_folder(root: Path, epochs: int) -> Path:
    """A trial folder as Tune leaves it: checkpoint_00000N/state.pt (+ sha256) for each epoch."""
    for n in range(epochs):
        folder = root / f"checkpoint_{n:06d}"
        folder.mkdir(parents=True)
        save_checkpoint({"epoch": n + 1}, folder / CHECKPOINT_FILE)
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_intact_latest_checkpoint_is_used_silently(tmp_path):
    trial = _trial_folder(tmp_path, 3)
    state, fallback = restore(tune.Checkpoint(str(trial / "checkpoint_000002")))
    assert state["epoch"] == 3 and fallback is None


def test_truncated_latest_falls_back_to_the_previous_checkpoint(tmp_path):
    trial = _trial_folder(tmp_path, 3)
    _truncate(trial / "checkpoint_000002" / CHECKPOINT_FILE)
    state, fallback = restore(tune.Checkpoint(str(trial / "checkpoint_000002")))
    assert state["epoch"] == 2
    assert "checkpoint_000002" in fallback and "damaged" in fallback
    assert fallback.endswith("resumed from checkpoint_000001 (epoch 2)")


def test_no_intact_checkpoint_restarts_from_scratch(tmp_path):
    trial = _trial_folder(tmp_path, 2)
    _truncate(trial / "checkpoint_000001" / CHECKPOINT_FILE)
    (trial / "checkpoint_000000" / f"{CHECKPOINT_FILE}.sha256").unlink()  # a save cut short
    state, fallback = restore(tune.Checkpoint(str(trial / "checkpoint_000001")))
    assert state is None
    assert "checkpoint_000000" in fallback and fallback.endswith("restarted from epoch 0")


def _results(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _recorded_checkpoints(sweep: Path, *, epochs: int) -> dict[str, str]:
    """trial id -> the checkpoint Tune's saved experiment state will restore that trial from, for
    the trials with epochs left (one that finished before the interrupt is not restored).

    That is the latest checkpoint of the trial's checkpoint manager (what `Trial.checkpoint` hands
    back), not the one named by its last result: a result the interrupt caught mid-way is recorded
    while its checkpoint is not (seen in CI: the last result named checkpoint_000001, the resume
    restored checkpoint_000000)."""
    from ray import cloudpickle

    state = json.loads(max(sweep.glob("experiment_state-*.json")).read_text())
    trials = [json.loads(runtime) for _, runtime in state["trial_data"]]
    recorded = {}
    for t in trials:
        if not t.get("last_result") or t["last_result"]["epoch"] >= epochs:
            continue
        manager = cloudpickle.loads(bytes.fromhex(t["checkpoint_manager"]["value"]))
        latest = manager.latest_checkpoint_result
        if latest is not None:
            recorded[t["last_result"]["trial_id"]] = Path(latest.checkpoint.path).name
    return recorded


@pytest.mark.slow
@pytest.mark.cluster
def test_resumed_sweep_skips_a_damaged_checkpoint(tmp_path):
    epochs = 6
    proc = subprocess.Popen(
        [str(XSWEEP), "run", str(SPECS / "smoke.yaml"), "--set", f"train.epochs={epochs}",
         "--set", "search.num_samples=2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # Interrupt once the driver has taken in epoch 3 of both trials, with epochs still to run: each
    # then has a recorded checkpoint with an older one beside it. The clock is the console's epoch
    # lines, printed as the driver takes in each result; counting checkpoint folders on disk was
    # ahead of the driver's record, and a rare interrupt left no trial with an older checkpoint.
    output = OutputLines(proc)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        trained = {m.group(1) for line in output.so_far() if (m := re.search(rf"\] (.+): epoch (\d+)/{epochs} ", line))
                   and 3 <= int(m.group(2)) < epochs}
        if len(trained) == 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    out = output.text()
    assert "resume:" in out, out[-3000:]

    # Damage the checkpoint Tune will hand back on resume, for a trial that has an older one.
    (sweep,) = tmp_path.glob("results/smoke-*")
    victim, damaged = next((sweep / f"trial_{trial_id}", name)
                           for trial_id, name in sorted(_recorded_checkpoints(sweep, epochs=epochs).items())
                           if min(p.name for p in (sweep / f"trial_{trial_id}").glob("checkpoint_*")) < name)
    _truncate(victim / damaged / CHECKPOINT_FILE)

    resumed = run_xsweep("resume", "smoke", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    warnings = {line.partition("xsweep: warning:")[2] for line in log.splitlines()
                if "xsweep: warning: trial" in line and damaged in line}
    assert len(warnings) == 1, (victim.name, damaged, sorted(p.name for p in victim.glob("checkpoint_*")),
                                [r["epoch"] for r in _results(victim)], log[-4000:])
    (warning,) = warnings
    assert "damaged" in warning
    fallback_epoch = int(re.search(r"resumed from checkpoint_\d+ \(epoch (\d+)\)", warning).group(1))

    # The trial redid the epoch after the checkpoint it fell back to, then finished.
    epochs_seen = [r["epoch"] for r in _results(victim)]
    assert epochs_seen[-1] == epochs and epochs_seen.count(fallback_epoch + 1) == 2, epochs_seen

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id],
                                filter_string=f"tags.`xsweep.trial_id` = '{victim.name.removeprefix('trial_')}'")
    assert damaged in run.data.tags["xsweep.checkpoint_fallback"]
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
    assert steps == list(range(1, epochs + 1))
