"""Typed errors of the Graph client (``concepts/errors.md``): what a user needs to act and
what Microsoft support needs to trace a call (status, ``error.code``, request ids, date)."""

from __future__ import annotations

from typing import Any

from provisioner.errors import ProvisionError
from provisioner.redact import redact


class GraphError(ProvisionError):
    """Graph answered with an error, or could not be reached. Carries what support needs."""

    kind = "graph"

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        method: str = "",
        path: str = "",
        request_id: str = "",
        client_request_id: str = "",
        date: str = "",
        hint: str | None = None,
    ) -> None:
        # Every field comes from an answer that may echo the request (a request-id header
        # quoting the Authorization header): redacted before it reaches any report.
        self.status = status
        self.code = redact(code)
        self.graph_message = redact(message)
        self.method = method
        self.path = redact(path)
        self.request_id = redact(request_id)
        self.client_request_id = redact(client_request_id)
        self.date = redact(date)
        super().__init__(self._describe(), hint=hint)

    def _describe(self) -> str:
        what = f"{self.method} {self.path}".strip()
        head = f"Graph {self.status}" if self.status else "Graph request"
        if self.code:
            head += f" {self.code}"
        text = (
            f"{head} on {what}: {self.graph_message}" if what else f"{head}: {self.graph_message}"
        )
        ids = [
            f"{name}: {value}"
            for name, value in (
                ("request-id", self.request_id),
                ("client-request-id", self.client_request_id),
                ("date", self.date),
            )
            if value
        ]
        return f"{text} ({', '.join(ids)})" if ids else text


class GraphAuthError(GraphError):
    """401: the token was rejected even after a refresh."""

    kind = "auth"


class GraphPermissionError(GraphError):
    """403: the app or user lacks a permission (or a policy forbids the call)."""

    def __init__(self, message: str, *, permission: str = "", **kwargs: Any) -> None:
        self.permission = permission
        super().__init__(message, **kwargs)


class GraphNotFound(GraphError):
    """404: the chat, member or user does not exist (or is not visible to this app)."""


class ThrottledError(GraphError):
    """Graph kept throttling beyond the retry budget, or asked to wait longer than allowed."""


class AmbiguousOutcome(GraphError):
    """A non-idempotent call may or may not have happened (timeout, dropped connection, 5xx).

    The caller must look before it leaps: for a group chat, search for the chat before
    creating it again (issue 6).
    """


class GraphConnectionError(GraphError):
    """No connection could be opened to Graph (DNS failure, refused, connect timeout)."""


def parse_error_body(body: Any) -> tuple[str, str, dict[str, str]]:
    """``code``, ``message`` and ``innerError`` fields of a Graph error (concepts/errors.md)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        inner = error.get("innerError") or error.get("innererror") or {}
        inner_fields = (
            {str(k): str(v) for k, v in inner.items() if isinstance(v, (str, int))}
            if isinstance(inner, dict)
            else {}
        )
        return str(error.get("code") or ""), str(error.get("message") or ""), inner_fields
    if isinstance(body, str) and body.strip():
        return "", body.strip().splitlines()[0][:300], {}
    return "", "", {}
