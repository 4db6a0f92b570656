"""What every benchmark writes beside its numbers: the machine it ran on, the commit it measured, and
its results file.

Imported by the sibling scripts (run as `python benchmarks/NAME.py`, so this folder is on sys.path).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def commit_text(*paths: str) -> str:
    """HEAD, and whether `paths` (every tracked file when none is given) had uncommitted changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    where = f" under {', '.join(p + '/' for p in paths)}" if paths else ""
    return git("rev-parse", "HEAD") + (f" (with uncommitted changes{where})" if dirty else "")


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
