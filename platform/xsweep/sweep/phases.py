"""Running an ablation's two phases (ablation.py) inside one sweep: the tuning phase, then, once it
has finished, the confirmation phase, with one log, one console and one summary at the end.

xsweep.json says where the sweep is: without an "ablation" entry it is tuning; once phase 2 is
about to start it holds {"phase": "confirm", "picked": [...], "missing": [...], "earlier": {...}},
so that `xsweep resume` continues phase 2 with the same picks, or phase 1 and then phase 2.
"""

from __future__ import annotations

from collections import Counter

from xsweep.cluster.storage import write_sweep_record
from xsweep.contract import ended_status
from xsweep.spec import Spec
from xsweep.spec.trial import RUN_ID_KEY
from xsweep.sweep.ablation import CONFIRM, CONFIRM_DIR, picked_configurations


def confirm_location(storage, sweep: str) -> tuple[str, str]:
    """(storage_path, name) of phase 2's Tune experiment: the sweep folder's `confirm`."""
    return f"{storage.tune_path}/{sweep}", CONFIRM_DIR


def confirm_trials(spec: Spec, picked: list[dict]) -> int:
    return len(picked) * spec.ablation.confirm_seeds


def phase_line(spec: Spec) -> str:
    a = spec.ablation
    return (f"ablation: {spec.variant_count()} variants of {', '.join(a.factors)}; phase 1 tunes "
            f"{', '.join(a.tune)} with {a.budget} trials per variant, phase 2 re-trains each variant's best "
            f"with {a.confirm_seeds} seeds")


def record_verdict(spec: Spec, *, runs) -> list[str]:
    """At the end of phase 2: the verdict (report/verdict.py) from MLflow, as the parent run's
    artifact ablation_verdict.json and one tag per comparison; returns the summary's lines."""
    from xsweep.report.data import load_sweep
    from xsweep.report.verdict import ablation_verdict
    from xsweep.spec.trial import format_value
    from xsweep.tracking.runs import set_tags
    from xsweep.tracking.tags import TAG_ABLATION_VERDICT_PREFIX

    _, data = load_sweep(runs.uri, experiment=spec.experiment, sweep=runs.parent_run_id)
    verdict = ablation_verdict(data)
    runs.client.log_dict(runs.parent_run_id, verdict, "ablation_verdict.json")
    lines, tags = [], {}
    for factor in verdict["factors"]:
        for c in factor["comparisons"]:
            tags[f"{TAG_ABLATION_VERDICT_PREFIX}{factor['path']}:{format_value(c['level'])}"] = c["verdict"]
            paper = f" (the paper: {c['paper']['finding']})" if c["paper"] else ""
            lines.append(f"verdict, {c['label']} against {c['reference_label']}: {c['verdict']}{paper}")
    set_tags(runs.client, runs.parent_run_id, tags)
    return lines


def start_confirmation(results, spec: Spec, *, storage, sweep: str, record: dict, runs, callbacks_for, make_tuner):
    """After phase 1: pick each variant's best, record the picks (for resume), and build phase 2's
    Tuner with `make_tuner(searcher=, num_trials=, location=, callbacks=)` (run.py's). Returns
    (tuner, console, earlier, planned_trials); earlier is phase 1's counts and runs."""
    from xsweep.sweep.searcher import build_confirm_searcher

    picked, missing = picked_configurations(results, spec)
    earlier = {"phase": "tune", "counts": dict(Counter(ended_status(r.metrics, errored=r.error is not None) for r in results)),
               "run_ids": [r.config.get(RUN_ID_KEY) for r in results if r.config.get(RUN_ID_KEY)]}
    record["ablation"] = {"phase": CONFIRM, "picked": picked, "missing": missing, "earlier": earlier}
    write_sweep_record(storage, sweep, record)
    planned = confirm_trials(spec, picked)
    print(f"phase 2 (confirm): {len(picked)} variants x {spec.ablation.confirm_seeds} seeds = {planned} trials"
          + (f"; not confirmed, no trial of theirs ran every epoch: {', '.join(missing)}" if missing else ""),
          flush=True)
    callbacks, console = callbacks_for(planned)
    tuner = make_tuner(searcher=build_confirm_searcher(spec, picked, open_run=runs), num_trials=planned,
                       location=confirm_location(storage, sweep), callbacks=callbacks)
    return tuner, console, earlier, planned
