"""benchmarks/verdict_calibration.py at --quick size: simulated ablation studies, with the noise of the
real digits runs recorded in benchmarks/results/digits_confirmation_seeds.json, judged by the
product's own verdict code (next_round, sequential.decide, stats.paired_difference + holm, checked
against ablation_verdict). The file it writes has its tables, every study it checked against
ablation_verdict agreed, and no design's family-wise rate of a wrong "beats" under the null is far
above the 5 % the verdicts promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about 20 s of simulation
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "verdict_calibration.py"
DESIGNS = ["sequential {min: 3, max: 10}"] + [f"fixed, {n} seeds" for n in range(3, 11)]
# At quick size (300 studies under the measured noise, 100 under the exchangeable control) a true
# rate of 5 % measures above 0.12 with a chance well under 1 in 1000; a verdict whose real rate is
# twice its promise or more fails here.
BOUND = 0.12
HEADINGS = ["## How a study's verdict is reached", "## The noise model",
            "## 1. Family-wise rate of a wrong \"beats\" (every true effect 0)", "## 2. Power to detect a true difference",
            "### ReLU vs no activation", "### residual off vs on", "### All three comparisons at once",
            "## 3. Seeds spent: the sequential design against the fixed design of equal power", "## Summary"]


def test_quick_calibration_writes_its_tables_and_the_null_rates_stay_near_alpha(tmp_path):
    out = tmp_path / "verdict_calibration.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    for heading in HEADINGS:
        assert f"\n{heading}\n" in text, heading
    assert re.search(r"^- commit measured: [0-9a-f]{40}", text, re.MULTILINE)
    assert re.search(r"^- date: \d{4}-\d\d-\d\dT", text, re.MULTILINE)
    assert "mode: quick" in text

    # The simulation's decisions are ablation_verdict's on every study it was checked on.
    agreed, checked = map(int, re.search(r"\*\*(\d+) of (\d+) verdicts\*\*", text).groups())
    assert checked >= 40 and agreed == checked, re.search(r"checked against.*", text).group(0)

    # The null table: one row per design and noise model, each with its measured family-wise rate.
    section = text.split("## 1. ")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 4 and cells[0] in DESIGNS:
            rows[(cells[0], cells[1])] = (int(cells[2]), float(cells[3]))
    for model, studies in (("measured", 300), ("exchangeable", 100), ("bootstrap", 100)):
        for design in DESIGNS:
            assert rows.get((design, model), (None,))[0] == studies, (design, model, rows.get((design, model)))
    too_high = {key: rate for key, (_, rate) in rows.items() if key[1] != "bootstrap" and rate > BOUND}
    assert not too_high, f"family-wise rate of a wrong \"beats\" above {BOUND}: {too_high}"

    # Power rows carry numbers for each design and effect size; the seeds-spent table a row per scenario.
    power = text.split("### ReLU vs no activation")[1].split("### residual off")[0]
    sequential_row = next(line for line in power.splitlines() if line.startswith("| sequential"))
    assert len(re.findall(r"\| [01]\.\d{3} ", sequential_row + " ")) == 9, sequential_row
    spent = text.split("## 3. ")[1].split("\n## ")[0]
    for scenario in ("ReLU vs no activation, 5 pp", "residual off vs on, 1 pp", "all three, 2 pp"):
        assert re.search(rf"^\| {re.escape(scenario)} \| [01]\.\d{{3}} \| [\d.]+ \(", spent, re.MULTILINE), scenario
