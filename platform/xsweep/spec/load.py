"""Loading a sweep spec: read the YAML file, apply the --set overrides, check, build a Spec.

Every problem is reported at once in a SpecError, one line each, in the order of the file:

    spec.yaml: train.lr: must be > 0 (got -0.1)
    --set train.epochs: must be between 1 and 10000 (got 0)

Validation is pure Python (no torch, ray or mlflow), so it is instant and can run before
anything starts; loading writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic
import yaml

from xsweep.errors import SpecError
from xsweep.spec.checks import check
from xsweep.spec.overrides import (
    apply_overrides, override_list, parse_overrides, searched_field_lines, yaml_problem,
)
from xsweep.spec.schema import Spec


def load_spec(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> Spec:
    """Read, override and validate a spec file; SpecError lists every problem found."""
    source, overrides = os.fspath(path), override_list(overrides)
    text, problem = _read(path)
    if problem is not None:
        raise SpecError([f"{source}: cannot read file: {problem}", *parse_overrides(overrides)[1]])
    return load_spec_text(text, source=source, overrides=overrides)


def load_spec_text(text: str, *, source: str, overrides: Sequence[str] = ()) -> Spec:
    """Validate a spec given as text (e.g. the copy `xsweep resume` keeps with a sweep)."""
    overrides = override_list(overrides)
    loader = _Loader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as error:
        raise SpecError([_yaml_error_line(error, source), *parse_overrides(overrides)[1]]) from None
    finally:
        loader.dispose()
    duplicates = [f"{source}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r} "
                  f"(first at line {first.line + 1}; remove one)" for mark, first, key in loader.duplicates]
    return _build(raw, source=source, text=text, overrides=overrides, early_lines=duplicates)


def parse_spec(raw: Any, *, source: str, text: str | None = None, overrides: Sequence[str] = ()) -> Spec:
    """Validate an already-parsed mapping. `source` names it in messages; `text` is what
    Spec.text records (default: raw dumped as YAML)."""
    overrides = override_list(overrides)
    if text is None:
        try:
            text = yaml.safe_dump(raw, sort_keys=False)
        except yaml.YAMLError:  # objects YAML cannot write; the check below names them
            text = repr(raw)
    return _build(raw, source=source, text=text, overrides=overrides, early_lines=[])


# ---- building ----

def _build(raw: Any, *, source: str, text: str, overrides: Sequence[str], early_lines: list[str]) -> Spec:
    parsed, lines = parse_overrides(overrides)
    lines = early_lines + lines
    override_paths: list[str] = []
    if isinstance(raw, dict):
        raw, override_paths, apply_lines = apply_overrides(raw, parsed)
        lines += apply_lines + searched_field_lines(raw, parsed)
    values, problems = check(raw)
    lines += [_render(path, message, source, override_paths) for path, message in problems]
    if lines:
        raise SpecError(lines)
    try:
        return Spec.model_validate({**values, "source": source, "text": text, "overrides": tuple(overrides)})
    except pydantic.ValidationError as error:
        # Only reached if checks.py misses something pydantic catches: still one line each.
        raise SpecError([f"{source}: {'.'.join(map(str, e['loc']))}: {e['msg']}"
                         for e in error.errors()]) from None


def _render(path: str, message: str, source: str, override_paths: list[str]) -> str:
    # A problem in a value that --set wrote is reported against the override, not the file,
    # whose text may well be fine.
    if any(path == p or path.startswith(p + ".") for p in override_paths):
        return f"--set {path}: {message}"
    return f"{source}: {path}: {message}" if path else f"{source}: {message}"


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
    return f"{where}: YAML syntax error: {yaml_problem(error)}"


