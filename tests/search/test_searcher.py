"""The searcher as Tune drives it: each configuration runs once, early stops are told to Optuna as
pruned, diverged trials as failed (real Optuna, Ray's OptunaSearch; no Ray runtime needed)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import optuna
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from xsweep.contract import TrialReport
from xsweep.search.schedulers import build_trial_scheduler
from xsweep.search.searcher import build_searcher
from xsweep.spec import load_spec_text

SPEC = """
name: search-test
train: {{epochs: 4}}
search:
  algorithm: {algorithm}
  num_samples: 50
  space:
{space}
scheduler: {{kind: asha}}
"""
DISCRETE = """    model.residual: {choice: [true, false]}
    model.activation: {choice: [none, relu, elu]}"""


def _searcher(space: str = DISCRETE, algorithm: str = "optuna-tpe"):
    spec = load_spec_text(SPEC.format(space=space, algorithm=algorithm), source="spec.yaml")
    return build_searcher(spec, open_run=lambda trial_id, config: f"run-{trial_id}")


def _study(searcher) -> optuna.Study:
    return searcher.inner._ot_study


def _finish(searcher, trial_id: str, *, accuracy: float, epoch: int = 4, planned: int = 4,
            diverged: bool = False) -> None:
    result = TrialReport(epoch=epoch, metrics={"val_accuracy": accuracy}, diverged=diverged,
                         planned_epochs=planned).to_result() | {"training_iteration": epoch}
    searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=result)


def _sampled(config: dict) -> tuple:
    return config["model.residual"], config["model.activation"]


def _run_until_finished(searcher, accuracy_of, *, trials: int) -> list[tuple]:
    """Suggest and finish one trial at a time, as Tune would; the configurations that ran."""
    seen = []
    for i in range(trials):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        seen.append(_sampled(config))
        _finish(searcher, f"t{i}", accuracy=accuracy_of(config))
    return seen


def test_each_configuration_of_a_discrete_space_runs_once_then_the_search_ends():
    searcher = _searcher()
    # Good results for one configuration pull TPE back to it: the repeats it proposes are refused.
    seen = _run_until_finished(searcher, lambda config: 0.9 if config["model.activation"] == "relu" else 0.1,
                               trials=20)
    assert len(seen) == len(set(seen)) == 6
    duplicates = [t for t in _study(searcher).trials if "duplicate_of" in t.user_attrs]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in duplicates)


def test_random_search_also_runs_each_configuration_once():
    configs = _run_until_finished(_searcher(algorithm="random"), lambda config: 0.5, trials=10)
    assert sorted(configs) == sorted({(r, a) for r in (True, False) for a in ("none", "relu", "elu")})


def test_optuna_is_told_what_each_trial_really_did():
    searcher = _searcher()
    for trial_id in ("done", "stopped", "diverged"):
        searcher.suggest(trial_id)
    _finish(searcher, "done", accuracy=0.8)
    _finish(searcher, "stopped", accuracy=0.3, epoch=1)  # ASHA stopped it after 1 of 4 epochs
    _finish(searcher, "diverged", accuracy=float("nan"), epoch=2, diverged=True)
    ran = [t for t in _study(searcher).trials if "duplicate_of" not in t.user_attrs]
    assert [t.state for t in ran] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                      optuna.trial.TrialState.FAIL]
    assert ran[1].intermediate_values == {1: 0.3}  # what TPE ranks a pruned trial by


def test_a_configuration_waits_for_its_run_and_goes_to_the_next_trial_tune_asks_for():
    # The tracking server is away: no run is made for the first two asks, so suggest says "not yet"
    # (None) and Tune goes on with its loop; its next ask, under a new trial id, gets the same
    # configuration with the run, and Optuna hears of it under the id it drew it for.
    runs = iter([None, None, "run-made"])
    spec = load_spec_text(SPEC.format(space=DISCRETE, algorithm="optuna-tpe"), source="spec.yaml")
    searcher = build_searcher(spec, open_run=lambda trial_id, config: next(runs))
    assert searcher.suggest("t0") is None and searcher.suggest("t1") is None
    config = searcher.suggest("t2")
    assert config["xsweep/run_id"] == "run-made"
    assert len(_study(searcher).trials) == 1  # drawn once, not once per ask
    _finish(searcher, "t2", accuracy=0.7, epoch=1)
    (trial,) = _study(searcher).trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values == {1: 0.7}
    assert _sampled(trial.params) == _sampled(config)


def test_a_continuous_space_never_runs_out():
    searcher = _searcher(space="    train.lr: {loguniform: [0.001, 0.1]}")
    lrs = set()
    for i in range(30):
        config = searcher.suggest(f"t{i}")
        lrs.add(config["train.lr"])
        _finish(searcher, f"t{i}", accuracy=0.5)
    assert len(lrs) == 30


def test_asha_lets_a_trial_run_the_epochs_the_space_gives_it():
    # train.epochs is searched beyond its fixed value (10): ASHA's max_t must be the space's top.
    spec = load_spec_text("name: t\nsearch: {space: {train.epochs: {int: [12, 30]}}}\nscheduler: {kind: asha}",
                          source="spec.yaml")
    scheduler = build_trial_scheduler(spec)
    scheduler.set_search_properties("val_accuracy", "max")
    trial = SimpleNamespace(trial_id="t0")
    scheduler.on_trial_add(None, trial)
    decisions = [scheduler.on_trial_result(None, trial, {"training_iteration": epoch, "val_accuracy": 0.5})
                 for epoch in range(1, 31)]
    assert TrialScheduler.STOP not in decisions[:-1] and decisions[-1] == TrialScheduler.STOP


def test_a_trial_that_ran_its_own_searched_epochs_is_complete_not_pruned():
    searcher = _searcher(space="    train.epochs: {choice: [2, 6]}")
    epochs = {trial_id: searcher.suggest(trial_id)["train.epochs"] for trial_id in ("a", "b")}
    for trial_id, planned in epochs.items():
        _finish(searcher, trial_id, accuracy=0.5, epoch=planned, planned=planned)
    ran = [t for t in _study(searcher).trials if "duplicate_of" not in t.user_attrs]
    assert [t.state for t in ran] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(t.params["train.epochs"] for t in ran) == [2, 6]


def test_a_grid_trial_that_diverges_while_the_rest_of_the_grid_runs_is_told_as_failed():
    """Optuna's GridSampler stops the study once no grid point is left unvisited, and Study.stop
    raises outside Optuna's own optimize loop: a grid sweep whose whole grid was running when one
    trial diverged lost that trial's outcome (seen in CI, the diverging-trial end-to-end test)."""
    spec = load_spec_text("name: grid-test\ntrain: {epochs: 4}\nsearch: {algorithm: grid, num_samples: 2, "
                          "max_concurrent: 2, space: {train.lr: {choice: [0.05, 1000.0]}}}\n", source="spec.yaml")
    searcher = build_searcher(spec, open_run=lambda trial_id, config: f"run-{trial_id}")
    by_lr = {searcher.suggest(t)["train.lr"]: t for t in ("a", "b")}  # both grid points running
    _finish(searcher, by_lr[1000.0], accuracy=float("nan"), epoch=1, diverged=True)
    _finish(searcher, by_lr[0.05], accuracy=0.8)
    states = {t.params["train.lr"]: t.state for t in _study(searcher).trials}
    assert states == {0.05: optuna.trial.TrialState.COMPLETE, 1000.0: optuna.trial.TrialState.FAIL}
    assert searcher.suggest("c") == Searcher.FINISHED
    assert pickle.loads(pickle.dumps(searcher.inner)).suggest("d") == Searcher.FINISHED  # `xsweep resume`
