"""``POST /$batch`` as ``concepts/json-batching.md`` describes it.

* At most 20 requests; ``id`` unique (case-insensitive), ``method`` and ``url`` required, a
  ``body`` needs a ``Content-Type`` in ``headers``; a malformed batch is a 400 as a whole.
* Each item runs through the same pipeline as a plain request, so it is throttled on its own
  and gets its own ``429`` with its own ``Retry-After`` header.
* ``dependsOn`` orders items; an item whose dependency failed gets ``424 Failed Dependency``.
* Responses carry ``id``, ``status``, ``headers`` and ``body`` and "might appear in a
  different order than the requests" (they are shuffled, seeded, unless disabled).
* A ``drop`` fault on any item loses the whole batch response after every item has run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from provisioner.emulator.errors import GraphError, bad_request
from provisioner.emulator.messages import ERROR_TYPE, Request, Response, error_response
from provisioner.emulator.protocol import Pipeline

MAX_REQUESTS = 20  # json-batching.md: "JSON batch requests are currently limited to 20"
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
_NO_BODY = object()


@dataclass
class Item:
    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: object = _NO_BODY
    depends_on: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.id.lower()  # json-batching.md: ids are "Not case-sensitive"


def _item(raw: object, seen: set[str]) -> Item:
    if not isinstance(raw, dict):
        raise bad_request("Invalid batch payload format: each request must be an object.")
    rid, method, url = raw.get("id"), raw.get("method"), raw.get("url")
    if not isinstance(rid, str) or not rid:
        raise bad_request("Each batch request needs a string 'id'.")
    if rid.lower() in seen:
        raise bad_request(f"Batch request id '{rid}' is not unique.")
    seen.add(rid.lower())
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise bad_request(f"Batch request '{rid}' has an invalid method {method!r}.")
    if not isinstance(url, str) or not url:
        raise bad_request(f"Batch request '{rid}' needs a 'url'.")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise bad_request(f"Batch request '{rid}' has invalid headers.")
    if "body" in raw and not any(k.lower() == "content-type" for k in headers):
        # json-batching.md: "When the body is supplied, a Content-Type header must be included."
        raise bad_request(f"Write request id : {rid} does not contain Content-Type header or body.")
    depends = raw.get("dependsOn", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise bad_request(f"Batch request '{rid}' has an invalid dependsOn.")
    return Item(rid, method.upper(), url, dict(headers), raw.get("body", _NO_BODY), list(depends))


def _validate(body: object) -> list[Item]:
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise bad_request("Invalid batch payload format: expected an object with 'requests'.")
    raw_items = body["requests"]
    if not raw_items:
        raise bad_request("Invalid batch payload format: 'requests' is empty.")
    if len(raw_items) > MAX_REQUESTS:
        raise bad_request(
            f"The batch contains {len(raw_items)} requests; at most {MAX_REQUESTS} are allowed."
        )
    seen: set[str] = set()
    items = [_item(raw, seen) for raw in raw_items]
    for item in items:
        for dep in item.depends_on:
            if dep.lower() not in seen or dep.lower() == item.key:
                raise bad_request(f"Batch request '{item.id}' depends on unknown id '{dep}'.")
    return items


def _order(items: list[Item]) -> list[Item]:
    """Dependencies first, otherwise in the given order; a cycle is a 400."""
    by_key = {i.key: i for i in items}
    done: set[str] = set()
    visiting: set[str] = set()
    order: list[Item] = []

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            raise bad_request("The dependsOn of the batch requests form a cycle.")
        visiting.add(key)
        for dep in by_key[key].depends_on:
            visit(dep.lower())
        visiting.discard(key)
        done.add(key)
        order.append(by_key[key])

    for key in by_key:
        visit(key)
    return order


def _item_request(outer: Request, item: Item) -> Request | GraphError:
    split = urlsplit(item.url)
    if split.scheme or split.netloc:
        return bad_request("Batch request urls must be relative, e.g. '/chats'.")
    headers = {k.lower(): v for k, v in item.headers.items()}
    if "authorization" in outer.headers:  # who the items run as (delegated or app-only)
        headers.setdefault("authorization", outer.headers["authorization"])
    if "client-request-id" in outer.headers:
        headers.setdefault("client-request-id", outer.headers["client-request-id"])
    body_error = None
    ctype = headers.get("content-type", "")
    if item.body is not _NO_BODY and "json" not in ctype.lower():
        body_error = GraphError(
            415,
            "UnsupportedMediaType",
            f"Content-Type {ctype!r} is not supported; use application/json.",
        )
    return Request(
        method=item.method,
        path="/" + split.path.lstrip("/"),
        query=dict(parse_qsl(split.query, keep_blank_values=True)),
        headers=headers,
        base_url=outer.base_url,
        body=None if item.body is _NO_BODY else item.body,
        body_error=body_error,
        in_batch=True,
    )


def handle_batch(api: Pipeline, outer: Request) -> Response:
    if outer.body_error is not None:
        return error_response(outer, outer.body_error)
    try:
        order = _order(_validate(outer.body))
    except GraphError as err:
        return error_response(outer, err)
    statuses: dict[str, int] = {}
    responses: list[dict[str, object]] = []
    dropped = False
    for item in order:
        failed = [d for d in item.depends_on if statuses.get(d.lower(), 0) >= 400]
        sub = _item_request(outer, item)
        if failed:
            # json-batching.md: "any request that depends on that request fails with 424"
            api.tenant.count("requests_total")
            api.tenant.count("batch_items_total")
            api.tenant.count_in("by_status", 424)
            resp = error_response(
                outer,
                GraphError(424, "FailedDependency", f"Dependent request '{failed[0]}' failed."),
            )
        elif isinstance(sub, GraphError):
            resp = error_response(outer, sub)
        else:
            resp = api.handle(sub)
        entry: dict[str, object] = {"id": item.id, "status": resp.status, "headers": resp.headers}
        if resp.drop:  # the item ran; its answer is lost with the whole batch response
            dropped = True
            entry = {"id": item.id, "status": 500, "headers": {"Content-Type": ERROR_TYPE}}
        elif resp.body is not None:
            entry["body"] = resp.body
        statuses[item.key] = int(str(entry["status"]))
        responses.append(entry)
    api.shuffle(responses)
    return Response(
        200, {"responses": responses}, {"Content-Type": "application/json"}, drop=dropped
    )
