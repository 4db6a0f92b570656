"""Words the console, the summary and the messages share."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """"1 trial", "4 trials", "0 trials": a count with its noun, plural unless it is one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
