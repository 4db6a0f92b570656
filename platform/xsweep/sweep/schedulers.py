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


def _fifo(spec: Spec):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(spec: Spec):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=spec.max_epochs(),  # ASHA stops any trial that reaches max_t
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    )


SCHEDULERS: Registry[Scheduler] = Registry("trial scheduler")
SCHEDULERS.add(Scheduler("fifo", _fifo))  # every trial runs all its epochs
SCHEDULERS.add(Scheduler("asha", _asha, fields=("grace_period", "reduction_factor")))


def build_trial_scheduler(spec: Spec) -> TrialScheduler:
    return SCHEDULERS.get(spec.scheduler.kind).build(spec)
