"""The Ray Tune trainable: a thin wrapper around `fit` that reports and checkpoints every epoch.

It imports nothing of MLflow: the trial only reports to Tune, and the driver tracks (tracking/).
On a restart (worker lost, trial retried, sweep resumed) it continues from Tune's last checkpoint
at the epoch where it stopped.

torch and the training code are imported inside the functions, by the trial's process: the driver
imports this module only to hand `train_trial` to Tune, and torch there would cost every sweep
seconds of start-up.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import pyarrow.fs
import ray
from ray import tune

from xsweep.defaults import apply_process_defaults
from xsweep.spec.trial import RUN_ID_KEY, resolve_trial_config
from xsweep.training.epoch_report import CHECKPOINT_FILE, device_name, epoch_report, save_epoch_state


def _older_checkpoints(checkpoint: tune.Checkpoint) -> list[tune.Checkpoint]:
    """The trial's other checkpoints older than `checkpoint`, newest first (Tune numbers them)."""
    trial_dir, _, name = checkpoint.path.rstrip("/").rpartition("/")
    entries = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(trial_dir, allow_not_found=True))
    older = sorted((e.path for e in entries if e.type == pyarrow.fs.FileType.Directory
                    and e.base_name.startswith("checkpoint_") and e.base_name < name), reverse=True)
    return [tune.Checkpoint(path, filesystem=checkpoint.filesystem) for path in older]


def restore(checkpoint: tune.Checkpoint | None) -> tuple[dict | None, str | None]:
    """The state to continue from: Tune's checkpoint, or, if that one fails its checksum, the
    newest intact older one (else a fresh start). The second value says what happened, if
    anything did; it is printed and reported, so it reaches the driver's log and MLflow."""
    from xsweep.training.checkpoint import CorruptCheckpoint, load_checkpoint

    if checkpoint is None:
        return None, None
    problems = []
    for candidate in [checkpoint, *_older_checkpoints(checkpoint)]:
        name = candidate.path.rstrip("/").rpartition("/")[2]
        try:
            with candidate.as_directory() as folder:
                state = load_checkpoint(os.path.join(folder, CHECKPOINT_FILE))
        except CorruptCheckpoint as exc:
            problems.append(f"{name}: {exc}")
            continue
        if not problems:
            return state, None
        return state, f"{'; '.join(problems)}; resumed from {name} (epoch {state['epoch']})"
    return None, f"{'; '.join(problems)}; no intact checkpoint left, restarted from epoch 0"


def train_trial(tune_config: dict, *, base_config: dict, compile_cache=None) -> None:
    """compile_cache: the sweep's SharedCompileCache (training/compile_cache.py), for a compiled trial."""
    began = time.time()  # first: the trial's start-up (training/trial_start.py) counts from here
    apply_process_defaults()  # this is where a trial's process starts its work
    from xsweep.training.fit import fit

    config = resolve_trial_config(base_config, tune_config)
    run_id = tune_config.get(RUN_ID_KEY)

    resume, fallback = restore(tune.get_checkpoint())
    if fallback:
        print(f"xsweep: warning: trial {tune.get_context().get_trial_name()}: {fallback}",
              file=sys.stderr, flush=True)

    if config.get("resources", {}).get("workers_per_trial", 1) > 1:  # this process only waits for its workers
        from xsweep.training.data_parallel import train_workers

        train_workers(config, resume=resume, fallback=fallback, run_id=run_id)
        return

    device = device_name(config)

    # Tune's own "node_ip" is the host's routable address, not the Ray node's (on a loopback
    # cluster they differ); the driver maps this id to the node's address as Ray knows it.
    node_id = ray.get_runtime_context().get_node_id()

    def on_epoch(epoch) -> None:
        report = epoch_report(epoch, config, device=device, node_id=node_id, fallback=fallback)
        with tempfile.TemporaryDirectory(prefix="xsweep-ckpt-") as folder:
            save_epoch_state(epoch, run_id=run_id, folder=folder)
            tune.report(report.to_result(), checkpoint=tune.Checkpoint.from_directory(folder))

    fit(config, on_epoch=on_epoch, resume=resume, began=began, compile_cache=compile_cache)
