"""xsweep.checkpoint: atomic writes, sha256 sidecars, weights_only loads."""

import hashlib
import os
import pickle

import pytest
import torch

from xsweep.training.checkpoint import CorruptCheckpoint, load_checkpoint, model_from_checkpoint, save_checkpoint


def sample_state():
    return {
        "model": {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(3)},
        "rng": {"python": (3, tuple(range(5)), None), "numpy": ("MT19937", [1, 2, 3], 0, 0, 0.0)},
        "epoch": 2, "config": {"train": {"lr": 0.1, "amp": False, "root": None}},
        "history": [{"epoch": 1, "val_accuracy": 0.5}],
    }


def test_roundtrip(tmp_path):
    path = tmp_path / "ckpt.pt"
    digest = save_checkpoint(sample_state(), path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (tmp_path / "ckpt.pt.sha256").read_text().split()[0] == digest
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], sample_state()["model"]["w"])
    assert state["rng"] == sample_state()["rng"]
    assert state["epoch"] == 2 and state["config"] == sample_state()["config"]
    assert state["history"] == sample_state()["history"]


def test_overwrite_leaves_no_temp_files(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(sample_state(), path)
    save_checkpoint({**sample_state(), "epoch": 3}, path)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "ckpt.pt.sha256"]
    assert load_checkpoint(path)["epoch"] == 3


def test_failed_save_keeps_the_old_checkpoint_and_no_temp_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(sample_state(), path)
    with pytest.raises(Exception):
        save_checkpoint({"bad": lambda: None}, path)  # lambdas cannot be pickled
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "ckpt.pt.sha256"]
    assert load_checkpoint(path)["epoch"] == 2


class NotATensor:
    pass


def test_load_is_weights_only(tmp_path):
    # A checkpoint holding an arbitrary object (which could run code on unpickling) is refused,
    # even with a valid checksum.
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"x": NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_truncated_file_is_corrupt(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(sample_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpoint, match="damaged"):
        load_checkpoint(path)


def test_missing_sidecar_or_file_is_corrupt(tmp_path):
    path = tmp_path / "ckpt.pt"
    with pytest.raises(CorruptCheckpoint, match="does not exist"):
        load_checkpoint(path)
    save_checkpoint(sample_state(), path)
    os.remove(str(path) + ".sha256")
    with pytest.raises(CorruptCheckpoint, match="sha256"):
        load_checkpoint(path)


def test_loads_onto_cpu(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(sample_state(), str(path))  # str paths work as well as Path
    assert load_checkpoint(str(path))["model"]["w"].device.type == "cpu"


SAVER = """
import sys, torch
from xsweep.training.checkpoint import save_checkpoint
path = sys.argv[1]
torch.manual_seed(0)
big = torch.randn(4_000_000)  # 16 MB: a save takes long enough to be killed in the middle
epoch = 0
print("ready", flush=True)
while True:
    epoch += 1
    save_checkpoint({"epoch": epoch, "weights": big + epoch}, path)
    print("saved", epoch, flush=True)
"""


def test_a_kill_during_saves_never_leaves_a_loadable_half_file(tmp_path):
    """SIGKILL a process that saves over the same checkpoint again and again, at random moments:
    what is left under the real name always loads whole, with weights matching its epoch."""
    import random
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "state.pt"
    torch.manual_seed(0)
    big = torch.randn(4_000_000)  # what the saver's weights are, less their epoch
    rng = random.Random(0)
    loaded = 0
    # Kill until three kills have left a complete checkpoint behind: a kill between the file's
    # rename and its sidecar's leaves a detected mismatch instead, and how often that happens
    # depends on the disk, so a fixed number of kills could by chance check nothing.
    for attempt in range(40):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        # Time the first save, so that the kill lands anywhere in the next two on any disk.
        assert proc.stdout.readline().split() == ["saved", "1"]
        one_save = time.monotonic() - started
        time.sleep(rng.uniform(0, 2 * one_save))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        try:
            state = load_checkpoint(path)
        except CorruptCheckpoint:
            # Killed between the file's rename and its sidecar's: detected, never loaded.
            continue
        assert torch.equal(state["weights"], big + state["epoch"]), attempt
        loaded += 1
        if loaded == 3:
            break
    assert loaded == 3, f"only {loaded} of {attempt + 1} kills left a complete checkpoint to check"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("state.pt", "state.pt.sha256")]
    # Temp files of killed saves may remain (a SIGKILL runs no cleanup); none has the real name.
    assert all(name.startswith("state.pt.") and name.endswith(".tmp") for name in leftovers), leftovers


def test_a_damaged_checkpoint_builds_no_model(tmp_path):
    path = tmp_path / "state.pt"
    save_checkpoint(sample_state(), path)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CorruptCheckpoint):
        model_from_checkpoint(path, config=sample_state()["config"])
