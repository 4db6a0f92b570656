"""What identifies the code, packages and data of a sweep, where MLflow's UI shows it, and what
`xsweep reproduce` compares against the machine it runs on:

- the spec file as `mlflow.source.name` (the UI's Source column: its name, its path on hover) and the
  git commit as `mlflow.source.git.commit` (the Version column), on the parent and every trial;
- the installed packages, `environment/packages.txt` on the parent run (name==version per line);
- the data's fingerprint (training/fingerprint.py) as a dataset input of every trial run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from importlib.metadata import distributions
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_SOURCE_NAME = "mlflow.source.name"
MLFLOW_SOURCE_TYPE = "mlflow.source.type"
# MLflow's tag declaring what an experiment holds: its UI lists a model-training experiment with
# Runs, Models and Traces rather than GenAI's pages.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
PACKAGES_ARTIFACT = "environment/packages.txt"
SHOWN_DIFFERENCES = 8  # packages listed by name in reproduce's note; the rest are counted


def source_tags(spec_source: str | None, commit: str | None) -> dict[str, str]:
    """The tags of a run's Source and Version columns: the spec the sweep was started from, the commit."""
    tags = {MLFLOW_SOURCE_NAME: spec_source, MLFLOW_SOURCE_TYPE: "LOCAL"} if spec_source else {}
    return {**tags, **({MLFLOW_GIT_COMMIT: commit} if commit else {})}


def installed_packages() -> dict[str, str]:
    """name -> version of every distribution installed in this Python (names lowercased, as pip
    compares them). Not Ray's vendored copies (psutil, colorama), which a Ray driver has on its
    sys.path: they belong to Ray, and a reproduce without Ray would report them missing."""
    path = [entry for entry in sys.path if not entry.rstrip(os.sep).endswith(os.path.join("ray", "thirdparty_files"))]
    found = {}
    for dist in distributions(path=path):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name:
            found.setdefault(name, dist.version)
    return dict(sorted(found.items()))


def packages_text(packages: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in packages.items())


def parse_packages(text: str) -> dict[str, str]:
    pairs = (line.strip().partition("==") for line in text.splitlines() if "==" in line)
    return {name: version for name, _, version in pairs}


def recorded_packages(client: MlflowClient, *, sweep_run_id: str) -> dict[str, str] | None:
    """The packages a sweep's parent run recorded (PACKAGES_ARTIFACT); None where it recorded none."""
    try:
        with tempfile.TemporaryDirectory(prefix="xsweep-packages-") as tmp:
            path = client.download_artifacts(sweep_run_id, PACKAGES_ARTIFACT, dst_path=tmp)
            return parse_packages(Path(path).read_text())
    except (MlflowException, OSError):
        return None


def package_differences(recorded: dict[str, str], here: dict[str, str]) -> list[str]:
    """'torch 2.14.1 -> 2.15.0', 'timm: not installed here', 'foo 1.0: not in the sweep's' ..."""
    out = []
    for name in sorted(set(recorded) | set(here)):
        theirs, ours = recorded.get(name), here.get(name)
        if theirs == ours:
            continue
        if ours is None:
            out.append(f"{name} {theirs}: not installed here")
        elif theirs is None:
            out.append(f"{name} {ours}: not installed where the sweep ran")
        else:
            out.append(f"{name} {theirs} -> {ours}")
    return out


def dataset_input(fingerprint) -> DatasetInput:
    """A trial's data as MLflow records a dataset: name, digest, where it came from."""
    dataset = Dataset(name=fingerprint.name, digest=fingerprint.digest, source_type="local",
                      source=fingerprint.source, profile=f'{{"covers": "{fingerprint.covers}"}}')
    return DatasetInput(dataset=dataset, tags=[InputTag("mlflow.data.context", "training")])


def recorded_digest(run) -> str | None:
    """The data digest an MLflow run recorded as its (training) dataset input."""
    inputs = getattr(run, "inputs", None)
    for item in (inputs.dataset_inputs if inputs else []):
        return item.dataset.digest
    return None
