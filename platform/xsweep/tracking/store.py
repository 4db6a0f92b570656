"""Where a sweep's MLflow store is, and whether it can be reached: checked before Ray or any
trial starts, and then, while Ray starts, the store made ready (its tables created).

Free of MLflow imports at module level: importing MLflow takes seconds, which the driver spends
while Ray starts (startup.py) instead of before.
"""

from __future__ import annotations

import os
from pathlib import Path

from xsweep.errors import TrackingError
from xsweep.tracking.uri import redact, split_credentials



def default_uri(workdir: str | os.PathLike) -> str:
    """MLflow's own default (sqlite:///mlflow.db), made absolute: trials run in other folders."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def credentials_to_env(uri: str) -> str:
    """The URI without user:password, which go to the variables MLflow's client reads instead.

    Everything a sweep records (params, tags, xsweep.json, Tune's pickled state) then holds the
    bare URI; the password lives only in this process's environment."""
    bare, user, password = split_credentials(uri)
    if password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    return bare


def check_reachable(uri: str, *, timeout_s: float = 5.0) -> None:
    """Fail fast, before any trial starts, when the tracking store cannot be reached."""
    import requests
    import sqlalchemy

    where = f"tracking.uri: cannot reach {redact(uri)}"
    if uri.startswith(("http://", "https://")):
        auth = None
        if os.environ.get("MLFLOW_TRACKING_USERNAME"):
            auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s, auth=auth)
        except requests.RequestException as exc:
            raise TrackingError(f"{where}: {_reason(exc)} (start the server or fix tracking.uri)") from None
        if response.status_code >= 500:
            raise TrackingError(f"{where}: HTTP {response.status_code} (check the server's log)")
        return
    database = sqlite_file(uri)
    if database is not None:
        folder = database.parent
        if not folder.is_dir():
            raise TrackingError(f"{where}: folder {folder} does not exist (create it or fix tracking.uri)")
        return
    if uri.startswith(("postgresql", "mysql", "mssql")):
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=_connect_timeout(uri, timeout_s))
            with engine.connect():
                pass
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any driver error means "unreachable" to the user
            raise TrackingError(f"{where}: {_reason(exc)} (start the database or fix tracking.uri)") from None


def _connect_timeout(uri: str, timeout_s: float) -> dict:
    return {"connect_timeout": int(timeout_s)} if uri.startswith("postgresql") else {}


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "timed out", "could not connect"):
        if known.lower() in text.lower():
            return known.lower()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return redact(first)[:160]


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for servers and other databases)."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def prepare_store(uri: str) -> None:
    """Create the store's tables now (a fresh sqlite database takes seconds of MLflow's schema
    migrations), so that opening the sweep's runs later is quick. Tracking and model registry
    have a store each; MLflow caches both per URI."""
    import logging

    from mlflow.tracking import MlflowClient

    # "Creating initial MLflow database tables..." is MLflow's business, not the user's.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)
