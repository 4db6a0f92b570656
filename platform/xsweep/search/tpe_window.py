"""TPE whose cost per suggestion stops growing with the study: it models a window of the history.

Optuna's TPE fits its two densities to every finished trial at each suggestion, so a suggestion
costs time in proportion to the study: 163 ms at 10,000 trials (docs/SCALING.md), on Tune's event
loop. Past WINDOW finished trials, this sampler shows TPE the best WINDOW // 4 of them (by the
first objective) and the most recent others, plus the running ones (the constant liar's).

What it costs in search quality: TPE's density of good configurations, l(x), is fitted to the best
min(10 %, 25) trials (Optuna's default gamma), which the window always holds, so l(x) does not
change; the density of the others, g(x), is fitted to a sample of them instead of all, and trials
that fall out of the window are dropped rather than down-weighted (Optuna's default weights already
ramp old trials down). Below WINDOW finished trials nothing changes at all.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

WINDOW = 1000
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class _Window:
    """The study as the sampler sees it: every attribute is the study's, but its trials are windowed."""

    def __init__(self, study: optuna.Study, window: int, memo: dict | None = None) -> None:
        self._study, self._window = study, window
        # The trials kept, remembered for as long as the same trials are finished: one suggestion
        # reads the study's trials several times, and sorting 10,000 of them each time would cost
        # what the window saves. Finished trials stay finished, so their count names the set.
        self._memo = {} if memo is None else memo

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False):
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        finished = [t for t in trials if t.state in _FINISHED]
        if len(finished) <= self._window:
            return trials
        key = (id(self._study._storage), self._study._study_id, len(finished))
        if key not in self._memo:
            self._memo.clear()
            self._memo[key] = self._kept(finished)
        kept = self._memo[key]
        return [t for t in trials if t.number in kept or t.state not in _FINISHED]

    def _kept(self, finished: list) -> set[int]:
        keep_best = self._window // 4
        sign = -1.0 if self._study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        scored = [t for t in finished if t.state == TrialState.COMPLETE and t.values]
        best = sorted(scored, key=lambda t: sign * t.values[0])[:keep_best]
        kept = {t.number for t in best}
        for trial in reversed(finished):
            if len(kept) >= self._window:
                break
            kept.add(trial.number)
        return kept


class WindowedTPESampler(optuna.samplers.TPESampler):
    """optuna.samplers.TPESampler over a window of the history (see the module docstring)."""

    def __init__(self, *, window: int = WINDOW, **kwargs) -> None:
        super().__init__(**kwargs)
        self._window = window
        self._memo: dict = {}

    def _windowed(self, study) -> _Window:
        if not hasattr(self, "_memo"):  # a sampler pickled before the memo existed (xsweep resume)
            self._memo = {}
        return _Window(study, self._window, self._memo)

    def sample_relative(self, study, trial, search_space):
        return super().sample_relative(self._windowed(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return super().sample_independent(self._windowed(study), trial, param_name, param_distribution)
