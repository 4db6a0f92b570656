"""What the platform costs against plain Optuna, on the same 16 trials (issue targets in brackets):

(a) `xsweep run`: embedded Ray, Tune, Optuna TPE, MLflow (sqlite), launch to exit
(b) plain Optuna: study.optimize(n_jobs=2) with optuna-integration's MLflowCallback, same trials
(c) ideal: sum of (a)'s trial times / 2 (the concurrency)

Targets: (a) <= 1.10x (c) and (a) <= 1.05x (b). Both run the same `fit` on the same configs
(random search over lr, so the cost per trial does not depend on the sampler), 2 at a time, one
CPU thread each. Writes benchmarks/results/platform_overhead.md. Not a test: run it on an
otherwise idle machine.

    .venv/bin/python benchmarks/platform_overhead.py [--trials 16] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import machine, targets_table, write_results  # noqa: E402 - sibling modules
from sweep_overhead import run_xsweep, trial_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "platform_overhead.md"

# width 0.25 / 2 middle blocks: ~2 s per digits epoch on one core, so 4 epochs ~ 10 s a trial.
SPEC = """
name: platform-overhead
data: {{dataset: digits, image_size: 32}}
model: {{width: 0.25, middle_blocks: 2}}
train: {{epochs: {epochs}, batch_size: 64, lr_schedule: cosine, threads: 1}}
search:
  algorithm: random
  num_samples: {trials}
  max_concurrent: 2
  seed: 0
  space:
    train.lr: {{loguniform: [0.02, 0.1]}}
scheduler: {{kind: fifo}}
resources: {{cpus_per_trial: 1}}
"""


def run_timed_xsweep(spec: Path, workdir: Path) -> tuple[float, list[float]]:
    launched, finished = run_xsweep(spec, workdir)
    (sweep,) = sorted((workdir / "results").glob("platform-overhead-*"))
    return finished - launched, [t[-1]["time_total_s"] for t in trial_results(sweep)]


def run_plain_optuna(spec_text: str, workdir: Path, trials: int) -> tuple[float, list[float]]:
    """What a researcher writes without a platform: Optuna's threads and its MLflow callback."""
    started = time.time()
    import optuna
    from optuna_integration.mlflow import MLflowCallback

    from xsweep.spec import load_spec_text
    from xsweep.training.fit import fit
    from xsweep.spec.trial import resolve_trial_config

    base = load_spec_text(spec_text, source="platform-overhead.yaml").base_trial_config()
    seconds = []

    def objective(trial: optuna.Trial) -> float:
        began = time.perf_counter()
        lr = trial.suggest_float("train.lr", 0.02, 0.1, log=True)
        result = fit(resolve_trial_config(base, {"train.lr": lr}))
        seconds.append(time.perf_counter() - began)
        return result.history[-1]["val_accuracy"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    callback = MLflowCallback(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", metric_name="val_accuracy")
    study.optimize(objective, n_trials=trials, n_jobs=2, callbacks=[callback])
    return time.time() - started, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    spec_text = SPEC.format(trials=args.trials, epochs=args.epochs)

    with tempfile.TemporaryDirectory(prefix="xsweep-bench-") as folder:
        (Path(folder) / "a").mkdir()
        (Path(folder) / "b").mkdir()
        spec = Path(folder, "a", "platform-overhead.yaml")
        spec.write_text(spec_text)
        xsweep_wall, xsweep_trials = run_timed_xsweep(spec, Path(folder, "a"))
        # In a child process, so (b) pays its own imports as (a) does.
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"from platform_overhead import run_plain_optuna; from pathlib import Path; "
                f"print(json.dumps(run_plain_optuna({spec_text!r}, Path({str(Path(folder, 'b'))!r}), "
                f"{args.trials})))")
        launched = time.time()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        optuna_launch_to_exit = time.time() - launched
        if proc.returncode != 0:
            sys.exit(f"plain Optuna failed:\n{proc.stderr[-3000:]}")
        _, optuna_trials = json.loads(proc.stdout.strip().splitlines()[-1])

    ideal = sum(xsweep_trials) / 2
    rows = [
        ("(a) xsweep run, launch to exit", f"{xsweep_wall:.0f} s", "", None),
        ("(b) plain Optuna n_jobs=2 + MLflowCallback, launch to exit", f"{optuna_launch_to_exit:.0f} s", "", None),
        ("(c) ideal: sum of (a)'s trial times / 2", f"{ideal:.0f} s", "", None),
        ("(a) / (c)", f"{xsweep_wall / ideal:.2f}x", "<= 1.10x", xsweep_wall / ideal <= 1.10),
        ("(a) / (b)", f"{xsweep_wall / optuna_launch_to_exit:.2f}x", "<= 1.05x",
         xsweep_wall / optuna_launch_to_exit <= 1.05),
        ("mean trial time in (a) / in (b)",
         f"{sum(xsweep_trials) / len(xsweep_trials):.1f} s / {sum(optuna_trials) / len(optuna_trials):.1f} s", "", None),
    ]
    lines = [
        "# Platform overhead: xsweep against plain Optuna",
        "",
        f"Written by `benchmarks/platform_overhead.py` on {time.strftime('%Y-%m-%d %H:%M')}; machine: {machine()}.",
        f"Workload: {args.trials} trials x {args.epochs} epochs of Xception width 0.25 / 2 middle blocks on digits,",
        "random lr, 2 at a time, one CPU thread per trial, tracked to MLflow (sqlite) in both.",
        "",
        *targets_table(rows),
        "",
    ]
    write_results(RESULTS, lines)


if __name__ == "__main__":
    main()
