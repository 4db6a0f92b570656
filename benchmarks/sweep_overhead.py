"""How much time xsweep adds around the training itself (issue targets in brackets):

* start-up: from launching `xsweep run` to the first trial training            [<= 15 s]
* sweep wall time against the ideal, sum of trial times / concurrency         [<= 1.15x]
* tracking: driver time spent in the MLflow callback per epoch, vs epoch time [< 2 %]

It runs a real sweep (embedded Ray, MLflow sqlite) of 8 trials of about 20 s each on digits, then
replays the sweep's own results and checkpoints through xsweep's tracking callback, timed, into the
same store, and writes benchmarks/results/sweep_overhead.md. Not a test: run it on an otherwise
idle machine.

    .venv/bin/python benchmarks/sweep_overhead.py [--trials 8] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host import machine, targets_table, write_results

ROOT = Path(__file__).resolve().parent.parent
XSWEEP = Path(sys.executable).parent / "xsweep"
RESULTS = ROOT / "benchmarks" / "results" / "sweep_overhead.md"

# A fixed workload: the learning rate is the only thing searched and it does not change the cost;
# width 0.25 with 2 middle blocks is ~4 s per digits epoch on one core, so 5 epochs ~ 20 s.
SPEC = """
name: overhead
data: {{dataset: digits, image_size: 32}}
model: {{width: 0.25, middle_blocks: 2}}
train: {{epochs: {epochs}, batch_size: 64, lr_schedule: cosine}}
search:
  algorithm: random
  num_samples: {trials}
  max_concurrent: 2
  space:
    train.lr: {{loguniform: [0.02, 0.1]}}
scheduler: {{kind: fifo}}
resources: {{cpus_per_trial: 1}}
"""


def run_xsweep(spec: Path, workdir: Path, *, env: dict | None = None) -> tuple[float, float]:
    """`xsweep run SPEC` in `workdir`: (launch, exit) wall-clock times; the benchmark exits with
    the log's tail if the sweep fails.

    Output to a file, not a pipe: reading a pipe to its end would also wait for Ray's processes
    that inherited it, which outlive the command by a second or two. Exit is when the command
    returns, as at a shell prompt."""
    log = workdir / "xsweep.log"
    with open(log, "w") as out:
        launched = time.time()
        code = subprocess.run([str(XSWEEP), "run", str(spec)], cwd=workdir, env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode
        finished = time.time()
    if code != 0:
        sys.exit(f"xsweep run failed:\n{log.read_text()[-6000:]}")
    return launched, finished


def trial_results(sweep: Path) -> list[list[dict]]:
    trials = []
    for result_file in sorted(sweep.glob("trial_*/result.json")):
        trials.append([json.loads(line) for line in result_file.read_text().splitlines() if line.strip()])
    return trials


def replay_tracking(sweep: Path) -> dict:
    """The sweep's results and checkpoints, each trial's in order, through a TrackingCallback that
    times itself, to the sweep's own runs: the driver's seconds in the callback, the results it saw,
    and the tracking writer's seconds in MLflow writes once all is delivered."""
    from types import SimpleNamespace

    from ray.train import Checkpoint

    from xsweep.spec.trial import RUN_ID_KEY
    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.runs import SweepRuns
    from xsweep.tracking.writer import shared_writer

    class TimedTracking(TrackingCallback):
        seconds, results = 0.0, 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            started = time.perf_counter()
            super().on_trial_result(iteration, trials, trial, result, **info)
            self.seconds += time.perf_counter() - started
            self.results += 1

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            started = time.perf_counter()
            super().on_checkpoint(iteration, trials, trial, checkpoint, **info)
            self.seconds += time.perf_counter() - started

    record = json.loads((sweep / "xsweep.json").read_text())
    runs = SweepRuns(uri=record["tracking_uri"], experiment_id=record["experiment_id"],
                     parent_run_id=record["parent_run_id"], base_config={}, spec_source=record["spec_source"])
    callback = TimedTracking(runs, metric="val_accuracy", mode="max")
    for trial_dir, reports in zip(sorted(sweep.glob("trial_*")), trial_results(sweep)):
        for report in reports:
            trial = SimpleNamespace(config=report["config"], last_result=report, trial_id=report["trial_id"])
            assert trial.config[RUN_ID_KEY]
            callback.on_trial_result(report["training_iteration"], [], trial, report)
            kept = trial_dir / f"checkpoint_{report['training_iteration'] - 1:06d}"  # Tune kept the best two
            if kept.is_dir():
                callback.on_checkpoint(report["training_iteration"], [], trial, Checkpoint(str(kept)))
    delivery = shared_writer()
    delivery.flush(timeout=600)
    return {"callback_seconds": callback.seconds, "results": callback.results,
            "delivery_busy_seconds": delivery.busy_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="xsweep-bench-") as folder:
        workdir = Path(folder)
        spec = workdir / "overhead.yaml"
        spec.write_text(SPEC.format(trials=args.trials, epochs=args.epochs))
        launched, finished = run_xsweep(spec, workdir)
        (sweep,) = sorted((workdir / "results").glob("overhead-*"))
        trials = trial_results(sweep)
        profile = replay_tracking(sweep)

    # A trial's training started at its first report minus that epoch's duration.
    first_training = min(t[0]["timestamp"] - t[0]["time_this_iter_s"] for t in trials)
    startup = first_training - launched
    trial_seconds = [t[-1]["time_total_s"] for t in trials]
    ideal = sum(trial_seconds) / 2
    wall = finished - launched
    tuner_wall = max(t[-1]["timestamp"] for t in trials) - first_training
    epoch_seconds = [r["epoch_seconds"] for t in trials for r in t]
    mean_epoch = sum(epoch_seconds) / len(epoch_seconds)
    per_epoch_tracking = profile["callback_seconds"] / max(profile["results"], 1)

    per_epoch_writes = profile["delivery_busy_seconds"] / max(profile["results"], 1)
    rows = [
        ("start-up: launch to first trial training", f"{startup:.1f} s", "<= 15 s", startup <= 15),
        ("sweep wall (launch to exit) / ideal", f"{wall / ideal:.2f}x ({wall:.0f} s / {ideal:.0f} s)",
         "<= 1.15x", wall / ideal <= 1.15),
        ("sweep wall (first training to last report) / ideal",
         f"{tuner_wall / ideal:.2f}x ({tuner_wall:.0f} s / {ideal:.0f} s)", "<= 1.15x", tuner_wall / ideal <= 1.15),
        ("tracking time in the driver per epoch / epoch time",
         f"{100 * per_epoch_tracking / mean_epoch:.3f} % ({1000 * per_epoch_tracking:.1f} ms / {mean_epoch:.2f} s)",
         "< 2 %", per_epoch_tracking / mean_epoch < 0.02),
        ("MLflow writes per epoch (driver's background thread, off the training path) / epoch time",
         f"{100 * per_epoch_writes / mean_epoch:.2f} % ({1000 * per_epoch_writes:.1f} ms)", "< 2 %",
         per_epoch_writes / mean_epoch < 0.02),
    ]
    lines = [
        "# Sweep overhead",
        "",
        f"Written by `benchmarks/sweep_overhead.py` on {time.strftime('%Y-%m-%d %H:%M')}; machine: {machine()}.",
        f"Workload: {len(trials)} trials x {args.epochs} epochs, Xception width 0.25 / 2 middle blocks on digits,",
        "2 at a time on an embedded Ray, tracked to MLflow (sqlite). Ideal = sum of trial times / concurrency.",
        f"Mean trial time {sum(trial_seconds) / len(trial_seconds):.1f} s.",
        "",
        *targets_table(rows),
        "",
    ]
    write_results(RESULTS, lines)


if __name__ == "__main__":
    main()
