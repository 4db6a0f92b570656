"""The datasets a spec's `data.dataset` may name: one registry entry each.

An entry tells, without importing torch (the driver reads it before any trial starts):
- `channels` and `classes` of its images (a number, or counted from the data config or files),
- `check`: what `xsweep run` checks before anything starts, so that a missing folder is one line
  instead of N failed trials (and a download happens once, not in every trial),
- `requires_root`: what `data.root` must point at, if it must be set (`xsweep validate` checks it),
- `fixed_val`: its validation set, where the data comes with one (none: split off by a seed, so
  `ablation.split_seed` may redraw it per confirmation seed),
- `loader`: the function that builds the train/val datasets in the trial process, named as
  "module:function" because it imports torch: `(data, *, seed, download) -> Datasets`.

Adding a dataset is one `DATASETS.add(Dataset(...))` here plus its loader and its test.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass

from xsweep.errors import DataError
from xsweep.registry import Registry, import_object
from xsweep.training import fingerprint as fp
from xsweep.training import sources

LOADERS = "xsweep.training.loaders"


@dataclass(frozen=True)
class Dataset:
    name: str
    channels: int
    classes: int | Callable[[dict], int]  # a number, or counted from the data config (and files)
    loader: str  # "module:function", imported in the trial process only
    check: Callable[[dict], object] | None = None  # raises DataError; run calls it before anything starts
    requires_root: str | None = None  # what data.root must point at, if it must be set
    fixed_val: str | None = None  # e.g. "data.root/val"; None: val_fraction is split off by a seed
    # The digest of its data that reproduce compares (fingerprint.py); None: of the data config only.
    fingerprint: Callable[[dict], fp.DataFingerprint] | None = None

    def shape(self, data: dict, *, check: bool = True) -> tuple[int, int]:
        """(classes, channels) of a trial's data config, after checking that the data is there
        (`check=False`: data already checked, as at the end of a sweep)."""
        if check and self.check is not None:
            self.check(data)
        classes = self.classes(data) if callable(self.classes) else self.classes
        return classes, self.channels

    def load(self, data: dict, *, seed: int, download: bool = True):
        """The train/val `Datasets` (see loaders.py); needs torch."""
        return import_object(self.loader)(data, seed=seed, download=download)


DATASETS: Registry[Dataset] = Registry("dataset")
# scikit-learn's bundled 8x8 handwritten digits: no download, the default for CPU sweeps and CI.
DATASETS.add(Dataset("digits", channels=1, classes=10, loader=f"{LOADERS}:load_digits", fingerprint=fp.digits))
DATASETS.add(Dataset("cifar10", channels=3, classes=10, loader=f"{LOADERS}:load_cifar",
                     check=sources.check_cifar, fingerprint=fp.cifar))
DATASETS.add(Dataset("cifar100", channels=3, classes=100, loader=f"{LOADERS}:load_cifar",
                     check=sources.check_cifar, fingerprint=fp.cifar))
DATASETS.add(Dataset("imagefolder", channels=3, classes=lambda data: len(sources.image_folder_classes(data)),
                     loader=f"{LOADERS}:load_image_folder", check=sources.check_image_folder,
                     requires_root="the path of the image folder", fixed_val="data.root/val",
                     fingerprint=fp.image_folder))
# Random images with random labels: shapes and speed without any data (benchmarks, GPU checks).
DATASETS.add(Dataset("synthetic", channels=3, classes=lambda data: data["synthetic_classes"],
                     loader=f"{LOADERS}:load_synthetic"))


def dataset_of(data: dict) -> Dataset:
    """The entry a data config names; an unknown name is one line naming data.dataset."""
    name = data["dataset"]
    if name not in DATASETS:
        raise DataError(f"data.dataset: {DATASETS.unknown(name)}")
    return DATASETS.get(name)


def check_classes_needed(spec, classes: int) -> None:
    """One line when a searched metric needs more classes than the data has (an image folder's are
    counted only now; spec/checks.py refuses the others at validate)."""
    from xsweep.metrics import METRICS

    for objective in spec.search.objective_list:
        need = METRICS.get(objective.metric).min_classes
        if classes < need:
            raise DataError(f"search.metric: {objective.metric} needs data with at least {need} classes, and "
                            f"{spec.data.root or spec.data.dataset} has {classes} (use val_accuracy)")


def data_fingerprint(data: dict) -> fp.DataFingerprint:
    """The digest of a trial's data (fingerprint.py), cached: every trial of a sweep has the same data."""
    return _fingerprint(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _fingerprint(data_json: str) -> fp.DataFingerprint:
    data = json.loads(data_json)
    return (dataset_of(data).fingerprint or fp.config_only)(data)
