"""The whole product on one GPU: real sweeps on the embedded Ray, tracked to MLflow, with what they measured.

Three sweeps of search_spaces/gpu_share.yaml (16 trials of a CIFAR-size Xception) at
`resources.gpus_per_trial` 1, 0.5 and 0.25: trials per hour, how busy the GPU was over each sweep
(NVML samples), how long trials took to reach their first training step. Then the default ablation
(search_spaces/xception_ablation.yaml) on the GPU with its verdicts, `xsweep report` of it and
`xsweep reproduce` of its best trial. Each part says what it ran, or why it skipped; a part that
fails does not stop the others, and the exit code is 1 if any failed.

Needs xsweep's dependencies (a normal install, or the offline bundle on PYTHONPATH) and one CUDA
GPU; `--device cpu --quick` runs every part at toy sizes on a CPU, as a test does, so that the
script cannot rot. Every store, sweep folder and report goes to a temporary folder (`--keep` keeps
it); only the results file is written into the repository.

    python benchmarks/gpu_sweep.py                        # on a CUDA GPU: benchmarks/results/gpu_sweep.md
    python benchmarks/gpu_sweep.py --device cpu --quick --out /tmp/gpu_sweep.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

STARTED = time.perf_counter()  # the budget counts from here: imports and CUDA's start included
ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout without installing: the project's own packages.
PROJECT_PATHS = [str(ROOT / "platform"), str(ROOT)]
sys.path[:0] = PROJECT_PATHS

import torch  # noqa: E402

from host import machine, write_results  # noqa: E402
from xsweep.contract import COMPLETED, FAILED, STOPPED  # noqa: E402
from xsweep.metrics import METRICS, STARTUP, STARTUP_METRICS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHARE_SPEC = ROOT / "search_spaces" / "gpu_share.yaml"
ABLATION_SPEC = ROOT / "search_spaces" / "xception_ablation.yaml"
SHARES = (1, 0.5, 0.25)  # resources.gpus_per_trial of the three sweeps
# --quick: one sweep, two trials side by side and a third after them (each sweep costs some 20 s
# of Ray's start and the sweep's end on 2 CPU cores).
QUICK_SHARES = (0.5,)
WARM_STARTUP_TARGET_S = 5.0  # issue 24: a trial whose shapes its node has compiled reaches its first step in 5 s
GPU_UTILIZATION = "system/gpu_utilization_percentage"  # training/system.py
CPU_UTILIZATION = "system/process_cpu_utilization_percentage"
SAMPLE_SECONDS = 0.5  # NVML's utilisation covers the last 1/6 to 1 s: sampling faster repeats it
# The budget's milestones: the three sweeps, then the ablation, must have ended by these fractions of
# --budget, counted from the script's start (one that overruns is stopped as Ctrl-C stops a sweep, with
# the trials it finished); `xsweep report` and `reproduce` take what is left. The sweep at one GPU per
# trial runs its trials one at a time, so it gets the largest share. On an H200 a new trial process
# reached its first step 37-69 s after it started (results/gpu_sweep.md), a later trial in the same
# process 4 s after its own start: each sweep's first trials cost most of its share.
MILESTONES = {1: 0.30, 0.5: 0.45, 0.25: 0.57, "ablation": 0.90}
# On a GPU: 6.75 minutes to the ablation's end at the latest, then report and reproduce: inside the
# 8 minutes the script must finish in.
DEFAULT_BUDGET_S = 450
# A re-trained GPU trial is not bit for bit the sweep's (GPU kernels add in whatever order their threads
# finish, and fit leaves deterministic algorithms off there), so its verdict rests on a tolerance:
# 1.5 pp is about 5 of digits' 360 validation images.
GPU_REPRODUCE_TOLERANCE_PP = 1.5

# The images written in CIFAR-10's format for the sharing sweeps: 1,280 per class, so that the 20 %
# validation split is 2,560 images (5 evaluation batches of 512) and 10,240 are left for training
# (40 batches of 256). Whole batches only: a compiled trial compiles one training and one evaluation shape.
CIFAR_IMAGES = 12800
QUICK_CIFAR_IMAGES = 200
# --quick: toy sizes, a few seconds a trial on one CPU core. The same specs, made small.
QUICK_SHARE = ["search.num_samples=3", "train.batch_size=32", "model.width=0.125", "model.middle_blocks=1",
               "resources.cpus_per_trial=0.5"]
# The ablation of one factor (residual connections): 2 variants x (1 + 2) = 6 trials, not 18.
QUICK_ABLATION = ["ablation.factors=[model.residual]", "search.space.model.activation=null", "ablation.budget=1",
                  "ablation.confirm_seeds=2", "train.epochs=2", "model.width=0.125", "model.middle_blocks=1"]
# On the GPU: the ablation's trials on the device, 8 at a time (its digits trials are small: each
# keeps an eighth of an H200 busy at most), at twice the width `make sweep` runs on a CPU.
GPU_ABLATION = ["train.device=cuda", "train.amp=true", "model.width=0.5", "resources.gpus_per_trial=0.125",
                "resources.cpus_per_trial=2", "search.max_concurrent=8"]


@dataclass
class Run:
    """What every part shares: the device, the sizes, the scratch folder and the clock."""

    device: str
    quick: bool
    scratch: Path  # every store, sweep folder and report
    budget: float | None  # seconds, from `started`
    started: float = STARTED
    ablation: object = None  # the ablation's SweepOutcome, for the report and reproduce parts

    @property
    def cifar_root(self) -> Path:
        return self.scratch / "cifar"

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.scratch / 'mlflow.db'}"

    def deadline(self, milestone) -> float | None:
        return None if self.budget is None else self.started + MILESTONES[milestone] * self.budget

    def placement(self) -> list[str]:
        """Overrides that put a sweep's folders and runs in the scratch folder, on this run's device."""
        overrides = [f"storage.path={self.scratch / 'results'}", f"tracking.uri={self.uri}"]
        if self.device == "cpu":
            overrides += ["train.device=cpu", "train.amp=false"]
        return overrides


class PartFailed(Exception):
    """A check a part makes failed: its message is the finding, no traceback needed."""


def write_cifar10(root: Path, count: int, *, seed: int = 0) -> None:
    """`count` 32x32 images in CIFAR-10's python format (cifar-10-batches-py/data_batch_1..5, as the
    official archive lays them out), so that nothing downloads: each class a fixed random picture
    under noise, which a few epochs learn to tell apart. Classes take turns, so every class has
    count / 10 images and the stratified validation split is exact."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 3 * 32 * 32))
    labels = np.arange(count) % 10
    noise = rng.integers(-48, 48, (count, 3 * 32 * 32))
    images = np.clip(templates[labels] // 2 + 64 + noise, 0, 255).astype(np.uint8)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = np.array_split(np.arange(count), 5)
    for number, rows in enumerate(batches, 1):
        with open(folder / f"data_batch_{number}", "wb") as f:
            pickle.dump({b"batch_label": f"training batch {number} of 5".encode(), b"labels": labels[rows].tolist(),
                         b"data": images[rows], b"filenames": [f"{i}.png".encode() for i in rows]}, f, protocol=2)


# ---- the GPU's busy fraction ------------------------------------------------------------------
def _utilization_reader():
    """(a function returning (busy percent, memory used in bytes) of the GPU, what it reads), or
    (None, why not). NVML through pynvml, else `nvidia-smi`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    index = int(visible) if visible.isdigit() else 0
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return (lambda: (pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                         pynvml.nvmlDeviceGetMemoryInfo(handle).used)), "NVML (pynvml)"
    except Exception as exc:  # not installed, or no driver: try the command line
        why = f"pynvml: {exc}"
    if shutil.which("nvidia-smi"):
        def smi():
            out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
            busy, used = out.stdout.split(",")
            return float(busy), float(used) * 2**20
        return smi, "nvidia-smi"
    return None, f"{why}; no nvidia-smi"


class GpuMonitor:
    """Samples the GPU's utilisation (the share of each sample period in which a kernel ran) and its
    memory in use, every SAMPLE_SECONDS in a background thread, over a block."""

    def __init__(self, device: str):
        self.read, self.source = _utilization_reader() if device == "cuda" else (None, "no GPU")
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-monitor", daemon=True)

    def __enter__(self) -> GpuMonitor:
        if self.read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            with contextlib.suppress(Exception):  # one failed read is one sample fewer
                self.samples.append(self.read())

    @staticmethod
    def source_for(device: str) -> str:
        return _utilization_reader()[1] if device == "cuda" else "no GPU"

    def busy(self) -> str:
        if not self.samples:
            return "-"
        return f"{statistics.fmean(s[0] for s in self.samples):.0f}%"

    def peak_memory(self) -> str:
        return METRICS.get("peak_memory_bytes").show(max(s[1] for s in self.samples)) if self.samples else "-"


# ---- one sweep through the product ------------------------------------------------------------
@dataclass
class SweepRun:
    outcome: object  # xsweep's SweepOutcome; None when it was cut before it had one
    seconds: float
    monitor: GpuMonitor
    cut: bool  # stopped at its deadline


@contextlib.contextmanager
def stopped_at(deadline: float | None):
    """Sends this process SIGINT at `deadline`: a running sweep then stops as at Ctrl-C (Tune stops
    its trials, the sweep ends with those it finished). Yields a dict whose "fired" says if it came."""
    state = {"fired": False}
    timer = None
    if deadline is not None:
        def fire():
            state["fired"] = True
            os.kill(os.getpid(), signal.SIGINT)
        timer = threading.Timer(max(deadline - time.perf_counter(), 0), fire)
        timer.daemon = True
        timer.start()
    try:
        yield state
    finally:
        if timer is not None:
            timer.cancel()


def _embedded_ray_with_a_declared_gpu() -> None:
    """On a CPU: the embedded Ray xsweep starts (loopback only), told of one GPU, so that a sweep's
    fractional `gpus_per_trial` places its trials as on a GPU machine; they train on the CPU. A
    sweep joins a Ray that is already up (cluster/connect.py) and shuts it down at its end."""
    import logging

    from xsweep.cluster.connect import LOOPBACK
    from xsweep.defaults import apply_process_defaults, embedded_ray_on_loopback

    apply_process_defaults()
    embedded_ray_on_loopback()  # before Ray is imported, as `xsweep run` does
    import ray

    ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=False, num_gpus=1,
             logging_level=logging.WARNING)


def run_one_sweep(run: Run, spec, *, deadline: float | None) -> SweepRun:
    import xsweep

    if run.device == "cpu":
        _embedded_ray_with_a_declared_gpu()
    started = time.perf_counter()
    outcome = None
    with GpuMonitor(run.device) as monitor, stopped_at(deadline) as stop:
        try:
            outcome = xsweep.run_sweep(spec, workdir=run.scratch)
        except KeyboardInterrupt:  # the deadline came while the sweep started or finished
            if not stop["fired"]:
                raise
    seconds = time.perf_counter() - started
    import ray

    if ray.is_initialized():  # left up by a sweep cut while it started
        ray.shutdown()
    return SweepRun(outcome, seconds, monitor, stop["fired"])


def _trial_runs(run: Run, outcome) -> list:
    """The sweep's trial runs in MLflow."""
    from mlflow.tracking import MlflowClient

    from xsweep.tracking.query import child_runs

    client = MlflowClient(tracking_uri=run.uri)
    return child_runs(client, client.get_run(outcome.parent_run_id))


@dataclass
class Timing:
    """When a trial ran, in time.time() seconds, and whether its process had run a trial before it."""

    start: float
    end: float
    warm: bool  # a later trial in a process an earlier trial started (Tune reuses them on one machine)


def trial_timings(run: Run, outcome, trials) -> dict[str, Timing]:
    """{MLflow run id: Timing} of each trial. The end: the trial's last system sample, taken as its
    last epoch ended (training/system.py; milliseconds); the start: that less Tune's seconds from the
    trial's start to its last report; the process: Tune's pid (both in result.json). Tune's own report
    times are whole seconds, and a trial's MLflow run is opened before it starts (reserved by the
    searcher): neither tells which trials ran side by side."""
    from mlflow.tracking import MlflowClient

    from xsweep.spec.trial import RUN_ID_KEY

    last_rows = {}
    for path in Path(outcome.sweep_path).rglob("result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            last_rows[rows[-1]["config"][RUN_ID_KEY]] = rows[-1]
    client = MlflowClient(tracking_uri=run.uri)
    spans = {}
    for trial in trials:
        samples = client.get_metric_history(trial.info.run_id, CPU_UTILIZATION)
        row = last_rows.get(trial.info.run_id)
        if samples and row:
            end = max(m.timestamp for m in samples) / 1000
            spans[trial.info.run_id] = (end - row["time_total_s"], end, row.get("pid"))
    timings, processes = {}, set()
    for run_id, (start, end, pid) in sorted(spans.items(), key=lambda item: item[1][0]):
        timings[run_id] = Timing(start, end, warm=pid in processes)
        processes.add(pid)
    return timings


def most_at_once(timings) -> int:
    """The most trials training at the same moment."""
    events = sorted([(t.start, 1) for t in timings] + [(t.end, -1) for t in timings])
    most = now = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start
        now += step
        most = max(most, now)
    return most


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def first_and_later(trials, name: str) -> str:
    """"first / later median (min-max)" of a metric over trial runs in the order they started."""
    values = [t.data.metrics[name] for t in trials if name in t.data.metrics]
    return f"{values[0]:.1f} / {_spread(values[1:])}" if values else "-"


def _in_start_order(run: Run, outcome) -> tuple[list, dict[str, Timing]]:
    """(the sweep's trial runs in the order the trials started, their timings)."""
    trials = _trial_runs(run, outcome)
    timings = trial_timings(run, outcome, trials)
    trials.sort(key=lambda t: timings[t.info.run_id].start if t.info.run_id in timings else float("inf"))
    return trials, timings


def warm_startup(trials, timings, *, device: str) -> str:
    """startup_seconds of the trials that started a process, and of those in a process an earlier trial
    had left, against issue 24's target for the latter on a GPU."""
    timed = [(timings[t.info.run_id].warm, t.data.metrics[STARTUP]) for t in trials
             if STARTUP in t.data.metrics and t.info.run_id in timings]
    cold, warm = [v for w, v in timed if not w], [v for w, v in timed if w]
    line = (f"{STARTUP} of the {len(cold)} trial(s) that started a process: {_spread(cold)}; of the {len(warm)} "
            f"in a process an earlier trial had left: {_spread(warm)}")
    if device == "cuda" and warm:
        met = max(warm) <= WARM_STARTUP_TARGET_S
        line += f" (target <= {WARM_STARTUP_TARGET_S:g} s: {'met' if met else 'not met'})"
    return line


def _with(overrides: list[str]) -> str:
    return " with " + ", ".join(f"`{o}`" for o in overrides) if overrides else ""


def _finished(outcome) -> int:
    return sum(n for status, n in outcome.counts.items() if status in (COMPLETED, STOPPED))


# ---- the parts --------------------------------------------------------------------------------
def shared_gpu_sweeps(run: Run, lines: list[str]) -> None:
    """search_spaces/gpu_share.yaml at 1, 0.5 and 0.25 GPU per trial (--quick: at 0.5 only)."""
    startup = STARTUP_METRICS  # what a trial reports about its start, read back from its MLflow run
    shares = QUICK_SHARES if run.quick else SHARES
    extra = QUICK_SHARE if run.quick else []
    lines.append(f"Spec: `search_spaces/gpu_share.yaml`{_with(extra)}, run once per share of the GPU (search over "
                 "train.lr and train.weight_decay: every trial has the same shapes), on "
                 f"{QUICK_CIFAR_IMAGES if run.quick else CIFAR_IMAGES} images written in CIFAR-10's format.")
    if run.quick:
        lines.append(f"--quick: one sweep, at {', '.join(f'{g:g}' for g in shares)} GPU per trial.")
    if run.device == "cpu":
        lines.append("On a CPU: Ray is told of one GPU, so that `gpus_per_trial` places the trials as it would on a "
                     "GPU machine; they train on the CPU (eager: `train.compile: auto` compiles on a GPU only), and "
                     "there is no GPU to sample.")
    header = ["GPU per trial", "trials finished", "most at once", "wall (s)", "trials' span (s)", "trials/hour",
              "GPU busy", "peak GPU memory", *(f"{name}: first / later median (min-max)" for name in startup)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes, problems = [], []
    for gpus in shares:
        deadline = run.deadline(gpus)
        if deadline is not None and time.perf_counter() >= deadline:
            notes.append(f"- {gpus:g} GPU per trial: skipped, its share of --budget was spent before it could start.")
            continue
        row = _sweep_sharing(run, gpus, extra=extra, startup=startup, notes=notes, problems=problems)
        if row:
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"GPU busy: the mean of the GPU's utilisation sampled every {SAMPLE_SECONDS} s over the sweep's "
                  f"wall time ({GpuMonitor.source_for(run.device)}). Wall time runs from `run_sweep`'s call to its "
                  "return (Ray's start, the registered model and Ray's shutdown included); the trials' span from the "
                  "first trial's start to the last one's end (Tune's records).", "", *notes]
    if problems:
        raise PartFailed("; ".join(problems))


def _sweep_sharing(run: Run, gpus: float, *, extra: list[str], startup: list[str], notes: list[str],
                   problems: list[str]) -> list[str] | None:
    """One sweep at `gpus` GPU per trial: its row of the table (None if it had no outcome); what it
    found goes to `notes`, what failed to `problems`."""
    import xsweep

    share = f"{gpus:g} GPU per trial"
    spec = xsweep.load_spec(SHARE_SPEC, overrides=[
        f"name=gpu-share-{gpus:g}", f"resources.gpus_per_trial={gpus:g}", f"search.max_concurrent={round(1 / gpus)}",
        f"data.root={run.cifar_root}", *run.placement(), *extra])
    swept = run_one_sweep(run, spec, deadline=run.deadline(gpus))
    outcome = swept.outcome
    if outcome is None:
        problems.append(f"{share}: stopped at its deadline before the sweep had an outcome ({swept.seconds:.0f} s)")
        return None
    trials, timings = _in_start_order(run, outcome)
    finished = _finished(outcome)
    span = max(t.end for t in timings.values()) - min(t.start for t in timings.values()) if timings else 0
    row = [f"{gpus:g}", f"{finished} of {spec.total_trials()}", str(most_at_once(timings.values())),
           f"{swept.seconds:.0f}", f"{span:.0f}", f"{3600 * finished / swept.seconds:.0f}", swept.monitor.busy(),
           swept.monitor.peak_memory(), *(first_and_later(trials, name) for name in startup)]
    if swept.cut:
        notes.append(f"- {share}: stopped at its deadline (its share of --budget) after {finished} trials, as "
                     "Ctrl-C stops a sweep.")
    for name in startup:
        shown = ", ".join(f"{t.data.metrics[name]:.1f}" for t in trials if name in t.data.metrics)
        notes.append(f"- {share}: {name} of each trial, in the order they started: {shown or 'none logged'}.")
    notes.append(f"- {share}: {warm_startup(trials, timings, device=run.device)}.")
    system = GPU_UTILIZATION if run.device == "cuda" else CPU_UTILIZATION
    carry = [t for t in trials if system in t.data.metrics]
    notes.append(f"- {share}: {len(carry)} of {len(trials)} trial runs carry `{system}`"
                 + (f" (each one's last sample, median (min-max): {_spread([t.data.metrics[system] for t in carry])})"
                    if carry else "")
                 + ("" if run.device == "cuda" else f"; `{GPU_UTILIZATION}` is logged by GPU trials only") + ".")
    if trials and not carry and not swept.cut:  # a trial stopped before its first epoch's end logs none
        problems.append(f"{share}: no trial run carries {system}")
    if finished == 0 or outcome.counts.get(FAILED):  # a trial the deadline stopped is interrupted, not failed
        problems.append(f"{share}: trials ended {outcome.counts}")
    return row


def ablation_on_the_gpu(run: Run, lines: list[str]) -> None:
    """search_spaces/xception_ablation.yaml, the default ablation, with its trials on the GPU."""
    import xsweep

    deadline = run.deadline("ablation")
    if deadline is not None and time.perf_counter() >= deadline:
        lines.append("- skipped: its share of --budget was spent before it could start.")
        return
    extra = [*(GPU_ABLATION if run.device == "cuda" else []), *(QUICK_ABLATION if run.quick else [])]
    spec = xsweep.load_spec(ABLATION_SPEC, overrides=[*run.placement(), *extra])
    lines.append(f"Spec: `search_spaces/xception_ablation.yaml`{_with(extra)}: {spec.variant_count()} variants x "
                 f"({spec.ablation.budget} tuning + {spec.ablation.confirm_seeds} confirming) = {spec.total_trials()} "
                 f"trials of {spec.train.epochs} epochs.")
    swept = run_one_sweep(run, spec, deadline=deadline)
    outcome = swept.outcome
    if outcome is None:
        raise PartFailed(f"stopped at its deadline before the sweep had an outcome ({swept.seconds:.0f} s)")
    by_phase = outcome.phases or {"tune": outcome.counts}  # an ablation cut in its first phase has no phases yet
    phases = "; ".join(f"{phase}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                       for phase, counts in by_phase.items())
    ended = sum(sum(counts.values()) for counts in by_phase.values())
    lines += [f"- {ended} trials ended in {swept.seconds:.0f} s ({phases}); GPU busy "
              f"{swept.monitor.busy()}, peak GPU memory {swept.monitor.peak_memory()}."]
    if swept.cut:
        lines.append("- stopped at its deadline (its share of --budget), as Ctrl-C stops a sweep: no verdict "
                     "without a finished confirmation phase.")
    trials, timings = _in_start_order(run, outcome)
    lines += [f"- {name} of the first trial / the later ones' median (min-max): {first_and_later(trials, name)}"
              for name in STARTUP_METRICS]
    lines.append(f"- {warm_startup(trials, timings, device=run.device)}.")
    if outcome.best:
        lines.append(f"- best trial: {outcome.best.name}, {outcome.best.metric} {outcome.best.value:.4f} "
                     f"(run {outcome.best.run_id}).")
    lines += ["", "The verdicts, as the sweep printed them:", "", "```", *outcome.verdicts, "```"]
    if not outcome.verdicts:
        raise PartFailed("the ablation ended without a verdict")
    run.ablation = outcome


def _cli(args: list[str]) -> tuple[int, list[str]]:
    """`xsweep ARGS` in this process (what the console script runs): (exit code, its output lines)."""
    from xsweep.cli import main

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = main(args)
    print(captured.getvalue(), end="")
    return code, captured.getvalue().splitlines()


def report_of_the_ablation(run: Run, lines: list[str]) -> None:
    if run.ablation is None:
        lines.append("- skipped: the ablation did not end with a verdict (its part above says why).")
        return
    folder = run.scratch / "report"
    args = ["report", run.ablation.experiment, "--tracking-uri", run.uri, "--out", str(folder)]
    code, output = _cli(args)
    lines += [f"`xsweep report {run.ablation.experiment} --tracking-uri ... --out ...` exited {code}:", "", "```",
              *output, "```"]
    if code != 0:
        raise PartFailed(f"xsweep report exited {code}")
    text = (folder / "report.md").read_text()
    verdicts = [line for line in text.splitlines() if line.startswith("Verdict: ")]
    figures = sorted(p.name for p in folder.glob("*.png"))
    lines += ["", f"- report.md holds {len(verdicts)} verdict(s) and {len(figures)} figure(s) "
                  f"({', '.join(figures)}); the folder is temporary (`--keep` keeps it), and the files are logged to "
                  "the sweep's parent run under report/."]
    lines += [f"  - {line}" for line in verdicts]
    if len(verdicts) < len([v for v in run.ablation.verdicts if v.startswith("verdict, ")]):
        raise PartFailed("report.md holds fewer verdicts than the sweep printed")


def reproduce_the_best(run: Run, lines: list[str]) -> None:
    if run.ablation is None or not run.ablation.best:
        lines.append("- skipped: the ablation did not end with a verdict (its part above says why).")
        return
    args = ["reproduce", "--experiment", run.ablation.experiment, "--tracking-uri", run.uri]
    if run.device == "cuda":
        args += ["--tolerance", f"{GPU_REPRODUCE_TOLERANCE_PP:g}"]
        lines.append(f"On a GPU a re-trained trial is not bit for bit the sweep's (the order of its kernels' "
                     f"additions), so the verdict rests on the tolerance: --tolerance "
                     f"{GPU_REPRODUCE_TOLERANCE_PP:g} pp (about 5 of digits' 360 validation images).")
    else:
        lines.append("On a CPU a trial re-trains bit for bit: the verdict must say identical.")
    code, output = _cli(args)
    shown = [line for line in output if line.startswith(("trial '", "re-training", "note:", "data:", "packages:",
                                                         "verdict:", "seed band:"))]
    shown_args = " ".join(args[:4] + ["..."] + args[5:])  # the store's URI is a temporary folder's
    lines += ["", f"`xsweep {shown_args}` exited {code}:", "", "```", *shown, "```"]
    verdict = next((line for line in output if line.startswith("verdict: ")), "")
    if code != 0:
        raise PartFailed(f"xsweep reproduce exited {code}: {verdict or 'no verdict'}")
    if run.device == "cpu" and "identical" not in verdict:
        raise PartFailed(f"a CPU re-train is bit for bit, and the verdict is not: {verdict}")


# (title, part): each part appends its lines to the list it is given, and raises if it failed.
PARTS = (
    ("Sweeps sharing the GPU: 1, 0.5 and 0.25 GPU per trial", shared_gpu_sweeps),
    ("The default ablation on the GPU", ablation_on_the_gpu),
    ("xsweep report of the ablation", report_of_the_ablation),
    ("xsweep reproduce of the ablation's best trial", reproduce_the_best),
)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "ray", "mlflow", "optuna"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="toy sizes (for the CPU test)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_sweep.md")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds the script may take; a sweep past its share of them is stopped as Ctrl-C stops "
                             f"it (default {DEFAULT_BUDGET_S} on a GPU, none on a CPU)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder of stores, sweeps and reports")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_sweep: --device cuda: no CUDA GPU here (use --device cpu --quick to check the script)",
              file=sys.stderr)
        return 2
    budget = args.budget if args.budget is not None else (DEFAULT_BUDGET_S if args.device == "cuda" else None)
    out = args.out.resolve()
    # Trial processes are started by Ray, not by this script: they find the project (and an offline
    # bundle given as a relative path) through PYTHONPATH, made absolute, since they start in the
    # scratch folder this script works in.
    given = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*PROJECT_PATHS, *given]))
    os.environ.setdefault("XSWEEP_OFFLINE", "1")  # nothing downloads: the data is written here, or bundled (digits)

    named = torch.cuda.get_device_name() if args.device == "cuda" else "none (CPU run)"
    lines = ["# GPU sweep", "", f"- GPU: {named}", f"- Host: {machine()}", f"- {_versions()}",
             f"- written by `python benchmarks/gpu_sweep.py{' --device cpu' if args.device == 'cpu' else ''}"
             f"{' --quick' if args.quick else ''}{f' --budget {args.budget:g}' if args.budget is not None else ''}` "
             f"({time.strftime('%Y-%m-%d %H:%M')}); budget: {f'{budget:.0f} s' if budget else 'none'}", ""]
    failed = 0
    scratch = Path(tempfile.mkdtemp(prefix="xsweep-gpu-sweep-"))
    run = Run(device=args.device, quick=args.quick, scratch=scratch, budget=budget)
    write_cifar10(run.cifar_root, QUICK_CIFAR_IMAGES if args.quick else CIFAR_IMAGES)
    here = os.getcwd()
    os.chdir(scratch)  # MLflow puts a sqlite store's artifacts under the working folder
    try:
        for title, part in PARTS:
            lines += [f"## {title}", ""]
            part_started = time.perf_counter()
            try:
                part(run, lines)
            except PartFailed as exc:
                failed += 1
                lines += ["", f"- FAILED: {exc}"]
            except Exception:  # one part's failure is reported and the others still run
                failed += 1
                lines += ["", "- FAILED:", "", "```", traceback.format_exc().strip(), "```"]
            seconds = time.perf_counter() - part_started
            lines += ["", f"({seconds:.1f} s)", ""]
            print(f"gpu_sweep: {title}: {seconds:.0f} s, {failed} part(s) failed so far", flush=True)
            # What is done so far, should the script be stopped before its end.
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines + ["(in progress)"]))
    finally:
        os.chdir(here)
        if args.keep:
            print(f"gpu_sweep: kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    lines.append(f"Total: {time.perf_counter() - run.started:.0f} s; {failed} part(s) failed.")
    write_results(out, lines)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
