"""The report's sections, in order: one registry entry each, holding both what the section computes
from the sweep (its analysis, whose keys report.json holds) and what it shows (its blocks).

`summarize` computes what several sections share once (analysis.Shared, and the summary's common
keys: the sweep, its trials, the outcome), then each section's analysis; `blocks` turns the summary
into the document, section by section.

Adding a section is one `SECTIONS.add(Section(...))` (before="trials" keeps the appendix last),
plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xsweep.registry import Registry
from xsweep.report import render
from xsweep.report.analysis import (Shared, best_trial, common_summary, curves, factor_table, importance, pareto,
                                    shared_parts, variants)
from xsweep.report.data import SweepData
from xsweep.report.render import Blocks


@dataclass(frozen=True)
class Section:
    name: str
    title: str | None  # its level-2 heading; None for the opening, which has the document's title
    render: Callable[[dict, dict[str, str]], Blocks]  # (summary, {figure key: file}) -> its blocks
    # (the sweep, what the sections share) -> the keys it adds to the summary, for its blocks and
    # figures to read; a section that shows only the common keys adds none.
    analyze: Callable[[SweepData, Shared], dict] = lambda data, shared: {}
    numbered: bool = True  # "## 2. <title>"; an appendix is not numbered
    # Whether the sweep has what the section is about (a Pareto front needs several objectives).
    applies: Callable[[dict], bool] = lambda summary: True


SECTIONS: Registry[Section] = Registry("report section")
SECTIONS.add(Section("overview", None, render.overview_blocks))
SECTIONS.add(Section("ablation", "Ablation verdict", render.ablation_blocks,
                     analyze=lambda data, shared: {"ablation": shared.verdict},
                     applies=lambda summary: bool(summary["ablation"])))
SECTIONS.add(Section("curves", "Learning curves", render.curves_blocks, analyze=lambda data, shared: {
    "curves": {path: curves(data, shared.compared, path, shared.lr_groups) for path in shared.factor_paths}}))
SECTIONS.add(Section("factors", "Final validation accuracy per factor", render.factors_blocks,
                     analyze=lambda data, shared: {"factors": [factor_table(data, shared.compared, path)
                                                               for path in shared.factor_paths]}))
SECTIONS.add(Section("importance", "Hyperparameter importance", render.importance_blocks,
                     analyze=lambda data, shared: {"importance": importance(data, shared.finished),
                                                   "variants": variants(data, shared.finished, shared.factor_paths)}))
SECTIONS.add(Section("pareto", "Pareto front", render.pareto_blocks,
                     analyze=lambda data, shared: {"pareto": pareto(data, shared.finished)},
                     applies=lambda summary: bool(summary["pareto"])))
SECTIONS.add(Section("best", "Best trial and how to reproduce it", render.best_blocks,
                     analyze=lambda data, shared: {"best": best_trial(data, shared.finished, uri=data.uri,
                                                                      workdir=shared.workdir, verdict=shared.verdict)}))
SECTIONS.add(Section("trials", "All trials", render.trials_blocks, numbered=False))


def summarize(data: SweepData, *, workdir: str) -> dict:
    """What report.json holds: the common keys, then each section's own."""
    shared = shared_parts(data, workdir=workdir)
    summary = common_summary(data, shared)
    for section in SECTIONS:
        found = section.analyze(data, shared)
        # A key set twice would silently hide one section's numbers from another's blocks.
        if taken := sorted(summary.keys() & found.keys()):
            raise ValueError(f"report section {section.name!r} sets {', '.join(taken)}, which the summary holds "
                             "already")
        summary |= found
    return summary


def blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    """The whole document: every section that applies, in order, numbered ones as "## n. title"."""
    out: Blocks = []
    number = 0
    for section in SECTIONS:
        if not section.applies(summary):
            continue
        if section.title is not None:
            number += section.numbered
            out.append(("h", 2, f"{number}. {section.title}" if section.numbered else section.title))
        out += section.render(summary, figures)
    return out
