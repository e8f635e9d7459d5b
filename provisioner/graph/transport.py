"""What the Graph client's send loop makes of ``requests``: answers as `Response` (headers
looked up case-insensitively, any echoed token taken out of error bodies) and exceptions as
`TransportFailure` facts for the retry policy (was anything sent, and a reason a user can read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from provisioner.graph.errors import GraphError, GraphPermissionError, parse_error_body
from provisioner.graph.retry import Raise, TransportFailure

__all__ = [
    "Response",
    "error_for",
    "new_session",
    "request_headers",
    "response_from",
    "transport_failure",
]


@dataclass
class Response:
    """One Graph answer: status, headers (a plain dict) and the parsed JSON body."""

    status: int
    headers: Mapping[str, str]
    body: Any
    client_request_id: str = ""
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def new_session(pool_size: int) -> requests.Session:
    """A session whose pool holds ``pool_size`` connections and which never retries by itself
    (the client's retry policy does)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def request_headers(token: str, client_request_id: str, user_agent: str) -> dict[str, str]:
    """Headers of every Graph request; ``client-request-id`` lets support trace the call."""
    return {
        "Authorization": f"Bearer {token}",
        "client-request-id": client_request_id,
        "return-client-request-id": "true",
        "User-Agent": user_agent,
        "Accept": "application/json",
    }


def response_from(
    raw: requests.Response, client_request_id: str, attempts: int, *, token: str
) -> Response:
    headers = {k: v for k, v in raw.headers.items()}
    body: Any = None
    if raw.content:
        try:
            body = raw.json()
        except ValueError:
            body = raw.text[:1000]
    if raw.status_code >= 400:
        # A gateway or proxy that quotes the request back would put the token into our
        # error message: take it out of the body every error is built from.
        body = _without(body, token)
    return Response(raw.status_code, _Caseless(headers), body, client_request_id, attempts)


def error_for(
    decision: Raise,
    method: str,
    path: str,
    response: Response | None,
    client_request_id: str,
) -> GraphError:
    """The error the retry policy decided on, with what support needs to trace the call:
    Graph's ``error.code``, message, request ids and date from the answer, when there is one
    (``concepts/errors.md``)."""
    if response is None:
        return decision.error(
            decision.message or "",
            method=method,
            path=path,
            client_request_id=client_request_id,
            hint=decision.hint,
        )
    code, message, inner = parse_error_body(response.body)
    if not message:
        message = {
            429: "Too Many Requests",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(response.status, f"HTTP {response.status}")
    extra = {"permission": decision.permission} if decision.error is GraphPermissionError else {}
    return decision.error(
        message,
        status=response.status,
        code=code,
        method=method,
        path=path,
        request_id=response.headers.get("request-id") or inner.get("request-id", ""),
        client_request_id=response.client_request_id,
        date=inner.get("date") or response.headers.get("Date", ""),
        hint=decision.hint,
        **extra,
    )


class _Caseless(dict[str, str]):
    """Response headers looked up case-insensitively (HTTP header names are)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in headers.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def _without(body: Any, secret: str) -> Any:
    """``body`` (parsed JSON or text) with every occurrence of ``secret`` replaced."""
    if not secret:
        return body
    if isinstance(body, str):
        return body.replace(secret, "[redacted]")
    if isinstance(body, dict):
        return {_without(k, secret): _without(v, secret) for k, v in body.items()}
    if isinstance(body, list):
        return [_without(v, secret) for v in body]
    return body


def transport_failure(exc: requests.RequestException) -> TransportFailure:
    return TransportFailure(sent=not _never_sent(exc), reason=_reason(exc))


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection could not even be opened, so Graph saw nothing."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)  # includes DNS (NameResolutionError)
    return False


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no response before the read timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if reason is not None and "NameResolution" in type(reason).__name__:
            return "DNS lookup failed"
        if isinstance(reason, NewConnectionError):
            return "connection refused or unreachable"
        return "connection dropped"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection dropped mid-response"
    return type(exc).__name__
