"""benchmarks/scale_simulation.py at toy sizes (`--quick`): every measurement of the scale benchmark
runs end to end against the code as it is (a real simulated Ray cluster on 127.0.0.1, real MLflow
sqlite stores and `mlflow server`), writes its section with numbers in it, and leaves no process
behind."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale_simulation.md"
MARK = "XSWEEP_SCALE_TEST_RUN"  # set in the benchmark's environment, so every process it starts carries it

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # it starts Ray nodes and an mlflow server

N = r"[\d.]+"  # a number as the results file writes one
# Per section: its heading, then a row with numbers for each measurement it makes (--quick sizes).
SECTIONS = {
    "## 1. Ray Tune driver on a simulated cluster": [
        rf"\| trials started per second, middle 80 % of starts \| {N} \| {N} \| {N}x \| >= 0.9x \|",
        rf"\| trials started per second, whole run \| {N} \| {N} \| {N}x \|  \|",
        rf"\| driver CPU per trial during `fit` \(ms\) \| \d+ \| \d+ \| {N}x \| <= 1.1x \|",
        rf"\| driver CPU per trial, tracking flushed at the end too \(ms\) \| \d+ \| \d+ \| {N}x \|  \|",
        r"\| tracking writer process CPU per trial, tracking flushed \(ms\)[^|]* \| none \| \d+ \|  \|  \|",
        rf"\| driver \+ writer CPU per trial, tracking flushed \(ms\) \| \d+ \| \d+ \| {N}x \|  \|",
        rf"\| `suggest` median \(ms\) \| {N} \| {N} \| {N}x \|  \|",
        rf"\| `tuner.fit` wall time \(s\) \| \d+ \| \d+ \| {N}x \|  \|",
        r"\| machine CPU busy when `fit` began [^|]* \| \d+% \(\d+ s\) \| \d+% \(\d+ s\) \|",
        r"\| trials started / finished \| 6 / 6 \| 6 / 6 \|",
        rf"\| 1 \| stock \| {N} \| \d+ \| none \| \d+% \| \d+ / \d+ \| {N}% \|",
        rf"\| 1 \| xsweep \| {N} \| \d+ \| \d+ \| \d+% \| \d+ / \d+ \| {N}% \|",
        rf"\| cluster start \(2 nodes\) \| {N} s \|",
        r"\| trials started / finished / errors \| 6 / 6 / 0 \|",
        rf"\| `tuner.fit` wall time \| {N} s \(ideal at 2 slots: {N} s\) \|",
        rf"\| first trial started after `fit` was called \| {N} s \|",
        rf"\| trials started per second, whole run \| {N} /s \(ideal {N} /s",
        rf"\| trials started per second, middle 80 % of starts \| {N} /s \|",
        rf"\| trials started per second, by tenth of the run \| {N}(, {N})* \|",
        rf"\| completed trials per second \| {N} /s \|",
        rf"\| driver CPU time during `fit` \| {N} s = \d+ ms per trial \(\d+ ms per reported result\) \|",
        rf"\| `searcher.suggest` [^|]*, 6 calls \| {N} / {N} / {N} ms \|",
        rf"\| `searcher.suggest` calls that said \"not yet\" [^|]* \| \d+, {N} s in all \|",
        rf"\| `suggest`, first 100 vs last 100 trials \(median\) \| {N} ms vs {N} ms \|",
        r"\| driver peak memory \(`getrusage` ru_maxrss\) \| \d+ MiB \(RSS before `fit` \d+ MiB, after \d+ MiB\) \|",
        rf"\| load average \(1 min\) sampled every {N} s during `fit` \([1-9]\d* samples\): min / median / max "
        rf"\| {N} / {N} / {N} \|",
        rf"\| Tune experiment state file\(s\) after 6 trials \| {N} MiB \([1-9][\d,]* bytes\) \|",
        rf"\| searcher state [^|]* \| {N} MiB \([1-9][\d,]* bytes\) \|",
    ],
    "## 2. Optuna TPE suggestion latency": [
        rf"\| 10 \| {N} \| {N} \| {N} \|",
        rf"\| 100 \| {N} \| {N} \| {N} \|",
        rf"\| driver time suggesting every trial of a 10,000-trial sweep \| {N} min \|",
        rf"\| one suggestion at 10,000 finished trials \(from the line\) \| {N} ms \|",
    ],
    "## 3. MLflow write rates (one thread)": [
        rf"\| sqlite file, direct \| \d+ \| \d+ \| {N} \| {N} \|",
        rf"\| `mlflow server --workers 1` on 127\.0\.0\.1, sqlite backend \| \d+ \| \d+ \| {N} \| {N} \|",
        r"\| 10 \| \d+ / \d+ \| \d+ / \d+ \|",
    ],
    "## 4. Storage": [
        r"\| parameters \| [1-9][\d,]* \|",
        rf"\| one checkpoint \| {N} MiB \|",
        rf"\| 1000 trials x 10 epochs \(no early stopping\) \| {N} TiB \| {N} TiB \|",
        rf"\| 10000 trials x 10 epochs \(no early stopping\) \| {N} TiB \| {N} TiB \|",
        rf"\| 10000 trials x 100 epochs \(no early stopping\) \| {N} TiB \| {N} TiB \|",
    ],
}


def processes_marked(token: str) -> list[int]:
    """Our own processes whose environment carries MARK=token: what the benchmark started."""
    needle = f"{MARK}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours
                pass
    return found


def left_running(token: str, *, within_s: float) -> list[int]:
    """The marked processes still there after `within_s` (a stopped node's last workers take a moment)."""
    deadline = time.monotonic() + within_s
    while (left := processes_marked(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_every_measurement_of_the_scale_benchmark_runs_at_toy_size_and_stops_what_it_started(tmp_path):
    out = tmp_path / "scale_simulation.md"
    committed = RESULTS.read_bytes() if RESULTS.exists() else None
    token = secrets.token_hex(8)
    env = {**os.environ, MARK: token}
    env.pop("MLFLOW_TRACKING_URI", None)
    here = tmp_path / "here"  # an empty folder to run from: a sqlite store would leave ./mlruns in it
    here.mkdir()
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_simulation.py"), "--quick",
                               "--out", str(out)], cwd=here, env=env, capture_output=True, text=True, timeout=300)
    finally:
        left = left_running(token, within_s=15)
        for pid in left:  # ours by the mark: stopped by PID, so a failure here leaves nothing behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wall = time.monotonic() - started
    text = out.read_text() if out.exists() else ""
    log = text + proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert not left, f"processes the benchmark started were still running: {left}"
    assert list(here.iterdir()) == [], "the benchmark left files in the folder it ran in"
    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == committed, "--quick touched the results file"
    assert text.startswith("# Scale simulation: what limits a large sweep\n"), text
    assert "**--quick: toy sizes (" in text
    headings = re.findall(r"^## .*$", text, re.M)
    assert headings == list(SECTIONS), headings
    for heading, rows in SECTIONS.items():
        body = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        for row in rows:
            assert re.search(rf"^{row}", body, re.M), f"{heading}: no row {row!r}\n{body}"
    print(f"quick scale benchmark: {wall:.0f} s")
