"""What a model costs, measured once per trial: its parameters and its forward FLOPs per image.

Both are search objectives (`params`, `gflops` in xsweep/metrics.py): an ablation of Xception trades
accuracy against size and compute, and a multi-objective sweep can search that trade-off.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


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
