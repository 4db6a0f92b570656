"""What a trial's process makes of each of fit's epochs: the report for the driver and the checkpoint.

One place for the 1-worker trainable (trainable.py) and rank 0 of a data-parallel trial (data_parallel.py).
torch is imported inside the functions, as in trainable.py: the driver imports these modules.
"""

from __future__ import annotations

import os

from xsweep.contract import TrialReport

CHECKPOINT_FILE = "state.pt"


def device_name(config: dict) -> str:
    """Where the trial trains, as its reports say it: "cpu" or "cuda:<the GPU's name>"."""
    import torch

    from xsweep.training.fit import pick_device

    device = pick_device(config["train"]["device"])
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def epoch_report(epoch, config: dict, *, device: str, node_id: str, fallback: str | None,
                 workers: list | None = None) -> TrialReport:
    """What a trial tells the driver after `epoch` (fit's EpochReport)."""
    return TrialReport(epoch=epoch.epoch, metrics=epoch.metrics, diverged=epoch.diverged,
                       planned_epochs=config["train"]["epochs"], device=device, node_id=node_id,
                       checkpoint_fallback=fallback, system=epoch.system, peak=epoch.peak, workers=workers or [])


def save_epoch_state(epoch, *, run_id: str | None, folder: str) -> None:
    """The checkpoint after `epoch`, into `folder`; the trial's MLflow run travels with it."""
    from xsweep.training.checkpoint import save_checkpoint

    state = epoch.state()
    state["mlflow_run_id"] = run_id
    save_checkpoint(state, os.path.join(folder, CHECKPOINT_FILE))
