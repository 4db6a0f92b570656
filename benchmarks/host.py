"""What every benchmark writes beside its numbers: the machine it ran on, and its results file.

Imported by the sibling scripts (run as `python benchmarks/NAME.py`, so this folder is on sys.path).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def targets_table(rows: list[tuple[str, str, str, bool | None]]) -> list[str]:
    """Markdown rows of (measure, measured, target, met); met None: a figure with no target."""
    return [
        "| measure | measured | target | met |",
        "|---|---|---|---|",
        *[f"| {name} | {value} | {target} | {'' if ok is None else ('yes' if ok else 'no')} |"
          for name, value, target, ok in rows],
    ]


def write_results(path: Path, lines: list[str]) -> None:
    """The results file, written by the script itself (never by hand), and echoed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print("\n".join(lines))
