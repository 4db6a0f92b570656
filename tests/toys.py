"""A toy entry of each registry, as someone adding one would write it: the tests register them from
the tests themselves (tests/test_registries.py). Nothing here imports Ray or torch on import: a
notebook registers these before its sweep starts Ray, which must find 127.0.0.1 still asked for."""

from __future__ import annotations

import optuna

from xsweep.errors import DataError
from xsweep.metrics import Metric
from xsweep.search.algorithms import SearchAlgorithm
from xsweep.search.schedulers import Scheduler
from xsweep.training.datasets import Dataset

TOY_ROOT_HINT = "a folder, which the toy only checks for"


def load_toy(data, *, seed, download):
    """Three classes anyone can tell apart: dark, bright, and striped images."""
    import torch

    from xsweep.training.loaders import Datasets, split_in_memory

    size, per_class = data["image_size"], 24
    g = torch.Generator().manual_seed(seed)
    dark = torch.randint(0, 60, (per_class, 1, size, size), generator=g)
    bright = torch.randint(190, 255, (per_class, 1, size, size), generator=g)
    striped = dark.clone()
    striped[:, :, ::2] = 255
    images = torch.cat([dark, bright, striped]).to(torch.uint8)
    labels = torch.arange(3).repeat_interleave(per_class)
    train, val = split_in_memory(images, labels, data, seed=seed, flip=False)
    return Datasets(train, val, num_classes=3, in_channels=1)


def check_toy(data):
    if data["root"] is not None and data["root"].endswith("missing"):
        raise DataError(f"data.root: {data['root']} not found (point it at {TOY_ROOT_HINT})")


TOY_DATASET = Dataset("toy", channels=1, classes=3, loader="toys:load_toy", check=check_toy)

# A derived metric: computed in the trial from the ones it measured.
VAL_ERROR = Metric("val_error", "derived", "validation error", mode="min", percent=True,
                   compute=lambda m: 1.0 - m["val_accuracy"])


class RoundRobinSampler(optuna.samplers.BaseSampler):
    """Optuna trial n takes choice n mod len(choices) of every categorical: recognisable proposals."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return param_distribution.choices[trial.number % len(param_distribution.choices)]


ROUND_ROBIN = SearchAlgorithm("round-robin", lambda spec: RoundRobinSampler())
# The same proposals over a space of choices only, each configuration once: a grid to every consumer.
EVERY_CHOICE = SearchAlgorithm("every-choice", lambda spec: RoundRobinSampler(), choices_only=True)


def median_stopping(spec):
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr="training_iteration", grace_period=spec.scheduler.grace_period)


# Its grace period, left out, is half the shortest trial: the entry's own default.
MEDIAN_STOPPING = Scheduler("median-stopping", median_stopping, fields=("grace_period",),
                            defaults=lambda values, *, epochs, **shape: {"grace_period": max(1, min(epochs) // 2)})
