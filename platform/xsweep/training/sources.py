"""Where a dataset's files come from, and whether they are there: the checks of datasets.py.

The driver runs them before a sweep starts, so a missing folder is one line instead of N failed
trials, and a CIFAR download happens once rather than in every trial at the same time. This module
imports no torch: the driver never needs it before trials start, and importing it would add
seconds to every sweep's start-up.
"""

import os
import pickle
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsweep.errors import DataError

# A download that cannot start within this many seconds will not work; fail fast instead of
# hanging a trial (or a test) on a machine with no network.
NETWORK_PROBE_SECONDS = 3.0
# Set to 1 to never try a download (CI, air-gapped clusters).
OFFLINE_ENV = "XSWEEP_OFFLINE"
# The files torchvision's ImageFolder loads (torchvision.datasets.folder.IMG_EXTENSIONS; a test
# keeps the two equal), written out here to keep torch out of the driver.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGEFOLDER_HINT = "(an imagefolder root needs train/ and val/ folders of class subfolders)"


@dataclass(frozen=True)
class CifarFormat:
    name: str
    folder: str
    train_files: tuple
    label_key: str
    num_classes: int
    url: str
    archive: str
    archive_md5: str


CIFAR = {
    "cifar10": CifarFormat(
        "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "labels", 10,
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": CifarFormat(
        "CIFAR-100", "cifar-100-python", ("train",), "fine_labels", 100,
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


def read_cifar(dataset, root, *, download):
    """The CIFAR training files as uint8 N x 3 x 32 x 32 numpy images, labels and the class count.

    We read the official python-pickle batches ourselves rather than through torchvision's
    CIFAR10 class: that class md5-checks every file against the official archive, so it would
    refuse files in the exact same format written elsewhere (tests, re-packed mirrors), and it
    converts each image to PIL on access. The test batch is never read: validation comes from
    the training files, keeping the test set untouched.
    """
    fmt = CIFAR[dataset]
    folder = cifar_folder(fmt, root, download=download)
    images, labels = [], []
    for name in fmt.train_files:
        try:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            # The official files were pickled by Python 2 (keys load as bytes); accept str keys too.
            batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[fmt.label_key])
        except Exception as e:
            raise DataError(
                f"data.root: {folder / name} is not a {fmt.name} python batch ({type(e).__name__}: {e}); "
                f"re-extract {fmt.archive} into {folder.parent}"
            ) from None
    return np.concatenate(images), labels, fmt.num_classes


def cifar_folder(fmt, root, *, download):
    """The folder holding a CIFAR data set's training batches, downloaded first if missing and allowed."""
    root = Path(root if root is not None else "data").expanduser().resolve()
    folder = root / fmt.folder

    def missing():
        return [f for f in fmt.train_files if not (folder / f).is_file()]

    if missing() and download and can_download(fmt.url):
        try:
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(fmt.url, str(root), filename=fmt.archive, md5=fmt.archive_md5)
        except Exception:
            pass  # reported below as "could not be downloaded", with where to put the files
    if missing():
        raise DataError(
            f"data.root: {fmt.name} not found in {folder} (missing {', '.join(missing())}) and it "
            f"could not be downloaded (extract {fmt.archive} from {fmt.url} into {root})"
        )
    return folder


def can_download(url):
    """True if the download host answers within NETWORK_PROBE_SECONDS and downloads are allowed.

    The probe runs in a daemon thread because DNS lookups ignore socket timeouts.
    """
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    host = url.split("/")[2]
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=NETWORK_PROBE_SECONDS).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(NETWORK_PROBE_SECONDS)
    return bool(result)


def _holds_an_image(folder: Path) -> bool:
    """Whether ImageFolder would find a file to load below `folder` (it walks subfolders too)."""
    return any(p.suffix.lower() in IMG_EXTENSIONS for p in folder.rglob("*") if p.is_file())


def check_cifar(data):
    """The CIFAR training files are there and readable (downloaded first if missing and allowed)."""
    read_cifar(data["dataset"], data.get("root"), download=True)


def image_folder_classes(data):
    """The class names of an imagefolder root: its train/ subfolders (check_image_folder first)."""
    root = Path(data["root"]).expanduser().resolve()
    return sorted(p.name for p in (root / "train").iterdir() if p.is_dir())


def check_image_folder(data):
    """The class names of an imagefolder root, checked up front so mistakes read as one line."""
    if data.get("root") is None:
        raise DataError(f"data.root: not set {IMAGEFOLDER_HINT}")
    root = Path(data["root"]).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data.root: {root} not found {IMAGEFOLDER_HINT}")
    classes = {}
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"data.root: {root / split} not found {IMAGEFOLDER_HINT}")
        classes[split] = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    if len(classes["train"]) < 2:
        raise DataError(
            f"data.root: {root / 'train'} has {len(classes['train'])} class folder(s); "
            f"classification needs at least 2 {IMAGEFOLDER_HINT}"
        )
    for split in ("train", "val"):
        for name in classes[split]:
            if not _holds_an_image(root / split / name):
                raise DataError(f"data.root: {root / split / name} holds no image files "
                                f"(.jpg, .png, ...) {IMAGEFOLDER_HINT}")
    if classes["val"] != classes["train"]:
        extra = sorted(set(classes["val"]) ^ set(classes["train"]))
        raise DataError(
            f"data.root: class folders of {root / 'val'} differ from {root / 'train'} "
            f"(only in one of them: {', '.join(extra)}); give both the same class subfolders"
        )
    return classes["train"]
