"""Real servers for tests: PostgreSQL (as the `postgres` user, in a temp folder) and `mlflow server`.

Every process is started here and stopped by its own PID (or pg_ctl on its own data folder);
nothing is ever stopped by name.
"""

from __future__ import annotations

import glob
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(check, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (make system-deps installs it)")
    return found[-1]


@dataclass
class Postgres:
    folder: Path
    port: int

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_uri(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _as_postgres(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        # PostgreSQL refuses to run as root: everything runs as the `postgres` user.
        user = pwd.getpwnam("postgres")

        def demote():
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        kwargs = {"preexec_fn": demote} if os.getuid() == 0 else {}
        return subprocess.run(list(cmd), capture_output=True, text=True, check=check, **kwargs)

    def start(self) -> "Postgres":
        data = self.folder / "data"
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._as_postgres(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(data), "-l", str(self.folder / "log"), "-w", "start",
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder}",
        )
        return self

    def create_database(self, name: str) -> str:
        self._as_postgres(_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "-c", f"CREATE DATABASE {name}")
        return self.database_uri(name)

    def stop(self) -> None:
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop",
                          check=False)


@dataclass
class MlflowServer:
    backend_uri: str
    artifacts: Path
    port: int
    log: Path
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 120) -> "MlflowServer":
        self.artifacts.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: requests.get(f"{self.uri}/health", timeout=2).ok, timeout=timeout,
                 what=f"mlflow server (log: {self.log})")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # Its own process group (start_new_session): the server and the workers it forked.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

