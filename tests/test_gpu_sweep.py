"""benchmarks/gpu_sweep.py at toy sizes on this CPU: the whole-product GPU run must still work end to
end the day a session has a GPU, so every part of it runs here (`--device cpu --quick`): a sweep of
trials sharing a GPU (Ray told of one), the default ablation cut to one factor, `xsweep report` and
`xsweep reproduce`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # it starts Ray, once per sweep


def test_every_part_of_the_gpu_sweep_runs_on_a_cpu_and_leaves_only_its_results_file(tmp_path):
    out = tmp_path / "gpu_sweep.md"
    # Run from an empty folder, as a user would from anywhere: a sweep, a report or a sqlite store
    # (its ./mlruns) would leave files in the folder it runs in.
    here = tmp_path / "here"
    here.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_sweep.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=here, capture_output=True, text=True, timeout=600)
    text = out.read_text() if out.exists() else ""
    assert proc.returncode == 0, text + proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 part(s) failed" in text and "FAILED" not in text and "(in progress)" not in text
    assert "- GPU: none (CPU run)" in text

    # The sweep at half a GPU per trial: Ray placed two of its three trials side by side, and the
    # third one, in a process a finished trial left, reached its first step sooner than the first.
    row = re.search(r"^\| 0.5 \| 3 of 3 \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", text, re.M)
    assert row and int(row.group(1)) == 2, text
    startup = re.search(r"^- 0.5 GPU per trial: startup_seconds of each trial, in the order they started: "
                        r"([\d.]+), ([\d.]+), ([\d.]+)\.$", text, re.M)
    assert startup, text
    first, second, third = map(float, startup.groups())
    assert third < min(first, second), text
    assert "3 of 3 trial runs carry `system/process_cpu_utilization_percentage`" in text

    # The ablation's verdict, as the sweep printed it and as the report holds it.
    assert re.search(r"^- 6 trials ended in \d+ s \(tune: 2 completed; confirm: 4 completed\)", text, re.M), text
    verdict = re.search(r"^verdict, residual off against residual on: (.+) \(the paper: ", text, re.M)
    assert verdict, text
    assert f"  - Verdict: {verdict.group(1)}." in text
    report = re.search(r"^report: (\S+)/report\.html$", text, re.M)
    assert report, text
    # On a CPU the best trial re-trains bit for bit.
    assert re.search(r"^verdict: pass - identical: every compared metric reproduced bit for bit", text, re.M), text

    # Its stores, sweeps and report were in a temporary folder, gone now; nothing where it ran.
    assert not Path(report.group(1)).exists()
    assert list(here.iterdir()) == []
