"""The peak FLOP rate a trial's model FLOP utilisation (`mfu`) is measured against.

On a GPU: the card's dense (no sparsity) peak from its vendor's datasheet, bf16 tensor cores when the
trial trains under bf16 autocast (`train.amp`), else plain fp32 (fit leaves TF32 off); a GPU this
table does not know gets its measured GEMM peak. On a CPU: the fastest square fp32 matrix product
torch runs with the trial's threads, measured once per process (benchmarks/flops.py uses the same
measurement with larger matrices).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Peak:
    flops: float  # FLOP/s
    source: str  # where the figure comes from, as the run's tag and the GPU check print it


@dataclass(frozen=True)
class GpuPeak:
    name: str  # matched case-insensitively inside torch.cuda.get_device_name(), first match wins
    bf16: float | None  # dense TFLOP/s of bf16 tensor cores (None: the card has none)
    fp32: float  # TFLOP/s without tensor cores
    source: str


# More specific names first: "H100 PCIe" must match before "H100".
GPU_PEAKS = (
    GpuPeak("H200 NVL", 835, 60, "NVIDIA H200 NVL datasheet (2024)"),
    GpuPeak("H200", 989, 67, "NVIDIA H200 SXM datasheet (2024)"),
    GpuPeak("H100 PCIe", 756, 51, "NVIDIA H100 PCIe datasheet (2023)"),
    GpuPeak("H100 NVL", 835, 60, "NVIDIA H100 NVL datasheet (2023)"),
    GpuPeak("H100", 989, 67, "NVIDIA H100 SXM datasheet (2023)"),
    GpuPeak("A100", 312, 19.5, "NVIDIA A100 datasheet (2021)"),
    GpuPeak("L40S", 362, 91.6, "NVIDIA L40S datasheet (2023)"),
    GpuPeak("L40", 181, 90.5, "NVIDIA L40 datasheet (2022)"),
    GpuPeak("L4", 121, 30.3, "NVIDIA L4 datasheet (2023)"),
    GpuPeak("A10", 125, 31.2, "NVIDIA A10 datasheet (2021)"),
    GpuPeak("RTX 4090", 165, 82.6, "NVIDIA Ada GPU architecture whitepaper, RTX 4090 (fp32 accumulate)"),
    GpuPeak("RTX 3090", 71, 35.6, "NVIDIA Ampere GA102 whitepaper, RTX 3090 (fp32 accumulate)"),
    GpuPeak("V100", None, 15.7, "NVIDIA V100 SXM2 datasheet (2020)"),
    GpuPeak("T4", None, 8.1, "NVIDIA T4 datasheet (2019)"),
)

GEMM_SIZE = 1024  # big enough for MKL or cuBLAS to reach most of their peak, small enough to take ~0.1 s


def gpu_peak_from_table(device_name: str, *, bf16: bool) -> Peak | None:
    for entry in GPU_PEAKS:
        if entry.name.lower() in device_name.lower():
            tflops = entry.bf16 if bf16 else entry.fp32
            if tflops is None:
                return None  # no bf16 tensor cores: measured instead
            kind = "bf16 dense" if bf16 else "fp32"
            return Peak(tflops * 1e12, f"{entry.name} {kind} peak {tflops:g} TFLOP/s, {entry.source}")
    return None


def measured_gemm_peak(device: str, dtype: torch.dtype, *, sizes=(GEMM_SIZE,), repeats: int = 5) -> float:
    """FLOP/s of the fastest square matrix product torch runs here (MKL on CPU, cuBLAS on GPU): what
    the hardware delivers in practice to the one op that dominates a well-run network."""
    best = 0.0
    for n in sizes:
        # Constant matrices: the speed does not depend on the values, and no RNG stream moves (a
        # seeded trial measures this before it trains).
        a = torch.full((n, n), 0.5, device=device, dtype=dtype)
        b = torch.full((n, n), 0.25, device=device, dtype=dtype)
        torch.mm(a, b)  # warm-up: library initialisation, kernel choice
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.mm(a, b)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


@lru_cache(maxsize=None)
def _measured(device: str, dtype: torch.dtype, threads: int) -> float:
    """Once per process, device, dtype and thread count."""
    return measured_gemm_peak(device, dtype)


def device_peak(device: torch.device, *, amp: bool) -> Peak:
    """The peak of `device` for a trial that trains with (amp) or without bf16 autocast."""
    dtype = torch.bfloat16 if amp else torch.float32
    kind = "bf16" if amp else "fp32"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        known = gpu_peak_from_table(name, bf16=amp)
        if known is not None:
            return known
        flops = _measured(str(device), dtype, 0)
        return Peak(flops, f"{name}: measured {kind} {GEMM_SIZE}x{GEMM_SIZE} GEMM peak {flops / 1e12:.3g} TFLOP/s "
                           "(not in xsweep's table of datasheet peaks)")
    # fp32 on a CPU even under amp: most CPUs have no bf16 units, and there a bf16 GEMM runs at about
    # 1/100 of fp32 (13 s for one 1024x1024 product on this project's CI machine).
    threads = torch.get_num_threads()
    flops = _measured("cpu", torch.float32, threads)
    return Peak(flops, f"CPU: measured fp32 {GEMM_SIZE}x{GEMM_SIZE} GEMM peak {flops / 1e9:.3g} GFLOP/s "
                       f"with {threads} thread(s)")
