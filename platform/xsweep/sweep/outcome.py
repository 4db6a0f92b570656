"""The end of a sweep: counts per status, the best trial, the registered best model, the printout."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

from xsweep.tracking.runs import TAG_STATUS, set_tags
from xsweep.tracking.callback import trial_status
from xsweep.spec.trial import RUN_ID_KEY, resolve_trial_config, sampled_params, trial_name

BEST_ALIAS = "best"


def _best(results, spec):
    """The trial with the best value of the metric at any epoch (the one its best checkpoint holds)."""
    metric, sign = spec.search.metric, (1 if spec.search.mode == "max" else -1)
    best, best_value = None, None
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or metric not in frame:
            continue
        values = [v for v in frame[metric].tolist() if isinstance(v, float) and math.isfinite(v)]
        if not values:
            continue
        value = max(values) if sign > 0 else min(values)
        if best_value is None or sign * value > sign * best_value:
            best, best_value = result, value
    return best, best_value


def register_best_model(*, client, runs, spec, result) -> str | None:
    """Log the best trial's best checkpoint as an MLflow model, registered with alias `best`."""
    import mlflow
    import mlflow.pytorch
    import torch

    import xception
    from xsweep.training.checkpoint import load_checkpoint
    from xsweep.training.sources import dataset_shape
    from xsweep.training.fit import build_model
    from xsweep.training.trainable import CHECKPOINT_FILE

    if not result.best_checkpoints:  # e.g. every epoch diverged (Tune raises rather than say None)
        return None
    checkpoint = result.get_best_checkpoint(spec.search.metric, spec.search.mode)
    config = resolve_trial_config(spec.base_trial_config(), result.config)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint.to_directory(folder)
        state = load_checkpoint(Path(folder, CHECKPOINT_FILE))
    num_classes, in_channels = dataset_shape(config["data"])
    model = build_model(config, num_classes=num_classes, in_channels=in_channels)
    model.load_state_dict(state["model"])
    model.eval()
    mlflow.set_tracking_uri(runs.uri)
    with mlflow.start_run(run_id=runs.parent_run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="best_model",
            registered_model_name=spec.experiment,
            # A pickled nn.Module (the xception package travels with it) loads back as a model
            # one can fine-tune, not only run.
            serialization_format="pickle",
            # Listing requirements ourselves skips MLflow's slow import-scanning inference.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            code_paths=[str(Path(xception.__file__).parent)],
        )
    version = info.registered_model_version
    client.set_registered_model_alias(spec.experiment, BEST_ALIAS, version)
    client.set_model_version_tag(spec.experiment, version, "xsweep.trial_run_id", result.config[RUN_ID_KEY])
    client.set_model_version_tag(spec.experiment, version, "xsweep.best_epoch", str(state["epoch"]))
    return str(version)


def finish_sweep(results, spec, *, runs, sweep_path: str, interrupted: bool = False):
    from xsweep.sweep.run import SweepOutcome

    client = runs.client
    outcome = SweepOutcome(sweep_path=sweep_path, parent_run_id=runs.parent_run_id, experiment=spec.experiment)
    if results is None:
        outcome.interrupted = True
    else:
        statuses = [trial_status(r.metrics, epochs=spec.train.epochs, errored=r.error is not None)
                    for r in results]
        outcome.counts = dict(Counter(statuses))
        # Tune returns normally after Ctrl-C too, with the trials it stopped TERMINATED like
        # finished ones (hence `interrupted`, see interrupt.py) and those not started PENDING.
        finished = results.num_terminated + results.num_errors
        outcome.interrupted = (interrupted or finished < len(results)
                               or len(results) < spec.total_trials())
        if not outcome.interrupted:
            orphans = runs.delete_orphans({r.config.get(RUN_ID_KEY) for r in results})
            if orphans:
                print(f"MLflow: deleted {len(orphans)} child run(s) no trial owns, opened just before a "
                      f"killed driver's last saved state (restorable: mlflow runs restore --run-id ID): "
                      f"{', '.join(orphans)}")
        best, value = _best(results, spec)
        if best is not None:
            outcome.best = {
                "trial_id": best.metrics.get("trial_id"),
                "run_id": best.config.get(RUN_ID_KEY),
                "name": trial_name(best.config),
                "metric": spec.search.metric,
                "value": value,
                "searched": sampled_params(best.config),
                "config": resolve_trial_config(spec.base_trial_config(), best.config),
            }
            if not outcome.interrupted:  # the registry's `best` is that of a whole sweep
                outcome.best["model_version"] = register_best_model(client=client, runs=runs, spec=spec,
                                                                    result=best)

    tags = {TAG_STATUS: "interrupted" if outcome.interrupted else "finished"}
    tags.update({f"xsweep.trials.{status}": n for status, n in outcome.counts.items()})
    if outcome.best:
        tags.update({"xsweep.best_trial_id": outcome.best["trial_id"], "xsweep.best_run_id": outcome.best["run_id"],
                     "xsweep.best_trial_name": outcome.best["name"]})
        client.log_metric(runs.parent_run_id, f"best_{spec.search.metric}", outcome.best["value"])
    set_tags(client, runs.parent_run_id, tags)
    if outcome.interrupted:
        status = "KILLED"
    else:
        status = "FINISHED" if outcome.exit_code == 0 else "FAILED"
    client.set_terminated(runs.parent_run_id, status=status)
    print_summary(outcome)
    return outcome


def print_summary(outcome) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) or "no trials"
    print(f"\nsweep {'interrupted' if outcome.interrupted else 'finished'}: {counts}")
    if outcome.best:
        b = outcome.best
        print(f"best trial: {b['name']}  {b['metric']} = {b['value']:.4f}  (trial {b['trial_id']}, run {b['run_id']})")
        for path, value in sorted(b["searched"].items()):
            print(f"  {path} = {value}")
        if b.get("model_version"):
            print(f"  registered model '{outcome.experiment}' version {b['model_version']} (alias {BEST_ALIAS})")
    print(f"results:    {outcome.sweep_path}")
    print(f"MLflow:     experiment '{outcome.experiment}', parent run {outcome.parent_run_id}  (make ui)")
    if outcome.best:
        print(f"reproduce:  xsweep reproduce --experiment {outcome.experiment}")
    if outcome.interrupted:
        print(f"resume:     xsweep resume {outcome.sweep_path}")
