"""The offline bundle for GPU hosts (`make gpu-bundle`): built here for this Python (the build
downloads from the package index into a cache; nothing downloads after it), under its size limit,
with a manifest that says what it carries, what it stripped and what it leaves to the host, and an
install script that installs it into a folder offline, from which xsweep then imports.

The bundle is built for the Python running the tests so that it can be installed here; `make
gpu-bundle` builds the same for the GPU host's Python 3.12 (43 MiB; 3.11: about the same).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "gpu_bundle" / "build.py"
LIMIT = 56 << 20
PYTHON = "%d.%d" % sys.version_info[:2]
# Any attempt to reach a package index goes to a closed port on loopback and fails.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "PIP_NO_INDEX": "1"}


def host_packages() -> set[str]:
    lines = (ROOT / "scripts" / "gpu_bundle" / "host_packages.txt").read_text().splitlines()
    return {line.split("==")[0].strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "gpu-bundle"
    proc = subprocess.run([sys.executable, str(BUILD), "--python", PYTHON, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{out}/" in proc.stdout and "MiB (limit 56 MiB)" in proc.stdout
    return out


@pytest.mark.slow
def test_the_bundle_fits_its_limit_and_its_manifest_says_what_it_carries_and_leaves_out(bundle):
    assert sorted(p.name for p in bundle.iterdir()) == ["install.py", "manifest.json", "wheels.tar.xz"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["total_bytes"] == sum(p.stat().st_size for p in bundle.iterdir()) < LIMIT
    assert manifest["python"] == PYTHON and manifest["platform"] == "manylinux_2_28_x86_64"

    packages = {p["name"]: p for p in manifest["packages"]}
    assert {"ray", "mlflow", "optuna", "cmaes", "pydantic", "sqlalchemy", "alembic"} <= set(packages)
    assert {"torch", "torchvision", "psycopg"} <= set(manifest["left_out"])
    not_carried = {"torch", "torchvision", "psycopg", "psycopg-binary", "mlflow-skinny", "flask", "gunicorn"}
    assert not not_carried & set(packages)
    # Nothing the host has is carried, unless a carried package needs another version of it.
    assert all("the host has" in packages[name]["why"] for name in host_packages() & set(packages))
    assert {"numpy", "scipy", "pyarrow", "scikit-learn"} <= set(manifest["from_host"])
    # Host packages whose version is not recorded, bounded by what is carried, travel as fallbacks
    # (small ones: the scientific stack is trusted to the host, and says so).
    fallbacks = {f["name"]: f for f in manifest["fallbacks"]}
    assert {"protobuf", "typing-extensions", "packaging"} <= set(fallbacks) <= set(manifest["from_host"])
    assert all(f["requirement"] and f["needed_by"] and f["wheel_bytes"] <= 2 << 20 for f in fallbacks.values())
    assert "pyarrow" in manifest["trusted_to_the_host"]
    for p in packages.values():
        assert p["version"] and p["wheel_bytes"] > 0 and p["installed_bytes"] > 0 and p["why"]

    ray_stripped = packages["ray"]["stripped"]
    assert ray_stripped["Java workers' jars: a Python sweep never starts a Java worker"] > 30e6
    assert any("RLlib" in reason and n > 0 for reason, n in ray_stripped.items())
    assert any("MLflow UI" in reason and n > 0 for reason, n in packages["mlflow"]["stripped"].items())
    assert "flask" in packages["mlflow"]["left_behind"]  # the server's: install.py does not report it missing


@pytest.mark.slow
def test_a_repacked_wheel_is_still_a_valid_wheel(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    with tarfile.open(bundle / "wheels.tar.xz") as tar:
        assert sorted(tar.getnames()) == sorted(p["wheel"] for p in manifest["packages"] + manifest["fallbacks"])
        ray_wheel = next(p["wheel"] for p in manifest["packages"] if p["name"] == "ray")
        data = tar.extractfile(ray_wheel).read()
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        record_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1)
        record = {row[0]: row[1] for row in csv.reader(io.StringIO(wheel.read(record_name).decode()))}
        files = {info.filename for info in wheel.infolist() if not info.is_dir()}
        assert set(record) == files  # RECORD lists exactly what the wheel holds
        assert not any(name.startswith(("ray/jars/", "ray/rllib/", "ray/serve/")) for name in files)
        for name in (n for n in files if n != record_name):
            digest = base64.urlsafe_b64encode(hashlib.sha256(wheel.read(name)).digest()).rstrip(b"=").decode()
            assert record[name] == f"sha256={digest}", name
        entry_points = wheel.read(record_name.replace("RECORD", "entry_points.txt")).decode()
        assert "ray.scripts.scripts:main" in entry_points and "ray.serve" not in entry_points


@pytest.mark.slow
def test_install_script_installs_offline_and_xsweep_imports_from_the_folder(bundle, tmp_path):
    # This machine's packages meet the bundle's bounds, as a GPU host's should; a host whose
    # typing-extensions were too old is played by a bound no release meets.
    manifest = json.loads((bundle / "manifest.json").read_text())
    forced = next(f for f in manifest["fallbacks"] if f["name"] == "typing-extensions")
    forced["requirement"] = ">=99"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "target"
    env = {**os.environ, **OFFLINE}
    proc = subprocess.run([sys.executable, str(bundle / "install.py"), str(target), "--repo", str(ROOT)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "an MLflow sqlite store took a run" in proc.stdout
    assert f"Installing a fallback: typing-extensions {forced['version']}: the host has " in proc.stdout
    assert (target / "typing_extensions.py").exists() and not (target / "google" / "protobuf").exists()
    assert f"{len(manifest['fallbacks']) - 1} of the host's own packages meet the bundle's bounds" in proc.stdout
    pythonpath = os.pathsep.join([str(target), str(ROOT / "platform"), str(ROOT)])
    assert f"export PYTHONPATH={pythonpath}" in proc.stdout  # how to run xsweep with it
    assert not (target / "ray" / "jars").exists() and not (target / "mlflow" / "server" / "js").exists()

    # The test's own environment has these packages too: they must load from the folder.
    check = ("import importlib.metadata as m, json, ray, ray.tune, mlflow, optuna, pydantic, xsweep.sweep.run; "
             "print(json.dumps([[mod.__file__ for mod in (ray, mlflow, optuna, pydantic)], m.version('mlflow')]))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         env={**env, "PYTHONPATH": pythonpath}, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    files, mlflow_version = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(path.startswith(str(target)) for path in files), files
    assert f"mlflow=={mlflow_version}" in (ROOT / "pyproject.toml").read_text()  # the pinned one


def test_a_bundle_for_another_python_refuses_to_install_in_one_line(tmp_path):
    bundle = tmp_path / "gpu-bundle"
    bundle.mkdir()
    (bundle / "install.py").write_bytes((ROOT / "scripts" / "gpu_bundle" / "install.py").read_bytes())
    (bundle / "manifest.json").write_text(json.dumps({"python": "3.99", "platform": "manylinux_2_28_x86_64"}))
    proc = subprocess.run([sys.executable, str(bundle / "install.py"), str(tmp_path / "target")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"this bundle is for Python 3.99, but {sys.executable} is Python {PYTHON}" in proc.stderr
    assert not (tmp_path / "target").exists()


@pytest.mark.parametrize("option, value", [("--python", "3"), ("--platform", "manylinux 2.28")])
def test_bad_build_options_are_one_line_naming_the_option(option, value, tmp_path):
    proc = subprocess.run([sys.executable, str(BUILD), option, value, "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"gpu_bundle: {option}: ") and "pass e.g." in proc.stderr
    assert not (tmp_path / "b").exists()
