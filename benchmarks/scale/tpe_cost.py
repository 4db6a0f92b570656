"""Optuna TPE suggestion latency with N finished trials in the sleeping trials' space, with xsweep's sampler.

    .venv/bin/python benchmarks/scale/tpe_cost.py [--tpe-sizes 10,100,1000,3000,10000] [--quick]
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the package from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale import common  # noqa: E402

QUICK = {"tpe_sizes": "10,100", "tpe_asks": 3}
SWEEP_TRIALS = 10000  # the sweep size the summed cost is given for


def add_arguments(parser) -> None:
    parser.add_argument("--tpe-sizes", default="10,100,1000,3000,10000", help="finished trials to time TPE at")
    parser.add_argument("--tpe-asks", type=int, default=7, help="suggestions timed at each size (the median is reported)")


def measure(args, work: Path) -> list[tuple[int, float, float, float]]:
    """(finished trials, median, min, max ms per `study.ask`) per size."""
    import optuna

    from xsweep.search.algorithms import ALGORITHMS, distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = common.load_space_spec(trials=10, concurrency=1, reports=3)
    space = {path: distribution(entry.kind, low=entry.low, high=entry.high, values=entry.values or ())
             for path, entry in spec.search.space.items()}
    sampler = ALGORITHMS.get(spec.search.algorithm).sampler
    rng = random.Random(0)
    rows = []
    for n in [int(x) for x in args.tpe_sizes.split(",")]:
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
        for _ in range(args.tpe_asks):
            t0 = time.perf_counter()
            trial = study.ask(fixed_distributions=space)  # what OptunaSearch.suggest calls
            times.append(time.perf_counter() - t0)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # not counted as finished by TPE
        rows.append((n, 1000 * statistics.median(times), 1000 * min(times), 1000 * max(times)))
        print(f"  TPE with {n} finished trials: median {rows[-1][1]:.1f} ms per suggestion", flush=True)
    return rows


def summed(rows) -> dict:
    """TPE's cost summed over a SWEEP_TRIALS-trial sweep, from a line through the two largest sizes
    measured (flat when one size was), floored at the smallest measurement."""
    by_n = {row[0]: row[1] for row in rows}
    (n_a, c_a), (n_b, c_b) = (sorted(by_n.items()) * 2)[-2:]
    slope = (c_b - c_a) / (n_b - n_a) if n_b != n_a else 0.0

    def ms(k: int) -> float:
        return max(min(by_n.values()), c_b + slope * (k - n_b))

    return {"from": (n_a, n_b), "total_s": sum(ms(k) for k in range(SWEEP_TRIALS)) / 1000,
            "last_ms": by_n.get(SWEEP_TRIALS, ms(SWEEP_TRIALS)), "last_measured": SWEEP_TRIALS in by_n}


def section(args, rows) -> list[str]:
    total = summed(rows)
    return [
        "## 2. Optuna TPE suggestion latency",
        "",
        "`study.ask(fixed_distributions=space)` (what Ray's OptunaSearch.suggest calls) on an in-memory study "
        "(as OptunaSearch keeps it) holding N completed trials of the same 3-parameter space, with xsweep's "
        "sampler (multivariate TPE, modelling a window of 1,000 trials past 1,000: "
        f"`platform/xsweep/search/tpe_window.py`); median of {args.tpe_asks} asks, each told FAIL afterwards. "
        "Measured before the simulated cluster of section 1 starts.",
        "",
        "| finished trials | median ms / suggestion | min | max |",
        "|---|---|---|---|",
        *[f"| {row[0]} | {row[1]:.1f} | {row[2]:.1f} | {row[3]:.1f} |" for row in rows],
        "",
        f"Summed over a {SWEEP_TRIALS:,}-trial sweep, from a line through the two largest sizes measured "
        f"({total['from'][0]} and {total['from'][1]}), floored at the smallest measurement:",
        "",
        "| estimate | value |",
        "|---|---|",
        f"| driver time suggesting every trial of a {SWEEP_TRIALS:,}-trial sweep | {total['total_s'] / 60:.1f} min |",
        f"| one suggestion at {SWEEP_TRIALS:,} finished trials "
        f"({'measured' if total['last_measured'] else 'from the line'}) | {total['last_ms']:.1f} ms |",
        "",
    ]


if __name__ == "__main__":
    common.run_alone(sys.modules[__name__])
