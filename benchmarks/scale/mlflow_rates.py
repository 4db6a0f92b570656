"""MLflow write rates from one thread: log_batch calls per second, and the latency of opening a trial's run
as the experiment grows, to a sqlite store directly and through an `mlflow server` on 127.0.0.1.

    .venv/bin/python benchmarks/scale/mlflow_rates.py [--mlflow-calls 500] [--open-runs 300] [--skip-server] [--quick]
"""

from __future__ import annotations

import math
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the package from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale import common  # noqa: E402

QUICK = {"mlflow_calls": 20, "open_runs": 10}
OPEN_RUN_CHECKPOINTS = (10, 100, 300, 1000, 3000, 10000)  # experiment sizes the open latency is read at


def add_arguments(parser) -> None:
    parser.add_argument("--mlflow-calls", type=int, default=500, help="log_batch calls per store")
    parser.add_argument("--open-runs", type=int, default=300, help="trial runs to open per MLflow store")
    parser.add_argument("--skip-server", action="store_true", help="the sqlite store only, no `mlflow server`")


def epoch_metrics() -> tuple[str, ...]:
    """What one epoch logs: every metric of xsweep's table (platform/xsweep/metrics.py)."""
    from xsweep.metrics import METRICS

    return METRICS.names()


def log_batch_rate(uri: str, n: int) -> dict:
    """One epoch's metrics per log_batch call, as xsweep's tracking writer process writes them."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(f"rate-{secrets.token_hex(4)}")
    runs = [client.create_run(experiment).info.run_id for _ in range(10)]
    times = []
    for i in range(n):
        ts = int(time.time() * 1000)
        batch = [Metric(k, random.random(), ts, i // len(runs)) for k in epoch_metrics()]
        t0 = time.perf_counter()
        client.log_batch(runs[i % len(runs)], metrics=batch)
        times.append(time.perf_counter() - t0)
    return {"calls": n, "per_s": n / sum(times), "per_s_median": 1 / statistics.median(times),
            "median_ms": 1000 * statistics.median(times), "p99_ms": 1000 * common.quantile(times, 0.99)}


def open_run_latency(uri: str, checkpoints: list[int], workdir: Path) -> list[tuple[int, float, float]]:
    """xsweep's SweepRuns(trial_id, config): search_runs + create_run + log_params, per trial, as the
    experiment grows. The latency at each checkpoint is the median (and max) of the 10 opens before it."""
    from xsweep.tracking.runs import release_reserved_runs, start_sweep
    from xsweep.tracking.writer import shared_writer

    spec = common.load_space_spec(trials=max(checkpoints), concurrency=1, reports=3)
    runs = start_sweep(spec, uri=uri, sweep_path=str(workdir / "sweep"), ray_address="none")
    rng = random.Random(0)
    times, rows = [], []
    for i in range(1, max(checkpoints) + 1):
        config = {"train.lr": math.exp(rng.uniform(math.log(0.005), math.log(0.3))),
                  "model.residual": rng.choice([True, False]),
                  "model.activation": rng.choice(["none", "relu", "elu"]), "xsweep/repeat": 0}
        t0 = time.perf_counter()
        runs(f"t{i:06d}", config)
        times.append(time.perf_counter() - t0)
        if i in checkpoints:
            window = times[-10:]
            rows.append((i, 1000 * statistics.median(window), 1000 * max(window)))
            print(f"  opening run #{i} on {uri.split(':')[0]}: median {rows[-1][1]:.0f} ms", flush=True)
    release_reserved_runs()
    shared_writer().flush(timeout=600)
    return rows


def measure(args, work: Path) -> dict:
    sqlite_uri = f"sqlite:///{work / 'local.db'}"
    out: dict = {"local_rate": log_batch_rate(sqlite_uri, args.mlflow_calls)}
    print(f"  sqlite log_batch: {out['local_rate']['per_s']:.0f}/s", flush=True)
    checkpoints = sorted({c for c in OPEN_RUN_CHECKPOINTS if c <= args.open_runs} | {args.open_runs})
    out["local_open"] = open_run_latency(sqlite_uri, checkpoints, work)
    out["server_rate"] = out["server_open"] = None
    out["server_note"] = "skipped (--skip-server)"
    if not args.skip_server:
        server = common.MlflowServer(work)
        try:
            uri = server.ready(timeout=120)
            if uri is None:
                out["server_note"] = "the server did not come up in 120 s (see its log); not measured"
            else:
                out["server_rate"] = log_batch_rate(uri, args.mlflow_calls)
                print(f"  server log_batch: {out['server_rate']['per_s']:.0f}/s", flush=True)
                out["server_open"] = open_run_latency(uri, checkpoints, work / "srv")
                out["server_note"] = f"`mlflow server --workers 1` on {common.LOOPBACK}, sqlite backend"
        finally:
            server.stop()
    return out


def section(args, m: dict) -> list[str]:
    from xsweep.tracking.runs import RESERVE_FROM_CONCURRENT

    local_rate, server_rate, server_open = m["local_rate"], m["server_rate"], m["server_open"]
    lines = [
        "## 3. MLflow write rates (one thread)",
        "",
        f"`MlflowClient.log_batch` with one epoch's {len(epoch_metrics())} metrics per call (what xsweep's driver-side "
        f"tracking writer process sends per reported epoch), {args.mlflow_calls} calls spread over 10 runs; and "
        "xsweep's `SweepRuns` opening a trial's run inside `suggest`, back to back, one trial at a time: below "
        f"{RESERVE_FROM_CONCURRENT} trials at once no run is reserved ahead, so each open makes its run on the "
        "store (its name, tags and params follow in the writer's queue).",
        "",
        "| store | log_batch per second (calls / total time) | at the median latency | median ms | p99 ms |",
        "|---|---|---|---|---|",
        f"| sqlite file, direct | {local_rate['per_s']:.0f} | {local_rate['per_s_median']:.0f} | "
        f"{local_rate['median_ms']:.1f} | {local_rate['p99_ms']:.1f} |",
    ]
    if server_rate:
        lines.append(f"| {m['server_note']} | {server_rate['per_s']:.0f} | {server_rate['per_s_median']:.0f} | "
                     f"{server_rate['median_ms']:.1f} | {server_rate['p99_ms']:.1f} |")
    else:
        lines.append(f"| mlflow server | {m['server_note']} | | | |")
    lines += [
        "",
        "| runs already in the experiment | open a trial's run, sqlite direct (median / max of 10, ms) |"
        + (" through the server (ms) |" if server_open else ""),
        "|---|---|" + ("---|" if server_open else ""),
    ]
    server_by = {row[0]: row for row in (server_open or [])}
    for row in m["local_open"]:
        extra = ""
        if server_open:
            s = server_by.get(row[0])
            extra = f" {s[1]:.0f} / {s[2]:.0f} |" if s else " not measured |"
        lines.append(f"| {row[0]} | {row[1]:.0f} / {row[2]:.0f} |{extra}")
    return lines + [""]


if __name__ == "__main__":
    common.run_alone(sys.modules[__name__])
