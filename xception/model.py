"""Xception, built for the sweeps and ablations this project runs.

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017,
arXiv:1610.02357. The defaults build the paper's network exactly, following the Keras
reference layer sequence (``keras/src/applications/xception.py``):

* 36 convolutional layers in 14 modules; no convolution has a bias, every convolution and
  separable convolution is followed by batch norm; separable convolutions are 3x3 "same",
  depthwise (multiplier 1) then pointwise, with nothing in between;
* stem (module 1): conv 32 3x3 s2 valid - BN - ReLU - conv 64 3x3 valid - BN - ReLU;
* blocks 2-4 (entry flow): [ReLU -] sep - BN - ReLU - sep - BN - maxpool 3x3 s2 "same",
  128 / 256 / 728 channels, shortcut conv 1x1 s2 - BN; block 2 starts without a ReLU;
* blocks 5-12 (middle flow, 8x): 3 x (ReLU - sep 728 - BN), identity shortcut;
* block 13: ReLU - sep 728 - BN - ReLU - sep 1024 - BN - maxpool, shortcut conv 1x1 s2 - BN;
* block 14: sep 1536 - BN - ReLU - sep 2048 - BN - ReLU, no shortcut;
* head: global average pool - dropout (0.5, paper section 4) - linear.

At 1000 classes that is 22,855,952 trainable parameters (paper Table 3) plus 54,528 batch-norm
running statistics.

The shortcut of a residual block reads the block input *before* the block's first ReLU: that ReLU
is never in-place. (The well-known porting bug is an in-place ReLU there, which silently feeds the
shortcut a rectified tensor.)

Ablation switches (keyword-only):

* ``residual=False`` drops the shortcut branch of the 12 residual modules (blocks 2-13): their
  1x1 convolutions and batch norms are not built at all (paper Figure 9).
* ``activation`` in {"none", "relu", "elu"} is put between the depthwise and the pointwise step
  of every separable convolution (paper Figure 10; the paper's network uses "none").
* ``width`` scales every channel count (rounded to a multiple of 8, at least 8) and
  ``middle_blocks`` sets the middle-flow depth, for small fast sweeps.

Differences from timm's ``legacy_xception`` (same maths, same parameter count): the dropout
argument always applies (older timm computed it and threw the result away); the depthwise
weights are initialised with their true fan-in (9), not timm's fan-out that counts every channel,
so an ELU between the two steps does not sit in its linear range at init; on CPU the 1x1
pointwise step runs as a GEMM where that is faster, and the depthwise weight gradient of maps
smaller than the kernel is computed directly (see ``fast_conv.py``).
Module names differ (``block2``..``block13`` follow the paper's module numbers, the middle flow is
``middle``), so timm checkpoints need a key mapping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from .fast_conv import DepthwiseConv2d, PointwiseConv2d

__all__ = [
    "ACTIVATIONS",
    "Block",
    "DepthwiseConv2d",
    "PointwiseConv2d",
    "SeparableConv2d",
    "Xception",
    "scale_channels",
    "xception",
]

#: Allowed values of the ``activation`` option (between depthwise and pointwise steps).
ACTIVATIONS = ("none", "relu", "elu")


def _check_activation(activation: object) -> str:
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        allowed = ", ".join(repr(a) for a in ACTIVATIONS)
        raise ValueError(f"activation must be one of {allowed}; got {activation!r}")
    return activation


def _make_activation(activation: str) -> nn.Module:
    # In-place is safe here: it acts on the depthwise output, which nothing else reads, and the
    # backward of a convolution needs only its input and weight, not its output.
    if activation == "relu":
        return nn.ReLU(inplace=True)
    if activation == "elu":
        return nn.ELU(inplace=True)
    return nn.Identity()


def scale_channels(channels: int, width: float) -> int:
    """Channel count ``channels * width`` rounded to a multiple of 8, at least 8.

    Every channel count of the paper's network is already a multiple of 8 (728 = 91 * 8), so
    ``width=1.0`` returns it unchanged.
    """
    return max(8, int(round(channels * width / 8.0)) * 8)


class SeparableConv2d(nn.Module):
    """Depthwise separable convolution: depthwise k x k (multiplier 1) then pointwise 1x1.

    No biases: every separable convolution in Xception is followed by batch norm, which makes a
    bias redundant. ``activation`` sits between the two steps (paper Figure 10 ablation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        activation: str = "none",
    ) -> None:
        super().__init__()
        activation = _check_activation(activation)
        # A grouped nn.Conv2d, as timm's; padding=None is "same" for odd kernels at stride 1.
        self.depthwise = DepthwiseConv2d(in_channels, kernel_size, stride=stride, padding=padding)
        self.act = _make_activation(activation)
        self.pointwise = PointwiseConv2d(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.act(self.depthwise(x)))


class Block(nn.Module):
    """One Xception module: a main path of separable convolutions plus an optional shortcut.

    Main path: for each entry of ``channels`` -- ReLU (the first one only if
    ``start_with_relu``) - SeparableConv2d - BN; then maxpool 3x3 / ``stride`` "same" when
    ``stride > 1``. Shortcut (if ``residual``): 1x1 conv with ``stride`` - BN when the shape
    changes, identity otherwise. There is no ReLU after the addition (the next block starts with
    one), as in the reference.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        *,
        stride: int = 1,
        start_with_relu: bool = True,
        residual: bool = True,
        activation: str = "none",
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("a Block needs at least one separable convolution")
        out_channels = channels[-1]
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(channels):
            if i == 0:
                if start_with_relu:
                    # NOT in-place: the shortcut reads the unrectified block input.
                    layers.append(nn.ReLU(inplace=False))
            else:
                # In-place is safe: it rectifies a BN output nothing else reads (BN's backward
                # needs its input, not its output), and saves one activation-sized buffer.
                layers.append(nn.ReLU(inplace=True))
            layers.append(SeparableConv2d(c_in, c_out, 3, activation=activation))
            layers.append(nn.BatchNorm2d(c_out))
            c_in = c_out
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.rep = nn.Sequential(*layers)

        self.shortcut: nn.Module | None
        if not residual:
            # The ablation builds no shortcut at all: no parameters, no extra compute.
            self.shortcut = None
        elif in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            # A module (not a bare ``inp``) so hooks can see what the shortcut reads.
            self.shortcut = nn.Identity()

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.rep(inp)
        if self.shortcut is not None:
            # In-place add into ``x`` (a BN or maxpool output that neither backward needs), never
            # into ``inp``: saves one allocation per block.
            x += self.shortcut(inp)
        return x


class Xception(nn.Module):
    """Xception (Chollet, CVPR 2017, arXiv:1610.02357); defaults build the paper's network.

    Args:
        num_classes: outputs of the final linear layer.
        in_channels: input image channels (1 for grey, 3 for RGB).
        residual: keep the linear residual connections of modules 2-13 (paper Figure 9).
        activation: "none" (paper), "relu" or "elu" between depthwise and pointwise steps of
            every separable convolution (paper Figure 10).
        width: channel multiplier; each count is rounded to a multiple of 8, at least 8.
        middle_blocks: number of middle-flow modules (paper: 8).
        dropout: dropout probability before the final linear layer (paper: 0.5).

    Inputs are N x in_channels x H x W with H, W >= 32 (299 in the paper); NCHW and
    channels_last both work.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        residual: bool = True,
        activation: str = "none",
        width: float = 1.0,
        middle_blocks: int = 8,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("in_channels", in_channels)
        if not isinstance(residual, bool):
            raise ValueError(f"residual must be True or False; got {residual!r}")
        activation = _check_activation(activation)
        if (
            isinstance(width, bool)
            or not isinstance(width, (int, float))
            or not math.isfinite(width)
            or width <= 0
        ):
            raise ValueError(f"width must be a finite number > 0; got {width!r}")
        if isinstance(middle_blocks, bool) or not isinstance(middle_blocks, int) or middle_blocks < 0:
            raise ValueError(f"middle_blocks must be an integer >= 0; got {middle_blocks!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0.0 <= dropout < 1.0
        ):
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}")

        self.num_classes = num_classes
        self.in_channels = in_channels
        self.residual = residual
        self.activation = activation
        self.width = float(width)
        self.middle_blocks = middle_blocks
        self.drop_rate = float(dropout)

        def ch(c: int) -> int:
            return scale_channels(c, width)

        block_kw = dict(residual=residual, activation=activation)

        # Module 1, the stem: two valid (unpadded) convolutions, as in the reference.
        self.conv1 = nn.Conv2d(in_channels, ch(32), 3, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(ch(32))
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(ch(32), ch(64), 3, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(ch(64))
        self.act2 = nn.ReLU(inplace=True)

        # Entry flow, modules 2-4. Module 2 starts without a ReLU: the stem already ended in one.
        self.block2 = Block(ch(64), [ch(128)] * 2, stride=2, start_with_relu=False, **block_kw)
        self.block3 = Block(ch(128), [ch(256)] * 2, stride=2, **block_kw)
        self.block4 = Block(ch(256), [ch(728)] * 2, stride=2, **block_kw)

        # Middle flow, modules 5-12 (paper: 8 of them).
        self.middle = nn.Sequential(
            *(Block(ch(728), [ch(728)] * 3, **block_kw) for _ in range(middle_blocks))
        )

        # Exit flow. Module 13 is 728 -> 728 -> 1024 (the seed sketch's 1024 -> 1024 is wrong).
        self.block13 = Block(ch(728), [ch(728), ch(1024)], stride=2, **block_kw)
        # Module 14: no residual connection, ends in a ReLU. In-place ReLUs rectify BN outputs.
        self.num_features = ch(2048)
        self.block14 = nn.Sequential(
            SeparableConv2d(ch(1024), ch(1536), 3, activation=activation),
            nn.BatchNorm2d(ch(1536)),
            nn.ReLU(inplace=True),
            SeparableConv2d(ch(1536), self.num_features, 3, activation=activation),
            nn.BatchNorm2d(self.num_features),
            nn.ReLU(inplace=True),
        )

        # Head: global average pool - dropout - linear (logistic regression), no extra FC.
        self.drop = nn.Dropout(self.drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m.groups > 1 and m.groups == m.in_channels:
                    # Depthwise: fan-in is k*k (torch's fan_out would count every channel and
                    # shrink these weights by sqrt(C), leaving an ELU between the steps linear).
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # nn.Linear keeps PyTorch's default initialisation.

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.block2(x)
        x = self.block3(x)
        x = self.block4(x)
        x = self.middle(x)
        x = self.block13(x)
        return self.block14(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))  # global average pool; works for NCHW and channels_last alike
        x = self.drop(x)  # applied (and its result used) in train mode
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, in_channels={self.in_channels}, "
            f"residual={self.residual}, activation={self.activation!r}, width={self.width}, "
            f"middle_blocks={self.middle_blocks}, dropout={self.drop_rate}"
        )


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def xception(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> Xception:
    """Build an Xception; keyword options as :class:`Xception` (timm-style builder)."""
    return Xception(num_classes, in_channels, **kwargs)
