"""URIs that may carry user:password (a tracking server behind basic auth): shown and recorded
without it. Free of heavy imports: the CLI's submit path uses it too."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit


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
