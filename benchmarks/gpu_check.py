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
import os
import socket
import sys
import tempfile
import time
import traceback
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
    result = fit(config, on_epoch=reports.append)
    last = reports[-1].metrics
    show = {name: METRICS.get(name).show(last[name]) for name in
            ("images_per_second", "peak_memory_bytes", "mfu", "device_seconds", "val_accuracy")}
    return [f"- {what}: {result.status} after {len(reports)} epochs in {time.perf_counter() - started:.1f} s; "
            f"last epoch {show['images_per_second']} training img/s, peak memory {show['peak_memory_bytes']}, "
            f"FLOP utilisation {show['mfu']} ({reports[-1].peak}), {show['device_seconds']} device-seconds, "
            f"validation accuracy {show['val_accuracy']}."]


def model_throughput(device: str, quick: bool, folder: Path) -> list[str]:
    """Ours against timm's legacy_xception, bf16 autocast and channels_last (the paper's network)."""
    try:
        import timm
    except ImportError:
        return ["- skipped: timm is not installed here."]
    from model_throughput import Row, run_row

    dtype = "bf16" if device == "cuda" else "fp32"
    rows = [Row(device, dtype, 32, 8, 1, 2)] if quick else [Row(device, dtype, 299, 64, 5, 20),
                                                           Row(device, dtype, 32, 256, 5, 20)]
    peak = device_peak(torch.device(device), amp=device == "cuda")
    lines = [f"Peak: {peak.source}.", "",
             "| size | batch | layout | ours (img/s) | timm (img/s) | ours / timm | our FLOP utilisation |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        results = run_row(timm, row, seed=0)
        for r in results:
            mfu = r.ours_flop_rate / peak.flops
            lines.append(f"| {row.size} | {row.batch} | {r.layout} | {r.ours:.0f} | {r.timm:.0f} | {r.ratio:.2f}x | "
                         f"{100 * mfu:.1f}% |")
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
    """A 2-epoch trial on a small JPEG folder through the input pipeline (loader processes decode)."""
    data = {"dataset": "imagefolder", "root": str(folder), "image_size": 64 if quick else 299, "recipe": "inception"}
    config = _trial_config(device=device, data=data, epochs=2, batch=8 if quick else 64,
                           width=0.125 if quick else 1.0, threads=1 if quick else 8)
    return _fit_lines("fit, JPEG folder (decoded in loader processes)", config)


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
    data = {"dataset": "synthetic", "image_size": 32, "synthetic_size": 128 if quick else 8192,
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
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path[:2])}})
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
PARTS = (
    ("Model training throughput: ours against timm's legacy_xception", model_throughput),
    ("fit of a 2-epoch trial on in-memory data", fit_in_memory),
    ("fit of a 2-epoch trial on a JPEG folder", fit_image_folder),
    ("JPEG decoding", decode_rates),
    ("A data-parallel step", data_parallel_step),
    ("Two trials sharing the GPU through Ray", shared_gpu_trials),
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="toy sizes (for the CPU test)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.md")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda: no CUDA GPU here (use --device cpu --quick to check the script)",
              file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as the peak table counts it

    named = torch.cuda.get_device_name() if args.device == "cuda" else "none (CPU run)"
    lines = ["# GPU check", "", f"- GPU: {named}", f"- Host: {machine()}",
             f"- torch {torch.__version__}; written by `python benchmarks/gpu_check.py"
             f"{' --device cpu' if args.device == 'cpu' else ''}{' --quick' if args.quick else ''}` "
             f"({time.strftime('%Y-%m-%d %H:%M')})", ""]
    failed = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xsweep-gpu-check-") as scratch:
        folder = Path(scratch) / "jpegs"
        write_jpeg_folder(folder, 24 if args.quick else 512)
        for title, part in PARTS:
            lines += [f"## {title}", ""]
            part_started = time.perf_counter()
            try:
                lines += part(args.device, args.quick, folder)
            except Exception:  # one part's failure is reported and the others still run
                failed += 1
                lines += ["- FAILED:", "", "```", traceback.format_exc().strip(), "```"]
            lines += ["", f"({time.perf_counter() - part_started:.1f} s)", ""]
            if args.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    lines.append(f"Total: {time.perf_counter() - started:.0f} s; {failed} part(s) failed.")
    write_results(args.out, lines)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("XSWEEP_OFFLINE", "1")  # nothing downloads: the data is synthetic or written here
    sys.exit(main())
