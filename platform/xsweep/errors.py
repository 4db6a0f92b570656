"""Problems a user can fix: the CLI prints the line and exits with 2; tracebacks are for our bugs.

Every kind is here, each named after the room whose input it is about, so that any module can
raise one without importing that room. Kept import-free: the fast spec checker uses it too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix; str(error) is one line per problem naming the field and the fix."""

    # Printed before the message; spec errors start with the file name instead.
    prefix = "xsweep: "


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


class DataError(UserError):
    """The data a spec names is missing or malformed (data.root, data.val_fraction, ...)."""


class StorageError(UserError):
    """A storage the sweep cannot use (no credentials, server down, no bucket, no such folder)."""


class TrackingError(UserError):
    """The tracking store cannot be reached or used (tracking.uri, --tracking-uri, credentials)."""


class ClusterError(UserError):
    """A Ray cluster problem: --address, or resources no node has."""


class SweepError(UserError):
    """A sweep that cannot be found, started or resumed."""


class ReportError(UserError):
    """A report's arguments: the experiment, --sweep, --out."""


class ReproduceError(UserError):
    """A reproduction's arguments: --experiment, --run, --tolerance."""


class SubmitError(UserError):
    """A job submission: --address, the Ray token, the project folder."""


# The Python API (xsweep/__init__.py) takes the CLI's flags as keyword arguments of the flag's name
# with underscores, but for these; `--set PATH=VALUE` is an entry of `overrides`.
PYTHON_ARGUMENTS = {"--run": "run_id"}
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z-]*)(:?)")
_SET = re.compile(r"(^|\n)--set |(?<![\w-])--set ")


def in_python_words(error: UserError) -> UserError:
    """The same error naming the Python API's keyword arguments where the CLI's flags stood:
    `--tracking-uri: ...` reads `tracking_uri: ...`, `pass another --sweep` reads `pass another sweep=`."""
    def name(match: re.Match) -> str:
        flag, colon = f"--{match.group(1)}", match.group(2)
        python = PYTHON_ARGUMENTS.get(flag, match.group(1).replace("-", "_"))
        return f"{python}{colon}" if colon else f"{python}="

    def override(match: re.Match) -> str:  # `--set train.lr: ...` names the entry; mid-sentence, it adds one
        return f"{match.group(1)}overrides " if match.group(1) is not None else "the override "

    text = _FLAG.sub(name, _SET.sub(override, str(error)))
    if isinstance(error, SpecError):
        return SpecError(text)
    return type(error)(text)


# Phrases of network errors worth showing as they are; anything else shows its first line.
KNOWN_REASONS = ("Connection refused", "Name or service not known", "timed out", "could not connect",
                 "No route to host")


def reason(exc: BaseException, *, width: int = 160) -> str:
    """Why a library call failed, short enough for a one-line message: a known network phrase,
    else the first line of the exception's text (libraries' messages run to pages)."""
    text = str(exc).strip()
    for known in KNOWN_REASONS:
        if known.lower() in text.lower():
            return known.lower()
    return (text.splitlines()[0] if text else type(exc).__name__)[:width]
