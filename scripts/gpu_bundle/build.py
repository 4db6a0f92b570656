"""Builds the offline bundle for GPU hosts that have torch but no Ray, MLflow or Optuna, and no
package index: `make gpu-bundle` (docs/GPU.md, "GPU hosts without a package index").

    python scripts/gpu_bundle/build.py [--python 3.12] [--platform manylinux_2_28_x86_64] [--out gpu-bundle]

The bundle folder holds wheels.tar.xz (the wheels, some repacked: repack.STRIP), install.py (installs
them offline into a folder and checks xsweep's imports) and manifest.json (each package, its version
and sizes, what was stripped, what the host provides instead, the total). Downloads are kept in a
cache folder, so a second build downloads nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import repack
import requirements as reqs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The bundle travels in a working tree limited to 64 MiB, beside the checkout itself.
LIMIT_BYTES = 56 << 20
# A fallback (requirements.Fallback) is carried only if its wheel is at most this big: the small pure
# Python packages whose old versions break imports (protobuf, typing-extensions, packaging...). The
# scientific stack's bounds are years old (pyarrow>=9), a host with torch meets them, and its wheels
# alone would fill the bundle.
FALLBACK_MAX_BYTES = 2 << 20
ARCHIVE = "wheels.tar.xz"
INSTALLER = "install.py"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xsweep" / "gpu-bundle-downloads"


class UserInputError(Exception):
    """Bad command-line input: one line, exit code 2."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="the GPU host's Python, MAJOR.MINOR (default 3.12)")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64",
                        help="the GPU host's wheel platform tag (default manylinux_2_28_x86_64: glibc >= 2.28, x86-64)")
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-bundle", help="the bundle folder (replaced)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where downloaded wheels are kept")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python):
        raise UserInputError(f"--python: {args.python!r} is not MAJOR.MINOR; pass e.g. --python 3.12")
    if not re.fullmatch(r"[a-z0-9_]+", args.platform):
        raise UserInputError(f"--platform: {args.platform!r} is not a wheel platform tag; pass e.g. "
                             f"--platform manylinux_2_28_x86_64")
    return args


def pip_download(specs: list[str], *, target: reqs.Target, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(dest),
                    *target.pip_options(), *specs], check=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_wheel(cache: Path, *, name: str, version: str, filename: str = "", sha256: str | None = None) -> Path:
    """A downloaded wheel, checked against the hash the package index gave pip's resolution."""
    if filename:
        path = cache / filename
    else:
        prefix = f"{canonicalize_name(name).replace('-', '_')}-{version}-"
        path = next(p for p in sorted(cache.glob("*.whl")) if p.name.lower().startswith(prefix))
    if sha256 and _sha256(path) != sha256:
        raise RuntimeError(f"{path.name}: its sha256 differs from the one the package index gave; "
                           f"delete it from {cache} and build again")
    return path


def left_behind(wheel: Path, *, carried: set[str], host: set[str], target: reqs.Target) -> list[str]:
    """The carried package's own requirements that neither the bundle nor the host provides (the
    MLflow server's): install.py does not report them as missing."""
    names = set()
    for requirement in map(Requirement, reqs.requires_dist(wheel)):
        name = canonicalize_name(requirement.name)
        applies = requirement.marker is None or requirement.marker.evaluate(target.marker_environment())
        if applies and name not in carried and name not in host:
            names.add(name)
    return sorted(names)


def what_to_carry(target: reqs.Target, *, host: dict[str, str | None], cache: Path, workdir: Path) -> reqs.Plan:
    pyproject = ROOT / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = {canonicalize_name(r.name): r for r in map(Requirement, dependencies)}
    # The SQL store's bounds, as the full distribution states them in its own metadata.
    store = {}
    for name, needs in reqs.STORE_REQUIREMENTS.items():
        pip_download([str(pins[name])], target=target, dest=cache)
        wheel = cached_wheel(cache, name=name, version=next(iter(pins[name].specifier)).version)
        store[name] = [text for text in reqs.requires_dist(wheel) if canonicalize_name(Requirement(text).name) in needs]
    resolved = reqs.resolve(reqs.project_requirements(pyproject, store_requirements=store), target=target,
                            workdir=workdir)
    return reqs.plan(resolved, host=host)


def build(args: argparse.Namespace) -> dict:
    target = reqs.Target(python=args.python, platform=args.platform)
    host = reqs.read_host(HERE / "host_packages.txt")
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as tmp:
        work = Path(tmp)
        plan = what_to_carry(target, host=host, cache=args.cache, workdir=work)
        pip_download([f"{c.name}=={c.version}" for c in [*plan.carried, *plan.fallbacks]], target=target,
                     dest=args.cache)

        staging = work / "wheels"
        staging.mkdir()
        packages, wheels = [], []
        for carried in plan.carried:
            wheel = cached_wheel(args.cache, name=carried.name, version=carried.version, filename=carried.filename,
                                 sha256=carried.sha256)
            out = repack.repack(wheel, package=carried.name, out_dir=staging)
            wheels.append(out.path)
            packages.append({
                "name": carried.name, "version": carried.version, "wheel": wheel.name, "why": carried.why,
                "wheel_bytes": wheel.stat().st_size, "installed_bytes": out.kept_bytes, "stripped": out.stripped,
                "left_behind": left_behind(wheel, carried={c.name for c in plan.carried}, host=set(host),
                                           target=target),
            })

        fallbacks, trusted = [], {}
        for fallback in plan.fallbacks:
            wheel = cached_wheel(args.cache, name=fallback.name, version=fallback.version,
                                 filename=fallback.filename, sha256=fallback.sha256)
            if wheel.stat().st_size > FALLBACK_MAX_BYTES:
                trusted[fallback.name] = f"{fallback.name}{fallback.requirement}, required by {fallback.needed_by}"
                continue
            wheels.append(repack.repack(wheel, package=fallback.name, out_dir=staging).path)
            fallbacks.append({"name": fallback.name, "version": fallback.version, "wheel": wheel.name,
                              "requirement": fallback.requirement, "needed_by": fallback.needed_by,
                              "wheel_bytes": wheel.stat().st_size})

        bundle = work / "bundle"
        bundle.mkdir()
        repack.archive(wheels, out=bundle / ARCHIVE)
        shutil.copy2(HERE / INSTALLER, bundle / INSTALLER)
        manifest = {
            "python": args.python, "platform": args.platform, "archive": ARCHIVE,
            "packages": packages, "from_host": plan.from_host, "fallbacks": fallbacks,
            "trusted_to_the_host": trusted, "left_out": plan.left_out,
            "archive_bytes": (bundle / ARCHIVE).stat().st_size, "limit_bytes": LIMIT_BYTES,
        }
        manifest["total_bytes"] = 0
        while True:  # the total counts the manifest that states it: write until the two agree
            (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            total = sum(p.stat().st_size for p in bundle.iterdir())
            if total == manifest["total_bytes"]:
                break
            manifest["total_bytes"] = total
        if total > LIMIT_BYTES:
            raise RuntimeError(f"the bundle is {total / 2**20:.1f} MiB, over its {LIMIT_BYTES >> 20} MiB limit; "
                               f"strip more (scripts/gpu_bundle/repack.py STRIP) or carry less")
        # Replace the old bundle only once the new one is whole.
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(bundle), str(args.out))
    return manifest


def summary(manifest: dict, out: Path) -> str:
    mib = 2 ** 20
    lines = [f"{'package':<28} {'version':<18} {'wheel MiB':>9} {'installed MiB':>13}  stripped"]
    for p in sorted(manifest["packages"], key=lambda p: -p["wheel_bytes"]):
        stripped = sum(p["stripped"].values())
        lines.append(f"{p['name']:<28} {p['version']:<18} {p['wheel_bytes'] / mib:9.2f} "
                     f"{p['installed_bytes'] / mib:13.2f}  {f'{stripped / mib:.1f} MiB' if stripped else ''}")
    lines.append(f"{len(manifest['packages'])} packages for CPython {manifest['python']} on {manifest['platform']}; "
                 f"{len(manifest['from_host'])} more from the host ({len(manifest['fallbacks'])} of them carried as "
                 f"fallbacks, installed where the host's version does not do). Bundle: {out}/, "
                 f"{manifest['total_bytes'] / mib:.1f} MiB (limit {manifest['limit_bytes'] / mib:.0f} MiB).")
    lines.append(f"Install on the GPU host: python3 {out.name}/{INSTALLER} TARGET_FOLDER")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UserInputError as exc:
        print(f"gpu_bundle: {exc}", file=sys.stderr)
        return 2
    try:
        manifest = build(args)
    except subprocess.CalledProcessError as exc:
        print(f"gpu_bundle: pip failed ({' '.join(exc.cmd[3:5])}); see its message above. A platform or "
              f"Python no wheel exists for makes pip find no version.", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"gpu_bundle: {exc}", file=sys.stderr)
        return 1
    print(summary(manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
