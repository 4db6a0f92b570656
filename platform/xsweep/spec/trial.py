"""A trial's config: the spec's base config with the searched values and the repeat's seed applied.

Tune's own config for a trial holds only what varies (dotted paths such as "train.lr") plus
xsweep's bookkeeping under "xsweep/..." keys; this module turns that into the fully resolved
config that `fit` takes and that MLflow stores, and gives the trial its readable name.
"""

from __future__ import annotations

import copy
from typing import Any


REPEAT_KEY = "xsweep/repeat"  # index of the seed repeat: seed = train.seed + index
RUN_ID_KEY = "xsweep/run_id"  # the trial's MLflow run, opened by the searcher before it starts
FIXED_KEY = "xsweep/fixed"  # placeholder dimension for a sweep with an empty search space
PHASE_KEY = "xsweep/phase"  # an ablation's trials: "tune" or "confirm" (search/ablation.py)
VARIANT_KEY = "xsweep/variant"  # ... and the variant's label, e.g. "res=off act=relu"

# Short names for the run name: what a user scans for in a list of 50 runs.
_SHORT = {
    "train.lr": "lr",
    "model.residual": "res",
    "model.activation": "act",
    "model.width": "width",
    "model.middle_blocks": "mid",
    "model.dropout": "drop",
    "train.batch_size": "bs",
    "train.weight_decay": "wd",
    "train.optimizer": "opt",
    "train.momentum": "mom",
}


def set_dotted(config: dict[str, Any], path: str, value: Any) -> None:
    """config["train"]["lr"] = value for path "train.lr" (how trials apply sampled values).

    The sections on the way must exist: a path that misses them is a bug, not a new field.
    """
    *parents, last = path.split(".")
    node = config
    for depth, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            raise KeyError(f"{path}: {'.'.join(parents[:depth + 1])} is not a section of the config")
        node = child
    node[last] = value


def sampled_params(tune_config: dict[str, Any]) -> dict[str, Any]:
    """The searched values of a Tune trial config (dotted paths only, no xsweep bookkeeping)."""
    return {k: v for k, v in tune_config.items() if not k.startswith("xsweep/")}


def resolve_trial_config(base: dict, tune_config: dict[str, Any]) -> dict:
    """The full config `fit` runs: base config, searched values, and the repeat's seed."""
    config = copy.deepcopy(base)
    for path, value in sampled_params(tune_config).items():
        set_dotted(config, path, value)
    config["train"]["seed"] = config["train"]["seed"] + int(tune_config.get(REPEAT_KEY, 0))
    config["data"]["split_seed"] = split_seed(config)
    return config


def split_seed(config: dict) -> int:
    """The seed that draws a trial's validation split: data.split_seed (Spec.base_trial_config
    sets it), or the trial's own seed where that is None or not set."""
    seed = config["data"].get("split_seed")
    return config["train"]["seed"] if seed is None else seed


def format_value(value: Any) -> str:
    """How a searched value reads in run names and reports: on/off, 3 significant digits."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def values_label(values: dict[str, Any]) -> str:
    """e.g. 'lr=0.031 res=on act=none' for {"train.lr": 0.031, ...}, in a fixed order of fields."""
    return " ".join(f"{_SHORT.get(path, path.split('.')[-1])}={format_value(value)}"
                    for path, value in sorted(values.items(), key=lambda kv: _order(kv[0])))


def trial_name(tune_config: dict[str, Any]) -> str:
    """e.g. 'lr=0.031 res=on act=none s0' (s = the seed repeat)."""
    label = values_label(sampled_params(tune_config))
    return f"{label} s{int(tune_config.get(REPEAT_KEY, 0))}".lstrip()


def _order(path: str) -> tuple[int, str]:
    keys = list(_SHORT)
    return (keys.index(path) if path in keys else len(keys), path)
