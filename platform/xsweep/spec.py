"""The sweep spec: one YAML file loaded into a typed, validated Spec.

    spec = load_spec("search_spaces/smoke.yaml", overrides=["train.epochs=1"])

Every problem is reported at once in a SpecError, one line each, in the order of the file:

    spec.yaml: train.lr: must be > 0 (got -0.1)
    --set train.epochs: must be between 1 and 10000 (got 0)

Validation is pure Python (no torch, ray or mlflow), so it is instant and can run before
anything starts; loading writes nothing. The schema is in spec_models, the checks in
spec_check / spec_space / spec_fields.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pydantic
import yaml

from .errors import UserError
from .spec_check import check
from .spec_fields import show
from .spec_models import (
    SPACE_KINDS, DataSpec, FailureSpec, ModelSpec, ResourcesSpec, SchedulerSpec, SearchSpec,
    SpaceEntry, Spec, StorageSpec, TrackingSpec, TrainSpec,
)

__all__ = [
    "SpecError", "load_spec", "parse_spec", "set_dotted", "Spec", "SpaceEntry", "DataSpec",
    "ModelSpec", "TrainSpec", "SearchSpec", "SchedulerSpec", "ResourcesSpec", "FailureSpec",
    "TrackingSpec", "StorageSpec",
]

OVERRIDE_EXAMPLE = "write path=value, e.g. train.lr=0.1"


class SpecError(UserError):
    """A user error in a spec. .lines holds one-line messages; str(e) joins them with newlines."""

    prefix = ""  # each line already starts with the file (or --set) it is about

    def __init__(self, lines: Iterable[str] | str):
        # Accepting the joined text back lets the error survive pickling (Ray ships exceptions
        # between processes, and pickle rebuilds them from args).
        self.lines = lines.splitlines() if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))

    def __str__(self) -> str:
        return "\n".join(self.lines)


def load_spec(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> Spec:
    """Read, override and validate a spec file; SpecError lists every problem found."""
    source, overrides = os.fspath(path), _override_list(overrides)
    text, problem = _read(path)
    if problem is not None:
        raise SpecError([f"{source}: cannot read file: {problem}", *_parse_overrides(overrides)[1]])
    return load_spec_text(text, source=source, overrides=overrides)


def load_spec_text(text: str, *, source: str, overrides: Sequence[str] = ()) -> Spec:
    """Validate a spec given as text (e.g. the copy `xsweep resume` keeps with a sweep)."""
    overrides = _override_list(overrides)
    loader = _Loader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as error:
        raise SpecError([_yaml_error_line(error, source), *_parse_overrides(overrides)[1]]) from None
    finally:
        loader.dispose()
    duplicates = [f"{source}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r} "
                  f"(first at line {first.line + 1}; remove one)" for mark, first, key in loader.duplicates]
    return _build(raw, source=source, text=text, overrides=overrides, early_lines=duplicates)


def parse_spec(raw: Any, *, source: str, text: str | None = None, overrides: Sequence[str] = ()) -> Spec:
    """Validate an already-parsed mapping. `source` names it in messages; `text` is what
    Spec.text records (default: raw dumped as YAML)."""
    overrides = _override_list(overrides)
    if text is None:
        try:
            text = yaml.safe_dump(raw, sort_keys=False)
        except yaml.YAMLError:  # objects YAML cannot write; the check below names them
            text = repr(raw)
    return _build(raw, source=source, text=text, overrides=overrides, early_lines=[])


def set_dotted(config: dict[str, Any], path: str, value: Any) -> None:
    """config["train"]["lr"] = value for path "train.lr" (how trials apply sampled values).

    The sections on the way must exist: a path that misses them is a bug, not a new field.
    """
    *parents, last = path.split(".")
    node = config
    for depth, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            raise KeyError(f"{path}: {'.'.join(parents[:depth + 1])} is not a section of the config")
        node = child
    node[last] = value


# ---- building ----

def _build(raw: Any, *, source: str, text: str, overrides: Sequence[str], early_lines: list[str]) -> Spec:
    parsed, lines = _parse_overrides(overrides)
    lines = early_lines + lines
    override_paths: list[str] = []
    if isinstance(raw, dict):
        raw, override_paths, apply_lines = _apply_overrides(raw, parsed)
        lines += apply_lines
    values, problems = check(raw)
    lines += [_render(path, message, source, override_paths) for path, message in problems]
    if lines:
        raise SpecError(lines)
    try:
        return Spec.model_validate({**values, "source": source, "text": text, "overrides": tuple(overrides)})
    except pydantic.ValidationError as error:
        # Only reached if spec_check misses something pydantic catches: still one line each.
        raise SpecError([f"{source}: {'.'.join(map(str, e['loc']))}: {e['msg']}"
                         for e in error.errors()]) from None


def _render(path: str, message: str, source: str, override_paths: list[str]) -> str:
    # A problem in a value that --set wrote is reported against the override, not the file,
    # whose text may well be fine.
    if any(path == p or path.startswith(p + ".") for p in override_paths):
        return f"--set {path}: {message}"
    return f"{source}: {path}: {message}" if path else f"{source}: {message}"


# ---- --set overrides ----

@dataclasses.dataclass(frozen=True)
class _Override:
    path: str  # as reported, e.g. "search.space.train.lr"
    parts: tuple[str, ...]  # mapping keys from the top, e.g. ("search", "space", "train.lr")
    value: Any


def _override_list(overrides: Sequence[str]) -> list[str]:
    # One override passed bare would otherwise be read character by character.
    return [overrides] if isinstance(overrides, str) else list(overrides)


def _parse_overrides(overrides: Sequence[str]) -> tuple[list[_Override], list[str]]:
    """Overrides "path=value", the value read as YAML ("0.1" -> 0.1, "false" -> False, "{}" -> {}).

    search.space keys are dotted paths themselves, so after "search.space." the rest is one
    key: search.space.train.lr={loguniform: [0.01, 0.1]}. A trailing kind is allowed too
    (search.space.train.lr.choice=[0.1, 0.2]), and the value null removes the entry.
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
            lines.append(f"--set {path}: {value_text!r} is not a valid YAML value ({_yaml_problem(error)})")
            continue
        if parts[:2] == ("search", "space") and len(parts) > 2:
            key = parts[2:]
            if len(key) > 1 and key[-1] in SPACE_KINDS:
                key, value = key[:-1], {key[-1]: value}
            parts = ("search", "space", ".".join(key))
            path = ".".join(parts)
        parsed.append(_Override(path, parts, value))
    return parsed, lines


def _apply_overrides(raw: dict, overrides: list[_Override]) -> tuple[dict, list[str], list[str]]:
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
            is_space_entry = override.parts[:2] == ("search", "space") and len(override.parts) == 3
            if is_space_entry and override.value is None:
                node.pop(last, None)
            else:
                node[last] = override.value
            paths.append(override.path)
    return raw, paths, lines


# ---- reading the file ----

def _read(path: str | os.PathLike[str]) -> tuple[str, None] | tuple[None, str]:
    try:
        # utf-8-sig: editors on Windows like to start files with a byte-order mark.
        return Path(path).read_text(encoding="utf-8-sig"), None
    except FileNotFoundError:
        return None, "no such file (check the path)"
    except IsADirectoryError:
        return None, "it is a folder (give the path of a .yaml spec file)"
    except PermissionError:
        return None, "permission denied (check the file's permissions)"
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text (undecodable byte at offset {error.start})"
    except OSError as error:
        return None, error.strerror or str(error)


class _Loader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys, which PyYAML would silently resolve to the last
    one: a spec with lr written twice is a mistake, not a choice."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[tuple[yaml.Mark, yaml.Mark, str]] = []  # (where, first seen, key)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_seen: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, _ in node.value:
            # Merge keys (<<) may repeat, and keys they bring in may be overridden: both fine.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in first_seen:
                    self.duplicates.append((key_node.start_mark, first_seen[ident], key_node.value))
                else:
                    first_seen[ident] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _yaml_error_line(error: yaml.YAMLError, source: str) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    return f"{where}: YAML syntax error: {_yaml_problem(error)}"


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark:
        # e.g. an unclosed quote: the problem is at the end of the file, the cause where it opened.
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return " ".join(problem.split())
