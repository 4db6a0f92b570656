"""Ray Tune driver on a simulated cluster: trials started per second, driver CPU per trial and peak memory,
for N sleeping trials through stock Ray Tune and through xsweep's searcher and tracking, alternated over rounds.

The cluster is ray.cluster_utils.Cluster with several Ray nodes on this machine, all on 127.0.0.1, each
carrying a custom "fake_gpu" resource; one trial takes one fake_gpu.

    .venv/bin/python benchmarks/scale/tune_rate.py [--trials 1000] [--concurrency 16] [--nodes 8] [--quick]
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the package from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale import common  # noqa: E402

QUICK = {"trials": 6, "rounds": 1, "nodes": 2, "gpus_per_node": 2, "concurrency": 2, "reports": 2,
         "sleep": 0.05, "time_budget": 60, "quiet_window": 0.2, "quiet_longest": 0, "sample_every": 0.25,
         "probe_loops": 100_000}

SYSTEMS = {
    "stock": "stock Ray Tune: OptunaSearch (Optuna TPE), no tracking, Tune's default result loggers",
    "xsweep": "xsweep: its searcher (TPE, deduplication, a run per trial), MLflow tracking to sqlite, and Tune's "
              "result loggers as a sweep has them (CSV and JSON, not TensorBoard: sweep/driver.py)",
}


def add_arguments(parser) -> None:
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
    parser.add_argument("--time-budget", type=float, default=480,
                        help="stop each Tune run after this many seconds (trials started by then are reported)")
    parser.add_argument("--systems", default="stock,xsweep", type=lambda text: text.split(","),
                        help=f"which of {', '.join(SYSTEMS)} to run through Tune, in this order")
    parser.add_argument("--quiet-window", type=float, default=3,
                        help="seconds over which the machine's CPU is read before each run")
    parser.add_argument("--quiet-longest", type=float, default=180,
                        help="longest wait for a quiet CPU (busy below 25 %%) before each run")
    parser.add_argument("--probe-loops", type=int, default=1_000_000,
                        help="steps of the pure-Python loop that probes one core's speed before and after each run")
    parser.add_argument("--sample-every", type=float, default=2.0,
                        help="seconds between samples of the driver's memory and the load during `fit`")


# ---------------------------------------------------------------------------------------------
# The sleeping trainable and the searchers that time their own suggestions


def sleeper(config):
    """A trial: a few reports, each after sleeping; the score depends on the config so TPE has a signal."""
    from ray import tune

    from xsweep.contract import TrialReport

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


# Driver side; module globals survive Tune copying the searcher.
SUGGEST_SECONDS: list[float] = []  # each suggest that made a trial
WAITED_SECONDS: list[float] = []  # each suggest that said "not yet": its trial's run was not made yet


class TimedSuggest:
    """Mixed into a searcher: records how long each suggest() takes (apart: those that said "not
    yet", search/searcher.py) and adds the sleeping trainable's settings to each config."""

    bench_settings: dict = {}

    def suggest(self, trial_id):
        t0 = time.perf_counter()
        config = super().suggest(trial_id)
        (WAITED_SECONDS if config is None else SUGGEST_SECONDS).append(time.perf_counter() - t0)
        if isinstance(config, dict):
            config = dict(config, **self.bench_settings)
        return config


_TIMED: dict[str, type] = {}


def timed_class(base: type) -> type:
    """TimedSuggest over `base`, one class per base (made here, after the loopback setup, since the
    bases come from ray.tune)."""
    if base.__name__ not in _TIMED:
        _TIMED[base.__name__] = type(f"Timed{base.__name__}", (TimedSuggest, base), {"__module__": __name__})
    return _TIMED[base.__name__]


def make_searcher(spec, open_run, reports, sleep):
    """xsweep's searcher (TPE + opening the run), timed."""
    from xsweep.search.searcher import build_searcher

    searcher = build_searcher(spec, open_run=open_run)
    searcher.__class__ = timed_class(type(searcher))
    TimedSuggest.bench_settings = {"xsweep_bench/reports": reports, "xsweep_bench/sleep": sleep}
    return searcher


def make_stock_searcher(spec, reports, sleep):
    """What a Ray Tune user writes: OptunaSearch with Optuna's TPE (its defaults, seed 0), no tracking."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from xsweep.search.searcher import optuna_space

    TimedSuggest.bench_settings = {"xsweep_bench/reports": reports, "xsweep_bench/sleep": sleep}
    return timed_class(OptunaSearch)(space=optuna_space(spec), metric="val_accuracy", mode="max",
                                     sampler=optuna.samplers.TPESampler(seed=0))


# ---------------------------------------------------------------------------------------------
# The simulated cluster and the Tune runs


def measure(args, work: Path) -> dict:
    """Both systems, alternated over rounds, on one simulated cluster:
    {"cluster": ..., "rounds": [...], system: its best round's results}."""
    import ray
    from ray.cluster_utils import Cluster

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    out: dict = {"cluster": {"nodes": args.nodes, "gpus_per_node": args.gpus_per_node}}
    # Every node's session (logs, sockets) in the work folder, which the caller removes.
    node_args = {"num_cpus": 1, "node_ip_address": common.LOOPBACK, "temp_dir": str(work / "ray"),
                 "resources": {"fake_gpu": args.gpus_per_node}}
    t0 = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.WARNING)
        out["cluster"]["cluster_start_s"] = time.time() - t0
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        addresses = sorted({n["NodeManagerAddress"] for n in nodes})
        if addresses != [common.LOOPBACK]:
            raise SystemExit(f"refusing to go on: nodes came up on {addresses}, not {common.LOOPBACK} only")
        out["cluster"]["alive_nodes"] = len(nodes)
        out["cluster"]["fake_gpus"] = sum(n["Resources"].get("fake_gpu", 0) for n in nodes)
        # A run's rate on a shared machine varies between runs with nothing changed: the systems
        # alternate over rounds, every round is reported, and each system is compared by its best round.
        out["rounds"] = []
        for round_number in range(1, args.rounds + 1):
            for system in args.systems:
                waited, busy = common.wait_until_quiet(longest_s=args.quiet_longest, window_s=args.quiet_window)
                probe_before = common.cpu_probe_ms(args.probe_loops)
                print(f"  round {round_number}: {SYSTEMS[system]} (after {waited:.0f} s for a quiet CPU, "
                      f"{busy:.0%} busy, CPU probe {probe_before:.0f} ms) ...", flush=True)
                times_before = common.cpu_times()
                result = tune_once(args, work, system, name=f"{system}-{round_number}")
                result["steal_share"] = common.steal_share(times_before, common.cpu_times())
                result["quiet_wait_s"], result["busy_at_start"] = waited, busy
                result["cpu_probe_ms"] = (probe_before, common.cpu_probe_ms(args.probe_loops))  # before, and right after `fit`
                print("  " + json.dumps({k: v for k, v in result.items()
                                         if k not in ("suggest_ms", "waited_ms", "load_during", "start_rate_tenths")}), flush=True)
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

    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.runs import release_reserved_runs, start_sweep
    from xsweep.tracking.writer import shared_writer

    out: dict = {}
    SUGGEST_SECONDS.clear()
    WAITED_SECONDS.clear()
    spec = common.load_space_spec(trials=args.trials, concurrency=args.concurrency, reports=args.reports)
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
    rss_before = common.rss_mib()
    samples: list[tuple[float, float, int, float]] = []  # (time, driver RSS MiB, trials suggested, load 1 min)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(args.sample_every):
            samples.append((time.time(), common.rss_mib(), len(SUGGEST_SECONDS), os.getloadavg()[0]))

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
    out["driver_rss_after_mib"] = common.rss_mib()
    out["driver_maxrss_mib"] = common.maxrss_mib()
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
    out["waited_ms"] = [1000 * s for s in WAITED_SECONDS]
    # Tune's own state files in the run's folder: what it rewrites on every experiment checkpoint.
    out["state_files"] = {path.name: path.stat().st_size for path in (work / "tune" / name).glob("*")
                          if path.is_file()}
    return out


# ---------------------------------------------------------------------------------------------
# The section


def comparison(args, stock: dict, ours: dict, rounds: list[dict]) -> list[str]:
    """The two systems side by side, with the targets of issue #15, and every round."""
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
        ("tracking writer process CPU per trial, tracking flushed (ms): a process beside the driver", "none",
         f"{cpu_ms(ours, 'writer_cpu_with_flush_s'):.0f}", None, ""),
        ("driver + writer CPU per trial, tracking flushed (ms)",
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
    return [
        f"Both systems in this one run, alternated ({', '.join(args.systems)}) over {args.rounds} round(s), on the "
        f"same simulated cluster, the same sleeping trainable and space, {args.trials} trials, {args.concurrency} at "
        "a time. Each system is compared by its best round by trials started per second (stock's was round "
        f"{stock.get('round', 1)}, xsweep's round {ours.get('round', 1)}).",
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
        f"Before each round the run waits (at most {args.quiet_longest:.0f} s) until the machine's CPU, read over "
        f"{args.quiet_window:g} s, is less than 25 % busy. The CPU probe is one core's speed: the fastest of 5 runs "
        f"of a fixed pure-Python loop of {args.probe_loops:,} steps, taken on the settled machine before the round and again right after `fit` "
        "returns. Steal is the share of the machine's CPU time over the round that the hypervisor gave to other "
        "guests (/proc/stat).",
        "",
    ]


def detail(args, tune_out: dict) -> list[str]:
    """xsweep's best round in detail."""
    from xsweep.tracking.runs import runs_ahead

    t = {**tune_out["cluster"], **tune_out["xsweep"]}
    suggest = t["suggest_ms"]
    n = t["trials_ok"]
    per_trial_cpu_ms = 1000 * t["driver_cpu_s"] / max(n, 1)
    state = t["state_files"]
    exp_state = sum(v for k, v in state.items() if k.startswith("experiment_state"))
    searcher_state = sum(v for k, v in state.items() if k.startswith("searcher-state"))
    load = t["load_during"]
    nan = float("nan")
    return [
        "The xsweep run in detail (its best round):",
        "",
        f"`ray.cluster_utils.Cluster`: {t['alive_nodes']} Ray nodes on this machine ({os.cpu_count()} cores), "
        f"every one on {common.LOOPBACK} (checked from `ray.nodes()`), {args.gpus_per_node} custom `fake_gpu` per "
        f"node ({t['fake_gpus']:g} in all), 1 CPU each, token authentication with a token generated for this run. "
        f"Each trial asks for `{{cpu: 0, fake_gpu: 1}}` and sleeps {args.sleep} s before each of {args.reports} "
        f"reports ({t['trial_s']:.1f} s per trial). Searcher: xsweep's own (`build_searcher`: Optuna TPE behind "
        f"Ray's OptunaSearch, seed 0) over lr loguniform x residual x activation; FIFO scheduler; "
        f"{args.concurrency} trials at a time (`max_concurrent_trials`), each running trial a Ray worker process "
        f"on this machine; `reuse_actors={args.reuse_actors}`; MLflow tracking to a sqlite store, as a sweep has "
        f"(its write rates are in section 3), with {runs_ahead(trials=args.trials, concurrent=args.concurrency)} "
        "trial runs reserved ahead (`tracking/runs.py` runs_ahead); each Tune run stops at "
        f"{args.time_budget:.0f} s (`time_budget_s`).",
        "",
        (f"The run hit its time budget: {n} of {args.trials} trials started, {t['trials_finished']} finished."
         if t["time_budget_hit"] else f"All {n} trials started, {t['trials_finished']} finished."),
        "",
        "| measure | measured |",
        "|---|---|",
        f"| cluster start ({t['alive_nodes']} nodes) | {t['cluster_start_s']:.1f} s |",
        f"| trials started / finished / errors | {n} / {t['trials_finished']} / {t['errors']} |",
        f"| `tuner.fit` wall time | {t['fit_wall_s']:.1f} s (ideal at {args.concurrency} slots: "
        f"{math.ceil(args.trials / args.concurrency) * t['trial_s']:.1f} s) |",
        f"| first trial started after `fit` was called | {t['first_start_after_fit_s']:.1f} s |",
        f"| trials started per second, whole run | {t['start_rate']:.2f} /s (ideal {t['ideal_rate']:.1f} /s = "
        f"slots / trial time) |",
        f"| trials started per second, middle 80 % of starts | {t['start_rate_mid']:.2f} /s |",
        f"| trials started per second, by tenth of the run | "
        f"{', '.join(f'{r:.1f}' for r in t['start_rate_tenths'])} |",
        f"| completed trials per second | {t['throughput']:.2f} /s |",
        f"| driver CPU time during `fit` | {t['driver_cpu_s']:.1f} s = {per_trial_cpu_ms:.0f} ms per trial "
        f"({per_trial_cpu_ms / args.reports:.0f} ms per reported result) |",
        f"| `searcher.suggest` (xsweep SweepSearcher -> OptunaSearch -> TPE), median / p90 / max, "
        f"{len(suggest)} calls | {statistics.median(suggest):.1f} / {common.quantile(suggest, 0.9):.1f} / "
        f"{max(suggest):.1f} ms |",
        f"| `searcher.suggest` calls that said \"not yet\" (the trial's run not made yet) | {len(t['waited_ms'])}, "
        f"{sum(t['waited_ms']) / 1000:.1f} s in all |",
        f"| `suggest`, first 100 vs last 100 trials (median) | {statistics.median(suggest[:100]):.1f} ms vs "
        f"{statistics.median(suggest[-100:]):.1f} ms |",
        f"| driver peak memory (`getrusage` ru_maxrss) | {t['driver_maxrss_mib']:.0f} MiB (RSS before `fit` "
        f"{t['driver_rss_before_mib']:.0f} MiB, after {t['driver_rss_after_mib']:.0f} MiB) |",
        (f"| driver RSS growth per trial after the first quarter (RSS {t['rss_window'][2]:.0f} MiB at trial "
         f"{t['rss_window'][0]}, {t['rss_window'][3]:.0f} MiB at trial {t['rss_window'][1]}) | "
         f"{t['rss_kib_per_trial']:.0f} KiB per trial (x 10,000 = {t['rss_kib_per_trial'] * 10000 / 2**20:.1f} GiB) |"
         if "rss_kib_per_trial" in t else
         "| driver RSS growth per trial after the first quarter | not measured: fewer than 2 samples past 20 trials |"),
        f"| load average (1 min) sampled every {args.sample_every:g} s during `fit` ({len(load)} samples): "
        f"min / median / max | {min(load, default=nan):.1f} / {statistics.median(load) if load else nan:.1f} / "
        f"{max(load, default=nan):.1f} |",
        f"| Tune experiment state file(s) after {n} trials | {common.mib(exp_state)} ({exp_state:,} bytes) |",
        f"| searcher state (pickled Optuna study, rewritten with every experiment checkpoint) | "
        f"{common.mib(searcher_state)} ({searcher_state:,} bytes) |",
        "",
        "Raw numbers of the run: "
        + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in t.items()
                      if k not in ("suggest_ms", "waited_ms", "start_rate_tenths", "load_during")}),
        "",
    ]


def section(args, tune_out: dict) -> list[str]:
    lines = ["## 1. Ray Tune driver on a simulated cluster", ""]
    if "stock" in tune_out and "xsweep" in tune_out:
        lines += comparison(args, tune_out["stock"], tune_out["xsweep"], tune_out["rounds"])
    if "xsweep" in tune_out:
        lines += detail(args, tune_out)
    else:
        lines += [f"Only {', '.join(args.systems)} ran (--systems): no xsweep run to detail.", ""]
    return lines


if __name__ == "__main__":
    common.run_alone(sys.modules[__name__])
