"""The per-seed spread of real digits confirmation runs: what benchmarks/verdict_calibration.py builds
its noise model from.

Runs the ablation the README's `make sweep` runs (search_spaces/xception_ablation.yaml: model.residual
[true, false] x model.activation [none, relu, elu], each variant's learning rate tuned on its own)
with 8 confirmation seeds instead of 3:

    xsweep run search_spaces/xception_ablation.yaml --set ablation.confirm_seeds=8

in a fresh temporary working folder (its ./mlflow.db and ./results), then reads the confirmation
trials back with the report's own reader (xsweep.report.data.load_sweep: the trials' phase, seed,
searched levels, status and val_accuracy history, as `xsweep report` reads them) and writes each
variant's final val_accuracy per seed to benchmarks/results/digits_confirmation_seeds.json, with the
git commit, the date, the spec and its overrides, and the machine.

Every variant runs the same seeds (train.seed + 1 ... + 8): a seed draws the initial weights, the data
order and the augmentation alike, so one seed's six trials share part of their luck; the JSON keeps
them by seed so that the calibration can keep that correlation. Every trial is measured on the one
validation split train.seed draws (ablation.split_seed is false, as in make sweep).

Takes about 6 minutes on 2 CPU cores (18 tuning + 48 confirmation trials, two at a time).

    .venv/bin/python benchmarks/digits_seed_spread.py [--seeds 8] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from host import commit_text, machine  # noqa: E402

SPEC = ROOT / "search_spaces" / "xception_ablation.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "digits_confirmation_seeds.json"
XSWEEP = Path(sys.executable).parent / "xsweep"
FACTORS = ("model.residual", "model.activation")
VARIANTS = 6  # 2 x 3 levels


def read_confirmations(workdir: Path, experiment: str) -> dict:
    """The sweep's confirmation trials as the report reads them: variant -> seed -> final accuracy."""
    from xsweep.metrics import ACCURACY
    from xsweep.report.data import load_sweep
    from xsweep.spec.trial import values_label

    _, data = load_sweep(f"sqlite:///{workdir / 'mlflow.db'}", experiment=experiment)
    base_seed = int(data.params.get("train.seed", 0) or 0)
    accuracy: dict[str, dict[str, float]] = {}
    variants: dict[str, dict] = {}
    skipped = []
    for trial in data.trials:
        if trial.phase != "confirm":
            continue
        label = values_label({path: trial.searched.get(path) for path in FACTORS})
        if not trial.finished or trial.seed is None:
            skipped.append({"variant": label, "seed": trial.seed, "status": trial.status})
            continue
        variants[label] = {**{path: trial.searched.get(path) for path in FACTORS},
                           "train.lr": trial.searched.get("train.lr")}
        accuracy.setdefault(label, {})[str(trial.seed)] = trial.final(ACCURACY)
    accuracy = {label: dict(sorted(by_seed.items(), key=lambda kv: int(kv[0]))) for label, by_seed in
                sorted(accuracy.items())}
    return {"sweep_run_id": data.run_id, "base_seed": base_seed, "variants": variants, "accuracy": accuracy,
            "skipped": skipped, "tune_trials": sum(t.phase == "tune" for t in data.trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="confirmation seeds per variant (default 8)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary working folder")
    args = parser.parse_args()

    overrides = [f"ablation.confirm_seeds={args.seeds}"]
    workdir = Path(tempfile.mkdtemp(prefix="xsweep-digits-seeds-"))
    command = [str(XSWEEP), "run", str(SPEC), *[x for o in overrides for x in ("--set", o)]]
    print(f"running {' '.join(command)} in {workdir}", flush=True)
    started, commit = time.time(), commit_text()
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    seconds = time.time() - started
    (workdir / "xsweep-run.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    print(f"sweep ended in {seconds:.0f} s (exit {proc.returncode})", flush=True)

    import yaml
    experiment = yaml.safe_load(SPEC.read_text())["name"]
    found = read_confirmations(workdir, experiment) if (workdir / "mlflow.db").is_file() else None
    complete = found is not None and len(found["accuracy"]) == VARIANTS and all(
        len(by_seed) == args.seeds for by_seed in found["accuracy"].values())
    if proc.returncode != 0 and not complete:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        sys.exit(f"xsweep run failed (exit {proc.returncode}); its output is in {workdir / 'xsweep-run.out'}")
    if not complete:
        sys.exit(f"the sweep's store lacks confirmation trials: {found and found['accuracy']}")
    record = {
        "what": "final val_accuracy of each confirmation trial (phase 2) of a real digits ablation, "
                "variant -> seed -> accuracy (a fraction); seeds are train.seed + rank, the same for every variant, "
                "and every trial is measured on train.seed's validation split",
        "commit": commit,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": str(SPEC.relative_to(ROOT)),
        "overrides": overrides,
        "command": "xsweep run " + " ".join(command[2:]).replace(str(ROOT) + "/", ""),
        "machine": machine(),
        "sweep_seconds": round(seconds, 1),
        # Non-zero where the sweep's end (its summary, report) failed after every confirmation
        # trial had finished and been recorded: the trials' accuracies are the same.
        "xsweep_exit_code": proc.returncode,
        **found,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    if args.keep:
        print(f"working folder kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
