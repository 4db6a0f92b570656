"""Run, resume and summarise a sweep: the spec becomes a Ray Tune `Tuner` tracked to MLflow.

    spec --> parent run (MLflow) --> Tuner(SweepSearcher, scheduler, resources, failures, storage)
         --> trials (trainable.py) report to Tune --> TrackingCallback writes child runs
         --> summary: best trial, counts per status, best model registered with alias `best`
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from xsweep.cluster import connect as cluster
from xsweep.errors import SweepError
from xsweep.spec import Spec, load_spec_text
from xsweep.cluster.storage import (
    Storage,
    find_sweeps,
    new_sweep_name,
    open_storage,
    read_sweep_record,
    write_sweep_record,
)

log = logging.getLogger("xsweep")

# At the end of a sweep, how long to wait for queued tracking writes (a server that is down
# right then gets this long to come back) before saying what is left and exiting.
FLUSH_TIMEOUT_S = float(os.environ.get("XSWEEP_TRACKING_FLUSH_TIMEOUT", "600"))



@dataclass
class SweepOutcome:
    sweep_path: str
    parent_run_id: str
    experiment: str
    counts: dict[str, int] = field(default_factory=dict)
    best: dict | None = None  # {"trial_id", "run_id", "metric", "value", "config"}
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.counts.get("completed", 0) + self.counts.get("stopped", 0) else 1


def tracking_uri(spec: Spec, *, workdir: str) -> str:
    from xsweep.tracking.store import default_uri

    return spec.tracking.uri or default_uri(workdir)


def _trial_dirname(trial) -> str:
    """Short folder names: Tune's default spells out every parameter, MLflow run id included."""
    return f"trial_{trial.trial_id}"


def _tuner(spec: Spec, *, storage: Storage, sweep: str, runs, callback):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from xsweep.sweep.searcher import build_scheduler, build_searcher
    from xsweep.training.trainable import train_trial
    from xsweep.tracking.callback import ImportModelCodeEarly

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base_config=spec.base_trial_config()),
        {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial},
    )
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # the loggers are listed below
    # Tune saves its state with every trial checkpoint (num_to_keep below), by design here, and
    # would warn about it several times per sweep.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(spec, open_run=runs),
            scheduler=build_scheduler(spec),
            metric=spec.search.metric,
            mode=spec.search.mode,
            num_samples=spec.total_trials(),
            max_concurrent_trials=spec.search.max_concurrent,
            # On one machine a trial's process outlives it and serves the next one: no new
            # Python process, torch import and data load per trial (seconds each, on short CPU
            # trials). On a cluster, reuse would keep handing trials to the node that finished
            # first instead of spreading them over the nodes.
            reuse_actors=cluster.is_single_node(),
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=sweep,
            storage_path=storage.tune_path,
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
            callbacks=[callback, ImportModelCodeEarly(), CSVLoggerCallback(), JsonLoggerCallback()],
            verbose=1,
        ),
    )


def run_sweep(spec: Spec, *, overrides: list[str], address: str | None, workdir: str) -> SweepOutcome:
    from xsweep.sweep.startup import while_ray_starts
    from xsweep.tracking.store import check_reachable, credentials_to_env

    uri = credentials_to_env(tracking_uri(spec, workdir=workdir))
    check_reachable(uri)  # fails in a second with one line, before Ray or any trial starts
    storage = open_storage(spec.storage.path, workdir=workdir, endpoint_url=spec.storage.endpoint_url)
    cluster.check_reachable(address)
    with while_ray_starts(uri):
        ray_address = cluster.connect(address, spec=spec, storage=storage)

    from xsweep.tracking.runs import start_sweep
    from xsweep.tracking.callback import TrackingCallback

    sweep = new_sweep_name(spec.name)
    sweep_path = f"{storage.root}/{sweep}"
    runs = start_sweep(spec, uri=uri, sweep_path=sweep_path, ray_address=ray_address)
    write_sweep_record(storage, sweep, {
        "spec_text": spec.text,
        "spec_source": spec.source,
        "overrides": list(overrides),
        "parent_run_id": runs.parent_run_id,
        "experiment_id": runs.experiment_id,
        "workdir": str(Path(workdir).resolve()),
    })
    print(f"sweep {sweep}: {spec.total_trials()} trials, results in {sweep_path}", flush=True)
    print(f"MLflow: experiment '{spec.experiment}', parent run {runs.parent_run_id}", flush=True)

    callback = TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode,
                                epochs=spec.train.epochs)
    tuner = _tuner(spec, storage=storage, sweep=sweep, runs=runs, callback=callback)
    return _fit_and_finish(tuner, spec, runs=runs, sweep_path=sweep_path, callback=callback)


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
        raise SweepError(f"{name_or_path}: no sweep of that name under {storage.root} "
                         f"(pass the sweep's folder instead)")
    return storage, sweeps[-1]


def resume_sweep(name_or_path: str, *, address: str | None, workdir: str,
                 endpoint_url: str | None = None) -> SweepOutcome:
    from ray import tune

    from xsweep.tracking.runs import SweepRuns
    from xsweep.tracking.store import check_reachable
    from xsweep.training.trainable import train_trial

    storage, sweep = locate_sweep(name_or_path, workdir=workdir, endpoint_url=endpoint_url)
    record = read_sweep_record(storage, sweep)
    spec = load_spec_text(record["spec_text"], source=record["spec_source"], overrides=record["overrides"])
    uri = tracking_uri(spec, workdir=record["workdir"])
    check_reachable(uri)
    cluster.connect(address, spec=spec, storage=storage)
    sweep_path = f"{storage.root}/{sweep}"
    tune_sweep_path = f"{storage.tune_path}/{sweep}"
    runs = SweepRuns(uri=uri, experiment_id=record["experiment_id"],
                     parent_run_id=record["parent_run_id"], base_config=spec.base_trial_config())
    runs.client.update_run(runs.parent_run_id, status="RUNNING")
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base_config=spec.base_trial_config()),
        {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial},
    )
    # The searcher (Optuna's study included) and the tracking callback come back from Tune's own
    # experiment state; finished trials are not run again, unfinished and errored ones continue.
    tuner = tune.Tuner.restore(tune_sweep_path, trainable, resume_unfinished=True, resume_errored=True,
                               storage_filesystem=storage.filesystem)
    print(f"resuming sweep {sweep} from {sweep_path}", flush=True)
    return _fit_and_finish(tuner, spec, runs=runs, sweep_path=sweep_path)


def _fit_and_finish(tuner, spec: Spec, *, runs, sweep_path: str, callback=None) -> SweepOutcome:
    import ray

    from xsweep.tracking.delivery import shared_delivery
    from xsweep.sweep.interrupt import graceful_interrupt
    from xsweep.sweep.outcome import finish_sweep
    from xsweep.tracking.callback import TrackingCallback

    with graceful_interrupt() as interrupt:
        try:
            results = tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C
            results = None
    # Ray is done with: its shutdown, mostly waiting for its processes to exit, overlaps the
    # tracking and the model registration below, which need only MLflow and the storage.
    ray_shutdown = threading.Thread(target=ray.shutdown, name="xsweep-ray-shutdown")
    ray_shutdown.start()
    # Tune's records are the truth: deliver to MLflow whatever epochs it is still missing.
    if results is not None:
        TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode,
                         epochs=spec.train.epochs).sync_results(results)
    delivery = shared_delivery()
    left = delivery.flush(timeout=FLUSH_TIMEOUT_S)
    if callback is not None and os.environ.get("XSWEEP_PROFILE_TRACKING") == "1":
        Path(sweep_path, "tracking_profile.json").write_text(json.dumps({
            "callback_seconds": callback.callback_seconds, "results": callback.results_seen,
            "delivery_busy_seconds": delivery.busy_seconds,
        }))
    if left:
        print(f"warning: {left} tracking writes could not be delivered (server unreachable); "
              f"`xsweep resume {sweep_path}` delivers them later", file=sys.stderr)
    outcome = finish_sweep(results, spec, runs=runs, sweep_path=sweep_path, interrupted=interrupt.requested)
    ray_shutdown.join()
    return outcome
