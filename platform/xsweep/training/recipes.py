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
# A recipe recorded before recipes existed (a trial config without data.recipe) ran this one.
BEFORE_RECIPES = "resize-crop"


@dataclass(frozen=True)
class Recipe:
    name: str
    # (image_size, augment) -> (training transform, evaluation transform)
    build: Callable[[int, bool], tuple]


def _normalise():
    from torchvision import transforms

    return [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def _inception(size: int, augment: bool):
    """The paper's ImageNet recipe (Inception's): a random crop of 8-100 % of the image's area at a
    random aspect ratio, resized to `size`, and a horizontal flip; evaluation resizes the short
    side to size / 0.875 and takes the centre."""
    from torchvision import transforms

    val = transforms.Compose([transforms.Resize(round(size / CENTRE_CROP_FRACTION)), transforms.CenterCrop(size),
                              *_normalise()])
    if not augment:
        return val, val
    train = transforms.Compose([transforms.RandomResizedCrop(size, scale=(0.08, 1.0)),
                                transforms.RandomHorizontalFlip(), *_normalise()])
    return train, val


def _resize_crop(size: int, augment: bool):
    """Resize and centre-crop to `size`, then (training) a crop padded by 1/8 of the side and a
    flip: the CIFAR recipe, for small images where a crop of 8 % of the area leaves nothing."""
    from torchvision import transforms

    val = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), *_normalise()])
    if not augment:
        return val, val
    pad = max(1, round(size / 8))
    train = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                                transforms.RandomCrop(size, padding=pad), transforms.RandomHorizontalFlip(),
                                *_normalise()])
    return train, val


RECIPES: Registry[Recipe] = Registry("image recipe")
RECIPES.add(Recipe("inception", _inception))
RECIPES.add(Recipe(BEFORE_RECIPES, _resize_crop))
