"""xsweep.train.fit: metrics, determinism, resume, divergence, schedules, that it learns, and that its
set-up evaluates a checkpoint to the metrics it logged.

Tiny everything (width 0.125, one middle block, 1 thread) so the suite fits 2 shared cores.
"""

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xsweep.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from xsweep.training.loaders import build_datasets, make_loaders
from xsweep.metrics import reproducible
from xsweep.training.fit import FitResult, evaluate, fit, set_up_trial
from xsweep.training.models import build_model

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]

METRICS = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds", "images_per_second",
           "step_seconds", "params", "gflops", "device_seconds", "peak_memory_bytes", "mfu", "startup_seconds"}


def config(dataset="synthetic", **train):
    c = {
        "data": {"dataset": dataset, "root": None, "image_size": 32, "val_fraction": 0.25, "augment": True,
                 "synthetic_size": 96, "synthetic_classes": 3},
        "model": {"residual": True, "activation": "none", "width": 0.125, "middle_blocks": 1, "dropout": 0.5},
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9,
                  "weight_decay": 1e-5, "lr_schedule": "constant", "seed": 0, "device": "cpu",
                  "amp": False, "channels_last": True, "threads": 1, "compile": False},
    }
    c["train"].update(train)
    return c


def without_timing(history):
    return [{k: v for k, v in h.items() if k == "epoch" or k in reproducible()} for h in history]


def test_fit_reports_every_epoch():
    reports = []
    result = fit(config(epochs=2), on_epoch=reports.append)
    assert isinstance(result, FitResult) and result.status == "completed"
    assert [r.epoch for r in reports] == [1, 2]
    for report, entry in zip(reports, result.history):
        # The first epoch's extra cost is known once a second epoch gives the pace; an eager trial
        # compiles nothing and says nothing of compiling.
        assert set(report.metrics) == METRICS | ({"first_epoch_extra_seconds"} if report.epoch == 2 else set())
        assert entry == {"epoch": report.epoch, **report.metrics}
        assert not report.diverged
        assert 0 <= report.metrics["train_accuracy"] <= 1 and 0 <= report.metrics["val_accuracy"] <= 1
        assert report.metrics["images_per_second"] > 0 and report.metrics["epoch_seconds"] > 0
        # 72 training images in full batches of 16: 4 steps, which take part of the epoch (evaluation the rest).
        assert 0 < 4 * report.metrics["step_seconds"] < report.metrics["epoch_seconds"]
        model = build_model(config(), num_classes=3, in_channels=3)
        assert report.metrics["params"] == sum(p.numel() for p in model.parameters())
        assert report.metrics["gflops"] > 0
    assert result.best == max(result.history, key=lambda h: h["val_accuracy"])
    # The start-up is the trial's, the same in every epoch's report.
    first, second = (r.metrics for r in reports)
    assert 0 < first["startup_seconds"] == second["startup_seconds"]
    state = reports[-1].state()
    assert set(state) == {"model", "optimizer", "scheduler", "rng", "epoch", "config", "history"}
    assert state["epoch"] == 2 and len(state["history"]) == 2


@pytest.mark.parametrize("options", [
    {"optimizer": "rmsprop", "lr": 1e-3},
    {"optimizer": "adamw", "lr": 1e-3, "channels_last": False},
    {"amp": True},  # bf16 autocast on CPU
])
def test_other_options_train(options):
    result = fit(config(epochs=1, **options))
    assert result.status == "completed" and math.isfinite(result.history[0]["train_loss"])


@pytest.mark.slow
def test_fit_on_digits_learns():
    c = config("digits", epochs=4, batch_size=64, lr=0.05, lr_schedule="cosine")
    c["data"]["val_fraction"] = 0.2
    result = fit(c)
    assert result.status == "completed" and len(result.history) == 4
    # Chance is 10%; this tiny net reaches ~90% in 4 epochs (97%+ in ~8, see the sizing notes).
    assert result.best["val_accuracy"] > 0.6


# A trial in a process of its own, as every trial of a sweep is: argv is its config as JSON, the
# sweep's compile-cache folder ("" for none) and where to save its final weights ("" for nowhere).
# Prints its history and how many compiled graphs inductor built and how many it found in the node's
# cache folder.
TRIAL = """
import json, sys
import pyarrow.fs
import torch
from torch._dynamo.utils import counters
from xsweep.defaults import apply_process_defaults
from xsweep.training.compile_cache import SharedCompileCache
from xsweep.training.fit import fit
apply_process_defaults()  # as a trial's process does first (training/trainable.py)
config, storage, weights = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
reports = []
cache = SharedCompileCache(pyarrow.fs.LocalFileSystem(), storage) if storage else None
result = fit(config, on_epoch=reports.append, compile_cache=cache)
if weights:
    torch.save(reports[-1].state()["model"], weights)
print(json.dumps({"status": result.status, "history": result.history,
                  "built": counters["inductor"]["fxgraph_cache_miss"], "found": counters["inductor"]["fxgraph_cache_hit"]}))
"""


# Another node's trial process, before it compiles: loads the sweep's kept code into its node's folder.
SEED = """
import sys
import pyarrow.fs
from xsweep.training.compile_cache import SharedCompileCache
print(SharedCompileCache(pyarrow.fs.LocalFileSystem(), sys.argv[1]).seed(sys.argv[2]))
"""


def in_a_new_process(code: str, *args: str, node_folder) -> str:
    """What `code` prints, run in a process of its own whose node cache folder is `node_folder`."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(node_folder),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_compiled_trials_share_their_code_and_checkpoint_plain_weights(tmp_path):
    # train.compile: true runs torch.compile (inductor builds C++ kernels: a minute or more here, for
    # a model without middle blocks). The first trial on a fresh node builds every graph into the
    # node's cache folder and keeps its code in the sweep's storage.
    node, storage, saved = tmp_path / "node", tmp_path / "sweep" / "compile-cache", tmp_path / "weights.pt"
    c = config(epochs=1, compile=True, batch_size=16)
    c["model"]["middle_blocks"] = 0
    first = json.loads(in_a_new_process(TRIAL, json.dumps(c), str(storage), str(saved), node_folder=node))
    (epoch,) = first["history"]
    assert first["status"] == "completed" and math.isfinite(epoch["train_loss"]) and epoch["compile_seconds"] > 0
    assert first["built"] > 0 and first["found"] == 0, first
    assert len(list(storage.glob("*.bin"))) == 1
    weights = torch.load(saved, weights_only=True)
    assert not any(key.startswith("_orig_mod.") for key in weights)  # loads into the plain model
    datasets = build_datasets(c["data"], seed=0)
    _, val_loader = make_loaders(datasets, batch_size=16, seed=0)
    model = build_model(c, num_classes=datasets.num_classes, in_channels=datasets.in_channels)
    model.load_state_dict(weights)
    model.to(memory_format=torch.channels_last)
    evaluated = evaluate(model, val_loader, device=torch.device("cpu"), channels_last=True)
    assert evaluated["val_accuracy"] == epoch["val_accuracy"]
    assert evaluated["val_loss"] == pytest.approx(epoch["val_loss"], rel=1e-4)

    # A later trial of the same shapes on the same node finds every graph the first one built and
    # builds none: what makes it compile in a fraction of the first trial's time (counted, not timed,
    # so a loaded machine cannot upset it).
    later = json.loads(in_a_new_process(TRIAL, json.dumps(c), "", "", node_folder=node))
    assert (later["found"], later["built"]) == (first["built"], 0), later
    # A node whose folder is empty (another node, a resumed sweep on a fresh machine) takes the first
    # trial's compiled graphs from the sweep's storage before it compiles.
    other_node = tmp_path / "other-node"
    (key,) = (path.stem for path in storage.glob("*.bin"))
    assert in_a_new_process(SEED, str(storage), key, node_folder=other_node) == "True"
    graphs = {p.relative_to(other_node) for p in (other_node / "fxgraph").rglob("*") if p.is_file()}
    assert graphs and graphs <= {p.relative_to(node) for p in (node / "fxgraph").rglob("*") if p.is_file()}


def test_identical_fits_are_bit_identical():
    a = fit(config(epochs=2))
    b = fit(config(epochs=2))
    assert without_timing(a.history) == without_timing(b.history)
    c = fit(config(epochs=2, seed=1))
    assert without_timing(a.history) != without_timing(c.history)


def test_resume_matches_uninterrupted(tmp_path):
    full = fit(config(epochs=3))
    saved = {}

    def save_after_first(report):
        if report.epoch == 1:
            saved["digest"] = save_checkpoint(report.state(), tmp_path / "ckpt.pt")

    fit(config(epochs=1), on_epoch=save_after_first)
    # The checkpoint goes through disk and a weights_only load, as in a real resume.
    state = load_checkpoint(tmp_path / "ckpt.pt")
    resumed_reports = []
    resumed = fit(config(epochs=3), resume=state, on_epoch=resumed_reports.append)
    assert [r.epoch for r in resumed_reports] == [2, 3]
    assert without_timing(resumed.history) == without_timing(full.history)


def test_resume_when_already_done_trains_nothing():
    reports = []
    fit(config(epochs=1), on_epoch=reports.append)
    state = copy.deepcopy(reports[0].state())
    again = []
    result = fit(config(epochs=1), resume=state, on_epoch=again.append)
    assert again == [] and result.status == "completed"
    assert result.history == state["history"]


def test_huge_lr_diverges_without_raising():
    reports = []
    result = fit(config(epochs=3, lr=1e6), on_epoch=reports.append)
    assert result.status == "diverged"
    assert len(reports) == len(result.history) == 1
    assert reports[0].diverged
    assert not math.isfinite(reports[0].metrics["train_loss"])
    assert reports[0].metrics["val_accuracy"] == 0.0


def test_paper_schedule_decays_by_094_every_two_epochs():
    c = config(epochs=5, lr=0.01, lr_schedule="paper")
    c["data"]["synthetic_size"] = 40  # lr is all this test looks at
    lrs = [h["lr"] for h in fit(c).history]
    assert lrs == pytest.approx([0.01, 0.01, 0.0094, 0.0094, 0.01 * 0.94**2])


def test_cosine_schedule_anneals_over_epochs():
    c = config(epochs=4, lr=0.01, lr_schedule="cosine")
    c["data"]["synthetic_size"] = 40
    lrs = [h["lr"] for h in fit(c).history]
    assert lrs == pytest.approx([0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])


def test_evaluate_and_build_model_are_reusable():
    c = config()
    ds = build_datasets(c["data"], seed=0)
    _, val = make_loaders(ds, batch_size=16, seed=0)
    model = build_model(c, num_classes=ds.num_classes, in_channels=ds.in_channels)
    model.train()
    evaluated = evaluate(model, val, device=torch.device("cpu"), channels_last=True)
    loss, accuracy = evaluated["val_loss"], evaluated["val_accuracy"]
    assert math.isfinite(loss) and 0 <= accuracy <= 1
    assert model.training  # evaluate leaves the mode as it found it


class _Logits(torch.nn.Module):
    """Returns its input as the logits: each sample's scores are written in the data."""

    def forward(self, x):
        return x


def test_top5_accuracy_counts_the_label_among_the_five_highest_scores_with_five_classes_or_more():
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1]] * 3)  # class 0 ranks 1st, class 2 3rd, class 5 6th
    labels = torch.tensor([0, 2, 5])
    loader = [(scores, labels)]
    evaluated = evaluate(_Logits(), loader, device=torch.device("cpu"))
    assert evaluated["val_accuracy"] == pytest.approx(1 / 3)
    assert evaluated["val_top5_accuracy"] == pytest.approx(2 / 3)
    three = evaluate(_Logits(), [(scores[:, :3], torch.tensor([0, 1, 2]))], device=torch.device("cpu"))
    assert "val_top5_accuracy" not in three  # too few classes for a top 5


def test_a_checkpoint_evaluated_in_the_trials_set_up_gives_its_logged_metrics_bit_for_bit(tmp_path):
    # What `xsweep reproduce --from-checkpoint` does: the network rebuilt from the checkpoint alone,
    # evaluated in the set-up fit trained it in.
    c = config(epochs=1)
    path = tmp_path / "state.pt"
    reports = []

    def keep(report) -> None:
        reports.append(report)
        save_checkpoint(report.state(), path)

    fit(c, on_epoch=keep)
    model, state = model_from_checkpoint(path, config=c)
    assert state["epoch"] == 1 and not next(model.parameters()).is_cuda
    setup = set_up_trial(c)
    evaluated = evaluate(setup.place(model), setup.val_loader, **setup.step_args())
    assert {k: float(v) for k, v in evaluated.items()} == {
        k: float(reports[0].metrics[k]) for k in ("val_loss", "val_accuracy")}


def test_the_set_up_places_a_model_on_its_device_in_its_memory_format():
    setup = set_up_trial(config())
    model = setup.place(torch.nn.Conv2d(3, 4, 3))
    assert setup.device.type == "cpu" and model.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.are_deterministic_algorithms_enabled()  # CPU trials are bitwise reproducible
