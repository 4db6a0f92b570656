"""Which MLflow store, whether it can be reached, and opening it: one rule for every command.

Every command that reads or writes MLflow (run, resume, status, report, reproduce, ui) finds its
store by `resolve_uri`: what the spec (or --tracking-uri) says, else $MLFLOW_TRACKING_URI, else
./mlflow.db of the folder the sweep was started in. A sweep records the URI it used in its folder
(xsweep.json), so resume and status open the same store whatever the shell says.

A store is checked before Ray or any trial starts, and a new one's tables are created under a file
lock beside the database: MLflow's schema creation is not safe when two processes race for a new
sqlite file. A tracking server that refuses the credentials is one line naming
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (see `auth_problem`).

Free of MLflow imports at module level: importing MLflow takes seconds, which the driver spends
while Ray starts (sweep/startup.py) instead of before.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from xsweep.errors import TrackingError, UserError, reason
from xsweep.tracking.uri import redact, split_credentials, uri_problem

ENV_URI = "MLFLOW_TRACKING_URI"
# How long a process waits for another one that is creating the same new store's tables.
CREATE_LOCK_TIMEOUT_S = 300.0
CREDENTIALS = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def resolve_uri(given: str | None, *, workdir: str | os.PathLike, given_as: str = "tracking.uri") -> str:
    """The one rule: the spec's tracking.uri (or a --tracking-uri flag), else $MLFLOW_TRACKING_URI,
    else ./mlflow.db in `workdir`. A URI of no form MLflow takes is one line naming where it came
    from (`given_as` for `given`: the spec's field, a command's flag, a Python argument)."""
    uri, source = uri_and_source(given, workdir=workdir, given_as=given_as)
    problem = uri_problem(uri)
    if problem:
        raise TrackingError(f"{source}: {problem}")
    return uri


def experiment_and_uri(*, experiment: str | None, spec, tracking_uri: str | None,
                       error: type[UserError]) -> tuple[str, str | None, str]:
    """(experiment, tracking URI or None, what named the URI) for a command on a sweep given by its
    experiment or by its spec (the Python API's `spec=`): the spec's name and tracking.uri unless
    given. What named it goes in resolve_uri's `given_as`."""
    if not experiment and spec is None:
        raise error("--experiment: missing (name the sweep's experiment, or pass its spec)")
    given_as = "--tracking-uri" if tracking_uri or spec is None else "tracking.uri"
    return experiment or spec.experiment, tracking_uri or (spec.tracking.uri if spec else None), given_as


def uri_and_source(given: str | None, *, workdir: str | os.PathLike, given_as: str) -> tuple[str, str]:
    """resolve_uri's store, unchecked, and where it came from, as a message names it."""
    if given:
        return given, given_as
    if os.environ.get(ENV_URI):
        return os.environ[ENV_URI], ENV_URI
    return default_uri(workdir), "./mlflow.db"


def default_uri(workdir: str | os.PathLike) -> str:
    """MLflow's own default (sqlite:///mlflow.db), made absolute: trials run in other folders."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def store_flag(uri: str, *, workdir: str | os.PathLike) -> str:
    """What a printed command needs to open the store at `uri` from `workdir`: " --tracking-uri URI",
    or nothing where the command finds it by itself there (./mlflow.db)."""
    import shlex

    return "" if not uri or uri == default_uri(workdir) else f" --tracking-uri {shlex.quote(redact(uri))}"


def credentials_to_env(uri: str) -> str:
    """The URI without user:password, which go to the variables MLflow's client reads instead.

    Everything a sweep records (params, tags, xsweep.json, Tune's pickled state) then holds the
    bare URI; the password lives only in this process's environment."""
    bare, user, password = split_credentials(uri)
    if password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    return bare


# Reaching a store: a refused connection fails at once, a host that does not answer within CONNECT_S
# is unreachable. A server that took the connection is reachable however long it then takes to
# answer (a busy machine, a password check per request): it gets MLflow's own request timeout.
CONNECT_S = 5.0
ANSWER_S = 120.0
POSTGRES_CONNECT_S = 30


def check_reachable(uri: str) -> None:
    """Fail fast, before any trial starts, when the tracking store cannot be reached."""
    import requests
    import sqlalchemy

    where = f"tracking.uri: cannot reach {redact(uri)}"
    if uri.startswith(("http://", "https://")):
        auth = None
        if os.environ.get("MLFLOW_TRACKING_USERNAME"):
            auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        try:
            # An endpoint that needs the credentials (/health does not): a refused password is
            # found now, not by the first write of a running sweep.
            response = requests.get(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
                                    params={"max_results": 1}, timeout=(CONNECT_S, ANSWER_S), auth=auth)
        except requests.RequestException as exc:
            raise TrackingError(f"{where}: {_reason(exc)} (start the server or fix tracking.uri)") from None
        if response.status_code in (401, 403):
            raise auth_error(response.status_code)
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
            engine = sqlalchemy.create_engine(uri, connect_args=_connect_timeout(uri))
            with engine.connect():
                pass
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any driver error means "unreachable" to the user
            raise TrackingError(f"{where}: {_reason(exc)} (start the database or fix tracking.uri)") from None


def _connect_timeout(uri: str) -> dict:
    # libpq's connect_timeout covers the connection and its authentication, which a loaded server
    # may take seconds over: longer than CONNECT_S, shorter than a request's ANSWER_S.
    return {"connect_timeout": POSTGRES_CONNECT_S} if uri.startswith("postgresql") else {}


def _reason(exc: BaseException) -> str:
    return redact(reason(exc))


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for servers and other databases)."""
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    return Path(path) if path and path != ":memory:" else None


def prepare_store(uri: str) -> None:
    """Create the store's tables now (a fresh sqlite database takes seconds of MLflow's schema
    migrations), so that opening the sweep's runs later is quick. Tracking and model registry
    have a store each; MLflow caches both per URI.

    For a sqlite file, under a lock of its own: two processes creating the same new database at
    once (two `xsweep run`s started together, or a run and `make ui`) otherwise fail inside
    MLflow's migrations ("table ... already exists", "duplicate column name")."""
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    def create() -> None:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)

    database = sqlite_file(uri)
    if database is None:
        create()
        return
    with FileLock(_lock_file(database), timeout=CREATE_LOCK_TIMEOUT_S):
        create()


def _lock_file(database: Path) -> Path:
    """The lock of a sqlite store: in the temp folder, named after the database's absolute path,
    so that the user's folder holds nothing but mlflow.db (sqlite stores are local to a machine,
    and so are their users)."""
    digest = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir(), f"xsweep-locks-{os.getuid()}")
    folder.mkdir(exist_ok=True)
    return folder / f"{digest}.lock"


def open_store(uri: str, *, flag: str, error: type[UserError] = TrackingError):
    """An MlflowClient on an existing store, for the commands that read one (status, report,
    reproduce). `flag` is how the user chose the store and `error` the command's kind of error,
    for the message. MLflow would create an empty sqlite store on the spot: a wrong folder must not
    leave one behind."""
    from mlflow.tracking import MlflowClient

    path = sqlite_file(uri)
    if path is not None:
        if not path.is_file():
            raise error(f"{flag}: no MLflow store at {path} (run from the sweep's folder, "
                        f"or pass --tracking-uri)")
        prepare_store(uri)  # an existing file may still be mid-creation by another process
    else:
        check_reachable(uri)
    return MlflowClient(tracking_uri=uri)


def auth_error(status: int) -> TrackingError:
    """The one line for a tracking server that refused this process's credentials."""
    if status == 403:
        return TrackingError(f"MLflow: the tracking server refused access (HTTP 403): the account in "
                             f"MLFLOW_TRACKING_USERNAME may not do this (set {CREDENTIALS} to one that may)")
    return TrackingError(f"MLflow: the tracking server needs credentials (HTTP 401): set {CREDENTIALS} "
                         f"(a wrong password gives this too)")


def auth_problem(exc: BaseException) -> TrackingError | None:
    """The one-line error for an MLflow client exception that is a 401 or 403, else None."""
    code = getattr(exc, "error_code", "")
    if code == "UNAUTHENTICATED":
        return auth_error(401)
    if code == "PERMISSION_DENIED":
        return auth_error(403)
    found = re.search(r"error code (401|403)\b", str(exc))
    return auth_error(int(found[1])) if found else None
