"""A registry: named entries that a spec field may name, in the order they were added.

Each extension point of xsweep (metrics, datasets, search algorithms, trial schedulers) is one
`Registry`, and every consumer reads it: the spec's check of the field, the code that uses the
entry, the messages that list what is allowed. Adding an entry is one `add` call.

Entries are registered when their module is imported, in each process that imports it: the driver
and the trial processes import the same modules, so they see the same entries.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # what an entry is, for messages: "dataset", "search algorithm", ...
        self._entries: dict[str, T] = {}

    def add(self, entry: T, *, before: str | None = None) -> T:
        """Register `entry` under `entry.name`, last or `before` another entry (where order shows,
        as in the report's sections); a name already taken is a bug, not an override."""
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        if before is None:
            self._entries[entry.name] = entry
        else:
            items = list(self._entries.items())
            at = [name for name, _ in items].index(before)
            self._entries = dict([*items[:at], (entry.name, entry), *items[at:]])
        return entry

    def remove(self, name: str) -> None:
        """Take an entry out again (tests that register a toy entry clean up with this)."""
        del self._entries[name]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._entries.values()))

    def unknown(self, name: object) -> str:
        """The message for a name nothing is registered under, with the closest one if any."""
        close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.7)
        hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(self.names())}"
        return f"unknown {self.kind} {name!r} ({hint})"


def import_object(path: str):
    """The object at "package.module:attribute": how an entry names code that only one side of a
    sweep may import (a dataset's loader needs torch, which the driver never imports)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
