"""Xception (Chollet, CVPR 2017, arXiv:1610.02357) for xsweep's sweeps and ablations."""

from .model import *  # noqa: F401,F403 - the public names are model.__all__
from .model import __all__  # noqa: F401
