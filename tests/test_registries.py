"""Adding a dataset, a metric, a search algorithm or a trial scheduler is one registry entry: each
toy below is registered from this file, and every consumer then knows it (the spec, the trial,
the tracking filter, reproduce, the searcher, the console), with no other change to xsweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ray.tune.search import Searcher

import toys
from conftest import SPECS
from xsweep import cli
from xsweep.contract import TrialReport
from xsweep.errors import DataError, SpecError
from xsweep.metrics import METRICS, reproducible
from xsweep.spec import load_spec_text, parse_spec
from xsweep.search.algorithms import ALGORITHMS
from xsweep.search.schedulers import SCHEDULERS, build_trial_scheduler
from xsweep.search.searcher import build_searcher
from xsweep.training.datasets import DATASETS, dataset_of
from xsweep.training.fit import fit

def registered(registry, entry):
    """A fixture that has the entry in the registry for the duration of a test."""
    @pytest.fixture
    def fixture():
        registry.add(entry)
        yield
        registry.remove(entry.name)

    return fixture


toy_dataset = registered(DATASETS, toys.TOY_DATASET)
toy_metric = registered(METRICS, toys.VAL_ERROR)
toy_sampler = registered(ALGORITHMS, toys.ROUND_ROBIN)
toy_scheduler = registered(SCHEDULERS, toys.MEDIAN_STOPPING)
toy_grid = registered(ALGORITHMS, toys.EVERY_CHOICE)


def toy_config(**data):
    spec = parse_spec({"name": "toy", "data": {"dataset": "toy", **data},
                       "model": {"width": 0.125, "middle_blocks": 0},
                       "train": {"epochs": 1, "batch_size": 16, "device": "cpu", "threads": 1}}, source="toy.yaml")
    return spec.base_trial_config()


# ---- a dataset ---------------------------------------------------------------------------------
def test_a_registered_dataset_is_a_valid_data_dataset(toy_dataset, tmp_path, capsys):
    spec = tmp_path / "toy.yaml"
    spec.write_text("name: toy\ndata: {dataset: toy}\n")
    assert cli.main(["validate", str(spec)]) == 0
    with pytest.raises(SpecError, match=r"'nope' is not allowed \(one of digits, .*synthetic, toy\)"):
        load_spec_text("name: t\ndata: {dataset: nope}", source="s.yaml")


def test_a_registered_dataset_is_checked_before_anything_starts(toy_dataset):
    assert dataset_of(toy_config()["data"]).shape(toy_config()["data"]) == (3, 1)
    with pytest.raises(DataError, match=f"^data.root: /data/missing not found .*{toys.TOY_ROOT_HINT}"):
        data = toy_config(root="/data/missing")["data"]
        dataset_of(data).shape(data)


def test_a_trial_trains_on_a_registered_dataset(toy_dataset):
    result = fit(toy_config())
    assert result.status == "completed" and [h["epoch"] for h in result.history] == [1]
    assert 0 <= result.history[0]["val_accuracy"] <= 1


# ---- a metric ----------------------------------------------------------------------------------
def test_a_registered_metric_can_be_searched_with_its_own_mode(toy_metric):
    spec = load_spec_text("name: t\nsearch: {metric: val_error, mode: min}", source="s.yaml")
    assert (spec.search.metric, spec.search.mode) == ("val_error", "min")
    with pytest.raises(SpecError, match=r"max with metric val_error would search for the worst model "
                                        r"\(use mode: min\)"):
        load_spec_text("name: t\nsearch: {metric: val_error}", source="s.yaml")


def test_a_derived_metric_is_reported_each_epoch_and_compared_by_reproduce(toy_metric, toy_dataset):
    reports = []
    fit(toy_config(), on_epoch=reports.append)
    (epoch,) = reports
    assert epoch.metrics["val_error"] == pytest.approx(1 - epoch.metrics["val_accuracy"])
    assert "val_error" in reproducible()
    # What the trial reports to Tune carries it, and the driver reads it back.
    report = TrialReport.from_result(TrialReport(epoch=1, metrics=epoch.metrics).to_result())
    assert report.value("val_error") == epoch.metrics["val_error"]
    assert METRICS.get("val_error").show(0.25) == "25.00%"


def test_the_tracking_callback_logs_a_registered_metric(toy_metric, tmp_path):
    from mlflow.tracking import MlflowClient

    from xsweep.tracking.callback import TrackingCallback
    from xsweep.tracking.writer import shared_writer
    from xsweep.tracking.runs import SweepRuns

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("toy")
    run_id = client.create_run(experiment_id).info.run_id
    runs = SweepRuns(uri=uri, experiment_id=experiment_id, parent_run_id=run_id, base_config={})
    callback = TrackingCallback(runs, metric="val_error", mode="min")
    result = TrialReport(epoch=1, metrics={"val_accuracy": 0.75, "val_error": 0.25}).to_result()
    callback.log_epoch(run_id, result | {"unlisted": 1.0})
    assert shared_writer().flush(timeout=60) == 0
    logged = client.get_run(run_id).data.metrics
    assert logged == {"val_accuracy": 0.75, "val_error": 0.25}  # what is not in the table is not logged


# ---- a search algorithm and a trial scheduler --------------------------------------------------
SPACE = """
name: toy
search:
  algorithm: {algorithm}
  num_samples: 10
  space:
    model.residual: {{choice: [true, false]}}
    model.activation: {{choice: [none, relu, elu]}}
"""


def test_a_registered_sampler_drives_the_search(toy_sampler):
    spec = load_spec_text(SPACE.format(algorithm="round-robin"), source="s.yaml")
    searcher = build_searcher(spec, open_run=lambda trial_id, config: f"run-{trial_id}")
    suggested = []
    for i in range(10):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        suggested.append((config["model.residual"], config["model.activation"]))
        result = TrialReport(epoch=10, planned_epochs=10, metrics={"val_accuracy": 0.5}).to_result()
        searcher.on_trial_complete(f"t{i}", result=result)
    # The toy's own order (2 and 3 choices: six distinct pairs), then the search ends: none is left.
    assert suggested == [((True, False)[n % 2], ("none", "relu", "elu")[n % 3]) for n in range(6)]
    # It reads no search.seed, so writing one is a mistake the spec names.
    with pytest.raises(SpecError, match=r"search.seed: search.algorithm round-robin does not use it"):
        load_spec_text(SPACE.format(algorithm="round-robin") + "  seed: 3\n", source="s.yaml")


def test_a_registered_scheduler_is_built_with_the_fields_it_reads(toy_scheduler):
    from ray.tune.schedulers import MedianStoppingRule

    spec = load_spec_text("name: t\nscheduler: {kind: median-stopping, grace_period: 2}", source="s.yaml")
    assert isinstance(build_trial_scheduler(spec), MedianStoppingRule)
    # What it does not read (ASHA's reduction_factor) is not in the sweep's resolved spec either.
    assert spec.resolved()["scheduler"] == {"kind": "median-stopping", "grace_period": 2}
    with pytest.raises(SpecError, match=r"scheduler.reduction_factor: scheduler.kind median-stopping does not "
                                        r"use it \(remove it, or use asha or hyperband\)"):
        load_spec_text("name: t\nscheduler: {kind: median-stopping, reduction_factor: 3}", source="s.yaml")


def test_a_registered_schedulers_default_is_its_own(toy_scheduler):
    spec = load_spec_text("name: t\ntrain: {epochs: 8}\nscheduler: {kind: median-stopping}", source="s.yaml")
    assert spec.scheduler.grace_period == 4 and build_trial_scheduler(spec)._grace_period == 4


def test_a_registered_grid_like_sampler_is_a_grid_to_the_spec_and_the_report(toy_grid):
    from sweeps_by_hand import grid, sweep

    from xsweep.report.sections import summarize

    # The spec: num_samples is the grid's size, and a range has no place in it.
    spec = load_spec_text(SPACE.format(algorithm="every-choice").replace("  num_samples: 10\n", ""), source="s.yaml")
    assert spec.grid_size() == spec.search.num_samples == 6
    with pytest.raises(SpecError, match=r"search.space.train.lr: every-choice search needs choice entries"):
        load_spec_text(SPACE.format(algorithm="every-choice") + "    train.lr: {loguniform: [0.01, 0.1]}\n",
                       source="s.yaml")
    # The report: its trials come in pairs that share all else, as a grid's do.
    summary = summarize(sweep(grid(), algorithm="every-choice"), workdir="/nowhere")
    assert summary["sweep"]["grid"] and all(d["test"] == "paired" for f in summary["factors"] for d in f["comparisons"])


NOTEBOOK = """
import json, sys
sys.path.insert(0, {tests!r})
import toys, xsweep
from xsweep.errors import UserError
from xsweep.search.algorithms import ALGORITHMS
from xsweep.search.schedulers import SCHEDULERS

ALGORITHMS.add(toys.ROUND_ROBIN)
SCHEDULERS.add(toys.MEDIAN_STOPPING)
spec = xsweep.load_spec({spec!r}, overrides=[
    "search.algorithm=round-robin", "scheduler.kind=median-stopping", "scheduler.grace_period=1",
    "search.num_samples=2", "train.epochs=2", "search.space={{model.residual: {{choice: [true, false]}}}}",
    "tracking.uri={store}"])
outcome = xsweep.run_sweep(spec, workdir={workdir!r})
report = xsweep.make_report(spec=spec, log_artifacts=False)  # the spec's store, not ./mlflow.db
try:
    xsweep.reproduce(spec=spec, pick=0)
except UserError as error:
    refused = str(error)
print(json.dumps({{"exit_code": outcome.exit_code, "counts": outcome.counts, "best": outcome.best.searched,
                  "report": str(report), "refused": refused}}))
"""


@pytest.mark.slow
@pytest.mark.cluster
def test_a_notebook_runs_a_sweep_with_a_registered_sampler_and_scheduler(tmp_path):
    """The Python API, as a notebook calls it (a fresh Python process): the searcher and the
    scheduler live in the driver, so entries registered there drive a real sweep. The report and
    reproduce of the spec find its store; a refusal names the Python argument, not the CLI's flag."""
    store = f"sqlite:///{tmp_path / 'notebook.db'}"
    code = NOTEBOOK.format(tests=str(Path(__file__).parent), spec=str(SPECS / "smoke.yaml"), workdir=str(tmp_path),
                           store=store)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["exit_code"] == 0 and sum(outcome["counts"].values()) == 2
    assert Path(outcome["report"], "report.html").is_file() and not (tmp_path / "mlflow.db").exists()
    assert outcome["refused"].startswith("pick: must be 1 or more"), outcome["refused"]
    # Round robin proposes residual on, then off (Optuna trials 0 and 1): the two trials MLflow holds.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    trials = client.search_runs([client.get_experiment_by_name("smoke").experiment_id],
                                filter_string="tags.`xsweep.kind` = 'trial'", order_by=["attributes.start_time ASC"])
    assert [json.loads(t.data.tags["xsweep.searched"]) for t in trials] == [{"model.residual": True},
                                                                          {"model.residual": False}]


# ---- a report section --------------------------------------------------------------------------
@pytest.fixture
def toy_section():
    """A toy section whose entry holds both its analysis and its text: the seeds the completed trials ran."""
    from xsweep.report.sections import SECTIONS, Section

    def seeds(data, shared):
        return {"seeds": sorted({t.seed for t in shared.finished})}

    def text(summary, figures):
        return [("p", f"Seeds used: {', '.join(map(str, summary['seeds']))}.")]

    SECTIONS.add(Section("seeds", "Seeds", text, analyze=seeds), before="trials")
    yield
    SECTIONS.remove("seeds")


def test_a_registered_report_section_is_in_the_report_numbered_in_its_place(toy_section, tmp_path):
    from sweeps_by_hand import grid, sweep

    from xsweep.report.render import write_report
    from xsweep.report.sections import blocks, summarize

    summary = summarize(sweep(grid()), workdir="/nowhere")
    write_report(tmp_path, summary, blocks(summary, figures={}))
    md = (tmp_path / "report.md").read_text()
    assert "## 5. Seeds\n\nSeeds used: 0, 1.\n" in md
    assert md.index("## 4. Best trial") < md.index("## 5. Seeds") < md.index("## All trials")
    assert "<h2>5. Seeds</h2>" in (tmp_path / "report.html").read_text()
    # Its numbers are in report.json beside every other section's.
    assert json.loads((tmp_path / "report.json").read_text())["seeds"] == [0, 1]


def test_a_report_section_cannot_set_a_key_another_one_holds():
    from sweeps_by_hand import grid, sweep

    from xsweep.report.sections import SECTIONS, Section, summarize

    SECTIONS.add(Section("rival", "Rival", lambda summary, figures: [], analyze=lambda data, shared: {"best": None}))
    try:
        with pytest.raises(ValueError, match="report section 'rival' sets best, which the summary holds already"):
            summarize(sweep(grid()), workdir="/nowhere")
    finally:
        SECTIONS.remove("rival")
