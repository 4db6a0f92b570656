"""benchmarks/gpu_check.py at toy sizes on this CPU: the GPU check must still run end to end the
day a session has a GPU, so every part of it runs here (`--device cpu --quick`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # its last part starts a Ray of its own


def test_every_part_of_the_gpu_check_runs_on_a_cpu_and_says_what_it_measured(tmp_path):
    out = tmp_path / "gpu_check.md"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    text = out.read_text() if out.exists() else ""
    assert proc.returncode == 0, text + proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 part(s) failed" in text and "FAILED" not in text
    assert "- GPU: none (CPU run)" in text
    # Ours against timm in the trials' layout, with the FLOP utilisation against this CPU's peak
    # measured in the run; the compiled rows say why they did not run.
    assert re.search(r"^Peaks: measured [\d.]+ GFLOP/s \(measured fp32 1024x1024 GEMM, this run\)", text, re.M), text
    rows = re.findall(r"^\| 32 \| 8 \| (ours|timm) \| (\d+) \| ([\d.]+)x \| ([\d.]+)% \| ([\d.]+)% \| - \|$",
                      text, re.M)
    assert [r[0] for r in rows] == ["ours", "timm"] and all(int(r[1]) > 0 and float(r[3]) > 0 for r in rows), text
    assert rows[1][2] == "1.00" and "- compiled rows: skipped (--quick" in text
    # cuDNN's autotuning, each setting in a process of its own: its code runs here, where cuDNN does not.
    assert re.search(r"^\| 32 \| 4 \| off \| [\d.]+ \| [\d.]+ \| \d+ \|\n\| 32 \| 4 \| on \|", text, re.M), text
    assert re.search(r"^- fit, synthetic data: completed after 2 epochs in [\d.]+ s; last epoch [\d.]+ training "
                     r"img/s, peak memory [\d.]+ [MG]iB, FLOP utilisation [\d.]+%", text, re.M), text
    assert "- fit, JPEG folder (decoded in loader processes): completed after 2 epochs" in text
    # Each fit says how long its trial took to reach its first step.
    assert len(re.findall(r"^  - start-up: first step [\d.]+ s after fit was called", text, re.M)) == 2, text
    assert re.search(r"^- PIL \(one CPU thread\): \d+ img/s$", text, re.M)
    assert re.search(r"^- torchvision.io.decode_jpeg, CPU: \d+ img/s$", text, re.M)
    assert re.search(r"^- gloo, world size 1: one step \(loss [\d.]+, all-reduced [\d.]+\)", text, re.M)
    # A data-parallel trial's code path: two gloo workers here (one per GPU over NCCL on a GPU machine).
    assert re.search(r"^- `fit` on 2 local worker process\(es\) \(gloo, sync_bn on\): 1 epoch in [\d.]+ s, "
                     r"[\d.]+ training img/s over all workers", text, re.M), text
    # Ray is installed here: two trials at 0.5 GPU each ran at the same time.
    side_by_side = re.search(r"they trained side by side for ([\d.]+) s", text)
    assert side_by_side and float(side_by_side.group(1)) > 0, text
