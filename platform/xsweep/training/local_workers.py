"""A data-parallel trial on this machine alone: N local processes in one torch.distributed group
(gloo; NCCL when the trial trains on GPUs, one per worker), each running `fit` as its Shard.

What `xsweep reproduce` re-trains an N-worker trial with, on a machine without Ray or a cluster:
the same batches and optimizer steps as the sweep's N workers (distributed.py).
"""

from __future__ import annotations

import queue as queues
import socket
import traceback
from collections.abc import Callable

import torch.multiprocessing as mp


class _EpochsDone(Exception):
    """Raised in every worker after the epochs asked for (all at the same epoch, so none waits)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local_worker(rank: int, world: int, port: int, config: dict, epochs: int, reports) -> None:
    import torch
    import torch.distributed as dist

    from xsweep.defaults import apply_process_defaults
    from xsweep.training.distributed import Shard
    from xsweep.training.fit import fit, pick_device

    apply_process_defaults()
    cuda = pick_device(config["train"]["device"]).type == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
        config["train"]["device"] = f"cuda:{rank}"
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)

    def on_epoch(epoch) -> None:
        if rank == 0:
            reports.put(("epoch", epoch.epoch, dict(epoch.metrics)))
        if epoch.epoch >= epochs:
            raise _EpochsDone

    try:
        fit(config, on_epoch=on_epoch, shard=Shard(rank, world))
    except _EpochsDone:
        pass
    except BaseException:
        reports.put(("error", rank, traceback.format_exc()))
        raise
    finally:
        dist.destroy_process_group()


def fit_on_local_workers(config: dict, *, workers: int, epochs: int,
                         on_epoch: Callable[[int, dict], None]) -> None:
    """Train `config` for `epochs` epochs on `workers` local processes; on_epoch(epoch, metrics)
    here, in this process, with the metrics every worker agreed on. A worker's error is raised
    here as a RuntimeError with its traceback."""
    context = mp.get_context("spawn")
    reports = context.Queue()
    port = _free_port()
    # Not daemons: a worker has loader processes of its own. The finally below ends them on an error.
    processes = [context.Process(target=_local_worker, args=(rank, workers, port, config, epochs, reports))
                 for rank in range(workers)]
    for process in processes:
        process.start()
    try:
        done = 0
        while done < epochs:
            try:
                kind, first, second = reports.get(timeout=1)
            except queues.Empty:
                if any(p.exitcode not in (None, 0) for p in processes):
                    codes = [p.exitcode for p in processes]
                    raise RuntimeError(f"a local worker process ended with exit code(s) {codes}") from None
                if all(p.exitcode == 0 for p in processes):
                    return  # ended early: diverged, or fewer epochs than asked
                continue
            if kind == "error":
                raise RuntimeError(f"local worker {first} failed:\n{second}")
            done = first
            on_epoch(first, second)
        for process in processes:
            process.join()
    finally:
        for process in processes:  # our own children, on an error or Ctrl-C
            if process.is_alive():
                process.kill()
                process.join()
