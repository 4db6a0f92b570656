"""An image folder decoded on the trial's device (training/device_decode.py), run here with the CPU as
that device: torchvision's decode_jpeg decodes on a CPU as well, and the crop, resize, flip and
normalisation after it are the same torch code on either. Tiny JPEGs, one loader process."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xsweep.training import device_decode
from xsweep.training import sources as data_sources
from xsweep.training.device_decode import EncodedBatch
from xsweep.training.fit import to_device
from xsweep.training.loaders import build_datasets, make_loaders
from xsweep.training.recipes import IMAGENET_STD

torch.set_num_threads(1)
CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv(data_sources.OFFLINE_ENV, "1")


@pytest.fixture(autouse=True)
def nothing_said_yet(monkeypatch):
    # A process says each fallback once; every test starts as a fresh trial process would.
    monkeypatch.setattr(device_decode, "_said", set())


def photo(rng, height, width):
    """Smooth gradients plus sensor-like noise: resizing it is resizing a photo, not pure noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 6, 3)
    pixels = np.stack([np.sin(xx / (7 + 3 * c) + phase[c]) * 70 + np.cos(yy / (5 + 2 * c)) * 50 + 128
                       for c in range(3)], -1)
    return Image.fromarray((pixels + rng.normal(0, 10, pixels.shape)).clip(0, 255).astype(np.uint8))


def write_folder(root, *, fmt="JPEG", odd=False):
    """root/train and root/val, two classes of four 96x72 or 72x96 images (one grayscale each); with
    `odd`, train also holds a CMYK JPEG and a PNG named .jpg, which nvjpeg cannot take."""
    rng = np.random.default_rng(0)
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                image = photo(rng, *((72, 96) if i % 2 else (96, 72)))
                (image.convert("L") if i == 1 else image).save(folder / f"{i}{suffix}", fmt)
    if odd:
        photo(rng, 80, 60).convert("CMYK").save(root / "train" / "cat" / "cmyk.jpg", "JPEG")
        photo(rng, 60, 80).save(root / "train" / "dog" / "png.jpg", "PNG")


def data_config(root, **kw):
    return {"dataset": "imagefolder", "root": str(root), "image_size": 32, "val_fraction": 0.2, "augment": True,
            "recipe": "inception", **kw}


def views(loader):
    return [(view.crop, view.flip) for encoded, _ in loader for view in encoded.views]


def test_a_batch_decoded_on_the_device_is_the_cpu_recipes_batch_of_the_same_draws(tmp_path, capsys):
    write_folder(tmp_path, odd=True)
    on_cpu = build_datasets(data_config(tmp_path), seed=0)
    on_device = build_datasets(data_config(tmp_path), seed=0)
    on_device.send_encoded()
    # Loader processes seeded from the same generator draw the same views on either path.
    cpu_train, cpu_val = make_loaders(on_cpu, batch_size=5, seed=0, num_workers=1)
    device_train, device_val = make_loaders(on_device, batch_size=5, seed=0, num_workers=1)
    compared, differing, bias, flips = 0, 0, 0, []
    for cpu_loader, device_loader in ((cpu_train, device_train), (cpu_val, device_val)):
        for (x, y), (encoded, labels) in zip(cpu_loader, device_loader, strict=True):
            assert isinstance(encoded, EncodedBatch) and torch.equal(labels, y)
            decoded = encoded.decode(CPU)
            assert decoded.dtype == torch.uint8 and decoded.shape == x.shape == (len(y), 3, 32, 32)
            # The CPU resizes with torch's uint8 kernel, the device in float32, rounded: a grey level apart at most.
            assert (decoded.int() - x.int()).abs().max() <= 1
            compared += x.numel()
            differing += (decoded != x).sum().item()
            bias += (decoded.int() - x.int()).sum().item()
            flips += [view.flip for view in encoded.views]
            # What the model gets: both normalised, channels_last, within that grey level.
            a, _ = to_device(x, y, CPU, True, on_cpu.normalise)
            b, _ = to_device(encoded, labels, CPU, True, on_device.normalise)
            assert b.dtype == torch.float32 and b.is_contiguous(memory_format=torch.channels_last)
            assert (a - b).abs().max() <= 1 / 255 / min(IMAGENET_STD) + 1e-6
    assert compared == (10 + 8) * 3 * 32 * 32  # every image: two training batches of 5, and val
    # Rounding apart, not a shift: torch's uint8 kernel, in fixed point, rounds 10-20 % of values the
    # other way (either way), where a truncating or misplaced resize would move nearly all of them.
    assert differing / compared < 0.25 and abs(bias) / compared < 0.02
    assert any(flips) and not all(flips)  # mirrored and not, as drawn
    # The CMYK JPEG and the PNG named .jpg were decoded on the CPU; the log says so once.
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xsweep:")]
    assert len(said) == 1 and said[0].startswith("xsweep: decoding on the CPU: ")
    assert "is a CMYK JPEG, which nvjpeg does not decode" in said[0] or "is a PNG file, not a JPEG" in said[0]


def test_views_come_from_the_loaders_seeded_generator_so_a_resumed_run_draws_them_again(tmp_path):
    write_folder(tmp_path)
    datasets = build_datasets(data_config(tmp_path), seed=0)
    datasets.send_encoded()
    run, _ = make_loaders(datasets, batch_size=4, seed=0, num_workers=1)
    first_epoch = views(run)
    checkpointed = run.generator.get_state()  # what fit saves after an epoch
    assert views(make_loaders(datasets, batch_size=4, seed=0, num_workers=1)[0]) == first_epoch
    assert views(make_loaders(datasets, batch_size=4, seed=1, num_workers=1)[0]) != first_epoch
    resumed = []
    for _ in range(2):
        loader, _ = make_loaders(datasets, batch_size=4, seed=0, num_workers=1)
        loader.generator.set_state(checkpointed)
        resumed.append(views(loader))
    assert resumed[0] == resumed[1] != first_epoch
    # Crops of 8-100 % of the image's area, inside it.
    for (top, left, height, width), _ in first_epoch:
        assert 0 <= top and 0 <= left and top + height <= 96 and left + width <= 96
        assert 0.08 * 96 * 72 * 0.9 <= height * width <= 96 * 72


def test_a_gpu_trial_on_a_png_folder_says_it_decodes_on_the_cpu(tmp_path, capsys):
    write_folder(tmp_path, fmt="PNG")
    datasets = build_datasets(data_config(tmp_path), seed=0)
    assert not datasets.decode_on(torch.device("cuda"))  # no GPU needed: the folder is checked first
    line = capsys.readouterr().err.strip()
    assert line.startswith("xsweep: this trial decodes its images on the CPU: ") and "\n" not in line
    assert ".png is not a JPEG (16 of 16 files are not; the GPU decodes JPEGs only)" in line
    train, _ = make_loaders(datasets, batch_size=4, seed=0)
    x, _ = next(iter(train))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32)  # decoded in the loader, as on a CPU trial
    # A recipe without a GPU path says so; a CPU trial decodes on its CPU without a word.
    resize_crop = build_datasets(data_config(tmp_path, recipe="resize-crop"), seed=0)
    assert not resize_crop.decode_on(torch.device("cuda"))
    assert "data.recipe resize-crop has no GPU path" in capsys.readouterr().err
    assert not datasets.decode_on(CPU) and capsys.readouterr().err == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine decodes on its GPU")
def test_a_gpu_trial_where_torch_has_no_cuda_says_why_it_decodes_on_the_cpu(tmp_path, capsys):
    write_folder(tmp_path)
    datasets = build_datasets(data_config(tmp_path), seed=0)
    assert not datasets.decode_on(torch.device("cuda"))
    said = capsys.readouterr().err
    assert said == "xsweep: this trial decodes its images on the CPU: torch finds no CUDA device here\n"


def test_the_input_pipeline_benchmarks_gpu_section_runs_its_code_on_a_cpu(monkeypatch):
    # What `benchmarks/input_pipeline.py --gpu-only --device cpu --quick` runs: the GPU section must
    # still work the day a GPU is lent.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import input_pipeline

    text = "\n".join(input_pipeline.gpu_section("cpu", True))
    rows = re.findall(r"^\| (\d+) \| (\d+) \| \d+ \|$", text, re.M)
    assert [n for n, _ in rows] == ["1", "2"] and all(int(rate) > 0 for _, rate in rows), text
    assert re.search(r"^- The training process's own part: [\d.]+ ms to decode and cut a batch of 8 ", text, re.M), text
    assert "the target is not judged" in text
