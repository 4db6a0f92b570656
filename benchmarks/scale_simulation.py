"""What limits a large sweep, measured on one machine (inputs to docs/SCALING.md). Runs the
measurements of benchmarks/scale/, one module each, and writes their sections into one results file:

1. tune_rate: the Ray Tune driver on a simulated cluster (several Ray nodes on this machine, each
   with a custom "fake_gpu" resource), stock Tune against xsweep's searcher and tracking;
2. tpe_cost: Optuna TPE suggestion latency as the study grows;
3. mlflow_rates: MLflow log_batch rates and the latency of opening a trial's run, sqlite direct and
   through an `mlflow server`;
4. checkpoint_storage: the size of one checkpoint of the paper-size Xception, and of a sweep's.

TPE is timed first, on the machine as it is: after the Tune run the simulated cluster's nodes take a
while to go, and a suggestion timed among them would time their shutdown too.

Not a test. Everything listens on and talks to 127.0.0.1 only; the simulated cluster uses token
authentication with a token generated into a temp folder (never printed). Everything started is
stopped by its handle (Cluster.shutdown, the tracking writer's close at exit) or by the process
group of the Popen that started it.

    .venv/bin/python benchmarks/scale_simulation.py [--trials 1000] [--concurrency 16] [--nodes 8]
        writes benchmarks/results/scale_simulation.md
    .venv/bin/python benchmarks/scale_simulation.py --quick [--out PATH]
        every part at toy size in well under a minute; writes PATH, by default a file in a new temp
        folder (never the committed results file)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from host import machine, write_results  # benchmarks/, on sys.path beside this script
from scale import checkpoint_storage, common, mlflow_rates, tpe_cost, tune_rate

RESULTS = common.BENCHMARKS / "results" / "scale_simulation.md"
MODULES = [tune_rate, tpe_cost, mlflow_rates, checkpoint_storage]  # in the results file's order


def main(argv=None) -> None:
    args = common.parse(MODULES, argv, description=__doc__.splitlines()[0], more=lambda parser: parser.add_argument(
        "--out", type=Path, default=None,
        help=f"the results file (default: {RESULTS.relative_to(common.ROOT)}; with --quick, a file in a new temp folder)"))
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="xsweep-scale-quick-")) / "scale_simulation.md" if args.quick \
            else RESULTS
    elif args.quick and args.out.resolve() == RESULTS.resolve():
        raise SystemExit(f"--quick does not write {RESULTS}: give --out another path")
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    wall0, load_before = time.time(), os.getloadavg()
    args.out = args.out.resolve()
    work = common.loopback_environment()  # before anything imports ray
    # A sqlite store keeps its runs' artifacts under ./mlruns of the working folder: the work folder's.
    os.chdir(work)
    try:
        print("1/4 Optuna TPE suggestion latency ...", flush=True)
        tpe = tpe_cost.measure(args, work)
        print(f"2/4 Tune: {args.trials} trials on {args.nodes} simulated nodes ...", flush=True)
        tune = tune_rate.measure(args, work)
        print("3/4 MLflow ...", flush=True)
        mlflow = mlflow_rates.measure(args, work)
        print("4/4 checkpoint size ...", flush=True)
        ckpt = checkpoint_storage.measure(args, work)
    finally:
        os.chdir(common.ROOT)
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    lines = [
        "# Scale simulation: what limits a large sweep",
        "",
        f"Written by `benchmarks/scale_simulation.py` on {started} in {time.time() - wall0:.0f} s; machine: "
        f"{machine()}; load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}.",
        "",
        *([f"**{args.quick_note}.** These numbers check that every part runs, not how fast.", ""]
          if args.quick else []),
        *tune_rate.section(args, tune),
        *tpe_cost.section(args, tpe),
        *mlflow_rates.section(args, mlflow),
        *checkpoint_storage.section(args, ckpt),
    ]
    write_results(args.out, lines)
    print(f"\nwrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
