"""`xsweep report EXPERIMENT`: the ablation report of a sweep, from MLflow alone.

The paper's Figures 9 (residual connections) and 10 (activation between depthwise and pointwise)
as learning curves of any sweep, final accuracy per factor level with paired differences and
plain verdicts, hyperparameter importance, and the best trial with the command that reproduces it.
Writes report.html (self-contained), report.md, report.json (every number, machine-readable) and
the PNGs into --out, and logs them under "report/" on the sweep's parent run.

One concern per module: report_data (reading MLflow), report_stats (pure statistics),
report_analysis (the numbers), report_figures (PNGs), report_render (Markdown and HTML).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXIT_OK = 0


def make_report(*, experiment: str, sweep: str | None = None, out: str | os.PathLike | None = None,
                tracking_uri: str | None = None, workdir: str | os.PathLike | None = None,
                log_artifacts: bool = True) -> Path:
    """Write the report of the experiment's sweep (latest unless `sweep`) and return its folder."""
    from xsweep.report import analysis as report_analysis
    from xsweep.report import data as report_data
    from xsweep.report import figures as report_figures
    from xsweep.report import render as report_render

    workdir = str(workdir or os.getcwd())
    uri = report_data.tracking_uri(tracking_uri, workdir=workdir)
    client, data = report_data.load_sweep(uri, experiment=experiment, sweep=sweep)
    folder = Path(out) if out else Path(workdir, "reports", f"{_safe(experiment)}-{data.run_id[:8]}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise report_data.ReportError(f"--out: cannot create {folder}: {exc.strerror} "
                                      "(pick a writable folder)") from None
    summary = report_analysis.summarize(data, workdir=workdir)
    figures = report_figures.draw_all(folder, summary)
    files = report_render.write(folder, summary, figures)
    if log_artifacts:
        from xsweep.tracking.runs import set_tags

        for name in files:
            client.log_artifact(data.run_id, str(folder / name), artifact_path="report")
        set_tags(client, data.run_id, {"xsweep.report": "report/report.html"})
    return folder


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def cmd_report(args) -> int:
    folder = make_report(experiment=args.experiment, sweep=args.sweep, out=args.out,
                         tracking_uri=args.tracking_uri, log_artifacts=not args.no_log)
    print(f"report: {folder / 'report.html'}")
    print(f"        {folder / 'report.md'}")
    if not args.no_log:
        print("logged to the sweep's parent run under report/")
    return EXIT_OK


def add_commands(sub) -> None:
    """Register `xsweep report` on the CLI's subparsers."""
    p = sub.add_parser("report", help="the ablation report of a sweep (curves, statistics, importance, best trial)")
    p.add_argument("experiment", metavar="EXPERIMENT", help="the MLflow experiment of the sweep (the spec's name)")
    p.add_argument("--sweep", default=None, metavar="RUN_ID", help="the sweep's parent run id (default: the latest)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: ./reports/<experiment>-<sweep run id, short>)")
    p.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else ./mlflow.db")
    p.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's parent run")
    p.set_defaults(func=cmd_report)


if __name__ == "__main__":  # `python -m xsweep.report EXPERIMENT ...` until the CLI wires it
    import argparse

    from xsweep.errors import UserError

    parser = argparse.ArgumentParser(prog="xsweep")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *sys.argv[1:]])
    try:
        sys.exit(args.func(args))
    except UserError as exc:
        print(f"xsweep: {exc}", file=sys.stderr)
        sys.exit(2)
