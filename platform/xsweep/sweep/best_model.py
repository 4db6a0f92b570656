"""The sweep's best model in MLflow's registry: the best trial's best checkpoint, registered under
the experiment's name, each version tagged with its sweep and its metric's value.

The alias `best` names the best version of all the sweeps that share the registered model: a sweep
moves it to its own version only when that beats the version holding it on the same metric (or
none holds it, or that one was measured on another metric). A user moves it by hand, in the UI or
with `MlflowClient().set_registered_model_alias(NAME, "best", VERSION)`.

Saved in MLflow's safe format ("pt2": torch.export's graph and weights), which loads without
unpickling any code, so `mlflow.pytorch.load_model("models:/NAME@best")` is safe to call on a
registry others write to. The exported module is for predictions; to fine-tune, build the network
`MODELS.get(arch).build(**model_args)` (both in the model's metadata; for Xception,
`Xception(**model_args)`) and load the trial's checkpoint (`checkpoints/best/state.pt` of the run in
the version's tag xsweep.trial_run_id).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from xsweep.metrics import better
from xsweep.spec.trial import RUN_ID_KEY, resolve_trial_config
from xsweep.tracking.runs import fluent_tracking_to
from xsweep.tracking.tags import (
    TAG_MODEL_BEST_EPOCH,
    TAG_MODEL_METRIC,
    TAG_MODEL_SWEEP,
    TAG_MODEL_TRIAL_RUN_ID,
    TAG_MODEL_VALUE,
)

BEST_ALIAS = "best"
# The batch of the example input torch.export traces with: above 1, so that the exported batch
# dimension stays dynamic (torch.export makes a dimension of size 1 a constant).
EXAMPLE_BATCH = 2


def register_best_model(*, runs, spec, result, value: float, sweep: str) -> dict | None:
    """Log the best trial's best checkpoint (its metric's best `value`) as an MLflow model of sweep
    `sweep`, and give it the alias `best` if it beats the version holding it (claim_best_alias).
    Returns {"version", "alias_kept_by"}; None when no checkpoint was kept (every epoch diverged)."""
    import mlflow
    import mlflow.pytorch
    import torch

    from xsweep.training.checkpoint import model_from_checkpoint
    from xsweep.training.models import arch_of, rebuild_args
    from xsweep.training.trainable import CHECKPOINT_FILE

    if not result.best_checkpoints:  # Tune raises rather than say None
        return None
    checkpoint = result.get_best_checkpoint(spec.search.metric, spec.search.mode)
    config = resolve_trial_config(spec.base_trial_config(), result.config)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint.to_directory(folder)
        model, state = model_from_checkpoint(Path(folder, CHECKPOINT_FILE), config=config)
    model.eval()
    args = rebuild_args(config)
    size = config["data"]["image_size"]
    example = torch.zeros(EXAMPLE_BATCH, args["in_channels"], size, size)
    with fluent_tracking_to(runs.uri), mlflow.start_run(run_id=runs.parent_run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="best_model",
            registered_model_name=spec.experiment,
            serialization_format="pt2",
            input_example=example.numpy(),
            metadata={"arch": arch_of(config).name, "model_args": args},
            # Listing requirements ourselves skips MLflow's slow import-scanning inference.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    version = str(info.registered_model_version)
    client = runs.client
    for key, tag in ((TAG_MODEL_TRIAL_RUN_ID, result.config[RUN_ID_KEY]), (TAG_MODEL_BEST_EPOCH, state["epoch"]),
                     (TAG_MODEL_SWEEP, sweep), (TAG_MODEL_METRIC, spec.search.metric), (TAG_MODEL_VALUE, value)):
        client.set_model_version_tag(spec.experiment, version, key, str(tag))
    kept_by = claim_best_alias(client, spec.experiment, version, metric=spec.search.metric, mode=spec.search.mode,
                               value=value)
    return {"version": version, "alias_kept_by": kept_by}


def claim_best_alias(client, name: str, version: str, *, metric: str, mode: str, value: float) -> dict | None:
    """Point the alias `best` of registered model `name` at `version`, unless the version holding it
    did at least as well on the same metric. Returns that version ({"version", "value", "sweep"})
    when it keeps the alias, else None."""
    from mlflow.exceptions import MlflowException

    try:
        holder = client.get_model_version_by_alias(name, BEST_ALIAS)
    except MlflowException:  # no version holds it yet
        holder = None
    if holder is not None and str(holder.version) != version and holder.tags.get(TAG_MODEL_METRIC) == metric:
        held = float(holder.tags[TAG_MODEL_VALUE])
        if not better(value, held, mode=mode):
            return {"version": str(holder.version), "value": held, "sweep": holder.tags.get(TAG_MODEL_SWEEP, "")}
    client.set_registered_model_alias(name, BEST_ALIAS, version)
    return None
