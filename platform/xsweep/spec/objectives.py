"""Checking `search.objectives`, the list form of a search's objectives.

    search:
      objectives:
        - {metric: val_accuracy, mode: max}
        - {metric: params}            # mode left out: the metric's own direction (min)

Each entry names a metric of xsweep/metrics.py that can be searched on, at most once, with its own
direction; the cross-field checks (checks.py) add what depends on the rest of the spec.
"""

from __future__ import annotations

from typing import Any

from xsweep.metrics import METRICS, objectives
from xsweep.spec.fields import key_text, section_rules, show
from xsweep.spec.schema import Objective
from xsweep.spec.space import Problem

WHERE = "search.objectives"
EXAMPLE = "[{metric: val_accuracy, mode: max}, {metric: params, mode: min}]"


def check_objectives(raw: Any) -> tuple[list[dict[str, str]] | None, list[Problem]]:
    """([{"metric": ..., "mode": ...}, ...], []) for a valid list, else (None, problems)."""
    if not isinstance(raw, list) or not raw:
        return None, [(WHERE, f"expected a list of objectives such as {EXAMPLE} (got {show(raw)})")]
    clean, problems = [], []
    for number, entry in enumerate(raw, 1):
        objective, problem = _check_one(entry)
        if problem:
            problems.append((WHERE, f"objective {number}: {problem}"))
            continue
        earlier = [o["metric"] for o in clean]
        if objective["metric"] in earlier:
            problems.append((WHERE, f"objective {number}: {objective['metric']} is already objective "
                                    f"{earlier.index(objective['metric']) + 1} (name each metric once)"))
            continue
        clean.append(objective)
    return (None, problems) if problems else (clean, [])


def _check_one(entry: Any) -> tuple[dict[str, str], str | None]:
    if not isinstance(entry, dict):
        return {}, f"expected {{metric: ..., mode: max or min}} (got {show(entry)})"
    unknown = [key_text(key) for key in entry if key not in ("metric", "mode")]
    if unknown:
        return {}, f"unknown field {unknown[0]} (an objective has metric and mode)"
    rules = section_rules(Objective, WHERE)
    if entry.get("metric") is None:
        return {}, f"metric is missing (one of {', '.join(objectives())})"
    metric, problem = rules["metric"].check(entry["metric"])
    if problem:
        return {}, f"metric {problem}"
    best = METRICS.get(metric).mode
    if entry.get("mode") is None:
        return {"metric": metric, "mode": best}, None
    mode, problem = rules["mode"].check(entry["mode"])
    if problem:
        return {}, f"mode {problem}"
    if mode != best:
        return {}, f"mode {mode} with metric {metric} would search for the worst model (use mode: {best})"
    return {"metric": metric, "mode": mode}, None
