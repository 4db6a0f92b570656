"""The one pipeline every way of training a sweep goes through: `xsweep run`, `resume`, `extend`, and
an ablation's two phases.

    entry point (run.py, extend.py): checks, nothing written yet --> Ray --> SweepSession
    --> announce: what it is about to do, where the log goes
    --> build_tuner (or Tune's restore, with `trainable`)
    --> train: the console and the log, Tune's fit,
               then for an ablation's phase 1 its phase 2 (planned by phases.py), fitted the same way
    --> finish.py: what the sweep ended with --> the summary --> the log kept beside the results

Imports Ray: an entry point imports it once `prepare_process` (run.py) has set the process up.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from xsweep.cluster import connect as cluster
from xsweep.cluster.storage import Storage
from xsweep.search.ablation import CONFIRM, TUNE, VariantScheduler, sequential_trials_due
from xsweep.search.schedulers import SCHEDULERS, build_trial_scheduler, judged_by
from xsweep.search.searcher import build_confirm_searcher, build_searcher
from xsweep.spec import Spec
from xsweep.sweep.console import ConsoleCallback, first_lines
from xsweep.sweep.finish import ImportModelCodeEarly, finish_sweep
from xsweep.sweep.interrupt import graceful_interrupt
from xsweep.sweep.outcome import SweepOutcome, print_summary
from xsweep.sweep.output import LOG_NAME, keep_log, log_path, output_to_log
from xsweep.sweep.phases import confirm_location, plan_confirmation
from xsweep.sweep.record import Earlier, SweepRecord, save_record
from xsweep.sweep.versions import tune_location
from xsweep.tracking.callback import TrackingCallback
from xsweep.tracking.runs import SweepRuns, release_reserved_runs
from xsweep.tracking.writer import shared_writer
from xsweep.training.compile_cache import FOLDER, SharedCompileCache
from xsweep.training.trainable import train_trial

# At the end of a sweep, how long to wait for queued tracking writes (a server that is down
# right then gets this long to come back) before saying what is left and exiting.
FLUSH_TIMEOUT_S = float(os.environ.get("XSWEEP_TRACKING_FLUSH_TIMEOUT", "600"))


@dataclass
class SweepSession:
    """One version of a sweep as the driver trains it: its spec, its folder, its record, its MLflow runs."""
    spec: Spec
    storage: Storage
    name: str  # the sweep's folder
    record: SweepRecord
    runs: SweepRuns

    @property
    def path(self) -> str:
        return f"{self.storage.root}/{self.name}"

    @property
    def version(self) -> int:
        return self.runs.version

    def write_record(self) -> None:
        save_record(self.storage, self.name, self.record)

    def callbacks(self, *, planned: int | None) -> tuple[list, ConsoleCallback]:
        """The Tune callbacks of a phase that plans `planned` trials: MLflow's and the console's."""
        console = ConsoleCallback.for_spec(self.spec, total_trials=planned)
        tracking = TrackingCallback(self.runs, metric=self.spec.search.metric, mode=self.spec.search.mode)
        return [tracking, console], console


def trainable(spec: Spec, *, storage: Storage, sweep: str):
    """Tune's trainable of the sweep's trials, with the resources each holds."""
    resources = spec.resources
    if resources.workers_per_trial > 1:
        # The trial's process only waits for its workers, which Ray Train places with the trial's
        # CPUs and GPUs (training/data_parallel.py); Tune wants a bundle that is not empty.
        held = {"cpu": 0, "memory": 1}
    else:
        held = {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
    # Compiled trials keep their code in the sweep's storage for other nodes and for `resume`.
    compile_cache = SharedCompileCache(*storage.fs_path(sweep, FOLDER))
    with_base = tune.with_parameters(train_trial, base_config=spec.base_trial_config(), compile_cache=compile_cache)
    return tune.with_resources(with_base, held)


def build_tuner(session: SweepSession, *, callbacks: list, searcher=None, num_trials: int | None = None,
                past_runs=None, phase: str | None = None) -> tune.Tuner:
    """The Tuner of the session's version (its own Tune experiment, versions.py), with the searcher
    given (an extension's, holding the earlier trials; phase 2's) or a new one (given a warm start's
    `past_runs`). An ablation's phase 2 (`phase="confirm"`) has its own folder and runs every trial to
    the end (FIFO); its phase 1 schedules each variant on its own (search/ablation.py)."""
    spec, storage = session.spec, session.storage
    metric, mode = judged_by(spec)  # the searcher has its own: all of search.objectives
    if phase == CONFIRM:
        storage_path, name = confirm_location(storage, session.name, session.version)
        scheduler = SCHEDULERS.get("fifo").build(spec)
    else:
        storage_path, name = tune_location(storage, session.name, session.version)
        scheduler = VariantScheduler(spec) if spec.ablation is not None else build_trial_scheduler(spec)
    return tune.Tuner(
        trainable(spec, storage=storage, sweep=session.name),
        tune_config=tune.TuneConfig(
            search_alg=searcher or build_searcher(spec, open_run=session.runs, past_runs=past_runs),
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
            trial_dirname_creator=trial_dirname,
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


def trial_dirname(trial) -> str:
    """Short folder names: Tune's default spells out every parameter, MLflow run id included."""
    return f"trial_{trial.trial_id}"


def announce(session: SweepSession, header: list[str], *, verbose: bool) -> None:
    """What the sweep is about to do (`header`) and where its log goes, before its Tuner is built."""
    for line in header:
        print(line, flush=True)
    copied_to = None if session.storage.is_local else f"{session.path}/{LOG_NAME}"
    log = log_path(session.storage, session.name)
    print(first_lines(log=str(log), verbose=verbose, copied_to=copied_to), flush=True)


def train(session: SweepSession, *, tuner: tune.Tuner | None, console: ConsoleCallback | None,
          planned: int | None, earlier: Earlier, verbose: bool, then_confirm: bool = False) -> SweepOutcome:
    """Fit `tuner` (a phase that plans `planned` trials; after `earlier`) and finish the sweep. With
    `then_confirm` (an ablation's phase 1, or no `tuner` when an extended ablation adds seeds only),
    phase 2 follows once every planned trial has ended."""
    log = log_path(session.storage, session.name)
    # Everything Ray, Tune and MLflow print, until Ray has shut down, goes to the log; the user
    # sees the console's view, then the summary.
    with output_to_log(log, verbose=verbose) as streams:
        results, interrupted = fit_tuner(tuner, console, streams=streams, verbose=verbose) if tuner else (None, False)
        if then_confirm and not interrupted and (tuner is None or every_trial_ended(results, planned)):
            tuner, console, earlier, planned = _confirmation(session, results, earlier=earlier, streams=streams)
            results, interrupted = fit_tuner(tuner, console, streams=streams, verbose=verbose)
        in_flight = console.board.running() if interrupted else frozenset()  # stopped by the Ctrl-C
        outcome = _finish(session, results, interrupted=interrupted, streams=streams, earlier=earlier,
                          planned=planned, in_flight=in_flight)
    keep_log(session.storage, session.name, log)
    return outcome


def _confirmation(session: SweepSession, results, *, earlier: Earlier, streams):
    """Phase 2 of an ablation after its phase 1 (`results`; None when there was none): its plan,
    recorded for resume, and its Tuner. Returns (tuner, console, earlier, planned)."""
    spec = session.spec
    if results is not None:  # phase 1 complete in MLflow before its runs are ranked
        TrackingCallback(session.runs, metric=spec.search.metric, mode=spec.search.mode).sync_results(results)
    plan = plan_confirmation(results, spec, record=session.record, version=session.version, earlier=earlier)
    session.write_record()
    print(plan.line, file=streams.stdout, flush=True)
    callbacks, console = session.callbacks(planned=plan.most)
    tuner = build_tuner(session, callbacks=callbacks, num_trials=plan.most, phase=CONFIRM,
                        searcher=build_confirm_searcher(spec, plan.items, picked=plan.picked, open_run=session.runs))
    return tuner, console, plan.earlier, plan.most


def fit_tuner(tuner: tune.Tuner, console: ConsoleCallback, *, streams, verbose: bool):
    """(Tune's results or None after a second Ctrl-C, whether Ctrl-C came) of one Tuner."""
    with graceful_interrupt() as interrupt, console.showing(terminal=streams.stdout, log=streams.log,
                                                            verbose=verbose):
        try:
            results = tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C
            results = None
    return results, interrupt.requested


def every_trial_ended(results, planned: int | None) -> bool:
    return results is not None and results.num_terminated + results.num_errors == len(results) >= (planned or 0)


def _finish(session: SweepSession, results, *, interrupted: bool, streams, earlier: Earlier,
            planned: int | None, in_flight: frozenset) -> SweepOutcome:
    spec, runs = session.spec, session.runs
    if earlier.phase == TUNE and spec.ablation.sequential and results is not None:
        # A sequential phase 2 plans at most `planned`; what its rounds called for is what it owes.
        planned = sequential_trials_due(spec, session.record.ablation_state(session.version).picked, results)
    # Ray is done with: its shutdown, mostly waiting for its processes to exit, overlaps the
    # tracking and the model registration below, which need only MLflow and the storage.
    ray_shutdown = threading.Thread(target=ray.shutdown, name="xsweep-ray-shutdown")
    ray_shutdown.start()
    release_reserved_runs()  # no trial is suggested any more
    # Tune's records are the truth: deliver to MLflow whatever epochs it is still missing.
    if results is not None:
        TrackingCallback(runs, metric=spec.search.metric, mode=spec.search.mode).sync_results(results)
    left = shared_writer().flush(timeout=FLUSH_TIMEOUT_S)
    if left:
        print(f"warning: {left} tracking writes could not be delivered (server unreachable); "
              f"`xsweep resume {session.path}` delivers them later", file=streams.stderr)
    # The summary to the user; MLflow's lines while it registers the model and Ray's while it
    # shuts down still to the log.
    with contextlib.redirect_stdout(streams.stdout):
        outcome = finish_sweep(results, spec, runs=runs, sweep_path=session.path, interrupted=interrupted,
                               earlier=earlier, planned_trials=planned, in_flight=in_flight, undelivered=left)
        print_summary(outcome)
    ray_shutdown.join()
    return outcome
