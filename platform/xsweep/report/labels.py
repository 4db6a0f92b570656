"""How factors and their levels read in the report's sentences and tables."""

from __future__ import annotations

from typing import Any

from xsweep.spec.trial import format_value

# The paper's factors first, in this order, then any other searched path.
FACTOR_ORDER = {"model.residual": "residual", "model.activation": "activation", "train.lr": "learning rate"}
_LABELS = {
    ("model.residual", True): "residual on",
    ("model.residual", False): "residual off",
    ("model.activation", "none"): "no activation",
    ("model.activation", "relu"): "ReLU",
    ("model.activation", "elu"): "ELU",
}


def factor_name(path: str) -> str:
    return FACTOR_ORDER.get(path, path.split(".")[-1])


def level_label(path: str, value: Any) -> str:
    """How a level reads in a sentence: 'no activation', 'ReLU', 'residual on', 'width=0.5'."""
    key = (path, value)
    if isinstance(value, (bool, str)) and key in _LABELS:
        return _LABELS[key]
    return f"{factor_name(path)}={format_value(value)}"


def level_key(value: Any) -> tuple:
    """A hashable, type-aware key of a level (True and 1 are different levels)."""
    return (type(value).__name__, value)
