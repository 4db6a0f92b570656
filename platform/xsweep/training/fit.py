"""Train one trial: `fit(config)` runs the epochs, reports each one, and can resume.

Kept free of Ray and MLflow: the caller's `on_epoch` decides where reports and checkpoints go.
"""

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from xsweep.metrics import TOP5_MIN_CLASSES, with_derived
from xsweep.spec.trial import split_seed
from xsweep.training.compile_cache import SharedCompileCache, compile_key
from xsweep.training.cost import TrialCost, forward_gflops_per_image, parameter_count
from xsweep.training.device_decode import EncodedBatch
from xsweep.training.distributed import Shard, data_parallel, with_global_batch_norm
from xsweep.training.loaders import Datasets, build_datasets, loader_workers, make_loaders
from xsweep.training.models import arch_of, build_model, model_args
from xsweep.training.optim import build_lr_schedule, build_optimizer
from xsweep.training.trial_start import StartupClock

# Checking the loss for NaN/inf needs a host sync on GPU; every 10 steps costs nothing
# measurable and still stops a blown-up trial within a fraction of an epoch.
DIVERGENCE_CHECK_EVERY = 10
# Compiled variants of the model one process keeps (torch's default is 8): a reused trial process
# meets every variant of an ablation, and past the limit torch would quietly run the model eager.
COMPILED_VARIANTS_KEPT = 64


@dataclass
class EpochReport:
    epoch: int  # finished epochs, 1-based
    metrics: dict  # train_loss, val_accuracy, ..., step_seconds, params, gflops (see xsweep/metrics.py)
    diverged: bool
    _state: Callable[[], dict] = field(repr=False)
    system: list = field(default_factory=list)  # the system metrics sampled during the epoch (system.py)
    peak: str = ""  # what the epoch's `mfu` is measured against (training/peak.py)

    def state(self) -> dict:
        """The checkpoint state after this epoch. Built on demand (it costs a state_dict copy
        of everything); its tensors are live, so save it during the on_epoch call."""
        return self._state()


@dataclass
class FitResult:
    status: str  # "completed" or "diverged"
    history: list  # one metrics dict per epoch, with an "epoch" key
    best: dict  # the history entry with the highest val_accuracy (earliest on ties)


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def compiles(train: dict, device: torch.device) -> bool:
    """Whether a trial runs its training step through torch.compile. `auto`: on a GPU, where the
    compiled step is faster and its code is cached for the sweep's later trials (compile_cache.py);
    not on a CPU, where compiling takes minutes and the compiled step is no faster (docs/SPEC.md)."""
    return train["compile"] is True or (train["compile"] == "auto" and device.type == "cuda")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state(loader_generator):
    """Every RNG a resumed run needs, as weights_only-loadable types (no numpy arrays)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "loader": loader_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state, loader_generator):
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    loader_generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    """random.setstate wants tuples; a checkpoint may hand back lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def to_device(x, y, device, channels_last, normalise=None):
    if isinstance(x, EncodedBatch):  # an image folder's JPEG files, decoded and cut on the device
        x = x.decode(device)
    else:
        x = x.to(device, non_blocking=True)
    if normalise is not None:  # an image folder's uint8 batch (loaders.Datasets.normalise)
        x = normalise(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model, loader, *, device, amp=False, channels_last=False, normalise=None,
             shard: Shard = Shard()) -> dict[str, float]:
    """val_loss (mean cross-entropy), val_accuracy in [0, 1] and, with TOP5_MIN_CLASSES classes or
    more, val_top5_accuracy (the label among the 5 highest logits, the paper's ImageNet figure) of
    `model` over `loader`, in eval mode; over the whole validation set when each data-parallel
    worker (`shard`) evaluates its share."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    n = classes = 0
    for x, y in loader:
        x, y = to_device(x, y, device, channels_last, normalise)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        classes = logits.shape[1]
        if classes >= TOP5_MIN_CLASSES:
            correct5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum()
        n += len(y)
    model.train(was_training)
    loss_sum, correct, correct5, n, classes = shard.sum(loss_sum, correct, correct5, n, classes)
    classes //= shard.world  # every worker has the same model
    out = {"val_loss": loss_sum / max(n, 1), "val_accuracy": correct / max(n, 1)}
    if classes >= TOP5_MIN_CLASSES:
        out["val_top5_accuracy"] = correct5 / max(n, 1)
    return out


def train_epoch(model, loader, optimizer, *, device, amp, channels_last, normalise=None, shard: Shard = Shard(),
                after_first_step: Callable[[], None] | None = None):
    """One pass over `loader`; returns (mean loss, accuracy, images, steps, diverged), over all the
    data-parallel workers (`shard`). `after_first_step` is called once its first step is done."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = step = 0
    for step, (x, y) in enumerate(loader, 1):
        x, y = to_device(x, y, device, channels_last, normalise)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 1 and after_first_step is not None:
            after_first_step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        n += len(y)
        # Losses are >= 0, so once one is NaN/inf the running sum stays non-finite.
        if step % DIVERGENCE_CHECK_EVERY == 0 and not shard.all_finite(loss_sum):
            break
    loss_sum, correct, n = shard.sum(loss_sum, correct, n)
    mean_loss = loss_sum / max(n, 1)
    return mean_loss, correct / max(n, 1), int(n), step, not math.isfinite(mean_loss)


@dataclass
class TrialSetup:
    """A trial's device, data and loaders, as `fit` trains and evaluates it (set_up_trial)."""

    device: torch.device
    datasets: Datasets
    train_loader: DataLoader
    val_loader: DataLoader
    amp: bool
    channels_last: bool
    shard: Shard

    def place(self, model):
        """`model` on the trial's device, in its memory format."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def step_args(self) -> dict:
        """The keyword arguments of train_epoch and evaluate for this trial."""
        return dict(device=self.device, amp=self.amp, channels_last=self.channels_last,
                    normalise=self.datasets.normalise, shard=self.shard)


def set_up_trial(config: dict, *, shard: Shard = Shard()) -> TrialSetup:
    """Seed the process, pick its threads, device and kernels, and load the data of trial `config`,
    all as `fit` does: `xsweep reproduce` evaluates a checkpoint in the very same set-up, since
    bit-equal numbers need the same threads, kernels and data path as the trial had."""
    tc = config["train"]
    seed_everything(tc["seed"])
    torch.set_num_threads(tc["threads"])
    device = pick_device(tc["device"])
    # Bitwise-reproducible trials on CPU cost nothing. On CUDA, deterministic kernels are slower
    # and need CUBLAS_WORKSPACE_CONFIG set before CUDA starts, so GPU trials favour speed.
    torch.use_deterministic_algorithms(device.type == "cpu")
    # No cuDNN autotuning: on an H200 it made Xception's steps no faster (39.0 against 38.9 ms at
    # 299x299 batch 64, 27.9 against 26.6 at 32x32 batch 256: benchmarks/results/gpu_check.md), and
    # without it cuDNN's choice of kernels does not depend on timings.
    torch.backends.cudnn.benchmark = False

    datasets = build_datasets(config["data"], seed=split_seed(config))
    datasets.on_device(device)  # in-memory data on a GPU, where it fits
    datasets.decode_on(device)  # an image folder's JPEGs decoded on a GPU, or a line on stderr saying why not
    if device.type == "cpu":
        datasets.normalise_in_workers()  # no GPU to normalise image-folder batches on
    train_loader, val_loader = make_loaders(
        datasets, batch_size=tc["batch_size"], seed=tc["seed"],
        num_workers=loader_workers(datasets, threads=tc["threads"]), pin_memory=device.type == "cuda",
        shard=shard,
    )
    return TrialSetup(device=device, datasets=datasets, train_loader=train_loader, val_loader=val_loader,
                      amp=tc["amp"], channels_last=tc["channels_last"], shard=shard)


def fit(config, *, on_epoch=None, resume=None, shard: Shard = Shard(), began: float | None = None,
        compile_cache: SharedCompileCache | None = None):
    """Train the trial `config`; call on_epoch(EpochReport) after every epoch.

    resume: a state from EpochReport.state() (e.g. via load_checkpoint); training continues
    at epoch state["epoch"] + 1 and, on CPU, repeats the uninterrupted run bit for bit.
    shard: which of the trial's data-parallel workers this process is (distributed.py); each calls
    on_epoch with the same metrics, summed over all of them, and rank 0's state is the checkpoint.
    began: when the trial began in this process, in time.time() seconds (by default: now);
    compile_cache: where the sweep keeps its compiled code for other nodes (compile_cache.py).
    """
    began = time.time() if began is None else began
    started = time.perf_counter()  # the trial holds its device from here: its device_seconds count
    tc = config["train"]
    setup = set_up_trial(config, shard=shard)
    device, datasets, train_loader, val_loader = setup.device, setup.datasets, setup.train_loader, setup.val_loader
    model = build_model(config, num_classes=datasets.num_classes, in_channels=datasets.in_channels)
    # The model's own cost, the same every epoch (counted on the CPU copy, before it moves).
    model_cost = {"params": parameter_count(model),
                  "gflops": forward_gflops_per_image(model, in_channels=datasets.in_channels,
                                                     image_size=config["data"]["image_size"])}
    if shard.parallel and tc.get("sync_bn"):  # before the optimizer takes the parameters
        with_global_batch_norm(model, device)
    setup.place(model)
    optimizer = build_optimizer(model, tc)
    scheduler = build_lr_schedule(optimizer, tc)

    history, start = [], 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        set_rng_state(resume["rng"], train_loader.generator)
        history = [dict(h) for h in resume["history"]]
        start = resume["epoch"] + 1
    # Compile after loading weights: the compiled wrapper shares the parameters, while
    # checkpoints keep the plain module's state_dict keys (no "_orig_mod." prefix).
    step_model = data_parallel(model, shard=shard, device=device)
    compiled = compiles(tc, device)
    clock = StartupClock(began=began, device=device, compiled=compiled)
    if compiled:
        key = compile_key(model_args={"arch": arch_of(config).name, **model_args(
                              config, num_classes=datasets.num_classes, in_channels=datasets.in_channels)},
                          image_size=config["data"]["image_size"], batch_size=tc["batch_size"], amp=tc["amp"],
                          channels_last=tc["channels_last"], device_name=_device_name(device))
        if compile_cache is not None:
            compile_cache.seed(key)
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, COMPILED_VARIANTS_KEPT)
        # Static shapes: a reused trial process meets other models (a searched width), and the
        # automatic dynamic shapes a second shape turns on fail in inductor for this network.
        step_model = torch.compile(step_model, dynamic=False)
    run = setup.step_args()
    # Evaluation runs the plain module. Compiled, it would compile twice more (eval mode, and the
    # last, smaller batch) for a tenth of the work; and each data-parallel worker evaluates its own
    # share, where DDP's forward would wait on the others, whose shares may hold one batch more or less.
    eval_model = model
    cost = TrialCost(device, amp=tc["amp"], started=started, history=history, workers=shard.world,
                     sample_system=shard.is_main)

    status = "completed"
    with cost:  # samples the system metrics in the background while the epochs run
        for epoch in range(start, tc["epochs"] + 1):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            first_step = clock.first_step_done if epoch == start else None
            train_loss, train_acc, images, steps, diverged = train_epoch(step_model, train_loader, optimizer, **run,
                                                                         after_first_step=first_step)
            train_seconds = time.perf_counter() - t0
            clock.epoch_done(train_seconds=train_seconds, steps=steps)
            if diverged:
                # A blown-up model's predictions mean nothing; 0 keeps "max val_accuracy" searches sane.
                evaluated = {"val_loss": float("nan"), "val_accuracy": 0.0}
                if datasets.num_classes >= TOP5_MIN_CLASSES:
                    evaluated["val_top5_accuracy"] = 0.0
            else:
                evaluated = evaluate(eval_model, val_loader, **run)
                scheduler.step()
            images_per_second = images / max(train_seconds, 1e-9)
            metrics = with_derived({  # measured here; derived ones (xsweep.metrics) computed from these
                "train_loss": train_loss, "train_accuracy": train_acc, **evaluated, "lr": lr,
                "epoch_seconds": time.perf_counter() - t0,
                "images_per_second": images_per_second,
                "step_seconds": train_seconds / max(steps, 1),
                **model_cost,
                **cost.epoch_metrics(images_per_second=images_per_second, gflops=model_cost["gflops"]),
                **clock.metrics(),
            })
            metrics["peak_memory_bytes"] = shard.max(metrics["peak_memory_bytes"])  # the fullest device's
            history.append({"epoch": epoch, **metrics})
            if compiled and compile_cache is not None and epoch == start:
                compile_cache.keep(key)  # the training step is compiled, forward and backward
            if on_epoch is not None:
                rng = rng_state(train_loader.generator)  # now, before anything draws again
                snapshot = list(history)

                def state(epoch=epoch, rng=rng, snapshot=snapshot):
                    return {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": rng, "epoch": epoch,
                        "config": config, "history": [dict(h) for h in snapshot],
                    }

                on_epoch(EpochReport(epoch=epoch, metrics=dict(metrics), diverged=diverged, _state=state,
                                     system=cost.system_samples(), peak=cost.peak.source))
            if diverged:
                status = "diverged"
                break

    best = max(history, key=lambda h: h["val_accuracy"]) if history else {}
    return FitResult(status=status, history=history, best=best)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
