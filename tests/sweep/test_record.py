"""The sweep's record (xsweep.json) as the driver reads and writes it: typed, round-tripping to the
same file, and readable when written by an older xsweep."""

from __future__ import annotations

import json
from pathlib import Path

from xsweep.cluster.storage import open_storage, read_sweep_record, write_sweep_record
from xsweep.spec import parse_spec
from xsweep.sweep.record import BestTrial, Earlier, SweepRecord, load_record, save_record

FIXTURES = Path(__file__).resolve().parent / "fixtures"

BEST = {"trial_id": "a1", "run_id": "r1", "name": "lr=0.05 s0", "metric": "val_accuracy", "value": 0.9,
        "searched": {"train.lr": 0.05}, "config": {"train": {"lr": 0.05}}, "variant": None,
        "model": {"version": 2, "alias_kept_by": None}, "earlier": False}
EXTENDED_ABLATION = {
    "spec_text": "name: x\n", "spec_source": "x.yaml", "overrides": ["train.epochs=1"], "parent_run_id": "p",
    "experiment_id": "1", "workdir": "/w", "tracking_uri": "sqlite:////w/mlflow.db",
    "versions": [{"version": 2, "overrides": ["train.epochs=1", "ablation.confirm_seeds=3"], "trials": 0,
                  "earlier": {"counts": {"completed": 8}, "best": BEST}}],
    "ablation": {
        "1": {"earlier_picked": [], "first_new_seed": 1, "phase": "confirm", "picked": [{"train.lr": 0.05}],
              "missing": [], "items": [{"train.lr": 0.05, "xsweep/repeat": 1}],
              "earlier": {"phase": "tune", "phase_counts": {"completed": 4}, "counts": {"completed": 4},
                          "run_ids": ["r1", "r2"]}},
        "2": {"variants": [], "earlier_picked": [{"train.lr": 0.05}], "first_new_seed": 3, "picked": [],
              "missing": [], "items": []},
    },
}


def test_a_record_round_trips_to_the_same_file(tmp_path):
    storage = open_storage("results", workdir=tmp_path)
    write_sweep_record(storage, "x-20260101-000000", EXTENDED_ABLATION)
    record = load_record(storage, "x-20260101-000000")
    assert [v.version for v in record.versions()] == [1, 2] and record.latest().trials == 0
    assert record.latest().earlier.best == BestTrial(**BEST)
    assert record.ablation_state(1).earlier == Earlier(counts={"completed": 4}, phase="tune",
                                                        phase_counts={"completed": 4}, run_ids=["r1", "r2"])
    assert record.every_picked() == [{"train.lr": 0.05}]
    save_record(storage, "x-20260101-000000", record)
    assert read_sweep_record(storage, "x-20260101-000000") == json.loads(json.dumps(EXTENDED_ABLATION))


def test_a_record_an_older_xsweep_wrote_reads_with_defaults():
    record = SweepRecord.from_json(json.loads((FIXTURES / "sweep-before-rooms" / "xsweep.json").read_text()))
    assert record.tracking_uri is None and record.later_versions == [] and record.ablation == {}
    assert record.latest().earlier == Earlier() and record.spec_of().name == "smoke"


def test_the_recorded_tracking_store_wins_over_the_shell(tmp_path, monkeypatch):
    spec = parse_spec({"name": "t"}, source="s")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    fields = {"spec_text": "name: t\n", "spec_source": "s", "overrides": [], "parent_run_id": "p", "experiment_id": "1"}
    assert SweepRecord(**fields, workdir="/w", tracking_uri="sqlite:////x/mlflow.db").tracking_uri_for(spec) == \
        "sqlite:////x/mlflow.db"
    # A sweep recorded before xsweep kept the URI: the one rule, from the folder it ran in.
    older = SweepRecord(**fields, workdir=str(tmp_path))
    assert older.tracking_uri_for(spec) == "http://127.0.0.1:1"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert older.tracking_uri_for(spec) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
