"""The README's timings: what a user waits for at the commands they type first.

    python benchmarks/timings.py [--quick]

- `make setup` with nothing changed (the stamp newer than pyproject.toml: no pip work),
- `xsweep run search_spaces/smoke.yaml` (4 trials x 2 epochs) in a fresh folder,
- `make sweep`'s spec, `xsweep run search_spaces/xception_ablation.yaml` (36 trials), in a fresh
  folder, and the same with a sequential confirmation, `--set 'ablation.confirm_seeds={min: 3, max: 10}'`
  (18 tuning trials and 18 to 60 confirming ones); `--quick` leaves both out (they take minutes).

Each is one run, wall-clock, with the machine's load beside it: on a shared machine a run can take a
minute longer than the one before. Writes benchmarks/results/timings.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host import machine, write_results

ROOT = Path(__file__).resolve().parent.parent
XSWEEP = ROOT / ".venv" / "bin" / "xsweep"
RESULTS = ROOT / "benchmarks" / "results" / "timings.md"
SEQUENTIAL = "ablation.confirm_seeds={min: 3, max: 10}"  # the design docs/ABLATION.md suggests


def timed(command: list[str], *, cwd: Path) -> tuple[float, str, list[str]]:
    """(seconds, the last line it printed, its verdict lines); a command that fails stops the
    benchmark with its output."""
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    verdicts = [line.strip() for line in lines if line.startswith("verdict, ")]
    return seconds, next((line for line in lines if line.startswith("sweep finished")), lines[-1] if lines else ""), \
        verdicts


def clock(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out make sweep's spec")
    args = parser.parse_args()

    subprocess.run(["make", "setup"], cwd=ROOT, check=True, capture_output=True)  # up to date first
    rows, said = [], []
    load = os.getloadavg()[0]
    seconds, _, _ = timed(["make", "setup"], cwd=ROOT)
    rows.append(("`make setup` with nothing changed", clock(seconds), load, ""))
    sweeps = [("`xsweep run search_spaces/smoke.yaml` (4 trials x 2 epochs)", "smoke.yaml", [])]
    if not args.quick:
        sweeps.append(("`make sweep` (`search_spaces/xception_ablation.yaml`: 6 variants x (3 tuning + 3 "
                       "confirming) = 36 trials of 6 epochs)", "xception_ablation.yaml", []))
        sweeps.append((f"`make sweep`'s spec with `--set '{SEQUENTIAL}'` (6 variants x (3 tuning + 3 to 10 "
                       "confirming, sequential) = 36 to 78 trials of 6 epochs)", "xception_ablation.yaml",
                       ["--set", SEQUENTIAL]))
    for what, spec, overrides in sweeps:
        with tempfile.TemporaryDirectory(prefix="xsweep-timings-") as folder:
            load = os.getloadavg()[0]
            seconds, outcome, verdicts = timed([str(XSWEEP), "run", str(ROOT / "search_spaces" / spec), *overrides],
                                               cwd=Path(folder))
        rows.append((what, clock(seconds), load, outcome))
        if verdicts:
            said.append((what, verdicts))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    write_results(RESULTS, [
        "# Timings of the first commands",
        "",
        f"Written by `benchmarks/timings.py{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d')}, "
        f"commit {commit or 'unknown'}; {machine()}. One run each, wall-clock, in a fresh folder; the load "
        "average is the machine's 1-minute load as the run began (other work slows a run on a shared machine).",
        "",
        "| what | time | load average at the start | how it ended |",
        "|---|---|---|---|",
        *[f"| {what} | {time_} | {load:.1f} | {outcome} |" for what, time_, load, outcome in rows],
        "",
        *[line for what, verdicts in said for line in (f"The verdicts of {what}:", "", "```", *verdicts, "```", "")],
    ])


if __name__ == "__main__":
    main()
