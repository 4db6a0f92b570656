"""How fast a compiled trial starts training, cold and with the sweep's compile cache.

Four trials of the same shapes (train.compile: true), each as a sweep's trial meets them:
1. the first on a node: a new process, an empty node cache folder, nothing in the sweep's storage;
2. a later one on the same node, in a new process: the node's folder holds the first one's code;
3. one on another node (or a resumed sweep on a fresh machine), in a new process: an empty folder,
   seeded from the code the first trial kept in the sweep's storage (training/compile_cache.py);
4. one more in the process of trial 3, as Tune hands a reused process its next trial.
For each: startup_seconds (its start, or its process's, to its first optimizer step), compile_seconds
and first_epoch_extra_seconds, as the trial reports them (training/trial_start.py).

    python benchmarks/trial_start.py                 # this machine's device: results/trial_start[_gpu].md
    python benchmarks/trial_start.py --quick --out /tmp/trial_start.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from host import machine, write_results  # noqa: E402

METRICS = ("startup_seconds", "compile_seconds", "first_epoch_extra_seconds")

# One process's trials: fits the config (given as JSON) `fits` times and prints each one's first
# epoch's start-up metrics as a JSON line.
TRIALS = """
import json, sys
import pyarrow.fs
from xsweep.training.compile_cache import SharedCompileCache
from xsweep.training.fit import fit
config, storage, fits = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cache = SharedCompileCache(pyarrow.fs.LocalFileSystem(), storage)
for _ in range(fits):
    last = fit(config, compile_cache=cache).history[-1]
    print(json.dumps({name: last.get(name) for name in %r}), flush=True)
""" % (METRICS,)


def trial_config(device: str, quick: bool) -> dict:
    """A CIFAR-size trial, as search_spaces/gpu_share.yaml's on a GPU; a tiny one with --quick."""
    small = quick or device == "cpu"
    return {
        "data": {"dataset": "synthetic", "root": None, "image_size": 32, "val_fraction": 0.2, "augment": True,
                 "synthetic_size": 640 if small else 10240, "synthetic_classes": 10},
        "model": {"residual": True, "activation": "none", "width": 0.125 if small else 0.5,
                  "middle_blocks": 0 if quick else (1 if small else 4), "dropout": 0.5},
        "train": {"epochs": 2, "batch_size": 64 if small else 256, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9,
                  "weight_decay": 1e-5, "lr_schedule": "constant", "seed": 0, "device": device,
                  "amp": device == "cuda", "channels_last": True, "threads": 1 if small else 4, "compile": True},
    }


def trials_in_a_new_process(config: dict, *, node_folder: Path, storage: Path, fits: int = 1) -> list[dict]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(node_folder),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", TRIALS, json.dumps(config), str(storage), str(fits)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"trial_start: a trial failed:\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="the smallest model (for a test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("trial_start_gpu.md" if args.device == "cuda" else "trial_start.md")
    config = trial_config(args.device, args.quick)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xsweep-trial-start-") as scratch:
        node, other_node, storage = (Path(scratch) / name for name in ("node", "other-node", "sweep-compile-cache"))
        rows = [("1. first trial on a node (cold)", trials_in_a_new_process(config, node_folder=node, storage=storage))]
        rows.append(("2. later trial, same node, new process",
                     trials_in_a_new_process(config, node_folder=node, storage=storage)))
        third, fourth = trials_in_a_new_process(config, node_folder=other_node, storage=storage, fits=2)
        rows += [("3. trial on another node, seeded from the sweep's storage", [third]),
                 ("4. next trial in the process of 3 (a reused process)", [fourth])]
    named = torch.cuda.get_device_name() if args.device == "cuda" else "none (CPU)"
    model = config["model"]
    lines = ["# How fast a compiled trial starts", "",
             f"- Device: {named}; host: {machine()}; torch {torch.__version__}",
             f"- Trial: Xception width {model['width']}, {model['middle_blocks']} middle blocks, 32x32, batch "
             f"{config['train']['batch_size']}, {'bf16 autocast, ' if config['train']['amp'] else ''}"
             "channels_last, train.compile: true, 2 epochs",
             f"- written by `python benchmarks/trial_start.py{' --device cpu' if args.device == 'cpu' else ''}"
             f"{' --quick' if args.quick else ''}` ({time.strftime('%Y-%m-%d %H:%M')}), "
             f"{time.perf_counter() - started:.0f} s", "",
             "| trial | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for what, (metrics, *_) in rows:
        lines.append(f"| {what} | " + " | ".join("-" if metrics[m] is None else f"{metrics[m]:.1f}" for m in METRICS)
                     + " |")
    lines += ["", "startup_seconds counts from the process's start for a process's first trial (Python, the imports, "
                  "CUDA, the data, the compile, the first step), from the trial's own start for a later one."]
    write_results(out, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
