"""What keeps a sweep's start-up short: no torch in the driver before trials run, nothing that
phones home, the MLflow store prepared while Ray starts, and nothing left behind if Ray refuses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import SPECS
from xsweep.sweep.startup import while_ray_starts
from xsweep.tracking.store import default_uri


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env if env is not None else dict(os.environ))


def test_the_driver_reaches_ray_without_importing_torch():
    # Everything `xsweep run` imports before the trials start, and the data check it runs.
    code = f"""
import sys
from xsweep import cli
from xsweep.cluster import connect
from xsweep.search import searcher
from xsweep.sweep import console, finish, output, run, startup
from xsweep.training import trainable
from xsweep.tracking import callback
from xsweep.training.datasets import dataset_of
from xsweep.spec import load_spec
spec = load_spec({str(SPECS / "smoke.yaml")!r}, overrides=[])
data = spec.base_trial_config()["data"]
dataset_of(data).shape(data)
startup._prepare("sqlite:///:memory:", [])
print(sorted(m for m in ("torch", "tensorboardX") if m in sys.modules))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _offline_flags(env: dict) -> list[str]:
    code = f"""
from xsweep import cli
cli.main(["validate", {str(SPECS / "smoke.yaml")!r}])
from mlflow.telemetry.utils import is_telemetry_disabled
from ray._common.usage.usage_lib import usage_stats_enabled
print(is_telemetry_disabled(), usage_stats_enabled())
"""
    proc = _python(code, env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-2:]


def _like_a_users_shell() -> dict:
    """The environment without what marks CI or a test run: MLflow skips telemetry there anyway."""
    markers = ("CI", "PYTEST", "GITHUB", "BUILD", "JENKINS", "TEAMCITY", "GITLAB", "CIRCLE", "TRAVIS")
    return {k: v for k, v in os.environ.items()
            if not k.startswith(markers) and k not in ("MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED",
                                                       "DO_NOT_TRACK")}


def test_nothing_phones_home_by_default():
    assert _offline_flags(_like_a_users_shell()) == ["True", "False"]


def test_a_user_can_turn_telemetry_back_on():
    env = dict(_like_a_users_shell(), MLFLOW_DISABLE_TELEMETRY="false", RAY_USAGE_STATS_ENABLED="1")
    assert _offline_flags(env) == ["False", "True"]


def test_the_mlflow_store_is_ready_once_ray_is(tmp_path):
    uri = default_uri(tmp_path)
    with while_ray_starts(uri):
        pass
    from mlflow.tracking import MlflowClient

    assert (tmp_path / "mlflow.db").is_file()
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]


def test_a_refused_start_leaves_no_database_behind(tmp_path):
    with pytest.raises(RuntimeError, match="refused"):
        with while_ray_starts(default_uri(tmp_path)):
            raise RuntimeError("refused")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_start_keeps_a_database_that_was_there(tmp_path):
    uri = default_uri(tmp_path)
    with while_ray_starts(uri):
        pass
    with pytest.raises(RuntimeError):
        with while_ray_starts(uri):
            raise RuntimeError("refused")
    assert (tmp_path / "mlflow.db").is_file()


def test_a_store_that_cannot_be_prepared_is_reported(tmp_path):
    (tmp_path / "mlflow.db").write_text("not a database")
    with pytest.raises(Exception, match="(?i)database"):
        with while_ray_starts(default_uri(tmp_path)):
            pass


def test_imagefolder_checks_the_files_torchvision_loads():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from xsweep.training.sources import IMG_EXTENSIONS as ours

    assert ours == IMG_EXTENSIONS
