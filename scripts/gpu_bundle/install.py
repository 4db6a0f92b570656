"""Installs this GPU bundle offline into a folder, checks that what xsweep imports loads from it (and
from the host), that an MLflow sqlite store takes a run, and says how to run xsweep with it.

    python3 install.py TARGET_FOLDER [--repo CHECKOUT]

Run it with the host's Python (the one that has torch): the bundle's wheels are for that Python.
CHECKOUT is the xsweep checkout (default: the folder above this bundle, when it is one). xsweep is
not installed: it runs from the checkout, with TARGET_FOLDER, CHECKOUT/platform and CHECKOUT on
PYTHONPATH. Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# What xsweep imports, from the bundle or the host; a failure names the module and the error.
IMPORTS = [
    "ray", "ray.tune", "ray.tune.search.optuna", "ray.train", "mlflow", "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store", "sqlalchemy", "alembic", "optuna", "cmaes", "pydantic",
    "rich", "yaml", "sklearn", "scipy", "pyarrow.fs", "matplotlib", "psutil",
]
XSWEEP_IMPORTS = ["xsweep", "xsweep.cli", "xsweep.sweep.run"]
# Run in a fresh interpreter with the user's PYTHONPATH: it sees what `python -m xsweep.cli` sees.
CHECK = r"""
import importlib, json, sys, tempfile, traceback
from importlib.metadata import version, PackageNotFoundError
result = {"failed": {}, "versions": {}}
for module in json.loads(sys.argv[1]):
    try:
        importlib.import_module(module)
    except BaseException as exc:
        result["failed"][module] = (traceback.format_exception_only(type(exc), exc)[-1].strip())[:300]
for name in ("ray", "mlflow", "optuna", "pydantic", "sqlalchemy", "torch", "numpy", "pyarrow", "scikit-learn"):
    try:
        result["versions"][name] = version(name)
    except PackageNotFoundError:
        result["versions"][name] = None
try:
    from mlflow.tracking import MlflowClient
    with tempfile.TemporaryDirectory() as folder:
        client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
        run = client.create_run(client.create_experiment("install-check", artifact_location=folder))
        client.log_metric(run.info.run_id, "x", 1.0)
        client.set_terminated(run.info.run_id)
        assert client.get_run(run.info.run_id).data.metrics == {"x": 1.0}
except BaseException as exc:
    result["failed"]["an MLflow sqlite store"] = traceback.format_exception_only(type(exc), exc)[-1].strip()[:300]
print(json.dumps(result))
"""


def fail_input(message: str) -> None:
    print(f"install.py: {message}", file=sys.stderr)
    sys.exit(2)


def fallbacks_needed(manifest: dict) -> dict[str, str]:
    """{wheel: why} of the fallbacks this host needs: the host packages whose version the bundle's
    build did not know and that turn out not to meet the carried packages' bounds (or are missing)."""
    from importlib.metadata import PackageNotFoundError, version

    from pip._vendor.packaging.specifiers import SpecifierSet  # pip runs the install: its packaging is here

    needed = {}
    for fallback in manifest.get("fallbacks", []):
        try:
            have = version(fallback["name"])
        except PackageNotFoundError:
            have = None
        if have is None or not SpecifierSet(fallback["requirement"]).contains(have, prereleases=True):
            needed[fallback["wheel"]] = (f"{fallback['name']} {fallback['version']}: the host has "
                                         f"{have or 'none'}, and {fallback['needed_by']} require "
                                         f"{fallback['name']}{fallback['requirement']}")
    return needed


def install(wheels_archive: Path, target: Path, *, skip: set[str]) -> int:
    """Installs the archive's wheels, less those named in `skip`; how many it installed."""
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-wheels-") as tmp:
        with tarfile.open(wheels_archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)  # only the wheels this bundle was built with
        wheels = sorted(str(p) for p in Path(tmp).glob("*.whl") if p.name not in skip)
        # No configuration files (PIP_CONFIG_FILE=devnull) and no PIP_* variables (--isolated): a
        # host's constraints or index settings have no say over an offline install of exact wheels.
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        subprocess.run([sys.executable, "-m", "pip", "--isolated", "install", "--quiet", "--no-index", "--no-deps",
                        "--upgrade", "--target", str(target), *wheels], check=True, env=env)
    return len(wheels)


def conflicts(manifest: dict, pythonpath: str) -> list[str]:
    """pip's dependency check of the bundle's packages against the host's, less what was left behind
    on purpose (the MLflow server's requirements)."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "PIP_CONFIG_FILE": os.devnull}
    out = subprocess.run([sys.executable, "-m", "pip", "--isolated", "check"], capture_output=True, text=True,
                         env=env).stdout
    ours = {p["name"]: set(p["left_behind"]) for p in manifest["packages"]}
    lines = []
    for line in out.splitlines():
        words = line.replace(",", " ").split()
        name = re.sub(r"[-_.]+", "-", words[0]).lower() if words else ""
        if name not in ours:
            continue
        missing = words[3].lower() if len(words) > 3 and "not installed" in line else None
        if missing is None or re.sub(r"[-_.]+", "-", missing) not in ours[name]:
            lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="the folder to install into (created; its packages replaced)")
    parser.add_argument("--repo", type=Path, default=None, help="the xsweep checkout (default: above this bundle)")
    args = parser.parse_args()

    manifest = json.loads((HERE / "manifest.json").read_text())
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if ours != manifest["python"]:
        fail_input(f"this bundle is for Python {manifest['python']}, but {sys.executable} is Python {ours}; "
                   f"run it with the host's Python {manifest['python']}, or build one for {ours}: "
                   f"make gpu-bundle GPU_BUNDLE_PYTHON={ours}")
    if not sys.platform.startswith("linux"):
        fail_input(f"this bundle is for Linux ({manifest['platform']}), not {sys.platform}")
    repo = (args.repo or HERE.parent).resolve()
    if not (repo / "platform" / "xsweep").is_dir():
        if args.repo is not None:
            fail_input(f"--repo: {args.repo} is not an xsweep checkout (no platform/xsweep); "
                       f"pass the checkout's folder")
        repo = None
    target = args.target.resolve()

    needed = fallbacks_needed(manifest)
    for why in needed.values():
        print(f"Installing a fallback: {why}")
    unused = {f["wheel"] for f in manifest.get("fallbacks", [])} - set(needed)
    try:
        count = install(HERE / manifest["archive"], target, skip=unused)
    except subprocess.CalledProcessError:
        print(f"install.py: pip could not install the wheels into {target} (its message is above)", file=sys.stderr)
        return 1
    print(f"Installed {count} packages into {target} (no network used); {len(unused)} of the host's own "
          "packages meet the bundle's bounds, and their fallbacks stay in the bundle.")

    paths = [str(target)] + ([str(repo / "platform"), str(repo)] if repo else [])
    pythonpath = os.pathsep.join(paths)
    modules = IMPORTS + (XSWEEP_IMPORTS if repo else [])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.run([sys.executable, "-c", CHECK, json.dumps(modules)], capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not proc.stdout.strip():
        print(f"The import check itself failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return 1
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    versions = ", ".join(f"{name} {v}" for name, v in result["versions"].items() if v)
    print(f"Versions seen with this PYTHONPATH: {versions}")
    if not result["versions"]["torch"]:
        print("warning: no torch on this Python: xsweep's trials need the host's torch and torchvision")
    for line in conflicts(manifest, pythonpath):
        print(f"warning: {line}")
    if result["failed"]:
        for module, error in result["failed"].items():
            print(f"FAILED: {module}: {error}", file=sys.stderr)
        return 1
    print(f"Checked: {len(modules)} imports, and an MLflow sqlite store took a run.")
    checkout = repo or Path("CHECKOUT")
    print(f"\nRun xsweep from the checkout (not installed) with:\n"
          f"  cd {checkout}\n"
          f"  export PYTHONPATH={target}{os.pathsep}{checkout / 'platform'}{os.pathsep}{checkout}\n"
          f"  {sys.executable} -m xsweep.cli run search_spaces/smoke.yaml")
    if repo is None:
        print("(no checkout found above this bundle: CHECKOUT is the xsweep checkout's folder; "
              "pass --repo to check its imports too)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
