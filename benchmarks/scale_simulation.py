"""What limits a large sweep, measured on one machine (inputs to docs/SCALING.md):

* Tune driver: trials started per second, driver CPU per trial and peak memory, for N trials of a
  sleeping trainable through Ray Tune with xsweep's own searcher (Optuna TPE, build_searcher) on a
  simulated cluster: ray.cluster_utils.Cluster with several Ray nodes on this machine, all on
  127.0.0.1, each carrying a custom "fake_gpu" resource; one trial takes one fake_gpu;
* Optuna TPE suggestion latency with 10 / 100 / 1000 / 3000 / 10000 finished trials in the same space;
* MLflow: log_batch writes per second from one thread (what xsweep's tracking writer does once per
  epoch) to a sqlite store directly and through an `mlflow server` on 127.0.0.1 backed by sqlite,
  and the latency of opening a trial's run (xsweep's SweepRuns, called inside searcher.suggest,
  i.e. on Tune's event loop) as the experiment grows;
* storage: the size of one checkpoint of the paper-size Xception, and of Tune's experiment and
  searcher state files after the run.

Not a test. Everything listens on and talks to 127.0.0.1 only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
node_ip_address=127.0.0.1, usage stats off); the simulated cluster uses token authentication with a
token generated here into a temp folder (never printed). Everything started is stopped by its
handle (Cluster.shutdown) or by the PID/process group of the Popen that started it.
Writes benchmarks/results/scale_simulation.md.

    .venv/bin/python benchmarks/scale_simulation.py [--trials 1000] [--concurrency 16] [--nodes 8]
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

from host import machine, write_results

# Before ray is imported: loopback addresses only (Ray otherwise turns 127.0.0.1 into the host's
# routable address), no usage-stats upload, token authentication with a token of our own.
_WORK = Path(tempfile.mkdtemp(prefix="xsweep-scale-"))
_TOKEN = _WORK / "auth_token"
_TOKEN.write_text(secrets.token_hex(32))
_TOKEN.chmod(0o600)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(_TOKEN)
os.environ.pop("RAY_AUTH_TOKEN", None)
os.environ.pop("RAY_ADDRESS", None)
os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "platform"))
RESULTS = ROOT / "benchmarks" / "results" / "scale_simulation.md"
LOOPBACK = "127.0.0.1"

SPACE_SPEC = """
name: scale-simulation
data: {{dataset: digits, image_size: 32}}
model: {{width: 0.125, middle_blocks: 1}}
train: {{epochs: {reports}}}
search:
  algorithm: optuna-tpe
  num_samples: {trials}
  max_concurrent: {concurrency}
  seed: 0
  space:
    train.lr: {{loguniform: [0.005, 0.3]}}
    model.residual: {{choice: [true, false]}}
    model.activation: {{choice: [none, relu, elu]}}
scheduler: {{kind: fifo}}
resources: {{cpus_per_trial: 1}}
"""



def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_times() -> list[int]:
    """The machine's CPU time so far, from /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def cpu_busy(seconds: float) -> float:
    """The machine's busy share of its CPU time over the next `seconds`."""
    before, _ = cpu_times(), time.sleep(seconds)
    spent = [b - a for a, b in zip(before, cpu_times())]
    return 1 - (spent[3] + spent[4]) / max(sum(spent), 1)  # less idle and iowait


def steal_share(before: list[int], after: list[int]) -> float:
    """The share of the CPU time between two `cpu_times` that the hypervisor gave to other guests."""
    spent = [b - a for a, b in zip(before, after)]
    return spent[7] / max(sum(spent), 1)


def cpu_probe_ms() -> float:
    """One core's speed now: the fastest of 5 runs of a fixed pure-Python loop, in ms. A round whose
    probe reads slow ran on a slow machine, whatever the system under test did."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i % 7
        times.append(1000 * (time.perf_counter() - start))
    return min(times)


def wait_until_quiet(*, busy_below: float = 0.25, longest_s: float = 180) -> tuple[float, float]:
    """Wait until the machine's CPU is mostly idle (a freshly started cluster's nodes, or the last
    run's trial processes, keep it busy for a while): (seconds waited, busy share when done)."""
    started = time.time()
    busy = cpu_busy(3)
    while busy >= busy_below and time.time() - started < longest_s:
        busy = cpu_busy(3)
    return time.time() - started, busy


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ---------------------------------------------------------------------------------------------
# The sleeping trainable and a searcher that times its own suggestions


def sleeper(config):
    """A trial: a few reports, each after sleeping; the score depends on the config so TPE has a signal."""
    from ray import tune

    started = time.time()
    reports, sleep = config["xsweep_bench/reports"], config["xsweep_bench/sleep"]
    lr = config["train.lr"]
    base = 0.97 - 0.08 * (math.log10(lr) + 1.3) ** 2 + (0.01 if config["model.residual"] else 0.0)
    for epoch in range(1, reports + 1):
        time.sleep(sleep)
        # In xsweep's result form (contract.py), which its tracking callback reads; stock Tune ignores the rest.
        report = TrialReport(epoch=epoch, planned_epochs=reports,
                             metrics={"val_accuracy": base - 0.3 / epoch + random.gauss(0, 0.005)})
        tune.report({**report.to_result(), "epoch": epoch, "started_at": started})


def no_run(trial_id, config):
    """open_run stand-in when tracking is off: module-level so Tune can pickle the searcher."""
    return ""


from ray.tune.search.optuna import OptunaSearch  # noqa: E402 - after the environment above

from xsweep.contract import TrialReport  # noqa: E402
from xsweep.search.searcher import SweepSearcher, build_searcher, optuna_space  # noqa: E402

SUGGEST_SECONDS: list[float] = []  # driver side; a module global survives Tune copying the searcher


class TimedSuggest:
    """Mixed into a searcher: records how long each suggest() takes and adds the sleeping
    trainable's settings to each config."""

    bench_settings: dict = {}

    def suggest(self, trial_id):
        t0 = time.perf_counter()
        config = super().suggest(trial_id)
        SUGGEST_SECONDS.append(time.perf_counter() - t0)
        if isinstance(config, dict):
            config = dict(config, **self.bench_settings)
        return config


class TimedSearcher(TimedSuggest, SweepSearcher):
    """xsweep's searcher (TPE + opening the run), timed."""


class TimedStockSearch(TimedSuggest, OptunaSearch):
    """Stock Ray Tune's OptunaSearch, timed the same way."""


def make_searcher(spec, open_run, reports, sleep):
    searcher = build_searcher(spec, open_run=open_run)
    searcher.__class__ = TimedSearcher
    TimedSearcher.bench_settings = {"xsweep_bench/reports": reports, "xsweep_bench/sleep": sleep}
    return searcher


def make_stock_searcher(spec, reports, sleep):
    """What a Ray Tune user writes: OptunaSearch with Optuna's TPE (its defaults, seed 0), no tracking."""
    import optuna

    TimedStockSearch.bench_settings = {"xsweep_bench/reports": reports, "xsweep_bench/sleep": sleep}
    return TimedStockSearch(space=optuna_space(spec), metric="val_accuracy", mode="max",
                            sampler=optuna.samplers.TPESampler(seed=0))


SYSTEMS = {
    "stock": "stock Ray Tune: OptunaSearch (Optuna TPE), no tracking, Tune's default result loggers",
    "xsweep": "xsweep: its searcher (TPE, deduplication, a run per trial), MLflow tracking to sqlite, and Tune's "
              "result loggers as a sweep has them (CSV and JSON, not TensorBoard: sweep/run.py)",
}


# ---------------------------------------------------------------------------------------------
# 1. The simulated cluster and the Tune run


def run_tune(args, work: Path) -> dict:
    """Both systems, one after the other, on one simulated cluster: {"cluster": ..., system: results}."""
    import ray
    from ray.cluster_utils import Cluster

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    out: dict = {"cluster": {"nodes": args.nodes, "gpus_per_node": args.gpus_per_node}}
    t0 = time.time()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": LOOPBACK, "include_dashboard": False,
                        "resources": {"fake_gpu": args.gpus_per_node}},
    )
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK, resources={"fake_gpu": args.gpus_per_node})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.WARNING)
        out["cluster"]["cluster_start_s"] = time.time() - t0
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        addresses = sorted({n["NodeManagerAddress"] for n in nodes})
        if addresses != [LOOPBACK]:
            raise SystemExit(f"refusing to go on: nodes came up on {addresses}, not {LOOPBACK} only")
        out["cluster"]["alive_nodes"] = len(nodes)
        out["cluster"]["fake_gpus"] = sum(n["Resources"].get("fake_gpu", 0) for n in nodes)
        # Rates on this shared machine swing between runs with nothing changed (stock 3.1-10.3
        # starts/s, xsweep 2.5-10.1 on 2026-12-02, in either order): the systems alternate over
        # rounds, every round is reported, and each system is compared by its best round.
        out["rounds"] = []
        for round_number in range(1, args.rounds + 1):
            for system in args.systems:
                waited, busy = wait_until_quiet()  # each run starts on a quiet machine
                probe_before = cpu_probe_ms()
                print(f"  round {round_number}: {SYSTEMS[system]} (after {waited:.0f} s for a quiet CPU, "
                      f"{busy:.0%} busy, CPU probe {probe_before:.0f} ms) ...", flush=True)
                times_before = cpu_times()
                result = tune_once(args, work, system, name=f"{system}-{round_number}")
                result["steal_share"] = steal_share(times_before, cpu_times())
                result["quiet_wait_s"], result["busy_at_start"] = waited, busy
                result["cpu_probe_ms"] = (probe_before, cpu_probe_ms())  # before, and right after `fit`
                print("  " + json.dumps({k: v for k, v in result.items()
                                         if k not in ("suggest_ms", "load_during", "start_rate_tenths")}), flush=True)
                out["rounds"].append({"round": round_number, "system": system, **{
                    key: result.get(key) for key in ("start_rate_mid", "driver_cpu_s", "writer_cpu_with_flush_s",
                                                     "trials_ok", "busy_at_start", "cpu_probe_ms",
                                                     "steal_share")}})
                if system not in out or result["start_rate_mid"] > out[system]["start_rate_mid"]:
                    out[system] = result | {"round": round_number}
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


def tune_once(args, work: Path, system: str, *, name: str) -> dict:
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from xsweep.spec import load_spec_text
    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.writer import shared_writer
    from xsweep.tracking.runs import release_reserved_runs, start_sweep

    out: dict = {}
    SUGGEST_SECONDS.clear()
    spec = load_spec_text(SPACE_SPEC.format(trials=args.trials, concurrency=args.concurrency,
                                            reports=args.reports), source="scale.yaml")
    callbacks = []
    if system == "xsweep":
        runs = start_sweep(spec, uri=f"sqlite:///{work / 'tracking.db'}", sweep_path=str(work / "tune" / name),
                           ray_address="simulated cluster")
        searcher = make_searcher(spec, runs, args.reports, args.sleep)
        callbacks = [TrackingCallback(runs, metric="val_accuracy", mode="max"), CSVLoggerCallback(),
                     JsonLoggerCallback()]
    else:
        searcher = make_stock_searcher(spec, args.reports, args.sleep)
    # Tune adds its default loggers (TensorBoard's among them) unless told not to; a sweep is told.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1" if system == "xsweep" else "0"
    trainable = tune.with_resources(sleeper, {"cpu": 0, "fake_gpu": 1})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric="val_accuracy", mode="max", num_samples=args.trials,
            max_concurrent_trials=args.concurrency, reuse_actors=args.reuse_actors,
            time_budget_s=args.time_budget,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(work / "tune"), verbose=0, callbacks=callbacks),
    )
    rss_before = rss_mib()
    samples: list[tuple[float, float, int, float]] = []  # (time, driver RSS MiB, trials suggested, load 1 min)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(2.0):
            samples.append((time.time(), rss_mib(), len(SUGGEST_SECONDS), os.getloadavg()[0]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # xsweep's tracking writes run in a process of their own (tracking/writer.py): its CPU is
    # measured too, read from inside it, and reported beside the driver's.
    writer_cpu = (lambda: shared_writer().call("its CPU time", time.process_time).result()) \
        if system == "xsweep" else None
    writer_cpu0 = writer_cpu() if writer_cpu else 0.0
    cpu0, wall0 = time.process_time(), time.time()
    try:
        grid = tuner.fit()
    finally:
        done.set()
        sampler.join()
    out["fit_wall_s"] = time.time() - wall0
    out["driver_cpu_s"] = time.process_time() - cpu0
    if system == "xsweep":
        out["writer_cpu_s"] = writer_cpu() - writer_cpu0
        flush0 = time.time()
        release_reserved_runs()
        out["tracking_left"] = shared_writer().flush(timeout=600)
        out["tracking_flush_s"] = time.time() - flush0
        out["driver_cpu_with_flush_s"] = time.process_time() - cpu0
        out["writer_cpu_with_flush_s"] = writer_cpu() - writer_cpu0
    out["driver_rss_before_mib"] = rss_before
    out["driver_rss_after_mib"] = rss_mib()
    out["driver_maxrss_mib"] = maxrss_mib()
    out["load_during"] = [x[3] for x in samples]
    # RSS growth per trial once Tune's one-off allocations are done: from the first sample with a
    # quarter of the trials suggested to the last sample.
    late = [x for x in samples if x[2] >= max(20, len(SUGGEST_SECONDS) // 4)]
    if len(late) >= 2 and late[-1][2] > late[0][2]:
        out["rss_kib_per_trial"] = 1024 * (late[-1][1] - late[0][1]) / (late[-1][2] - late[0][2])
        out["rss_window"] = (late[0][2], late[-1][2], late[0][1], late[-1][1])
    starts = sorted(r.metrics["started_at"] for r in grid if r.metrics and "started_at" in r.metrics)
    ends = [r.metrics["timestamp"] for r in grid if r.metrics and "timestamp" in r.metrics]
    out["trials_ok"] = len(starts)
    out["trials_finished"] = sum(1 for r in grid if r.metrics and r.metrics.get("epoch") == args.reports)
    out["time_budget_hit"] = len(starts) < args.trials
    out["errors"] = sum(1 for r in grid if r.error)
    out["first_start_after_fit_s"] = starts[0] - wall0
    out["start_span_s"] = starts[-1] - starts[0]
    out["start_rate"] = (len(starts) - 1) / max(starts[-1] - starts[0], 1e-9)
    # Steady state: the middle 80 % of the starts (excludes ramp-up and the tail).
    lo, hi = int(0.1 * len(starts)), int(0.9 * len(starts))
    out["start_rate_mid"] = (hi - lo) / max(starts[hi] - starts[lo], 1e-9)
    # Start rate per tenth of the run: does the driver slow down as the study grows?
    tenths = []
    step = max(1, len(starts) // 10)
    for i in range(0, len(starts) - step, step):
        tenths.append(step / max(starts[i + step] - starts[i], 1e-9))
    out["start_rate_tenths"] = tenths
    out["throughput"] = len(starts) / max(max(ends) - starts[0], 1e-9)
    out["trial_s"] = args.reports * args.sleep
    out["ideal_rate"] = args.concurrency / (args.reports * args.sleep)
    out["suggest_ms"] = [1000 * s for s in SUGGEST_SECONDS]
    # Tune's own state files: what it rewrites on every experiment checkpoint.
    sizes = {}
    for path in (work / "tune" / system).glob("*"):
        if path.is_file():
            sizes[path.name] = path.stat().st_size
    out["state_files"] = sizes
    return out


# ---------------------------------------------------------------------------------------------
# 2. Optuna TPE suggestion latency against the number of finished trials


def tpe_latency(sizes, asks: int) -> list[tuple[int, float, float, float]]:
    import optuna

    from xsweep.spec import load_spec_text
    from xsweep.search.algorithms import ALGORITHMS, distribution

    spec = load_spec_text(SPACE_SPEC.format(trials=10, concurrency=1, reports=3), source="scale.yaml")
    space = {path: distribution(entry.kind, low=entry.low, high=entry.high, values=entry.values or ())
             for path, entry in spec.search.space.items()}
    sampler = ALGORITHMS.get(spec.search.algorithm).sampler
    rng = random.Random(0)
    rows = []
    for n in sizes:
        study = optuna.create_study(direction="maximize", sampler=sampler(spec))  # in memory, as OptunaSearch
        trials = []
        for _ in range(n):
            params = {"train.lr": math.exp(rng.uniform(math.log(0.005), math.log(0.3))),
                      "model.residual": rng.choice([True, False]),
                      "model.activation": rng.choice(["none", "relu", "elu"])}
            value = 0.97 - 0.08 * (math.log10(params["train.lr"]) + 1.3) ** 2 + rng.gauss(0, 0.01)
            trials.append(optuna.trial.create_trial(params=params, distributions=space, value=value))
        study.add_trials(trials)
        times = []
        for _ in range(asks):
            t0 = time.perf_counter()
            trial = study.ask(fixed_distributions=space)  # what OptunaSearch.suggest calls
            times.append(time.perf_counter() - t0)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # not counted as finished by TPE
        rows.append((n, 1000 * statistics.median(times), 1000 * min(times), 1000 * max(times)))
        print(f"  TPE with {n} finished trials: median {rows[-1][1]:.1f} ms per suggestion", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# 3. MLflow write rates


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
            "median_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * quantile(times, 0.99)}


def open_run_latency(uri: str, checkpoints: list[int], workdir: Path) -> list[tuple[int, float, float]]:
    """xsweep's SweepRuns(trial_id, config): search_runs + create_run + log_params, per trial, as the
    experiment grows. The latency at each checkpoint is the median of the 10 opens before it."""
    from xsweep.spec import load_spec_text
    from xsweep.tracking.runs import start_sweep

    spec = load_spec_text(SPACE_SPEC.format(trials=max(checkpoints), concurrency=1, reports=3),
                          source="scale.yaml")
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
    from xsweep.tracking.writer import shared_writer
    from xsweep.tracking.runs import release_reserved_runs

    release_reserved_runs()
    shared_writer().flush(timeout=600)
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start_mlflow_server(work: Path, timeout: float = 120):
    import requests

    port = free_port()
    log = open(work / "mlflow-server.log", "ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{work / 'server.db'}",
         "--artifacts-destination", str(work / "server-artifacts"), "--serve-artifacts",
         "--host", LOOPBACK, "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(f"{uri}/health", timeout=2).ok:
                return proc, uri
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop_process_group(proc)
    return None, None


def stop_process_group(proc) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and the workers it forked
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------------------------
# 4. Checkpoint size of the paper-size model


def checkpoint_bytes(work: Path) -> dict:
    import torch

    from xsweep.training.checkpoint import save_checkpoint
    from xsweep.training.models import build_model
    from xsweep.training.optim import build_optimizer

    config = {"model": {"residual": True, "activation": "none", "width": 1.0, "middle_blocks": 8, "dropout": 0.5},
              "train": {"optimizer": "sgd", "lr": 0.045, "momentum": 0.9, "weight_decay": 1e-5}}
    model = build_model(config, num_classes=1000, in_channels=3)
    optimizer = build_optimizer(model, config["train"])
    # One step on a tiny batch so the optimizer state (momentum buffers) exists, as in a real checkpoint.
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    params = sum(p.numel() for p in model.parameters())
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "history": []}
    path = work / "state.pt"
    save_checkpoint(state, str(path))
    return {"params": params, "bytes": path.stat().st_size}


# ---------------------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each system, alternated")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16,
                        help="trials at a time (each is a Ray worker process on this machine)")
    parser.add_argument("--reports", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds before each report")
    parser.add_argument("--no-reuse-actors", dest="reuse_actors", action="store_false",
                        help="a new actor per trial, as xsweep does on a multi-node cluster")
    parser.add_argument("--mlflow-calls", type=int, default=500)
    parser.add_argument("--open-runs", type=int, default=300, help="trial runs to open per MLflow store")
    parser.add_argument("--time-budget", type=float, default=480,
                        help="stop the Tune run after this many seconds (trials started by then are reported)")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--tpe-sizes", default="10,100,1000,3000,10000", help="finished trials to time TPE at")
    parser.add_argument("--systems", default="stock,xsweep", type=lambda text: text.split(","),
                        help=f"which of {', '.join(SYSTEMS)} to run through Tune, in this order")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()
    work = _WORK
    try:
        # TPE first, on the machine as it was: after the Tune run its 8 Ray nodes take a while to go,
        # and a suggestion measured among them timed their shutdown as much as TPE.
        print("1/4 Optuna TPE suggestion latency ...", flush=True)
        tpe = tpe_latency([int(x) for x in args.tpe_sizes.split(",")], asks=7)
        print(f"2/4 Tune: {args.trials} trials on {args.nodes} simulated nodes ...", flush=True)
        tune_out = run_tune(args, work)
        print("3/4 MLflow ...", flush=True)
        sqlite_uri = f"sqlite:///{work / 'local.db'}"
        local_rate = log_batch_rate(sqlite_uri, args.mlflow_calls)
        print(f"  sqlite log_batch: {local_rate['per_s']:.0f}/s", flush=True)
        checkpoints = sorted({c for c in (10, 100, 300, 1000, 3000, 10000) if c <= args.open_runs} | {args.open_runs})
        local_open = open_run_latency(sqlite_uri, checkpoints, work)
        server_rate = server_open = None
        server_note = "skipped (--skip-server)"
        if not args.skip_server:
            proc, uri = start_mlflow_server(work)
            try:
                if uri is None:
                    server_note = "the server did not come up in 120 s (see its log); not measured"
                else:
                    server_rate = log_batch_rate(uri, args.mlflow_calls)
                    print(f"  server log_batch: {server_rate['per_s']:.0f}/s", flush=True)
                    server_open = open_run_latency(uri, checkpoints, work / "srv")
                    server_note = f"`mlflow server --workers 1` on {LOOPBACK}, sqlite backend"
            finally:
                stop_process_group(proc)
        print("4/4 checkpoint size ...", flush=True)
        ckpt = checkpoint_bytes(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    write_report(args, started, load_before, load_after, tune_out, tpe, local_rate, local_open,
                 server_rate, server_open, server_note, ckpt)


def comparison(args, stock: dict, ours: dict, rounds: list[dict]) -> list[str]:
    """Section 1's head: the two systems side by side, with #15's targets."""
    def cpu_ms(t, key="driver_cpu_s"):
        return 1000 * t[key] / max(t["trials_ok"], 1)

    rows = [
        ("trials started per second, middle 80 % of starts", f"{stock['start_rate_mid']:.2f}",
         f"{ours['start_rate_mid']:.2f}", ours["start_rate_mid"] / stock["start_rate_mid"], ">= 0.9x"),
        ("trials started per second, whole run", f"{stock['start_rate']:.2f}", f"{ours['start_rate']:.2f}",
         ours["start_rate"] / stock["start_rate"], ""),
        ("driver CPU per trial during `fit` (ms)", f"{cpu_ms(stock):.0f}", f"{cpu_ms(ours):.0f}",
         cpu_ms(ours) / cpu_ms(stock), "<= 1.1x"),
        ("driver CPU per trial, tracking flushed at the end too (ms)", f"{cpu_ms(stock):.0f}",
         f"{cpu_ms(ours, 'driver_cpu_with_flush_s'):.0f}", cpu_ms(ours, "driver_cpu_with_flush_s") / cpu_ms(stock), ""),
        ("tracking writer process CPU per trial, tracking flushed (ms): not the driver's, another core", "none",
         f"{cpu_ms(ours, 'writer_cpu_with_flush_s'):.0f}", None, ""),
        ("driver + writer CPU per trial, tracking flushed (ms): all of xsweep's head-node CPU",
         f"{cpu_ms(stock):.0f}",
         f"{cpu_ms(ours, 'driver_cpu_with_flush_s') + cpu_ms(ours, 'writer_cpu_with_flush_s'):.0f}",
         (cpu_ms(ours, "driver_cpu_with_flush_s") + cpu_ms(ours, "writer_cpu_with_flush_s")) / cpu_ms(stock), ""),
        ("`suggest` median (ms)", f"{statistics.median(stock['suggest_ms']):.1f}",
         f"{statistics.median(ours['suggest_ms']):.1f}",
         statistics.median(ours["suggest_ms"]) / statistics.median(stock["suggest_ms"]), ""),
        ("`tuner.fit` wall time (s)", f"{stock['fit_wall_s']:.0f}", f"{ours['fit_wall_s']:.0f}",
         ours["fit_wall_s"] / stock["fit_wall_s"], ""),
        ("machine CPU busy when `fit` began (seconds waited for it to settle)",
         f"{stock.get('busy_at_start', float('nan')):.0%} ({stock.get('quiet_wait_s', 0):.0f} s)",
         f"{ours.get('busy_at_start', float('nan')):.0%} ({ours.get('quiet_wait_s', 0):.0f} s)", None, ""),
        ("trials started / finished", f"{stock['trials_ok']} / {stock['trials_finished']}",
         f"{ours['trials_ok']} / {ours['trials_finished']}", None, ""),
    ]
    lines = [
        f"Both systems in this one run, alternated ({', '.join(args.systems)}) over {args.rounds} round(s), on the "
        f"same simulated cluster, the same sleeping trainable and space, {args.trials} trials, {args.concurrency} at "
        "a time. Each system is compared by its best round (stock's was round "
        f"{stock.get('round', 1)}, xsweep's round {ours.get('round', 1)}): on this shared machine a run's rate swings "
        "between runs with nothing changed, and the swings only ever slow a run down:",
        "",
        *[f"- **{name}**: {text}" for name, text in SYSTEMS.items()],
        "",
        "| measure | stock | xsweep | xsweep / stock | target (#15) |",
        "|---|---|---|---|---|",
        *[f"| {name} | {a} | {b} | {'' if r is None else f'{r:.2f}x'} | {target} |" for name, a, b, r, target in rows],
        "",
        f"xsweep's tracking: {ours.get('tracking_left', 0)} writes left undelivered at the end, "
        f"{ours.get('tracking_flush_s', 0):.1f} s to flush the tracking writer's queue after `fit` returned.",
        "",
        "Every round, in the order run:",
        "",
        "| round | system | trials started per second (middle 80 %) | driver CPU per trial (ms) | "
        "writer CPU per trial (ms) | CPU busy at the start | CPU probe before / after `fit` (ms) | "
        "steal during the round |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['round']} | {r['system']} | {r['start_rate_mid']:.2f} | "
          f"{1000 * r['driver_cpu_s'] / max(r['trials_ok'], 1):.0f} | "
          + (f"{1000 * r['writer_cpu_with_flush_s'] / max(r['trials_ok'], 1):.0f}"
             if r.get("writer_cpu_with_flush_s") is not None else "none")
          + f" | {r['busy_at_start']:.0%} | {r['cpu_probe_ms'][0]:.0f} / {r['cpu_probe_ms'][1]:.0f} | "
            f"{r['steal_share']:.1%} |" for r in rounds],
        "",
        "The CPU probe is one core's speed: the fastest of 5 runs of a fixed pure-Python loop, taken on the "
        "settled machine before the round and again right after `fit` returns. Steal is the share of the "
        "machine's CPU time over the round that the hypervisor gave to other guests (/proc/stat).",
        "",
    ]
    return lines


KEPT_PER_TRIAL = 3  # sweep/run.py: num_to_keep=2 by the metric, and Tune keeps the latest as well


def write_report(args, started, load_before, load_after, tune_out, tpe, local_rate, local_open, server_rate,
                 server_open, server_note, ckpt) -> None:
    from xsweep.tracking.runs import RESERVE_FROM_CONCURRENT, runs_ahead

    t = {**tune_out["cluster"], **tune_out["xsweep"]}
    suggest = t["suggest_ms"]
    n = t["trials_ok"]
    per_trial_cpu_ms = 1000 * t["driver_cpu_s"] / max(n, 1)
    state = t["state_files"]
    exp_state = sum(v for k, v in state.items() if k.startswith("experiment_state"))
    searcher_state = sum(v for k, v in state.items() if k.startswith("searcher-state"))
    tpe_by_n = {row[0]: row[1] for row in tpe}
    # TPE's cost per suggestion grows about linearly with the finished trials: a line through the two
    # largest measured sizes, floored at the smallest measurement, summed over a 10,000-trial sweep.
    (n_a, c_a), (n_b, c_b) = (sorted(tpe_by_n.items()) * 2)[-2:]  # one size measured: a flat line
    slope = (c_b - c_a) / (n_b - n_a) if n_b != n_a else 0.0

    def tpe_ms(k: int) -> float:
        return max(min(tpe_by_n.values()), c_b + slope * (k - n_b))

    tpe_total_10k_s = sum(tpe_ms(k) for k in range(10000)) / 1000
    tpe_at_10k = tpe_by_n.get(10000, tpe_ms(10000))
    lines = [
        "# Scale simulation: what limits a large sweep",
        "",
        f"Written by `benchmarks/scale_simulation.py` on {started}; machine: {machine()}; load average "
        f"(1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} (other jobs share these cores: the "
        "rates below are lower bounds for a dedicated head node).",
        "",
        "## 1. Ray Tune driver on a simulated cluster",
        "",
        *(comparison(args, tune_out["stock"], tune_out["xsweep"], tune_out["rounds"]) if "stock" in tune_out else []),
        "The xsweep run in detail (its best round):",
        "",
        f"`ray.cluster_utils.Cluster`: {t['alive_nodes']} Ray nodes on this machine, every one on {LOOPBACK} "
        f"(checked from `ray.nodes()`), {args.gpus_per_node} custom `fake_gpu` per node ({t['fake_gpus']:g} in "
        f"all), 1 CPU each, token authentication with a token generated for this run. Each trial asks for "
        f"`{{cpu: 0, fake_gpu: 1}}` and sleeps {args.sleep} s before each of {args.reports} reports "
        f"({t['trial_s']:.1f} s per trial). Searcher: xsweep's own (`build_searcher`: Optuna TPE behind Ray's "
        f"OptunaSearch, seed 0) over lr loguniform x residual x activation; FIFO scheduler; "
        f"{args.concurrency} trials at a time (`max_concurrent_trials`), `reuse_actors={args.reuse_actors}`; "
        "MLflow tracking to a sqlite store, as a sweep has (its write rates are in section 3), with "
        f"{runs_ahead(trials=args.trials, concurrent=args.concurrency)} trial runs reserved ahead "
        "(`tracking/runs.py` runs_ahead).",
        "",
        f"Scaled down: **{args.concurrency} concurrent trials, not 64**: each running trial is a Ray worker "
        f"process on this 2-core machine shared with other work. "
        + (f"**The run hit its time budget ({args.time_budget:.0f} s): {n} of {args.trials} trials started, "
           f"{t['trials_finished']} finished; at the measured steady start rate the {args.trials} trials would take "
           f"about {args.trials / max(t['start_rate_mid'], 1e-9) / 60:.0f} minutes, 10,000 about "
           f"{10000 / max(t['start_rate_mid'], 1e-9) / 3600:.1f} hours (if the rate did not fall further as the "
           f"study grows).** " if t["time_budget_hit"] else
           f"All {n} trials started, {t['trials_finished']} finished. ")
        + ("Actors are reused between trials (a trial does not pay a process start), as on one machine; xsweep "
           "turns reuse off on multi-node clusters, where each trial starts a process on its node: that cost "
           "falls on the nodes, not the driver." if args.reuse_actors else
           "A new actor (process) per trial, as xsweep does on multi-node clusters."),
        "",
        "| measure | measured |",
        "|---|---|",
        f"| cluster start ({t['alive_nodes']} nodes) | {t['cluster_start_s']:.1f} s |",
        f"| trials started / finished / errors | {n} / {t['trials_finished']} / {t['errors']} |",
        f"| `tuner.fit` wall time | {t['fit_wall_s']:.1f} s (ideal at {args.concurrency} slots: "
        f"{math.ceil(args.trials / args.concurrency) * t['trial_s']:.0f} s) |",
        f"| trials started per second, whole run | {t['start_rate']:.2f} /s (ideal {t['ideal_rate']:.1f} /s = "
        f"slots / trial time) |",
        f"| trials started per second, middle 80 % of starts | {t['start_rate_mid']:.2f} /s |",
        f"| trials started per second, by tenth of the run | "
        f"{', '.join(f'{r:.1f}' for r in t['start_rate_tenths'])} |",
        f"| completed trials per second | {t['throughput']:.2f} /s |",
        f"| driver CPU time during `fit` | {t['driver_cpu_s']:.1f} s = {per_trial_cpu_ms:.0f} ms per trial "
        f"({per_trial_cpu_ms / args.reports:.0f} ms per reported result) |",
        f"| `searcher.suggest` (xsweep SweepSearcher -> OptunaSearch -> TPE), median / p90 / max, "
        f"{len(suggest)} calls | {statistics.median(suggest):.1f} / {quantile(suggest, 0.9):.1f} / "
        f"{max(suggest):.1f} ms |",
        f"| `suggest`, first 100 vs last 100 trials (median) | {statistics.median(suggest[:100]):.1f} ms vs "
        f"{statistics.median(suggest[-100:]):.1f} ms |",
        f"| driver peak memory (`getrusage` ru_maxrss) | {t['driver_maxrss_mib']:.0f} MiB (RSS before `fit` "
        f"{t['driver_rss_before_mib']:.0f} MiB, after {t['driver_rss_after_mib']:.0f} MiB) |",
        (f"| driver RSS growth per trial after the first quarter (RSS {t['rss_window'][2]:.0f} MiB at trial "
         f"{t['rss_window'][0]}, {t['rss_window'][3]:.0f} MiB at trial {t['rss_window'][1]}) | "
         f"{t['rss_kib_per_trial']:.0f} KiB per trial (x 10,000 = {t['rss_kib_per_trial'] * 10000 / 2**20:.1f} GiB) |"
         if "rss_kib_per_trial" in t else "| driver RSS growth per trial | not enough samples |"),
        f"| load average (1 min) sampled every 2 s during `fit`: min / median / max | "
        f"{min(t['load_during'], default=float('nan')):.1f} / "
        f"{statistics.median(t['load_during']) if t['load_during'] else float('nan'):.1f} / "
        f"{max(t['load_during'], default=float('nan')):.1f} |",
        f"| Tune experiment state file(s) after {n} trials | {mib(exp_state)} |",
        f"| searcher state (pickled Optuna study, rewritten with every experiment checkpoint) | "
        f"{mib(searcher_state)} |",
        "",
        "## 2. Optuna TPE suggestion latency",
        "",
        "`study.ask(fixed_distributions=space)` (what Ray's OptunaSearch.suggest calls) on an in-memory study "
        "(as OptunaSearch keeps it) holding N completed trials of the same 3-parameter space, with xsweep's "
        "sampler (multivariate TPE, modelling a window of 1,000 trials past 1,000: "
        "`platform/xsweep/search/tpe_window.py`); median of 7 asks, each told FAIL afterwards. Measured before the "
        "simulated cluster of section 1 starts.",
        "",
        "| finished trials | median ms / suggestion | min | max |",
        "|---|---|---|---|",
        *[f"| {row[0]} | {row[1]:.1f} | {row[2]:.1f} | {row[3]:.1f} |" for row in tpe],
        "",
        f"Summed over a 10,000-trial sweep (a line through the two largest sizes, {n_a} and {n_b}): suggesting "
        f"every trial costs about {tpe_total_10k_s / 60:.1f} minutes of driver time in all, the last suggestions "
        f"about {tpe_at_10k:.0f} ms each. Tune calls `suggest` on its event loop: while it runs, no result is "
        "processed and no trial is started.",
        "",
        "## 3. MLflow write rates (one thread)",
        "",
        f"`MlflowClient.log_batch` with one epoch's {len(epoch_metrics())} metrics per call (what xsweep's driver-side "
        f"tracking writer process sends per reported epoch), {args.mlflow_calls} calls spread over 10 runs; and xsweep's "
        "`SweepRuns` opening a trial's run inside `suggest`, back to back, one trial at a time: below "
        f"{RESERVE_FROM_CONCURRENT} trials at once no run is reserved ahead, so each open makes its run on the "
        "server (its name, tags and params follow in the writer's queue).",
        "",
        "| store | log_batch per second (calls / total time) | at the median latency | median ms | p99 ms |",
        "|---|---|---|---|---|",
        f"| sqlite file, direct | {local_rate['per_s']:.0f} | {local_rate['per_s_median']:.0f} | "
        f"{local_rate['median_ms']:.1f} | {local_rate['p99_ms']:.1f} |",
    ]
    if server_rate:
        lines.append(f"| {server_note} | {server_rate['per_s']:.0f} | {server_rate['per_s_median']:.0f} | "
                     f"{server_rate['median_ms']:.1f} | {server_rate['p99_ms']:.1f} |")
    else:
        lines.append(f"| mlflow server | {server_note} | | | |")
    lines += [
        "",
        "| runs already in the experiment | open a trial's run, sqlite direct (median / max of 10, ms) |"
        + (" through the server (ms) |" if server_open else ""),
        "|---|---|" + ("---|" if server_open else ""),
    ]
    server_by = {row[0]: row for row in (server_open or [])}
    for row in local_open:
        extra = ""
        if server_open:
            s = server_by.get(row[0])
            extra = f" {s[1]:.0f} / {s[2]:.0f} |" if s else " not measured |"
        lines.append(f"| {row[0]} | {row[1]:.0f} / {row[2]:.0f} |{extra}")
    lines += [
        "",
        "## 4. Storage",
        "",
        f"One xsweep checkpoint (`save_checkpoint`: weights + SGD momentum + bookkeeping) of the paper-size "
        f"Xception (width 1, 8 middle blocks, 1000 classes, {ckpt['params'] / 1e6:.1f} M parameters): "
        f"**{mib(ckpt['bytes'])}**. xsweep checkpoints every epoch and keeps the 2 best by its metric and the "
        f"latest per trial (`num_to_keep=2`; Tune never deletes the latest), and uploads each new best to "
        f"MLflow as an artifact.",
        "",
        "| sweep | checkpoint bytes written (every epoch) | kept at the end (<= 3 per trial) |",
        "|---|---|---|",
    ]
    for trials, epochs in ((1000, 10), (10000, 10), (10000, 100)):
        lines.append(f"| {trials} trials x {epochs} epochs (no early stopping) | "
                     f"{trials * epochs * ckpt['bytes'] / 2**40:.2f} TiB | "
                     f"{KEPT_PER_TRIAL * trials * ckpt['bytes'] / 2**40:.2f} TiB |")
    lines += ["", "Raw numbers of the Tune run: "
              + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in t.items()
                            if k not in ("suggest_ms", "start_rate_tenths", "load_during")}), ""]
    write_results(RESULTS, lines)


if __name__ == "__main__":
    main()
