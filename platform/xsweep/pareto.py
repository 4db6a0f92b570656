"""The Pareto front of a multi-objective search: the trials no other trial beats on every objective.

One function for every consumer: the end of a sweep (the `xsweep.pareto` tags and
pareto_front.csv, sweep/front.py), the report's Pareto section and `xsweep reproduce --pick`, which
reads the front's order back from the tags. Free of heavy imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from xsweep.metrics import is_finite_number

T = TypeVar("T")
ARTIFACT = "pareto_front.csv"  # on the sweep's parent run


def dominates(a: Sequence[float], b: Sequence[float], *, modes: Sequence[str]) -> bool:
    """Whether values `a` are at least as good as `b` on every objective and better on one."""
    as_good = all((x >= y) if mode == "max" else (x <= y) for x, y, mode in zip(a, b, modes))
    return as_good and any(x != y for x, y in zip(a, b))


def pareto_front(items: Sequence[T], *, values: Callable[[T], Sequence[float] | None],
                 modes: Sequence[str]) -> list[T]:
    """The items that no other item dominates, best first on the first objective (then the
    second, ...): the order of pareto_front.csv and of `--pick 1, 2, ...`. Items whose values
    are missing or not finite (None from `values`) are on no front."""
    scored = [(item, list(v)) for item in items if (v := values(item)) is not None
              and len(v) == len(modes) and all(is_finite_number(x) for x in v)]
    front = [(item, v) for item, v in scored if not any(dominates(w, v, modes=modes) for _, w in scored)]
    sign = [-1.0 if mode == "max" else 1.0 for mode in modes]
    front.sort(key=lambda pair: [s * x for s, x in zip(sign, pair[1])])
    return [item for item, _ in front]
