"""Making a report: read the sweep from MLflow, analyse it, draw its figures, write its files,
and log them to the sweep's parent run."""

from __future__ import annotations

import os
from pathlib import Path

from xsweep.errors import ReportError
from xsweep.report import analysis, data, figures, render, sections
from xsweep.tracking.writes import set_tags
from xsweep.tracking.store import experiment_and_uri, resolve_uri
from xsweep.tracking.tags import TAG_REPORT


def make_report(*, experiment: str | None = None, spec=None, sweep: str | None = None,
                out: str | os.PathLike | None = None, tracking_uri: str | None = None,
                workdir: str | os.PathLike | None = None, log_artifacts: bool = True,
                importance: str = analysis.DEFAULT_IMPORTANCE) -> Path:
    """Write the report of the experiment's sweep (latest unless `sweep`) and return its folder. A
    `spec` (load_spec) names the experiment and its store (its tracking.uri) in one. `importance`
    names the hyperparameter importance's evaluator: "ped-anova" (Optuna's default) or "fanova"."""
    if importance not in analysis.IMPORTANCE_EVALUATORS:
        raise ReportError(f"importance: no evaluator {importance!r} (pick one of "
                          f"{', '.join(analysis.IMPORTANCE_EVALUATORS)})")
    workdir = str(workdir or os.getcwd())
    experiment, tracking_uri, given_as = experiment_and_uri(experiment=experiment, spec=spec,
                                                            tracking_uri=tracking_uri, error=ReportError)
    uri = resolve_uri(tracking_uri, workdir=workdir, given_as=given_as)
    client, sweep_data = data.load_sweep(uri, experiment=experiment, sweep=sweep, flag=given_as)
    folder = Path(out) if out else Path(workdir, "reports", f"{_safe(experiment)}-{sweep_data.run_id[:8]}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--out: cannot create {folder}: {exc.strerror} (pick a writable folder)") from None
    summary = sections.summarize(sweep_data, workdir=workdir)
    if importance != analysis.DEFAULT_IMPORTANCE:  # the importance section computes the default one
        summary["importance"] = analysis.importance(sweep_data, [t for t in sweep_data.trials if t.finished],
                                                    evaluator=importance)
    drawn = figures.draw_all(folder, summary)
    files = [*render.write_report(folder, summary, sections.blocks(summary, drawn)), *drawn.values()]
    if log_artifacts:
        for name in files:
            client.log_artifact(sweep_data.run_id, str(folder / name), artifact_path="report")
        set_tags(client, sweep_data.run_id, {TAG_REPORT: "report/report.html"})
    return folder


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
