"""Where a sweep's Tune results live: a local folder, an NFS path, or an s3:// URI.

Each `xsweep run` gets its own folder `<storage.path>/<name>-<YYYYmmdd-HHMMSS>`; `xsweep.json` in it
records what `xsweep resume` needs (the spec as written, the overrides, the MLflow parent run).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs

from xsweep.errors import StorageError

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


def open_storage(path: str, *, workdir: str | os.PathLike, endpoint_url: str | None = None,
                 endpoint_field: str = "storage.endpoint_url") -> Storage:
    """The storage at `path`; an s3:// one is checked first (see check_s3), so a sweep that could
    not write its results fails in a second, before Ray or MLflow start, and writes nothing.
    `endpoint_field` is what the user set the endpoint with, for the error message."""
    if path.startswith("s3://"):
        check_s3(path, endpoint_url=endpoint_url, endpoint_field=endpoint_field)
        # Credentials come from the usual AWS variables or files; MinIO and other S3-compatible
        # stores need their endpoint.
        filesystem = pyarrow.fs.S3FileSystem(endpoint_override=endpoint_url) if endpoint_url else \
            pyarrow.fs.S3FileSystem()
        return Storage(root=path.rstrip("/"), filesystem=filesystem)
    return Storage(root=str((Path(workdir) / path).resolve()), filesystem=None)


def check_writable(storage: Storage) -> None:
    """A local storage's folder exists or can be made, and can be written: tried by making what is
    missing and a file in it, then removing both, so a check that passes or fails leaves nothing.
    (Permission bits would not tell: root may write anywhere the kernel lets it, which /proc is not.)
    An s3:// storage was checked when it was opened."""
    if not storage.is_local:
        return
    root = Path(storage.root)
    missing = [folder for folder in [root, *root.parents] if not folder.exists()]  # deepest first
    made = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise StorageError(f"storage.path: cannot write to {root}: {exc.strerror or exc} "
                           f"(pick a folder you can write, or s3://bucket/prefix)") from None
    finally:
        for folder in reversed(made):
            folder.rmdir()


def check_s3(path: str, *, endpoint_url: str | None, endpoint_field: str = "storage.endpoint_url") -> None:
    """Raise StorageError unless `path`'s bucket can be reached with some credentials.

    Without this, a missing credential or a server that is down only shows when Tune first
    writes, after the MLflow parent run exists: as a traceback, or as retries that never end.
    """
    where = f"storage.path: {path}"
    if not _aws_credentials_configured():
        raise StorageError(
            f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            f"or AWS_PROFILE with ~/.aws/credentials; for MinIO, its access and secret key)")
    bucket = path[len("s3://"):].split("/", 1)[0]
    server = endpoint_url or "AWS S3"
    # One quick try: a closed port must not cost the SDK's retries with backoff, and a silent
    # host not its default timeouts. Tune itself gets the patient default filesystem.
    probe = pyarrow.fs.S3FileSystem(
        endpoint_override=endpoint_url, connect_timeout=5, request_timeout=10,
        retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1))
    try:
        info = probe.get_file_info(bucket)
    except OSError as exc:
        code, details = _s3_error(exc)
        if code == "NETWORK_CONNECTION":
            field = endpoint_field if endpoint_url else "storage.path"
            raise StorageError(f"{field}: cannot reach {server}: {details} "
                               f"(start the S3 server or fix {field})") from None
        raise StorageError(f"{where}: {server} refused bucket '{bucket}' with {code}: {details} "
                           f"(check the credentials, the bucket's permissions and its region)") from None
    if info.type == pyarrow.fs.FileType.NotFound:
        raise StorageError(f"{where}: bucket '{bucket}' does not exist on {server} "
                           f"(create it, or fix storage.path)")


def _aws_credentials_configured() -> bool:
    """Whether any source of the AWS SDK's default credential chain is there, seen without a
    network request: variables, credential/config files, a web identity (Kubernetes IRSA),
    container credentials (ECS, EKS Pod Identity), or an EC2 instance role."""
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return True
    if any(env.get(v) for v in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                "AWS_CONTAINER_CREDENTIALS_FULL_URI")):
        return True
    files = (env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials",
             env.get("AWS_CONFIG_FILE") or "~/.aws/config")
    if any(Path(f).expanduser().is_file() for f in files):
        return True
    # An instance role is served by the EC2 metadata endpoint; asking it off EC2 would only send
    # a request out to a link-local address, so we look for EC2 on the machine itself instead.
    return env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true" and _on_ec2()


def _on_ec2() -> bool:
    for marker in ("/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/board_vendor", "/sys/hypervisor/uuid"):
        try:
            text = Path(marker).read_text().strip().lower()
        except OSError:
            continue
        if text.startswith(("amazon", "ec2")):
            return True
    return False


def _s3_error(exc: OSError) -> tuple[str, str]:
    """('NETWORK_CONNECTION', 'Could not connect to server') from Arrow's long AWS SDK message."""
    text = " ".join(str(exc).split())
    code = re.search(r"AWS Error (\w+)", text)
    details = re.search(r"curlCode: \d+, ([^;]+)", text) or re.search(r"operation: ([^;]+)", text)
    return (code[1] if code else type(exc).__name__), (details[1].strip() if details else text)[:160]


def new_sweep_name(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_sweep_record(storage: Storage, sweep: str, record: dict) -> None:
    """The sweep's xsweep.json (sweep/record.py writes it typed)."""
    fs, folder = storage.fs_path(sweep)
    fs.create_dir(folder, recursive=True)
    # Under a temporary name, then renamed: a kill mid-write never leaves a half record that
    # `resume` would then fail to read. (An S3 object appears whole anyway.)
    partial = f"{folder}/{SWEEP_FILE}.partial"
    with fs.open_output_stream(partial) as out:
        out.write(json.dumps(record, indent=2, sort_keys=True).encode())
    fs.move(partial, f"{folder}/{SWEEP_FILE}")


def read_sweep_record(storage: Storage, sweep: str) -> dict | None:
    """The sweep's xsweep.json, None when the folder has none (sweep/record.py reads it typed)."""
    fs, folder = storage.fs_path(sweep, SWEEP_FILE)
    try:
        with fs.open_input_stream(folder) as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, OSError):
        return None


# A sweep folder's name: its spec's name and when it started (new_sweep_name).
SWEEP_FOLDER = re.compile(r"(.+)-(\d{8}-\d{6})")


def find_sweeps(storage: Storage, name: str) -> list[str]:
    """Sweep folders of that spec name, oldest first (their timestamps sort)."""
    return sorted(folder for folder in _sweep_folders(storage) if SWEEP_FOLDER.fullmatch(folder)[1] == name)


def sweep_names(storage: Storage) -> list[str]:
    """The spec names that have sweep folders in the storage."""
    return sorted({SWEEP_FOLDER.fullmatch(folder)[1] for folder in _sweep_folders(storage)})


def _sweep_folders(storage: Storage) -> list[str]:
    fs, root = storage.fs_path()
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except OSError:
        return []
    return [e.base_name for e in entries
            if e.type == pyarrow.fs.FileType.Directory and SWEEP_FOLDER.fullmatch(e.base_name)]
