"""An image folder's JPEGs decoded on the trial's GPU.

Loader processes only read each file's bytes and draw its view (the recipe's random crop and flip)
from their seeded RNG, knowing the image's size from its header alone; the training process decodes
the whole batch in one nvjpeg call (torchvision.io.decode_jpeg on the device) and cuts, resizes and
mirrors each image there (`EncodedBatch.decode`, which fit.to_device calls). A loader process
decodes a few hundred JPEGs a second at ImageNet's sizes; nvjpeg, in one batched call on an H200,
about fourteen thousand (benchmarks/input_pipeline.py, gpu_check.py).

What comes out is the uint8 N x 3 x S x S batch the CPU recipe's loader processes make of the same
draws, so that normalising follows as for theirs (recipes.Normalise): within a grey level when the
device is a CPU (the resize runs in float32 and is rounded, as torchvision resizes a uint8 image on a
GPU; torch's CPU uint8 kernel rounds its own way); nvjpeg's chroma upsampling moves 4:2:0 and
progressive JPEGs by up to 12 grey levels more (benchmarks/results/input_pipeline_gpu.md).

What falls back to the CPU, said once on the trial's stderr:
- the whole trial (loaders.Datasets.decode_on): a recipe without a GPU path, a folder holding files
  other than JPEGs, a torchvision that cannot decode on the device; its loader processes then decode
  as on a CPU trial, and only normalising runs on the GPU;
- one image (`EncodedBatch.decode`): a file whose header says nvjpeg cannot take it (a CMYK JPEG, a
  PNG named .jpg), or one that nvjpeg refuses: the training process decodes it on its CPU, and the
  GPU cuts it like the others.
"""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

# What nvjpeg decodes, by file name (ImageFolder also loads PNG, BMP, TIFF, WebP, ...).
JPEG_SUFFIXES = (".jpg", ".jpeg")
# The colour modes of a JPEG, as PIL names them from its header, that nvjpeg decodes to RGB: YCbCr
# (PIL's "RGB") and grayscale. CMYK and YCCK JPEGs decode on the CPU.
NVJPEG_MODES = ("RGB", "L")

_said: set[str] = set()  # the fallbacks this process has reported: one line each, not one per image


def say_once(kind: str, line: str) -> None:
    """One line on stderr (the trial's log) the first time this process meets `kind`."""
    if kind not in _said:
        _said.add(kind)
        print(f"xsweep: {line}", file=sys.stderr, flush=True)


@dataclass
class View:
    """What the model sees of one image file, drawn in a loader process: its `crop` (top, left,
    height, width) resized to size x size (training), or, without a crop, the image resized so that
    its short side is `short_side` and the centre size x size taken (evaluation); mirrored if `flip`."""

    size: int
    crop: tuple[int, int, int, int] | None = None
    short_side: int | None = None
    flip: bool = False


@dataclass
class EncodedImage:
    """One image file as a loader process holds it: its bytes, what its header says, and its view."""

    data: torch.Tensor  # the file's bytes, uint8, 1-D
    path: str
    height: int
    width: int
    cpu_reason: str | None  # why nvjpeg cannot decode it, from its header; None: it can
    view: View | None = None


def read_encoded(path: str) -> EncodedImage:
    """The ImageFolder loader of device decoding: the file's bytes, and its size and kind from its
    header (PIL's open reads the header; the pixels stay encoded)."""
    from PIL import Image

    raw = bytearray(Path(path).read_bytes())
    with Image.open(io.BytesIO(raw)) as header:
        (width, height), kind, mode = header.size, header.format, header.mode
    if kind != "JPEG":
        reason = f"{path} is a {kind} file, not a JPEG"
    elif mode not in NVJPEG_MODES:
        reason = f"{path} is a {mode} JPEG, which nvjpeg does not decode"
    else:
        reason = None
    return EncodedImage(torch.frombuffer(raw, dtype=torch.uint8), path, height, width, reason)


@dataclass(frozen=True)
class DrawView:
    """A loader process's transform of an EncodedImage: it draws the image's training view with
    `draw` ((height, width) -> (crop, flip), from the process's seeded RNG: recipes.Recipe.device_views),
    or, without one, gives it the evaluation view (the centre, after resizing to `short_side`)."""

    size: int
    draw: Callable[[int, int], tuple] | None = None
    short_side: int | None = None

    def __call__(self, image: EncodedImage) -> EncodedImage:
        if self.draw is None:
            image.view = View(self.size, short_side=self.short_side)
        else:
            crop, flip = self.draw(image.height, image.width)
            image.view = View(self.size, crop=tuple(crop), flip=flip)
        return image


@dataclass
class EncodedBatch:
    """A batch of image files as a loader process sends it: every file's bytes in one tensor (one
    shared-memory block for the batch, not one per image), and each image's path, header verdict and
    view. `decode(device)` makes the uint8 image batch on the device."""

    data: torch.Tensor
    ends: list[int]  # where each file's bytes end in `data`
    paths: list[str]
    cpu_reasons: list[str | None]
    views: list[View]

    @classmethod
    def of(cls, images: list[EncodedImage]) -> EncodedBatch:
        data = torch.cat([image.data for image in images])
        ends = list(itertools.accumulate(len(image.data) for image in images))
        return cls(data, ends, [image.path for image in images], [image.cpu_reason for image in images],
                   [image.view for image in images])

    def __len__(self) -> int:
        return len(self.ends)

    def files(self) -> list[torch.Tensor]:
        """Each file's bytes: views into `data`."""
        return [self.data[start:end] for start, end in zip([0, *self.ends[:-1]], self.ends)]

    def decode(self, device: torch.device) -> torch.Tensor:
        """The uint8 N x 3 x S x S batch on `device` (nvjpeg on a GPU; on a CPU, torchvision's
        libjpeg-turbo decoder in the same call): each file decoded, cut to its view and mirrored there."""
        device = torch.device(device)
        files = self.files()
        images: list[torch.Tensor | None] = [None] * len(files)
        jpegs = [i for i, reason in enumerate(self.cpu_reasons) if reason is None]
        for i, image in zip(jpegs, decode_jpegs([files[i] for i in jpegs], [self.paths[i] for i in jpegs], device)):
            images[i] = image
        for i, image in enumerate(images):
            if image is None:
                if self.cpu_reasons[i] is not None:
                    say_once("header", f"decoding on the CPU: {self.cpu_reasons[i]} (and any other such file, "
                                       f"without another line)")
                images[i] = decode_on_cpu(files[i]).to(device, non_blocking=True)
        size = self.views[0].size
        # Cut in float32 into one float batch, rounded to uint8 at once: two kernels for the batch
        # rather than two per image.
        out = torch.empty(len(files), 3, size, size, device=device)
        for i, (image, view) in enumerate(zip(images, self.views)):
            cut = cut_view(image, view)
            out[i] = cut.flip(-1) if view.flip else cut
        return out.round_().to(torch.uint8)


def decode_jpegs(files: list[torch.Tensor], paths: list[str], device: torch.device) -> list[torch.Tensor | None]:
    """RGB uint8 images of JPEG `files` on `device`, decoded in one batched call; where that call
    fails, each file alone, and None for a file that fails alone too (said once: decode on the CPU)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not files:
        return []
    try:
        return decode_jpeg(files, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # one file the decoder refuses fails the whole call: find which
        pass
    decoded = []
    for data, path in zip(files, paths):
        try:
            decoded.append(decode_jpeg([data], mode=ImageReadMode.RGB, device=device)[0])
        except RuntimeError as e:
            say_once("decoder", f"decoding on the CPU: the device's JPEG decoder failed on {path} ({headline(e)}; "
                                f"any other file it fails on is decoded on the CPU without another line)")
            decoded.append(None)
    return decoded


def decode_on_cpu(data: torch.Tensor) -> torch.Tensor:
    """An image file's bytes (any format ImageFolder loads) as an RGB uint8 tensor, as the CPU recipe decodes."""
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(data, mode=ImageReadMode.RGB)


def cut_view(image: torch.Tensor, view: View) -> torch.Tensor:
    """`view` of a uint8 3 x H x W image, as float32 3 x S x S in [0, 255] (not yet rounded), on the
    image's device: the recipe's resize (bilinear, antialiased), computed as torchvision computes it
    for a uint8 image on a GPU."""
    from torchvision.transforms.v2 import functional as F

    if view.crop is not None:
        top, left, height, width = view.crop
        crop = image[None, :, top:top + height, left:left + width].float()
        # The interpolation torchvision's resize runs on a float image, called directly: a training
        # batch makes hundreds of these calls a step, and its dispatch would double their host time.
        return torch.nn.functional.interpolate(crop, size=(view.size, view.size), mode="bilinear",
                                               align_corners=False, antialias=True)[0]
    return F.center_crop(F.resize(image.float(), [view.short_side], antialias=True), [view.size, view.size])


def collate_encoded(items: list[tuple[EncodedImage, int]]) -> tuple[EncodedBatch, torch.Tensor]:
    """The DataLoader's collate_fn for (EncodedImage, class) items: (EncodedBatch, labels)."""
    images, labels = zip(*items)
    return EncodedBatch.of(list(images)), torch.tensor(labels)


def not_jpegs(paths: list[str]) -> list[str]:
    """The paths that do not name a JPEG file."""
    return [p for p in paths if not p.lower().endswith(JPEG_SUFFIXES)]


def device_decoder_problem(device: torch.device) -> str | None:
    """Why torchvision cannot decode JPEGs on `device` (a build without nvjpeg, say), found by
    decoding a tiny one there (which also starts nvjpeg before the first batch); None: it can."""
    import torchvision
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

    if device.type == "cuda" and not torch.cuda.is_available():
        return "torch finds no CUDA device here"
    probe = encode_jpeg(torch.zeros(3, 16, 16, dtype=torch.uint8))
    try:
        decode_jpeg([probe], mode=ImageReadMode.RGB, device=device)
    except (RuntimeError, ValueError) as e:
        return f"torchvision {torchvision.__version__} cannot decode JPEGs on {device} ({headline(e)})"
    return None


def headline(error: Exception) -> str:
    """An error's message without the C++ location and stack torch appends to it, for one line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split("[", 1)[0].strip()[:200]
