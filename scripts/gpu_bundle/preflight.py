"""Pre-flight of the GPU bundle, run by hand before it goes to a GPU host (not a test: it downloads
the host-like packages and takes minutes).

    .venv/bin/python scripts/gpu_bundle/preflight.py --python /root/.pyenv/versions/3.12.1/bin/python3.12
    .venv/bin/python scripts/gpu_bundle/preflight.py --python /root/.pyenv/versions/3.11.7/bin/python3.11 --with-torch

Makes a throwaway venv of that Python holding only packages the GPU host has (the bundle's
manifest's `from_host`, plus HOST_EXTRAS; with --with-torch also torch 2.14.1 and
torchvision 0.29.1, which pip finds on this machine's disk), builds a bundle for that Python,
installs it with install.py, then, with PYTHONPATH=target:platform:checkout as on the GPU host:
starts a Ray node on 127.0.0.1 and runs a task and a Tune + Optuna search on it, and, with torch,
runs `xsweep run search_spaces/smoke.yaml` in a scratch folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from packaging.utils import canonicalize_name

from requirements import read_host

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Host packages beyond the bundle's `from_host`: what xsweep's system metrics use, and what changes
# how Ray and MLflow behave where it is installed (Ray's agents look for aiohttp, grpcio and
# prometheus-client; mlflow's metadata names aiohttp).
HOST_EXTRAS = ["psutil", "nvidia-ml-py", "aiohttp", "grpcio", "prometheus-client"]
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# The Python whose packages host_packages.txt lists; its versions (numpy 2.5.2) exist only for it.
HOST_PYTHON = "3.12"
RAY_CHECK = r"""
import os, tempfile
import ray, ray.tune, mlflow, optuna, xsweep.sweep.run
from ray import tune
from ray.tune.search.optuna import OptunaSearch
ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2)
assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}, ray.nodes()
assert ray.get(ray.remote(lambda x: 2 * x).remote(21)) == 42
def trainable(config):
    tune.report({"loss": (config["x"] - 1.0) ** 2})
tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(0.0, 2.0)},
                   tune_config=tune.TuneConfig(search_alg=OptunaSearch(), num_samples=4, metric="loss", mode="min"),
                   run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), verbose=0))
results = tuner.fit()
assert len(results) == 4 and not results.errors, results.errors
print("ray from", os.path.dirname(ray.__file__), "- 4 Tune trials with Optuna on a loopback node: ok")
ray.shutdown()
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, **kwargs)
    print(f"  ({time.monotonic() - started:.0f} s, exit {proc.returncode})", flush=True)
    if proc.returncode != 0:
        sys.exit(f"preflight: failed: {' '.join(str(c) for c in cmd)}")
    return proc


def host_like_venv(python: str, venv: Path, *, packages: list[str]) -> Path:
    """A venv with only packages the host list names (pip may pull in others as dependencies: those
    are removed again, and named)."""
    shutil.rmtree(venv, ignore_errors=True)
    run([python, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "install", "--quiet", *packages])
    host = read_host(HERE / "host_packages.txt")
    listed = json.loads(subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], capture_output=True,
                                       text=True, check=True).stdout)
    extra = [p["name"] for p in listed if canonicalize_name(p["name"]) not in host]
    if extra:
        print(f"  not on the host, removed: {', '.join(extra)}")
        run([str(py), "-m", "pip", "uninstall", "--quiet", "--yes", *extra])
    return py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="the interpreter of the host-like venv")
    parser.add_argument("--with-torch", action="store_true", help="add torch and run the smoke sweep")
    parser.add_argument("--work", type=Path, default=Path("/tmp/xsweep-gpu-preflight"))
    args = parser.parse_args()
    version = subprocess.run([args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    work = args.work / version
    bundle, target = work / "bundle", work / "target"
    work.mkdir(parents=True, exist_ok=True)

    run([sys.executable, str(HERE / "build.py"), "--python", version, "--out", str(bundle)])
    manifest = json.loads((bundle / "manifest.json").read_text())
    host = read_host(HERE / "host_packages.txt")
    host_packages = [f"{name}=={host[name]}" if host[name] and version == HOST_PYTHON else name
                     for name in manifest["from_host"]]
    host_packages += HOST_EXTRAS + (TORCH if args.with_torch else [])
    py = host_like_venv(args.python, work / "venv", packages=host_packages)

    shutil.rmtree(target, ignore_errors=True)
    run([str(py), str(bundle / "install.py"), str(target), "--repo", str(ROOT)])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT / "platform"), str(ROOT)]),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    run([str(py), "-c", RAY_CHECK], env=env, cwd=work)
    if args.with_torch:
        scratch = work / "sweep"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        run([str(py), "-m", "xsweep.cli", "run", str(ROOT / "search_spaces" / "smoke.yaml")], env=env, cwd=scratch)
    print(f"preflight: ok for Python {version} ({bundle}, {manifest['total_bytes'] / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
