"""The alias `best` of a registered model several sweeps share (sweep/best_model.py), on a real MLflow
registry: it never moves to a worse version on its own, and every version says which sweep made it."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from xsweep.sweep.best_model import BEST_ALIAS, claim_best_alias
from xsweep.tracking.tags import TAG_MODEL_METRIC, TAG_MODEL_SWEEP, TAG_MODEL_VALUE


def _version(client: MlflowClient, sweep: str, metric: str, value: float) -> str:
    """A version of model 'digits' as register_best_model tags it."""
    version = client.create_model_version("digits", source=f"/models/{sweep}")  # a path: nothing is loaded
    for key, tag in ((TAG_MODEL_SWEEP, sweep), (TAG_MODEL_METRIC, metric), (TAG_MODEL_VALUE, value)):
        client.set_model_version_tag("digits", version.version, key, str(tag))
    return str(version.version)


def _claim(client: MlflowClient, version: str, metric: str, value: float) -> dict | None:
    return claim_best_alias(client, "digits", version, metric=metric, mode="max" if "accuracy" in metric else "min",
                            value=value)


def _holder(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias("digits", BEST_ALIAS).version)


def test_the_best_alias_moves_only_to_a_better_version_of_the_same_metric(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("digits")

    first = _version(client, "digits-a", "val_accuracy", 0.9777)
    assert _claim(client, first, "val_accuracy", 0.9777) is None and _holder(client) == first  # no one held it

    worse = _version(client, "digits-b", "val_accuracy", 0.8496)
    kept = _claim(client, worse, "val_accuracy", 0.8496)
    assert kept == {"version": first, "value": 0.9777, "sweep": "digits-a"} and _holder(client) == first

    tie = _version(client, "digits-c", "val_accuracy", 0.9777)
    assert _claim(client, tie, "val_accuracy", 0.9777) is not None and _holder(client) == first  # equal: it stays

    better = _version(client, "digits-d", "val_accuracy", 0.9811)
    assert _claim(client, better, "val_accuracy", 0.9811) is None and _holder(client) == better

    # Another metric cannot be compared: the sweep that searched it takes the alias.
    other = _version(client, "digits-e", "val_loss", 0.07)
    assert _claim(client, other, "val_loss", 0.07) is None and _holder(client) == other
