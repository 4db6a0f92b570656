"""Process-wide defaults, set where a process starts and nowhere else.

Importing any xsweep module changes no environment variable or global setting (a test checks it).
These functions are called where a process begins its work: the `xsweep` command (cli.main), the
Python API's entry points (xsweep/__init__.py), a trial's process (training/trainable.py) and the Ray
job (jobs/entrypoint.py, through cli.main). A value the user already set in the environment wins.
"""

from __future__ import annotations

import logging
import os

ENVIRONMENT = {
    # Nothing leaves this machine unless the user asks: MLflow's telemetry and Ray's usage
    # statistics are off. On a machine without internet, MLflow's attempts to reach its telemetry
    # server also cost seconds of every sweep's start-up.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    # xsweep's own retry loop (tracking/delivery.py) handles outages; MLflow's built-in one would
    # block a single request for minutes before we could even say that the server is gone.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # A checkpoint is three small files: MLflow's download progress bar would only clutter stderr.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Tune's result loggers are listed by the sweep (sweep/run.py): its automatic TensorBoard one
    # imports torch through tensorboardX, seconds of the driver's start-up for nothing.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Tune saves its state with every trial checkpoint, by design here, and would warn about it
    # several times per sweep.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}

# Libraries' notices that are their bookkeeping, not the user's business.
QUIET_LOGGERS = {
    "mlflow.store.db.utils": logging.WARNING,  # "Creating initial MLflow database tables..."
    # "token authentication is enabled for this Ray cluster", "no token was found": about starting
    # clusters, or noise before our own one-line error.
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
    "ray._private.authentication.http_token_authentication": logging.ERROR,
    # Job packaging ("Uploading package gcs://...", ".git is now ignored by default").
    "ray.dashboard.modules.dashboard_sdk": logging.ERROR,
    "ray.dashboard.modules.job.sdk": logging.ERROR,
    "ray._private.runtime_env.packaging": logging.ERROR,
    "ray._private.runtime_env.working_dir": logging.ERROR,
    "ray._private.runtime_env.py_modules": logging.ERROR,
}


def apply_process_defaults() -> None:
    """Set xsweep's defaults for this process (idempotent; what the user set wins)."""
    from xsweep.training.compile_cache import node_cache_folder

    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    # torch.compile's caches: one folder per node, shared by every trial on it (compile_cache.py).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", node_cache_folder())
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # a level the user configured wins
            logger.setLevel(level)


def embedded_ray_on_loopback() -> None:
    """An embedded Ray must listen on 127.0.0.1 only. Ray reads this variable once, when it is
    imported; left to its default, it turns 127.0.0.1 into the host's address. Called before Ray
    is imported by a command that starts its own Ray (not one joining a cluster: its nodes must
    reach the driver)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def quiet_optuna() -> None:
    """Optuna logs a line per trial at INFO. It configures its logger when first imported, so this
    runs where a process first uses Optuna (building the searcher, the report's importance)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
