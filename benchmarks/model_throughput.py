"""Training throughput of xception.Xception against timm's legacy_xception.

One training step = forward, cross-entropy loss, backward, SGD (momentum 0.9) step. Both models
get the same input shape, seed, thread count, batch, class count (10) and dropout (0.5, the
paper's). Warm-up steps are not timed. Each row runs in a fresh process of its own, and ours under
torch.compile in another, so that nothing measured before (a compiled graph, inductor's compile
workers, another row's allocations) shares its process or thread pool. Within a row the timed steps
of the two models in both layouts are interleaved round by round (in a rotating order) so that load
from other processes on a shared machine hits all of them alike; the median step time gives images/s.

Rows: fp32 on CPU at 32x32 batch 64 and 299x299 batch 8, each in NCHW and channels_last; with a
CUDA device, also bf16 autocast at 299x299 batch 64 and 32x32 batch 256. Each row also times our
model under torch.compile (the spec's ``train.compile: true``) in channels_last, its compile time
reported apart, and gives the FLOP rate of our training step beside the machine's peak
(see flops.py for how both are counted).

    python benchmarks/model_throughput.py            # full run, writes the results file
    python benchmarks/model_throughput.py --quick    # short smoke run, does not overwrite it
    python benchmarks/model_throughput.py --no-compile   # skip torch.compile (minutes on 2 cores)

Needs timm: ``pip install -e .[bench]`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

# Empty inductor caches (one folder per row, below), so the compile time is what a machine's first
# compiled trial pays (later trials on the same machine reuse the cache in /tmp and compile several
# times faster).
INDUCTOR_CACHE = tempfile.mkdtemp(prefix="xsweep-bench-inductor-")
atexit.register(shutil.rmtree, INDUCTOR_CACHE, ignore_errors=True)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from flops import cpu_theoretical_peak, measured_gemm_peak, training_flops  # noqa: E402
from host import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from xception import Xception  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "model_throughput.md"
NUM_CLASSES = 10
DROPOUT = 0.5


@dataclass(frozen=True)
class Row:
    device: str
    dtype: str  # "fp32" or "bf16" (autocast)
    size: int
    batch: int
    warmup: int
    iters: int


@dataclass
class Result:
    row: Row
    layout: str
    ours_times: list[float]  # wall-clock seconds per timed step
    timm_times: list[float]
    ours_cpu: list[float]  # CPU seconds of this process per timed step
    timm_cpu: list[float]
    flops: int  # model FLOPs of one training step (the same maths in both models)

    @property
    def ours(self) -> float:
        """images/s from the median step"""
        return self.row.batch / statistics.median(self.ours_times)

    @property
    def timm(self) -> float:
        return self.row.batch / statistics.median(self.timm_times)

    @property
    def ratio(self) -> float:
        return self.ours / self.timm

    @property
    def ours_flop_rate(self) -> float:
        """FLOP/s of our step, from the median step"""
        return self.flops / statistics.median(self.ours_times)

    @property
    def cpu_ratio(self) -> float:
        """ours/timm from median CPU time per step: with one thread, the compute itself, hardly
        disturbed by other processes competing for the cores (meaningless on CUDA)"""
        return statistics.median(self.timm_cpu) / statistics.median(self.ours_cpu)


def import_timm():
    try:
        import timm  # noqa: F401
    except ImportError:
        sys.exit(
            "model_throughput: timm is not installed; run `pip install -e .[bench]` "
            "(or `make bench`) and retry."
        )
    return timm


@dataclass
class Compiled:
    """Our model under torch.compile, channels_last: its first (compiling) step apart."""

    row: Row
    first_step: float  # seconds, compilation included
    times: list[float]

    @property
    def step(self) -> float:
        return statistics.median(self.times)

    @property
    def compile_seconds(self) -> float:
        return self.first_step - self.step

    @property
    def images_per_second(self) -> float:
        return self.row.batch / self.step


def build_model(timm, which: str, seed: int, device: str, channels_last: bool) -> nn.Module:
    torch.manual_seed(seed)
    if which in ("ours", "ours+compile"):
        model = Xception(NUM_CLASSES, dropout=DROPOUT)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy_xception may warn that it is deprecated
            model = timm.create_model(
                "legacy_xception", pretrained=False, num_classes=NUM_CLASSES, drop_rate=DROPOUT
            )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=fmt).train()


class Stepper:
    """One model's training step, timed."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: str, *, compile: bool = False):
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        # Static shapes: each row is one input shape, and dynamo's automatic dynamic shapes (on
        # the second shape it sees) fail in inductor for this network (torch 2.14).
        self.model = torch.compile(model, dynamic=False) if compile else model
        self.x, self.y = x, y
        self.loss_fn = nn.CrossEntropyLoss()
        self.autocast = dtype == "bf16"
        self.cuda = x.device.type == "cuda"
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def step(self, timed: bool) -> float:
        """One training step; returns its wall-clock seconds."""
        if self.cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.x.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        if self.cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        if timed:
            self.times.append(seconds)
            self.cpu_times.append(time.process_time() - c0)
        return seconds


def run_row(timm, row: Row, seed: int) -> list[Result]:
    """Both models in both layouts, their timed steps interleaved round by round.

    Each round runs the (model, layout) steps in a rotated order, so slow phases of a shared
    machine hit all of them alike and no step always follows the same other one.
    """
    x, y = _batch(row, seed)
    steppers: dict[tuple[str, str], Stepper] = {}
    for layout in ("NCHW", "channels_last"):
        cl = layout == "channels_last"
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        for which in ("ours", "timm"):
            steppers[(which, layout)] = Stepper(build_model(timm, which, seed, row.device, cl), xi, y, row.dtype)
    order = list(steppers.values())
    for _ in range(row.warmup):
        for s in order:
            s.step(False)
    for i in range(row.iters):
        k = i % len(order)
        for s in order[k:] + order[:k]:
            s.step(True)
    flops = training_flops(steppers[("ours", "NCHW")].model, x)
    results = []
    for layout in ("NCHW", "channels_last"):
        a, b = steppers[("ours", layout)], steppers[("timm", layout)]
        results.append(Result(row, layout, a.times, b.times, a.cpu_times, b.cpu_times, flops))
    return results


def run_compiled(timm, row: Row, seed: int) -> Compiled:
    """Ours under torch.compile in channels_last, from an empty inductor cache: its compile time is
    all its own."""
    x, y = _batch(row, seed)
    torch._dynamo.reset()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(dir=INDUCTOR_CACHE)
    xi = x.contiguous(memory_format=torch.channels_last)
    stepper = Stepper(build_model(timm, "ours+compile", seed, row.device, True), xi, y, row.dtype, compile=True)
    first_step = stepper.step(False)  # compiles forward and backward graphs
    for _ in range(row.warmup):
        stepper.step(False)
    for _ in range(row.iters):
        stepper.step(True)
    return Compiled(row, first_step, stepper.times)


def _batch(row: Row, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(row.batch, 3, row.size, row.size, generator=g)
    y = torch.randint(0, NUM_CLASSES, (row.batch,), generator=g)
    return x.to(row.device), y.to(row.device)


def in_own_process(row: Row, part: str, args) -> list[Result] | Compiled:
    """One row's eager comparison, or its compiled run, in a fresh Python process of its own: nothing
    else measured here (an earlier row, a compiled graph and inductor's compile workers, the
    allocator's state) shares its process or its thread pool."""
    command = [sys.executable, __file__, "--child-row", json.dumps(dataclasses.asdict(row)), "--child-part", part,
               "--seed", str(args.seed)] + (["--threads", str(args.threads)] if args.threads else [])
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"model_throughput: the {part} run of {row} failed:\n{proc.stderr[-3000:]}")
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    if part == "compiled":
        return Compiled(row=row, first_step=payload["first_step"], times=payload["times"])
    return [Result(row=row, **{k: v for k, v in item.items() if k != "row"}) for item in payload]


def child(args, timm) -> int:
    """The child's side of in_own_process: one part of one row, its numbers as one JSON line."""
    row = Row(**json.loads(args.child_row))
    if row.device == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.child_part == "compiled":
        done = run_compiled(timm, row, args.seed)
        print(json.dumps({"first_step": done.first_step, "times": done.times}))
    else:
        print(json.dumps([dataclasses.asdict(r) for r in run_row(timm, row, args.seed)]))
    return 0


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_lines(threads: int, load_before: str) -> list[str]:
    lines = [
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores visible; torch's CPU kernels: "
        f"{torch.backends.cpu.get_cpu_capability()} (the vector unit decides much of timm's depthwise speed)",
        f"- torch {torch.__version__}, {threads} intra-op thread(s), Python {platform.python_version()}",
        f"- load average (1/5/15 min) before / after the run: {load_before} / {load_average()} "
        "(other jobs share these cores: compare ratios, not absolute numbers)",
    ]
    try:
        import timm

        lines.append(f"- timm {timm.__version__}")
    except ImportError:
        pass
    if torch.cuda.is_available():
        lines.append(f"- GPU: {torch.cuda.get_device_name(0)}")
    else:
        lines.append("- GPU: none (bf16 autocast rows need CUDA and were skipped)")
    return lines


def table(results: list[Result]) -> list[str]:
    out = [
        "| device | dtype | input | batch | layout | ours img/s | timm img/s | ours/timm | ours/timm (CPU time) | ours GFLOP/s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cpu = f"{r.cpu_ratio:.3f}" if r.row.device == "cpu" else "n/a"
        out.append(
            f"| {r.row.device} | {r.row.dtype} | {r.row.size}x{r.row.size} | {r.row.batch} | "
            f"{r.layout} | {r.ours:.3g} | {r.timm:.3g} | {r.ratio:.3f} | {cpu} | {r.ours_flop_rate / 1e9:.1f} |"
        )
    return out


def peak_lines(results: list[Result], peaks: dict[str, float], theoretical: tuple[float, str] | None) -> list[str]:
    """Our training layout's FLOP rate as a share of the measured GEMM peak (and the theoretical one)."""
    out = []
    for r in results:
        if r.layout != "channels_last":
            continue
        peak = peaks[r.row.device]
        line = (
            f"- {r.row.device} {r.row.dtype} {r.row.size}x{r.row.size} batch {r.row.batch}: "
            f"{r.flops / 1e9:.1f} GFLOP per step, ours {r.ours_flop_rate / 1e9:.1f} GFLOP/s = "
            f"{r.ours_flop_rate / peak:.0%} of the measured GEMM peak ({peak / 1e9:.0f} GFLOP/s)"
        )
        if r.row.device == "cpu" and theoretical is not None:
            line += f", {r.ours_flop_rate / theoretical[0]:.0%} of the theoretical peak ({theoretical[0] / 1e9:.0f} GFLOP/s)"
        out.append(line)
    return out


def compile_lines(compiled: list[Compiled], results: list[Result]) -> list[str]:
    """Ours under torch.compile against ours eager (same layout) and timm's best layout."""
    by_row = {(r.row, r.layout): r for r in results}
    out = [
        "| device | dtype | input | batch | compile s | compiled img/s | / ours eager | / timm's best |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for c in compiled:
        eager = by_row[(c.row, "channels_last")]
        timm_best = max(by_row[(c.row, "NCHW")].timm, eager.timm)
        out.append(
            f"| {c.row.device} | {c.row.dtype} | {c.row.size}x{c.row.size} | {c.row.batch} | "
            f"{c.compile_seconds:.0f} | {c.images_per_second:.3g} | {c.images_per_second / eager.ours:.3f} | "
            f"{c.images_per_second / timm_best:.3f} |"
        )
    return out


def best_layout_lines(results: list[Result]) -> list[str]:
    """Ours in channels_last (our training layout) against timm in whichever layout is faster."""
    out = []
    groups: dict[Row, dict[str, Result]] = {}
    for r in results:
        groups.setdefault(r.row, {})[r.layout] = r
    for row, by_layout in groups.items():
        if "channels_last" not in by_layout:
            continue
        ours = by_layout["channels_last"]
        best_layout, best = max(by_layout.items(), key=lambda kv: kv[1].timm)
        line = (
            f"- {row.device} {row.dtype} {row.size}x{row.size} batch {row.batch}: ours channels_last "
            f"{ours.ours:.3g} img/s vs timm's best ({best_layout}) {best.timm:.3g} img/s = "
            f"{ours.ours / best.timm:.3f}x"
        )
        if row.device == "cpu":
            cpu_layout, cpu_best = min(by_layout.items(), key=lambda kv: statistics.median(kv[1].timm_cpu))
            ratio = statistics.median(cpu_best.timm_cpu) / statistics.median(ours.ours_cpu)
            line += f"; by CPU time vs timm's best ({cpu_layout}): {ratio:.3f}x"
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 warm-up + 2 timed steps per row; no results file")
    p.add_argument("--iters", type=int, default=None, help="timed steps per row (default 20 at 32x32, 8 at 299x299)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per row (default 5 at 32x32, 3 at 299x299)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", default="32,299", help="comma-separated input sizes to run (default 32,299)")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU fp32 rows")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (each compiles for minutes on a small CPU)")
    p.add_argument("--out", type=Path, default=None, help=f"markdown results file (default {DEFAULT_OUT.relative_to(ROOT)}; not written with --quick)")
    # Internal: one part of one row, run by in_own_process in a process of its own.
    p.add_argument("--child-row", help=argparse.SUPPRESS)
    p.add_argument("--child-part", choices=("eager", "compiled"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.iters is not None and args.iters < 1:
        p.error("--iters must be >= 1")
    if args.warmup is not None and args.warmup < 0:
        p.error("--warmup must be >= 0")
    timm = import_timm()
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.child_row:
        return child(args, timm)
    threads = torch.get_num_threads()
    load_before = load_average()

    def counts(default_warmup: int, default_iters: int) -> tuple[int, int]:
        if args.quick:
            return (args.warmup if args.warmup is not None else 1, args.iters or 2)
        return (args.warmup if args.warmup is not None else default_warmup, args.iters or default_iters)

    rows: list[Row] = []
    if not args.no_cpu:
        rows += [Row("cpu", "fp32", 32, 64, *counts(5, 20)), Row("cpu", "fp32", 299, 8, *counts(3, 8))]
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        rows += [Row("cuda", "bf16", 299, 64, *counts(5, 20)), Row("cuda", "bf16", 32, 256, *counts(5, 20))]

    try:
        sizes = {int(v) for v in args.sizes.split(",") if v.strip()}
    except ValueError:
        p.error(f"--sizes must be comma-separated integers; got {args.sizes!r}")
    rows = [r for r in rows if r.size in sizes]

    results: list[Result] = []
    compiled: list[Compiled] = []
    for row in rows:
        row_results = in_own_process(row, "eager", args)
        row_compiled = None if args.no_compile else in_own_process(row, "compiled", args)
        if row_compiled is not None:
            compiled.append(row_compiled)
            print(
                f"{row.device} {row.dtype} {row.size}x{row.size} b{row.batch} compiled: first step "
                f"{row_compiled.first_step:.1f} s, then {row_compiled.images_per_second:.3g} img/s",
                flush=True,
            )
        for r in row_results:
            results.append(r)
            cpu = f" (CPU time {r.cpu_ratio:.3f})" if row.device == "cpu" else ""
            print(
                f"{row.device} {row.dtype} {row.size}x{row.size} b{row.batch} {r.layout:>13}: "
                f"ours {r.ours:8.3g} img/s  timm {r.timm:8.3g} img/s  ours/timm {r.ratio:.3f}{cpu}",
                flush=True,
            )

    peaks = {d: measured_gemm_peak(d, torch.float32 if d == "cpu" else torch.bfloat16, sizes=(2048, 4096)) for d in {r.device for r in rows}}
    theoretical = cpu_theoretical_peak(threads)
    lines = [
        "# Xception training throughput: xsweep vs timm legacy_xception",
        "",
        "Written by `benchmarks/model_throughput.py`. One step = forward + cross-entropy + backward + "
        f"SGD (momentum 0.9); {NUM_CLASSES} classes, dropout {DROPOUT} in both models, same seed and input; "
        "warm-up steps excluded; each row in a fresh process of its own (and ours compiled in another), within it the "
        "timed steps of both models in both layouts interleaved; images/s from the median step "
        "(the last column compares median CPU seconds per step instead: with one intra-op thread that is the "
        "compute itself, far less disturbed than wall time when other jobs share the cores; with more threads "
        "it also counts threads spinning while they wait for each other).",
        "",
        "## Machine",
        "",
        *machine_lines(threads, load_before),
        "",
        "## Results",
        "",
        *table(results),
        "",
        "Steps per row (warm-up + timed): "
        + ", ".join(f"{r.device} {r.size}x{r.size}: {r.warmup}+{r.iters}" for r in rows),
        "",
        "## Our training layout (channels_last) vs timm's best layout",
        "",
        *best_layout_lines(results),
        "",
        "## FLOP rate against the machine's peak",
        "",
        "Model FLOPs of a training step = 3 x the forward's convolution and matrix-product FLOPs. "
        "Measured GEMM peak: the fastest large square torch.mm here, fp32 on CPU, bf16 on CUDA, same threads"
        + (f"; theoretical CPU peak: {theoretical[1]}." if theoretical else "."),
        "",
        *peak_lines(results, peaks, theoretical),
        "",
    ]
    if compiled:
        lines += [
            "## torch.compile (`train.compile: true`), ours in channels_last",
            "",
            "compile s = first step (compiling forward and backward, a new empty inductor cache per row) minus the "
            "median step. The benchmark compiles with static shapes; `train.compile` uses torch's default "
            "(a second batch size recompiles with a dynamic batch dimension). "
            "A trial pays it once, and again for evaluation mode and for a last, smaller batch; later trials on "
            "the same machine reuse the inductor cache and compile several times faster.",
            "",
            *compile_lines(compiled, results),
            "",
        ]
    text = "\n".join(lines)
    print()
    print(text)
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
