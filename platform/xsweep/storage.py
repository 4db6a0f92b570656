"""Where a sweep's Tune results live: a local folder, an NFS path, or an s3:// URI.

Each `xsweep run` gets its own folder `<storage.path>/<name>-<YYYYmmdd-HHMMSS>`; `xsweep.json` in it
records what `xsweep resume` needs (the spec as written, the overrides, the MLflow parent run).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs

SWEEP_FILE = "xsweep.json"


@dataclass(frozen=True)
class Storage:
    root: str  # absolute local path or s3://bucket/prefix
    filesystem: pyarrow.fs.FileSystem | None  # None: let Tune pick the local filesystem

    @property
    def tune_path(self) -> str:
        """The root as Tune wants it: given a filesystem object, Tune takes 'bucket/prefix', no scheme."""
        return self.root if self.is_local else self.root[len("s3://"):]

    @property
    def is_local(self) -> bool:
        return not self.root.startswith("s3://")

    def fs_path(self, *parts: str) -> tuple[pyarrow.fs.FileSystem, str]:
        if self.is_local:
            return pyarrow.fs.LocalFileSystem(), os.path.join(self.root, *parts)
        return self.filesystem, "/".join([self.root[len("s3://"):].rstrip("/"), *parts])


def open_storage(path: str, *, workdir: str | os.PathLike, endpoint_url: str | None = None) -> Storage:
    if path.startswith("s3://"):
        # Credentials come from the usual AWS variables or files; MinIO and other S3-compatible
        # stores need their endpoint.
        filesystem = pyarrow.fs.S3FileSystem(endpoint_override=endpoint_url) if endpoint_url else \
            pyarrow.fs.S3FileSystem()
        return Storage(root=path.rstrip("/"), filesystem=filesystem)
    return Storage(root=str((Path(workdir) / path).resolve()), filesystem=None)


def new_sweep_name(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_sweep_record(storage: Storage, sweep: str, record: dict) -> None:
    fs, folder = storage.fs_path(sweep)
    fs.create_dir(folder, recursive=True)
    with fs.open_output_stream(f"{folder}/{SWEEP_FILE}") as out:
        out.write(json.dumps(record, indent=2, sort_keys=True).encode())


def read_sweep_record(storage: Storage, sweep: str) -> dict | None:
    fs, folder = storage.fs_path(sweep, SWEEP_FILE)
    try:
        with fs.open_input_stream(folder) as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, OSError):
        return None


def find_sweeps(storage: Storage, name: str) -> list[str]:
    """Sweep folders of that spec name, oldest first (their timestamps sort)."""
    fs, root = storage.fs_path()
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except OSError:
        return []
    prefix = f"{name}-"
    return sorted(
        e.base_name for e in entries
        if e.type == pyarrow.fs.FileType.Directory and e.base_name.startswith(prefix)
        and e.base_name[len(prefix):].replace("-", "").isdigit()
    )
