"""What the scale measurements share: the loopback-only environment, the sleeping trials' search
space, the machine-load probe, the MLflow server manager, and the frame every module's `main` uses.

Nothing here starts a process or touches the environment at import: Ray's workers import the modules
of this package too (the trainable is named by module), and must not redo the driver's setup.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
for _path in (ROOT / "platform", BENCHMARKS):  # the project's code and benchmarks/host.py, uninstalled
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

LOOPBACK = "127.0.0.1"

# The sleeping trials' space, as a sweep spec: the Tune run, TPE's study and the MLflow runs use it.
SPACE_SPEC = """
name: scale-simulation
data: {{dataset: digits, image_size: 32}}
model: {{width: 0.125, middle_blocks: 1}}
train: {{epochs: {reports}}}
search:
  algorithm: optuna-tpe
  num_samples: {trials}
  max_concurrent: {concurrency}
  seed: 0
  space:
    train.lr: {{loguniform: [0.005, 0.3]}}
    model.residual: {{choice: [true, false]}}
    model.activation: {{choice: [none, relu, elu]}}
scheduler: {{kind: fifo}}
resources: {{cpus_per_trial: 1}}
"""


def load_space_spec(*, trials: int, concurrency: int, reports: int):
    from xsweep.spec import load_spec_text

    return load_spec_text(SPACE_SPEC.format(trials=trials, concurrency=concurrency, reports=reports),
                          source="scale.yaml")


def loopback_environment() -> Path:
    """Before ray is imported: loopback addresses only (Ray otherwise turns 127.0.0.1 into the host's
    routable address), no usage-stats upload, token authentication with a token generated here into
    a new temp folder (never printed), synchronous MLflow logging. Returns that folder: the run's
    work folder, which the caller removes."""
    work = Path(tempfile.mkdtemp(prefix="xsweep-scale-"))
    token = work / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"
    return work


# ---- the driver's memory, the machine's CPU ---------------------------------------------------


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_times() -> list[int]:
    """The machine's CPU time so far, from /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def cpu_busy(seconds: float) -> float:
    """The machine's busy share of its CPU time over the next `seconds`."""
    before, _ = cpu_times(), time.sleep(seconds)
    spent = [b - a for a, b in zip(before, cpu_times())]
    return 1 - (spent[3] + spent[4]) / max(sum(spent), 1)  # less idle and iowait


def steal_share(before: list[int], after: list[int]) -> float:
    """The share of the CPU time between two `cpu_times` that the hypervisor gave to other guests."""
    spent = [b - a for a, b in zip(before, after)]
    return spent[7] / max(sum(spent), 1)


def cpu_probe_ms(loops: int = 1_000_000) -> float:
    """One core's speed now: the fastest of 5 runs of a fixed pure-Python loop of `loops` steps, in ms."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(loops):
            total += i * i % 7
        times.append(1000 * (time.perf_counter() - start))
    return min(times)


def wait_until_quiet(*, busy_below: float = 0.25, longest_s: float = 180, window_s: float = 3) -> tuple[float, float]:
    """Wait until the machine's CPU is mostly idle (a freshly started cluster's nodes, or the last
    run's trial processes, keep it busy for a while), reading it over `window_s` at a time:
    (seconds waited, busy share when done)."""
    started = time.time()
    busy = cpu_busy(window_s)
    while busy >= busy_below and time.time() - started < longest_s:
        busy = cpu_busy(window_s)
    return time.time() - started, busy


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# ---- an `mlflow server` of our own ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server --workers 1` on 127.0.0.1 over a sqlite store in `work`, started here in a
    session of its own (its log in `work`); `ready` waits for it, `stop` ends its process group."""

    def __init__(self, work: Path) -> None:
        self.uri = f"http://{LOOPBACK}:{free_port()}"
        with open(work / "mlflow-server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "server",
                 "--backend-store-uri", f"sqlite:///{work / 'server.db'}",
                 "--artifacts-destination", str(work / "server-artifacts"), "--serve-artifacts",
                 "--host", LOOPBACK, "--port", self.uri.rsplit(":", 1)[1], "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def ready(self, timeout: float = 120) -> str | None:
        """Its URI once /health answers, or None (and the server stopped) if it did not within `timeout`."""
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if requests.get(f"{self.uri}/health", timeout=2).ok:
                    return self.uri
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        return None

    def stop(self) -> None:
        stop_process_group(self.proc)


def stop_process_group(proc) -> None:
    """Stop a Popen started with start_new_session=True: its process group (the server and the
    workers it forked), SIGTERM first, SIGKILL after 20 s."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- the frame of every measurement module ----------------------------------------------------


def parse(modules: list, argv=None, *, description: str, more=None) -> argparse.Namespace:
    """Arguments for the given measurement modules: each module's own (`add_arguments`), any `more(parser)`
    adds, and --quick, which turns every module's defaults to its QUICK sizes (an option given still wins)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes: every measurement in well under a minute (for the test)")
    for module in modules:
        module.add_arguments(parser)
    if more is not None:
        more(parser)
    if parser.parse_known_args(argv)[0].quick:
        for module in modules:
            parser.set_defaults(**module.QUICK)
    args = parser.parse_args(argv)
    args.quick_note = quick_note(modules, args) if args.quick else ""
    return args


def quick_note(modules, args) -> str:
    """The sizes a --quick run ran at, as options."""
    keys = [key for module in modules for key in module.QUICK]
    return "--quick: toy sizes (" + ", ".join(f"--{key.replace('_', '-')} {getattr(args, key)}" for key in keys) + ")"


def run_alone(module, argv=None) -> None:
    """A measurement module run as a script: its measurement in a fresh work folder, its section printed."""
    args = parse([module], argv, description=(module.__doc__ or "").splitlines()[0])
    work = loopback_environment()
    try:
        result = module.measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(module.section(args, result)))
