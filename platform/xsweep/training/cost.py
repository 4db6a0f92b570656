"""What a model costs, measured once per trial: its parameters and its forward FLOPs per image; and
what a trial costs, every epoch: device-seconds, peak memory and model FLOP utilisation (TrialCost).

The model's two are search objectives (`params`, `gflops` in xsweep/metrics.py): an ablation of
Xception trades accuracy against size and compute, and a multi-objective sweep can search that trade-off.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from xsweep.training.peak import device_peak
from xsweep.training.system import SystemSampler, peak_memory_bytes


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of `model` on `x`, as torch's FlopCounterMode counts them:
    convolutions and matrix products at 2 FLOPs per multiply-add; batch norm, activations and
    pooling are not counted, as is customary. Eval mode: no batch-norm statistics move and no
    dropout draws from the RNG, so counting leaves a seeded run exactly as it was."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()


def forward_gflops_per_image(model: nn.Module, *, in_channels: int, image_size: int) -> float:
    """Forward GFLOPs of one image of the trial's size (the paper's Xception at 299x299: 16.7, i.e.
    8.4 billion multiply-adds)."""
    device = next(model.parameters()).device
    return forward_flops(model, torch.zeros(1, in_channels, image_size, image_size, device=device)) / 1e9


class TrialCost:
    """A trial's cost metrics for each epoch's report; as a context, samples its system metrics.

    device_seconds: seconds the trial has held its devices, summed over them (GPU-seconds on GPUs),
    from the start of `fit`, data loading and evaluation included. A resumed trial goes on from its
    last epoch's count; the time between that epoch and the interruption is lost with the process.
    """

    def __init__(self, device: torch.device, *, amp: bool, started: float, history: list, workers: int = 1,
                 sample_system: bool = True):
        self.device, self.started, self.workers = device, started, workers
        self.held_before = history[-1].get("device_seconds", 0.0) if history else 0.0
        self.peak = device_peak(device, amp=amp)
        # A data-parallel trial samples its first worker only: the UI's System metrics tab shows one run.
        self.sampler = SystemSampler(device, seconds_before=self.held_before) if sample_system else None

    def __enter__(self) -> TrialCost:
        if self.sampler is not None:
            self.sampler.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.sampler is not None:
            self.sampler.__exit__(*exc)

    def epoch_metrics(self, *, images_per_second: float, gflops: float) -> dict[str, float]:
        """images_per_second: the whole trial's, over all its workers (and devices)."""
        return {
            "device_seconds": self.held_before + self.workers * (time.perf_counter() - self.started),
            "peak_memory_bytes": float(peak_memory_bytes(self.device)),
            # A training step costs 3x the forward FLOPs (benchmarks/flops.py says why).
            "mfu": 3 * gflops * 1e9 * images_per_second / (self.workers * self.peak.flops),
        }

    def system_samples(self) -> list:
        return self.sampler.drain() if self.sampler is not None else []
