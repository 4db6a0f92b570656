"""Wheels rewritten for the bundle: without the parts xsweep never loads (STRIP), and uncompressed,
so that the one xz archive of the bundle compresses them all together (Ray's three native binaries
share much of their code, which a 128 MiB dictionary finds and zip's per-file deflate cannot).

A rewritten wheel is still a valid wheel: its RECORD lists exactly the files it holds, with their
hashes, and its console scripts name only modules it still has.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import io
import lzma
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# What each carried package goes without, by path prefix inside its wheel, and why.
# Each was checked by running a sweep from a bundle without it (docs/GPU.md, "GPU hosts without a package index").
STRIP: dict[str, dict[str, str]] = {
    "ray": {
        "ray/jars/": "Java workers' jars: a Python sweep never starts a Java worker",
        "ray/rllib/": "RLlib (reinforcement learning)",
        "ray/serve/": "Ray Serve (model serving)",
        "ray/llm/": "Ray LLM",
        "ray/dashboard/client/build/": "the dashboard's web front-end: xsweep starts Ray without the dashboard",
    },
    "mlflow": {
        "mlflow/server/js/": "the MLflow UI's web front-end (so `xsweep ui` does not run from the bundle)",
    },
}
# xz's fastest preset, but with a dictionary larger than Ray's biggest binary, so that what its three
# binaries share is stored once: 41 MiB in about 20 s here (preset 6, the default: 32 MiB in 3 minutes).
# The x86 filter makes machine code compress better. Unpacking needs 128 MiB of memory.
XZ_FILTERS = [{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": 128 << 20}]


@dataclass(frozen=True)
class Repacked:
    path: Path
    stripped: dict[str, int]  # reason -> bytes removed (uncompressed)
    kept_bytes: int  # uncompressed bytes of what is left


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _without_stripped_scripts(text: str, prefixes: list[str]) -> str:
    """entry_points.txt less the console scripts whose module was stripped (Ray's `serve`)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # entry point names are case-sensitive
    parser.read_string(text)
    for section in parser.sections():
        for name, value in list(parser[section].items()):
            module_path = value.split(":")[0].strip().replace(".", "/") + "/"
            if any(module_path.startswith(prefix) for prefix in prefixes):
                parser.remove_option(section, name)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def repack(wheel: Path, *, package: str, out_dir: Path) -> Repacked:
    """The wheel rewritten into out_dir (same file name), uncompressed, less STRIP[package]."""
    rules = STRIP.get(package, {})
    stripped = dict.fromkeys(rules.values(), 0)
    out = out_dir / wheel.name
    with zipfile.ZipFile(wheel) as source:
        record_name = next(n for n in source.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
        entry_points_name = record_name.replace("/RECORD", "/entry_points.txt")
        kept: list[tuple[zipfile.ZipInfo, bytes]] = []
        for info in source.infolist():
            if info.filename == record_name:
                continue
            rule = next((reason for prefix, reason in rules.items() if info.filename.startswith(prefix)), None)
            if rule is not None:
                stripped[rule] += info.file_size
                continue
            data = source.read(info)
            if info.filename == entry_points_name and rules:
                data = _without_stripped_scripts(data.decode(), list(rules)).encode()
            kept.append((info, data))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for info, data in kept:
        if not info.is_dir():
            writer.writerow([info.filename, _record_hash(data), len(data)])
    writer.writerow([record_name, "", ""])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info, data in kept:
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy.external_attr = info.external_attr  # keeps the native binaries executable
            target.writestr(copy, data)
        target.writestr(zipfile.ZipInfo(record_name, date_time=kept[0][0].date_time), record.getvalue())
    return Repacked(out, stripped, sum(len(data) for _, data in kept))


def archive(wheels: list[Path], *, out: Path) -> None:
    """One .tar.xz of the wheels, flat."""
    with lzma.open(out, "wb", format=lzma.FORMAT_XZ, filters=XZ_FILTERS) as xz, \
            tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for wheel in wheels:
            tar.add(wheel, arcname=wheel.name)
