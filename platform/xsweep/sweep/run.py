"""Run and resume a sweep: the spec becomes a Ray Tune `Tuner` tracked to MLflow.

    spec --> checks (data, tracking store, storage, Ray's address), nothing written yet
         --> Ray starts (while MLflow gets ready) --> parent run (MLflow) and xsweep.json
         --> Tuner(searcher, trial scheduler, resources, failures, storage)
         --> trials (training/trainable.py) report to Tune
             --> TrackingCallback writes their child runs, ConsoleCallback shows them
         --> finish.py: best trial, counts per status, best model registered with alias `best`

`run_sweep` and `resume_sweep` are the Python API of `xsweep run` and `xsweep resume`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from xsweep.cluster import connect as cluster
from xsweep.cluster.storage import (
    Storage, check_writable, find_sweeps, new_sweep_name, open_storage, read_sweep_record, recorded_tracking_uri,
    sweep_names, write_sweep_record,
)
from xsweep.defaults import apply_process_defaults, embedded_ray_on_loopback
from xsweep.errors import SpecError, SweepError
from xsweep.spec import Spec, load_spec_text
from xsweep.sweep.outcome import SweepOutcome
from xsweep.sweep.saved_state import accept_moved_modules, missing_name, saved_by_an_older_xsweep
from xsweep.text import counted
from xsweep.sweep.versions import latest, tune_dir, version_spec
from xsweep.tracking.store import check_reachable, credentials_to_env, resolve_uri
from xsweep.training.datasets import check_classes_needed, dataset_of

# At the end of a sweep, how long to wait for queued tracking writes (a server that is down
# right then gets this long to come back) before saying what is left and exiting.
FLUSH_TIMEOUT_S = float(os.environ.get("XSWEEP_TRACKING_FLUSH_TIMEOUT", "600"))


def run_sweep(spec: Spec, *, address: str | None = None, workdir: str | os.PathLike | None = None,
              verbose: bool = False) -> SweepOutcome:
    """Run the sweep `spec` describes (see `load_spec`): on an embedded Ray listening on 127.0.0.1
    only, or on the Ray cluster at `address`. Relative paths (storage.path, data.root, the default
    ./mlflow.db) mean `workdir`, by default the current folder. Its outcome's `exit_code` is the
    CLI's. Problems a user can fix raise a `UserError` before anything is written."""
    _process_defaults(address)  # first: nothing may import Ray before it
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

    from xsweep.sweep.console import ConsoleCallback, first_lines
    from xsweep.sweep.output import keep_log, log_path
    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.runs import start_sweep

    sweep = new_sweep_name(spec.name)
    sweep_path = f"{storage.root}/{sweep}"
    runs = start_sweep(spec, uri=uri, sweep_path=sweep_path, ray_address=ray_address)
    write_sweep_record(storage, sweep, {
        "spec_text": spec.text,
        "spec_source": spec.source,
        "overrides": list(spec.overrides),
        "parent_run_id": runs.parent_run_id,
        "experiment_id": runs.experiment_id,
        "workdir": workdir,
        "tracking_uri": uri,  # resume and status open this store, whatever their shell says
    })
    log = log_path(storage, sweep)
    print(f"sweep {sweep}: {counted(spec.total_trials(), 'trial')}, results in {sweep_path}", flush=True)
    print(f"MLflow: experiment '{spec.experiment}', parent run {runs.parent_run_id}", flush=True)
    if spec.search.multi_objective:
        print(objectives_line(spec), flush=True)
    if spec.ablation is not None:
        from xsweep.sweep.phases import phase_line

        print(phase_line(spec), flush=True)
    if past_runs is not None:
        print(f"warm start: {len(evidence.carried)} configuration(s) of experiment "
              f"'{spec.search.warm_start.experiment}' seed the searcher ({evidence.outside} trial(s) outside this "
              "space or spec left out)", flush=True)
    print(first_lines(log=str(log), verbose=verbose, copied_to=_log_copy(storage, sweep_path)), flush=True)

    callback = TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode)
    planned = spec.search.num_samples * spec.search.repeats  # an ablation's phase 2 comes after
    console = ConsoleCallback.for_spec(spec, total_trials=planned)
    tuner = _tuner(spec, storage=storage, sweep=sweep, runs=runs, callbacks=[callback, console], past_runs=past_runs)
    outcome = _fit_and_finish(tuner, spec, runs=runs, sweep_path=sweep_path, console=console, log=log,
                              verbose=verbose, callback=callback, planned_trials=planned,
                              next_phase=_confirmation(spec, storage=storage, sweep=sweep, runs=runs))
    keep_log(storage, sweep, log)
    return outcome


def resume_sweep(name_or_path: str, *, address: str | None = None, workdir: str | os.PathLike | None = None,
                 endpoint_url: str | None = None, verbose: bool = False) -> SweepOutcome:
    """Finish an interrupted sweep (a folder `run_sweep` printed, or a spec name: its latest
    sweep): finished trials are not run again, the others continue, with the same Optuna study."""
    _process_defaults(address)  # first: nothing may import Ray before it
    from ray import tune

    from xsweep import compat
    from xsweep.sweep.console import ConsoleCallback, first_lines
    from xsweep.sweep.output import keep_log, log_path
    from xsweep.tracking.runs import SweepRuns, reserve_of

    workdir = str(Path(workdir or os.getcwd()).resolve())
    storage, sweep = locate_sweep(name_or_path, workdir=workdir, endpoint_url=endpoint_url)
    record = read_sweep_record(storage, sweep)
    version = latest(record)  # an extended sweep resumes its latest version
    spec = version_spec(record, version)
    uri = recorded_tracking_uri(record, spec)
    check_reachable(uri)
    sweep_path = f"{storage.root}/{sweep}"
    counts = _finished_counts(uri, record["parent_run_id"])
    if counts is not None:  # nothing to resume: no Ray, no trial, no second registered model
        print(f"sweep {sweep} has finished ({counts}): nothing to resume. `xsweep extend {sweep}` adds trials to "
              f"it; `xsweep status {sweep}` lists them.", flush=True)
        return SweepOutcome(sweep_path=sweep_path, parent_run_id=record["parent_run_id"], experiment=spec.experiment,
                            already_finished=True)
    cluster.connect(address, spec=spec, storage=storage)
    # The searcher (Optuna's study included) and the callbacks come back from Tune's own
    # experiment state; finished trials are not run again, unfinished and errored ones continue.
    # An ablation resumes the phase it was in (phases.py), and after phase 1 runs phase 2.
    earlier, planned, next_phase = version["earlier"], version.get("trials"), None
    experiment_dir = tune_dir(storage, sweep, version["version"])
    confirming = False
    if spec.ablation is not None:
        from xsweep.sweep.phases import ablation_state, confirm_location

        state = ablation_state(record, version["version"])
        confirming = state.get("phase") == "confirm"
        if confirming:
            experiment_dir = "/".join(confirm_location(storage, sweep, version["version"]))
            earlier, planned = state["earlier"], len(state["items"])
        elif planned is None:
            planned = spec.search.num_samples
    accept_moved_modules()
    try:
        tuner = tune.Tuner.restore(experiment_dir, _trainable(spec, storage=storage, sweep=sweep),
                                   resume_unfinished=True, resume_errored=True, storage_filesystem=storage.filesystem)
    except (ModuleNotFoundError, AttributeError) as exc:
        missing = missing_name(exc)
        if missing is None:
            raise
        raise saved_by_an_older_xsweep(sweep_path, record, uri=uri, missing=missing) from None
    runs = SweepRuns(uri=uri, experiment_id=record["experiment_id"], parent_run_id=record["parent_run_id"],
                     base_config=spec.base_trial_config(), version=version["version"], **reserve_of(spec))
    runs.client.update_run(runs.parent_run_id, status="RUNNING")
    if spec.ablation is not None and not confirming:
        next_phase = _confirmation(spec, storage=storage, sweep=sweep, runs=runs, record=record,
                                   version=version["version"], earlier=earlier)
    console = compat.restored_callback(tuner, ConsoleCallback, otherwise=lambda: ConsoleCallback.for_spec(spec))
    log = log_path(storage, sweep)
    print(f"resuming sweep {sweep} from {sweep_path}", flush=True)
    print(first_lines(log=str(log), verbose=verbose, copied_to=_log_copy(storage, sweep_path)), flush=True)
    outcome = _fit_and_finish(tuner, spec, runs=runs, sweep_path=sweep_path, console=console, log=log,
                              verbose=verbose, earlier=earlier, planned_trials=planned, next_phase=next_phase)
    keep_log(storage, sweep, log)
    return outcome


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


def _process_defaults(address: str | None) -> None:
    """Where a driver's process starts its work (the CLI, or a notebook calling the API)."""
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
        if read_sweep_record(storage, sweep) is None:
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


def _log_copy(storage: Storage, sweep_path: str) -> str | None:
    """Where an s3:// sweep's log ends up (a local sweep's log is in its folder already)."""
    from xsweep.sweep.output import LOG_NAME

    return None if storage.is_local else f"{sweep_path}/{LOG_NAME}"


def _trainable(spec: Spec, *, storage: Storage, sweep: str):
    from ray import tune

    from xsweep.training.compile_cache import FOLDER, SharedCompileCache
    from xsweep.training.trainable import train_trial

    resources = spec.resources
    if resources.workers_per_trial > 1:
        # The trial's process only waits for its workers, which Ray Train places with the trial's
        # CPUs and GPUs (training/data_parallel.py); Tune wants a bundle that is not empty.
        held = {"cpu": 0, "memory": 1}
    else:
        held = {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
    # Compiled trials keep their code in the sweep's storage for other nodes and for `resume`.
    compile_cache = SharedCompileCache(*storage.fs_path(sweep, FOLDER))
    trainable = tune.with_parameters(train_trial, base_config=spec.base_trial_config(), compile_cache=compile_cache)
    return tune.with_resources(trainable, held)


def objectives_line(spec: Spec) -> str:
    """What a multi-objective sweep searches, and the one objective its scheduler compares trials by."""
    from xsweep.search.schedulers import SCHEDULERS, judged_by

    searched = ", ".join(f"{o.metric} ({o.mode})" for o in spec.search.objective_list)
    line = f"objectives: {searched}, for their Pareto front"
    if "metric" in SCHEDULERS.get(spec.scheduler.kind).fields:
        line += f"; {spec.scheduler.kind} stops trials by {judged_by(spec)[0]} alone (scheduler.metric)"
    return line


def _trial_dirname(trial) -> str:
    """Short folder names: Tune's default spells out every parameter, MLflow run id included."""
    return f"trial_{trial.trial_id}"


def _confirmation(spec: Spec, *, storage: Storage, sweep: str, runs, record: dict | None = None, version: int = 1,
                  earlier: dict | None = None):
    """For an ablation, what starts phase 2 of `version` once its phase 1 has finished (phases.py);
    else None. `earlier`: what the versions before it ended with (versions.py)."""
    if spec.ablation is None:
        return None
    from xsweep.cluster.storage import read_sweep_record
    from xsweep.sweep.console import ConsoleCallback
    from xsweep.sweep.phases import start_confirmation
    from xsweep.tracking.callback import TrackingCallback

    def callbacks_for(planned: int):
        console = ConsoleCallback.for_spec(spec, total_trials=planned)
        return [TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode), console], console

    def next_phase(results):
        return start_confirmation(results, spec, storage=storage, sweep=sweep, runs=runs,
                                  record=record or read_sweep_record(storage, sweep), version=version,
                                  earlier=earlier, callbacks_for=callbacks_for, make_tuner=make_tuner)

    def make_tuner(**confirm):
        return _tuner(spec, storage=storage, sweep=sweep, runs=runs, phase="confirm", version=version, **confirm)
    return next_phase


def _tuner(spec: Spec, *, storage: Storage, sweep: str, runs, callbacks: list, version: int = 1,
           searcher=None, num_trials: int | None = None, past_runs=None, location: tuple[str, str] | None = None,
           phase: str | None = None):
    """The Tuner of a sweep's version (1 unless extended: its own Tune experiment, versions.py),
    with the searcher given (an extension's, holding the earlier trials) or a new one (given a warm
    start's `past_runs`). An ablation's confirmation phase has its own `location` and runs every
    trial to the end (FIFO); its tuning phase schedules each variant on its own (ablation.py)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from xsweep.sweep.finish import ImportModelCodeEarly
    from xsweep.search.schedulers import SCHEDULERS, build_trial_scheduler, judged_by
    from xsweep.search.searcher import build_searcher

    from xsweep.sweep.versions import tune_location

    metric, mode = judged_by(spec)  # the searcher has its own: all of search.objectives
    storage_path, name = location or tune_location(storage, sweep, version)
    if phase == "confirm":
        scheduler = SCHEDULERS.get("fifo").build(spec)
    elif spec.ablation is not None:
        from xsweep.search.ablation import VariantScheduler

        scheduler = VariantScheduler(spec)
    else:
        scheduler = build_trial_scheduler(spec)
    return tune.Tuner(
        _trainable(spec, storage=storage, sweep=sweep),
        tune_config=tune.TuneConfig(
            search_alg=searcher or build_searcher(spec, open_run=runs, past_runs=past_runs),
            scheduler=scheduler,
            metric=metric,
            mode=mode,
            num_samples=num_trials or spec.total_trials(),
            max_concurrent_trials=spec.search.max_concurrent,
            # On one machine a trial's process outlives it and serves the next one: no new
            # Python process, torch import and data load per trial (seconds each, on short CPU
            # trials). On a cluster, reuse would keep handing trials to the node that finished
            # first instead of spreading them over the nodes. Never for a data-parallel trial: its
            # process only waits for its workers, and only its end ends them (a reused process
            # whose trial ASHA stopped would go on training it).
            reuse_actors=cluster.is_single_node() and spec.resources.workers_per_trial == 1,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage.filesystem,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            # Keep the two best checkpoints by the sweep's metric; Tune always keeps the latest
            # too, which is the one a restarted trial continues from. The second best is what a
            # trial falls back to when its latest turns out damaged (trainable.restore).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2,
                checkpoint_score_attribute=spec.search.metric,
                checkpoint_score_order=spec.search.mode,
            ),
            # Tune's result files, without its TensorBoard logger: MLflow is the sweep's UI, and
            # tensorboardX imports torch, seconds of the driver's start-up for nothing.
            callbacks=[*callbacks, ImportModelCodeEarly(), CSVLoggerCallback(), JsonLoggerCallback()],
            # Tune's own boxes go to the sweep's log (output.py); the console is console.py's.
            verbose=1,
        ),
    )


def _fit_and_finish(tuner, spec: Spec, *, runs, sweep_path: str, console, log: Path, verbose: bool,
                    callback=None, earlier: dict | None = None, planned_trials: int | None = None,
                    next_phase=None) -> SweepOutcome:
    """`next_phase(results) -> (tuner, console, earlier, planned_trials)`: an ablation's phase 2,
    run when this phase has finished every trial it planned (phases.py); with no `tuner` (an
    extended ablation that adds seeds only), phase 2 is all there is."""
    from xsweep.tracking.callback import TrackingCallback
    from xsweep.sweep.output import output_to_log

    # Everything Ray, Tune and MLflow print, until Ray has shut down, goes to the log; the user
    # sees the console's view, then the summary.
    with output_to_log(log, verbose=verbose) as streams:
        results, interrupted = _fit(tuner, console, streams=streams, verbose=verbose) if tuner else (None, False)
        if next_phase is not None and not interrupted and (tuner is None or _every_trial_ended(results, planned_trials)):
            if results is not None:
                TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode).sync_results(results)
            with contextlib.redirect_stdout(streams.stdout):
                tuner, console, earlier, planned_trials = next_phase(results)
            results, interrupted = _fit(tuner, console, streams=streams, verbose=verbose)
        in_flight = console.board.running() if interrupted else frozenset()  # stopped by the Ctrl-C
        return _finish(results, spec, runs=runs, sweep_path=sweep_path, interrupted=interrupted,
                       streams=streams, callback=callback, earlier=earlier, planned_trials=planned_trials,
                       in_flight=in_flight)


def _fit(tuner, console, *, streams, verbose: bool):
    """(Tune's results or None after a second Ctrl-C, whether Ctrl-C came) of one Tuner."""
    from xsweep.sweep.interrupt import graceful_interrupt

    with graceful_interrupt() as interrupt, console.showing(terminal=streams.stdout, log=streams.log,
                                                            verbose=verbose):
        try:
            results = tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C
            results = None
    return results, interrupt.requested


def _every_trial_ended(results, planned: int | None) -> bool:
    return results is not None and results.num_terminated + results.num_errors == len(results) >= (planned or 0)


def _finish(results, spec: Spec, *, runs, sweep_path: str, interrupted: bool, streams,
            callback=None, earlier: dict | None = None, planned_trials: int | None = None,
            in_flight: frozenset = frozenset()) -> SweepOutcome:
    import ray

    from xsweep.sweep.finish import finish_sweep
    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.writer import shared_writer
    from xsweep.tracking.runs import release_reserved_runs

    # Ray is done with: its shutdown, mostly waiting for its processes to exit, overlaps the
    # tracking and the model registration below, which need only MLflow and the storage.
    ray_shutdown = threading.Thread(target=ray.shutdown, name="xsweep-ray-shutdown")
    ray_shutdown.start()
    release_reserved_runs()  # no trial is suggested any more
    # Tune's records are the truth: deliver to MLflow whatever epochs it is still missing.
    if results is not None:
        TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode).sync_results(results)
    delivery = shared_writer()
    left = delivery.flush(timeout=FLUSH_TIMEOUT_S)
    if callback is not None and os.environ.get("XSWEEP_PROFILE_TRACKING") == "1":
        Path(sweep_path, "tracking_profile.json").write_text(json.dumps({
            "callback_seconds": callback.callback_seconds, "results": callback.results_seen,
            "delivery_busy_seconds": delivery.busy_seconds,
        }))
    if left:
        print(f"warning: {left} tracking writes could not be delivered (server unreachable); "
              f"`xsweep resume {sweep_path}` delivers them later", file=streams.stderr)
    # The summary to the user; MLflow's lines while it registers the model and Ray's while it
    # shuts down still to the log.
    with contextlib.redirect_stdout(streams.stdout):
        outcome = finish_sweep(results, spec, runs=runs, sweep_path=sweep_path, interrupted=interrupted,
                               earlier=earlier, planned_trials=planned_trials, in_flight=in_flight,
                               undelivered=left)
    ray_shutdown.join()
    return outcome
