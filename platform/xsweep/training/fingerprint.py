"""What data a trial trained on, as a digest that `xsweep reproduce` compares: logged to every
trial run as an MLflow dataset input (the UI's Datasets column shows its name and digest).

A digest covers what can be read in a second or two in the driver, and says what it covers (each
dataset's registry entry names its function, datasets.py):
- digits: the data file scikit-learn ships (its contents);
- cifar10/cifar100: the training batch files (their contents, ~170 MB read once);
- imagefolder: every file's path and size under train/ and val/ (an ImageNet folder is 150 GB:
  its contents are not read; a replaced image of another size shows, one re-encoded in place at
  the same size does not);
- synthetic and any other dataset: the data config itself (the images are generated from it).
Without torch: the driver computes it before the first trial.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

DIGEST_CHARS = 32  # MLflow keeps a dataset digest in a 36-character column


@dataclass(frozen=True)
class DataFingerprint:
    name: str  # e.g. "digits", "cifar10"
    digest: str
    source: str  # where the data came from: a path, or the package that ships it
    covers: str  # what the digest was computed over

    def describe(self) -> str:
        return f"{self.name} {self.digest[:12]} ({self.covers}, {self.source})"


def _sha(chunks) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:DIGEST_CHARS]


def _file_chunks(paths):
    for path in paths:
        yield path.name.encode()
        with open(path, "rb") as f:
            yield from iter(lambda: f.read(1 << 20), b"")


def digits(data: dict) -> DataFingerprint:
    from importlib import resources
    from importlib.metadata import version

    path = Path(str(resources.files("sklearn.datasets") / "data" / "digits.csv.gz"))
    return DataFingerprint("digits", _sha(_file_chunks([path])), f"scikit-learn {version('scikit-learn')}",
                           "the file's contents")


def cifar(data: dict) -> DataFingerprint:
    from xsweep.training.sources import CIFAR, cifar_folder

    fmt = CIFAR[data["dataset"]]
    folder = cifar_folder(fmt, data.get("root"), download=False)
    return DataFingerprint(data["dataset"], _sha(_file_chunks([folder / name for name in fmt.train_files])),
                           str(folder), "the training batches' contents")


def image_folder(data: dict) -> DataFingerprint:
    root = Path(data["root"]).expanduser().resolve()
    files = sorted(p for split in ("train", "val") for p in (root / split).rglob("*") if p.is_file())
    listing = (f"{p.relative_to(root)}\t{p.stat().st_size}\n".encode() for p in files)
    return DataFingerprint("imagefolder", _sha(listing), str(root), f"{len(files)} files' paths and sizes")


def config_only(data: dict) -> DataFingerprint:
    text = json.dumps(data, sort_keys=True).encode()
    return DataFingerprint(data["dataset"], _sha([text]), "generated", "the data config")
