"""`xsweep reproduce`: re-run a tracked trial from MLflow alone and compare it with what was logged.

Two checks. Re-train (default): the trial's exact config comes from its `xsweep.config` tag (the
Ray results folder may be on another machine), `fit` runs in-process, and every epoch is compared
with the logged history. Checkpoint: the trial's best checkpoint is downloaded, checked against
its sha256, and evaluated on the validation split. Either way the reproduction is logged as a run
of its own, tagged with the run it reproduces, so a later reader finds the evidence beside the sweep.
Exit codes: 0 within tolerance, 1 not (or a damaged checkpoint), 2 a user error (UserError).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric as MlflowMetric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from xsweep.contract import COMPLETED, STOPPED
from xsweep.errors import ReproduceError
from xsweep.metrics import ACCURACY, METRICS, reproducible
from xsweep.tracking.query import best_at_any_epoch, child_runs, find_experiment, latest_sweep, search_all
from xsweep.tracking.runs import git_commit
from xsweep.tracking.provenance import (
    PACKAGES_ARTIFACT, SHOWN_DIFFERENCES, installed_packages, package_differences, parse_packages, recorded_digest,
)
from xsweep.tracking.store import experiment_and_uri, open_store, resolve_uri
from xsweep.tracking.tags import (
    TAG_BEST_RUN_ID, TAG_CONFIG, TAG_DEVICE, TAG_DIFFERENCE, TAG_GIT_COMMIT, TAG_IDENTICAL, TAG_KIND, TAG_MODE,
    TAG_NOTE, TAG_PARETO, TAG_PARETO_RANK, TAG_PHASE, TAG_REPRODUCES, TAG_SEED_BAND, TAG_STATUS, TAG_SWEEP_VERSION,
    TAG_TRIAL_ID, TAG_VARIANT, TAG_VERDICT, TAG_VERSION_PREFIX,
)
from xsweep.tracking.writes import log_params, set_tags

FINISHED_STATUSES = (COMPLETED, STOPPED)  # trial statuses that left a full, usable history
DEFAULT_TOLERANCE_PP = 0.5


class _EnoughEpochs(Exception):
    """Raised from fit's on_epoch to end a re-run after the epochs the trial actually ran."""


@dataclass
class Trial:
    run_id: str
    name: str
    experiment_id: str
    config: dict
    metric: str  # the sweep's search.metric
    mode: str  # max | min
    device_tag: str  # where the sweep ran it ("cpu", "cuda:<name>"), "" if unknown
    tags: dict = field(default_factory=dict)  # its own run's tags
    sweep_tags: dict = field(default_factory=dict)  # the parent run's tags: provenance
    parent_run_id: str | None = None
    data_digest: str | None = None  # what its dataset input recorded (tracking/provenance.py)
    logged: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> metrics


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
        scale = 100.0 if _is_accuracy(self.metric) else 1.0
        return (self.reproduced - self.logged) * scale

    @property
    def passed(self) -> bool:
        return self.identical or abs(self.difference) <= self.tolerance  # NaN compares False: fail


def _is_accuracy(metric: str) -> bool:
    """Compared and shown in percent (accuracies), per xsweep.metrics."""
    return METRICS.get(metric).percent


def _same(a: float | None, b: float | None) -> bool:
    """Bit-equal, with NaN equal to NaN (a diverged epoch's val_loss)."""
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


# ---- finding the trial -----------------------------------------------------------------------
def find_trial_run(client: MlflowClient, *, experiment: str, run_id: str | None = None, uri: str = "",
                   pick: int | None = None) -> Trial:
    """--run's trial, else the best trial of the experiment's latest sweep (or of --run's sweep);
    with --pick, that sweep's pick-th trial of its Pareto front instead of its best."""
    exp = find_experiment(client, experiment, uri=uri, flag="--experiment", error=ReproduceError)
    if run_id:
        run = _get_run(client, run_id, experiment=exp)
        if run.data.tags.get(TAG_KIND) == "sweep":  # a sweep's id: reproduce its best trial
            run = _front_member(client, run, pick) if pick is not None else _best_trial(client, run)
        elif pick is not None:
            raise ReproduceError(f"--pick: run {run_id} is a trial, not a sweep (pass the sweep's parent run id "
                                 "as --run, or leave --run out for the latest sweep)")
    else:
        sweep = latest_sweep(client, exp.experiment_id)
        if sweep is None:
            raise ReproduceError(f"--experiment: experiment '{experiment}' has no sweep "
                                 f"(run one with `xsweep run SPEC`, or pass --run RUN_ID)")
        run = _front_member(client, sweep, pick) if pick is not None else _best_trial(client, sweep)
    return _trial(client, run, flag="--run" if run_id else "--experiment")


def _front_member(client: MlflowClient, sweep, pick: int):
    """The sweep's trial at place `pick` of its Pareto front (1 = best on the first objective), as
    the tags written at the end of the sweep order it (sweep/front.py)."""
    name = sweep.info.run_name
    if "search.objectives" not in sweep.data.params:
        raise ReproduceError(f"--pick: sweep {name} searched one objective, so it has no Pareto front "
                             "(leave --pick out for its best trial, or pass --run RUN_ID)")
    front = [run for run in child_runs(client, sweep) if run.data.tags.get(TAG_PARETO) == "true"]
    front.sort(key=lambda run: int(run.data.tags.get(TAG_PARETO_RANK, "0")))
    if not front:
        raise ReproduceError(f"--pick: sweep {name} has no Pareto front yet (it is tagged when the sweep ends: "
                             "wait for it, or `xsweep resume` it)")
    if not 1 <= pick <= len(front):
        raise ReproduceError(f"--pick: the Pareto front of sweep {name} has {len(front)} trial(s) "
                             f"(pick 1 to {len(front)}; 1 is the best on the first objective)")
    return front[pick - 1]


def _get_run(client: MlflowClient, run_id: str, *, experiment):
    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.info.experiment_id != experiment.experiment_id:
        raise ReproduceError(f"--run: no run {run_id} in experiment '{experiment.name}' "
                             f"(pass a trial's run id from `xsweep run`'s output or the MLflow UI)")
    return run


def _best_trial(client: MlflowClient, sweep):
    """The sweep's recorded best trial; without one (interrupted sweep), the best finished child."""
    best_id = sweep.data.tags.get(TAG_BEST_RUN_ID)
    if best_id:
        try:
            return client.get_run(best_id)
        except MlflowException:
            pass  # deleted since: choose again below
    metric, mode = _search(sweep)
    finished = [run for run in child_runs(client, sweep) if run.data.tags.get(TAG_STATUS) in FINISHED_STATUSES]
    best = best_at_any_epoch(client, finished, metric=metric, mode=mode)
    if best is None:
        raise ReproduceError(f"--experiment: the latest sweep {sweep.info.run_name} has no finished trial "
                             f"(wait for it to finish, `xsweep resume` it, or pass --run RUN_ID)")
    return best


def _search(sweep) -> tuple[str, str]:
    params = sweep.data.params if sweep is not None else {}
    return params.get("search.metric", ACCURACY), params.get("search.mode", "max")


def _trial(client: MlflowClient, run, *, flag: str) -> Trial:
    tags = run.data.tags
    if TAG_CONFIG not in tags:
        # Also the case for trials of sweeps run before xsweep recorded the config as a tag.
        raise ReproduceError(f"{flag}: run {run.info.run_id} has no {TAG_CONFIG} tag, so it cannot be re-run "
                             f"(pass the run id of a trial, or of a sweep, run by this xsweep)")
    parent_id = tags.get("mlflow.parentRunId")
    try:
        parent = client.get_run(parent_id) if parent_id else None
    except MlflowException:
        parent = None
    metric, mode = _search(parent)
    trial = Trial(run_id=run.info.run_id, name=run.info.run_name or tags.get(TAG_TRIAL_ID, run.info.run_id),
                  experiment_id=run.info.experiment_id, config=json.loads(tags[TAG_CONFIG]), metric=metric,
                  mode=mode, device_tag=tags.get(TAG_DEVICE, ""), tags=dict(tags),
                  sweep_tags=parent.data.tags if parent is not None else {},
                  parent_run_id=parent.info.run_id if parent is not None else None, data_digest=recorded_digest(run))
    trial.logged = logged_history(client, run.info.run_id)
    if not trial.logged:
        raise ReproduceError(f"{flag}: run {run.info.run_id} has no logged epochs yet "
                             f"(wait for its first epoch, or pass another --run)")
    return trial


def logged_history(client: MlflowClient, run_id: str) -> dict[int, dict[str, float]]:
    """epoch -> {metric: value}, from MLflow's metric history (step = epoch)."""
    history: dict[int, dict[str, float]] = {}
    for key in reproducible():
        # If a step was ever logged twice, the later write is what the UI shows: keep that one.
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            history.setdefault(int(m.step), {})[key] = m.value
    return dict(sorted(history.items()))


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


def download_checkpoint(client: MlflowClient, trial: Trial, *, dst: str) -> Path:
    """checkpoints/best/ of the trial's run into `dst`; the path of state.pt in it."""
    names = {Path(a.path).name for a in client.list_artifacts(trial.run_id, "checkpoints/best")}
    if "state.pt" not in names:
        raise ReproduceError(f"--from-checkpoint: run {trial.run_id} has no checkpoints/best/state.pt artifact "
                             f"(re-train instead: drop --from-checkpoint)")
    folder = client.download_artifacts(trial.run_id, "checkpoints/best", dst_path=dst)
    return Path(folder, "state.pt")


def check_checkpoint(path: Path, config: dict) -> tuple[int, dict[str, float], list[str]]:
    """(epoch, {val_loss, val_accuracy}, notes) of the checkpoint at `path`, evaluated on the val split.

    Raises CorruptCheckpoint when it does not match its sha256 sidecar.
    """
    import torch

    from xsweep.training.checkpoint import load_checkpoint
    from xsweep.training.loaders import build_datasets, make_loaders
    from xsweep.training.fit import evaluate, pick_device, seed_everything
    from xsweep.training.models import build_model

    state = load_checkpoint(path)  # checks the sha256 sidecar; weights_only=True
    notes = []
    if state.get("config", {}).get("model", config["model"]) != config["model"]:
        notes.append("note: the checkpoint's model config differs from the run's xsweep.config tag")
    tc = config["train"]
    seed_everything(tc["seed"])
    # The same threads and algorithms as the trial: CPU reductions are only bit-equal that way.
    torch.set_num_threads(tc["threads"])
    device = pick_device(tc["device"])
    torch.use_deterministic_algorithms(device.type == "cpu")
    datasets = build_datasets(config["data"], seed=tc["seed"])
    _, val_loader = make_loaders(datasets, batch_size=tc["batch_size"], seed=tc["seed"])
    model = build_model(config, num_classes=datasets.num_classes, in_channels=datasets.in_channels)
    model.load_state_dict(state["model"])
    model.to(device)
    if tc["channels_last"]:
        model.to(memory_format=torch.channels_last)
    evaluated = evaluate(model, val_loader, device=device, amp=tc["amp"], channels_last=tc["channels_last"],
                         normalise=datasets.normalise)
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
def _cells(metric: str, logged: float | None, reproduced: float | None) -> list[str]:
    acc = _is_accuracy(metric)
    value = (lambda v: f"{100 * v:.2f}") if acc else (lambda v: f"{v:.6f}")
    out = [value(logged) if logged is not None else "-", value(reproduced) if reproduced is not None else "-"]
    if logged is None or reproduced is None:
        out.append("-")
    elif _same(logged, reproduced):
        out.append("same")
    else:
        out.append(f"{100 * (reproduced - logged):+.2f}" if acc else f"{reproduced - logged:+.2e}")
    return out


def print_table(logged: dict[int, dict], reproduced: dict[int, dict], *, columns: list[str]) -> None:
    """epoch | logged, reproduced, difference — per metric in `columns` (accuracies in %)."""
    width = 32
    print("      " + "".join(f"{(c + (' (%)' if _is_accuracy(c) else '')):^{width}}" for c in columns))
    print(f"{'epoch':>5} " + f"{'logged':>11}{'reproduced':>11}{'diff':>10}" * len(columns))
    for epoch in sorted(set(logged) | set(reproduced)):
        row = f"{epoch:>5} "
        for c in columns:
            a, b, d = _cells(c, logged.get(epoch, {}).get(c), reproduced.get(epoch, {}).get(c))
            row += f"{a:>11}{b:>11}{d:>10}"
        print(row)


def verdict_line(c: Comparison) -> str:
    unit = f" {c.unit}" if c.unit else ""
    show = (lambda v: f"{100 * v:.2f}%") if _is_accuracy(c.metric) else (lambda v: f"{v:.6g}")
    shown = f"logged {show(c.logged)}, reproduced {show(c.reproduced)}"
    if c.identical:
        return f"verdict: pass - identical: every compared metric reproduced bit for bit ({c.metric} {shown})"
    word = "pass" if c.passed else "fail"
    return (f"verdict: {word} - {c.metric} at epoch {c.epoch}: {shown} "
            f"(difference {c.difference:+.4g}{unit}, tolerance {c.tolerance:g}{unit})")


# ---- the reproduction's own run --------------------------------------------------------------
class ReproductionRun:
    """The run that records a reproduction. Opened before the work so a re-train's epochs stream
    into it; left FAILED (KILLED on Ctrl-C) if the work never reaches a verdict."""

    def __init__(self, client: MlflowClient, trial: Trial, *, mode: str, params: dict):
        self.client = client
        self.name = f"reproduce {trial.name}"
        self.run_id = client.create_run(trial.experiment_id, run_name=self.name, tags={
            TAG_KIND: "reproduction", TAG_REPRODUCES: trial.run_id, TAG_MODE: mode,
        }).info.run_id
        self.finished = False
        log_params(client, self.run_id, params)

    def __enter__(self) -> "ReproductionRun":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if not self.finished:
            self.client.set_terminated(self.run_id, status="KILLED" if kind is KeyboardInterrupt else "FAILED")

    def log(self, epoch: int, metrics: dict) -> None:
        now = int(time.time() * 1000)
        batch = [MlflowMetric(k, float(v), now, epoch) for k, v in metrics.items() if k in METRICS]
        self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, c: Comparison | None, *, note: str = "") -> None:
        tags = {TAG_VERDICT: "pass" if c is not None and c.passed else "fail"}
        if c is not None:
            tags[TAG_DIFFERENCE] = f"{c.difference:.6g}{(' ' + c.unit) if c.unit else ''}"
            tags[TAG_IDENTICAL] = str(c.identical).lower()
        if note:
            tags[TAG_NOTE] = note
        set_tags(self.client, self.run_id, tags)
        self.client.set_terminated(self.run_id, status="FINISHED")
        self.finished = True
        print(f"logged as run {self.run_id} ('{self.name}')")


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
    recorded = _recorded_packages(client, trial)
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


def _recorded_packages(client: MlflowClient, trial: Trial) -> dict[str, str] | None:
    if not trial.parent_run_id:
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="xsweep-packages-") as tmp:
            path = client.download_artifacts(trial.parent_run_id, PACKAGES_ARTIFACT, dst_path=tmp)
            return parse_packages(Path(path).read_text())
    except (MlflowException, OSError):
        return None


def _where(trial: Trial, config: dict) -> str:
    tc = config["train"]
    ran = f"; the sweep ran it on {trial.device_tag}" if trial.device_tag and trial.device_tag != tc["device"] else ""
    return f"device {tc['device']}, {tc['threads']} thread(s), seed {tc['seed']}{ran}"


def _conclude(repro: ReproductionRun, logged: dict, reproduced: dict, c: Comparison, *,
              columns: list[str], note: str = "", band: "SeedBand | None" = None) -> int:
    print()
    print_table(logged, reproduced, columns=columns)
    print()
    print(verdict_line(c))
    within = band is not None and band.holds(c.reproduced)
    if band is not None:
        print(band.line(c.reproduced))
        set_tags(repro.client, repro.run_id, {TAG_SEED_BAND: "within" if within else "outside"})
    repro.finish(c, note=note)
    return 0 if c.passed or within else 1


@dataclass
class SeedBand:
    """An ablation's confirmed variant: where its confirmation seeds ended (search/ablation.py)."""

    variant: str
    metric: str
    values: list[float]

    def holds(self, value: float) -> bool:
        return min(self.values) <= value <= max(self.values)

    def line(self, value: float) -> str:
        show = (lambda v: f"{100 * v:.2f}%") if _is_accuracy(self.metric) else (lambda v: f"{v:.6g}")
        where = "within" if self.holds(value) else "outside"
        return (f"seed band: the {len(self.values)} confirmation seeds of variant {self.variant} ended at "
                f"{show(min(self.values))} to {show(max(self.values))} {self.metric}; the re-run's {show(value)} is "
                f"{where} the seed band")


def seed_band(client: MlflowClient, trial: Trial) -> SeedBand | None:
    """The band of a confirmation trial's variant: its completed sibling seeds' final values."""
    variant = trial.tags.get(TAG_VARIANT)
    if trial.tags.get(TAG_PHASE) != "confirm" or not variant or not trial.parent_run_id:
        return None
    siblings = search_all(client, [trial.experiment_id],
                          f"tags.`mlflow.parentRunId` = '{trial.parent_run_id}' and tags.`{TAG_PHASE}` = 'confirm' "
                          f"and tags.`{TAG_VARIANT}` = '{variant}' and tags.`{TAG_STATUS}` = '{COMPLETED}'")
    values = []
    for run in siblings:
        history = client.get_metric_history(run.info.run_id, trial.metric)
        if history:
            values.append(max(history, key=lambda m: m.step).value)
    return SeedBand(variant, trial.metric, values) if len(values) >= 2 else None


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
                epoch, evaluated, notes = check_checkpoint(path, config)
            except CorruptCheckpoint as exc:
                print(f"checkpoint: {exc}")
                print("verdict: fail - the checkpoint does not match its sha256 (damaged after it was logged)")
                repro.finish(None, note="sha256 mismatch")
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
