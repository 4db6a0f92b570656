"""An ablation's two phases (search/ablation.py) inside one sweep: the tuning phase, then, once it
has finished, the confirmation phase, with one log, one console and one summary at the end (the
driver, driver.py, runs both). An extended ablation (extend.py) runs the same two phases for what
it adds: phase 1 for its new variants only, phase 2 for those over every seed and for the earlier
variants over the new seeds.

Each version's state is the record's AblationState (record.py). Its phase-2 plan is recorded once
phase 2 is about to start, so that `xsweep resume` continues phase 2 with the same plan, or phase 1
and then phase 2.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from xsweep.contract import ended_status
from xsweep.spec import Spec
from xsweep.text import counted
from xsweep.spec.trial import REPEAT_KEY, RUN_ID_KEY
from xsweep.search.ablation import CONFIRM, CONFIRM_DIR, TUNE, all_variants, picked_configurations
from xsweep.sweep.record import Earlier, SweepRecord
from xsweep.sweep.versions import tune_dir


def confirm_location(storage, sweep: str, version: int = 1) -> tuple[str, str]:
    """(storage_path, name) of a version's phase-2 Tune experiment: `confirm` inside its own folder."""
    return tune_dir(storage, sweep, version), CONFIRM_DIR


def confirmation_plan(spec: Spec, *, picked: list[dict], earlier_picked: list[dict], first_new_seed: int) -> list[dict]:
    """Phase 2's trials, seed by seed so that pairs finish together: each newly picked configuration
    over seeds 1 ... confirm_seeds, and each earlier one over the seeds it has not run yet. A
    sequential design's first round: seeds 1 ... min (its searcher plans the rounds after it)."""
    items = []
    for repeat in range(1, spec.ablation.min_seeds + 1):
        items += [dict(config, **{REPEAT_KEY: repeat}) for config in picked]
        if repeat >= first_new_seed:
            items += [dict(config, **{REPEAT_KEY: repeat}) for config in earlier_picked]
    return items


def phase_line(spec: Spec) -> str:
    a = spec.ablation
    return (f"ablation: {spec.variant_count()} variants of {', '.join(a.factors)}; phase 1 tunes "
            f"{', '.join(a.tune)} with {counted(a.budget, 'trial')} per variant, phase 2 re-trains each variant's best "
            f"with {a.seeds_text()}{', each drawing its own validation split' if a.split_seed else ''}")


def record_verdict(spec: Spec, *, runs) -> tuple[list[str], dict]:
    """At the end of phase 2: the verdict (report/verdict.py) from MLflow, as the parent run's
    artifact ablation_verdict.json and one tag per comparison; returns the summary's lines and the
    verdict."""
    from xsweep.report.data import load_sweep
    from xsweep.report.render import price_text
    from xsweep.report.verdict import ablation_verdict
    from xsweep.spec.trial import format_value
    from xsweep.tracking.writes import set_tags
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
            lines.append(f"  price: {price_text(c['price'])}")
    set_tags(runs.client, runs.parent_run_id, tags)
    return lines, verdict


def best_variant(verdict: dict) -> dict | None:
    """The variant with the best mean final accuracy over phase 2's seeds (its row of the verdict):
    an ablation's best, rather than its luckiest seed."""
    confirmed = [v for v in verdict["variants"] if v["mean"] is not None]
    return max(confirmed, key=lambda v: v["mean"]) if confirmed else None


@dataclass
class ConfirmationPlan:
    items: list[dict]  # phase 2's trials (a sequential design's first round): a configuration and its seed repeat each
    picked: list[dict]  # the variants' configurations it confirms
    most: int  # the most trials it can run: len(items), or a sequential design's at max seeds
    earlier: Earlier  # what phase 2's summary adds to: the counts before it, phase 1's run ids
    line: str  # what the console says of it


def plan_confirmation(results, spec: Spec, *, record: SweepRecord, version: int, earlier: Earlier) -> ConfirmationPlan:
    """After phase 1 (`results`: its Tune results; None when an extension adds seeds only): pick each
    variant's best and plan phase 2, into the version's state in `record` (the caller saves it)."""
    state = record.ablation_state(version)
    picked, missing = picked_configurations(results, spec, state.variants or all_variants(spec)) \
        if results is not None else ([], [])
    items = confirmation_plan(spec, picked=picked, earlier_picked=state.earlier_picked,
                              first_new_seed=state.first_new_seed)
    phase_1 = Counter(ended_status(r.metrics, errored=r.error is not None) for r in results or [])
    after = Earlier(phase=TUNE, phase_counts=dict(phase_1), counts=dict(Counter(earlier.counts) + phase_1),
                    run_ids=[r.config.get(RUN_ID_KEY) for r in results or [] if r.config.get(RUN_ID_KEY)],
                    best=earlier.best)
    state.phase, state.picked, state.missing, state.items, state.earlier = CONFIRM, picked, missing, items, after
    parts = [f"{len(picked)} variants x {spec.ablation.seeds_text()}"] if picked else []
    new_seeds = spec.ablation.confirm_seeds - state.first_new_seed + 1 if not spec.ablation.sequential else 0
    if state.earlier_picked and new_seeds > 0:
        parts.append(f"{len(state.earlier_picked)} earlier variants x {new_seeds} new seeds")
    most = len(picked) * spec.ablation.max_seeds if spec.ablation.sequential else len(items)
    trials = counted(len(items), "trial") if most == len(items) else f"{len(items)} to {most} trials"
    line = (f"phase 2 (confirm): {' + '.join(parts) or 'nothing'} = {trials}"
            + (f"; not confirmed, no trial of theirs ran every epoch: {', '.join(missing)}" if missing else ""))
    return ConfirmationPlan(items=items, picked=picked, most=most, earlier=after, line=line)
