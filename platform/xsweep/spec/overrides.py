"""`--set path=value` overrides: parsed as YAML values and applied to the raw spec mapping.

A problem is one line naming the override (`--set train.lr: ...`), reported with the spec's own.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import yaml

from xsweep.spec.fields import show
from xsweep.spec.schema import SPACE_KINDS

OVERRIDE_EXAMPLE = "write path=value, e.g. train.lr=0.1"


@dataclasses.dataclass(frozen=True)
class Override:
    path: str  # as reported, e.g. "search.space.train.lr"
    parts: tuple[str, ...]  # mapping keys from the top, e.g. ("search", "space", "train.lr")
    value: Any


def override_list(overrides: Sequence[str]) -> list[str]:
    # One override passed bare would otherwise be read character by character.
    return [overrides] if isinstance(overrides, str) else list(overrides)


def parse_overrides(overrides: Sequence[str]) -> tuple[list[Override], list[str]]:
    """Overrides "path=value", the value read as YAML ("0.1" -> 0.1, "false" -> False, "{}" -> {}).

    search.space keys are dotted paths themselves, so after "search.space." the rest is one
    key: search.space.train.lr={loguniform: [0.01, 0.1]}. A trailing kind is allowed too
    (search.space.train.lr.choice=[0.1, 0.2]), and the value null removes the entry (of any field, too: its default applies).
    """
    parsed, lines = [], []
    for item in overrides:
        path, equals, value_text = str(item).partition("=")
        path = path.strip()
        parts = tuple(path.split("."))
        if not equals:
            lines.append(f"--set {item}: missing '=' ({OVERRIDE_EXAMPLE})")
            continue
        if not all(parts):
            lines.append(f"--set {item}: the field path has an empty part ({OVERRIDE_EXAMPLE})")
            continue
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError as error:
            lines.append(f"--set {path}: {value_text!r} is not a valid YAML value ({yaml_problem(error)})")
            continue
        if parts[:2] == ("search", "space") and len(parts) > 2:
            key = parts[2:]
            if len(key) > 1 and key[-1] in SPACE_KINDS:
                key, value = key[:-1], {key[-1]: value}
            parts = ("search", "space", ".".join(key))
            path = ".".join(parts)
        parsed.append(Override(path, parts, value))
    return parsed, lines


def apply_overrides(raw: dict, overrides: list[Override]) -> tuple[dict, list[str], list[str]]:
    """A copy of raw with the overrides applied, the paths they set, and problems."""
    raw = copy.deepcopy(raw)  # the caller's mapping stays as it was
    paths, lines = [], []
    for override in overrides:
        node = raw
        for depth, part in enumerate(override.parts[:-1]):
            if node.get(part) is None:  # absent, or a section with every field commented out
                node[part] = {}
            if not isinstance(node[part], dict):
                where = ".".join(override.parts[:depth + 1])
                lines.append(f"--set {override.path}: {where} is {show(node[part])}, not a mapping")
                break
            node = node[part]
        else:
            last = override.parts[-1]
            # null takes the field (or the search-space entry) out: as if the file had not written it,
            # so its default applies (e.g. search.num_samples=null for a spec turned into an ablation).
            if override.value is None:
                node.pop(last, None)
            else:
                node[last] = override.value
            paths.append(override.path)
    return raw, paths, lines


def searched_field_lines(raw: dict, overrides: list[Override]) -> list[str]:
    """A value --set gives a field that the search varies would never be used (each trial takes the
    searcher's value): one line each, with the two ways to say what was meant."""
    space = (raw.get("search") or {}).get("space") or {}
    if not isinstance(space, dict):
        return []  # the checks name a space that is not a mapping
    lines = []
    for override in overrides:
        if override.parts[:2] == ("search", "space") or override.value is None or override.path not in space:
            continue
        entry = f"search.space.{override.path}"
        lines.append(f"--set {override.path}: the search varies {override.path} ({entry}), so no trial would use "
                     f"this value; to fix it, also --set {entry}=null; to search other values, --set "
                     f"'{entry}={{...}}' instead")
    return lines


def yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark:
        # e.g. an unclosed quote: the problem is at the end of the file, the cause where it opened.
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return " ".join(problem.split())
