"""Run and resume a sweep: the spec becomes a Ray Tune `Tuner` tracked to MLflow.

    spec --> checks (data, tracking store, storage, Ray's address), nothing written yet
         --> Ray starts (while MLflow gets ready) --> parent run (MLflow) and xsweep.json (record.py)
         --> the driver (driver.py): Tuner(searcher, trial scheduler, resources, failures, storage)
         --> trials (training/trainable.py) report to Tune
             --> TrackingCallback writes their child runs, ConsoleCallback shows them
         --> finish.py: best trial, counts per status, best model registered with alias `best`

`run_sweep` and `resume_sweep` are the Python API of `xsweep run` and `xsweep resume`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from xsweep.cluster import connect as cluster
from xsweep.cluster.storage import (
    Storage, check_writable, find_sweeps, new_sweep_name, open_storage, sweep_names,
)
from xsweep.defaults import apply_process_defaults, embedded_ray_on_loopback
from xsweep.errors import SpecError, SweepError
from xsweep.spec import Spec, load_spec_text
from xsweep.sweep.outcome import SweepOutcome
from xsweep.sweep.record import Earlier, SweepRecord, load_record
from xsweep.sweep.saved_state import accept_moved_modules, missing_name, saved_by_an_older_xsweep
from xsweep.text import counted
from xsweep.sweep.versions import tune_dir
from xsweep.tracking.store import check_reachable, credentials_to_env, resolve_uri
from xsweep.training.datasets import check_classes_needed, dataset_of


def run_sweep(spec: Spec, *, address: str | None = None, workdir: str | os.PathLike | None = None,
              verbose: bool = False) -> SweepOutcome:
    """Run the sweep `spec` describes (see `load_spec`): on an embedded Ray listening on 127.0.0.1
    only, or on the Ray cluster at `address`. Relative paths (storage.path, data.root, the default
    ./mlflow.db) mean `workdir`, by default the current folder. Its outcome's `exit_code` is the
    CLI's. Problems a user can fix raise a `UserError` before anything is written."""
    prepare_process(address)  # first: nothing may import Ray before it
    from xsweep.sweep.startup import while_ray_starts

    workdir = str(Path(workdir or os.getcwd()).resolve())
    spec = recordable(spec, workdir=workdir)
    data = spec.base_trial_config()["data"]
    classes, _ = dataset_of(data).shape(data)  # the data is there (and downloaded, once, before any trial)
    check_classes_needed(spec, classes)
    uri = resolve_uri(spec.tracking.uri, workdir=workdir)
    check_reachable(uri)  # in a second, with one line
    past_runs = None
    if spec.search.warm_start is not None:
        from xsweep.search.history import warm_start
        from xsweep.search.searcher import configuration_key, optuna_space

        past_runs, evidence = warm_start(spec, uri=uri, space=optuna_space(spec), key=configuration_key)
    storage = open_storage(spec.storage.path, workdir=workdir, endpoint_url=spec.storage.endpoint_url)
    check_writable(storage)  # before the tracking store is created: bad input leaves nothing
    cluster.check_address_reachable(address)
    # Ray's start takes seconds (13-22 on a 2-core machine): say so before, not after.
    print(f"starting Ray on this machine ({cluster.LOOPBACK} only)..." if address is None else
          f"joining the Ray cluster at {address}...", flush=True)
    with while_ray_starts(uri):
        ray_address = cluster.connect(address, spec=spec, storage=storage)

    from xsweep.sweep import driver
    from xsweep.sweep.phases import phase_line
    from xsweep.tracking.runs import start_sweep

    sweep = new_sweep_name(spec.name)
    sweep_path = f"{storage.root}/{sweep}"
    runs = start_sweep(spec, uri=uri, sweep_path=sweep_path, ray_address=ray_address)
    record = SweepRecord(spec_text=spec.text, spec_source=spec.source, overrides=list(spec.overrides),
                         parent_run_id=runs.parent_run_id, experiment_id=runs.experiment_id, workdir=workdir,
                         tracking_uri=uri)  # resume and status open this store, whatever their shell says
    session = driver.SweepSession(spec=spec, storage=storage, name=sweep, record=record, runs=runs)
    session.write_record()
    header = [f"sweep {sweep}: {counted(spec.total_trials(), 'trial')}, results in {sweep_path}",
              f"MLflow: experiment '{spec.experiment}', parent run {runs.parent_run_id}"]
    if spec.search.multi_objective:
        header.append(objectives_line(spec))
    if spec.ablation is not None:
        header.append(phase_line(spec))
    if past_runs is not None:
        header.append(f"warm start: {len(evidence.carried)} configuration(s) of experiment "
                      f"'{spec.search.warm_start.experiment}' seed the searcher ({evidence.outside} trial(s) outside "
                      "this space or spec left out)")
    driver.announce(session, header, verbose=verbose)
    planned = spec.search.num_samples * spec.search.repeats  # an ablation's phase 2 comes after
    callbacks, console = session.callbacks(planned=planned)
    tuner = driver.build_tuner(session, callbacks=callbacks, past_runs=past_runs)
    return driver.train(session, tuner=tuner, console=console, planned=planned, earlier=Earlier(),
                        verbose=verbose, then_confirm=spec.ablation is not None)


def resume_sweep(name_or_path: str, *, address: str | None = None, workdir: str | os.PathLike | None = None,
                 endpoint_url: str | None = None, verbose: bool = False) -> SweepOutcome:
    """Finish an interrupted sweep (a folder `run_sweep` printed, or a spec name: its latest
    sweep): finished trials are not run again, the others continue, with the same Optuna study."""
    prepare_process(address)  # first: nothing may import Ray before it
    workdir = str(Path(workdir or os.getcwd()).resolve())
    storage, sweep = locate_sweep(name_or_path, workdir=workdir, endpoint_url=endpoint_url)
    record = load_record(storage, sweep)
    version = record.latest()  # an extended sweep resumes its latest version
    spec = record.spec_of(version)
    uri = record.tracking_uri_for(spec)
    check_reachable(uri)
    sweep_path = f"{storage.root}/{sweep}"
    counts = _finished_counts(uri, record.parent_run_id)
    if counts is not None:  # nothing to resume: no Ray, no trial, no second registered model
        print(f"sweep {sweep} has finished ({counts}): nothing to resume. `xsweep extend {sweep}` adds trials to "
              f"it; `xsweep status {sweep}` lists them.", flush=True)
        return SweepOutcome(sweep_path=sweep_path, parent_run_id=record.parent_run_id, experiment=spec.experiment,
                            already_finished=True)
    cluster.connect(address, spec=spec, storage=storage)

    from ray import tune

    from xsweep import compat
    from xsweep.search.ablation import CONFIRM
    from xsweep.sweep import driver
    from xsweep.sweep.console import ConsoleCallback
    from xsweep.sweep.phases import confirm_location
    from xsweep.tracking.runs import SweepRuns, reserve_of

    # The searcher (Optuna's study included) and the callbacks come back from Tune's own
    # experiment state; finished trials are not run again, unfinished and errored ones continue.
    # An ablation resumes the phase it was in (phases.py), and after phase 1 runs phase 2.
    earlier, planned = version.earlier, version.trials
    experiment_dir = tune_dir(storage, sweep, version.version)
    confirming = False
    if spec.ablation is not None:
        state = record.ablation_state(version.version)
        confirming = state.phase == CONFIRM
        if confirming:
            experiment_dir = "/".join(confirm_location(storage, sweep, version.version))
            earlier, planned = state.earlier, len(state.items)
        elif planned is None:
            planned = spec.search.num_samples
    accept_moved_modules()
    try:
        tuner = tune.Tuner.restore(experiment_dir, driver.trainable(spec, storage=storage, sweep=sweep),
                                   resume_unfinished=True, resume_errored=True, storage_filesystem=storage.filesystem)
    except (ModuleNotFoundError, AttributeError) as exc:
        missing = missing_name(exc)
        if missing is None:
            raise
        raise saved_by_an_older_xsweep(sweep_path, record, uri=uri, missing=missing) from None
    runs = SweepRuns(uri=uri, experiment_id=record.experiment_id, parent_run_id=record.parent_run_id,
                     base_config=spec.base_trial_config(), version=version.version, **reserve_of(spec))
    runs.client.update_run(runs.parent_run_id, status="RUNNING")
    session = driver.SweepSession(spec=spec, storage=storage, name=sweep, record=record, runs=runs)
    console = compat.restored_callback(tuner, ConsoleCallback, otherwise=lambda: ConsoleCallback.for_spec(spec))
    driver.announce(session, [f"resuming sweep {sweep} from {sweep_path}"], verbose=verbose)
    return driver.train(session, tuner=tuner, console=console, planned=planned, earlier=earlier, verbose=verbose,
                        then_confirm=spec.ablation is not None and not confirming)


def _finished_counts(uri: str, parent_run_id: str) -> str | None:
    """How a sweep's trials ended ("4 completed, 1 failed") if its last run of the driver finished
    every trial it planned and delivered every tracking write (finish.py tags its parent run); None
    if it is still to be resumed."""
    from xsweep.tracking.store import open_store
    from xsweep.tracking.tags import TAG_STATUS, TAG_TRIAL_COUNT_PREFIX

    tags = open_store(uri, flag="tracking.uri").get_run(parent_run_id).data.tags
    if tags.get(TAG_STATUS) != "finished":
        return None
    counts = {name[len(TAG_TRIAL_COUNT_PREFIX):]: n for name, n in tags.items()
              if name.startswith(TAG_TRIAL_COUNT_PREFIX)}
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trials"


def prepare_process(address: str | None) -> None:
    """Where a driver's process starts its work (the CLI, or a notebook calling the API): before
    anything imports Ray."""
    apply_process_defaults()
    if address is None:
        embedded_ray_on_loopback()  # before Ray is imported, which happens below


def recordable(spec: Spec, *, workdir: str) -> Spec:
    """The spec a sweep runs with and records (MLflow, xsweep.json, so resume too):
    - a relative data.root made absolute: trials run in folders of their own (Tune's);
    - a tracking URI's password moved to MLFLOW_TRACKING_USERNAME/PASSWORD, the URI kept bare.
    A password written in the spec file itself is refused: the file is recorded as written."""
    overrides = list(spec.overrides)
    root = spec.data.root
    if root and not os.path.isabs(os.path.expanduser(root)):
        absolute = os.path.normpath(os.path.join(workdir, os.path.expanduser(root)))
        overrides.append(f"data.root={json.dumps(absolute)}")
    password = urlsplit(spec.tracking.uri).password if spec.tracking.uri else None
    if password is not None:
        if password in spec.text:
            raise SpecError([f"{spec.source}: tracking.uri: holds a password, which would be recorded with the "
                             f"spec (remove it; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead)"])
        overrides = [o for o in overrides if o.partition("=")[0].strip() != "tracking.uri"]
        overrides.append(f"tracking.uri={json.dumps(credentials_to_env(spec.tracking.uri))}")
    if overrides == list(spec.overrides):
        return spec
    return load_spec_text(spec.text, source=spec.source, overrides=overrides)


def locate_sweep(name_or_path: str, *, workdir: str, endpoint_url: str | None = None) -> tuple[Storage, str]:
    """A sweep folder (local or s3://) or a spec name (its latest sweep under ./results).

    An s3:// folder on MinIO or another S3-compatible store needs the endpoint before its
    xsweep.json can be read: `endpoint_url` (--endpoint-url), else $XSWEEP_S3_ENDPOINT_URL, the
    variable jobs/entrypoint.py fills storage.endpoint_url from on a cluster.
    """
    looks_like_path = "/" in name_or_path or name_or_path.startswith(".")
    if looks_like_path:
        root, _, sweep = name_or_path.rstrip("/").rpartition("/")
        field = "--endpoint-url"
        if endpoint_url is None and os.environ.get("XSWEEP_S3_ENDPOINT_URL"):
            endpoint_url, field = os.environ["XSWEEP_S3_ENDPOINT_URL"], "XSWEEP_S3_ENDPOINT_URL"
        storage = open_storage(root or ".", workdir=workdir, endpoint_url=endpoint_url, endpoint_field=field)
        if load_record(storage, sweep) is None:
            raise SweepError(f"{name_or_path}: not a sweep folder (no xsweep.json; pass a folder that "
                             f"`xsweep run` printed, or a sweep name)")
        return storage, sweep
    storage = open_storage("results", workdir=workdir)
    sweeps = find_sweeps(storage, name_or_path)
    if not sweeps:
        from xsweep.spec.fields import did_you_mean

        close = did_you_mean(name_or_path, sweep_names(storage))
        hint = f"did you mean {close}?" if close else "pass the sweep's folder instead"
        raise SweepError(f"{name_or_path}: no sweep of that name under {storage.root} ({hint})")
    return storage, sweeps[-1]


def objectives_line(spec: Spec) -> str:
    """What a multi-objective sweep searches, and the one objective its scheduler compares trials by."""
    from xsweep.search.schedulers import SCHEDULERS, judged_by

    searched = ", ".join(f"{o.metric} ({o.mode})" for o in spec.search.objective_list)
    line = f"objectives: {searched}, for their Pareto front"
    if "metric" in SCHEDULERS.get(spec.scheduler.kind).fields:
        line += f"; {spec.scheduler.kind} stops trials by {judged_by(spec)[0]} alone (scheduler.metric)"
    return line
