"""Sweeps made by hand, as the report reads them from MLflow: for tests of the report's analysis."""

from __future__ import annotations

import numpy as np

from xsweep.report.data import SweepData, TrialRun


def trial(i, *, res, act, lr, seed, acc, status="completed", device_seconds=None):
    history = {"val_accuracy": [(1, acc / 2), (2, acc)], "train_loss": [(1, 2.0), (2, 1.0 - acc / 2)]}
    return TrialRun(run_id=f"run{i}", name=f"t{i}", status=status, seed=seed,
                    searched={"model.residual": res, "model.activation": act, "train.lr": lr},
                    config={"train": {"seed": seed, "lr": lr}}, history=history,
                    latest={} if device_seconds is None else {"device_seconds": device_seconds})


def sweep(trials, *, algorithm="grid", lr_entry='{"choice": [0.01, 0.1]}'):
    params = {"search.algorithm": algorithm, "search.repeats": "2", "train.epochs": "2",
              "search.metric": "val_accuracy", "search.mode": "max",
              "search.space.model.residual": '{"choice": [true, false]}',
              "search.space.model.activation": '{"choice": ["none", "relu"]}'}
    if lr_entry:
        params["search.space.train.lr"] = lr_entry
    return SweepData(uri="sqlite:////nowhere/mlflow.db", experiment="x", experiment_id="1", run_id="sweep0",
                     run_name="x-1", status="finished", params=params, tags={}, trials=trials)


def grid():
    rng = np.random.default_rng(0)
    trials = []
    for res in (True, False):
        for act in ("none", "relu"):
            for lr in (0.01, 0.1):
                for seed in (0, 1):
                    acc = 0.6 + 0.2 * res + 0.05 * (act == "none") + rng.normal(0, 0.02)
                    trials.append(trial(len(trials), res=res, act=act, lr=lr, seed=seed, acc=acc))
    return trials
