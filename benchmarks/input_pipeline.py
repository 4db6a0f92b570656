"""Images per second of the image-folder training pipeline, per CPU worker, at 299x299.

Ours is what a trial runs for `data.dataset: imagefolder` with the paper's recipe (`inception`, the
default): xsweep's own datasets and loaders (training/loaders.py, training/recipes.py), decoding to
uint8 tensors with torchvision.io and resizing with torch's uint8 kernels in the loader processes;
the batch is normalised after the copy to the device. The baseline is torchvision's stock
`ImageFolder` with PIL, `RandomResizedCrop(299)`, `RandomHorizontalFlip`, `ToTensor` and `Normalize`
in a DataLoader with the same workers and batch. Both read the same real JPEG files, which this
script writes (photo-like content at ImageNet's typical size and quality), in one run, alternating.

Also: how many CPU cores a trial needs to feed one GPU at the model's training rate.

    python benchmarks/input_pipeline.py [--images 512] [--workers 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from host import machine, targets_table, write_results

RESULTS = Path(__file__).resolve().parent / "results"
SIZE, BATCH, CLASSES = 299, 64, 4
TARGET = 1.5  # ours >= 1.5x the stock pipeline per core (issue #14)
# timm's published training rate of the same network (its `xception`, now `legacy_xception`) on one
# RTX 3090, AMP, NCHW, PyTorch 1.12, batch 128 at 299x299: results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv
TIMM_RTX3090_TRAIN_RATE = 385.56


def write_jpegs(root: Path, count: int) -> None:
    """`count` JPEGs in CLASSES class folders of root/train and root/val: smooth gradients plus
    sensor-like noise (a JPEG of pure noise decodes unlike a photo), 500x375 and 375x500 at quality 90,
    about ImageNet's typical image."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(count):
            h, w = (375, 500) if i % 3 else (500, 375)
            yy, xx = np.mgrid[0:h, 0:w]
            phase = rng.uniform(0, 6, 3)
            pixels = np.stack([np.sin(xx / (20 + 9 * c) + phase[c]) * 60 + np.cos(yy / (15 + 7 * c)) * 60 + 128
                               for c in range(3)], -1)
            pixels = (pixels + rng.normal(0, 12, pixels.shape)).clip(0, 255).astype(np.uint8)
            folder = root / split / f"class{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="JPEGs per split (default 512)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="passes of each pipeline; the median counts")
    parser.add_argument("--out", type=Path, default=RESULTS / "input_pipeline.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

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
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
