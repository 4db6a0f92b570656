"""Images per second of the image-folder training pipeline, per CPU worker, at 299x299.

Ours is what a trial runs for `data.dataset: imagefolder` with the paper's recipe (`inception`, the
default): xsweep's own datasets and loaders (training/loaders.py, training/recipes.py), decoding to
uint8 tensors with torchvision.io and resizing with torch's uint8 kernels in the loader processes;
the batch is normalised after the copy to the device. The baseline is torchvision's stock
`ImageFolder` with PIL, `RandomResizedCrop(299)`, `RandomHorizontalFlip`, `ToTensor` and `Normalize`
in a DataLoader with the same workers and batch. Both read the same real JPEG files, which this
script writes (photo-like content at ImageNet's typical size and quality), in one run, alternating.

Also: how many CPU cores a trial needs to feed one GPU at the model's training rate.

The GPU section (results/input_pipeline_gpu.md) measures what a trial on a CUDA GPU runs instead
(training/device_decode.py): loader processes only read the files and draw the crops, and the
training process decodes each batch with nvjpeg and crops, resizes, flips and normalises it on the
GPU. Images/s delivered as the model's float batch, synchronised, at 299x299 batch 256 with 2, 4 and
8 loader processes, on 4,096 JPEGs it writes (in parallel: the section takes well under a minute on
16 cores). It runs with the full benchmark where CUDA is, alone with --gpu-only, is skipped with a
line where CUDA is not, and `--gpu-only --device cpu --quick` runs its code on this CPU.

    python benchmarks/input_pipeline.py [--images 512] [--workers 1 2] [--repeats 3]
    python benchmarks/input_pipeline.py --gpu-only [--model-rate 2470]   # on a CUDA GPU
    python benchmarks/input_pipeline.py --gpu-only --device cpu --quick   # its code path, on a CPU
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from host import machine, targets_table, write_results

RESULTS = Path(__file__).resolve().parent / "results"
# Run from a checkout without installing (as on a GPU host): the project's own packages.
sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "platform"), str(Path(__file__).resolve().parents[1])]
SIZE, BATCH, CLASSES = 299, 64, 4
TARGET = 1.5  # ours >= 1.5x the stock pipeline per core (issue #14)
# The GPU section: the batch of the compiled model's measured rate, and the rate it must be fed at:
# Xception under torch.compile trained at 2,470 img/s at batch 256 on an H200 (issue #24).
GPU_BATCH, GPU_IMAGES, GPU_WORKERS = 256, 4096, (2, 4, 8)
GPU_TARGET_RATE, GPU_TARGET_CORES = 2500, 4
ISSUE_COMPILED_RATE = 2470
# timm's published training rate of the same network (its `xception`, now `legacy_xception`) on one
# RTX 3090, AMP, NCHW, PyTorch 1.12, batch 128 at 299x299: results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv
TIMM_RTX3090_TRAIN_RATE = 385.56


def write_jpegs(root: Path, count: int, *, val_count: int | None = None, processes: int | None = None) -> None:
    """`count` JPEGs in CLASSES class folders of root/train and `val_count` (default: as many) of
    root/val: smooth gradients plus sensor-like noise (a JPEG of pure noise decodes unlike a photo),
    500x375 and 375x500 at quality 90, about ImageNet's typical image. Written by `processes`
    processes (default: one per core); each image has its own seed, so the files are the same however
    many write them."""
    jobs = [(root, split, i) for split, n in (("train", count), ("val", count if val_count is None else val_count))
            for i in range(n)]
    for split in ("train", "val"):
        for c in range(CLASSES):
            (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)
    processes = processes or os.cpu_count() or 1
    if processes == 1:
        list(map(_write_jpeg, jobs))
        return
    # Forked before anything touches CUDA: the children only run numpy and PIL.
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_write_jpeg, jobs, chunksize=max(1, len(jobs) // (4 * processes))))


def _write_jpeg(job: tuple[Path, str, int]) -> None:
    root, split, i = job
    rng = np.random.default_rng([i, split == "val"])
    photo(rng, *((375, 500) if i % 3 else (500, 375))).save(root / split / f"class{i % CLASSES}" / f"{i}.jpg",
                                                            quality=90)


def photo(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Smooth colour gradients plus sensor-like noise."""
    phase = rng.uniform(0, 6, 3)
    # Separable: a sine across the columns plus a cosine down the rows, broadcast to the image.
    pixels = np.stack([np.sin(np.arange(width) / (20 + 9 * c) + phase[c])[None, :] * 60
                       + np.cos(np.arange(height) / (15 + 7 * c))[:, None] * 60 + 128 for c in range(3)], -1)
    pixels = pixels + rng.standard_normal(pixels.shape, dtype=np.float32) * 12
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def ours(root: Path, workers: int, *, gpu: bool = True):
    """gpu: as a GPU trial loads (uint8 batches, normalised on the device); else as a trial without
    one, whose workers normalise (loaders.Datasets.normalise_in_workers)."""
    from xsweep.training.loaders import build_datasets, make_loaders

    data = {"dataset": "imagefolder", "root": str(root), "image_size": SIZE, "augment": True, "recipe": "inception",
            "val_fraction": 0.1}
    datasets = build_datasets(data, seed=0)
    if not gpu:
        datasets.normalise_in_workers()
    train, _ = make_loaders(datasets, batch_size=BATCH, seed=0, num_workers=workers)
    return train


def stock(root: Path, workers: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomResizedCrop(SIZE), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    return DataLoader(datasets.ImageFolder(str(root / "train"), transform=tf), batch_size=BATCH, shuffle=True,
                      num_workers=workers, persistent_workers=True, drop_last=True)


def images_per_second(loader) -> float:
    """One pass, timed from the first batch on (worker start-up and the first decode excluded)."""
    batches = iter(loader)
    next(batches)
    started, images = time.perf_counter(), 0
    for x, _ in batches:
        images += len(x)
    return images / (time.perf_counter() - started)


def normalise_seconds_per_batch() -> float:
    """What ours leaves to the training process: normalising a uint8 batch (on the GPU, where a
    trial has one; here on this CPU)."""
    from xsweep.training.recipes import Normalise

    x = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8)
    normalise = Normalise()
    normalise(x)
    started = time.perf_counter()
    for _ in range(5):
        normalise(x)
    return (time.perf_counter() - started) / 5


def gpu_training_rate() -> tuple[float, str]:
    """The model's GPU training rate at 299x299: a GPU row of model_throughput.md if one exists
    (the gpu check writes them), else timm's published RTX 3090 figure."""
    table = RESULTS / "model_throughput.md"
    if table.exists():
        for line in table.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) > 4 and cells[0] == "ours" and "cuda" in line and "299" in line:
                rate = re.search(r"([\d.]+)\s*img/s", line)
                if rate:
                    return float(rate.group(1)), f"ours on the GPU of model_throughput.md ({cells[1]})"
    return TIMM_RTX3090_TRAIN_RATE, ("timm's published training rate of `xception` (legacy_xception) on one RTX 3090, "
                                     "AMP, batch 128 at 299x299 (results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv)")


def encoded_loader(root: Path, workers: int, *, size: int, batch: int, device: torch.device):
    """A CUDA trial's training loader of the folder (loaders.Datasets.send_encoded): its processes read
    the files and draw the crops; its batches are encoded JPEGs (device_decode.EncodedBatch). With the
    folder's normalisation, which fit.to_device applies after decoding."""
    from xsweep.training.loaders import build_datasets, make_loaders

    data = {"dataset": "imagefolder", "root": str(root), "image_size": size, "augment": True, "recipe": "inception",
            "val_fraction": 0.1}
    datasets = build_datasets(data, seed=0)
    datasets.send_encoded()
    train, _ = make_loaders(datasets, batch_size=batch, seed=0, num_workers=workers,
                            pin_memory=device.type == "cuda")
    return train, datasets.normalise


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def delivered_rate(loader, normalise, device: torch.device, *, passes: int) -> float:
    """Images/s made into the model's batch on `device` (decoded, cut, flipped, normalised, channels_last:
    fit.to_device, as a trial's step takes it), synchronised; timed from the first batch on (loader
    start-up and the decoder's first call excluded)."""
    from xsweep.training.fit import to_device

    batches = iter(loader)
    x, y = next(batches)
    to_device(x, y, device, True, normalise)
    synchronise(device)
    started, images = time.perf_counter(), 0
    for n in range(passes):
        for x, y in batches if n == 0 else loader:
            to_device(x, y, device, True, normalise)
            images += len(y)
    synchronise(device)
    return images / (time.perf_counter() - started)


def training_process_seconds(loader, normalise, device: torch.device, *, batches: int) -> float:
    """Seconds per batch the training process takes to make the model's batch of an encoded batch it
    already holds (no loader processes in the way): decoding's own cost in a training step."""
    from xsweep.training.fit import to_device

    held = [batch for _, batch in zip(range(batches + 1), loader)]
    to_device(*held[0], device, True, normalise)
    synchronise(device)
    started = time.perf_counter()
    for x, y in held[1:]:
        to_device(x, y, device, True, normalise)
    synchronise(device)
    return (time.perf_counter() - started) / (len(held) - 1)


# The kinds of JPEG an ImageNet-like folder holds: (PIL mode, save options). nvjpeg decodes the first
# four (progressive ones one at a time, in software); CMYK ones decode on the CPU (device_decode.py).
JPEG_KINDS = {"baseline 4:2:0": ("RGB", {}), "4:4:4": ("RGB", {"subsampling": 0}),
              "progressive": ("RGB", {"progressive": True}), "grayscale": ("L", {}), "CMYK": ("CMYK", {})}


def agreement_lines(device: torch.device, size: int) -> list[str]:
    """The device path against the CPU recipe on the same draws, for each kind of JPEG: how many grey
    levels the uint8 batches differ by (the decoders' IDCTs and the resize's rounding differ)."""
    import contextlib
    import io

    from xsweep.training.loaders import build_datasets, make_loaders

    with tempfile.TemporaryDirectory(prefix="xsweep-jpeg-kinds-") as folder:
        root, rng = Path(folder), np.random.default_rng(1)
        for split in ("train", "val"):
            for c in range(2):
                (root / split / f"class{c}").mkdir(parents=True)
                for kind, (mode, options) in JPEG_KINDS.items():
                    photo(rng, 375, 500).convert(mode).save(root / split / f"class{c}" / f"{kind}.jpg", quality=90,
                                                            **options)
        data = {"dataset": "imagefolder", "root": str(root), "image_size": size, "augment": True,
                "recipe": "inception", "val_fraction": 0.1}
        on_cpu, on_device = build_datasets(data, seed=0), build_datasets(data, seed=0)
        on_device.send_encoded()
        differences, said = {}, io.StringIO()
        for split in (0, 1):  # the training view, the evaluation view
            batch = len(on_cpu.train if split == 0 else on_cpu.val)
            torch.manual_seed(0)  # loading in this process: the draws come from its RNG
            x, _ = next(iter(make_loaders(on_cpu, batch_size=batch, eval_batch_size=batch, seed=0)[split]))
            torch.manual_seed(0)
            encoded, _ = next(iter(make_loaders(on_device, batch_size=batch, eval_batch_size=batch, seed=0)[split]))
            with contextlib.redirect_stderr(said):
                diff = (encoded.decode(device).cpu().int() - x.int()).abs()
            for i, path in enumerate(encoded.paths):
                kind = Path(path).stem
                by = "the CPU (fallback)" if encoded.cpu_reasons[i] else ("nvjpeg" if device.type == "cuda" else
                                                                          "torchvision, CPU")
                differences.setdefault((kind, by), []).append(diff[i])
    lines = ["| JPEG kind | decoded by | largest difference (grey levels) | mean difference |", "|---|---|---|---|"]
    for (kind, by), diffs in sorted(differences.items(), key=lambda item: list(JPEG_KINDS).index(item[0][0])):
        stacked = torch.stack(diffs).float()
        lines.append(f"| {kind} | {by} | {stacked.max():.0f} | {stacked.mean():.2f} |")
    return lines + ["", *[f"Said: `{line}`" for line in said.getvalue().splitlines()]]


def gpu_section(device: str, quick: bool, *, model_rate: float | None = None) -> list[str]:
    """The GPU section's lines: what a CUDA trial's image-folder pipeline delivers (also a part that
    gpu_check.py can run beside the compiled model's rate)."""
    import torchvision

    from xsweep.training.device_decode import device_decoder_problem

    dev = torch.device(device)
    problem = device_decoder_problem(dev)
    if problem is not None:
        return ["# Input pipeline on the GPU", "", f"- Skipped: {problem}."]
    size, batch, count = (64, 8, 48) if quick else (SIZE, GPU_BATCH, GPU_IMAGES)
    workers, passes = ((1, 2), 1) if quick else (GPU_WORKERS, 2)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="xsweep-jpegs-") as folder:
        root = Path(folder)
        write_jpegs(root, count, val_count=CLASSES)
        written = time.perf_counter() - started
        mean_bytes = statistics.fmean(p.stat().st_size for p in (root / "train").rglob("*.jpg"))
        for n in workers:
            loader, normalise = encoded_loader(root, n, size=size, batch=batch, device=dev)
            rows.append((n, delivered_rate(loader, normalise, dev, passes=passes)))
            if len(rows) == 1:
                step_cost = training_process_seconds(loader, normalise, dev, batches=2 if quick else 4)
            del loader
    rate, source = ((model_rate, "--model-rate: the compiled model's training rate measured in the same run "
                                 "(gpu_check.py)") if model_rate else
                    (ISSUE_COMPILED_RATE, "issue #24's H200 figure for the compiled model at batch 256; this "
                                          "run's own is in gpu_check.md"))
    fed = max((r for n, r in rows if n <= GPU_TARGET_CORES), default=0.0)
    need = max(GPU_TARGET_RATE, model_rate or 0)
    step = batch / rate
    lines = [
        f"# Input pipeline on the {'GPU' if dev.type == 'cuda' else 'CPU (the GPU code path, as a check)'}: "
        f"JPEGs decoded in the training process, {size}x{size}",
        "",
        f"- Device: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU (no GPU: the code path only)'}",
        f"- Host: {machine()}",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}; written by `python "
        f"benchmarks/input_pipeline.py --gpu-only{' --device cpu' if dev.type == 'cpu' else ''}"
        f"{' --quick' if quick else ''}{f' --model-rate {model_rate:g}' if model_rate else ''}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}).",
        f"- Data: {count} JPEG files the script writes in {written:.1f} s ({mean_bytes / 1024:.0f} KiB on average, "
        f"500x375 and 375x500, quality 90; just written, so read from the page cache), {CLASSES} classes; batch "
        f"{batch}; each row {passes} pass(es) over them, timed from the first batch (loader start-up and the "
        "decoder's first call excluded), synchronised at the end.",
        "- What a trial on a CUDA GPU runs (training/device_decode.py): loader processes read each file and draw "
        "its crop and flip, knowing its size from the header; the training process decodes the batch in one "
        "nvjpeg call (torchvision.io.decode_jpeg on the device) and crops, resizes (bilinear, antialiased), flips "
        "and normalises it there, into the model's channels_last float batch (fit.to_device).",
        "",
        "| loader processes | img/s delivered | per loader process |",
        "|---|---|---|",
        *[f"| {n} | {r:.0f} | {r / n:.0f} |" for n, r in rows],
        "",
        f"- The training process's own part: {1000 * step_cost:.1f} ms to decode and cut a batch of {batch} it "
        f"already holds ({batch / step_cost:.0f} img/s, no loader processes in the way).",
        f"- The model: {rate:.0f} img/s ({source}), {1000 * step:.0f} ms a batch of {batch}. Decoding runs "
        f"between the steps, in the training process; were none of it to overlap a step's GPU work, a trial "
        f"would train at {batch / (step + step_cost):.0f} img/s.",
        "",
        f"The device path against the CPU recipe on the same draws (training and evaluation views of 2 files of "
        f"each kind, {size}x{size}):",
        "",
        *agreement_lines(dev, size),
        "",
        f"This section took {time.perf_counter() - started:.0f} s, writing the files included.",
        "",
        *targets_table([(f"img/s delivered with <= {GPU_TARGET_CORES} loader processes, a core each beside the "
                          "training process (the best such row)", f"{fed:.0f}",
                         f">= {need:.0f} (feeds the compiled model: >= {GPU_TARGET_RATE} img/s on an H200)",
                         fed >= need if dev.type == "cuda" and not quick else None)]),
    ]
    if dev.type != "cuda" or quick:
        lines.append("")
        lines.append("(A check of the code path: its rates are not the GPU's, and the target is not judged.)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="JPEGs per split (default 512)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="passes of each pipeline; the median counts")
    parser.add_argument("--out", type=Path, default=RESULTS / "input_pipeline.md")
    parser.add_argument("--gpu-only", action="store_true", help="only the GPU section (nvjpeg decoding)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="the GPU section's device; cpu runs its code path on this CPU (with --gpu-only)")
    parser.add_argument("--quick", action="store_true", help="the GPU section at toy sizes (a check of its code)")
    parser.add_argument("--model-rate", type=float, default=None,
                        help="the compiled model's training img/s measured in the same run (gpu_check.py)")
    parser.add_argument("--gpu-out", type=Path, default=None,
                        help="the GPU section's file (default results/input_pipeline_gpu.md; with --device cpu, "
                             "a file in the temp folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gpu_out = args.gpu_out or (RESULTS / "input_pipeline_gpu.md" if args.device == "cuda"
                               else Path(tempfile.gettempdir()) / "input_pipeline_gpu.cpu.md")
    no_gpu = args.device == "cuda" and not torch.cuda.is_available()
    if args.gpu_only:
        if no_gpu:
            print("input_pipeline: GPU section skipped: no CUDA GPU here (`--gpu-only --device cpu --quick` runs "
                  "its code on this CPU)")
            return 0
        write_results(gpu_out, gpu_section(args.device, args.quick, model_rate=args.model_rate))
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="xsweep-jpegs-") as folder:
        root = Path(folder)
        write_jpegs(root, args.images)
        mean_bytes = statistics.fmean(p.stat().st_size for p in root.rglob("*.jpg"))
        for workers in args.workers:
            loaders = {"ours": ours(root, workers), "ours_cpu": ours(root, workers, gpu=False),
                       "stock": stock(root, workers)}
            measured = {name: [] for name in loaders}
            for _ in range(args.repeats):  # alternating, so that a slower moment of the machine hits both
                for name, loader in loaders.items():
                    measured[name].append(images_per_second(loader))
            rows.append((workers, {name: statistics.median(v) for name, v in measured.items()}))
            del loaders
    normalise = normalise_seconds_per_batch()

    rate, rate_source = gpu_training_rate()
    lines = [
        "# Input pipeline: images/s of image-folder training at 299x299",
        "",
        f"- Machine: {machine()}",
        f"- Written by `python benchmarks/input_pipeline.py` ({time.strftime('%Y-%m-%d')}); torch {torch.__version__}.",
        f"- Data: {args.images} real JPEG files the script writes ({mean_bytes / 1024:.0f} KiB on average, 500x375 "
        f"and 375x500, quality 90), in {CLASSES} class folders; batch {BATCH}; the median of {args.repeats} passes "
        "of each pipeline, alternating, timed from each pass's first batch.",
        "- Ours: xsweep's image-folder loader with the paper's recipe (`data.recipe: inception`): torchvision.io "
        "decoding to uint8 tensors, RandomResizedCrop(299, scale 0.08-1) and a flip with torch's uint8 kernels, "
        "uint8 batches. Stock: torchvision's `ImageFolder` (PIL) with RandomResizedCrop(299), "
        "RandomHorizontalFlip, ToTensor and Normalize in the workers, float batches.",
        f"- Ours normalises each batch after the copy to the device: {1000 * normalise:.0f} ms per batch on this "
        "CPU (one thread), one elementwise pass over the batch on a GPU (not measured here); not counted in the "
        "rates below, which are what the workers deliver.",
        "",
        "The third column is ours as a trial without a GPU loads: its workers normalise, into float batches.",
        "",
        "| loader workers | ours (img/s) | stock (img/s) | ours, no GPU (img/s) | ours per worker | stock per worker "
        "| ours / stock | ours, no GPU / stock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workers, rates in rows:
        lines.append(f"| {workers} | {rates['ours']:.0f} | {rates['stock']:.0f} | {rates['ours_cpu']:.0f} | "
                     f"{rates['ours'] / workers:.0f} | {rates['stock'] / workers:.0f} | "
                     f"{rates['ours'] / rates['stock']:.2f}x | {rates['ours_cpu'] / rates['stock']:.2f}x |")
    one = next((r for w, r in rows if w == 1), rows[0][1])
    per_core = one["ours"] / (1 if any(w == 1 for w, _ in rows) else rows[0][0])
    ratio = min(r["ours"] / r["stock"] for _, r in rows)
    lines += [
        "",
        f"Feeding one GPU: the model trains at {rate:.0f} img/s ({rate_source}); at {per_core:.0f} img/s per "
        f"loader worker (one CPU core each), a trial needs {rate / per_core:.1f} cores to keep that GPU fed "
        f"(the stock pipeline: {rate / (one['stock'] * per_core / one['ours']):.1f}).",
        "",
        *targets_table([("ours / stock, per core (the lowest over the worker counts)", f"{ratio:.2f}x",
                         f">= {TARGET}x", ratio >= TARGET)]),
    ]
    gpu_note = "skipped, no CUDA GPU here" if no_gpu else f"in {gpu_out.name}"
    lines += ["", f"The GPU section (JPEGs decoded with nvjpeg in the training process, `--gpu-only`): {gpu_note}."]
    write_results(args.out, lines)
    if not no_gpu:
        write_results(gpu_out, gpu_section(args.device, args.quick, model_rate=args.model_rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
