"""From a sweep's runs to the report's numbers: factors and their levels, paired comparisons,
learning-rate panels, mean curves, hyperparameter importance and the best trial.

Everything here returns plain JSON-able dicts (accuracies as fractions, as MLflow holds them):
each report section's entry (sections.py) names the analyses it shows, and their results together,
with the common keys, are the summary: what report.json holds and what the figures and the text
are drawn from.
Only completed trials count (their final accuracy is after every epoch); diverged, failed,
stopped or unfinished trials are counted and listed, never averaged in.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from xsweep.defaults import quiet_optuna
from xsweep.metrics import ACCURACY, METRICS, STARTUP, STARTUP_METRICS, curve_metrics, is_finite_number
from xsweep.pareto import pareto_front
from xsweep.report import stats as st
from xsweep.report.data import SweepData, TrialRun
from xsweep.report.labels import FACTOR_ORDER, factor_name, level_key, level_label
from xsweep.report.verdict import ablation_verdict
from xsweep.search.algorithms import distribution
from xsweep.tracking.store import store_flag
from xsweep.tracking.uri import redact

LR = "train.lr"
MIN_TRIALS_TO_BIN = 6  # a continuous lr is cut into terciles only with at least this many trials

# ---- factors and learning-rate groups ---------------------------------------------------------
def factors(data: SweepData) -> list[str]:
    """Searched paths compared level by level: every choice entry but the learning rate, and any
    path whose sampled values are booleans or strings."""
    found = []
    for path, entry in data.space.items():
        if path == LR:
            continue
        values = [t.searched[path] for t in data.trials if path in t.searched]
        categorical = "choice" in entry or any(isinstance(v, (bool, str)) for v in values)
        if categorical and len({level_key(v) for v in values}) >= 1:
            found.append(path)
    order = list(FACTOR_ORDER)
    return sorted(found, key=lambda p: (order.index(p) if p in order else len(order), p))


def levels(data: SweepData, path: str) -> list[Any]:
    """The factor's levels in the spec's order, then any others the trials show."""
    listed = list(data.space.get(path, {}).get("choice", []))
    seen = {level_key(v) for t in data.trials if path in t.searched for v in [t.searched[path]]}
    ordered = [v for v in listed if level_key(v) in seen]
    extra = sorted({level_key(t.searched[path]): t.searched[path] for t in data.trials if path in t.searched
                    and level_key(t.searched[path]) not in {level_key(v) for v in ordered}}.values(), key=str)
    return ordered + extra


def lr_groups(data: SweepData, finished: list[TrialRun]) -> dict:
    """The panels trials of like learning rate are compared in, and a sentence saying how."""
    if data.ablation is not None:
        return {"mode": "ablation", "groups": [{"label": "phase 2: each variant at its own tuned settings",
                                                "low": None, "high": None, "run_ids": [t.run_id for t in finished]}],
                "text": "An ablation: one panel of phase 2's trials, each variant at the settings phase 1 tuned "
                        "for it, so that the lines compare the variants as the verdict does."}
    entry = data.space.get(LR)
    if entry is None:
        fixed = data.params.get(LR, "?")
        return {"mode": "fixed", "groups": [{"label": f"lr = {fixed} (fixed)", "low": None, "high": None,
                                             "run_ids": [t.run_id for t in finished]}],
                "text": f"The learning rate was not searched (lr = {fixed} for every trial): one panel holds "
                        "all completed trials."}
    lrs = {t.run_id: float(t.searched[LR]) for t in finished if LR in t.searched}
    if "choice" in entry:
        values = sorted({v for v in lrs.values()})
        groups = [{"label": f"lr = {v:.3g}", "low": v, "high": v,
                   "run_ids": [r for r, lr in lrs.items() if lr == v]} for v in values]
        return {"mode": "grid", "groups": groups,
                "text": "One panel per learning rate of the grid: lines compare trials of the same learning rate."}
    if len(lrs) < MIN_TRIALS_TO_BIN:
        return {"mode": "all", "groups": [{"label": "all learning rates", "low": min(lrs.values(), default=None),
                                           "high": max(lrs.values(), default=None), "run_ids": list(lrs)}],
                "text": (f"The learning rate was sampled from a continuous range and only {len(lrs)} trials "
                         "completed: one panel compares all of them, whatever their learning rate.")}
    ordered = sorted(lrs.items(), key=lambda kv: kv[1])
    thirds = [ordered[round(i * len(ordered) / 3):round((i + 1) * len(ordered) / 3)] for i in range(3)]
    groups = [{"label": f"lr {part[0][1]:.3g} to {part[-1][1]:.3g}", "low": part[0][1], "high": part[-1][1],
               "run_ids": [r for r, _ in part]} for part in thirds if part]
    return {"mode": "bins", "groups": groups,
            "text": ("The learning rate was sampled from a continuous range: trials are binned into terciles "
                     "of learning rate (one panel each), and lines compare trials within a bin.")}


# ---- factor tables and comparisons -------------------------------------------------------------
def _pair_key(trial: TrialRun, path: str, matched: list[str] | None) -> tuple:
    """What a partner shares: the seed and every other searched value (`matched`: only these paths)."""
    others = tuple(sorted((p, level_key(v)) for p, v in trial.searched.items()
                          if p != path and (matched is None or p in matched)))
    return others, trial.seed


def factor_table(data: SweepData, finished: list[TrialRun], path: str) -> dict:
    """Each level's mean, and each two levels' difference: paired in a grid (every other value and
    the seed shared) and in an ablation's phase 2 (the seed and the other factors' levels, as its
    verdict pairs them); else Welch's unpaired interval."""
    level_values = levels(data, path)
    by_level = {level_key(v): [t for t in finished
                                if path in t.searched and level_key(t.searched[path]) == level_key(v)]
                for v in level_values}
    paired = data.runs_a_grid or data.ablation is not None
    matched = data.ablation["factors"] if data.ablation is not None else None
    rows = []
    for v in level_values:
        ci = st.mean_ci([t.final(ACCURACY) for t in by_level[level_key(v)]], bounds=st.ACCURACY_BOUNDS)
        rows.append({"value": v, "label": level_label(path, v), "n": ci.n, "mean": st.finite_or_none(ci.estimate),
                     "ci_low": st.finite_or_none(ci.low), "ci_high": st.finite_or_none(ci.high),
                     "device_seconds": st.mean_or_none([t.device_seconds for t in by_level[level_key(v)]]),
                     "run_ids": [t.run_id for t in by_level[level_key(v)]]})
    comparisons = []
    for a, b in itertools.combinations(level_values, 2):
        ta, tb = by_level[level_key(a)], by_level[level_key(b)]
        if paired:
            ka = {_pair_key(t, path, matched): t for t in ta}
            kb = {_pair_key(t, path, matched): t for t in tb}
            shared = [k for k in ka if k in kb]
            diff = st.paired_difference([ka[k].final(ACCURACY) for k in shared],
                                        [kb[k].final(ACCURACY) for k in shared], bounds=st.DIFFERENCE_BOUNDS)
            unpaired = len(ta) + len(tb) - 2 * len(shared)
            pairs = [[ka[k].run_id, kb[k].run_id] for k in shared]
        else:
            diff = st.welch_difference([t.final(ACCURACY) for t in ta], [t.final(ACCURACY) for t in tb],
                                       bounds=st.DIFFERENCE_BOUNDS)
            unpaired, pairs = 0, []
        la, lb = level_label(path, a), level_label(path, b)
        comparisons.append({
            "a": a, "b": b, "label_a": la, "label_b": lb, "test": "paired" if paired else "welch",
            "n": diff.n, "n_b": diff.n_b or None, "difference": st.finite_or_none(diff.estimate), "ci_low": st.finite_or_none(diff.low),
            "ci_high": st.finite_or_none(diff.high), "p_value": st.finite_or_none(diff.p_value), "df": st.finite_or_none(diff.df),
            "significant": diff.excludes_zero, "verdict": st.verdict(la, lb, diff),
            "without_partner": unpaired, "pairs": pairs,
        })
    return {"path": path, "name": factor_name(path), "levels": rows, "comparisons": comparisons}


# ---- curves -----------------------------------------------------------------------------------
def curves(data: SweepData, finished: list[TrialRun], path: str, groups: dict) -> list[dict]:
    """Per lr panel, per level, per metric: the mean over trials at each epoch and its 95% CI."""
    by_id = {t.run_id: t for t in finished}
    panels = []
    for group in groups["groups"]:
        members = [by_id[r] for r in group["run_ids"] if r in by_id]
        lines = []
        for v in levels(data, path):
            trials = [t for t in members if path in t.searched and level_key(t.searched[path]) == level_key(v)]
            if not trials:
                continue
            line = {"value": v, "label": level_label(path, v), "n": len(trials), "metrics": {}}
            for metric in curve_metrics():
                # A fraction stays within [0, 1]; a loss is never negative.
                bounds = st.ACCURACY_BOUNDS if METRICS.get(metric).percent else (0.0, math.inf)
                per_epoch = defaultdict(list)
                for t in trials:
                    for epoch, value in t.history.get(metric, []):
                        if math.isfinite(value):
                            per_epoch[epoch].append(value)
                epochs = sorted(per_epoch)
                cis = [st.mean_ci(per_epoch[e], bounds=bounds) for e in epochs]
                line["metrics"][metric] = {"epochs": epochs, "mean": [c.estimate for c in cis],
                                           "low": [st.finite_or_none(c.low) for c in cis], "high": [st.finite_or_none(c.high) for c in cis],
                                           "n": [c.n for c in cis]}
            lines.append(line)
        panels.append({"label": group["label"], "lines": lines})
    return panels


# ---- importance -------------------------------------------------------------------------------
def _fitted_distribution(entry: dict, values: list):
    """The entry's distribution, widened to hold every value the trials ran (a resumed sweep's
    spec may have narrowed it)."""
    (kind, args), = entry.items() if len(entry) == 1 else (("choice", []),)
    if kind == "choice":
        return distribution("choice", values={level_key(v): v for v in list(args) + values}.values())
    low, high = args
    return distribution(kind, low=min(low, min(values)), high=max(high, max(values)))


@dataclass(frozen=True)
class ImportanceEvaluator:
    """One of Optuna's importance evaluators, as the report names it and draws its values."""
    name: str  # the figure's title
    method: str  # the report's sentence on how the importances were computed
    axis: str  # what the figure's bars measure
    optuna_class: str  # its class in optuna.importance
    options: dict  # its arguments


PED_ANOVA_QUANTILE = 0.1  # PedAnovaImportanceEvaluator's target_quantile, Optuna's default
PED_ANOVA_MIN_TOP = 5  # trials in that top quantile below which Optuna's documentation calls it unstable
IMPORTANCE_EVALUATORS = {
    # Optuna's default, and fast at thousands of trials, where fANOVA's random forest is slow.
    "ped-anova": ImportanceEvaluator(
        name="PED-ANOVA",
        method="PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, Optuna's default): how much each "
               f"parameter's distribution over the top {100 * PED_ANOVA_QUANTILE:.0f}% of trials differs from "
               "its distribution over all of them",
        axis=f"importance (normalized divergence, top {100 * PED_ANOVA_QUANTILE:.0f}% of trials against all)",
        optuna_class="PedAnovaImportanceEvaluator", options={"target_quantile": PED_ANOVA_QUANTILE}),
    "fanova": ImportanceEvaluator(
        name="fANOVA", method="fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)",
        axis="importance (fraction of variance of final val accuracy)",
        optuna_class="FanovaImportanceEvaluator", options={"seed": 0}),
}
DEFAULT_IMPORTANCE = "ped-anova"


def importance(data: SweepData, finished: list[TrialRun], *, evaluator: str = DEFAULT_IMPORTANCE) -> dict:
    """Each searched parameter's importance over the completed trials, target = final val accuracy,
    by one of IMPORTANCE_EVALUATORS (PED-ANOVA unless `evaluator`)."""
    import optuna

    chosen = IMPORTANCE_EVALUATORS[evaluator]
    method = chosen.method
    if evaluator == "ped-anova" and (top := math.ceil(PED_ANOVA_QUANTILE * len(finished))) < PED_ANOVA_MIN_TOP:
        method += (f" (at {len(finished)} trials that top is {top}, fewer than the {PED_ANOVA_MIN_TOP} Optuna "
                   "advises: read these importances as rough)")
    space = data.space
    paths = [p for p in space if len({level_key(t.searched.get(p)) for t in finished}) > 1
             and all(p in t.searched for t in finished)]
    result = {"method": method, "evaluator": evaluator, "name": chosen.name, "axis": chosen.axis,
              "target": f"final {ACCURACY}", "n": len(finished), "values": {}, "error": None}
    if len(finished) < 2 or not paths:
        result["error"] = (f"not computed: it needs at least 2 completed trials that differ in a searched value "
                           f"(have {len(finished)})")
        return result
    if len({t.final(ACCURACY) for t in finished}) == 1:
        # PED-ANOVA would share the importance out equally (its top trials are all of them), as if known.
        result["error"] = "not computed: every completed trial scored the same"
        return result
    try:
        distributions = {p: _fitted_distribution(space[p], [t.searched[p] for t in finished]) for p in paths}
        quiet_optuna()
        study = optuna.create_study(direction="maximize")
        for t in finished:
            study.add_trial(optuna.trial.create_trial(
                params={p: t.searched[p] for p in paths}, distributions=distributions, value=t.final(ACCURACY)))
        values = optuna.importance.get_param_importances(
            study, evaluator=getattr(optuna.importance, chosen.optuna_class)(**chosen.options))
    except Exception as exc:  # noqa: BLE001 - a report without importance beats no report
        result["error"] = f"not computed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return result
    if not all(math.isfinite(v) for v in values.values()):  # e.g. every trial scored the same
        result["error"] = "not computed: the completed trials' accuracies do not vary enough"
        return result
    result["values"] = {p: float(v) for p, v in values.items()}
    return result


def variants(data: SweepData, finished: list[TrialRun], factor_paths: list[str]) -> list[dict]:
    """Final accuracy against learning rate, one series per combination of the factors' levels."""
    series = defaultdict(list)
    for t in finished:
        combo = tuple(level_key(t.searched.get(p)) for p in factor_paths)
        series[combo].append(t)
    out = []
    for combo, trials in sorted(series.items(), key=lambda kv: str(kv[0])):
        first = trials[0]
        label = ", ".join(level_label(p, first.searched.get(p)) for p in factor_paths) or "all trials"
        points = sorted(((float(t.searched[LR]) if LR in t.searched else float(t.config.get("train", {}).get("lr", 0)),
                          t.final(ACCURACY), t.run_id) for t in trials))
        means = []
        for lr, group in itertools.groupby(points, key=lambda p: p[0]):
            accs = [p[1] for p in group]
            means.append({"lr": lr, "mean": statistics.fmean(accs), "n": len(accs)})
        out.append({"label": label, "points": [{"lr": p[0], "accuracy": p[1], "run_id": p[2]} for p in points],
                    "means": means})
    return out


# ---- best trial, Pareto front, start-up ----------------------------------------------------------
def best_trial(data: SweepData, finished: list[TrialRun], *, uri: str, workdir: str,
               verdict: dict | None = None) -> dict | None:
    by_id = {t.run_id: t for t in data.trials}
    trial = by_id.get(data.best_run_id or "")
    source = "the sweep's own choice (tag xsweep.best_run_id: best " + data.metric + " at any epoch)"
    variant = next((v for v in (verdict or {}).get("variants", []) if trial and trial.run_id in v["run_ids"]), None)
    if variant is not None:
        source = (f"the sweep's own choice (tag xsweep.best_run_id): the variant with the best mean final "
                  f"{ACCURACY} over phase 2's seeds, {variant['label']} ({METRICS.get(ACCURACY).show(variant['mean'])} over "
                  f"{variant['n']} seeds), and of its trials the one with the best {data.metric} at any epoch, "
                  "whose checkpoint is the registered model")
    if trial is None:
        if not finished:
            return None
        trial = max(finished, key=lambda t: t.final(ACCURACY))
        source = (f"the sweep recorded no best trial (status {data.status}): the completed trial with the "
                  f"highest final {ACCURACY}")
    command = (f"xsweep reproduce --experiment {_quote(data.experiment)} --run {trial.run_id}"
               + store_flag(uri, workdir=workdir))
    history = trial.history.get(ACCURACY, [])
    return {"run_id": trial.run_id, "name": trial.name, "status": trial.status, "searched": trial.searched,
            "seed": trial.seed, "final_val_accuracy": trial.final(ACCURACY),
            "best_val_accuracy": max((v for _, v in history if math.isfinite(v)), default=None),
            "source": source, "command": command}


def pareto(data: SweepData, finished: list[TrialRun]) -> dict | None:
    """A multi-objective sweep's Pareto front over its completed trials, by final values (as the
    sweep's own pareto_front.csv); None for a one-objective sweep."""
    objectives = data.objectives
    if len(objectives) < 2:
        return None
    modes = [mode for _, mode in objectives]

    def values(trial: TrialRun) -> list[float | None]:
        return [trial.latest.get(metric) for metric, _ in objectives]

    front = pareto_front(finished, values=values, modes=modes)
    on_front = {t.run_id for t in front}
    return {"objectives": [{"metric": m, "mode": mode} for m, mode in objectives],
            "front": [{"rank": rank, "name": t.name, "run_id": t.run_id, "values": values(t), "searched": t.searched}
                      for rank, t in enumerate(front, 1)],
            "others": [{"name": t.name, "values": values(t)} for t in finished
                       if t.run_id not in on_front and None not in values(t)]}


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def startup(trials: list[TrialRun]) -> dict:
    """Each start-up metric's median, least and most over the trials that logged it (every
    status: a failed trial's start cost as much)."""
    out = {}
    for name in STARTUP_METRICS:
        values = sorted(v for t in trials if is_finite_number(v := t.latest.get(name)))
        if values:
            out[name] = {"n": len(values), "median": statistics.median(values), "min": values[0], "max": values[-1]}
    return out


# ---- what the sections share, and the summary's common keys ------------------------------------
@dataclass(frozen=True)
class Shared:
    """What several sections' analyses read, computed once before any of them (sections.summarize)."""
    workdir: str  # where the report is made: the reproduce commands name the store from there
    finished: list[TrialRun]  # the completed trials: every mean, interval and importance is over these
    # The trials the factors are compared over: an ablation's phase 2 only, since phase 1's trials
    # ran each variant at other learning rates than its tuned one.
    compared: list[TrialRun]
    factor_paths: list[str]  # the searched paths compared level by level
    lr_groups: dict  # the panels trials of like learning rate are compared in
    verdict: dict | None  # an ablation's verdict: its own section's, and what chose the best trial


def shared_parts(data: SweepData, *, workdir: str) -> Shared:
    finished = [t for t in data.trials if t.finished]
    compared = [t for t in finished if t.phase == "confirm"] if data.ablation is not None else finished
    return Shared(workdir=workdir, finished=finished, compared=compared, factor_paths=factors(data),
                  lr_groups=lr_groups(data, compared), verdict=ablation_verdict(data))


def common_summary(data: SweepData, shared: Shared) -> dict:
    """The summary's keys of no one section: the sweep, its trials, the outcome, start-up, lr panels."""
    excluded = [{"run_id": t.run_id, "name": t.name, "status": t.status,
                 "reason": ("no final val_accuracy" if t.status == "completed" else f"status {t.status}")}
                for t in data.trials if not t.finished]
    return {
        "experiment": data.experiment,
        "sweep": {"run_id": data.run_id, "run_name": data.run_name, "status": data.status,
                  "algorithm": data.algorithm, "grid": data.runs_a_grid, "repeats": data.repeats, "epochs": data.epochs,
                  "metric": data.metric, "mode": data.mode, "tracking_uri": redact(data.uri),
                  "space": data.space, "device_seconds": st.sum_or_none([t.device_seconds for t in data.trials]),
                  "store_flag": store_flag(data.uri, workdir=shared.workdir)},
        "outcome": f"final {ACCURACY} (the last epoch's)",
        "trials": {"total": len(data.trials), "finished": len(shared.finished),
                   "by_status": dict(Counter(t.status for t in data.trials)), "excluded": excluded,
                   "versions": max((t.version for t in data.trials), default=1),
                   "runs": [{"run_id": t.run_id, "name": t.name, "status": t.status, "seed": t.seed,
                             "searched": t.searched, "final_val_accuracy": t.final(ACCURACY), "version": t.version,
                             STARTUP: t.latest.get(STARTUP)}
                            for t in data.trials]},
        "startup": startup(data.trials),
        "lr_groups": shared.lr_groups,
    }
