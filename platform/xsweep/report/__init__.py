"""`xsweep report EXPERIMENT`: the ablation report of a sweep, from MLflow alone.

The paper's Figures 9 (residual connections) and 10 (activation between depthwise and pointwise)
as learning curves of any sweep, final accuracy per factor level with paired differences and
plain verdicts, hyperparameter importance, and the best trial with the command that reproduces it.
Writes report.html (self-contained), report.md, report.json (every number, machine-readable) and
the PNGs into --out, and logs them under "report/" on the sweep's parent run.

data -> analysis -> stats -> figures -> render, one concern per module: data (reading MLflow),
analysis (the numbers), stats (pure statistics), figures (PNGs), render (each section's text, and
the document as Markdown and HTML), sections (the sections in order, each entry pairing its
analysis with its text: `summarize` and `blocks`), make (all of it for one sweep: `make_report`).
"""
