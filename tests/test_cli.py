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


def test_run_refuses_to_set_a_field_the_search_varies(tmp_path):
    # smoke.yaml searches train.lr: a fixed value would be ignored by every trial. Refused, with both fixes.
    proc = run_xsweep("run", str(SPECS / "smoke.yaml"), "--set", "train.lr=0.1", cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, "--set train.lr: the search varies train.lr (search.space.train.lr), so "
                          "no trial would use this value; to fix it, also --set search.space.train.lr=null; to "
                          "search other values, --set 'search.space.train.lr={...}' instead")
    # Taking the field out of the search, as the line says, fixes the value.
    proc = run_xsweep("validate", str(SPECS / "smoke.yaml"), "--set", "train.lr=0.1", "--set",
                      "search.space.train.lr=null", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("command", [["run", str(SPECS / "smoke.yaml")], ["report", "smoke"],
                                     ["reproduce", "--experiment", "smoke"]])
def test_a_mistyped_tracking_uri_in_the_environment_is_one_line_naming_the_variable(tmp_path, command):
    proc = run_xsweep(*command, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": "htp://127.0.0.1:5000"})
    _assert_clean_failure(proc, tmp_path, "xsweep: MLFLOW_TRACKING_URI: 'htp://127.0.0.1:5000' is not a supported "
                          "tracking URI (one of sqlite:///mlflow.db, file:./mlruns, http(s)://host:port, "
                          "postgresql://..., mysql://..., databricks)")
    proc = run_xsweep("report", "smoke", "--tracking-uri", "htp://127.0.0.1:5000", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("xsweep: --tracking-uri: 'htp://127.0.0.1:5000' is not")


def test_ui_of_a_store_that_is_not_there_says_so_and_creates_none(tmp_path):
    proc = run_xsweep("ui", "--tracking-uri", f"sqlite:///{tmp_path}/no/such.db", cwd=tmp_path)
    _assert_clean_failure(proc, tmp_path, f"xsweep: --tracking-uri: no MLflow store at {tmp_path}/no/such.db (run "
                          "from the sweep's folder, or pass --tracking-uri)")
    assert not (tmp_path / "no").exists()


def test_version(tmp_path):
    import tomllib

    version = tomllib.loads((SPECS.parent / "pyproject.toml").read_text())["project"]["version"]
    proc = run_xsweep("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"xsweep {version}", proc.stdout + proc.stderr


def test_a_mistyped_sweep_name_suggests_the_closest_one(tmp_path):
    (tmp_path / "results" / "smoke-20261204-120000").mkdir(parents=True)
    (tmp_path / "results" / "smoke-2-20261204-120500").mkdir()
    proc = run_xsweep("status", "smok", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"xsweep: smok: no sweep of that name under {tmp_path}/results (did you mean smoke?)"
    proc = run_xsweep("resume", "nothing-like-it", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("(pass the sweep's folder instead)"), proc.stderr


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
