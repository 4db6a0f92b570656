"""The report's PNGs, drawn with matplotlib from the summary dict alone.

Figures are made as `matplotlib.figure.Figure` objects, not through pyplot: no backend is chosen
and no global state is touched (pyplot's figure manager, its backend), so importing or using this
module changes nothing for a notebook that also plots. Saving a Figure to PNG uses Agg by itself.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from xsweep.metrics import METRICS, curve_metrics

DPI = 100


def _slug(path: str) -> str:
    return path.split(".")[-1].replace("_", "-")


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI, bbox_inches="tight")
    return name


def _title(metric: str) -> str:
    """validation accuracy (%), training loss: the metric's label from xsweep.metrics."""
    entry = METRICS.get(metric)
    return f"{entry.label} (%)" if entry.percent else entry.label


def _colors() -> list[str]:
    return rcParams["axes.prop_cycle"].by_key()["color"]


def curves_figure(out: Path, path: str, factor_name: str, panels: list[dict]) -> str:
    """Rows: validation accuracy and training loss per epoch; columns: learning-rate panels; one line
    per level (the mean over its trials) with a band for the 95% CI of that mean."""
    metrics = list(curve_metrics())
    cols = max(1, len(panels))
    fig = Figure(figsize=(4.2 * cols, 3.4 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), cols, squeeze=False, sharey="row")
    colors = _colors()
    labels = []
    for c, panel in enumerate(panels):
        for li, line in enumerate(panel["lines"]):
            if line["label"] not in labels:
                labels.append(line["label"])
            color = colors[labels.index(line["label"]) % len(colors)]
            for r, metric in enumerate(metrics):
                curve = line["metrics"].get(metric) or {}
                epochs = curve.get("epochs") or []
                if not epochs:
                    continue
                scale = 100.0 if METRICS.get(metric).percent else 1.0
                mean = [m * scale for m in curve["mean"]]
                ax = axes[r][c]
                ax.plot(epochs, mean, marker="o", ms=3, color=color, label=f"{line['label']} (n={line['n']})")
                band = [(e, lo * scale, hi * scale) for e, lo, hi in zip(epochs, curve["low"], curve["high"])
                        if lo is not None and hi is not None]
                if band:
                    ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                                    color=color, alpha=0.2, linewidth=0)
        for r, metric in enumerate(metrics):
            ax = axes[r][c]
            ax.set_title(f"{panel['label']}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if c == 0:
                ax.set_ylabel(_title(metric))
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    fig.suptitle(f"Learning curves by {factor_name} (mean, band = 95% CI over trials)", fontsize=11)
    return _save(fig, out, f"curves-{_slug(path)}.png")


def importance_figure(out: Path, importance: dict) -> str | None:
    values = importance.get("values") or {}
    if not values:
        return None
    names = list(values)[::-1]
    fig = Figure(figsize=(6, 0.5 * len(names) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [values[n] for n in names], color="#4c72b0")
    ax.set_xlabel(importance["axis"])
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Hyperparameter importance ({importance['name']})", fontsize=11)
    return _save(fig, out, "importance.png")


def accuracy_vs_lr(variants: list[dict]) -> Figure:
    """Final accuracy against learning rate on a log axis with its usual ticks (decades, and
    labelled minor ticks on a short range): one tick per trial's rate would overprint."""
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    ax = fig.subplots()
    colors = _colors()
    for i, variant in enumerate(variants):
        color = colors[i % len(colors)]
        xs = [p["lr"] for p in variant["points"]]
        ys = [100 * p["accuracy"] for p in variant["points"]]
        ax.scatter(xs, ys, color=color, s=18, alpha=0.7, label=variant["label"])
        means = variant["means"]
        if len(means) > 1 and any(m["n"] > 1 for m in means):
            ax.plot([m["lr"] for m in means], [100 * m["mean"] for m in means], color=color, alpha=0.8)
    ax.set_xscale("log")
    lrs = sorted({p["lr"] for v in variants for p in v["points"]})
    if len(lrs) == 1:  # a log axis needs a range around a single point
        ax.set_xlim(lrs[0] / 1.5, lrs[0] * 1.5)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"final {_title('val_accuracy')}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    # Lines only where a variant ran several seeds at more than one rate (a grid with repeats).
    lines = "; lines: mean over seeds" if ax.lines else ""
    ax.set_title(f"Final accuracy against learning rate, per variant (points: trials{lines})", fontsize=10)
    return fig


def accuracy_vs_lr_figure(out: Path, variants: list[dict]) -> str | None:
    if not variants:
        return None
    return _save(accuracy_vs_lr(variants), out, "accuracy-vs-lr.png")


def _axis_values(metric: str, values: list[float]) -> list[float]:
    return [100 * v for v in values] if METRICS.get(metric).percent else values


def _objective_label(objective: dict) -> str:
    """"final validation accuracy (%), max"; a model's own size or FLOPs is not "final"."""
    metric = objective["metric"]
    final = "" if METRICS.get(metric).source == "model" else "final "
    return f"{final}{_title(metric)}, {objective['mode']}"


def pareto_figure(out: Path, pareto: dict) -> str:
    """The first two objectives of every completed trial, the front's trials joined in rank order
    and numbered as in the report's table."""
    (x_metric, y_metric) = (o["metric"] for o in pareto["objectives"][:2])
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    others = pareto["others"]
    if others:
        ax.scatter(_axis_values(x_metric, [o["values"][0] for o in others]),
                   _axis_values(y_metric, [o["values"][1] for o in others]),
                   color="#999999", s=18, alpha=0.7, label="dominated")
    xs = _axis_values(x_metric, [f["values"][0] for f in pareto["front"]])
    ys = _axis_values(y_metric, [f["values"][1] for f in pareto["front"]])
    color = _colors()[3]
    ax.plot(xs, ys, color=color, marker="o", label="Pareto front")
    for member, x, y in zip(pareto["front"], xs, ys):
        ax.annotate(str(member["rank"]), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(_objective_label(pareto["objectives"][0]))
    ax.set_ylabel(_objective_label(pareto["objectives"][1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Completed trials and their Pareto front", fontsize=10)
    return _save(fig, out, "pareto-front.png")


def draw_all(out: Path, summary: dict) -> dict[str, str]:
    """Every figure; returns {key: file name} (keys: 'curves:<path>', 'importance', 'accuracy_vs_lr',
    'pareto')."""
    files = {}
    factor_names = {f["path"]: f["name"] for f in summary["factors"]}
    for path, panels in summary["curves"].items():
        files[f"curves:{path}"] = curves_figure(out, path, factor_names.get(path, path), panels)
    name = importance_figure(out, summary["importance"])
    if name:
        files["importance"] = name
    name = accuracy_vs_lr_figure(out, summary["variants"])
    if name:
        files["accuracy_vs_lr"] = name
    if summary.get("pareto") and summary["pareto"]["front"]:
        files["pareto"] = pareto_figure(out, summary["pareto"])
    return files
