"""A trial's share of a data-parallel run: which worker this process is, and what it shares.

`fit` takes a `Shard`; the default, one worker, is a plain single-process trial, and everything
here is then a no-op. With N workers (resources.workers_per_trial, run by data_parallel.py under
Ray Train) each worker trains on its slice of every global batch under DistributedDataParallel,
and the numbers a trial reports are summed over all workers before anyone reads them.

The N-worker run is built to retrace the 1-worker run of the same global batch and seed: every
worker draws the same shuffled order from the same seeded generator and takes its contiguous
slice of each global batch, and BatchNorm's statistics are those of the global batch (sync_bn).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import BatchSampler, RandomSampler, Sampler


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """The worker that checkpoints (rank 0); its report is the trial's."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def sum(self, *values: torch.Tensor | float) -> list[float]:
        """Each value summed over all workers (one all-reduce for all of them)."""
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach().cpu() for v in values])
        if self.parallel:
            dist.all_reduce(stacked)
        return stacked.tolist()

    def max(self, value: float) -> float:
        out = torch.tensor([value], dtype=torch.float64)
        if self.parallel:
            dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return out.item()

    def all_finite(self, value: torch.Tensor) -> bool:
        """Whether `value` is finite on every worker: all of them stop at the same step, or the
        ones still training would wait forever for the others' gradients."""
        if not self.parallel:
            return bool(torch.isfinite(value))
        return self.sum(0.0 if bool(torch.isfinite(value)) else 1.0)[0] == 0


class GlobalBatchSampler(Sampler):
    """This worker's slice of each global batch of the 1-worker loader's shuffled order.

    The order is RandomSampler's with the loader's generator, the one `fit` seeds and checkpoints,
    so that N workers of batch B/N see, between them, exactly the batches one worker of batch B sees.
    """

    def __init__(self, dataset, *, batch_size: int, shard: Shard, generator: torch.Generator):
        self.batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=True)
        self.per_worker, self.shard = batch_size // shard.world, shard

    def __iter__(self):
        start = self.shard.rank * self.per_worker
        for batch in self.batches:
            yield batch[start:start + self.per_worker]

    def __len__(self) -> int:
        return len(self.batches)


def validation_share(size: int, shard: Shard) -> list[int]:
    """This worker's part of the validation set; the parts of all workers are the whole set, once."""
    return list(range(shard.rank, size, shard.world))


class _SumOverWorkers(torch.autograd.Function):
    """all_reduce(SUM) that autograd sees through: the gradient of a sum every worker uses is the
    sum of their gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any device.

    torch's SyncBatchNorm runs on GPUs only; this one sums per-channel statistics over the workers
    with an all-reduce that autograd sees through, so its backward pass is synchronised too. Two
    passes (the mean, then the squares about it), as E[x^2] - E[x]^2 loses float32's digits when
    a channel's mean is large against its spread. Evaluation uses the running statistics, as
    BatchNorm2d does, with no communication.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        channels, dims, shape = x.shape[1], (0, 2, 3), (1, x.shape[1], 1, 1)
        local = torch.cat([x.sum(dims), x.new_full((1,), float(x.numel() // channels))])
        total = _SumOverWorkers.apply(local)
        n = total[-1]
        mean = total[:channels] / n
        centred = x - mean.view(shape)
        var = _SumOverWorkers.apply((centred * centred).sum(dims)) / n  # biased, as BatchNorm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                # momentum None is BatchNorm's cumulative average
                factor = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_((var * n / (n - 1).clamp_min(1)).detach(), factor)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def with_global_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm2d computing global-batch statistics: torch's SyncBatchNorm on
    GPUs, GlobalBatchNorm elsewhere. Parameters, buffers and state_dict keys are unchanged."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm(child.num_features, eps=child.eps, momentum=child.momentum,
                                          affine=child.affine, track_running_stats=child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.to(device=child.weight.device if child.affine else device)
            setattr(model, name, replacement)
        else:
            with_global_batch_norm(child, device)
    return model


def data_parallel(model: nn.Module, *, shard: Shard, device: torch.device) -> nn.Module:
    """The module to train: `model` itself for one worker, else wrapped in DistributedDataParallel
    (which starts every worker from rank 0's weights). Checkpoints keep `model`'s own state_dict."""
    if not shard.parallel:
        return model
    # Gradients written straight into DDP's buckets: no copy, and no stride mismatch with a
    # channels_last model's 1x1 kernels (a warning on every step otherwise).
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                               gradient_as_bucket_view=True)
