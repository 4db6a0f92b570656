"""The networks a spec's `model.arch` may name: one registry entry each, in timm's shape (a name,
a builder, what it reads).

An entry tells, without importing torch (the spec reads it before any trial starts):
- `builder`: the function that builds it, named as "module:function" because it imports torch:
  `(*, num_classes, in_channels, **fields) -> nn.Module`,
- `fields`: the `model.*` fields it reads (a field only another network reads is refused in a spec
  that trains this one, and left out of its resolved spec),
- `min_image_size`: the smallest `data.image_size` it takes,
- `paper`: its ImageNet figures in the paper (docs/PAPER.md, Tables 1 and 3), for the report.

Adding a network is one `MODELS.add(Arch(...))` here plus its builder and its test.
"""

from __future__ import annotations

from dataclasses import dataclass

from xsweep.registry import Registry, import_object
from xsweep.training.datasets import dataset_of


@dataclass(frozen=True)
class Arch:
    name: str
    builder: str  # "module:function", imported in the trial process only
    fields: tuple[str, ...]
    min_image_size: int
    paper: str

    def args(self, model: dict, *, num_classes: int, in_channels: int) -> dict:
        """The builder's keyword arguments for a trial's `model` config: all it takes to rebuild it."""
        return dict(num_classes=num_classes, in_channels=in_channels, **{name: model[name] for name in self.fields})

    def build(self, **args):
        return import_object(self.builder)(**args)


MODELS: Registry[Arch] = Registry("model")
DEFAULT_ARCH = "xception"  # what a trial config without model.arch trains (its resolved spec leaves it out)
# Xception downsamples 32x before global pooling: 32x32 is the smallest image that leaves a pixel.
MODELS.add(Arch("xception", builder="xception.model:Xception",
                fields=("residual", "activation", "width", "middle_blocks", "dropout"), min_image_size=32,
                paper="Xception: 0.790 top-1 / 0.945 top-5 on ImageNet, 22,855,952 parameters"))
# The paper's rival at about the same parameter count, as torchvision builds it (xception/inception_v3.py).
MODELS.add(Arch("inception_v3", builder="xception.inception_v3:inception_v3", fields=("dropout",),
                min_image_size=75,
                paper="Inception V3: 0.782 top-1 / 0.941 top-5 on ImageNet, 23,626,728 parameters"))


def arch_of(config: dict) -> Arch:
    """The network a trial's config trains."""
    return MODELS.get(config["model"].get("arch", DEFAULT_ARCH))


def model_args(config: dict, *, num_classes: int, in_channels: int) -> dict:
    """The keyword arguments of the builder of a trial's network, for its config."""
    return arch_of(config).args(config["model"], num_classes=num_classes, in_channels=in_channels)


def rebuild_args(config: dict) -> dict:
    """model_args with the classes and channels of the trial's data config (datasets.py, without
    loading the data): what rebuilds its network away from the data, e.g. from a checkpoint."""
    data = config["data"]
    num_classes, in_channels = dataset_of(data).shape(data, check=False)
    return model_args(config, num_classes=num_classes, in_channels=in_channels)


def build_model(config: dict, *, num_classes: int, in_channels: int):
    """A trial's network, freshly initialised (seed torch first for a repeatable one)."""
    return arch_of(config).build(**model_args(config, num_classes=num_classes, in_channels=in_channels))
