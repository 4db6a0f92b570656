"""Real servers for tests: PostgreSQL (as the `postgres` user, in a temp folder) and `mlflow server`.

Every process is started here and stopped by its own PID (or pg_ctl on its own data folder);
nothing is ever stopped by name.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent


class OutputLines:
    """A running command's output, line by line as it prints it, read on a thread so that a test can
    watch the console (xsweep prints each epoch as the driver takes it in) while the command runs."""

    def __init__(self, proc: subprocess.Popen):
        self._lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self._lines.extend(proc.stdout), daemon=True)
        self._reader.start()

    def so_far(self) -> list[str]:
        return list(self._lines)

    def text(self, timeout: float = 60) -> str:
        """All of it, once the command has ended and closed its output."""
        self._reader.join(timeout=timeout)
        return "".join(self._lines)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_session(process: subprocess.Popen | None, *, timeout: float = 20) -> None:
    """Stop a server started with start_new_session=True: its process group (the server and the
    workers it forked), SIGTERM first, SIGKILL after `timeout`."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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
    app_name: str | None = None  # e.g. "basic-auth", as docker/compose.yaml runs it
    env: dict = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 120) -> "MlflowServer":
        self.artifacts.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             *(["--app-name", self.app_name] if self.app_name else [])],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ, **self.env),
        )
        wait_for(lambda: requests.get(f"{self.uri}/health", timeout=2).ok, timeout=timeout,
                 what=f"mlflow server (log: {self.log})")
        return self

    def stop(self) -> None:
        stop_session(self.process)
        self.process = None



# ---- A multi-node Ray cluster on this machine (tests/test_submit.py) -------------------------------
# Every node is a `ray start --block` under our own Popen in its own session. Ray's worker
# processes put themselves in process groups of their own, so besides the `ray start` process
# group we remember every descendant (from /proc) and stop those by PID too.

def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name (2nd field) may hold spaces: the fields after its ')' are fixed.
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22): a PID reused by another process has another one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below `pid`, children first."""
    tree, found, todo = _proc_children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            started = _start_time(child)
            if started is not None:
                found.append((child, started))
                todo.append(child)
    return found


def kill_remembered(processes: list[tuple[int, str]], sig: int = signal.SIGKILL) -> list[int]:
    """Signal those of `processes` still alive (same PID and start time); returns their PIDs."""
    alive = []
    for pid, started in processes:
        if _start_time(pid) == started:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
    return alive


def still_running(processes: list[tuple[int, str]]) -> list[int]:
    """Those of `processes` still running (zombies, already dead, count as gone)."""
    running = []
    for pid, started in processes:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[19] == started and fields[0] != "Z":
            running.append(pid)
    return running


def _socket_inodes(pid: int | str) -> list[str]:
    """The inodes of the sockets a process holds (none if it is gone or not ours to read)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    inodes = []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[8:-1])
    return inodes


def _socket_holders() -> dict[str, str]:
    """Socket inode -> "pid command line" of a process holding it (what /proc lets us read)."""
    holders = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for inode in _socket_inodes(pid):
            holders.setdefault(inode, f"{pid} {command[:160].strip()}")
    return holders


def listening_ports(ports: set[int]) -> dict[int, str]:
    """Which of these TCP ports something on this machine listens on (any address, v4 or v6), each
    with the process holding it ("pid command line", or "? (inode N)" when no process /proc shows
    holds it)."""
    found = {}
    holders = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                port = int(fields[1].rpartition(":")[2], 16)
                if port in ports:
                    holders = holders if holders is not None else _socket_holders()
                    found[port] = holders.get(fields[9], f"? (inode {fields[9]})")
    return found


def _decode_address(hex_address: str) -> str:
    """/proc/net/tcp{,6} write addresses as host-order 32-bit words in hex; an IPv4-mapped IPv6
    address (::ffff:127.0.0.1) comes back as the IPv4 address it is."""
    raw = bytes.fromhex(hex_address)
    address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    return str(getattr(address, "ipv4_mapped", None) or address)


def listening_addresses(pids: list[int]) -> set[str]:
    """The local addresses ("ip:port") these processes hold TCP listening sockets on."""
    inodes = {inode for pid in pids for inode in _socket_inodes(pid)}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # TCP_LISTEN, one of theirs
                address, _, port = fields[1].rpartition(":")
                found.add(f"{_decode_address(address)}:{int(port, 16)}")
    return found


def free_tcp_port() -> int:
    """A port free on every address: Ray's GCS and raylets listen on all interfaces unless their
    node IP is 127.0.0.1, so a port free on 127.0.0.2 alone is not enough. (Bound, never listened on.)"""
    return free_port("0.0.0.0")


@dataclass
class RayNode:
    args: list[str]
    env: dict
    log: Path
    ports: list[int]
    process: subprocess.Popen | None = None
    stopped_tree: list = field(default_factory=list)

    def start(self) -> "RayNode":
        out = open(self.log, "ab")
        self.process = subprocess.Popen([str(VENV_BIN / "ray"), "start", "--block", *self.args], env=self.env,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self, *, timeout: float = 30) -> None:
        if self.process is None:
            return
        tree = descendants(self.process.pid)
        if self.process.poll() is None:
            # `ray start --block` stops its node's processes in order on SIGTERM.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_remembered(tree)
        self.process.wait()
        self.process = None
        self.stopped_tree = tree  # for callers that check nothing of it survived


class RayCluster:
    """A head at `head_ip` and one worker at `worker_ip` (loopback aliases), token auth on.

    The token is generated into `folder/token` (mode 0600) and given to the nodes through
    RAY_AUTH_TOKEN_PATH; `client_env` is what a client needs to reach the cluster.
    """

    def __init__(self, folder: Path, *, head_ip: str = "127.0.0.2", worker_ip: str = "127.0.0.3",
                 cpus_per_node: int = 1, worker_resources: dict | None = None):
        import json
        import secrets

        self.folder = folder
        self.head_ip, self.worker_ip = head_ip, worker_ip
        self.token = secrets.token_hex(32)
        self.token_path = folder / "token"
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        self.gcs_port, self.dashboard_port = free_tcp_port(), free_tcp_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        self.node_env = dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path),
                             RAY_USAGE_STATS_ENABLED="0", PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
        self.client_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

        def node_ports() -> tuple[list[str], list[int]]:
            names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                     "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
            ports = [free_tcp_port() for _ in names]
            return [a for pair in zip(names, map(str, ports)) for a in pair], ports

        common = ["--num-cpus", str(cpus_per_node), "--object-store-memory", str(100 * 1024 * 1024),
                  "--disable-usage-stats"]
        head_args, head_ports = node_ports()
        client_port = free_tcp_port()
        self.head = RayNode(
            ["--head", "--node-ip-address", head_ip, "--port", str(self.gcs_port),
             "--dashboard-host", head_ip, "--dashboard-port", str(self.dashboard_port),
             "--ray-client-server-port", str(client_port), "--temp-dir", str(folder / "ray"),
             *head_args, *common],
            self.node_env, folder / "head.log", [self.gcs_port, self.dashboard_port, client_port, *head_ports])
        worker_args, worker_ports = node_ports()
        self.worker = RayNode(
            ["--address", f"{head_ip}:{self.gcs_port}", "--node-ip-address", worker_ip,
             "--resources", json.dumps(worker_resources or {}),
             # Its own temp dir: two nodes on one machine sharing one would share (and garbage-
             # collect) each other's unpacked job working_dirs.
             "--temp-dir", str(folder / "ray-worker"), *worker_args, *common],
            self.node_env, folder / "worker.log", worker_ports)

    @property
    def address(self) -> str:
        return f"http://{self.head_ip}:{self.dashboard_port}"

    @property
    def ports(self) -> set[int]:
        return {*self.head.ports, *self.worker.ports}

    def _alive_nodes(self) -> list[str]:
        response = requests.get(f"{self.address}/api/v0/nodes", timeout=5,
                                headers={"Authorization": f"Bearer {self.token}"})
        rows = response.json()["data"]["result"]["result"]
        return sorted(n["node_ip"] for n in rows if n["state"] == "ALIVE")

    def start(self, *, timeout: float = 240) -> "RayCluster":
        self.head.start()
        wait_for(lambda: self.head_ip in self._alive_nodes(), timeout=timeout,
                 what=f"ray head (log: {self.head.log})")
        self.worker.start()
        wait_for(lambda: self._alive_nodes() == sorted([self.head_ip, self.worker_ip]), timeout=timeout,
                 what=f"ray worker (log: {self.worker.log})")
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.head.stop()


# ---- An S3 server on loopback (tests/test_s3_storage.py) -------------------------------------------

@dataclass
class MotoS3:
    """moto's S3 server on 127.0.0.1, started by us and stopped by its own PID (its own session)."""

    port: int
    log: Path
    process: subprocess.Popen | None = None

    # What a client of this server needs, and what keeps it from looking further: moto takes any
    # key, and with the region set and EC2 metadata off the AWS SDK never asks 169.254.169.254.
    ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60) -> "MotoS3":
        out = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            env=dict(os.environ, **self.ENV), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(lambda: requests.get(self.endpoint_url, timeout=2).ok, timeout=timeout,
                 what=f"moto S3 server (log: {self.log})")
        return self

    def filesystem(self, **options):
        """A pyarrow client of this server with its own keys: the caller's AWS variables don't matter."""
        import pyarrow.fs

        return pyarrow.fs.S3FileSystem(endpoint_override=self.endpoint_url, region=self.ENV["AWS_DEFAULT_REGION"],
                                       access_key=self.ENV["AWS_ACCESS_KEY_ID"],
                                       secret_key=self.ENV["AWS_SECRET_ACCESS_KEY"], **options)

    def create_bucket(self, name: str) -> None:
        self.filesystem(allow_bucket_creation=True).create_dir(name)

    def stop(self) -> None:
        stop_session(self.process)
        self.process = None
