"""The report's PNGs, drawn with matplotlib (Agg, no display) from the summary dict alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

DPI = 100
_METRIC_TITLES = {"val_accuracy": "validation accuracy (%)", "train_loss": "training loss"}


def _slug(path: str) -> str:
    return path.split(".")[-1].replace("_", "-")


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return name


def curves_figure(out: Path, path: str, factor_name: str, panels: list[dict]) -> str:
    """Rows: validation accuracy and training loss per epoch; columns: learning-rate panels; one line
    per level (the mean over its trials) with a band for the 95% CI of that mean."""
    metrics = list(_METRIC_TITLES)
    cols = max(1, len(panels))
    fig, axes = plt.subplots(len(metrics), cols, figsize=(4.2 * cols, 3.4 * len(metrics)), squeeze=False,
                             sharey="row", layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
                scale = 100.0 if metric.endswith("accuracy") else 1.0
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
                ax.set_ylabel(_METRIC_TITLES[metric])
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
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.2), layout="constrained")
    ax.barh(names, [values[n] for n in names], color="#4c72b0")
    ax.set_xlabel("importance (fraction of variance of final val accuracy)")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Hyperparameter importance (fANOVA)", fontsize=11)
    return _save(fig, out, "importance.png")


def accuracy_vs_lr_figure(out: Path, variants: list[dict]) -> str | None:
    if not variants:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
    if len(lrs) <= 6:  # a grid: tick exactly its learning rates
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        if len(lrs) == 1:
            ax.set_xlim(lrs[0] / 1.5, lrs[0] * 1.5)
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("final validation accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Final accuracy against learning rate, per variant (lines: mean over seeds)", fontsize=10)
    return _save(fig, out, "accuracy-vs-lr.png")


def draw_all(out: Path, summary: dict) -> dict[str, str]:
    """Every figure; returns {key: file name} (keys: 'curves:<path>', 'importance', 'accuracy_vs_lr')."""
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
    return files
