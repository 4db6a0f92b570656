"""Datasets and loaders for a trial: the loader of each entry of datasets.py, and the DataLoaders.

Everything small enough is held in memory as uint8 tensors and augmented a whole batch at a
time: sweeps run many short epochs on CPU, where per-image PIL work would dominate. Image folders
are decoded by loader processes (recipes.py), or, for a trial on a CUDA GPU, read by them and
decoded on that GPU (device_decode.py).
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from xsweep.errors import DataError
from xsweep.training import device_decode
from xsweep.training.datasets import dataset_of
from xsweep.training.distributed import GlobalBatchSampler, Shard, validation_share
from xsweep.training.recipes import BEFORE_RECIPES, RECIPES, Normalise
from xsweep.training.sources import check_image_folder, read_cifar

# Pad by 1/8 of the side before a random crop: 4 px at 32 px, the usual CIFAR recipe.
PAD_FRACTION = 1 / 8
# In-memory data goes onto a GPU when its uint8 images take at most this part of the free memory,
# which leaves the rest to the model, its activations and the trials that may share the GPU.
DEVICE_DATA_FRACTION = 0.25


@dataclass
class Datasets:
    train: TorchDataset
    val: TorchDataset
    num_classes: int
    in_channels: int
    # Image folders' batches arrive as uint8; this normalises them once they are on the device
    # (recipes.Normalise). In-memory batches come normalised, by the device that holds them.
    normalise: Callable | None = None
    # An image folder's recipe (data.recipe), and its (training, evaluation) views for decoding on a
    # GPU (recipes.Recipe.device_views; None: the recipe has none). None and None for in-memory data.
    recipe: str | None = None
    device_views: tuple | None = None
    # How the loader's items become a batch (DataLoader's collate_fn); None: torch's default.
    collate: Callable | None = None

    def normalise_in_workers(self) -> None:
        """For a trial without a GPU: the loader processes normalise, in parallel, rather than the
        training process (bit for bit what ToTensor and Normalize gave)."""
        from torchvision.transforms import Compose

        if self.normalise is None:
            return
        for split in (self.train, self.val):
            split.transform = Compose([split.transform, self.normalise])
        self.normalise = None

    def decode_on(self, device: torch.device) -> bool:
        """For a trial on a GPU: its image folder's JPEGs decoded there (device_decode.py), or one
        line on the trial's stderr saying why its loader processes decode them on the CPU instead.
        Whether they will be decoded on the device."""
        if device.type != "cuda" or self.recipe is None:
            return False
        if self.device_views is None:
            reason = f"data.recipe {self.recipe} has no GPU path (the inception recipe has)"
        else:
            paths = [path for split in (self.train, self.val) for path, _ in split.samples]
            others = device_decode.not_jpegs(paths)
            reason = (f"{others[0]} is not a JPEG ({len(others)} of {len(paths)} files are not; the GPU decodes "
                      "JPEGs only)" if others else device_decode.device_decoder_problem(device))
        if reason is not None:
            print(f"xsweep: this trial decodes its images on the CPU: {reason}", file=sys.stderr, flush=True)
            return False
        self.send_encoded()
        return True

    def send_encoded(self) -> None:
        """Loader processes read each file's bytes and draw its view, and send batches of encoded
        files (device_decode.EncodedBatch), which fit.to_device decodes on the trial's device. Any
        device: a CPU decodes them the same way (tests, benchmarks)."""
        for split, views in zip((self.train, self.val), self.device_views):
            split.loader, split.transform = device_decode.read_encoded, views
        self.collate = device_decode.collate_encoded

    def on_device(self, device: torch.device) -> bool:
        """Moves in-memory data onto `device` (a GPU) once, if it fits in a fraction of the memory
        free there, so that batches are cut and augmented where they are trained on; whether it moved."""
        if device.type != "cuda" or not isinstance(self.train, InMemoryImages):
            return False
        size = sum(d.images.numel() + 8 * d.labels.numel() for d in (self.train, self.val))
        free, _ = torch.cuda.mem_get_info(device)
        if size > DEVICE_DATA_FRACTION * free:
            return False
        self.train.to(device)
        self.val.to(device)
        return True


class InMemoryImages(TorchDataset):
    """uint8 images N x C x H x W with int64 labels; indexing by a list returns a whole batch.

    DataLoader calls __getitems__ with a batch's indices, so augmentation and normalisation
    run once per batch. Random crop/flip draw from torch's global RNG: fit seeds it and
    checkpoints its state, so augmented epochs replay exactly on resume.
    """

    def __init__(self, images, labels, *, mean, std, augment=False, flip=False):
        self.images = images
        self.labels = labels
        self.normalise = Normalise(mean, std)  # by the data set's own statistics, on the images' device
        self.augment = augment
        self.flip = flip

    def __len__(self):
        return len(self.labels)

    def to(self, device):
        """Holds the images on `device` (a GPU): batches are then cut, augmented and normalised there."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        return self

    def __getitem__(self, index):
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        x = self.images[index]
        if self.augment:
            x = random_crop(x, pad=max(1, round(x.shape[-1] * PAD_FRACTION)))
            if self.flip:
                x = random_flip(x)
        return self.normalise(x), self.labels[index]


# The random draws of both augmentations come from torch's CPU generator wherever the images are:
# fit seeds and checkpoints that one, and a GPU-resident run crops and flips as a CPU run does.
def random_crop(x, *, pad):
    """Zero-pad a uint8 batch by `pad` and crop each image back to size at a random offset."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1)).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1)).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]  # n x h x 1
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]  # n x 1 x w
    # Advanced indexing around the channel slice yields n x h x w x c.
    return padded[torch.arange(n, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x):
    """Mirror a random half of the batch left-right."""
    flip = (torch.rand(x.shape[0]) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def stratified_split(labels, *, val_fraction, seed):
    """Indices (train, val): each class contributes round(val_fraction * its count) to val."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        k = round(val_fraction * len(members))
        val.append(members[:k])
        train.append(members[k:])
    # Sorted so the split is a set: shuffling is the loader's job.
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def resize_uint8(images, size):
    """Bilinear resize of a uint8 batch, once up front, in chunks to bound float memory."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(4096):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def split_in_memory(images, labels, data, *, seed, flip):
    """Train/val datasets from one labelled pool; normalised by the training split's statistics."""
    train_idx, val_idx = stratified_split(labels, val_fraction=data["val_fraction"], seed=seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(
            f"data.val_fraction: {data['val_fraction']} leaves an empty train or val split of "
            f"{len(labels)} images (use a value strictly between 0 and 1, or more data)"
        )
    train_images = images[train_idx].float() / 255
    mean = train_images.mean(dim=(0, 2, 3)).tolist()
    std = train_images.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()  # clamp: constant images
    del train_images
    kw = dict(mean=mean, std=std)
    return (
        InMemoryImages(images[train_idx], labels[train_idx], augment=data["augment"], flip=flip, **kw),
        InMemoryImages(images[val_idx], labels[val_idx], **kw),
    )


def load_digits(data, *, seed, download):
    from sklearn.datasets import load_digits as sklearn_digits  # bundled with scikit-learn: no download

    digits = sklearn_digits()
    images = torch.from_numpy(digits.images).float()[:, None] * (255 / 16)  # 16 grey levels
    images = resize_uint8(images.round().to(torch.uint8), data["image_size"])
    labels = torch.from_numpy(digits.target).long()
    # No flips: a mirrored digit is another digit (or none).
    train, val = split_in_memory(images, labels, data, seed=seed, flip=False)
    return Datasets(train, val, num_classes=10, in_channels=1)


def load_cifar(data, *, seed, download):
    """The CIFAR training files (see read_cifar), resized; validation is split off them."""
    images, labels, num_classes = read_cifar(data["dataset"], data.get("root"), download=download)
    images = resize_uint8(torch.from_numpy(images), data["image_size"])
    train, val = split_in_memory(images, torch.tensor(labels, dtype=torch.long), data, seed=seed, flip=True)
    return Datasets(train, val, num_classes=num_classes, in_channels=3)


def load_synthetic(data, *, seed, download):
    """torchvision FakeData rendered once into memory (random images, random labels)."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    s, n = data["image_size"], data["synthetic_size"]
    # Offset by whole dataset sizes so different seeds draw disjoint samples.
    fake = FakeData(size=n, image_size=(3, s, s), num_classes=data["synthetic_classes"], random_offset=seed * n)
    images, labels = zip(*((pil_to_tensor(img), label) for img, label in fake))
    train, val = split_in_memory(torch.stack(images), torch.tensor(labels, dtype=torch.long), data, seed=seed,
                                 flip=True)
    return Datasets(train, val, num_classes=data["synthetic_classes"], in_channels=3)


def load_image_folder(data, *, seed, download):
    """ImageFolder on root/train and root/val, decoded and augmented by data.recipe (recipes.py)."""
    from torchvision import datasets

    classes = check_image_folder(data)
    root = Path(data["root"]).expanduser().resolve()
    recipe = RECIPES.get(data.get("recipe", BEFORE_RECIPES))  # recipes.py
    train_tf, val_tf = recipe.build(data["image_size"], data["augment"])
    out = {}
    for split, tf in (("train", train_tf), ("val", val_tf)):
        try:
            out[split] = datasets.ImageFolder(str(root / split), transform=tf, loader=recipe.decode)
        except FileNotFoundError as e:  # a class folder without any image file
            reason = str(e).splitlines()[0]
            raise DataError(f"data.root: {root / split}: {reason} (put .png/.jpg images in every class folder)") from None
    device_views = recipe.device_views(data["image_size"], data["augment"]) if recipe.device_views else None
    return Datasets(out["train"], out["val"], num_classes=len(classes), in_channels=3, normalise=Normalise(),
                    recipe=recipe.name, device_views=device_views)


def build_datasets(data, *, seed, download=True):
    """Train/val datasets for the trial's `data` config; the split depends only on `seed`.

    download=False never touches the network (tests, air-gapped runs); so does XSWEEP_OFFLINE=1.
    """
    return dataset_of(data).load(data, seed=seed, download=download)


def collate_batch(batch):
    """InMemoryImages already returns a collated (images, labels) batch."""
    return batch


def make_loaders(datasets, *, batch_size, seed, num_workers=0, eval_batch_size=None, pin_memory=False,
                 shard: Shard = Shard()):
    """(train_loader, val_loader). Training order comes from a torch.Generator seeded by `seed`;
    fit checkpoints that generator (train_loader.generator) so a resumed run sees the same order.
    `num_workers` decode and augment in processes of their own (image folders: loader_workers);
    `pin_memory` stages batches in page-locked memory, so that the copy to a GPU does not block.
    `batch_size` is the global batch: a data-parallel worker (`shard`) loads its slice of each one
    and its share of the validation set (distributed.py).
    """
    in_memory = isinstance(datasets.train, InMemoryImages)
    collate = collate_batch if in_memory else datasets.collate
    pin_memory = pin_memory and not (in_memory and datasets.train.images.is_cuda)  # already there
    generator = torch.Generator().manual_seed(seed)
    loading = dict(num_workers=num_workers, collate_fn=collate, persistent_workers=num_workers > 0,
                   pin_memory=pin_memory)
    eval_batch_size = eval_batch_size or 2 * batch_size // shard.world
    if shard.parallel:
        if len(datasets.train) < batch_size:
            raise DataError(f"train.batch_size: {batch_size} is more than the {len(datasets.train)} training "
                            f"images, so its {shard.world} workers would have no whole batch to share "
                            f"(lower it, or use more data)")
        train = DataLoader(datasets.train, generator=generator, **loading,
                           batch_sampler=GlobalBatchSampler(datasets.train, batch_size=batch_size, shard=shard,
                                                            generator=generator))
        share = torch.utils.data.Subset(datasets.val, validation_share(len(datasets.val), shard))
        val = DataLoader(share, batch_size=eval_batch_size, shuffle=False, **loading)
        return train, val
    # Drop the last partial batch: at 32 px Xception's exit flow is 1x1, so a batch of one would
    # make BatchNorm fail in training mode. Kept when the split is smaller than a single batch.
    drop_last = len(datasets.train) > batch_size
    train = DataLoader(datasets.train, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                       generator=generator, **loading)
    val = DataLoader(datasets.val, batch_size=eval_batch_size, shuffle=False, **loading)
    return train, val


def loader_workers(datasets, *, threads: int) -> int:
    """Decoding processes for a trial: none for in-memory data (a batch is one tensor index), one
    per CPU of the trial (train.threads) for image folders, whose JPEG/PNG decoding would otherwise
    leave a GPU waiting on the training process."""
    return 0 if isinstance(datasets.train, InMemoryImages) else threads
