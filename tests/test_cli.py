"""The CLI's contract for mistakes: one line naming the field and the fix, exit 2, nothing left behind."""

from __future__ import annotations

import pytest

from conftest import SPECS, run_xsweep
from services import free_port


def _assert_clean_failure(proc, workdir, expected: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert lines == [expected], proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing half-written: no results folder, no MLflow store.
    assert not (workdir / "results").exists()
    assert not (workdir / "mlflow.db").exists()


def test_validate_accepts_every_shipped_spec(tmp_path):
    specs = sorted(str(p) for p in SPECS.glob("*.yaml"))
    proc = run_xsweep("validate", *specs, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(specs)


def test_validate_reports_every_problem_with_exit_2(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ntrain:\n  lr: -1\n  optimizer: adam\nmodel:\n  activaton: relu\n")
    proc = run_xsweep("validate", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{spec}: train.lr: must be > 0 (got -1)",
        f"{spec}: train.optimizer: 'adam' is not allowed (one of sgd, rmsprop, adamw)",
        f"{spec}: model.activaton: unknown field (did you mean model.activation?)",
    ]


def test_run_with_a_bad_override_fails_before_anything_starts(tmp_path):
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "train.optimizer=adam", cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, "--set train.optimizer: 'adam' is not allowed (one of sgd, rmsprop, adamw)")


def test_missing_spec_file(tmp_path):
    proc = run_xsweep("run", "nope.yaml", cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, "nope.yaml: cannot read file: no such file (check the path)")


@pytest.mark.parametrize("content, expected", [
    (None, "spec: cannot read file: it is a folder (give the path of a .yaml spec file)"),
    (b"name: x\n\xff\xfe\n", "spec: cannot read file: not UTF-8 text (undecodable byte at offset 8)"),
    (b"name: x\ntrain:\n  lr: [0.1\n",
     "spec:4:1: YAML syntax error: expected ',' or ']', but got '<stream end>' "
     "(while parsing a flow sequence at line 3, column 7)"),
])
def test_unreadable_or_broken_spec_file(tmp_path, content, expected):
    spec = tmp_path / "spec"
    if content is None:
        spec.mkdir()
    else:
        spec.write_bytes(content)
    proc = run_xsweep("run", "spec", cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, expected)


def test_unknown_ray_address_fails_in_seconds(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--address", address, cwd=tmp_path, timeout=120)
    _assert_clean_failure(proc, tmp_path, f"xsweep: --address: cannot reach Ray at {address}: connection refused "
                                          f"(check the address and that the cluster is up)")


def test_unreachable_tracking_server_fails_at_once(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", f"tracking.uri={uri}", cwd=tmp_path, timeout=60)
    _assert_clean_failure(proc, tmp_path, f"xsweep: tracking.uri: cannot reach {uri}: connection refused "
                                          f"(start the server or fix tracking.uri)")


HINT = "(an imagefolder root needs train/ and val/ folders of class subfolders)"


@pytest.mark.parametrize("layout, expected", [
    ({}, "data.root: {root} not found " + HINT),
    ({"train/a": 1}, "data.root: {root}/val not found " + HINT),
    ({"train/a": 1, "val/a": 1},
     "data.root: {root}/train has 1 class folder(s); classification needs at least 2 " + HINT),
    ({"train/a": 1, "train/b": 1, "val/a": 1, "val/b": 1},
     "data.root: {root}/train/a holds no image files (.jpg, .png, ...) " + HINT),
])
def test_imagefolder_problems_fail_before_anything_starts(tmp_path, layout, expected):
    root = tmp_path / "images"
    for folder in layout:
        (root / folder).mkdir(parents=True)
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "data.dataset=imagefolder",
                      "--set", f"data.root={root}", cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, "xsweep: " + expected.format(root=root))


@pytest.mark.slow
@pytest.mark.cluster
def test_more_gpus_than_any_node_has_is_an_error_not_a_wait(tmp_path):
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "resources.gpus_per_trial=2",
                      "--set", "train.device=cuda", cwd=tmp_path, timeout=180)
    _assert_clean_failure(proc, tmp_path, "xsweep: resources.gpus_per_trial: 2 per trial but the largest node "
                                          "has 0 GPUs (lower it, or add GPU nodes to the cluster)")


def test_a_password_written_in_the_spec_is_refused(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text((SPECS / "smoke.yaml").read_text().replace(
        "uri: null", "uri: http://alice:s3cret@127.0.0.1:5000"))
    proc = run_xsweep("run", str(spec), cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, f"{spec}: tracking.uri: holds a password, which would be recorded with "
                                          f"the spec (remove it; set MLFLOW_TRACKING_USERNAME and "
                                          f"MLFLOW_TRACKING_PASSWORD instead)")


def test_a_storage_folder_that_cannot_be_created_is_one_line_and_nothing_is_written(tmp_path):
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "storage.path=/proc/xsweep-results", cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, "xsweep: storage.path: cannot write to /proc/xsweep-results: No such file "
                                          "or directory (pick a folder you can write, or s3://bucket/prefix)")
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no mlruns/, nothing
