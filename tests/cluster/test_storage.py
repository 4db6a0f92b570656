"""xsweep.cluster.storage: where a sweep's results go, checked before anything is written, and the
sweep's own record in its folder, written whole or not at all."""

from __future__ import annotations

import json

import pytest

from xsweep.cluster.storage import (
    SWEEP_FILE, check_writable, find_sweeps, new_sweep_name, open_storage, read_sweep_record, write_sweep_record,
)
from xsweep.errors import StorageError


def test_a_relative_path_is_the_folder_run_was_started_in(tmp_path):
    storage = open_storage("results", workdir=tmp_path)
    assert storage.is_local and storage.root == str(tmp_path.resolve() / "results") == storage.tune_path
    fs, path = storage.fs_path("sweep-1", SWEEP_FILE)
    assert path == str(tmp_path.resolve() / "results" / "sweep-1" / SWEEP_FILE)


def test_a_folder_that_can_be_made_is_fine_and_nothing_is_left(tmp_path):
    check_writable(open_storage("a/b/results", workdir=tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["/proc/xsweep-results", "/dev/null/results"])
def test_a_folder_that_cannot_be_made_is_one_line_naming_storage_path(path):
    with pytest.raises(StorageError, match=f"^storage.path: cannot write to {path}: .* \\(pick a folder you can "
                                           f"write, or s3://bucket/prefix\\)$"):
        check_writable(open_storage(path, workdir="/"))


def test_the_sweep_record_round_trips_and_is_never_half_written(tmp_path):
    storage = open_storage("results", workdir=tmp_path)
    record = {"spec_text": "name: x\n", "overrides": ["train.lr=0.1"], "parent_run_id": "abc"}
    write_sweep_record(storage, "x-20260101-000000", record)
    assert read_sweep_record(storage, "x-20260101-000000") == record
    folder = tmp_path / "results" / "x-20260101-000000"
    assert sorted(p.name for p in folder.iterdir()) == [SWEEP_FILE]  # no .partial left
    assert json.loads((folder / SWEEP_FILE).read_text()) == record
    assert read_sweep_record(storage, "nothing-here") is None


def test_sweeps_of_a_name_are_found_oldest_first(tmp_path):
    storage = open_storage("results", workdir=tmp_path)
    for name in ("smoke-20260102-000000", "smoke-20260101-000000", "smokey-20260101-000000", "smoke-notes"):
        (tmp_path / "results" / name).mkdir(parents=True)
    assert find_sweeps(storage, "smoke") == ["smoke-20260101-000000", "smoke-20260102-000000"]
    assert find_sweeps(open_storage("none", workdir=tmp_path), "x") == []
    assert new_sweep_name("smoke").startswith("smoke-")
