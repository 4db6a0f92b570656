"""How an image folder's images become training and evaluation tensors: one registry entry per
recipe, named by `data.recipe` (image folders only: in-memory data sets are padded, cropped and
flipped a whole batch at a time, loaders.py). torchvision is imported inside the builders: the
spec checker reads this table and must stay instant.

Adding a recipe is one `RECIPES.add(Recipe(...))` plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xsweep.registry import Registry

# ImageNet statistics for image folders: computing our own would mean reading every image twice.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Evaluation resizes to size / 0.875 before the centre crop: 256 for 224, 342 for 299.
CENTRE_CROP_FRACTION = 0.875
# Inception's training crop: 8-100 % of the image's area, at an aspect ratio of 3/4 to 4/3.
INCEPTION_SCALE = (0.08, 1.0)
INCEPTION_RATIO = (3 / 4, 4 / 3)
# A recipe recorded before recipes existed (a trial config without data.recipe) ran this one.
BEFORE_RECIPES = "resize-crop"


@dataclass(frozen=True)
class Recipe:
    name: str
    # (image_size, augment) -> (training transform, evaluation transform), each from what `decode`
    # returns to a uint8 C x H x W tensor; normalisation happens after the copy to the device
    # (Normalise), so loader processes never touch floats and send a quarter of the bytes.
    build: Callable[[int, bool], tuple]
    decode: Callable[[str], object]  # an image file's path -> what the transforms take
    # (image_size, augment) -> (training, evaluation) transforms of a device_decode.EncodedImage, for
    # a trial that decodes on its GPU: loader processes draw each image's view, the GPU makes it
    # (device_decode.py). None: this recipe decodes on the CPU only.
    device_views: Callable[[int, bool], tuple] | None = None


def decode_rgb(path: str):
    """An image file as a uint8 3 x H x W tensor (libjpeg-turbo or libpng, like PIL, without the PIL image)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    return decode_image(read_file(path), mode=ImageReadMode.RGB)


def open_rgb(path: str):
    """An image file as an RGB PIL image: torchvision's own ImageFolder loader."""
    from torchvision.datasets.folder import pil_loader

    return pil_loader(path)


class Normalise:
    """(x / 255 - mean) / std of a uint8 image or batch, on whatever device it is: ToTensor and
    Normalize's arithmetic, in their order."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean, self.std = mean, std
        self._on: dict = {}  # device -> (mean, std) tensors

    def __call__(self, x):
        import torch

        if x.device not in self._on:
            shape = (-1, 1, 1)  # C x 1 x 1: broadcasts over one image and over a batch
            self._on[x.device] = (torch.tensor(self.mean, device=x.device).view(shape),
                                  torch.tensor(self.std, device=x.device).view(shape))
        mean, std = self._on[x.device]
        return (x.float() / 255 - mean) / std


def draw_inception_view(height: int, width: int) -> tuple[tuple[int, int, int, int], bool]:
    """The random part of the paper's training view of a height x width image: a crop (top, left,
    height, width) of 8-100 % of its area at an aspect ratio of 3/4 to 4/3, and whether to mirror it,
    drawn from torch's RNG as torchvision's RandomResizedCrop and RandomHorizontalFlip draw them. In a
    loader process that RNG is seeded from the loader's generator, which fit checkpoints. The CPU and
    the GPU path both draw here, so the same seed gives both the same views."""
    import torch
    from torchvision.transforms import RandomResizedCrop

    # get_params reads nothing of the image but its size: a tensor on the meta device has one, and
    # no memory, so a loader process that has read only the file's header can draw.
    crop = RandomResizedCrop.get_params(torch.empty(0, height, width, device="meta"), list(INCEPTION_SCALE),
                                        list(INCEPTION_RATIO))
    return crop, bool(torch.rand(1) < 0.5)


class InceptionCrop:
    """The paper's training view of a uint8 C x H x W tensor on the CPU: the drawn crop resized to
    size x size (bilinear, antialiased, torch's uint8 kernel), mirrored when drawn so."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        from torchvision.transforms.v2 import functional as F

        (top, left, height, width), flip = draw_inception_view(*image.shape[-2:])
        view = F.resized_crop(image, top, left, height, width, [self.size, self.size], antialias=True)
        return F.horizontal_flip(view) if flip else view


def _inception(size: int, augment: bool):
    """The paper's ImageNet recipe (Inception's): a random crop of 8-100 % of the image's area at a
    random aspect ratio, resized to `size`, and a horizontal flip; evaluation resizes the short
    side to size / 0.875 and takes the centre. On uint8 tensors: torch's vectorised uint8 resize
    takes about a third of PIL's time (benchmarks/input_pipeline.py)."""
    from torchvision.transforms import v2

    val = v2.Compose([v2.Resize(round(size / CENTRE_CROP_FRACTION), antialias=True), v2.CenterCrop(size)])
    return (InceptionCrop(size) if augment else val), val


def _inception_device_views(size: int, augment: bool):
    """The same two views for a trial that decodes on its GPU: loader processes draw the training
    crop and flip (draw_inception_view, from the file's header), the GPU cuts them."""
    from xsweep.training.device_decode import DrawView

    val = DrawView(size, short_side=round(size / CENTRE_CROP_FRACTION))
    return (DrawView(size, draw=draw_inception_view) if augment else val), val


def _resize_crop(size: int, augment: bool):
    """Resize and centre-crop to `size`, then (training) a crop padded by 1/8 of the side and a
    flip: the CIFAR recipe, for small images where a crop of 8 % of the area leaves nothing."""
    from torchvision import transforms

    to_tensor = transforms.PILToTensor()
    val = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), to_tensor])
    if not augment:
        return val, val
    pad = max(1, round(size / 8))
    train = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                                transforms.RandomCrop(size, padding=pad), transforms.RandomHorizontalFlip(),
                                to_tensor])
    return train, val


RECIPES: Registry[Recipe] = Registry("image recipe")
RECIPES.add(Recipe("inception", _inception, decode=decode_rgb, device_views=_inception_device_views))
RECIPES.add(Recipe(BEFORE_RECIPES, _resize_crop, decode=open_rgb))
