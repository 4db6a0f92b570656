"""Checking `ablation:`, the section that makes a sweep an ablation study (search/ablation.py runs it).

    ablation:
      factors: [model.residual, model.activation]  # choice entries of search.space: compared
      tune: [train.lr]                             # searched anew within each variant
      budget: 4                                    # phase-1 (tuning) trials per variant
      confirm_seeds: 3                             # phase-2 seeds per variant, or {min: 3, max: 10}:
                                                   # seeds added only where a comparison is open
      split_seed: false                            # true: each seed also redraws the validation split
      reference: {model.residual: true, model.activation: none}  # default: the paper's network

A variant is one combination of the factors' levels. Every entry of search.space is either a
factor or tuned: a third kind (searched across variants at random) would make the variants'
comparison depend on what each happened to draw.
"""

from __future__ import annotations

import math
from typing import Any

from xsweep.spec.fields import key_text, section_rules, show
from xsweep.spec.schema import MAX_CONFIRM_SEEDS, AblationSpec, SequentialSeeds
from xsweep.spec.space import Problem

WHERE = "ablation"
# The reference level when `reference` does not name one: the paper's Xception (docs/PAPER.md);
# a factor it does not know compares against its first listed level.
PAPER_LEVELS = {"model.residual": True, "model.activation": "none", "model.arch": "xception"}
SAMPLERS_HINT = "optuna-tpe or random"


def same_level(a: Any, b: Any) -> bool:
    """Type-aware equality: the level true is not the level 1."""
    return type(a) is type(b) and a == b


def check_ablation(raw: Any, checked) -> tuple[dict[str, Any] | None, list[Problem]]:
    """(the section's values with reference filled in, []) or (None, problems); `checked` is the
    rest of the spec as checks.py read it (its space, search and scheduler fields)."""
    if not isinstance(raw, dict):
        return None, [(WHERE, f"expected a mapping with factors, tune, budget, confirm_seeds and reference "
                              f"(got {show(raw)})")]
    rules = section_rules(AblationSpec, WHERE)
    clean, problems = {}, []
    for key, value in raw.items():
        path = f"{WHERE}.{key_text(key)}"
        if key not in AblationSpec.model_fields:
            problems.append((path, f"unknown field (an ablation has {', '.join(AblationSpec.model_fields)})"))
        elif key in ("factors", "tune"):
            paths, problem = _paths(value, key)
            problems += [(path, problem)] if problem else []
            clean[key] = paths
        elif key == "confirm_seeds":
            value, problem = _confirm_seeds(value)
            problems += [(path, problem)] if problem else []
            clean[key] = value
        elif key == "reference":
            if isinstance(value, dict):
                clean[key] = {key_text(k): v for k, v in value.items()}
            else:
                problems.append((path, f"expected a mapping of factor to level, such as "
                                       f"{{model.residual: true}} (got {show(value)})"))
        else:
            value, problem = rules[key].check(value)
            problems += [(path, problem)] if problem else []
            clean[key] = value
    for key in ("factors", "tune"):
        if key not in raw:
            problems.append((f"{WHERE}.{key}", f"required ({_PURPOSE[key]})"))
    if problems or not checked.space_complete:
        return None, problems
    problems = _against_the_spec(clean, checked)
    if problems:
        return None, problems
    levels = {path: checked.space[path].values for path in clean["factors"]}
    given = clean.get("reference") or {}
    clean["reference"] = {path: given.get(path, _default_level(path, values)) for path, values in levels.items()}
    clean.setdefault("budget", rules["budget"].default)
    clean.setdefault("confirm_seeds", AblationSpec.model_fields["confirm_seeds"].default)
    return clean, []


def _confirm_seeds(value: Any) -> tuple[Any, str | None]:
    """A number of seeds (2 or more), or {min, max} for a sequential confirmation."""
    fixed = "a number of seeds (2 or more), or {min: 3, max: 10} to add seeds only where a comparison is open"
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None if value >= 2 else f"must be >= 2 (got {value})"
    if not isinstance(value, dict):
        return None, f"expected {fixed} (got {show(value)})"
    unknown = [k for k in value if k not in SequentialSeeds.model_fields]
    if unknown:
        return None, f"unknown key {key_text(unknown[0])} (a sequential confirmation has min and max)"
    if set(value) != {"min", "max"}:
        return None, f"a sequential confirmation needs both min and max, e.g. {{min: 3, max: 10}} (got {show(value)})"
    low, high = value["min"], value["max"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        return None, f"min and max are numbers of seeds (got {show(value)})"
    if low < 2:
        return None, f"min must be >= 2 (got {low}): one seed gives no interval"
    if low > high:
        return None, f"min {low} is more than max {high} (min <= max)"
    if high > MAX_CONFIRM_SEEDS:
        return None, f"max {high} is above {MAX_CONFIRM_SEEDS}, the most a sequential design plans for (lower it)"
    return {"min": low, "max": high}, None


_PURPOSE = {"factors": "the choice entries of search.space to compare, e.g. [model.residual]",
            "tune": "the search.space entries tuned within each variant, e.g. [train.lr]"}


def _paths(value: Any, key: str) -> tuple[list[str], str | None]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return [], f"expected a list of search.space paths ({_PURPOSE[key]}; got {show(value)})"
    twice = [v for v in value if value.count(v) > 1]
    return value, (f"{twice[0]} is listed twice" if twice else None)


def _default_level(path: str, values: list[Any]) -> Any:
    paper = PAPER_LEVELS.get(path)
    return next((v for v in values if paper is not None and same_level(v, paper)), values[0])


def variant_count(ablation: dict[str, Any], space: dict) -> int:
    return math.prod(len(space[path].values) for path in ablation["factors"])


def _against_the_spec(ablation: dict[str, Any], checked) -> list[Problem]:
    space, problems = checked.space, []
    for path in ablation["factors"]:
        entry = space.get(path)
        if entry is None:
            problems.append((f"{WHERE}.factors", f"{path} is not in search.space (add it there as {{choice: [...]}})"))
        elif entry.kind != "choice":
            problems.append((f"{WHERE}.factors", f"{path} is a {entry.kind} entry of search.space; a factor's "
                                                 "levels are a choice: [...]"))
        elif len(entry.values or []) < 2:
            problems.append((f"{WHERE}.factors", f"{path} has one level; a factor compares at least two"))
    for path in ablation["tune"]:
        if path in ablation["factors"]:
            problems.append((f"{WHERE}.tune", f"{path} is also a factor (a field is either compared or tuned)"))
        elif path not in space:
            problems.append((f"{WHERE}.tune", f"{path} is not in search.space (add its range there)"))
    named = set(ablation["factors"]) | set(ablation["tune"])
    for path in space:
        if path not in named:
            problems.append((f"search.space.{path}", "neither an ablation factor nor tuned (add it to "
                                                     "ablation.factors or ablation.tune, or fix its value outside "
                                                     "search.space)"))
    for path, level in (ablation.get("reference") or {}).items():
        if path not in ablation["factors"]:
            problems.append((f"{WHERE}.reference", f"{path} is not a factor (one of {', '.join(ablation['factors'])})"))
        elif path in space and not any(same_level(level, v) for v in space[path].values or []):
            levels = ", ".join(show(v) for v in space[path].values or [])
            problems.append((f"{WHERE}.reference", f"{path}: {show(level)} is not one of its levels ({levels})"))
    # What depends on the variants (their count, their budget) once the factors are sound.
    return problems or _search_problems(ablation, checked)


def _search_problems(ablation: dict[str, Any], checked) -> list[Problem]:
    """What the rest of the spec asks that an ablation does itself, or cannot do."""
    from xsweep.search.algorithms import ALGORITHMS
    from xsweep.search.schedulers import SCHEDULERS
    from xsweep.training.datasets import DATASETS

    problems = []
    dataset = checked.value("data.dataset")
    if ablation.get("split_seed") and dataset in DATASETS and DATASETS.get(dataset).fixed_val:
        problems.append((f"{WHERE}.split_seed", f"{dataset} has a fixed validation set "
                                                f"({DATASETS.get(dataset).fixed_val}), which no seed redraws "
                                                "(remove split_seed)"))
    written = checked.clean["search"]
    budget = ablation.get("budget", section_rules(AblationSpec, WHERE)["budget"].default)
    phase_1 = variant_count(ablation, checked.space) * budget
    if written.get("num_samples", phase_1) != phase_1:
        problems.append(("search.num_samples", f"an ablation's phase 1 runs ablation.budget x "
                                               f"{variant_count(ablation, checked.space)} variants = {phase_1} trials "
                                               f"(remove it, or set {phase_1})"))
    if written.get("repeats", 1) > 1:
        problems.append(("search.repeats", "an ablation repeats seeds in its confirmation phase (remove it; "
                                           "set ablation.confirm_seeds)"))
    if checked.objectives is not None and len(checked.objectives) > 1:
        problems.append(("search.objectives", "an ablation compares its variants on one metric (use search.metric)"))
    if "warm_start" in written:
        problems.append(("search.warm_start", "an ablation tunes every variant afresh (remove it)"))
    algorithm = written.get("algorithm")
    if algorithm is not None and ALGORITHMS.get(algorithm).choices_only:
        problems.append(("search.algorithm", f"{algorithm} cannot spend a budget per variant "
                                             f"(use {SAMPLERS_HINT})"))
    kind = checked.value("scheduler.kind")
    reduction = checked.value("scheduler.reduction_factor")
    if kind in SCHEDULERS.names() and "reduction_factor" in SCHEDULERS.get(kind).fields and \
            isinstance(reduction, (int, float)) and budget < reduction:
        problems.append((f"{WHERE}.budget", f"{budget} trial(s) per variant leave {kind} nothing to compare within "
                                            f"a variant (at least scheduler.reduction_factor = {show(reduction)}, "
                                            "or scheduler.kind: fifo)"))
    return problems
