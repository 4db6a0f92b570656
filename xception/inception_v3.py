"""Inception V3 (Szegedy et al., CVPR 2016), the network the Xception paper compares against at
about the same parameter count (23.6M against 22.9M, Table 3): torchvision's, randomly initialised.

As the Xception paper trains both: no auxiliary tower (its loss would be an extra signal Xception
does not get), dropout before the classifier. Any number of input channels (torchvision's stem
takes 3), inputs of 75x75 or more (its stem and reductions leave nothing to pool below).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import Inception3

__all__ = ["inception_v3"]

STEM_CHANNELS = 32  # torchvision's first convolution: 3x3, stride 2, no bias, then batch norm


def inception_v3(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> Inception3:
    model = Inception3(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True,
                       dropout=dropout)
    if in_channels != 3:
        model.Conv2d_1a_3x3.conv = nn.Conv2d(in_channels, STEM_CHANNELS, kernel_size=3, stride=2, bias=False)
    return model
