"""The trial schedulers a spec's `scheduler.kind` may name: one registry entry each.

A trial scheduler decides, epoch by epoch, whether a running trial goes on (Ray Tune's
`TrialScheduler`); it is not the learning-rate schedule (training/optim.py). An entry says how to
build it from the spec and which `scheduler.*` fields it reads: writing one it does not read is a
spec error, not a silently ignored setting. Ray is imported inside the builders: the spec checker
reads this table and must stay instant.

Adding a scheduler is one `SCHEDULERS.add(Scheduler(...))` plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xsweep.registry import Registry

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

    from xsweep.spec import Spec


@dataclass(frozen=True)
class Scheduler:
    name: str
    build: Callable[[Spec], TrialScheduler]
    fields: tuple[str, ...] = ()  # scheduler.* fields it reads (besides kind)
    # The values of its fields a spec leaves out (None): (its fields' values, the sweep's shape) ->
    # {field: value}. The shape: `epochs` (what trials may run), `objective`, `num_samples`.
    defaults: Callable[..., dict] = lambda values, **shape: {}


def _fifo(spec: Spec):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(spec: Spec, *, brackets: int = 1):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",  # its metric and mode come from Tune's config: see judged_by
        max_t=spec.max_epochs(),  # ASHA stops any trial that reaches max_t
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
        brackets=brackets,
    )


def _hyperband(spec: Spec):
    """Hyperband's brackets, run asynchronously (Li et al., "A System for Massively Parallel
    Hyperparameter Tuning", 2020): each new trial joins one of scheduler.brackets successive-
    halving brackets, bracket k first stopping trials at grace_period x reduction_factor^k epochs,
    so that a late bloomer stopped early in one bracket has its chance in another. Ray's
    synchronous HyperBandScheduler would pause trials to wait for their bracket-mates, idling
    the cluster's slots; the asynchronous form never waits."""
    return _asha(spec, brackets=spec.scheduler.brackets)


def default_grace_period(epochs: list[int]) -> int:
    """ASHA's grace period when the spec leaves it out: a third of the shortest trial, at least 1."""
    return max(1, min(epochs) // 3) if epochs else 1


def brackets_that_fit(epochs: int, *, grace_period: int, reduction_factor: float) -> int:
    """Hyperband's bracket count when the spec leaves it out: Li et al.'s s_max + 1, one bracket
    for each k whose first rung, grace_period x reduction_factor^k epochs, is within the longest
    trial (a bracket whose first rung is that trial's end stops nothing)."""
    brackets = 0
    while grace_period * reduction_factor ** brackets <= epochs:
        brackets += 1
    return max(brackets, 1)


def _asha_defaults(values: dict, *, epochs: list[int], objective: str, **shape) -> dict:
    """A third of the shortest trial before the first stop; judged by the search's first objective."""
    return {"grace_period": default_grace_period(epochs), "metric": objective}


def _hyperband_defaults(values: dict, *, epochs: list[int], **shape) -> dict:
    filled = _asha_defaults(values, epochs=epochs, **shape)
    grace = values.get("grace_period") or filled["grace_period"]
    return {**filled, "brackets": brackets_that_fit(max(epochs, default=1), grace_period=grace,
                                                    reduction_factor=values["reduction_factor"])}


SCHEDULERS: Registry[Scheduler] = Registry("trial scheduler")
SCHEDULERS.add(Scheduler("fifo", _fifo))  # every trial runs all its epochs
SCHEDULERS.add(Scheduler("asha", _asha, fields=("grace_period", "reduction_factor", "metric"),
                         defaults=_asha_defaults))
SCHEDULERS.add(Scheduler("hyperband", _hyperband, fields=("grace_period", "reduction_factor", "metric", "brackets"),
                         defaults=_hyperband_defaults))


def build_trial_scheduler(spec: Spec) -> TrialScheduler:
    return SCHEDULERS.get(spec.scheduler.kind).build(spec)


def judged_by(spec: Spec) -> tuple[str, str]:
    """(metric, mode) by which the scheduler compares trials, which Tune hands it: one objective
    also in a multi-objective search, scheduler.metric (parse_spec fills in the first objective)
    when the scheduler reads it, else the first objective."""
    if "metric" in SCHEDULERS.get(spec.scheduler.kind).fields:
        return spec.scheduler.metric, spec.scheduler.mode_of(spec.search)
    return spec.search.metric, spec.search.mode
