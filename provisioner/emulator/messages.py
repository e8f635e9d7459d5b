"""Transport-independent request and response values, and Graph's error response."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from provisioner.emulator.errors import GraphError, error_body

# The Content-Type Graph sends with JSON results (json-batching.md example).
JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
ERROR_TYPE = "application/json"


@dataclass
class Request:
    method: str
    path: str  # below the version segment: "/chats/19:...@thread.v2/members"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    base_url: str  # "http://127.0.0.1:8765/v1.0", for @odata.context and nextLink
    body: object | None = None  # parsed JSON, None when there was no body
    body_error: GraphError | None = None  # the body could not be read as JSON
    in_batch: bool = False
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def client_request_id(self) -> str:
        return self.headers.get("client-request-id") or self.request_id


@dataclass
class Response:
    status: int
    body: object | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


def utc_date() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def error_response(req: Request, err: GraphError) -> Response:
    body = error_body(
        err.code,
        err.message,
        request_id=req.request_id,
        client_request_id=req.client_request_id,
        date=utc_date(),
    )
    if err.status == 429:
        # The throttled-response sample of concepts/throttling.md also carries these.
        inner = body["error"]["innerError"]  # type: ignore[index]
        inner.update({"code": "429", "message": "Please retry after", "status": "429"})
    return Response(err.status, body, {"Content-Type": ERROR_TYPE, **err.headers})
