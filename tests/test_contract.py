"""xsweep.contract: what a trial tells the driver travels through Tune's result intact, apart from
the metrics, and every reader (status, MLflow's tag, the console) words a trial's end the same."""

from __future__ import annotations

import math

import pytest

from xsweep.contract import (
    COMPLETED, DIVERGED, FAILED, INTERRUPTED, PENDING, REPORT_KEY, RUNNING, STOPPED, STATUSES, TrialReport,
    ended_status, status_of, sweep_end_status,
)

REPORT = TrialReport(epoch=3, metrics={"val_accuracy": 0.5, "train_loss": 1.25}, planned_epochs=8,
                     device="cpu", node_id="abc", checkpoint_fallback="checkpoint_000002: damaged",
                     system=[[1764547200000, 12, {"system/process_cpu_utilization_percentage": 97.5}]],
                     peak="CPU: measured fp32 1024x1024 GEMM peak 83.9 GFLOP/s with 1 thread(s)")


def test_a_report_survives_tunes_result_dict():
    result = REPORT.to_result()
    assert TrialReport.from_result(result) == REPORT


def test_metrics_stay_top_level_and_nothing_else_does():
    # Tune's schedulers and searchers look the metric up by name at the top of the result.
    result = REPORT.to_result()
    assert {k for k in result if k != REPORT_KEY} == {"val_accuracy", "train_loss", "epoch"}
    assert set(result[REPORT_KEY]) == {"diverged", "planned_epochs", "device", "node_id", "checkpoint_fallback",
                                       "system", "peak", "workers"}


def test_keys_tune_adds_are_not_metrics():
    result = REPORT.to_result() | {"training_iteration": 3, "time_total_s": 9.5, "trial_id": "t1", "done": False}
    assert TrialReport.from_result(result).metrics == REPORT.metrics


def test_no_report_without_an_epoch():
    assert TrialReport.from_result(None) is None
    assert TrialReport.from_result({"trial_id": "t1", "done": True}) is None


def test_value_is_none_for_a_missing_or_non_finite_metric():
    report = TrialReport(epoch=1, metrics={"val_loss": math.nan, "val_accuracy": 0.0})
    assert report.value("val_loss") is None and report.value("train_loss") is None
    assert report.value("val_accuracy") == 0.0


@pytest.mark.parametrize(("report", "errored", "expected"), [
    (TrialReport(epoch=8, planned_epochs=8), False, COMPLETED),
    (TrialReport(epoch=2, planned_epochs=8), False, STOPPED),
    (TrialReport(epoch=2, planned_epochs=8, diverged=True), False, DIVERGED),
    (TrialReport(epoch=8, planned_epochs=8), True, FAILED),
    (None, False, FAILED),
])
def test_how_a_trial_ended(report, errored, expected):
    assert ended_status(report.to_result() if report else None, errored=errored) == expected


def test_tunes_statuses_in_xsweeps_words():
    stopped = TrialReport(epoch=1, planned_epochs=4).to_result()
    assert status_of("TERMINATED", stopped) == STOPPED  # not Tune's "terminated"
    assert [status_of(s, None) for s in ("PENDING", "RUNNING", "PAUSED", "ERROR")] == [PENDING, RUNNING, PENDING,
                                                                                      FAILED]
    assert status_of("PENDING", stopped) == INTERRUPTED  # saved mid-training by a Ctrl-C: resume goes on
    assert set(STATUSES) == {PENDING, RUNNING, COMPLETED, STOPPED, DIVERGED, FAILED, INTERRUPTED}


def test_a_trial_training_when_its_sweep_was_stopped_is_interrupted_not_stopped():
    # Tune marks a trial stopped by Ctrl-C TERMINATED, like one its scheduler stopped early.
    partial = TrialReport(epoch=1, planned_epochs=4).to_result()
    assert sweep_end_status("TERMINATED", partial, errored=False, in_flight=True) == INTERRUPTED
    assert sweep_end_status("TERMINATED", partial, errored=False, in_flight=False) == STOPPED
    assert sweep_end_status("PENDING", None, errored=False, in_flight=False) == PENDING


def test_a_report_reads_back_from_the_flattened_result_searchers_and_schedulers_get():
    from ray.tune.utils import flatten_dict

    assert TrialReport.from_result(flatten_dict(REPORT.to_result())) == REPORT
