"""The search algorithms a spec's `search.algorithm` may name: one registry entry each.

Every algorithm is an Optuna sampler under one searcher (searcher.py), so that repeats, the MLflow
run per trial, deduplication and `xsweep resume` work the same whichever one a sweep uses. An
entry says how to build its sampler from the spec, which `search.*` fields beyond the common ones
(algorithm, num_samples, max_concurrent, metric, mode, objectives, space, repeats) it reads,
whether it needs every space entry to be a `choice` (a grid) and whether it can search several
objectives at once. Optuna is imported inside the builders: the spec
checker reads this table and must stay instant.

Adding an algorithm is one `ALGORITHMS.add(SearchAlgorithm(...))` plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xsweep.registry import Registry

if TYPE_CHECKING:
    import optuna

    from xsweep.spec import Spec


@dataclass(frozen=True)
class SearchAlgorithm:
    name: str
    sampler: Callable[[Spec], optuna.samplers.BaseSampler]
    fields: tuple[str, ...] = ()  # search.* fields it reads beyond the common ones
    choices_only: bool = False  # every space entry must be a choice, and num_samples is the grid's size
    # It models ranges (learning rate, weight decay): a space of choices alone leaves it nothing to do.
    needs_a_range: bool = False
    multi_objective: bool = True  # it can search several objectives (search.objectives) for their front
    # The values of its fields a spec leaves out (None): (its fields' values, the sweep's shape) ->
    # {field: value}. The shape: `epochs` (what trials may run), `objective`, `num_samples`.
    defaults: Callable[..., dict] = lambda values, **shape: {}


def _tpe(spec: Spec):
    """Optuna's TPE, multivariate (it models how the searched fields act together, where the
    independent TPE models each alone), with the constant liar when trials run in parallel: a
    running trial counts as a bad result, so that parallel suggestions do not pile onto one point.
    The same sampler drives several objectives (Optuna's MOTPE). Past 1,000 finished trials it
    models a window of them, so that a suggestion's cost stops growing (tpe_window.py)."""
    from xsweep.search.tpe_window import WindowedTPESampler

    return WindowedTPESampler(seed=spec.search.seed, multivariate=True, constant_liar=spec.search.max_concurrent > 1)


def _random(spec: Spec):
    import optuna

    return optuna.samplers.RandomSampler(seed=spec.search.seed)


def _grid(spec: Spec):
    from xsweep.search.grid import TuneGridSampler

    grid = {path: list(entry.values) for path, entry in spec.search.space.items()}
    return TuneGridSampler(grid, seed=spec.search.seed)


def _gp(spec: Spec):
    """Optuna's Gaussian-process sampler: few trials, small spaces of ranges (a learning rate, a
    weight decay). It imports torch, in the driver, when a sweep uses it."""
    import optuna

    return optuna.samplers.GPSampler(seed=spec.search.seed)


def _cmaes(spec: Spec):
    """CMA-ES over the ranges of the space; choice entries are drawn at random beside it (quietly:
    Optuna would warn for every trial)."""
    import optuna

    return optuna.samplers.CmaEsSampler(seed=spec.search.seed, warn_independent_sampling=False,
                                        independent_sampler=optuna.samplers.RandomSampler(seed=spec.search.seed))


def _qmc(spec: Spec):
    """Quasi-random (scrambled Sobol) points cover the ranges more evenly than random ones; choice
    entries are drawn at random. Optuna marks the class experimental, with a warning that would
    land in every sweep's log: xsweep pins Optuna, so its interface cannot move under a sweep."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=spec.search.seed,
                                          warn_independent_sampling=False)


def _nsga2(spec: Spec):
    """NSGA-II, the genetic algorithm of multi-objective search: each generation of
    search.population_size trials is bred from the best fronts of those before."""
    import optuna

    return optuna.samplers.NSGAIISampler(seed=spec.search.seed, population_size=spec.search.population_size)


def default_population_size(num_samples: int) -> int:
    """NSGA-II's generation size when the spec leaves it out: a quarter of the sweep's trials, from
    4 to Optuna's default of 50, so that a sweep breeds about four generations. (Optuna's 50 alone
    would leave a 12-trial sweep in its random first generation throughout.)"""
    return min(50, max(4, num_samples // 4))


def distribution(kind: str, *, low=None, high=None, values=()) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one search-space entry (kind as in the spec: loguniform, uniform,
    int or choice): what every sampler draws from, and what the report's importance analysis fits."""
    import optuna

    if kind == "loguniform":
        return optuna.distributions.FloatDistribution(low, high, log=True)
    if kind == "uniform":
        return optuna.distributions.FloatDistribution(low, high)
    if kind == "int":
        return optuna.distributions.IntDistribution(int(low), int(high))
    return optuna.distributions.CategoricalDistribution(list(values))


ALGORITHMS: Registry[SearchAlgorithm] = Registry("search algorithm")
ALGORITHMS.add(SearchAlgorithm("optuna-tpe", _tpe, fields=("seed",)))
ALGORITHMS.add(SearchAlgorithm("random", _random, fields=("seed",)))
ALGORITHMS.add(SearchAlgorithm("grid", _grid, fields=("seed",), choices_only=True))
ALGORITHMS.add(SearchAlgorithm("optuna-gp", _gp, fields=("seed",)))
ALGORITHMS.add(SearchAlgorithm("optuna-cmaes", _cmaes, fields=("seed",), needs_a_range=True, multi_objective=False))
ALGORITHMS.add(SearchAlgorithm("qmc", _qmc, fields=("seed",), needs_a_range=True))
ALGORITHMS.add(SearchAlgorithm("nsga2", _nsga2, fields=("seed", "population_size"), defaults=lambda values, **shape: {
    "population_size": default_population_size(shape["num_samples"])}))
