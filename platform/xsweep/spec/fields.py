"""Per-field rules read from the pydantic models, and one-line messages for bad values.

pydantic's own wording ("Input should be greater than 0") is written for programmers, and
its lax mode accepts true as 1; a person editing YAML needs "must be > 0 (got -0.1)". So the
checks here word their own messages, while the bounds and defaults still come from the
models' Field(...) declarations.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

# Longest rendering of an offending value inside a message; a whole pasted section would
# otherwise turn a one-line message into a screenful.
SHOW_MAX_CHARS = 60
# difflib's ratio above which a typo is worth suggesting: lrr -> lr is 0.8 and optimiser ->
# optimizer 0.89, while difflib's default 0.6 also paired extra -> train and normal -> uniform.
SUGGEST_CUTOFF = 0.7
# A shorter start than this is too ambiguous to complete (gpus -> gpus_per_trial is fine).
MIN_PREFIX = 3
# The Field() constraints FieldRule understands; the models use no others.
_LIMITS = ("gt", "ge", "lt", "le", "min_length", "max_length")


def show(value: Any) -> str:
    """A value as the user would write it in YAML, on one line and shortened."""
    text = _show(value)
    return text if len(text) <= SHOW_MAX_CHARS else text[: SHOW_MAX_CHARS - 3] + "..."


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)  # quotes make '' and ' x' visible; repr also escapes newlines
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key_text(k)}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def key_text(key: Any) -> str:
    """A mapping key as it goes into a field path (non-text keys shown as values)."""
    if isinstance(key, str) and key.isprintable() and key.strip() == key and key:
        return key
    return _show(key)


# Whole floats below this print without ".0" (2.0 -> 2); above it, as floats (1e+20), which
# are shorter than their digits.
WHOLE_NUMBER_TEXT_LIMIT = 1e15


def number_text(x: float) -> str:
    """A number as a user writes it: 2 not 2.0 (float fields hold 2 as 2.0), 1e-05 as is."""
    if isinstance(x, float) and x.is_integer() and abs(x) < WHOLE_NUMBER_TEXT_LIMIT:
        return str(int(x))
    return repr(x)


def did_you_mean(word: str, candidates: list[str]) -> str | None:
    """The closest candidate to a typo, ignoring case (LR -> lr), or the only candidate that
    starts with it (gpus -> gpus_per_trial), or None."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=SUGGEST_CUTOFF)
    if close:
        return by_lower[close[0]]
    if len(word) < MIN_PREFIX:
        return None
    starting = [c for lower, c in by_lower.items() if lower.startswith(word.lower())]
    return starting[0] if len(starting) == 1 else None


def as_number(value: Any) -> float | int | None:
    """The number a YAML value stands for, or None if it is not one."""
    if isinstance(value, bool):
        return None  # bool is an int subclass, and YAML 1.1 reads yes/no/on/off as bools
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())  # PyYAML reads 1e-3 (no dot) as the string '1e-3'
        except ValueError:
            return None
    return None


class OneOf:
    """Field metadata, `Annotated[str, OneOf(REGISTRY.names)]`: the value must be one of the names
    `names()` returns, asked each time a spec is checked, so entries registered later count."""

    def __init__(self, names: Callable[[], tuple[str, ...]]) -> None:
        self.names = names


@dataclasses.dataclass(frozen=True)
class FieldRule:
    """What one scalar field accepts, taken from its model's annotation and Field()."""

    path: str  # dotted, e.g. "train.lr"
    kind: Literal["bool", "int", "float", "str", "enum"]
    default: Any = None
    nullable: bool = False
    choices: tuple[Any, ...] = ()  # an enum's values (see allowed()); a bool's other words (`auto`)
    one_of: OneOf | None = None  # a registry-backed enum: its choices are read when checked
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None

    def allowed(self) -> tuple[Any, ...]:
        """An enum's values, in the order messages list them."""
        return self.one_of.names() if self.one_of is not None else self.choices

    @property
    def is_range_kind(self) -> bool:
        return self.kind in ("int", "float")

    def check(self, value: Any) -> tuple[Any, str | None]:
        """(clean value, None) or (None, message) for a value of this field."""
        clean, problem = self.parse(value)
        if problem is None:
            problem = self.bounds_problem(clean)
        return (None, problem) if problem else (clean, None)

    def parse(self, value: Any) -> tuple[Any, str | None]:
        """Type only: the value converted to the field's type, or a message."""
        if value is None and self.nullable:
            return None, None
        got = f"(got {show(value)})"
        if self.kind == "enum":
            allowed = self.allowed()
            if isinstance(value, str) and value in allowed:
                return value, None
            return None, f"{show(value)} is not allowed (one of {', '.join(map(str, allowed))})"
        if self.kind == "bool":
            if isinstance(value, bool) or value in self.choices:
                return value, None
            # A quoted "true" is unambiguous; quoted YAML 1.1 words like "yes" are not.
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true", None
            words = ", ".join(["true", *map(str, self.choices)]) + " or false"
            return None, f"expected {words}{self._or_null} {got}"
        if self.kind == "str":
            if isinstance(value, str):
                return value, None
            return None, f"expected text{self._or_null} {got}"
        number = as_number(value)
        if self.kind == "int":
            if isinstance(number, float) and math.isfinite(number) and number.is_integer():
                number = int(number)
            if not isinstance(number, int):
                return None, f"expected a whole number{self._or_null} {got}"
            return number, None
        if number is None:
            return None, f"expected a number{self._or_null} {got}"
        try:
            number = float(number)
        except OverflowError:  # an integer literal too big for a float
            number = math.inf
        if not math.isfinite(number):
            return None, f"expected a finite number {got}"
        return number, None

    def bounds_problem(self, value: Any) -> str | None:
        """The message if a parsed value breaks the field's bounds or length limits."""
        if value is None:
            return None
        if self.kind == "str":
            if self.min_length and len(value) < self.min_length:
                return "must not be empty (leave the field out or write null for the default)"
            if self.max_length and len(value) > self.max_length:
                return f"is too long: {len(value)} characters (at most {self.max_length})"
            return None
        if not self.is_range_kind:
            return None
        if ((self.gt is not None and not value > self.gt)
                or (self.ge is not None and not value >= self.ge)
                or (self.lt is not None and not value < self.lt)
                or (self.le is not None and not value <= self.le)):
            return f"must be {self.bounds_text()} (got {number_text(value)})"
        return None

    def bounds_text(self) -> str:
        if self.ge is not None and self.le is not None:
            return f"between {number_text(self.ge)} and {number_text(self.le)}"
        parts = []
        if self.gt is not None:
            parts.append(f"> {number_text(self.gt)}")
        if self.ge is not None:
            parts.append(f">= {number_text(self.ge)}")
        if self.lt is not None:
            parts.append(f"< {number_text(self.lt)}")
        if self.le is not None:
            parts.append(f"<= {number_text(self.le)}")
        return " and ".join(parts)

    def example_choice(self) -> str:
        """A choice list the user could write for this field, for hints."""
        if self.kind == "bool":
            return "[true, false]"
        if self.kind == "enum":
            return "[" + ", ".join(self.allowed()) + "]"
        return "[...]"

    @property
    def _or_null(self) -> str:
        return " or null" if self.nullable else ""


@functools.cache
def section_rules(model: type[BaseModel], section: str) -> dict[str, FieldRule]:
    """FieldRules for the scalar fields of one model, by field name, in declaration order.

    Fields that are not scalars (search.space, the sub-sections of Spec) are left out;
    their callers check them by hand.
    """
    rules = {}
    for name, info in model.model_fields.items():
        annotation, nullable = _strip_none(info.annotation)
        one_of = next((meta for meta in info.metadata if isinstance(meta, OneOf)), None)
        if one_of is not None:
            kind, choices = "enum", ()
        elif get_origin(annotation) is Literal:
            kind, choices = "enum", get_args(annotation)
        elif annotation in (bool, int, float, str):
            kind, choices = annotation.__name__, ()
        elif _bool_or_words(annotation):  # `bool | Literal["auto"]`
            kind, choices = "bool", _bool_or_words(annotation)
        else:
            continue
        # Field(gt=0, le=4) arrives as annotated_types.Gt(gt=0), Le(le=4), ... in metadata.
        limits = {attr: getattr(meta, attr) for meta in info.metadata for attr in _LIMITS
                  if getattr(meta, attr, None) is not None}
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        rules[name] = FieldRule(path=f"{section}.{name}" if section else name, kind=kind,
                                default=default, nullable=nullable, choices=choices, one_of=one_of, **limits)
    return rules


def _bool_or_words(annotation: Any) -> tuple[str, ...]:
    """The words of a `bool | Literal[...]` annotation (e.g. ("auto",)); () for any other."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return ()
    args = get_args(annotation)
    literals = [a for a in args if get_origin(a) is Literal]
    if bool not in args or len(literals) != 1 or len(args) != 2:
        return ()
    return get_args(literals[0])


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, (annotation, False) otherwise."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False
