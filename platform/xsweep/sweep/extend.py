"""`xsweep extend SWEEP [--set ...]`: a finished or interrupted sweep continues as a new version.

More trials (`--set search.num_samples=...`: the sweep's configurations in all, the earlier
ones counted), a wider or narrower range, a new choice value, a newly searched field (the earlier
trials keep the value they ran with). The new version's searcher starts from the earlier trials
that its space holds (search/history.py); those outside it stay in MLflow as history. No
configuration that already ended is trained again. The new trial runs join the same MLflow parent
run, tagged with their version; the parent records each version's spec and hash.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from xsweep.cluster import connect as cluster
from xsweep.cluster.storage import read_sweep_record, recorded_tracking_uri, write_sweep_record
from xsweep.errors import SpecError, SweepError
from xsweep.spec import Spec, load_spec_text
from xsweep.sweep.outcome import SweepOutcome
from xsweep.sweep.versions import latest, version_spec
from xsweep.tracking.store import check_reachable, open_store
from xsweep.tracking.tags import (
    TAG_BEST_RUN_ID, TAG_BEST_TRIAL_ID, TAG_BEST_TRIAL_NAME, TAG_SEARCHED, TAG_SPEC_SHA256, TAG_STATUS, TAG_SWEEP_VERSION,
    TAG_TRIAL_COUNT_PREFIX,
)
from xsweep.training.datasets import dataset_of

# What makes a sweep the sweep it is: an extension that changed them would be another sweep.
KEPT = {
    "name": "its name", "tracking": "its tracking store", "storage": "its storage",
    "search.metric": "its objectives", "search.mode": "its objectives", "search.objectives": "its objectives",
}


def extend_sweep(name_or_path: str, *, overrides: list[str], address: str | None = None,
                 workdir: str | os.PathLike | None = None, endpoint_url: str | None = None,
                 verbose: bool = False) -> SweepOutcome:
    """Continue the sweep `name_or_path` (as for resume) as its next version, with `overrides`
    (--set lines) on top of the spec of its latest version."""
    from xsweep.sweep import run as sweep_run

    sweep_run._process_defaults(address)  # first: nothing may import Ray before it
    workdir = str(Path(workdir or os.getcwd()).resolve())
    storage, sweep = sweep_run.locate_sweep(name_or_path, workdir=workdir, endpoint_url=endpoint_url)
    record = read_sweep_record(storage, sweep)
    before = latest(record)
    old = version_spec(record, before)
    _check_kept(overrides, source=old.source)
    spec = load_spec_text(record["spec_text"], source=record["spec_source"],
                          overrides=[*before["overrides"], *overrides])
    data = spec.base_trial_config()["data"]
    dataset_of(data).shape(data)
    uri = recorded_tracking_uri(record, spec)
    check_reachable(uri)
    client = open_store(uri, flag="tracking.uri")
    parent = client.get_run(record["parent_run_id"])
    recorded = parent.data.tags.get(TAG_SPEC_SHA256)
    if recorded != old.sha256():
        raise SweepError(f"{name_or_path}: its MLflow parent run {parent.info.run_id} records spec hash "
                         f"{(recorded or 'none')[:12]}, but the sweep folder's spec (version {before['version']}) "
                         f"hashes to {old.sha256()[:12]}: the folder and the tracking store are not of one sweep "
                         "(extend it from the folder and store it ran with)")

    from xsweep.search.searcher import build_searcher
    from xsweep.tracking.query import child_runs
    from xsweep.tracking.runs import SweepRuns, reserve_of

    version = before["version"] + 1
    runs = SweepRuns(uri=uri, experiment_id=record["experiment_id"], parent_run_id=record["parent_run_id"],
                     base_config=spec.base_trial_config(), version=version, **reserve_of(spec))
    if old.ablation is not None:
        return _extend_ablation(old, spec, record, storage=storage, sweep=sweep, overrides=overrides, runs=runs,
                                earlier={"counts": _counts(parent), "best": _best_so_far(client, parent, spec)},
                                address=address, verbose=verbose)
    searcher = build_searcher(spec, open_run=runs, past_runs=child_runs(client, parent))
    new = spec.search.num_samples - len(searcher.evidence.carried)
    if new <= 0:
        raise SpecError([f"--set search.num_samples: the sweep has {len(searcher.evidence.carried)} configurations "
                         f"in this space already and num_samples is {spec.search.num_samples} (raise it to train "
                         "more)"])
    earlier = {"counts": _counts(parent), "best": _best_so_far(client, parent, spec)}
    cluster.check_address_reachable(address)
    cluster.connect(address, spec=spec, storage=storage)
    try:
        return _run_version(spec, record, storage=storage, sweep=sweep, overrides=overrides, runs=runs,
                            searcher=searcher, new_configurations=new, earlier=earlier, verbose=verbose)
    except BaseException:
        import ray

        ray.shutdown()
        raise


def _run_version(spec: Spec, record: dict, *, storage, sweep: str, overrides: list[str], runs, searcher,
                 new_configurations: int, earlier: dict, verbose: bool) -> SweepOutcome:
    from xsweep.sweep import run as sweep_run
    from xsweep.sweep.console import ConsoleCallback, first_lines
    from xsweep.sweep.output import keep_log, log_path
    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.writes import set_tags

    version, evidence, trials = runs.version, searcher.evidence, new_configurations * spec.search.repeats
    sweep_path = f"{storage.root}/{sweep}"
    record.setdefault("versions", []).append({"version": version, "overrides": [*latest(record)["overrides"], *overrides],
                                              "earlier": earlier, "trials": trials})
    write_sweep_record(storage, sweep, record)
    _record_version(runs.client, runs.parent_run_id, spec, version=version)
    runs.client.update_run(runs.parent_run_id, status="RUNNING")
    set_tags(runs.client, runs.parent_run_id, {TAG_STATUS: "running"})

    log = log_path(storage, sweep)
    print(f"extending sweep {sweep} as version {version}: {trials} new trials, results in {sweep_path}", flush=True)
    print(f"earlier trials: {len(evidence.carried)} configuration(s) carried into the new space as the searcher's "
          f"evidence, {evidence.outside} trial(s) outside it kept as history only"
          + (f", {evidence.unfinished} unfinished left out" if evidence.unfinished else ""), flush=True)
    print(f"MLflow: experiment '{spec.experiment}', parent run {runs.parent_run_id}", flush=True)
    print(first_lines(log=str(log), verbose=verbose, copied_to=sweep_run._log_copy(storage, sweep_path)), flush=True)
    callback = TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode)
    console = ConsoleCallback.for_spec(spec, total_trials=trials)
    tuner = sweep_run._tuner(spec, storage=storage, sweep=sweep, runs=runs, callbacks=[callback, console],
                             version=version, searcher=searcher, num_trials=trials)
    outcome = sweep_run._fit_and_finish(tuner, spec, runs=runs, sweep_path=sweep_path, console=console, log=log,
                                        verbose=verbose, callback=callback, earlier=earlier, planned_trials=trials)
    keep_log(storage, sweep, log)
    return outcome


def _extend_ablation(old: Spec, spec: Spec, record: dict, *, storage, sweep: str, overrides: list[str], runs,
                     earlier: dict, address: str | None, verbose: bool) -> SweepOutcome:
    """An ablation's next version: phase 1 for its new variants, phase 2 for what is unconfirmed
    (ablation_extend.py, phases.py)."""
    from xsweep.sweep import run as sweep_run
    from xsweep.sweep.ablation_extend import check_extension
    from xsweep.sweep.console import ConsoleCallback, first_lines
    from xsweep.sweep.output import keep_log, log_path
    from xsweep.sweep.phases import ablation_state, every_picked
    from xsweep.search.searcher import build_searcher
    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.writes import set_tags

    added, first_new_seed = check_extension(old, spec)
    version, trials = runs.version, len(added) * spec.ablation.budget
    earlier_picked = every_picked(record)
    ablation_state(record, version).update(variants=added, earlier_picked=earlier_picked, first_new_seed=first_new_seed)
    record.setdefault("versions", []).append({"version": version, "overrides": [*latest(record)["overrides"], *overrides],
                                              "earlier": earlier, "trials": trials})
    cluster.check_address_reachable(address)
    cluster.connect(address, spec=spec, storage=storage)
    try:
        write_sweep_record(storage, sweep, record)
        _record_version(runs.client, runs.parent_run_id, spec, version=version)
        runs.client.update_run(runs.parent_run_id, status="RUNNING")
        set_tags(runs.client, runs.parent_run_id, {TAG_STATUS: "running"})
        sweep_path = f"{storage.root}/{sweep}"
        log = log_path(storage, sweep)
        new_seeds = spec.ablation.confirm_seeds - first_new_seed + 1
        print(f"extending ablation {sweep} as version {version}: {len(added)} new variant(s) to tune "
              f"({trials} trials), {new_seeds} new seed(s) for the {len(earlier_picked)} confirmed variant(s); "
              f"results in {sweep_path}", flush=True)
        print(f"MLflow: experiment '{spec.experiment}', parent run {runs.parent_run_id}", flush=True)
        print(first_lines(log=str(log), verbose=verbose, copied_to=sweep_run._log_copy(storage, sweep_path)), flush=True)
        next_phase = sweep_run._confirmation(spec, storage=storage, sweep=sweep, runs=runs, record=record,
                                             version=version, earlier=earlier)
        tuner = console = None
        if added:
            console = ConsoleCallback.for_spec(spec, total_trials=trials)
            callbacks = [TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode), console]
            tuner = sweep_run._tuner(spec, storage=storage, sweep=sweep, runs=runs, callbacks=callbacks, version=version,
                                     searcher=build_searcher(spec, open_run=runs, variants=added), num_trials=trials)
        outcome = sweep_run._fit_and_finish(tuner, spec, runs=runs, sweep_path=sweep_path, console=console, log=log,
                                            verbose=verbose, earlier=earlier, planned_trials=trials,
                                            next_phase=next_phase)
    except BaseException:
        import ray

        ray.shutdown()
        raise
    keep_log(storage, sweep, log)
    return outcome


def _check_kept(overrides: list[str], *, source: str) -> None:
    for line in overrides:
        path = line.partition("=")[0].strip()
        for kept, what in KEPT.items():
            if path == kept or path.startswith(kept + "."):
                raise SpecError([f"--set {path}: an extended sweep keeps {what} (start a new sweep with "
                                 f"`xsweep run {source} --set {line}` instead)"])


def _counts(parent) -> dict[str, int]:
    return {key[len(TAG_TRIAL_COUNT_PREFIX):]: int(value) for key, value in parent.data.tags.items()
            if key.startswith(TAG_TRIAL_COUNT_PREFIX) and value.isdigit()}


def _best_so_far(client, parent, spec: Spec) -> dict | None:
    """The best trial of the versions so far, as the parent run recorded it (the summary's form)."""
    run_id = parent.data.tags.get(TAG_BEST_RUN_ID)
    value = parent.data.metrics.get(f"best_{spec.search.metric}")
    if not run_id or value is None:
        return None
    searched = json.loads(client.get_run(run_id).data.tags.get(TAG_SEARCHED) or "{}")
    return {"run_id": run_id, "value": value, "trial_id": parent.data.tags.get(TAG_BEST_TRIAL_ID),
            "name": parent.data.tags.get(TAG_BEST_TRIAL_NAME), "metric": spec.search.metric, "searched": searched}


def _record_version(client, parent_run_id: str, spec: Spec, *, version: int) -> None:
    """The new version's spec as an artifact (spec/v2/...) and its hash as the parent's spec hash;
    params stay version 1's (MLflow params cannot change)."""
    import yaml

    from xsweep.tracking.writes import set_tags

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.yaml").write_text(spec.text)
        Path(tmp, "overrides.txt").write_text("".join(f"--set {line}\n" for line in spec.overrides))
        Path(tmp, "spec.resolved.yaml").write_text(yaml.safe_dump(spec.resolved(), sort_keys=False))
        client.log_artifacts(parent_run_id, tmp, artifact_path=f"spec/v{version}")
    set_tags(client, parent_run_id, {TAG_SWEEP_VERSION: version, TAG_SPEC_SHA256: spec.sha256(),
                                     f"{TAG_SPEC_SHA256}.v{version}": spec.sha256()})

