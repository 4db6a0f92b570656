"""A trial of N data-parallel workers (resources.workers_per_trial): Ray Train inside the Tune trial.

    Tune trial (trainable.train_trial, no CPU of its own)
      --> TorchTrainer: N worker processes placed by Ray, on one node or several, joined in one
          torch.distributed group (NCCL on GPUs, gloo on CPUs); each runs `fit` as its Shard
      --> each epoch every worker calls ray.train.report with the same metrics (fit sums them);
          rank 0 adds its checkpoint, which Train persists under the Tune trial's folder
      --> ForwardToTrial (in Train's controller) hands metrics and checkpoint to the trial,
          which reports them to Tune: one report and one checkpoint per epoch, as a 1-worker trial.

Tune stays the one keeper of a trial's checkpoints: ASHA, retries, `resume` and the driver's
best-checkpoint upload work as they do for a 1-worker trial. Train itself never retries (a lost
worker fails the Train run, and with it the Tune trial, which Tune retries from its own last
checkpoint), and each attempt is a new Train run, so Train never resumes on its own.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable

import ray
from ray import train, tune

from xsweep.training.epoch_report import device_name, epoch_report, save_epoch_state

# A trial waits for its workers' resources while other trials hold them (search.max_concurrent may
# start more trials than the cluster fits at once); Train's own default gives up after 60 s.
WORKERS_START_TIMEOUT_S = str(7 * 24 * 3600)


def worker_resources(resources: dict) -> dict[str, float]:
    """One worker's share of the trial's CPUs and GPUs."""
    n = resources["workers_per_trial"]
    share = {"CPU": resources["cpus_per_trial"] / n}
    if resources["gpus_per_trial"]:
        share["GPU"] = resources["gpus_per_trial"] / n
    return share


class ForwardToTrial(train.UserCallback):
    """Runs in Train's controller: every epoch's report (all workers report; rank 0's carries the
    checkpoint) goes onto the queue the Tune trial reads, with each worker's node and device."""

    def __init__(self, queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint) -> None:
        result = dict(metrics[0])
        result["xsweep"] = {**result["xsweep"], "workers": [m["xsweep"]["workers"][0] for m in metrics]}
        self.queue.put((result, checkpoint))


def _train_worker(loop: dict) -> None:
    """One worker of the trial: `fit` as its Shard of the group Train has set up."""
    from xsweep.defaults import apply_process_defaults
    from xsweep.training.distributed import Shard
    from xsweep.training.fit import fit

    apply_process_defaults()
    context = train.get_context()
    shard = Shard(context.get_world_rank(), context.get_world_size())
    config = loop["config"]
    device = device_name(config)
    node_id = ray.get_runtime_context().get_node_id()
    resume = ray.get(loop["resume"]) if loop["resume"] is not None else None

    def on_epoch(epoch) -> None:
        report = epoch_report(epoch, config, device=device, node_id=node_id, fallback=loop["fallback"],
                              workers=[[node_id, device]])  # ForwardToTrial gathers every worker's
        if not shard.is_main:
            train.report(report.to_result())
            return
        with tempfile.TemporaryDirectory(prefix="xsweep-ckpt-") as folder:
            save_epoch_state(epoch, run_id=loop["run_id"], folder=folder)
            train.report(report.to_result(), checkpoint=train.Checkpoint.from_directory(folder))

    fit(config, on_epoch=on_epoch, resume=resume, shard=shard)


def train_workers(config: dict, *, resume: dict | None, fallback: str | None, run_id: str | None,
                  report: Callable = tune.report) -> None:
    """Runs the trial `config` on its resources.workers_per_trial workers, handing `report` each
    epoch's result and checkpoint, as a 1-worker trial hands tune.report."""
    from ray.train._internal.session import get_session
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    resources = config["resources"]
    share = worker_resources(resources)
    storage = get_session().storage  # the Tune trial's folder, wherever the sweep's storage is
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", WORKERS_START_TIMEOUT_S)
    queue = Queue(actor_options={"num_cpus": 0})
    trainer_name = f"workers-{time.time_ns()}"
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"config": config, "run_id": run_id, "fallback": fallback,
                           # once into the object store, fetched by each worker on its own node
                           "resume": ray.put(resume) if resume is not None else None},
        scaling_config=train.ScalingConfig(num_workers=resources["workers_per_trial"], use_gpu="GPU" in share,
                                           resources_per_worker=share),
        run_config=train.RunConfig(
            name=trainer_name, storage_path=storage.trial_fs_path,
            storage_filesystem=storage.storage_filesystem,
            failure_config=train.FailureConfig(max_failures=0),  # Tune retries the trial instead
            checkpoint_config=train.CheckpointConfig(num_to_keep=1),  # Tune keeps its own copies
            callbacks=[ForwardToTrial(queue)],
        ),
    )
    failed: list[BaseException] = []

    def run() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # re-raised in the trial's own thread, below
            failed.append(exc)
        finally:
            queue.put(None)

    threading.Thread(target=run, name="xsweep-workers", daemon=True).start()
    while (item := queue.get()) is not None:
        result, checkpoint = item
        report(result, checkpoint=tune.Checkpoint(checkpoint.path, filesystem=checkpoint.filesystem)
               if checkpoint is not None else None)
    # Tune has copied every checkpoint it keeps into the trial's own folder: Train's are spare.
    storage.storage_filesystem.delete_dir(f"{storage.trial_fs_path}/{trainer_name}")
    if failed:
        raise failed[0]
