"""Tracking URIs: which forms xsweep takes, and those that may carry user:password (a tracking server
behind basic auth), shown and recorded without it. Free of heavy imports: the spec's checks and the
CLI's submit path use it too."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

FORMS = "sqlite:///mlflow.db, file:./mlruns, http(s)://host:port, postgresql://..., mysql://..., databricks"


def uri_problem(uri: str) -> str | None:
    """What is wrong with a tracking URI, as the end of a one-line message; None if it is one xsweep takes."""
    shown = f"'{redact(uri)}'"
    if uri in ("databricks", "databricks-uc") or uri.startswith(("databricks://", "databricks-uc://")):
        return None
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    scheme = scheme.split("+", 1)[0]  # postgresql+psycopg2://
    if scheme == "sqlite" and not (uri.startswith("sqlite:///") and len(uri) > len("sqlite:///")):
        return (f"{shown} needs three slashes and a file (sqlite:///mlflow.db for a relative path, "
                "sqlite:////abs/mlflow.db for an absolute one)")
    if scheme in ("http", "https") and not urlsplit(uri).netloc:
        return f"{shown} has no host (such as http://localhost:5000)"
    if scheme == "postgresql" and "://" not in uri:
        return f"{shown} is not a PostgreSQL URI (postgresql://user:password@host:5432/db)"
    if scheme == "file" and not uri[len("file:"):]:
        return f"{shown} names no folder (such as file:./mlruns)"
    if scheme in ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql"):
        return None
    return f"{shown} is not a supported tracking URI (one of {FORMS})"


def _with_userinfo(parts: SplitResult, userinfo: str) -> str:
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}{host}"))


def redact(uri: str) -> str:
    """The URI with its password as ***, for messages and tags."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return _with_userinfo(parts, f"{parts.username}:***@")


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without user:password, the user, the password); the last two None if it has none."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri, None, None
    return _with_userinfo(parts, ""), parts.username or "", parts.password
