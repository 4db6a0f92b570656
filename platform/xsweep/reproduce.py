"""`xsweep reproduce`: re-run a tracked trial from MLflow alone and compare it with what was logged.

Two checks. Re-train (default): the trial's exact config comes from its `xsweep.config` tag (the
Ray results folder may be on another machine), `fit` runs in-process, and every epoch is compared
with the logged history. Checkpoint: the trial's best checkpoint is downloaded, checked against
its sha256, and evaluated on the validation split in the set-up `fit` trained it in. Either way the
reproduction is logged as a run of its own, tagged with the run it reproduces, so a later reader
finds the evidence beside the sweep. Exit codes: 0 within tolerance, 1 not (or a damaged
checkpoint), 2 a user error (UserError).

Finding the trial and what it logged is tracking/trials.py's; the reproduction's run is
tracking/reproduction.py's; setting a trial up and rebuilding a checkpoint's network are training/'s
own functions, the ones the sweep's trials use. This module compares, judges and prints.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from mlflow.tracking import MlflowClient
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from xsweep.errors import ReproduceError
from xsweep.metrics import METRICS, Metric, reproducible
from xsweep.tracking.provenance import SHOWN_DIFFERENCES, installed_packages, package_differences, recorded_packages
from xsweep.tracking.reproduction import ReproductionRun
from xsweep.tracking.runs import git_commit
from xsweep.tracking.store import experiment_and_uri, open_store, resolve_uri
from xsweep.tracking.tags import TAG_GIT_COMMIT, TAG_SWEEP_VERSION, TAG_VARIANT, TAG_VERSION_PREFIX
from xsweep.tracking.trials import Trial, confirmation_finals, download_checkpoint, find_trial_run

DEFAULT_TOLERANCE_PP = 0.5
UNBOUNDED_WIDTH = 10_000  # characters: wider than any table of the comparison, to measure it at its full width


class _EnoughEpochs(Exception):
    """Raised from fit's on_epoch to end a re-run after the epochs the trial actually ran."""


@dataclass
class Comparison:
    metric: str
    epoch: int
    logged: float
    reproduced: float
    tolerance: float  # in `unit`
    identical: bool  # every compared metric of every epoch bit-equal

    @property
    def unit(self) -> str:
        return METRICS.get(self.metric).unit

    @property
    def difference(self) -> float:
        scale = 100.0 if METRICS.get(self.metric).percent else 1.0
        return (self.reproduced - self.logged) * scale

    @property
    def passed(self) -> bool:
        return self.identical or abs(self.difference) <= self.tolerance  # NaN compares False: fail


def _same(a: float | None, b: float | None) -> bool:
    """Bit-equal, with NaN equal to NaN (a diverged epoch's val_loss)."""
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def _shown(metric: str, value: float) -> str:
    """A value as the verdict lines print it: a percentage as the metric table shows it (97.12%),
    anything else to six significant digits, finer than the console's four: values to compare."""
    m = METRICS.get(metric)
    return m.show(value) if m.percent else f"{value:.6g}"


# ---- the two checks --------------------------------------------------------------------------
def run_config(trial: Trial) -> dict:
    """The logged config, pinned to the CPU when the sweep ran the trial there.

    "auto" would pick a GPU on a GPU machine and lose bit-exactness with a CPU trial.
    """
    import torch

    config = json.loads(json.dumps(trial.config))  # a deep copy
    device = config["train"]["device"]
    if device == "auto" and trial.device_tag == "cpu":
        config["train"]["device"] = "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproduceError(f"--run: trial {trial.run_id} has train.device={device} and this machine has no "
                             f"GPU (reproduce it on a GPU machine)")
    return config


def retrain(config: dict, *, epochs: int, on_epoch=None) -> dict[int, dict[str, float]]:
    """Re-run `fit` for the first `epochs` epochs, in-process, or on local worker processes for a
    data-parallel trial (resources.workers_per_trial); epoch -> metrics."""
    from xsweep.training.fit import fit

    history: dict[int, dict[str, float]] = {}

    def keep(epoch: int, metrics: dict) -> None:
        history[epoch] = dict(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    workers = config.get("resources", {}).get("workers_per_trial", 1)
    if workers > 1:
        from xsweep.training.local_workers import fit_on_local_workers

        fit_on_local_workers(config, workers=workers, epochs=epochs, on_epoch=keep)
        return history

    def report(r) -> None:
        keep(r.epoch, r.metrics)
        # Stop here rather than lower train.epochs: the cosine schedule's length depends on it.
        if r.epoch >= epochs:
            raise _EnoughEpochs

    try:
        fit(config, on_epoch=report)
    except _EnoughEpochs:
        pass
    return history


def with_workers(config: dict, workers: int | None) -> tuple[dict, str]:
    """`config` re-trained on `workers` processes (None: as many as the sweep's trial had), and a
    note when that differs from the sweep: the sums then run in another order, so only the
    tolerance can judge the result."""
    ran = config.get("resources", {}).get("workers_per_trial", 1)
    if workers is None or workers == ran:
        return config, ""
    batch = config["train"]["batch_size"]
    if batch % workers:
        raise ReproduceError(f"--workers: train.batch_size {batch} (the global batch) does not split evenly over "
                             f"{workers} workers (use a divisor of {batch})")
    config = {**config, "resources": {**config.get("resources", {}), "workers_per_trial": workers}}
    note = (f"the sweep trained it on {ran} worker(s) and this re-trains it on {workers}: sums over a "
            f"different split of each batch round differently, so no bit-for-bit match is expected and "
            f"the verdict rests on the tolerance")
    return config, note


def _check_gpus_for(config: dict, workers: int) -> None:
    """Local GPU workers take a GPU each (local_workers.py)."""
    import torch

    from xsweep.training.fit import pick_device

    gpus = torch.cuda.device_count()
    if workers > 1 and pick_device(config["train"]["device"]).type == "cuda" and gpus < workers:
        raise ReproduceError(f"--workers: the re-train needs a GPU for each of its {workers} workers and this "
                             f"machine has {gpus} (use --workers {max(gpus, 1)}, which the tolerance then judges)")


def check_checkpoint(path: Path, *, config: dict) -> tuple[int, dict[str, float], list[str]]:
    """(epoch, {val_loss, val_accuracy}, notes) of the checkpoint at `path`, evaluated on the val split.

    Raises CorruptCheckpoint when it does not match its sha256 sidecar.
    """
    from xsweep.training.checkpoint import model_from_checkpoint
    from xsweep.training.fit import evaluate, set_up_trial

    model, state = model_from_checkpoint(path, config=config)  # checks the sha256 sidecar; weights_only=True
    notes = []
    if state.get("config", {}).get("model", config["model"]) != config["model"]:
        notes.append("note: the checkpoint's model config differs from the run's xsweep.config tag")
    # The same threads, kernels and data path as the trial: CPU reductions are only bit-equal that way.
    setup = set_up_trial(config)
    evaluated = evaluate(setup.place(model), setup.val_loader, **setup.step_args())
    return int(state["epoch"]), evaluated, notes


def compare(logged: dict[int, dict], reproduced: dict[int, dict], *, metric: str, epoch: int,
            tolerance: float) -> Comparison:
    """The verdict on `metric` at `epoch`; `identical` looks at every compared metric of every epoch."""
    identical = all(
        e in reproduced and _same(values[k], reproduced[e].get(k))
        for e, values in logged.items() for k in reproducible() if k in values
    )
    nan = float("nan")
    return Comparison(metric=metric, epoch=epoch, logged=logged.get(epoch, {}).get(metric, nan),
                      reproduced=reproduced.get(epoch, {}).get(metric, nan), tolerance=tolerance,
                      identical=identical)


# ---- printing --------------------------------------------------------------------------------
# The table's own formats, finer than Metric.show's: the last digits are what it compares.
def _cell(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if metric.percent else f"{value:.6f}"


def _difference(metric: Metric, logged: float | None, reproduced: float | None) -> str:
    if logged is None or reproduced is None:
        return "-"
    if _same(logged, reproduced):
        return "same"
    return f"{100 * (reproduced - logged):+.2f}" if metric.percent else f"{reproduced - logged:+.2e}"


def print_table(logged: dict[int, dict], reproduced: dict[int, dict], *, columns: list[str]) -> None:
    """epoch | logged, reproduced, difference — per metric in `columns` (accuracies in %)."""
    metrics = [METRICS.get(name) for name in columns]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("\nepoch", justify="right")
    for metric in metrics:
        table.add_column(f"{metric.name}{' (%)' if metric.percent else ''}\nlogged", justify="right")
        table.add_column("\nreproduced", justify="right")
        table.add_column("\ndiff", justify="right")
    for epoch in sorted(set(logged) | set(reproduced)):
        pairs = [(m, logged.get(epoch, {}).get(m.name), reproduced.get(epoch, {}).get(m.name)) for m in metrics]
        table.add_row(str(epoch), *chain.from_iterable(
            (_cell(m, a), _cell(m, b), _difference(m, a, b)) for m, a, b in pairs))
    console = Console(highlight=False)
    # Never narrower than the table: a squeezed column would cut the very digits it compares (a
    # terminal wraps the longer lines instead).
    unbounded = console.options.update_width(UNBOUNDED_WIDTH)
    console.width = max(console.width, Measurement.get(console, unbounded, table).maximum)
    console.print(table)


def verdict_line(c: Comparison) -> str:
    unit = f" {c.unit}" if c.unit else ""
    compared = f"logged {_shown(c.metric, c.logged)}, reproduced {_shown(c.metric, c.reproduced)}"
    if c.identical:
        return f"verdict: pass - identical: every compared metric reproduced bit for bit ({c.metric} {compared})"
    word = "pass" if c.passed else "fail"
    return (f"verdict: {word} - {c.metric} at epoch {c.epoch}: {compared} "
            f"(difference {c.difference:+.4g}{unit}, tolerance {c.tolerance:g}{unit})")


# ---- the command -----------------------------------------------------------------------------
def reproduce(*, experiment: str | None = None, spec=None, run_id: str | None = None, pick: int | None = None,
              from_checkpoint: bool = False, tracking_uri: str | None = None,
              tolerance: float = DEFAULT_TOLERANCE_PP, workdir: str | os.PathLike = ".",
              workers: int | None = None) -> int:
    """Reproduce one trial and print the comparison; the exit code (0 pass, 1 fail). A `spec`
    (load_spec) names the experiment and its store (its tracking.uri) in one."""
    experiment, tracking_uri, given_as = experiment_and_uri(experiment=experiment, spec=spec,
                                                            tracking_uri=tracking_uri, error=ReproduceError)
    if not (tolerance >= 0):  # also rejects NaN
        raise ReproduceError(f"--tolerance: must be >= 0 (got {tolerance:g})")
    if workers is not None and workers < 1:
        raise ReproduceError(f"--workers: must be 1 or more (got {workers})")
    if workers is not None and from_checkpoint:
        raise ReproduceError("--workers: only a re-train runs workers; --from-checkpoint evaluates in-process "
                             "(drop one of the two)")
    if pick is not None and pick < 1:
        raise ReproduceError(f"--pick: must be 1 or more (got {pick}; 1 is the front's best on the first objective)")
    uri = resolve_uri(tracking_uri, workdir=workdir, given_as=given_as)
    client = open_store(uri, flag=given_as, error=ReproduceError)
    trial = find_trial_run(client, experiment=experiment, run_id=run_id, uri=uri, pick=pick)
    config = run_config(trial)
    version = trial.tags.get(TAG_SWEEP_VERSION)
    print(f"trial '{trial.name}' (run {trial.run_id}, experiment '{experiment}'"
          + (f", sweep version {version}" if version and version != "1" else "")
          + f"), sweep metric {trial.metric} ({trial.mode})")
    for line in provenance_notes(client, trial, config):
        print(line)
    if from_checkpoint:
        return _from_checkpoint(client, trial, config, tolerance=tolerance)
    return _retrain(client, trial, config, tolerance=tolerance, workers=workers)


def provenance_notes(client: MlflowClient, trial: Trial, config: dict) -> list[str]:
    """Whether the code, the packages and the data are the sweep's (tracking/provenance.py): what
    differs is the first suspect when numbers differ."""
    from importlib.metadata import version

    from xsweep.errors import DataError
    from xsweep.training.datasets import data_fingerprint

    notes = []
    theirs, ours = trial.sweep_tags.get(TAG_GIT_COMMIT), git_commit()
    if theirs and ours and theirs != ours:
        notes.append(f"note: the sweep ran xsweep at commit {theirs[:12]}, this is {ours[:12]}")
    recorded = recorded_packages(client, sweep_run_id=trial.parent_run_id) if trial.parent_run_id else None
    if recorded is not None:
        differ = package_differences(recorded, installed_packages())
        shown = ", ".join(differ[:SHOWN_DIFFERENCES]) + (f" (+{len(differ) - SHOWN_DIFFERENCES} more)"
                                                         if len(differ) > SHOWN_DIFFERENCES else "")
        notes.append(f"note: {len(differ)} package(s) differ from the sweep's: {shown}" if differ
                     else f"packages: the same {len(recorded)} as the sweep's")
    else:  # a sweep from before the packages were recorded: its torch tag (tracking._versions)
        theirs, ours = trial.sweep_tags.get(f"{TAG_VERSION_PREFIX}torch"), version("torch")
        if theirs and theirs != ours:
            notes.append(f"note: the sweep ran torch {theirs}, this is torch {ours}")
    if trial.data_digest:
        try:
            here = data_fingerprint(config["data"])
        except DataError as exc:
            notes.append(f"note: the data cannot be read here to compare it with the sweep's ({exc})")
        else:
            notes.append(f"data: the same as the sweep's ({here.describe()})" if here.digest == trial.data_digest
                         else f"note: the data differs from the sweep's: its digest was {trial.data_digest[:12]}, "
                              f"here {here.describe()}")
    return notes


def _where(trial: Trial, config: dict) -> str:
    tc = config["train"]
    ran = f"; the sweep ran it on {trial.device_tag}" if trial.device_tag and trial.device_tag != tc["device"] else ""
    return f"device {tc['device']}, {tc['threads']} thread(s), seed {tc['seed']}{ran}"


def _conclude(repro: ReproductionRun, logged: dict, reproduced: dict, c: Comparison, *,
              columns: list[str], note: str = "", band: SeedBand | None = None) -> int:
    print()
    print_table(logged, reproduced, columns=columns)
    print()
    print(verdict_line(c))
    where = None  # the re-run's place against the seed band, if the trial has one
    if band is not None:
        print(band.line(c.reproduced))
        where = "within" if band.holds(c.reproduced) else "outside"
    repro.finish(passed=c.passed, difference=f"{c.difference:.6g}{(' ' + c.unit) if c.unit else ''}",
                 identical=c.identical, seed_band=where, note=note)
    return 0 if c.passed or where == "within" else 1


@dataclass
class SeedBand:
    """An ablation's confirmed variant: where its confirmation seeds ended (search/ablation.py)."""

    variant: str
    metric: str
    values: list[float]

    def holds(self, value: float) -> bool:
        return min(self.values) <= value <= max(self.values)

    def line(self, value: float) -> str:
        where = "within" if self.holds(value) else "outside"
        return (f"seed band: the {len(self.values)} confirmation seeds of variant {self.variant} ended at "
                f"{_shown(self.metric, min(self.values))} to {_shown(self.metric, max(self.values))} {self.metric}; "
                f"the re-run's {_shown(self.metric, value)} is {where} the seed band")


def seed_band(client: MlflowClient, trial: Trial) -> SeedBand | None:
    """The band of a confirmation trial's variant: its completed sibling seeds' final values."""
    finals = confirmation_finals(client, trial=trial)
    return SeedBand(trial.tags[TAG_VARIANT], trial.metric, finals) if len(finals) >= 2 else None


def _retrain(client: MlflowClient, trial: Trial, config: dict, *, tolerance: float, workers: int | None = None) -> int:
    epochs = max(trial.logged)
    planned = config["train"]["epochs"]
    config, workers_note = with_workers(config, workers)
    count = config.get("resources", {}).get("workers_per_trial", 1)
    _check_gpus_for(config, count)
    where = "in-process" if count == 1 else f"on {count} local worker processes"
    print(f"re-training {epochs} epoch(s) {where}: {_where(trial, config)}")
    notes = [workers_note] if workers_note else []
    if epochs < planned:
        notes.append(f"the trial ran {epochs} of {planned} epochs (stopped early): only those are re-trained "
                     f"and compared")
    for line in notes:
        print(f"note: {line}")
    note = "; ".join(notes)
    params = {"epochs": epochs, "tolerance": tolerance, "device": config["train"]["device"], "workers": count}
    with ReproductionRun(client, trial, mode="retrain", params=params) as repro:
        reproduced = retrain(config, epochs=epochs, on_epoch=repro.log)
        c = compare(trial.logged, reproduced, metric=trial.metric, epoch=epochs, tolerance=tolerance)
        columns = ["val_accuracy", "train_loss"]
        columns += [trial.metric] if trial.metric not in columns else []
        band = seed_band(client, trial) if epochs == planned else None
        return _conclude(repro, trial.logged, reproduced, c, columns=columns, note=note, band=band)


def _from_checkpoint(client: MlflowClient, trial: Trial, config: dict, *, tolerance: float) -> int:
    from xsweep.training.checkpoint import CorruptCheckpoint

    # Only the validation split is evaluated: the verdict is on a val metric.
    metric = trial.metric if trial.metric.startswith("val_") else "val_accuracy"
    with tempfile.TemporaryDirectory(prefix="xsweep-reproduce-") as tmp:
        path = download_checkpoint(client, trial, dst=tmp)
        best_json = path.parent / "best.json"  # {"epoch", "metric", "value", "trial_id"}
        best = json.loads(best_json.read_text()) if best_json.is_file() else {}
        print(f"evaluating the best checkpoint (epoch {best.get('epoch', '?')}) on the validation split: "
              f"{_where(trial, config)}")
        with ReproductionRun(client, trial, mode="checkpoint", params={"tolerance": tolerance}) as repro:
            try:
                epoch, evaluated, notes = check_checkpoint(path, config=config)
            except CorruptCheckpoint as exc:
                print(f"checkpoint: {exc}")
                print("verdict: fail - the checkpoint does not match its sha256 (damaged after it was logged)")
                repro.finish(passed=False, note="sha256 mismatch")
                return 1
            if best.get("epoch") not in (None, epoch):
                notes.append(f"note: best.json says epoch {best['epoch']}, the checkpoint holds epoch {epoch}")
            logged = {k: v for k, v in trial.logged.get(epoch, {}).items() if k in evaluated}
            if metric not in logged and best.get("metric") == metric:
                logged[metric] = best["value"]  # no history at that step: best.json recorded it
            repro.log(epoch, evaluated)
            c = compare({epoch: logged}, {epoch: evaluated}, metric=metric, epoch=epoch, tolerance=tolerance)
            for line in notes:
                print(line)
            return _conclude(repro, {epoch: logged}, {epoch: evaluated}, c, columns=["val_accuracy", "val_loss"])
