"""xsweep.tracking.trials and xsweep.tracking.reproduction on a real sqlite store, its runs written by
hand in the layout a sweep leaves: which trial `xsweep reproduce` finds, what it reads of it, and
the run that records a reproduction."""

from __future__ import annotations

import json

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from xsweep.errors import ReproduceError
from xsweep.tracking.provenance import PACKAGES_ARTIFACT, recorded_packages
from xsweep.tracking.reproduction import ReproductionRun
from xsweep.tracking.tags import (
    TAG_BEST_RUN_ID, TAG_CONFIG, TAG_DEVICE, TAG_KIND, TAG_PARETO, TAG_PARETO_RANK, TAG_PHASE, TAG_STATUS,
    TAG_VARIANT,
)
from xsweep.tracking.trials import confirmation_finals, download_checkpoint, find_trial_run, logged_history

CONFIG = {"train": {"device": "auto", "seed": 0}, "model": {}, "data": {}}


def _trial(client, experiment_id, parent, name, accuracies, *, status="completed", **tags):
    run = client.create_run(experiment_id, run_name=name, tags={
        "mlflow.parentRunId": parent, TAG_KIND: "trial", TAG_STATUS: status, TAG_DEVICE: "cpu",
        TAG_CONFIG: json.dumps(CONFIG), **tags})
    client.log_batch(run.info.run_id, metrics=[Metric("val_accuracy", value, 1000 + epoch, epoch)
                                               for epoch, value in enumerate(accuracies, 1)])
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two sweeps of experiment 'exp': an older one, and the latest, with two objectives and an
    ablation's confirmation seeds; (client, uri, {name: run id})."""
    folder = tmp_path_factory.mktemp("trials")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("exp", artifact_location=str(folder / "artifacts"))
    ids = {}
    old = client.create_run(exp, run_name="old", start_time=1000, tags={TAG_KIND: "sweep"}).info.run_id
    ids["old-best"] = _trial(client, exp, old, "old-best", [0.5])
    client.set_tag(old, TAG_BEST_RUN_ID, ids["old-best"])
    sweep = client.create_run(exp, run_name="latest", start_time=2000, tags={TAG_KIND: "sweep"}).info.run_id
    client.log_param(sweep, "search.metric", "val_accuracy")
    client.log_param(sweep, "search.mode", "max")
    client.log_param(sweep, "search.objectives", "[val_accuracy, params]")
    client.log_text(sweep, "torch==2.0\nnumpy==1.0\n", PACKAGES_ARTIFACT)
    ids["sweep"] = sweep
    # The best at any epoch (0.9 at epoch 1), though not at the last; the front's second place.
    ids["peaked"] = _trial(client, exp, sweep, "peaked", [0.9, 0.6], **{TAG_PARETO: "true", TAG_PARETO_RANK: "2"})
    ids["steady"] = _trial(client, exp, sweep, "steady", [0.7, 0.8], **{TAG_PARETO: "true", TAG_PARETO_RANK: "1"})
    ids["failed"] = _trial(client, exp, sweep, "failed", [0.95], status="failed")
    for seed, final in enumerate([0.61, 0.64, 0.99]):
        ids[f"seed{seed}"] = _trial(client, exp, sweep, f"seed{seed}", [0.1, final], status="completed" if final < 0.9
                                    else "failed", **{TAG_PHASE: "confirm", TAG_VARIANT: "res=off"})
    return client, uri, ids


def test_the_latest_sweeps_best_finished_trial_at_any_epoch_without_a_recorded_best(store):
    client, uri, ids = store
    trial = find_trial_run(client, experiment="exp", uri=uri)
    assert (trial.run_id, trial.name, trial.metric, trial.mode) == (ids["peaked"], "peaked", "val_accuracy", "max")
    assert (trial.config, trial.device_tag, trial.parent_run_id) == (CONFIG, "cpu", ids["sweep"])
    assert trial.logged == {1: {"val_accuracy": 0.9}, 2: {"val_accuracy": 0.6}}


def test_a_sweeps_id_means_its_recorded_best_and_a_pick_its_place_on_the_front(store):
    client, uri, ids = store
    sweeps = client.search_runs([client.get_experiment_by_name("exp").experiment_id],
                                filter_string="attributes.run_name = 'old'")
    assert find_trial_run(client, experiment="exp", run_id=sweeps[0].info.run_id, uri=uri).run_id == ids["old-best"]
    assert find_trial_run(client, experiment="exp", uri=uri, pick=1).run_id == ids["steady"]
    assert find_trial_run(client, experiment="exp", run_id=ids["sweep"], uri=uri, pick=2).run_id == ids["peaked"]


@pytest.mark.parametrize(("args", "refusal"), [
    ({"experiment": "nope"}, "--experiment: no experiment 'nope'"),
    ({"experiment": "exp", "run_id": "f" * 32}, f"--run: no run {'f' * 32} in experiment 'exp'"),
    ({"experiment": "exp", "pick": 3}, "--pick: the Pareto front of sweep latest has 2 trial(s) (pick 1 to 2;"),
])
def test_what_cannot_be_found_is_one_line_naming_the_flag(store, args, refusal):
    client, uri, _ = store
    with pytest.raises(ReproduceError) as refused:
        find_trial_run(client, uri=uri, **args)
    assert str(refused.value).startswith(refusal)


def test_a_trial_given_with_a_pick_is_refused(store):
    client, uri, ids = store
    with pytest.raises(ReproduceError, match=r"^--pick: run \w+ is a trial, not a sweep"):
        find_trial_run(client, experiment="exp", run_id=ids["steady"], uri=uri, pick=1)


def test_the_history_keeps_a_steps_later_write_and_only_what_the_seed_decides(store):
    client, _, _ = store
    run_id = client.create_run(client.get_experiment_by_name("exp").experiment_id).info.run_id
    client.log_batch(run_id, metrics=[Metric("val_loss", 2.0, 2000, 1), Metric("val_loss", 1.5, 1000, 1),
                                      Metric("epoch_seconds", 3.0, 1000, 1)])
    assert logged_history(client, run_id) == {1: {"val_loss": 2.0}}


def test_the_confirmation_finals_are_the_completed_seeds_of_the_variant(store):
    client, uri, ids = store
    seed = find_trial_run(client, experiment="exp", run_id=ids["seed0"], uri=uri)
    assert sorted(confirmation_finals(client, trial=seed)) == [0.61, 0.64]
    assert confirmation_finals(client, trial=find_trial_run(client, experiment="exp", uri=uri)) == []


def test_the_sweeps_packages_are_read_back_and_a_run_without_them_has_none(store):
    client, _, ids = store
    assert recorded_packages(client, sweep_run_id=ids["sweep"]) == {"torch": "2.0", "numpy": "1.0"}
    assert recorded_packages(client, sweep_run_id=ids["peaked"]) is None


def test_a_trial_without_a_best_checkpoint_says_to_re_train_instead(store, tmp_path):
    client, uri, _ = store
    trial = find_trial_run(client, experiment="exp", uri=uri)
    with pytest.raises(ReproduceError, match="^--from-checkpoint: run .* has no checkpoints/best/state.pt"):
        download_checkpoint(client, trial, dst=str(tmp_path))


def test_a_reproduction_is_a_run_beside_the_sweep_with_its_verdict(store):
    client, uri, _ = store
    trial = find_trial_run(client, experiment="exp", uri=uri)
    with ReproductionRun(client, trial, mode="retrain", params={"epochs": 2}) as repro:
        repro.log(1, {"val_accuracy": 0.9, "not_a_metric": 1.0})
        repro.finish(passed=True, difference="0 pp", identical=True, seed_band="within", note="a note")
    run = client.get_run(repro.run_id)
    assert (run.info.run_name, run.info.status, run.data.params) == ("reproduce peaked", "FINISHED", {"epochs": "2"})
    assert run.data.metrics == {"val_accuracy": 0.9}
    assert {k: v for k, v in run.data.tags.items() if k.startswith("xsweep.")} == {
        "xsweep.kind": "reproduction", "xsweep.reproduces": trial.run_id, "xsweep.mode": "retrain",
        "xsweep.verdict": "pass", "xsweep.difference": "0 pp", "xsweep.identical": "true",
        "xsweep.seed_band": "within", "xsweep.note": "a note"}


def test_a_reproduction_that_never_reaches_a_verdict_is_left_failed(store):
    client, uri, _ = store
    trial = find_trial_run(client, experiment="exp", uri=uri)
    with pytest.raises(RuntimeError):
        with ReproductionRun(client, trial, mode="checkpoint", params={}) as repro:
            raise RuntimeError("the work failed")
    assert client.get_run(repro.run_id).info.status == "FAILED"
