"""The Ray Tune trainable: a thin wrapper around `fit` that reports and checkpoints every epoch.

It imports nothing of MLflow: the trial only reports to Tune, and the driver tracks (tracking.py).
On a restart (worker lost, trial retried, sweep resumed) it continues from Tune's last checkpoint
at the epoch where it stopped.
"""

from __future__ import annotations

import os
import tempfile

import ray
import torch
from ray import tune

from xsweep.checkpoint import load_checkpoint, save_checkpoint
from xsweep.train import fit, pick_device
from xsweep.trial_config import RUN_ID_KEY, resolve_trial_config

CHECKPOINT_FILE = "state.pt"


def _device_name(config: dict) -> str:
    device = pick_device(config["train"]["device"])
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def train_trial(tune_config: dict, *, base_config: dict) -> None:
    config = resolve_trial_config(base_config, tune_config)
    run_id = tune_config.get(RUN_ID_KEY)
    device = _device_name(config)

    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = load_checkpoint(os.path.join(folder, CHECKPOINT_FILE))

    # Tune's own "node_ip" is the host's routable address, not the Ray node's (on a loopback
    # cluster they differ); the driver maps this id to the node's address as Ray knows it.
    node_id = ray.get_runtime_context().get_node_id()

    def on_epoch(report) -> None:
        metrics = dict(report.metrics, epoch=report.epoch, diverged=report.diverged, device=device,
                       node_id=node_id)
        with tempfile.TemporaryDirectory(prefix="xsweep-ckpt-") as folder:
            state = report.state()
            state["mlflow_run_id"] = run_id  # the trial's run travels with its checkpoints
            save_checkpoint(state, os.path.join(folder, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    fit(config, on_epoch=on_epoch, resume=resume)
