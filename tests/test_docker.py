"""The deployables that cannot run here (no Docker engine, no Kubernetes), checked as far as they can be:
docker/compose.yaml parses with Debian's docker-compose, every service's command names a real entry
point with real options, secrets come only from the uncommitted env file, ports stay on 127.0.0.1,
and the images, the compose file and the KubeRay RayJob pin what pyproject.toml pins."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib

import pytest
import yaml

from conftest import ROOT
from services import VENV_BIN

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
RAYJOB = ROOT / "jobs" / "rayjob.yaml"

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PINS = dict(re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", d).groups() for d in PYPROJECT["dependencies"])


def _compose(env_file, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing (make system-deps installs Debian's)"
    # Only the env file may provide the stack's secrets, not this process's environment.
    env = {k: v for k, v in os.environ.items() if k not in _referenced_variables()}
    return subprocess.run([exe, "--env-file", str(env_file), "-f", str(COMPOSE), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _referenced_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))


@pytest.fixture(scope="module")
def config() -> dict:
    proc = _compose(ENV_EXAMPLE, "config")
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def _help(*command: str) -> str:
    proc = subprocess.run([str(VENV_BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _options(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def _argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_compose_parses_and_has_the_whole_stack(config):
    assert set(config["services"]) == {"postgres", "minio", "minio-buckets", "mlflow", "ray-head", "ray-worker"}


def test_every_secret_comes_from_the_uncommitted_env_file(tmp_path):
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                   if line and not line.startswith("#"))
    assert _referenced_variables() <= set(example), _referenced_variables() - set(example)
    # docker/.env is ignored by git; the example is not.
    assert subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", "docker/.env.example"], cwd=ROOT).returncode == 1
    # Without the env file, Compose refuses to start and says which secret is missing, and where.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = _compose(empty, "config")
    assert proc.returncode != 0
    assert "in docker/.env" in proc.stderr, proc.stderr


def test_published_ports_are_on_loopback_only(config):
    published = {name: s.get("ports", []) for name, s in config["services"].items() if s.get("ports")}
    assert set(published) == {"minio", "mlflow", "ray-head"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert {str(p).split(":")[1] for p in published["ray-head"]} == {"8265", "6379"}


def test_ray_worker_reserves_gpus_and_scales(config):
    worker = config["services"]["ray-worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # `--scale ray-worker=N` needs replicas that differ in nothing fixed.
    assert "container_name" not in worker and "ports" not in worker
    assert _argv(worker["command"])[:2] == ["ray", "start"]
    assert "--address" in worker["command"] and "ray-head:6379" in worker["command"]


def test_ray_nodes_use_token_auth_and_the_project_image(config):
    for name in ("ray-head", "ray-worker"):
        service = config["services"][name]
        assert service["environment"]["RAY_AUTH_MODE"] == "token"
        assert service["environment"]["RAY_AUTH_TOKEN"] == "change-me-ray-token"
        assert service["image"] == f"xsweep:{PYPROJECT['version']}"
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
    # Only the head runs the driver, which alone writes MLflow: only it holds MLflow's credentials.
    assert "MLFLOW_TRACKING_PASSWORD" in config["services"]["ray-head"]["environment"]
    assert "MLFLOW_TRACKING_PASSWORD" not in config["services"]["ray-worker"]["environment"]


def test_ray_start_commands_use_real_options(config):
    known = set(re.findall(r"(--[a-z][a-z0-9-]*)", _help("ray", "start")))
    for name in ("ray-head", "ray-worker"):
        argv = _argv(config["services"][name]["command"])
        assert argv[:2] == ["ray", "start"] and "--block" in argv, argv
        assert set(_options(argv)) <= known, set(_options(argv)) - known


def test_mlflow_server_command_uses_real_options(config):
    mlflow = config["services"]["mlflow"]
    argv = _argv(mlflow["command"])
    assert argv[:2] == ["mlflow", "server"]
    help_text = _help("mlflow", "server")
    known = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    assert set(_options(argv)) <= known, set(_options(argv)) - known
    assert argv[argv.index("--app-name") + 1] == "basic-auth"
    assert argv[argv.index("--artifacts-destination") + 1].startswith("s3://")
    assert "--serve-artifacts" in argv
    assert argv[argv.index("--backend-store-uri") + 1].startswith("postgresql+psycopg://")
    assert ":" not in argv[argv.index("--backend-store-uri") + 1].split("@")[0].removeprefix("postgresql+psycopg://")
    env = mlflow["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["build"]["target"] == "mlflow"


def test_basic_auth_config_is_what_mlflow_reads(monkeypatch):
    # MLflow's own reader, loaded alone: its package needs Flask-WTF (mlflow[auth]), which the
    # server's image has and this venv need not.
    import importlib.util

    import mlflow

    path = os.path.join(os.path.dirname(mlflow.__file__), "server", "auth", "config.py")
    module_spec = importlib.util.spec_from_file_location("mlflow_auth_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    read_auth_config = module.read_auth_config
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(DOCKER / "basic_auth.ini"))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "x")
    config = read_auth_config()
    assert config.database_uri == "postgresql+psycopg://mlflow@postgres:5432/mlflow_auth"
    assert config.admin_username == "admin" and config.admin_password == "x"
    assert "mlflow_auth" in (DOCKER / "postgres-init.sql").read_text()


def test_the_other_services_run_their_images_own_programs(config):
    services = config["services"]
    assert services["postgres"]["image"].startswith("postgres:") and "command" not in services["postgres"]
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert _argv(services["minio"]["command"])[:2] == ["server", "/data"]  # the image's entrypoint is `minio`
    buckets = services["minio-buckets"]
    assert buckets["image"].startswith("minio/mc:RELEASE.") and buckets["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = buckets["command"]
    steps = [s.strip() for s in script.split("&&")]
    assert [s.split()[:2] for s in steps] == [["mc", "alias"], ["mc", "mb"]]
    assert "--ignore-existing" in steps[1]
    # The health checks run programs their images have.
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["minio"]["healthcheck"]["test"][1:] == ["mc", "ready", "local"]
    check = services["mlflow"]["healthcheck"]["test"]
    assert check[1:3] == ["python", "-c"]
    compile(check[3], "healthcheck", "exec")


def test_dockerfile_pins_what_pyproject_pins():
    text = DOCKERFILE.read_text()
    python = re.search(r">=(\d+)\.(\d+),<(\d+)\.(\d+)", PYPROJECT["requires-python"]).groups()
    assert python[:2] == ("3", "11") and python[2:] == ("3", "12")
    bases = re.findall(r"^FROM (\S+) AS (\S+)", text, flags=re.M)
    assert dict((stage, image) for image, stage in bases) == {
        "mlflow": "python:3.11-slim",
        "xsweep": f"rayproject/ray:{PINS['ray']}-py311-gpu",  # Ray's GPU image of the pinned Ray and Python
    }
    assert bases[-1][1] == "xsweep"  # the default target: the image of the Ray nodes
    pinned = dict(re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^"]+)"', text))
    assert pinned, "no pins found in docker/Dockerfile"
    for name, version in pinned.items():
        if name in PINS:
            assert version == PINS[name], (name, version, PINS[name])
    assert set(pinned) - set(PINS) == {"boto3"}  # the MLflow server's S3 client, not the project's
    # The project installs from pyproject.toml itself: the same pins, not a copy of them.
    assert '"mlflow[auth]==' in text  # `--app-name basic-auth` needs the [auth] extra (Flask-WTF)
    assert "pip install --no-cache-dir ." in text
    for folder in ("platform/", "xception/", "jobs/", "search_spaces/"):
        assert f"COPY --chown=ray:users {folder} {folder}" in text


def test_rayjob_runs_a_sweep_on_gpu_workers_with_secrets_from_a_secret():
    job = yaml.safe_load(RAYJOB.read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == PINS["ray"]
    assert cluster["authOptions"] == {"mode": "token"}
    entrypoint = job["spec"]["entrypoint"]
    spec = re.search(r"python jobs/entrypoint\.py (\S+)", entrypoint).group(1)
    assert (ROOT / spec).is_file(), spec
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = [g["template"]["spec"]["containers"][0] for g in cluster["workerGroupSpecs"]]
    assert workers and all(w["resources"]["limits"].get("nvidia.com/gpu", 0) >= 1 for w in workers)
    for container in (head, *workers):
        assert container["envFrom"] == [{"secretRef": {"name": "xsweep-tracking"}}]
        assert container["image"].endswith(f"/xsweep:{PYPROJECT['version']}")
        assert "env" not in container  # no credentials written into the manifest
    assert "MLFLOW_TRACKING_PASSWORD" in RAYJOB.read_text()  # the header says how to create the Secret


def test_runtime_env_is_one_ray_accepts():
    from ray.runtime_env import RuntimeEnv

    from xsweep.cluster.submit import runtime_env

    env = RuntimeEnv(**runtime_env(ROOT))
    assert env.working_dir() == str(ROOT)
    assert env["env_vars"]["PYTHONUNBUFFERED"] == "1"
