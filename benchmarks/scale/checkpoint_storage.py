"""Checkpoint storage: the size of one xsweep checkpoint of the paper-size Xception, and what a sweep writes and keeps.

    .venv/bin/python benchmarks/scale/checkpoint_storage.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the package from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale import common  # noqa: E402

# The paper's network (width 1, 8 middle blocks, 1000 classes); --quick saves a toy one instead.
PAPER = {"width": 1.0, "middle_blocks": 8, "classes": 1000}
QUICK = {"checkpoint_width": 0.125, "checkpoint_middle_blocks": 1, "checkpoint_classes": 10}
KEPT_PER_TRIAL = 3  # sweep/driver.py: num_to_keep=2 by the metric, and Tune keeps the latest as well
SWEEPS = ((1000, 10), (10000, 10), (10000, 100))  # (trials, epochs) the totals are given for


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint-width", type=float, default=PAPER["width"])
    parser.add_argument("--checkpoint-middle-blocks", type=int, default=PAPER["middle_blocks"])
    parser.add_argument("--checkpoint-classes", type=int, default=PAPER["classes"])


def measure(args, work: Path) -> dict:
    import torch

    from xsweep.training.checkpoint import save_checkpoint
    from xsweep.training.models import build_model
    from xsweep.training.optim import build_optimizer

    config = {"model": {"residual": True, "activation": "none", "width": args.checkpoint_width,
                        "middle_blocks": args.checkpoint_middle_blocks, "dropout": 0.5},
              "train": {"optimizer": "sgd", "lr": 0.045, "momentum": 0.9, "weight_decay": 1e-5}}
    model = build_model(config, num_classes=args.checkpoint_classes, in_channels=3)
    optimizer = build_optimizer(model, config["train"])
    # One step on a tiny batch so the optimizer state (momentum buffers) exists, as in a real checkpoint.
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    params = sum(p.numel() for p in model.parameters())
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "history": []}
    path = work / "state.pt"
    save_checkpoint(state, str(path))
    size = path.stat().st_size
    path.unlink()
    print(f"  checkpoint of {params / 1e6:.1f} M parameters: {common.mib(size)}", flush=True)
    return {"params": params, "bytes": size}


def section(args, ckpt) -> list[str]:
    paper = (args.checkpoint_width, args.checkpoint_middle_blocks, args.checkpoint_classes) == \
        (PAPER["width"], PAPER["middle_blocks"], PAPER["classes"])
    lines = [
        "## 4. Storage",
        "",
        f"One xsweep checkpoint (`save_checkpoint`: weights + SGD momentum + bookkeeping) of "
        f"{'the paper-size' if paper else 'a toy'} Xception (width {args.checkpoint_width:g}, "
        f"{args.checkpoint_middle_blocks} middle block{'' if args.checkpoint_middle_blocks == 1 else 's'}, "
        f"{args.checkpoint_classes} classes). Bytes written by a "
        f"sweep that checkpoints every epoch, and kept at its end at {KEPT_PER_TRIAL} per trial (the 2 best by its "
        "metric and the latest: `num_to_keep=2` in `sweep/driver.py`; Tune never deletes the latest).",
        "",
        "| measure | measured |",
        "|---|---|",
        f"| parameters | {ckpt['params']:,} |",
        f"| one checkpoint | {common.mib(ckpt['bytes'])} |",
        "",
        f"| sweep | checkpoint bytes written (every epoch) | kept at the end (<= {KEPT_PER_TRIAL} per trial) |",
        "|---|---|---|",
    ]
    for trials, epochs in SWEEPS:
        lines.append(f"| {trials} trials x {epochs} epochs (no early stopping) | "
                     f"{trials * epochs * ckpt['bytes'] / 2**40:.2f} TiB | "
                     f"{KEPT_PER_TRIAL * trials * ckpt['bytes'] / 2**40:.2f} TiB |")
    return lines + [""]


if __name__ == "__main__":
    common.run_alone(sys.modules[__name__])
