"""What the GPU bundle carries: the project's requirements for a GPU sweep, resolved for the target
Python and platform by pip, less what the GPU host already has (host_packages.txt).

A package the host has is not carried, and nothing is carried for it: its own dependencies came
with the host. It is carried when the host's version is known and a carried package needs another
one. Where the host's version is not known and a carried package bounds it (protobuf>=5.26, say), it
is carried as a fallback: install.py installs it only if the host's own version turns out not to do.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

# pyproject's requirements a GPU sweep does without, and why.
LEFT_OUT = {
    "torch": "the GPU host's own CUDA build is used",
    "torchvision": "the GPU host's own build, made for its torch, is used",
    "psycopg": "only a PostgreSQL tracking server needs it; a GPU sweep tracks to sqlite or an http:// server",
}
# Extras taken in place of pyproject's. ray[default] is the dashboard and the Jobs API client
# (`xsweep submit`); the embedded Ray of a sweep starts without the dashboard, and [default]'s
# py-spy and virtualenv alone are 8.7 MB of wheels. ray[tune] is what Ray documents for Tune.
EXTRAS = {"ray": ("tune",)}
# MLflow is carried as its own distribution (xsweep reads `mlflow`'s version from its metadata),
# but with only what its client and its SQL tracking store need: resolved as its client,
# mlflow-skinny (the same Python code without the UI), plus the store's requirements as mlflow
# states them. The server's (Flask, gunicorn, graphene, docker, huey...) stay behind.
CLIENT_OF = {"mlflow": "mlflow-skinny"}
STORE_REQUIREMENTS = {"mlflow": ("sqlalchemy", "alembic")}


@dataclass(frozen=True)
class Target:
    python: str  # "3.12"
    platform: str  # "manylinux_2_28_x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platforms(self) -> list[str]:
        """Every platform tag a wheel for this platform may carry. pip takes `--platform` literally,
        but a wheel for glibc 2.17 (Ray's manylinux2014) also runs on a glibc 2.28 host."""
        match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", self.platform)
        if not match:
            return [self.platform]
        newest, arch = int(match.group(1)), match.group(2)
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags = []
        for minor in range(newest, 4, -1):
            tags.append(f"manylinux_2_{minor}_{arch}")
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{arch}")
        return tags

    def pip_options(self) -> list[str]:
        options = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp",
                   "--abi", self.abi]
        for tag in self.platforms():
            options += ["--platform", tag]
        return options

    def marker_environment(self, extra: str = "") -> dict[str, str]:
        """PEP 508 marker values on the target host (not on the machine building the bundle)."""
        arch = re.fullmatch(r"(?:manylinux_\d+_\d+|manylinux\d+|linux)_(\w+)", self.platform)
        machine = arch.group(1) if arch else ""
        full = f"{self.python}.0"
        return {
            "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
            "platform_machine": machine, "platform_python_implementation": "CPython",
            "platform_release": "", "platform_system": "Linux", "platform_version": "",
            "python_full_version": full, "python_version": self.python, "sys_platform": "linux",
            "extra": extra,
        }


@dataclass(frozen=True)
class Resolved:
    name: str
    version: str
    filename: str
    sha256: str | None
    requires: tuple[Requirement, ...]  # those that apply on the target, extras included
    requested: bool


@dataclass(frozen=True)
class Carried:
    name: str
    version: str
    filename: str
    sha256: str | None
    why: str


@dataclass(frozen=True)
class Fallback:
    """A host package of unknown version that carried packages bound: carried, installed if need be."""

    name: str
    version: str
    filename: str
    sha256: str | None
    requirement: str  # the carried packages' bounds together, e.g. ">=5.26.1,<7"
    needed_by: str  # which carried packages set them


@dataclass(frozen=True)
class Plan:
    carried: list[Carried]
    from_host: dict[str, str]  # package -> what on the host stands in for it
    left_out: dict[str, str]  # pyproject requirement -> why
    fallbacks: list[Fallback]


def read_host(path: Path) -> dict[str, str | None]:
    """host_packages.txt: canonical name -> version, None where the version is not known."""
    host: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            host[canonicalize_name(name)] = version or None
    return host


def project_requirements(pyproject: Path, *, store_requirements: dict[str, list[str]]) -> list[str]:
    """pyproject's requirements as a GPU sweep needs them (LEFT_OUT, EXTRAS, CLIENT_OF applied)."""
    requirements = []
    for text in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name in LEFT_OUT:
            continue
        if name in EXTRAS:
            requirement.extras = set(EXTRAS[name])
        if name in CLIENT_OF:
            requirement.name = CLIENT_OF[name]
            requirements += store_requirements[name]
        requirements.append(str(requirement))
    return requirements


def requires_dist(wheel: Path) -> list[str]:
    """A wheel's Requires-Dist lines, as written."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def resolve(requirements: list[str], *, target: Target, workdir: Path) -> dict[str, Resolved]:
    """pip's resolution of the requirements for the target, as if nothing were installed."""
    report = workdir / "resolution.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                    "--report", str(report), "--target", str(workdir / "unused"), *target.pip_options(),
                    *requirements], check=True)
    resolved = {}
    for item in json.loads(report.read_text())["install"]:
        metadata = item["metadata"]
        extras = [""] + list(item.get("requested_extras") or [])
        requires = []
        for text in metadata.get("requires_dist") or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(
                    requirement.marker.evaluate(target.marker_environment(extra)) for extra in extras):
                requires.append(requirement)
        url = item["download_info"]["url"]
        name = canonicalize_name(metadata["name"])
        resolved[name] = Resolved(
            name=name, version=metadata["version"], filename=url.rsplit("/", 1)[-1],
            sha256=item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256"),
            requires=tuple(requires), requested=item.get("requested", False))
    return resolved


def plan(resolved: dict[str, Resolved], *, host: dict[str, str | None]) -> Plan:
    """Walk the requirements from the requested packages down; stop at what the host has.

    pyproject's own pins of packages the host has (scikit-learn, scipy, pyarrow...) give way to the
    host's versions, as its torch does: they make the development machine reproducible, and a GPU
    sweep runs on the host's scientific stack. A carried package's requirements do not give way.
    """
    carried: dict[str, Carried] = {}
    from_host: dict[str, str] = {}
    bounds: dict[str, list[tuple[str, SpecifierSet]]] = {}  # unknown host version -> (who, its bound)
    todo: list[tuple[Resolved, str]] = []
    for item in resolved.values():
        if not item.requested:
            continue
        if item.name in host:
            version = host[item.name] or "(version not recorded)"
            from_host[item.name] = f"the host's {version} (pyproject pins {item.version})"
        else:
            todo.append((item, "required by xsweep"))
    carried_as = {client: distribution for distribution, client in CLIENT_OF.items()}
    while todo:
        item, why = todo.pop(0)
        if item.name in carried:
            continue
        carried[item.name] = Carried(item.name, item.version, item.filename, item.sha256, why)
        shown = carried_as.get(item.name, item.name)
        for requirement in item.requires:
            name = canonicalize_name(requirement.name)
            if name in carried or name not in resolved:
                continue
            version = host.get(name, "")
            if name not in host:
                todo.append((resolved[name], f"required by {shown}"))
            elif version is None or requirement.specifier.contains(version, prereleases=True):
                from_host.setdefault(name, f"the host's {version or '(version not recorded)'}")
                if version is None and str(requirement.specifier):
                    bounds.setdefault(name, []).append((shown, requirement.specifier))
            else:
                from_host.pop(name, None)
                todo.append((resolved[name], f"{shown} needs {name}{requirement.specifier}; the host has {version}"))
    for client in [name for name in carried if name in carried_as]:
        item = carried.pop(client)
        carried[carried_as[client]] = Carried(carried_as[client], item.version, "", None,
                                              f"{item.why} (what its client and SQL store need: CLIENT_OF)")
    fallbacks = []
    for name, needs in sorted(bounds.items()):
        item = resolved[name]  # pip's choice meets every one of the bounds
        fallbacks.append(Fallback(name, item.version, item.filename, item.sha256,
                                  requirement=str(SpecifierSet(",".join(str(bound) for _, bound in needs))),
                                  needed_by=", ".join(sorted({who for who, _ in needs}))))
    return Plan(carried=sorted(carried.values(), key=lambda c: c.name), from_host=dict(sorted(from_host.items())),
                left_out=dict(LEFT_OUT), fallbacks=fallbacks)
