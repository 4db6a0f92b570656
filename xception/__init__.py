"""Xception (Chollet, CVPR 2017, arXiv:1610.02357) for xsweep's sweeps and ablations."""

from .model import (
    ACTIVATIONS,
    Block,
    PointwiseConv2d,
    SeparableConv2d,
    Xception,
    scale_channels,
    xception,
)

__all__ = [
    "ACTIVATIONS",
    "Block",
    "PointwiseConv2d",
    "SeparableConv2d",
    "Xception",
    "scale_channels",
    "xception",
]
