"""FLOPs of a training step, and the peak FLOP rate they are compared against.

Model FLOPs follow the usual utilisation convention: a training step costs 3x the forward pass
(the backward pass computes a gradient for the inputs and one for the weights, each as costly as
the forward). The forward is counted by torch's FlopCounterMode (convolutions and matrix products;
batch norm, ReLU and pooling are not counted, as is customary). The backward is not counted by
FlopCounterMode itself because its formula for grouped convolutions counts the depthwise weight
gradient as if the convolution were dense (for Xception at 299x299, 1033 GFLOP instead of about 25).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

# The trials' own measurement (their `mfu` metric); model_throughput.py passes larger matrices.
from xsweep.training.peak import measured_gemm_peak  # noqa: F401


def training_flops(model: nn.Module, x: torch.Tensor) -> int:
    """3 x the forward FLOPs of ``model`` on ``x``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return 3 * counter.get_total_flops()


def cpu_theoretical_peak(threads: int) -> tuple[float, str] | None:
    """fp32 FLOP/s of ``threads`` cores at the clock /proc/cpuinfo reports, and what it assumes.

    Only for AVX2 + FMA cores without AVX-512: two 256-bit FMA units, 2 x 8 fp32 FMAs per cycle (Zen 2
    and later, Intel since Haswell). AVX-512 cores differ in their number of 512-bit units, so they
    get None, as does a machine where /proc/cpuinfo cannot be read. Each thread is counted as a
    core (SMT siblings would share one), and a core boosting above the reported clock beats this
    "peak": the measured GEMM peak is the figure to trust.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)
    if mhz is None or "fma" not in flags or "avx2" not in flags or "avx512f" in flags:
        return None
    ghz = float(mhz.group(1)) / 1000
    flop_per_cycle = 2 * 8 * 2  # two FMA units x 8 fp32 lanes x 2 FLOPs per FMA
    basis = (
        f"{threads} thread(s) counted as cores x {ghz:.2f} GHz (the clock /proc/cpuinfo reports) x "
        f"{flop_per_cycle} fp32 FLOP/cycle (two 256-bit FMA units)"
    )
    return threads * ghz * 1e9 * flop_per_cycle, basis
