"""`xsweep submit`, `jobs`, `stop`: run a sweep on an existing Ray cluster through its Jobs API.

    xsweep submit SPEC --address http://HEAD:8265 [--set a.b=v] [--no-wait]
      spec validated here --> the project folder uploaded as the job's working_dir (jobs/runtime_env.yaml)
      --> on the head: python jobs/entrypoint.py SPEC --set ... --> `xsweep run SPEC --address auto`
      --> the job's log streamed here; exit 0 when the job succeeded, 1 when it failed or was stopped

The job is the sweep's driver: it runs on the head node and writes MLflow from there, so
tracking.uri (and MLflow's credentials) must be what the *cluster* reaches. Ray's token
authentication: Ray's own loader reads the token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token and sends it as a header; we never print or log it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import secrets
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from xsweep import compat
from xsweep.errors import SubmitError, reason
from xsweep.tracking.uri import redact

ENTRYPOINT = "jobs/entrypoint.py"
RUNTIME_ENV = "jobs/runtime_env.yaml"
# Shipped with every job (runtime_env py_modules): the cluster runs this checkout's xsweep, the
# one that validated the spec, whatever version its image has installed.
PY_MODULE = "platform/xsweep"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# The Jobs API answers in well under a second; a head that takes this long is down or unreachable.
REQUEST_TIMEOUT_S = 15.0
# How long a head that has just started may take to have its job agent up.
AGENT_WAIT_S = 120.0
# After the log stream ends, how long the job's status may take to turn terminal.
STATUS_WAIT_S = 60.0

log = logging.getLogger("xsweep.submit")


# ---- what is sent ----------------------------------------------------------------------------------

def project_root(spec_path: str | os.PathLike) -> Path:
    """The xsweep project that holds the spec: its folder becomes the job's working_dir."""
    for folder in Path(spec_path).resolve().parents:
        if (folder / ENTRYPOINT).is_file() and (folder / "pyproject.toml").is_file():
            return folder
    raise SubmitError(f"{spec_path}: not inside an xsweep project (no {ENTRYPOINT} in a folder above it); "
                      f"put the spec under the project's search_spaces/")


def runtime_env(root: Path) -> dict:
    """jobs/runtime_env.yaml, plus the project as working_dir and xsweep as a shipped module."""
    import yaml

    env = yaml.safe_load((root / RUNTIME_ENV).read_text()) or {}
    env["working_dir"] = str(root)
    env["py_modules"] = [str(root / PY_MODULE), *env.get("py_modules", [])]
    return env


def entrypoint(spec_relative: str, overrides: list[str]) -> str:
    args = ["python", ENTRYPOINT, spec_relative]
    for item in overrides:
        args += ["--set", item]
    return shlex.join(args)


def submission_id(spec_name: str) -> str:
    """Readable and unique, so that `xsweep jobs` shows which sweep a job is."""
    return f"xsweep-{spec_name}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _redact_text(text: str) -> str:
    """Any URI password in a text (an entrypoint's --set tracking.uri=...) as ***."""
    return re.sub(r"(\w+://[^:/\s@]+:)[^@\s]+@", r"\1***@", text)


def _is_loopback(host: str | None) -> bool:
    if host in ("localhost", None):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_warnings(spec, *, address: str) -> list[str]:
    """What works on this machine but not from a job on the cluster's head node."""
    warnings = []
    uri = spec.tracking.uri
    if uri is None:
        warnings.append("note: tracking.uri is not set: the job uses the cluster's MLFLOW_TRACKING_URI, else a "
                        "sqlite file in its temporary working_dir (--set tracking.uri=http://... to choose)")
    elif uri.startswith("sqlite:") or "://" not in uri:
        warnings.append(f"warning: tracking.uri: {uri} is a file on the cluster's head node, not here; "
                        f"use an MLflow server (--set tracking.uri=http://...)")
    else:
        parts = urlsplit(uri)
        if parts.password is not None:
            warnings.append("warning: tracking.uri: its password is stored with the job's entrypoint, which the "
                            "dashboard shows; give the cluster MLFLOW_TRACKING_PASSWORD instead")
        if _is_loopback(parts.hostname) and not _is_loopback(urlsplit(address).hostname):
            warnings.append(f"warning: tracking.uri: {redact(uri)} is the head node itself to the job; "
                            f"use an address the head reaches")
    path = spec.storage.path
    if not path.startswith("s3://") and not os.path.isabs(path):
        warnings.append(f"note: storage.path '{path}' is relative: the job uses the cluster's XSWEEP_STORAGE_PATH, "
                        f"else a folder in its temporary working_dir (use s3://... or a shared absolute path)")
    return warnings


# ---- the Jobs API client ---------------------------------------------------------------------------

def normalize_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or ""
    if not address:
        raise SubmitError("--address: missing; pass the Ray dashboard's address, e.g. "
                          "--address http://127.0.0.1:8265 (or set RAY_API_SERVER_ADDRESS)")
    if "://" not in address:
        address = f"http://{address}"
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubmitError(f"--address: {address} is not a Jobs API address; pass the head's dashboard "
                          f"address http://HOST:8265 (not ray:// nor the GCS port)")
    return address.rstrip("/")


def _use_token_if_available() -> None:
    """Send the token whenever one is there, as `ray job submit` does; RAY_AUTH_MODE, if set, decides."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and not os.environ.get("RAY_AUTH_TOKEN"):
        try:
            readable = bool(Path(path).expanduser().read_text().strip())
        except OSError:
            readable = False
        if not readable:  # Ray's loader would raise with a page of text
            raise SubmitError(f"RAY_AUTH_TOKEN_PATH: {path} cannot be read or is empty "
                              f"(point it at a file holding the head's token, or unset it)")
    if os.environ.get("RAY_AUTH_MODE") is None:
        compat.send_ray_token_if_available()


def _auth_error(address: str, exc: BaseException) -> SubmitError:
    text = str(exc).lower()
    if text.startswith("authentication failed") or "invalid" in text:  # HTTP 403, not 401
        return SubmitError(f"--address: {address} rejected the Ray token; use the head's token "
                           f"(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
    return SubmitError(f"--address: {address} needs a Ray token; set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
                       f"(or put the head's token in ~/.ray/auth_token)")


class Jobs:
    """Ray's JobSubmissionClient with timeouts and one-line errors."""

    def __init__(self, address: str | None):
        import requests

        self.address = normalize_address(address)
        _use_token_if_available()
        from ray.exceptions import AuthenticationError

        self._auth_errors = (AuthenticationError,)
        try:
            # The client asks for the cluster's version on construction; a dead head must not hang it.
            self.client = compat.job_client(self.address, timeout_s=REQUEST_TIMEOUT_S)
        except AuthenticationError as exc:
            raise _auth_error(self.address, exc) from None
        except (ConnectionError, RuntimeError, OSError, requests.RequestException) as exc:
            why = "" if str(exc).startswith("Failed to connect to Ray") else f": {reason(exc)}"
            raise SubmitError(f"--address: cannot reach Ray's Jobs API at {self.address}{why} "
                              f"(check the address and that the head node is up)") from None

    def call(self, what: str, method: str, *args, **kwargs):
        import requests

        try:
            return getattr(self.client, method)(*args, **kwargs)
        except self._auth_errors as exc:
            raise _auth_error(self.address, exc) from None
        except requests.RequestException as exc:
            raise SubmitError(f"--address: lost Ray's Jobs API at {self.address} while {what}: "
                              f"{reason(exc)} (check that the head node is up)") from None

    def submit(self, **kwargs) -> None:
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                self.call("submitting the job", "submit_job", **kwargs)
                return
            except RuntimeError as exc:
                # A head that has just started has no job agent for a few seconds (or minutes, on a
                # busy machine): Ray answers 500 "No available agent"; worth waiting for.
                if "no available agent" in str(exc).lower() and time.monotonic() < deadline:
                    time.sleep(2.0)
                    continue
                raise SubmitError(f"--address: {self.address} refused the job: {reason(exc)}") from None

    def info(self, job_id: str):
        try:
            return self.call(f"looking up job {job_id}", "get_job_info", job_id)
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                raise SubmitError(f"JOB_ID: no job {job_id} on {self.address} "
                                  f"(`xsweep jobs --address {self.address}` lists them)") from None
            raise

    def wait_terminal(self, job_id: str, *, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while True:
            info = self.info(job_id)
            if str(info.status) in TERMINAL or time.monotonic() > deadline:
                return info
            time.sleep(1.0)


def follow_logs(jobs: Jobs, job_id: str, *, out=None) -> None:
    """Stream the job's log until it ends: Ray's websocket tail, polling if that connection drops."""
    out = out or sys.stdout
    printed = 0

    async def tail() -> None:
        nonlocal printed
        async for chunk in jobs.client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            printed += len(chunk)

    try:
        asyncio.run(tail())
        return
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the stream dropped: fall back to polling
        log.debug("log stream dropped (%s); polling", exc)
    while True:
        status = str(jobs.info(job_id).status)
        text = jobs.call(f"reading the log of job {job_id}", "get_job_logs", job_id) or ""
        if len(text) > printed:
            out.write(text[printed:])
            out.flush()
            printed = len(text)
        if status in TERMINAL:
            return
        time.sleep(2.0)


# ---- commands ----------------------------------------------------------------------------------------

def cmd_submit(args) -> int:
    from xsweep.spec import load_spec

    spec = load_spec(args.spec, overrides=args.set)  # SpecError: every problem, exit 2, nothing sent
    root = project_root(args.spec)
    spec_relative = Path(args.spec).resolve().relative_to(root).as_posix()
    jobs = Jobs(args.address)
    for line in cluster_warnings(spec, address=jobs.address):
        print(line, file=sys.stderr)

    job_id = submission_id(spec.name)
    command = entrypoint(spec_relative, list(args.set))
    env = runtime_env(root)
    jobs.submit(entrypoint=command, submission_id=job_id, runtime_env=env,
                metadata={"xsweep.spec": spec_relative, "xsweep.experiment": spec.experiment})
    print(f"job {job_id} submitted to {jobs.address}", flush=True)
    print(_tracking_line(spec), flush=True)
    if args.no_wait:
        print(f"follow it: ray job logs --follow {job_id} --address {jobs.address}\n"
              f"stop it:   xsweep stop {job_id} --address {jobs.address}", flush=True)
        return 0

    try:
        follow_logs(jobs, job_id)
        info = jobs.wait_terminal(job_id, timeout=STATUS_WAIT_S)
    except KeyboardInterrupt:
        print(f"\ndetached from job {job_id}; it keeps running "
              f"(`xsweep stop {job_id} --address {jobs.address}` stops it)", file=sys.stderr)
        return 130
    status = str(info.status)
    # Ray's message repeats the log's tail after its first line; the log is already above.
    why = (info.message or "").strip().splitlines()[0].rstrip(",:") if info.message else ""
    print(f"job {job_id}: {status}" + (f" ({why})" if status != "SUCCEEDED" and why else ""), flush=True)
    print(_tracking_line(spec), flush=True)
    return 0 if status == "SUCCEEDED" else 1


def _tracking_line(spec) -> str:
    where = redact(spec.tracking.uri) if spec.tracking.uri else "the cluster's MLFLOW_TRACKING_URI"
    return f"MLflow: experiment '{spec.experiment}' at {where}"


def _when(millis: int | None) -> str:
    return datetime.fromtimestamp(millis / 1000).strftime("%Y-%m-%d %H:%M:%S") if millis else "-"


def _ellipsize(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_jobs(args) -> int:
    jobs = Jobs(args.address)
    listed = jobs.call("listing jobs", "list_jobs")
    rows = [(j.submission_id or j.job_id or "-", str(j.status), _when(j.start_time),
             _ellipsize(_redact_text(j.entrypoint or ""))) for j in sorted(listed, key=lambda j: j.start_time or 0)]
    if not rows:
        print(f"no jobs on {jobs.address}")
        return 0
    header = ("JOB ID", "STATUS", "STARTED", "ENTRYPOINT")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3])
    return 0


def cmd_stop(args) -> int:
    jobs = Jobs(args.address)
    info = jobs.info(args.job_id)
    if str(info.status) in TERMINAL:
        print(f"job {args.job_id} already ended: {info.status}")
        return 0
    jobs.call(f"stopping job {args.job_id}", "stop_job", args.job_id)
    info = jobs.wait_terminal(args.job_id, timeout=STATUS_WAIT_S)
    print(f"job {args.job_id}: {info.status}")
    return 0 if str(info.status) in TERMINAL else 1
