"""Checks for search.space entries, each on its own.

An entry is {kind: args} keyed by the dotted path of a data/model/train field. Besides its
shape, every value an entry can produce must be valid for that field: a range's endpoints
meet the field's bounds and a choice's values pass the field's own check, so a sweep
cannot fail hours in because one sampled value is invalid. Checks that need other parts of
the spec (grid, repeats) are in checks.py.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from xsweep.spec.fields import FieldRule, did_you_mean, key_text, number_text, section_rules, show
from xsweep.spec.schema import SECTION_MODELS, SPACE_KINDS, TRIAL_SECTIONS, SpaceEntry

Problem = tuple[str, str]  # (dotted field path, message)
KINDS_TEXT = ", ".join(SPACE_KINDS)


@functools.cache
def searchable_rules() -> dict[str, FieldRule]:
    """Rules of every field a space may name, by dotted path ("train.lr")."""
    return {rule.path: rule for section in TRIAL_SECTIONS
            for rule in section_rules(SECTION_MODELS[section], section).values()}


def check_space(raw: Any) -> tuple[dict[str, SpaceEntry], list[Problem]]:
    """The valid entries of search.space and the problems of the others, in document order."""
    if raw is None:  # `space:` with every entry commented out
        return {}, []
    if not isinstance(raw, dict):
        return {}, [("search.space", "expected a mapping of field path to {kind: ...} "
                                     f"(got {show(raw)})")]
    entries, problems = {}, []
    for key, raw_entry in raw.items():
        entry, entry_problems = check_entry(key, raw_entry)
        problems += entry_problems
        if entry is not None:
            entries[key] = entry
    return entries, problems


def check_entry(key: Any, raw_entry: Any) -> tuple[SpaceEntry | None, list[Problem]]:
    where = f"search.space.{key_text(key)}"
    rule = searchable_rules().get(key) if isinstance(key, str) else None
    if rule is None:
        return None, [(where, unknown_path_message(key_text(key)))]
    if not isinstance(raw_entry, dict):
        if isinstance(raw_entry, list):
            hint = f"; for a list of values write {{choice: {show(raw_entry)}}}"
        else:
            hint = f"; to fix one value, set {key} in its section instead"
        return None, [(where, f"expected {{kind: ...}} with kind one of {KINDS_TEXT} "
                              f"(got {show(raw_entry)}{hint})")]
    if len(raw_entry) != 1:
        got = " and ".join(key_text(k) for k in raw_entry) or "none"
        return None, [(where, f"needs exactly one kind, got {got} (one of {KINDS_TEXT})")]
    (kind, args), = raw_entry.items()
    if kind not in SPACE_KINDS:
        guess = did_you_mean(key_text(kind), list(SPACE_KINDS))
        allowed = f"did you mean {guess}?" if guess else f"one of {KINDS_TEXT}"
        return None, [(where, f"unknown kind {show(kind)} ({allowed})")]
    if kind == "choice":
        return _check_choice(where, rule, args)
    return _check_range(where, rule, kind, args)


def unknown_path_message(path: str) -> str:
    section, _, field = path.partition(".")
    if section in SECTION_MODELS and section not in TRIAL_SECTIONS and (
            field in SECTION_MODELS[section].model_fields):
        return (f"only fields of {', '.join(TRIAL_SECTIONS)} can be searched "
                f"({path} is one setting for the whole sweep)")
    guess = leaf_match(path, list(searchable_rules())) or did_you_mean(path, list(searchable_rules()))
    if guess:
        return f"unknown field (did you mean {guess}?)"
    return f"unknown field (a field of {', '.join(TRIAL_SECTIONS)}, such as train.lr)"


def leaf_match(path: str, paths: list[str]) -> str | None:
    """The one path whose last part is `path`'s last part: lr -> train.lr, train.residual
    -> model.residual. Catches the right field in the wrong place, which difflib misses."""
    leaf = path.rsplit(".", 1)[-1]
    found = [p for p in paths if p.rsplit(".", 1)[-1] == leaf and p != path]
    return found[0] if len(found) == 1 else None


def _check_choice(where: str, rule: FieldRule, values: Any) -> tuple[SpaceEntry | None, list[Problem]]:
    if not isinstance(values, list):
        return None, [(where, f"choice takes a list of values (got {show(values)})")]
    if not values:
        return None, [(where, f"choice needs at least one value (e.g. choice: {rule.example_choice()})")]
    clean, problems = [], []
    for value in values:
        value, problem = rule.check(value)
        if problem:
            problems.append((where, problem))
        else:
            clean.append(value)
    if problems:
        return None, problems
    # Compare as (type, value) so that 1 and true are told apart; after rule.check a float
    # field's 1 and 1.0 are both 1.0 and count as the same value, as they should.
    seen, repeated = set(), []
    for value in clean:
        if (type(value), value) in seen and value not in repeated:
            repeated.append(value)
        seen.add((type(value), value))
    if repeated:
        return None, [(where, f"choice lists {', '.join(map(show, repeated))} more than once "
                              "(list each value once)")]
    return SpaceEntry(kind="choice", values=clean), []


def _check_range(where: str, rule: FieldRule, kind: str,
                 args: Any) -> tuple[SpaceEntry | None, list[Problem]]:
    if not rule.is_range_kind:
        return None, [(where, f"{rule.path} takes choice only (got {kind}; "
                              f"e.g. choice: {rule.example_choice()})")]
    if rule.kind == "int" and kind != "int":
        return None, [(where, f"{rule.path} takes whole numbers, so {kind} cannot search it "
                              "(use int: [low, high] or choice: [...])")]
    if not (isinstance(args, list) and len(args) == 2):
        return None, [(where, f"{kind} takes [low, high] (got {show(args)})")]
    # Endpoints are numbers of the entry's kind, bounded by the field they search.
    number = dataclasses.replace(rule, kind="int" if kind == "int" else "float", nullable=False)
    (low, low_problem), (high, high_problem) = number.parse(args[0]), number.parse(args[1])
    problems = [(where, f"{label}: {problem}") for label, problem in
                (("low", low_problem), ("high", high_problem)) if problem]
    if problems:
        return None, problems
    got = f"(got [{number_text(low)}, {number_text(high)}])"
    if kind == "loguniform" and not 0 < low < high:
        return None, [(where, f"loguniform needs 0 < low < high {got}")]
    if not low < high:
        return None, [(where, f"{kind} needs low < high {got}")]
    problems = [(where, f"{label}: {problem}") for label, value in (("low", low), ("high", high))
                if (problem := number.bounds_problem(value))]
    if problems:
        return None, problems
    return SpaceEntry(kind=kind, low=low, high=high), []
