"""The report's text: each section's blocks, drawn from the summary (sections.py pairs each with
the analysis it shows and puts them in order), and the document they make written out as
report.md and as a self-contained report.html (CSS inline, every PNG embedded as a base64 data
URI, nothing fetched from anywhere)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from xsweep.metrics import METRICS
from xsweep.text import counted
from xsweep.report.stats import METHOD, MIN_N, level_text

FIGURE_OF = {"model.residual": "the Figure 9 analogue", "model.activation": "the Figure 10 analogue"}


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def ci_text(low: float | None, high: float | None, digits: int = 2) -> str:
    return "n/a" if low is None or high is None else f"[{pct(low, digits)}, {pct(high, digits)}]"


def duration(seconds: float | None) -> str:
    """Device time as a reader compares it: 42 s, 12.3 min, 1.52 h."""
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def price_text(price: dict) -> str:
    """What a verdict cost, and for an undecided one what would decide it: '0.0123 device-hours on the
    variants it compares (phase 1 0.0050, phase 2 0.0073); about 4 more seeds ...'."""
    tune, confirm = price.get("tune_hours"), price.get("confirm_hours")
    if tune is None and confirm is None:
        text = "device time not recorded"
    else:
        text = (f"{(tune or 0) + (confirm or 0):.3g} device-hours on the variants it compares (phase 1 "
                f"{tune or 0:.3g}, phase 2 {confirm or 0:.3g})")
    if "more_seeds" in price:
        more = price["more_seeds"]
        text += (f"; undecided: about {more} more seed{'s' if more != 1 else ''} per variant would decide it with "
                 "80% power, were the difference and its spread those observed (a smaller true difference needs more)"
                 if more is not None else
                 "; undecided, with no estimate of the seeds that would decide it (the observed difference is zero, "
                 "or too small for its spread)")
    return text


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (bool, type(None))) else str(value)


# ---- each section's blocks: (summary, {figure key: file}) -> blocks ------------------------------
Blocks = list[tuple]  # ('h', level, text) | ('p', text) | ('ul', [text]) | ('table', headers, rows)
#                       | ('img', file, alt) | ('code', text)


def overview_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    sweep, trials = summary["sweep"], summary["trials"]
    out: Blocks = [("h", 1, f"Ablation report: {summary['experiment']}")]
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(trials["by_status"].items()))
    out.append(("p", f"Sweep run {sweep['run_id']} ({sweep['run_name']}), status {sweep['status']}; "
                     f"search {sweep['algorithm']} with {sweep['repeats']} seed(s) per configuration, "
                     f"{sweep['epochs']} epochs per trial; MLflow {sweep['tracking_uri']}."))
    out.append(("p", f"Trials: {trials['total']} ({statuses}). The outcome throughout is {summary['outcome']}. "
                     f"Only the {trials['finished']} completed trials enter the curves, means, intervals and "
                     "importance; diverged, failed, stopped or unfinished trials are counted here and "
                     "listed below, and excluded from every mean."))
    if sweep.get("device_seconds") is not None:
        out.append(("p", f"Cost: {duration(sweep['device_seconds'])} of device time over all trials "
                         "(seconds each trial held its devices, summed over them)."))
    if summary.get("startup"):
        out.append(("p", _startup_text(summary["startup"])))
    if trials["excluded"]:
        out.append(("p", f"Excluded ({len(trials['excluded'])}):"))
        out.append(("ul", [f"{e['name']} (run {e['run_id']}): {e['reason']}" for e in trials["excluded"]]))
    else:
        out.append(("p", "Excluded: none."))
    return out


def _startup_text(startup: dict) -> str:
    """How fast the trials started training, one sentence per start-up metric logged."""
    def spread(name: str) -> str:
        m = startup[name]
        return f"{m['median']:.1f} s (median of {m['n']} trials; {m['min']:.1f} to {m['max']:.1f} s)"

    parts = []
    if "startup_seconds" in startup:
        parts.append(f"a trial's first training step came {spread('startup_seconds')} after its start "
                     "(torch's import and CUDA's start included for the first trial of a process)")
    if "first_epoch_extra_seconds" in startup:
        parts.append(f"its first epoch took {spread('first_epoch_extra_seconds')} more than the same steps at "
                     "the second epoch's pace")
    if "compile_seconds" in startup:
        parts.append(f"torch.compile took {spread('compile_seconds')}")
    return "Start-up: " + "; ".join(parts) + "."


def curves_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    out: Blocks = [("p", summary["lr_groups"]["text"] + " In each panel a line is the mean over the completed "
                         "trials of one level (pooling the seeds and the other factors' levels); its band is the "
                         f"95% t-interval of that mean, clipped to what the metric can be (none where a line has "
                         f"fewer than {MIN_N} trials).")]
    names = {f["path"]: f["name"] for f in summary["factors"]}
    for path in summary["curves"]:
        which = FIGURE_OF.get(path)
        out.append(("h", 3, f"By {names.get(path, path)}" + (f" ({which})" if which else "")))
        if f"curves:{path}" in figures:
            out.append(("img", figures[f"curves:{path}"], f"learning curves by {names.get(path, path)}"))
    if not summary["curves"]:
        out.append(("p", "No categorical factor was searched: there are no levels to compare."))
    return out


def factors_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    if summary.get("ablation"):
        how = ("An ablation: phase 2's completed trials only, each variant at its own tuned settings; differences "
               "are paired by seed and by the other factors' levels, as the verdict pairs them; n counts pairs. ")
    elif summary["sweep"]["grid"]:
        how = ("Differences are paired: each pair shares every other searched value (the learning rate "
               "included) and the seed, which the grid guarantees; n counts pairs. ")
    else:
        how = ("The sweep is not a grid, so trials do not come in pairs: differences use Welch's "
               "unpaired t-interval; n counts the trials of each level. ")
    corrected = (" The ablation verdict is the one corrected for its family of comparisons (Holm)."
                 if summary.get("ablation") else "")
    out: Blocks = [("p", how + f"Means and differences (the first level minus the second) in percentage points, "
                              f"with {METHOD}; each interval and verdict here is per comparison (exploratory), "
                              "not corrected for multiplicity." + corrected)]
    for factor in summary["factors"]:
        out.append(("h", 3, f"{factor['name']} ({factor['path']})"))
        out.append(("table", ["level", "mean (%)", "95% CI (%)", "n", "device time per trial"],
                    [[lv["label"], pct(lv["mean"]), ci_text(lv["ci_low"], lv["ci_high"]), str(lv["n"]),
                      duration(lv.get("device_seconds"))] for lv in factor["levels"]]))
        if factor["comparisons"]:
            rows = []
            for c in factor["comparisons"]:
                n = f"{c['n']} and {c['n_b']}" if c["n_b"] else str(c["n"])
                rows.append([f"{c['label_a']} - {c['label_b']}", pct(c["difference"]),
                             ci_text(c["ci_low"], c["ci_high"]), n, c["test"],
                             "n/a" if c["p_value"] is None else f"{c['p_value']:.3g}"])
            out.append(("table", ["difference", "pp", "95% CI (pp)", "n", "test", "p"], rows))
            verdicts = [f"Verdict: {c['verdict']}." for c in factor["comparisons"]]
            dropped = sum(c["without_partner"] for c in factor["comparisons"])
            if dropped:
                verdicts.append(f"{dropped} trial(s) had no completed partner and were left out of the pairs.")
            out.append(("ul", verdicts))
        else:
            out.append(("p", "Only one level completed: nothing to compare."))
    return out


def importance_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    imp = summary["importance"]
    out: Blocks = []
    if imp["values"]:
        out.append(("p", f"{imp['method']} over the {imp['n']} completed trials, target: {imp['target']}. "
                         "Importances sum to 1."))
        out.append(("table", ["parameter", "importance"], [[p, f"{v:.3f}"] for p, v in imp["values"].items()]))
        if "importance" in figures:
            out.append(("img", figures["importance"], "hyperparameter importance"))
    else:
        out.append(("p", f"Importance {imp['error']}."))
    out.append(("h", 3, "Accuracy against learning rate, per variant"))
    if "accuracy_vs_lr" in figures:
        out.append(("img", figures["accuracy_vs_lr"], "final accuracy against learning rate"))
    return out


def best_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    best = summary["best"]
    if not best:
        return [("p", "No trial completed: there is no best trial.")]
    return [
        ("p", f"{best['name']} (run {best['run_id']}, status {best['status']}, seed {best['seed']}): "
              f"final val accuracy {pct(best['final_val_accuracy'])}%, best over its epochs "
              f"{pct(best['best_val_accuracy'])}%. Chosen as {best['source']}."),
        ("table", ["searched", "value"], [[p, _value(v)] for p, v in sorted(best["searched"].items())]),
        ("p", "Reproduce it (re-trains from the config MLflow holds and compares every epoch):"),
        ("code", best["command"]),
    ]


def pareto_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    pareto = summary["pareto"]
    objectives = pareto["objectives"]
    names = ", ".join(f"{o['metric']} ({o['mode']})" for o in objectives)
    out: Blocks = [("p", f"The sweep searched {len(objectives)} objectives: {names}. Of the completed trials, "
                         f"{len(pareto['front'])} are on the Pareto front (no other completed trial is as good on "
                         "every objective and better on one), by final values; the sweep tagged them "
                         "xsweep.pareto = true and logged the table as pareto_front.csv on its parent run.")]
    if "pareto" in figures:
        out.append(("img", figures["pareto"], "the completed trials and their Pareto front"))
    searched = sorted({path for member in pareto["front"] for path in member["searched"]})
    rows = [[str(m["rank"]), m["name"], *(METRICS.get(o["metric"]).show(v) for o, v in zip(objectives, m["values"])),
             *(_value(m["searched"].get(path)) for path in searched), m["run_id"]] for m in pareto["front"]]
    out.append(("table", ["rank", "trial", *(o["metric"] for o in objectives), *searched, "run id"], rows))
    out.append(("p", "Reproduce the front's N-th trial: xsweep reproduce --experiment "
                     f"{summary['experiment']} --pick N{summary['sweep'].get('store_flag', '')}"))
    return out


def pp_text(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}"


def ablation_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    verdict = summary["ablation"]
    seeds = ", ".join(str(s) for s in verdict["seeds"]) or "none completed"
    out: Blocks = [("p", f"An ablation study in two phases. Phase 1 tuned each of the {len(verdict['variants'])} "
                         f"variants with its own search ({counted(verdict['budget'], 'trial')} each), so that no variant is "
                         "judged at another's learning rate. Phase 2 re-trained each variant's best configuration "
                         f"with {_seeds_text(verdict)} ({seeds}). {_what_a_seed_draws(verdict)} Differences are of final "
                         "validation accuracy, in percentage points, paired by seed and by the other factors' "
                         "levels, over phase 2's completed trials, with "
                         f"{METHOD}; where the interval spans zero, this budget cannot decide (more "
                         "ablation.confirm_seeds narrow it). A verdict names the winner first; the tables' "
                         "differences are the level minus the reference, as their headers say."),
                   ("p", _family_text(verdict["family"]))]
    for factor in verdict["factors"]:
        for c in factor["comparisons"]:
            out.append(("h", 3, f"{c['label']} against {c['reference_label']}"))
            out.append(("p", f"Verdict: {c['verdict']}."))
            out.append(("p", f"Price: {price_text(c['price'])}."))
            if c["paper"]:
                out.append(("p", f"The paper: {c['paper']['claim']}. This sweep: {c['paper']['finding']}."))
            out.append(("table", ["within", "pairs", f"{c['label']} - {c['reference_label']} (pp)", "95% CI (pp)",
                                  "exploratory verdict (uncorrected)"],
                        [[r["at"], str(r["n"]), pp_text(r["difference"]),
                          ci_text(r["ci_low"], r["ci_high"], 1), r["verdict"]] for r in c["within"]]))
    out.append(("h", 3, "Each variant at its own tuned settings"))
    out.append(("table", ["variant", "tuned", "phase-1 trials (completed)", "seeds", "final val accuracy (%)", "95% CI",
                          "device time (both phases)"],
                [[v["label"], v["tuned_text"], f"{v['tune_trials']} ({v['tune_completed']})", str(v["n"]),
                  pct(v["mean"]), ci_text(v["ci_low"], v["ci_high"]), duration(v.get("device_seconds"))]
                 for v in verdict["variants"]]))
    return out


def _what_a_seed_draws(verdict: dict) -> str:
    if verdict.get("split_seed"):
        return ("A seed draws a trial's initial weights, data order, augmentation and validation split "
                "(ablation.split_seed), so the intervals cover the split's variation too.")
    return ("A seed draws a trial's initial weights, data order and augmentation; every trial is measured on "
            "the one validation split that train.seed draws (ablation.split_seed: true redraws it per seed).")


def _seeds_text(verdict: dict) -> str:
    seeds = verdict["confirm_seeds"]
    if isinstance(seeds, dict):
        return (f"the same fresh seeds, {seeds['min']} for every variant and then one a round for the variants whose "
                f"comparisons were still open, up to {seeds['max']}")
    return f"the same {seeds} fresh seeds"


def _family_text(family: dict) -> str:
    """What the verdicts are corrected for, and how their p-values and intervals read."""
    if "sequential" in family:
        return _sequential_text(family)
    m, alpha = family["size"], family["alpha"]
    if m == 0:
        return f"No comparison has the {MIN_N} pairs a test needs: there is no family to correct."
    untested = f" (not counted: {family['untested']} more with too few pairs to test)" if family["untested"] else ""
    levels = (f"from {level_text(1 - alpha / m)}% for the smallest p to {level_text(1 - alpha)}% for the largest; "
              "after a step where Holm stops, that step's level" if m > 1 else
              f"{level_text(1 - alpha)}%: a family of one is the plain test")
    return (f"The verdicts are one family: {m} comparison{'s' if m != 1 else ''}, Holm{untested}, every "
            "non-reference level of each factor against that factor's reference. Holm's step-down method "
            f"keeps the chance of any false \"beats\" among them below {level_text(alpha)}%, where "
            f"{level_text(1 - alpha)}% per comparison would let it grow with their number. Each verdict "
            "gives its raw p (the paired t-test's, two-sided) and its Holm-adjusted p, and is worded by the "
            f"adjusted one; its interval is at the level of its Holm step, 1 - {alpha:g} / (m - step + 1) "
            f"({levels}), so that it excludes zero exactly when the adjusted p is below {alpha:g}. The tables "
            "within each level of the other factors are exploratory: 95% per row, not corrected for multiplicity.")


def _sequential_text(family: dict) -> str:
    design, alpha, m = family["sequential"], family["alpha"], family["size"]
    return (f"The verdicts are one family of {m} comparison{'s' if m != 1 else ''}, judged sequentially: "
            f"{design['method']}. After {design['min']} seeds and after each seed added, every comparison still "
            f"open is tested at {level_text(alpha)}% / (the comparisons still open), its boundary on |t| drawn "
            "from that share of the error spent so far; a comparison past its boundary is decided and takes no "
            f"more seeds, one never past it runs to {design['max']} seeds. This keeps the chance of any false "
            f"\"beats\" among them below {level_text(alpha)}% however early each one stops, where testing a fixed "
            "95% interval after every seed would let it grow with every look. Each verdict gives the seeds that "
            "decided it and its repeated confidence interval at that look (the estimate +- its boundary times "
            "its standard error), which excludes zero exactly when it was decided. The tables within each level "
            "of the other factors are exploratory: 95% per row, over every seed run, not corrected for multiplicity.")


def trials_blocks(summary: dict, figures: dict[str, str]) -> Blocks:
    trials = summary["trials"]
    versions = trials.get("versions", 1) > 1  # an extended sweep: which version ran each trial
    return [("table", ["trial", *(["version"] if versions else []), "status", "seed", "final val accuracy (%)",
                       "first step (s)", "run id"],
             [[r["name"], *([str(r["version"])] if versions else []), r["status"], str(r["seed"]),
               pct(r["final_val_accuracy"]), _seconds(r.get("startup_seconds")), r["run_id"]]
              for r in trials["runs"]])]


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# ---- writers ------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: list[tuple]) -> str:
    lines: list[str] = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(map(_md_cell, headers)) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
        elif kind == "code":
            lines += ["```", block[1], "```", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%;height:auto;display:block;margin:.6em 0}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
"""


def to_html(doc: list[tuple], folder: Path, title: str) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"]
    for block in doc:
        kind = block[0]
        if kind == "h":
            parts.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
        elif kind == "p":
            parts.append(f"<p>{esc(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((folder / block[1]).read_bytes()).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{data}" alt="{esc(block[2])}">')
        elif kind == "code":
            parts.append(f"<pre><code>{esc(block[1])}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder: Path, summary: dict, doc: Blocks) -> list[str]:
    """report.md and report.html of the document, and report.json of the summary, in `folder` (the
    PNGs are there already)."""
    (folder / "report.md").write_text(to_markdown(doc))
    (folder / "report.html").write_text(to_html(doc, folder, f"Ablation report: {summary['experiment']}"))
    (folder / "report.json").write_text(json.dumps(summary, indent=1, sort_keys=False, default=str))
    return ["report.md", "report.html", "report.json"]
