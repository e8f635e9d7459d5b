"""Errors of the emulator: startup problems for the user, and Graph-shaped HTTP errors.

``EmulatorError`` is a ``ProvisionError``: the CLI reports it as a message, never a traceback.
``GraphError`` never leaves the emulator: the request pipeline turns it into Graph's error
response (``concepts/errors.md``: a single ``error`` object with ``code``, ``message`` and an
``innerError`` carrying ``date``, ``request-id`` and ``client-request-id``).
"""

from __future__ import annotations

from provisioner.errors import ProvisionError


class EmulatorError(ProvisionError):
    """The emulator cannot start: a bad option, a corrupt or locked data file, a bad users file."""


class GraphError(Exception):
    """An error answer in Graph's shape: HTTP status, error code and message, extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def not_found(message: str, code: str = "NotFound") -> GraphError:
    return GraphError(404, code, message)


def error_body(
    code: str, message: str, *, request_id: str, client_request_id: str, date: str
) -> dict[str, object]:
    """Graph's error body (``concepts/errors.md``, and the batch example in
    ``concepts/json-batching.md`` for the ``innerError`` fields)."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": date,
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
