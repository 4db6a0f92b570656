"""xsweep.data: splits, augmentation, and each dataset source, all offline and tiny."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from xsweep.training import sources as data_sources
from xsweep.training.loaders import DataError, build_datasets, make_loaders

torch.set_num_threads(1)


def data_config(dataset="digits", **kw):
    d = {"dataset": dataset, "root": None, "image_size": 32, "val_fraction": 0.2, "augment": True,
         "synthetic_size": 64, "synthetic_classes": 4}
    d.update(kw)
    return d


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    # Belt and braces: no test may reach the network, even one that forgets download=False.
    monkeypatch.setenv(data_sources.OFFLINE_ENV, "1")


def denormalise(x, ds):
    """Back from a normalised batch to the uint8 pixels it came from."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (ds.normalise.mean, ds.normalise.std))
    return (((x * std) + mean) * 255).round().clamp(0, 255).to(torch.uint8)


def shifted_versions(img, pad):
    """Every zero-padded crop of `img` (C x H x W) at offsets in [0, 2 * pad]."""
    _, h, w = img.shape
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    return torch.stack([padded[:, y:y + h, x:x + w] for y in range(2 * pad + 1) for x in range(2 * pad + 1)])


def matches_any(x, candidates):
    return bool((candidates == x).flatten(1).all(1).any())


# --- digits -------------------------------------------------------------------------------

def test_digits_shapes_classes_and_split_sizes():
    ds = build_datasets(data_config(), seed=0)
    assert (ds.num_classes, ds.in_channels) == (10, 1)
    assert len(ds.train) + len(ds.val) == 1797  # all of sklearn's digits
    assert abs(len(ds.val) - 0.2 * 1797) <= 10  # per-class rounding
    x, y = ds.val[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert set(ds.train.labels.tolist()) == set(range(10)) == set(ds.val.labels.tolist())
    # Stratified: every class keeps about the same share in val.
    counts = torch.bincount(ds.val.labels, minlength=10).float()
    assert counts.min() >= 0.8 * counts.max()
    # Normalised by the training split's statistics.
    xs, _ = ds.train.__getitems__(list(range(len(ds.train))))
    assert abs(xs.mean().item()) < 0.2 and 0.8 < xs.std().item() < 1.2


def test_split_is_deterministic_by_seed_and_differs_across_seeds():
    a = build_datasets(data_config(), seed=0)
    b = build_datasets(data_config(), seed=0)
    c = build_datasets(data_config(), seed=1)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.val.images, c.val.images)


def test_augmentation_on_train_only_and_no_flip_for_digits():
    ds = build_datasets(data_config(), seed=0)
    # Val is deterministic: two reads give the same item.
    assert torch.equal(ds.val[3][0], ds.val[3][0])
    # Train: the same image read 64 times comes back shifted in several ways, never mirrored.
    x, _ = ds.train.__getitems__([5] * 64)
    pixels = denormalise(x, ds.train)
    assert len({tuple(p.flatten().tolist()) for p in pixels}) > 5
    original = ds.train.images[5]
    shifts = shifted_versions(original, pad=4)
    assert all(matches_any(p, shifts) for p in pixels)
    # Sanity: digit 5 is not mirror-symmetric, so a flip would have been caught above.
    assert not matches_any(original.flip(-1), shifts)


def test_no_augmentation_when_disabled():
    ds = build_datasets(data_config(augment=False), seed=0)
    x, _ = ds.train.__getitems__([7, 7])
    assert torch.equal(x[0], x[1])
    assert torch.equal(denormalise(x[:1], ds.train)[0], ds.train.images[7])


def test_loaders_shuffle_deterministically_and_batch_in_memory():
    ds = build_datasets(data_config(), seed=0)

    def first_labels(seed):
        train, _ = make_loaders(ds, batch_size=32, seed=seed)
        return next(iter(train))[1]

    assert torch.equal(first_labels(0), first_labels(0))
    assert not torch.equal(first_labels(0), first_labels(1))
    train, val = make_loaders(ds, batch_size=32, seed=0)
    x, y = next(iter(train))
    assert x.shape == (32, 1, 32, 32) and y.shape == (32,) and y.dtype == torch.long
    assert sum(len(y) for _, y in val) == len(ds.val)  # val keeps every image
    assert all(len(y) == 32 for _, y in train)  # the partial last batch is dropped


# --- synthetic ----------------------------------------------------------------------------

def test_synthetic():
    ds = build_datasets(data_config("synthetic", synthetic_size=40, synthetic_classes=3, image_size=36), seed=0)
    assert (ds.num_classes, ds.in_channels) == (3, 3)
    assert len(ds.train) + len(ds.val) == 40
    assert ds.train[0][0].shape == (3, 36, 36)
    again = build_datasets(data_config("synthetic", synthetic_size=40, synthetic_classes=3, image_size=36), seed=0)
    other = build_datasets(data_config("synthetic", synthetic_size=40, synthetic_classes=3, image_size=36), seed=1)
    assert torch.equal(ds.val.images, again.val.images)
    assert not torch.equal(ds.val.images, other.val.images)


def test_flips_happen_for_rgb_datasets():
    ds = build_datasets(data_config("synthetic", synthetic_size=40), seed=0)
    x, _ = ds.train.__getitems__([0] * 64)
    pixels = denormalise(x, ds.train)
    original = ds.train.images[0]
    mirrored = shifted_versions(original.flip(-1), pad=4)
    plain = shifted_versions(original, pad=4)
    assert any(matches_any(p, mirrored) and not matches_any(p, plain) for p in pixels)


# --- CIFAR, from files in the real on-disk format -------------------------------------------

def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def fake_cifar10(root, per_batch=20):
    """cifar-10-batches-py as the official archive lays it out, with tiny random batches."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_pickle(folder / name, {
            b"batch_label": name.encode(),
            b"labels": [int(i % 10) for i in range(per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        })
    write_pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)],
                                           b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return folder


def test_cifar10_from_real_format_files(tmp_path):
    folder = fake_cifar10(tmp_path)
    ds = build_datasets(data_config("cifar10", root=str(tmp_path)), seed=0, download=False)
    assert (ds.num_classes, ds.in_channels) == (10, 3)
    assert len(ds.train) + len(ds.val) == 100  # the five training batches; test_batch untouched
    assert len(ds.val) == 20
    # Pixel layout: row-major 1024 red, then green, then blue values per image.
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")[b"data"][0]
    pool = torch.cat([ds.train.images, ds.val.images])
    assert any(torch.equal(img, torch.from_numpy(first.reshape(3, 32, 32))) for img in pool)


def test_cifar100_from_real_format_files(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 200), ("test", 10)):
        write_pickle(folder / name, {
            b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
            b"fine_labels": [i % 100 for i in range(n)], b"coarse_labels": [i % 20 for i in range(n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        })
    write_pickle(folder / "meta", {b"fine_label_names": [b"f"] * 100, b"coarse_label_names": [b"c"] * 20})
    ds = build_datasets(data_config("cifar100", root=str(tmp_path), val_fraction=0.5), seed=0, download=False)
    assert ds.num_classes == 100
    assert len(ds.train) == len(ds.val) == 100


def test_cifar_resized_to_image_size(tmp_path):
    fake_cifar10(tmp_path)
    ds = build_datasets(data_config("cifar10", root=str(tmp_path), image_size=40), seed=0, download=False)
    assert ds.val[0][0].shape == (3, 40, 40)


def test_missing_cifar_names_the_folder(tmp_path):
    with pytest.raises(DataError) as e:
        build_datasets(data_config("cifar10", root=str(tmp_path)), seed=0, download=False)
    message = str(e.value)
    assert message.startswith("data.root:") and "\n" not in message
    assert str(tmp_path.resolve() / "cifar-10-batches-py") in message


def test_failed_cifar_download_is_a_data_error(tmp_path, monkeypatch):
    # Pretend the network is up and let the download fail, as it would behind a proxy.
    import torchvision.datasets.utils

    def broken_download(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(data_sources, "can_download", lambda url: True)
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", broken_download)
    with pytest.raises(DataError, match="cifar-100-python.*could not be downloaded"):
        build_datasets(data_config("cifar100", root=str(tmp_path)), seed=0)


def test_offline_env_skips_the_network_probe():
    assert data_sources.can_download("https://www.cs.toronto.edu/x.tar.gz") is False


def test_partial_cifar_folder_lists_missing_files(tmp_path):
    folder = fake_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        build_datasets(data_config("cifar10", root=str(tmp_path)), seed=0, download=False)


# --- image folders ------------------------------------------------------------------------

def write_images(folder, classes, per_class=3, size=(20, 12)):
    rng = np.random.default_rng(0)
    for c in classes:
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / c / f"{i}.png")


def test_image_folder(tmp_path):
    write_images(tmp_path / "train", ["cat", "dog", "owl"], per_class=4)
    write_images(tmp_path / "val", ["cat", "dog", "owl"], per_class=2)
    ds = build_datasets(data_config("imagefolder", root=str(tmp_path)), seed=0)
    assert (ds.num_classes, ds.in_channels) == (3, 3)
    assert (len(ds.train), len(ds.val)) == (12, 6)
    assert ds.train[0][0].shape == ds.val[0][0].shape == (3, 32, 32)
    assert torch.equal(ds.val[1][0], ds.val[1][0])
    train, val = make_loaders(ds, batch_size=4, seed=0)
    x, y = next(iter(train))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)


def test_the_papers_recipe_is_the_image_folder_default_and_the_old_one_keeps_its_name(tmp_path):
    from torchvision.transforms import functional as TF

    from xsweep.training.loaders import loader_workers
    from xsweep.training.recipes import IMAGENET_MEAN, IMAGENET_STD

    write_images(tmp_path / "train", ["cat", "dog"], per_class=4, size=(80, 48))
    write_images(tmp_path / "val", ["cat", "dog"], per_class=2, size=(80, 48))
    inception = build_datasets(data_config("imagefolder", root=str(tmp_path), recipe="inception"), seed=0)
    # Evaluation: the short side resized to 32 / 0.875 = 37, then the centre 32 x 32, as uint8 (loader
    # processes send bytes; the batch is normalised on the device, with ImageNet's statistics).
    image = Image.open(tmp_path / "val" / "cat" / "0.png").convert("RGB")
    pil_view = TF.pil_to_tensor(TF.center_crop(TF.resize(image, 37), 32))
    view = inception.val[0][0]
    assert view.dtype == torch.uint8 and view.shape == (3, 32, 32)
    # torch's uint8 resize, not PIL's: the same filter, a few grey levels apart at most.
    assert (view.int() - pil_view.int()).abs().max() <= 3
    normalised = inception.normalise(view[None])[0]
    assert torch.allclose(normalised, TF.normalize(view.float() / 255, IMAGENET_MEAN, IMAGENET_STD))
    # Training: random crops of a random area, so two draws of one image differ; both 32 x 32.
    torch.manual_seed(0)
    a, b = inception.train[0][0], inception.train[0][0]
    assert a.shape == b.shape == (3, 32, 32) and not torch.equal(a, b)
    old = build_datasets(data_config("imagefolder", root=str(tmp_path), recipe="resize-crop", augment=False), seed=0)
    assert torch.equal(old.train[0][0], old.val[0][0])  # no augmentation: training sees the evaluation view
    assert torch.equal(old.val[0][0], TF.pil_to_tensor(TF.center_crop(TF.resize(image, 32), 32)))  # PIL's, as before
    # A config recorded before recipes (no data.recipe) ran the resize-and-crop recipe.
    before = build_datasets(data_config("imagefolder", root=str(tmp_path), augment=False), seed=0)
    assert torch.equal(before.val[0][0], old.val[0][0])
    # A trial without a GPU normalises in its loader processes, bit for bit as ToTensor and Normalize did.
    old.normalise_in_workers()
    assert old.normalise is None
    assert torch.equal(old.val[0][0], TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(image, 32), 32)),
                                                   IMAGENET_MEAN, IMAGENET_STD))
    # Image folders decode in one process per CPU of the trial; in-memory data needs none.
    assert loader_workers(inception, threads=3) == 3
    assert loader_workers(build_datasets(data_config("digits"), seed=0), threads=3) == 0
    train, _ = make_loaders(inception, batch_size=4, seed=0, num_workers=2)
    x, y = next(iter(train))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)


@pytest.mark.parametrize("case, expected", [
    ("no_root", "not found"),
    ("no_val", "val not found"),
    ("empty", "holds no image files"),
    ("single_class", "1 class folder"),
    ("mismatch", "differ"),
])
def test_bad_image_folders(tmp_path, case, expected):
    root = tmp_path / "images"
    if case == "no_val":
        write_images(root / "train", ["a", "b"])
    elif case == "empty":
        (root / "train" / "a").mkdir(parents=True)
        (root / "train" / "b").mkdir(parents=True)
        (root / "val" / "a").mkdir(parents=True)
        (root / "val" / "b").mkdir(parents=True)
    elif case == "single_class":
        write_images(root / "train", ["a"])
        write_images(root / "val", ["a"])
    elif case == "mismatch":
        write_images(root / "train", ["a", "b"])
        write_images(root / "val", ["a", "c"])
    with pytest.raises(DataError) as e:
        build_datasets(data_config("imagefolder", root=str(root)), seed=0)
    message = str(e.value)
    assert message.startswith("data.root:") and "\n" not in message
    assert expected in message


def test_unknown_dataset():
    with pytest.raises(DataError, match="data.dataset"):
        build_datasets(data_config("mnist"), seed=0)
