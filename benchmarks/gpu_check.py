"""The GPU check: the GPU path of xsweep exercised on one CUDA GPU, with what it measured.

Needs only torch, torchvision and the project's own code (timm for the model comparison, skipped
with a line when missing): the GPU machines lent to this project have no Ray, MLflow, Optuna or
pydantic, and the training code (xsweep.training) needs none of them. Each part says what it ran,
or why it skipped. On one GPU it finishes in a few minutes; `--device cpu --quick` runs every part
at toy sizes on a CPU, as a test does, so that the script cannot rot.

    python benchmarks/gpu_check.py                        # on a CUDA GPU: benchmarks/results/gpu_check.md
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check.md
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout without installing: the project's own packages.
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

import torch  # noqa: E402

from host import machine, write_results  # noqa: E402
from xsweep.cluster.connect import LOOPBACK  # noqa: E402  (nothing but loopback, as everywhere in xsweep)
from xsweep.metrics import METRICS  # noqa: E402
from xsweep.training.peak import device_peak  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _trial_config(*, device: str, data: dict, epochs: int, batch: int, width: float, threads: int) -> dict:
    """A trial config as the spec resolves one (spec/schema.py's defaults for the rest)."""
    return {
        "data": {"root": None, "val_fraction": 0.1, "augment": True, **data},
        "model": {"residual": True, "activation": "none", "width": width, "middle_blocks": 8 if width == 1 else 1,
                  "dropout": 0.5},
        "train": {"epochs": epochs, "batch_size": batch, "lr": 0.045, "optimizer": "sgd", "momentum": 0.9,
                  "weight_decay": 1e-5, "lr_schedule": "constant", "seed": 0, "device": device,
                  "amp": device == "cuda", "channels_last": True, "threads": threads, "compile": False,
                  "sync_bn": False},
        "resources": {"cpus_per_trial": threads, "gpus_per_trial": 1 if device == "cuda" else 0,
                      "workers_per_trial": 1},
    }


def _fit_lines(what: str, config: dict) -> list[str]:
    from xsweep.training.fit import fit

    reports = []
    started = time.perf_counter()
    result = fit(config, on_epoch=reports.append, began=time.time())
    last = reports[-1].metrics
    show = {name: METRICS.get(name).show(last[name]) for name in
            ("images_per_second", "peak_memory_bytes", "mfu", "device_seconds", "val_accuracy")}
    return [f"- {what}: {result.status} after {len(reports)} epochs in {time.perf_counter() - started:.1f} s; "
            f"last epoch {show['images_per_second']} training img/s, peak memory {show['peak_memory_bytes']}, "
            f"FLOP utilisation {show['mfu']} ({reports[-1].peak}), {show['device_seconds']} device-seconds, "
            f"validation accuracy {show['val_accuracy']}.",
            f"  - start-up: first step {last['startup_seconds']:.1f} s after fit was called; the first "
            f"epoch took {_seconds(last.get('first_epoch_extra_seconds'))} more than the second's pace."]


def _seconds(value: float | None) -> str:
    return "- s (one epoch: no pace to compare)" if value is None else f"{value:.1f} s"


GEMM_N = 8192  # a bf16 product of two 8192x8192 matrices: 1.1 TFLOP, long enough to time on any GPU


def gemm_peak(device: str) -> tuple[float, str]:
    """The FLOP rate of the fastest plain matrix product here, on random data (zeros run faster):
    bf16 on a GPU, fp32 on a CPU; what a training step's FLOP utilisation is measured against."""
    if device != "cuda":
        from xsweep.training.peak import GEMM_SIZE, measured_gemm_peak

        return measured_gemm_peak("cpu", torch.float32), f"measured fp32 {GEMM_SIZE}x{GEMM_SIZE} GEMM"
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(GEMM_N, GEMM_N, device="cuda", dtype=torch.bfloat16, generator=g)
    b = torch.randn(GEMM_N, GEMM_N, device="cuda", dtype=torch.bfloat16, generator=g)
    for _ in range(3):
        torch.mm(a, b)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(10):
        start.record()
        torch.mm(a, b)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * GEMM_N**3 / statistics.median(times), f"measured bf16 {GEMM_N}x{GEMM_N} GEMM, random data, median of 10"


@dataclass(frozen=True)
class ModelRow:
    size: int
    batch: int
    compiled: tuple[str, ...] = ()  # the models also timed under torch.compile
    steps: int = 10  # timed steps of each model (after warm-up steps)


def model_throughput(device: str, quick: bool, folder: Path) -> list[str]:
    """Ours against timm's legacy_xception, training steps in bf16 autocast (fp32 on a CPU) and
    channels_last, the layout trials train in: eager, then compiled (train.compile), each compiled
    model from a fresh dynamo state with its compile time apart. cuDNN picks its convolutions without
    autotuning, as in a GPU trial (fit)."""
    try:
        import timm
    except ImportError:
        return ["- skipped: timm is not installed here."]
    from model_throughput import Row, Stepper, _batch, build_model, training_flops

    dtype = "bf16" if device == "cuda" else "fp32"
    rows = ([ModelRow(32, 8, steps=2)] if quick else
            [ModelRow(299, 64), ModelRow(299, 256, compiled=("ours", "timm")), ModelRow(32, 256)])
    peak, how = gemm_peak(device)
    datasheet = device_peak(torch.device(device), amp=device == "cuda")
    unit, scale = ("TFLOP/s", 1e12) if device == "cuda" else ("GFLOP/s", 1e9)
    lines = [f"Peaks: measured {peak / scale:.4g} {unit} ({how}, this run); the trials' `mfu` uses "
             f"{datasheet.source}.", "",
             "| size | batch | model | img/s | / timm eager | FLOP utilisation (measured peak) | "
             "(trials' peak) | compile s |", "|---|---|---|---|---|---|---|---|"]
    torch.backends.cudnn.benchmark = False
    for row in rows:
        x, y = _batch(Row(device, dtype, row.size, row.batch, 0, 0), seed=0)
        x = x.contiguous(memory_format=torch.channels_last)
        steppers = {which: Stepper(build_model(timm, which, 0, device, True), x, y, dtype)
                    for which in ("ours", "timm")}
        flops = training_flops(steppers["ours"].model, x)
        for _ in range(2):  # warm-up: cuDNN's choices, the allocator
            for stepper in steppers.values():
                stepper.step(False)
        for i in range(row.steps):  # interleaved, so a slow spell hits both
            for stepper in (list(steppers.values()) if i % 2 == 0 else list(steppers.values())[::-1]):
                stepper.step(True)
        rates = {which: row.batch / statistics.median(s.times) for which, s in steppers.items()}
        del steppers
        compiles = {}
        for which in row.compiled:
            rates[which + " compiled"], compiles[which + " compiled"] = _compiled_rate(timm, which, x, y, dtype, row)
        for which, rate in rates.items():
            flop_rate = flops / row.batch * rate
            compiled = f"{compiles[which]:.0f}" if which in compiles else "-"
            lines.append(f"| {row.size} | {row.batch} | {which} | {rate:.0f} | {rate / rates['timm']:.2f}x | "
                         f"{100 * flop_rate / peak:.1f}% | {100 * flop_rate / datasheet.flops:.1f}% | {compiled} |")
        if device == "cuda":
            torch.cuda.empty_cache()
    if not any(row.compiled for row in rows):
        lines += ["", "- compiled rows: skipped (--quick: compiling the full network takes minutes on a CPU)."]
    return lines


def _compiled_rate(timm, which: str, x, y, dtype: str, row: ModelRow) -> tuple[float, float]:
    """(images/s, compile seconds) of one model under torch.compile, from a fresh dynamo state."""
    from model_throughput import Stepper, build_model

    torch._dynamo.reset()
    stepper = Stepper(build_model(timm, which, 0, x.device.type, True), x, y, dtype, compile=True)
    first = stepper.step(False)  # compiles the forward and backward graphs
    stepper.step(False)
    for _ in range(row.steps):
        stepper.step(True)
    step = statistics.median(stepper.times)
    return row.batch / step, first - step


# One setting of cuDNN's autotuning at one shape, in a process of its own (its first step meets the
# shape afresh, as a new trial process does; CUDA is started before it): prints
# [first step s, median step s] as JSON. Run with the benchmarks folder and the project on sys.path.
AUTOTUNING_STEPS = """
import json, statistics, sys, torch
from model_throughput import Row, Stepper, _batch, build_model
size, batch, benchmark, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "on", sys.argv[4]
torch.backends.cudnn.benchmark = benchmark
torch.zeros(1, device=device)
dtype = "bf16" if device == "cuda" else "fp32"
x, y = _batch(Row(device, dtype, size, batch, 0, 0), seed=0)
stepper = Stepper(build_model(None, "ours", 0, device, True), x.contiguous(memory_format=torch.channels_last), y, dtype)
first = stepper.step(False)
for _ in range(10):
    stepper.step(True)
print(json.dumps([first, statistics.median(stepper.times)]))
"""


def cudnn_autotuning(device: str, quick: bool, folder: Path) -> list[str]:
    """What cuDNN's autotuning (torch.backends.cudnn.benchmark, which fit leaves off for GPU trials)
    buys and costs at Xception's shapes: the steady step, and the first step of a new process, where
    autotuning tries each convolution's algorithms (each setting and shape in a process of its own)."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "benchmarks"), *sys.path[:2], *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}
    lines = ["| size | batch | cudnn.benchmark | first step s | steady step ms | img/s |", "|---|---|---|---|---|---|"]
    shapes = ((32, 4),) if quick else ((299, 64), (299, 256), (32, 256))
    for size, batch in shapes:
        for benchmark in ("off", "on"):
            proc = subprocess.run([sys.executable, "-c", AUTOTUNING_STEPS, str(size), str(batch), benchmark, device],
                                  capture_output=True, text=True, env=env, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            first, step = json.loads(proc.stdout.strip().splitlines()[-1])
            lines.append(f"| {size} | {batch} | {benchmark} | {first:.2f} | {1e3 * step:.1f} | {batch / step:.0f} |")
    if device != "cuda":
        lines += ["", "- On a CPU, where cuDNN plays no part: a check of the code path, not a measurement."]
    return lines


def fit_in_memory(device: str, quick: bool, folder: Path) -> list[str]:
    """A 2-epoch trial on synthetic CIFAR-size data, which fit puts on the GPU once."""
    from xsweep.training.loaders import build_datasets

    data = {"dataset": "synthetic", "image_size": 32, "synthetic_size": 64 if quick else 20000,
            "synthetic_classes": 10}
    config = _trial_config(device=device, data=data, epochs=2, batch=16 if quick else 256,
                           width=0.125 if quick else 1.0, threads=1 if quick else 4)
    lines = []
    if device == "cuda":
        probe = build_datasets(config["data"], seed=0)
        moved = probe.on_device(torch.device(device))
        host = probe.train.images if not moved else probe.train.images.cpu()
        lines.append(f"- On the GPU: {moved} ({host.numel() / 2**20:.0f} MiB of uint8 training images).")
        if moved:
            # Cut and augmented on the GPU, a batch is what the CPU makes of the same draws.
            on_cpu = build_datasets(config["data"], seed=0)
            torch.manual_seed(0)
            x_gpu, _ = probe.train.__getitems__(list(range(64)))
            torch.manual_seed(0)
            x_cpu, _ = on_cpu.train.__getitems__(list(range(64)))
            lines.append(f"- A GPU-cut batch against the CPU's of the same draws: largest difference "
                         f"{(x_gpu.cpu() - x_cpu).abs().max().item():.2e}.")
    return _fit_lines("fit, GPU-resident synthetic data" if device == "cuda" else "fit, synthetic data", config) + lines


def write_jpeg_folder(root: Path, count: int) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from input_pipeline import write_jpegs

    write_jpegs(root, count)


def fit_image_folder(device: str, quick: bool, folder: Path) -> list[str]:
    """A 2-epoch trial on a small JPEG folder through the input pipeline: on a GPU, loader processes
    read the files and the GPU decodes them (nvjpeg); on a CPU, loader processes decode them."""
    data = {"dataset": "imagefolder", "root": str(folder), "image_size": 64 if quick else 299, "recipe": "inception"}
    config = _trial_config(device=device, data=data, epochs=2, batch=8 if quick else 64,
                           width=0.125 if quick else 1.0, threads=1 if quick else 8)
    where = "decoded on the GPU" if device == "cuda" else "decoded in loader processes"
    return _fit_lines(f"fit, JPEG folder ({where})", config)


def decode_rates(device: str, quick: bool, folder: Path) -> list[str]:
    """JPEG decoding: PIL against torchvision.io on the CPU, and nvjpeg on the GPU (batched)."""
    from PIL import Image
    from torchvision.io import decode_jpeg, read_file

    files = sorted(folder.rglob("*.jpg"))[: 16 if quick else 256]
    raw = [read_file(str(p)) for p in files]

    def rate(decode) -> float:
        decode()  # warm-up (nvjpeg's handles, the first allocation)
        started = time.perf_counter()
        decode()
        return len(files) / (time.perf_counter() - started)

    lines = [f"- PIL (one CPU thread): {rate(lambda: [Image.open(p).convert('RGB') for p in files]):.0f} img/s",
             f"- torchvision.io.decode_jpeg, CPU: {rate(lambda: [decode_jpeg(r) for r in raw]):.0f} img/s"]
    if device == "cuda":
        def on_gpu():
            decode_jpeg(raw, device="cuda")
            torch.cuda.synchronize()
        lines.append(f"- torchvision.io.decode_jpeg, GPU (nvjpeg, one batched call): {rate(on_gpu):.0f} img/s")
    else:
        lines.append("- torchvision.io.decode_jpeg, GPU: skipped (no GPU).")
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def data_parallel_step(device: str, quick: bool, folder: Path) -> list[str]:
    """One DistributedDataParallel training step in a process group of one: NCCL on a GPU, gloo on
    a CPU, over loopback only."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from xception import Xception

    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://{LOOPBACK}:{_free_port()}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = Xception(num_classes=10, width=0.125 if quick else 1.0, middle_blocks=1 if quick else 8).to(device)
        ddp = DistributedDataParallel(model, device_ids=[0] if device == "cuda" else None)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(8 if quick else 64, 3, 64 if quick else 299, 64 if quick else 299, device=device)
        y = torch.randint(0, 10, (len(x),), device=device)
        started = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = F.cross_entropy(ddp(x).float(), y)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        total = torch.tensor([loss.item()], device=device)
        dist.all_reduce(total)
        lines = [f"- {backend}, world size 1: one step (loss {loss.item():.3f}, all-reduced {total.item():.3f}) "
                 f"in {seconds:.2f} s, the first step included."]
    finally:
        dist.destroy_process_group()
    return lines + _local_workers_fit(device, quick)


def _local_workers_fit(device: str, quick: bool) -> list[str]:
    """A data-parallel trial's epoch on local worker processes (training/local_workers.py, what
    `xsweep reproduce` runs): one worker per GPU over NCCL, or two over gloo on a CPU."""
    from xsweep.training.local_workers import fit_on_local_workers

    workers = torch.cuda.device_count() if device == "cuda" else 2
    data = {"dataset": "synthetic", "image_size": 32, "synthetic_size": 128 if quick else 4096,
            "synthetic_classes": 10}
    config = _trial_config(device=device, data=data, epochs=1, batch=16 if quick else 256 * workers,
                           width=0.125 if quick else 1.0, threads=1 if quick else 4)
    config["train"]["sync_bn"] = workers > 1
    config["resources"].update(workers_per_trial=workers, cpus_per_trial=workers * config["train"]["threads"],
                               gpus_per_trial=workers if device == "cuda" else 0)
    reports = []
    started = time.perf_counter()
    fit_on_local_workers(config, workers=workers, epochs=1, on_epoch=lambda epoch, metrics: reports.append(metrics))
    (last,) = reports
    return [f"- `fit` on {workers} local worker process(es) ({'NCCL' if device == 'cuda' else 'gloo'}, "
            f"sync_bn {'on' if workers > 1 else 'off'}): 1 epoch in {time.perf_counter() - started:.1f} s, "
            f"{METRICS.get('images_per_second').show(last['images_per_second'])} training img/s over all workers, "
            f"validation accuracy {METRICS.get('val_accuracy').show(last['val_accuracy'])}."]


def shared_gpu_trials(device: str, quick: bool, folder: Path) -> list[str]:
    """Two trials at 0.5 GPU each, placed by Ray on the one GPU, training at the same time. On a
    CPU, Ray is told of one GPU so that the same fractional placement runs; the trials train on the CPU."""
    from xsweep.defaults import apply_process_defaults

    apply_process_defaults()  # loopback only, before Ray is imported
    try:
        import ray
    except ImportError:
        return ["- skipped: Ray is not installed here (a sweep with `resources.gpus_per_trial: 0.5` needs it)."]
    from xsweep.training.fit import fit

    data = {"dataset": "synthetic", "image_size": 32, "synthetic_size": 64 if quick else 8192, "synthetic_classes": 10}
    config = _trial_config(device=device, data=data, epochs=2, batch=16 if quick else 256,
                           width=0.125 if quick else 1.0, threads=1)

    @ray.remote(num_gpus=0.5, num_cpus=1)
    def trial(config: dict):
        started = time.time()
        result = fit(config)
        return started, time.time(), ray.get_gpu_ids(), result.history[-1]["images_per_second"]

    ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=2,
             num_gpus=None if device == "cuda" else 1, logging_level="ERROR",
             # The project, and whatever PYTHONPATH already holds (an offline bundle's folder: Ray itself).
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 [*sys.path[:2], *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}})
    try:
        runs = ray.get([trial.remote(config), trial.remote(config)])
    finally:
        ray.shutdown()
    overlap = min(end for _, end, _, _ in runs) - max(start for start, _, _, _ in runs)
    gpus = sorted({str(ids) for _, _, ids, _ in runs})
    return [f"- Ray placed both trials on GPU {', '.join(gpus)}"
            + ("" if device == "cuda" else " (a GPU resource declared to Ray; they trained on the CPU)")
            + f"; they trained side by side for {max(overlap, 0):.1f} s"
            + f" at {', '.join(f'{rate:.0f}' for *_, rate in runs)} img/s each."]


# (title, part): each part takes (device, quick, the JPEG folder this script wrote) and returns its lines.
# --parts picks them by key: a lent GPU's minutes may not cover them all (on an H200 the model's part
# alone took about 4 minutes, two of them compiling).
PARTS = {
    "model": ("Model training throughput: ours against timm's legacy_xception, eager and compiled", model_throughput),
    "cudnn": ("cuDNN autotuning at Xception's shapes", cudnn_autotuning),
    "fit": ("fit of a 2-epoch trial on in-memory data", fit_in_memory),
    "fit-jpeg": ("fit of a 2-epoch trial on a JPEG folder", fit_image_folder),
    "decode": ("JPEG decoding", decode_rates),
    "ddp": ("A data-parallel step", data_parallel_step),
    "ray": ("Two trials sharing the GPU through Ray", shared_gpu_trials),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="toy sizes (for the CPU test)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.md")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"the parts to run, comma-separated (default all: {','.join(PARTS)})")
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        print(f"gpu_check: --parts: {', '.join(unknown) or 'none given'} is not a part (the parts: "
              f"{', '.join(PARTS)})", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda: no CUDA GPU here (use --device cpu --quick to check the script)",
              file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as the peak table counts it

    named = torch.cuda.get_device_name() if args.device == "cuda" else "none (CPU run)"
    lines = ["# GPU check", "", f"- GPU: {named}", f"- Host: {machine()}",
             f"- torch {torch.__version__}; written by `python benchmarks/gpu_check.py"
             f"{' --device cpu' if args.device == 'cpu' else ''}{' --quick' if args.quick else ''}"
             f"{'' if args.parts == ','.join(PARTS) else f' --parts {args.parts}'}` "
             f"({time.strftime('%Y-%m-%d %H:%M')})", ""]
    failed = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xsweep-gpu-check-") as scratch:
        folder = Path(scratch) / "jpegs"
        write_jpeg_folder(folder, 24 if args.quick else 512)
        for title, part in (PARTS[key] for key in chosen):
            lines += [f"## {title}", ""]
            part_started = time.perf_counter()
            try:
                lines += part(args.device, args.quick, folder)
            except Exception:  # one part's failure is reported and the others still run
                failed += 1
                lines += ["- FAILED:", "", "```", traceback.format_exc().strip(), "```"]
            lines += ["", f"({time.perf_counter() - part_started:.1f} s)", ""]
            # What is done so far, should the check be stopped before its end (a lent GPU's time runs out).
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(lines + ["(in progress)"]))
            if args.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    lines.append(f"Total: {time.perf_counter() - started:.0f} s; {failed} part(s) failed.")
    write_results(args.out, lines)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("XSWEEP_OFFLINE", "1")  # nothing downloads: the data is synthetic or written here
    sys.exit(main())
