"""xsweep.search.tpe_window: past its window, TPE sees the best trials and the recent ones, not all
(real Optuna studies)."""

from __future__ import annotations

import math
import random

import optuna

from xsweep.search.tpe_window import WindowedTPESampler, _Window

SPACE = {"train.lr": optuna.distributions.FloatDistribution(0.005, 0.3, log=True),
         "model.residual": optuna.distributions.CategoricalDistribution([True, False])}


def _study(n: int, sampler=None) -> optuna.Study:
    rng = random.Random(0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trials = []
    for _ in range(n):
        params = {"train.lr": math.exp(rng.uniform(math.log(0.005), math.log(0.3))),
                  "model.residual": rng.choice([True, False])}
        value = 0.97 - 0.08 * (math.log10(params["train.lr"]) + 1.3) ** 2 - 0.02 * (not params["model.residual"])
        trials.append(optuna.trial.create_trial(params=params, distributions=SPACE, value=value))
    study.add_trials(trials)
    return study


def test_past_the_window_the_sampler_sees_the_best_and_the_most_recent_trials():
    study = _study(300)
    running = study.ask(fixed_distributions=SPACE)
    seen = _Window(study, 100)._get_trials(deepcopy=False)
    finished = [t for t in seen if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 100 and running.number in {t.number for t in seen}  # the constant liar's trial too
    best = sorted(study.trials[:300], key=lambda t: -t.value)[:25]
    assert {t.number for t in best} <= {t.number for t in finished}  # TPE's good density is fitted to these
    recent = {t.number for t in finished} - {t.number for t in best}
    assert max(recent) == 299 and len(recent) == 75
    assert len(_Window(study, 1000)._get_trials(deepcopy=False)) == 301  # below the window: everything


def test_a_windowed_tpe_still_finds_the_good_region():
    study = _study(1500, sampler=WindowedTPESampler(seed=0, multivariate=True, window=500))
    proposals = [study.ask(fixed_distributions=SPACE) for _ in range(10)]
    lrs = sorted(t.params["train.lr"] for t in proposals)
    assert 0.02 < lrs[5] < 0.12  # the optimum is at 0.05
    assert sum(t.params["model.residual"] for t in proposals) >= 7


def test_the_window_moves_on_as_trials_finish():
    """The window is remembered between reads of one suggestion, never past a trial's end."""
    sampler = WindowedTPESampler(seed=0, window=100)
    study = _study(300, sampler=sampler)
    before = {t.number for t in sampler._windowed(study)._get_trials(deepcopy=False)}
    trial = study.ask(fixed_distributions=SPACE)
    study.tell(trial, 0.5)
    after = {t.number for t in sampler._windowed(study)._get_trials(deepcopy=False)}
    assert len(before) == len(after) == 100
    assert trial.number in after and trial.number not in before
