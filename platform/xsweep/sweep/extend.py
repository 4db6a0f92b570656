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
from typing import TYPE_CHECKING

from xsweep.cluster import connect as cluster
from xsweep.errors import SpecError, SweepError
from xsweep.spec import Spec, load_spec_text
from xsweep.sweep.outcome import SweepOutcome
from xsweep.sweep.record import BestTrial, Earlier, Version, load_record
from xsweep.sweep.run import locate_sweep, prepare_process
from xsweep.tracking.store import check_reachable, open_store
from xsweep.tracking.tags import (
    TAG_BEST_RUN_ID, TAG_BEST_TRIAL_ID, TAG_BEST_TRIAL_NAME, TAG_SEARCHED, TAG_SPEC_SHA256, TAG_STATUS, TAG_SWEEP_VERSION,
    TAG_TRIAL_COUNT_PREFIX,
)
from xsweep.training.datasets import dataset_of

if TYPE_CHECKING:
    from xsweep.sweep.driver import SweepSession

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
    prepare_process(address)  # first: nothing may import Ray before it
    workdir = str(Path(workdir or os.getcwd()).resolve())
    storage, sweep = locate_sweep(name_or_path, workdir=workdir, endpoint_url=endpoint_url)
    record = load_record(storage, sweep)
    before = record.latest()
    old = record.spec_of(before)
    _check_kept(overrides, source=old.source)
    spec = load_spec_text(record.spec_text, source=record.spec_source, overrides=[*before.overrides, *overrides])
    data = spec.base_trial_config()["data"]
    dataset_of(data).shape(data)
    uri = record.tracking_uri_for(spec)
    check_reachable(uri)
    client = open_store(uri, flag="tracking.uri")
    parent = client.get_run(record.parent_run_id)
    recorded = parent.data.tags.get(TAG_SPEC_SHA256)
    if recorded != old.sha256():
        raise SweepError(f"{name_or_path}: its MLflow parent run {parent.info.run_id} records spec hash "
                         f"{(recorded or 'none')[:12]}, but the sweep folder's spec (version {before.version}) "
                         f"hashes to {old.sha256()[:12]}: the folder and the tracking store are not of one sweep "
                         "(extend it from the folder and store it ran with)")

    from xsweep.search.searcher import build_searcher
    from xsweep.sweep import driver
    from xsweep.tracking.query import child_runs
    from xsweep.tracking.runs import SweepRuns, reserve_of

    version = Version(version=before.version + 1, overrides=[*before.overrides, *overrides],
                      earlier=Earlier(counts=_counts(parent), best=_best_so_far(client, parent, spec)))
    runs = SweepRuns(uri=uri, experiment_id=record.experiment_id, parent_run_id=record.parent_run_id,
                     base_config=spec.base_trial_config(), version=version.version, **reserve_of(spec))
    session = driver.SweepSession(spec=spec, storage=storage, name=sweep, record=record, runs=runs)
    if old.ablation is not None:
        return _extend_ablation(session, old, version, address=address, verbose=verbose)
    searcher = build_searcher(spec, open_run=runs, past_runs=child_runs(client, parent))
    evidence = searcher.evidence
    new = spec.search.num_samples - len(evidence.carried)
    if new <= 0:
        raise SpecError([f"--set search.num_samples: the sweep has {len(evidence.carried)} configurations "
                         f"in this space already and num_samples is {spec.search.num_samples} (raise it to train "
                         "more)"])
    version.trials = new * spec.search.repeats
    cluster.check_address_reachable(address)
    cluster.connect(address, spec=spec, storage=storage)
    header = [f"extending sweep {sweep} as version {version.version}: {version.trials} new trials, results in "
              f"{session.path}",
              f"earlier trials: {len(evidence.carried)} configuration(s) carried into the new space as the searcher's "
              f"evidence, {evidence.outside} trial(s) outside it kept as history only"
              + (f", {evidence.unfinished} unfinished left out" if evidence.unfinished else ""),
              f"MLflow: experiment '{spec.experiment}', parent run {runs.parent_run_id}"]
    try:
        _start_version(session, version)
        driver.announce(session, header, verbose=verbose)
        callbacks, console = session.callbacks(planned=version.trials)
        tuner = driver.build_tuner(session, callbacks=callbacks, searcher=searcher, num_trials=version.trials)
        return driver.train(session, tuner=tuner, console=console, planned=version.trials, earlier=version.earlier,
                            verbose=verbose)
    except BaseException:
        import ray

        ray.shutdown()
        raise


def _extend_ablation(session: SweepSession, old: Spec, version: Version, *, address: str | None, verbose: bool) -> SweepOutcome:
    """An ablation's next version: phase 1 for its new variants, phase 2 for what is unconfirmed
    (ablation_extend.py, phases.py)."""
    from xsweep.search.searcher import build_searcher
    from xsweep.sweep import driver
    from xsweep.sweep.ablation_extend import check_extension

    spec, record = session.spec, session.record
    added, first_new_seed = check_extension(old, spec)
    version.trials = len(added) * spec.ablation.budget
    earlier_picked = record.every_picked()
    state = record.ablation_state(version.version)
    state.variants, state.earlier_picked, state.first_new_seed = added, earlier_picked, first_new_seed
    cluster.check_address_reachable(address)
    cluster.connect(address, spec=spec, storage=session.storage)
    new_seeds = spec.ablation.confirm_seeds - first_new_seed + 1
    header = [f"extending ablation {session.name} as version {version.version}: {len(added)} new variant(s) to tune "
              f"({version.trials} trials), {new_seeds} new seed(s) for the {len(earlier_picked)} confirmed "
              f"variant(s); results in {session.path}",
              f"MLflow: experiment '{spec.experiment}', parent run {session.runs.parent_run_id}"]
    try:
        _start_version(session, version)
        driver.announce(session, header, verbose=verbose)
        tuner = console = None
        if added:
            callbacks, console = session.callbacks(planned=version.trials)
            tuner = driver.build_tuner(session, callbacks=callbacks, num_trials=version.trials,
                                       searcher=build_searcher(spec, open_run=session.runs, variants=added))
        return driver.train(session, tuner=tuner, console=console, planned=version.trials, earlier=version.earlier,
                            verbose=verbose, then_confirm=True)
    except BaseException:
        import ray

        ray.shutdown()
        raise


def _start_version(session: SweepSession, version: Version) -> None:
    """The new version in the sweep's record and on its MLflow parent run, which runs again."""
    from xsweep.tracking.writes import set_tags

    session.record.later_versions.append(version)
    session.write_record()
    runs = session.runs
    _record_version(runs.client, runs.parent_run_id, session.spec, version=version.version)
    runs.client.update_run(runs.parent_run_id, status="RUNNING")
    set_tags(runs.client, runs.parent_run_id, {TAG_STATUS: "running"})


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


def _best_so_far(client, parent, spec: Spec) -> BestTrial | None:
    """The best trial of the versions so far, as the parent run recorded it."""
    run_id = parent.data.tags.get(TAG_BEST_RUN_ID)
    value = parent.data.metrics.get(f"best_{spec.search.metric}")
    if not run_id or value is None:
        return None
    searched = json.loads(client.get_run(run_id).data.tags.get(TAG_SEARCHED) or "{}")
    return BestTrial(run_id=run_id, value=value, trial_id=parent.data.tags.get(TAG_BEST_TRIAL_ID),
                     name=parent.data.tags.get(TAG_BEST_TRIAL_NAME), metric=spec.search.metric, searched=searched)


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

