"""``$batch`` requests and answers (``concepts/json-batching.md``), apart from sending them.

`GraphClient.batch` sends the chunks `chunked` makes and hands each answer to `sort_answers`,
which keeps the items' results and picks out the items Graph throttled inside the batch; the
client retries those one by one, after their own ``Retry-After``, through its normal request
loop (the SDKs' batch handlers don't).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provisioner.graph.errors import GraphError, ThrottledError
from provisioner.graph.pacing import Scope, backoff_delay
from provisioner.graph.retry import parse_retry_after, wait_too_long
from provisioner.graph.routes import route_for
from provisioner.redact import redact, redact_data

if TYPE_CHECKING:  # the transport imports requests; shaping a batch does not need it
    from provisioner.graph.transport import Response

#: ``concepts/json-batching.md``: "JSON batch requests are currently limited to 20 individual
#: requests."
BATCH_LIMIT = 20

__all__ = [
    "BATCH_LIMIT",
    "Throttled",
    "chunk_is_idempotent",
    "chunked",
    "error_answer",
    "item_result",
    "item_scopes",
    "sort_answers",
]


def chunked(requests_: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """The requests in chunks of `BATCH_LIMIT`, ids as strings, a JSON body typed as such.
    Raises ValueError for duplicate ids (Graph would refuse the batch)."""
    ids = [str(r["id"]) for r in requests_]
    if len(set(ids)) != len(ids):
        raise ValueError("batch request ids must be unique")
    chunks = []
    for start in range(0, len(requests_), BATCH_LIMIT):
        chunk = [dict(r, id=str(r["id"])) for r in requests_[start : start + BATCH_LIMIT]]
        for item in chunk:
            if item.get("body") is not None:
                item.setdefault("headers", {}).setdefault("Content-Type", "application/json")
        chunks.append(chunk)
    return chunks


def chunk_is_idempotent(chunk: Sequence[Mapping[str, Any]]) -> bool:
    """A batch may be repeated when each of its requests may be."""
    return all(str(item["method"]).upper() in ("GET", "PUT", "PATCH", "DELETE") for item in chunk)


@dataclass(frozen=True)
class Throttled:
    """A batch item Graph throttled: to be sent again on its own."""

    item: Mapping[str, Any]
    status: int
    retry_after: float | None

    def delay(self, rand: Callable[[], float]) -> float:
        """Its own ``Retry-After``, or a first backoff step without one."""
        return self.retry_after if self.retry_after is not None else backoff_delay(0, rand=rand)

    def too_long(self, allowed: float) -> ThrottledError | None:
        """The error of an item told to wait longer than a request waits (``allowed``), as
        the send loop raises it for a request of its own; None when it may wait. Waiting
        would hold the whole batch, and the command reading it, for that long (issue 20)."""
        if self.retry_after is None or self.retry_after <= allowed:
            return None
        return ThrottledError(
            "Too Many Requests",
            status=self.status,
            method=str(self.item["method"]).upper(),
            path=str(self.item["url"]),
            hint=wait_too_long(self.retry_after, allowed),
        )


def sort_answers(
    chunk: Sequence[Mapping[str, Any]], response: Response, *, now: float
) -> tuple[dict[str, dict[str, Any]], list[Throttled]]:
    """The results of the chunk's items by id, and the items to retry. ``now`` is the wall
    clock, for a ``Retry-After`` given as an HTTP-date. Raises `GraphError` when an item has
    no answer."""
    body = response.body if isinstance(response.body, dict) else {}
    listed = body.get("responses")
    # Only well-formed items count (json-batching.md: each an object with id and status); an
    # item that is not one leaves its request without an answer, reported below.
    answers = {
        str(r.get("id")): r
        for r in (listed if isinstance(listed, list) else [])
        if isinstance(r, dict) and _status(r) is not None
    }
    results: dict[str, dict[str, Any]] = {}
    throttled: list[Throttled] = []
    for item in chunk:
        answer = answers.get(item["id"])
        if answer is None:
            raise GraphError(
                f"$batch response has no answer for request {item['id']!r}",
                method="POST",
                path="/$batch",
                client_request_id=response.client_request_id,
            )
        status = _status(answer) or 0
        raw_headers = answer.get("headers")
        headers = (
            {str(k): redact(str(v)) for k, v in raw_headers.items()}
            if isinstance(raw_headers, dict)
            else {}
        )
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
        # concepts/json-batching.md: items are throttled individually (429 with their own
        # Retry-After inside the 200 envelope).
        if status == 429 or (status == 503 and retry_after is not None):
            throttled.append(Throttled(item, status, retry_after))
        else:
            results[item["id"]] = item_result(item, answer)
    return results, throttled


def item_scopes(item: Mapping[str, Any]) -> tuple[Scope, ...]:
    return route_for(item["method"], item["url"]).scopes


def item_result(item: Mapping[str, Any], answer: Mapping[str, Any]) -> dict[str, Any]:
    headers = answer.get("headers")
    status = _status(answer) or 0
    return {
        "id": item["id"],
        "status": status,
        "headers": redact_data(headers) if isinstance(headers, dict) else {},
        # An error item's body feeds error messages, as a request's own answer does.
        "body": redact_data(answer.get("body")) if status >= 300 else answer.get("body"),
    }


def _status(answer: Mapping[str, Any]) -> int | None:
    """An item's HTTP status, when it is one (an integer 100-599)."""
    status = answer.get("status")
    if isinstance(status, str) and status.isdigit() and len(status) == 3:
        status = int(status)
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status
    return None


def error_answer(exc: GraphError) -> dict[str, Any]:
    """A batch item's answer for an item whose own retry ended in a Graph error."""
    return {
        "status": exc.status,
        "headers": {"request-id": exc.request_id},
        "body": {"error": {"code": exc.code, "message": exc.graph_message}},
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None
