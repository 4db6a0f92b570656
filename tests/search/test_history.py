"""xsweep.search.history: which past trials an extended or warm-started sweep takes as its searcher's
evidence, read from a real MLflow store (sqlite), with a real Optuna study."""

from __future__ import annotations

import copy
import json

from mlflow.tracking import MlflowClient

from xsweep.spec import load_spec_text
from xsweep.search.history import gather
from xsweep.search.searcher import build_searcher, optuna_space

SPEC = """
name: t
train: {{epochs: 2}}
model: {{width: 0.125}}
search:
  num_samples: 10
  space:
    train.lr: {{loguniform: [0.01, 0.2]}}
    model.residual: {{choice: [true, false]}}
{extra}
"""


def _spec(extra: str = ""):
    return load_spec_text(SPEC.format(extra=extra), source="s.yaml")


def _trial_run(client, experiment_id, spec, *, lr, residual, status="completed", accuracy=0.5, seed=0, **changes):
    config = copy.deepcopy(spec.base_trial_config())
    config["train"].update(lr=lr, seed=seed)
    config["model"]["residual"] = residual
    for path, value in changes.items():
        section, field = path.split("__")
        config[section][field] = value
    run = client.create_run(experiment_id, tags={"xsweep.kind": "trial", "xsweep.status": status,
                                                 "xsweep.config": json.dumps(config)})
    client.log_metric(run.info.run_id, "val_accuracy", accuracy, step=2)
    return client.get_run(run.info.run_id)


def test_past_trials_count_only_where_the_new_sweep_could_have_run_them(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("t")
    old = _spec()
    runs = [
        _trial_run(client, experiment, old, lr=0.05, residual=True, accuracy=0.6),
        _trial_run(client, experiment, old, lr=0.05, residual=True, accuracy=0.8, seed=1),  # its second seed
        _trial_run(client, experiment, old, lr=0.02, residual=False, status="stopped"),
        _trial_run(client, experiment, old, lr=0.15, residual=False),  # outside the narrower range below
        _trial_run(client, experiment, old, lr=0.03, residual=False, train__epochs=3),  # trained longer
        _trial_run(client, experiment, old, lr=0.04, residual=True, status="running"),
    ]
    # The new sweep: a narrower learning rate, and the width searched too (old trials ran 0.125).
    new = load_spec_text(SPEC.format(extra="    model.width: {choice: [0.125, 0.25]}").replace(
        "[0.01, 0.2]", "[0.01, 0.1]"), source="s.yaml")
    space = optuna_space(new)
    evidence = gather(runs, space=space, base_config=new.base_trial_config(), objectives=["val_accuracy"],
                      key=lambda params: json.dumps(params, sort_keys=True))
    assert (len(evidence.carried), evidence.outside, evidence.unfinished) == (2, 2, 1)
    carried = sorted(evidence.carried.values(), key=lambda e: e["params"]["train.lr"])
    assert carried[0] == {"params": {"train.lr": 0.02, "model.residual": False, "model.width": 0.125},
                          "state": "pruned", "values": None}
    assert carried[1]["params"] == {"train.lr": 0.05, "model.residual": True, "model.width": 0.125}
    assert carried[1]["state"] == "complete" and carried[1]["values"] == [0.7]  # the mean over its seeds

    searcher = build_searcher(new, open_run=lambda trial_id, config: "run", past_runs=runs)
    study = searcher.inner._ot_study
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "PRUNED"]  # the sampler's evidence
    assert sorted(t.value for t in study.trials if t.value is not None) == [0.7]
