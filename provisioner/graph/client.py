"""The Microsoft Graph client: one pooled session, paced, retrying only what is safe to retry.

Retry policy (``concepts/throttling.md``, ``concepts/errors.md``):

* 429, and 503 with ``Retry-After``: Graph did not do the work, so any request is retried,
  after ``Retry-After`` (seconds, fractional seconds or an HTTP-date; no low cap, up to
  ``max_retry_after``), or without one after exponential backoff with full jitter. The pacer
  is told, so the whole scope slows down, not just this request.
* A timeout, a dropped connection, a 504, or another 5xx without ``Retry-After``: Graph may
  or may not have done the work. Retried only for idempotent calls (reads, oneOnOne
  creations, which return the existing chat per ``api/chat-post.md``, PATCH of a topic,
  member changes and deletes); a group ``POST /chats`` raises `AmbiguousOutcome` instead, because
  repeating it creates a second chat.
* A connection that could not be opened (DNS, refused, connect timeout): nothing was sent,
  retried a few times for any call, then `GraphConnectionError`.
* 401: the token is refreshed and the call repeated, once per refused token and at most
  ``MAX_TOKEN_REFRESHES`` times in a row (an answer other than 401 starts the count again: the
  token was accepted, a later 401 is a new expiry); 403 names the permission needed.

Every request carries a fresh ``client-request-id``; it and Graph's ``request-id`` are logged
(``provision.graph``) and kept on every error so a user can quote them to Microsoft support.
The bearer token is never logged and never part of an exception.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from provisioner import __version__
from provisioner.graph.auth import Credential, validate_graph_url
from provisioner.graph.errors import (
    AmbiguousOutcome,
    GraphAuthError,
    GraphConnectionError,
    GraphError,
    GraphNotFound,
    GraphPermissionError,
    ThrottledError,
    parse_error_body,
)
from provisioner.graph.pacing import Pacer, Scope, backoff_delay
from provisioner.graph.routes import (
    Route,
    chat_path,
    membership_id_from_location,
    odata_string,
    route_for,
    user_path,
)

__all__ = [
    "BATCH_LIMIT",
    "AmbiguousOutcome",
    "GraphAuthError",
    "GraphClient",
    "GraphConnectionError",
    "GraphError",
    "GraphNotFound",
    "GraphPermissionError",
    "Response",
    "ThrottledError",
    "parse_retry_after",
    "route_for",
]

log = logging.getLogger("provision.graph")

#: ``concepts/json-batching.md``: "JSON batch requests are currently limited to 20 individual
#: requests."
BATCH_LIMIT = 20
MAX_TOKEN_REFRESHES = 3  # new tokens tried in a row after 401s (each refused token once)


# -- Retry-After -----------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: integer or fractional seconds, or an
    HTTP-date (RFC 9110). None when absent or unparseable; never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


# -- the client --------------------------------------------------------------------------------


@dataclass
class Response:
    """One Graph answer: status, headers (a plain dict) and the parsed JSON body."""

    status: int
    headers: Mapping[str, str]
    body: Any
    client_request_id: str = ""
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


EventHook = Callable[[str, Mapping[str, Any]], None]


class GraphClient:
    """A paced, retrying client for the few Graph endpoints provision uses.

    ``base_url`` is the Graph root with its version (``https://graph.microsoft.com/v1.0``).
    One ``requests.Session`` is shared by all threads; its pool holds ``pool_size``
    connections, so size it to the worker pool. ``on_event(kind, info)`` is called for
    ``"throttled"`` (a 429/503 with its retry delay), ``"retry"`` (any other retry),
    ``"token_refresh"`` (after a 401) and ``"response"`` (every answer), e.g. to count throttled
    requests in a progress display; it must be quick and thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        credential: Credential,
        *,
        pacer: Pacer | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        max_retry_after: float = 600.0,
        max_retries: int = 8,
        max_connect_retries: int = 3,
        pool_size: int = 32,
        user_agent: str = f"provision/{__version__}",
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = validate_graph_url(base_url)
        self._origin = urlsplit(self.base_url)
        self._credential = credential
        self._pacer = pacer
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        self._timeout = timeout
        self.max_retry_after = max_retry_after
        self._max_retries = max_retries
        self._max_connect_retries = max_connect_retries
        self._user_agent = user_agent
        self._on_event = on_event
        self._clock = pacer.clock if pacer is not None else clock
        self._wallclock = wallclock
        self._sleep = sleep
        self._rand = rand

    def __repr__(self) -> str:
        return f"GraphClient({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    # -- endpoints -----------------------------------------------------------------------------

    def create_chat(self, body: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """``POST /chats`` (api/chat-post.md). ``idempotent`` is True for oneOnOne chats only:
        Graph returns the existing one; a group POST always makes a new chat."""
        return self._json(self.request("POST", "/chats", json=body, idempotent=idempotent))

    def get_chat(self, chat_id: str, *, expand_members: bool = True) -> dict[str, Any]:
        params = {"$expand": "members"} if expand_members else None
        return self._json(self.request("GET", chat_path(chat_id), params=params))

    def update_chat_topic(self, chat_id: str, topic: str) -> dict[str, Any]:
        # PATCH sets the topic to a value: repeating it is harmless (api/chat-patch.md).
        return self._json(
            self.request("PATCH", chat_path(chat_id), json={"topic": topic}, idempotent=True)
        )

    def list_members(self, chat_id: str) -> list[dict[str, Any]]:
        return list(self._pages(f"{chat_path(chat_id)}/members", None))

    def add_member(self, chat_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        # Repeating an add cannot create a second membership (a user is a member or not), so
        # a timed-out add is retried; the caller may see "already a member" as the outcome.
        response = self.request("POST", f"{chat_path(chat_id)}/members", json=body, idempotent=True)
        added = self._json(response)
        if not added.get("id"):  # chat-post-members.md: no body, the member is in Location
            membership_id = membership_id_from_location(response.headers.get("Location"))
            if membership_id:
                added = {**added, "id": membership_id}
        return added

    def remove_member(self, chat_id: str, membership_id: str) -> None:
        path = f"{chat_path(chat_id)}/members/{quote(membership_id, safe='')}"
        self.request("DELETE", path, idempotent=True)

    def delete_chat(self, chat_id: str) -> None:
        self.request("DELETE", chat_path(chat_id), idempotent=True)

    def get_user(
        self, id_or_upn: str, *, select: Sequence[str] = ("id", "userPrincipalName", "displayName")
    ) -> dict[str, Any]:
        params = {"$select": ",".join(select)} if select else None
        return self._json(self.request("GET", user_path(id_or_upn), params=params))

    def list_user_chats(
        self,
        user_id: str,
        *,
        chat_type: str | None = None,
        topic: str | None = None,
        expand_members: bool = True,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """``GET /users/{id}/chats`` (api/chat-list.md), following ``@odata.nextLink``.

        At most one of ``chat_type`` and ``topic``: Graph documents no ``$filter`` joining
        properties with ``and`` (graph-facts), so a caller filters on one and checks the rest
        itself."""
        if chat_type is not None and topic is not None:
            raise ValueError("filter chats on chatType or on topic, not both")
        params: dict[str, str] = {}
        if chat_type is not None:
            params["$filter"] = f"chatType eq {odata_string(chat_type)}"
        if topic is not None:
            params["$filter"] = f"topic eq {odata_string(topic)}"
        if expand_members:
            params["$expand"] = "members"
        if top is not None:
            params["$top"] = str(top)  # chat-list.md: at most 50
        return self._pages(f"{user_path(user_id)}/chats", params)

    def batch(self, requests_: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Run requests through ``$batch`` (concepts/json-batching.md), 20 per call.

        Each request is ``{"id", "method", "url"[, "body"][, "headers"]}`` with ``url``
        relative to the version (``/users/...``). Returns one ``{"id", "status", "headers",
        "body"}`` per request, in request order. Items Graph throttled inside the batch are
        retried one by one after their own ``Retry-After`` (the SDKs' batch handlers don't);
        other failed items are returned as they are, for the caller to judge.
        """
        results: dict[str, dict[str, Any]] = {}
        ids = [str(r["id"]) for r in requests_]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique")
        for start in range(0, len(requests_), BATCH_LIMIT):
            chunk = [dict(r, id=str(r["id"])) for r in requests_[start : start + BATCH_LIMIT]]
            for item in chunk:
                if item.get("body") is not None:
                    item.setdefault("headers", {}).setdefault("Content-Type", "application/json")
            results.update(self._batch_chunk(chunk))
        return [results[i] for i in ids]

    # -- the request loop ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        scopes: Sequence[Scope] | None = None,
        not_before: float | None = None,
    ) -> Response:
        """One Graph call with pacing and the retry policy of this module.

        ``path`` is relative to ``base_url`` (or an absolute URL on the same origin, for
        ``@odata.nextLink``). ``idempotent`` defaults to True for GET, PUT, PATCH, DELETE.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "PATCH", "DELETE")
        url, rel = self._url(path)
        route = route_for(method, rel)
        wanted = tuple(scopes) if scopes is not None else route.scopes
        attempt = 0  # retries spent (throttling, 5xx, dropped connections)
        connect_failures = 0
        rejected: set[str] = set()  # tokens Graph refused (401) for this call
        maybe_done = False  # an earlier attempt may have reached Graph
        earliest = not_before if not_before is not None else -math.inf
        while True:
            sent_at = self._wait_turn(wanted, earliest)
            client_request_id = str(uuid.uuid4())
            token = self._credential.get_token()
            headers = {
                "Authorization": f"Bearer {token}",
                "client-request-id": client_request_id,
                "return-client-request-id": "true",
                "User-Agent": self._user_agent,
                "Accept": "application/json",
            }
            started = self._clock()
            try:
                raw = self._session.request(
                    method, url, params=params, json=json, headers=headers, timeout=self._timeout
                )
            except requests.RequestException as exc:
                elapsed = self._clock() - started
                sent = not _never_sent(exc)
                reason = _transport_reason(exc)
                log.warning(
                    "%s %s failed after %.3fs: %s client-request-id=%s",
                    method, rel, elapsed, reason, client_request_id,
                )  # fmt: skip
                if not sent:
                    connect_failures += 1
                    if connect_failures > self._max_connect_retries:
                        raise GraphConnectionError(
                            f"cannot connect to {self._origin.netloc}: {reason}",
                            method=method,
                            path=rel,
                            client_request_id=client_request_id,
                            hint="check the Graph URL, DNS and network access (proxy, firewall)",
                        ) from None
                    earliest = self._backoff(connect_failures - 1, method, rel, reason)
                    continue
                maybe_done = True
                if not idempotent:
                    raise AmbiguousOutcome(
                        f"{reason}; Graph may or may not have done it",
                        method=method,
                        path=rel,
                        client_request_id=client_request_id,
                        hint="not retried, because repeating this request could do it twice",
                    ) from None
                attempt += 1
                if attempt > self._max_retries:
                    raise GraphError(
                        f"{reason}, {attempt} times", method=method, path=rel,
                        client_request_id=client_request_id,
                    ) from None  # fmt: skip
                earliest = self._backoff(attempt - 1, method, rel, reason)
                continue

            elapsed = self._clock() - started
            response = _response(raw, client_request_id, attempt + 1)
            if response.status >= 400:
                # A gateway or proxy that quotes the request back would put the token into
                # our error message: take it out of the body every error is built from.
                response.body = _without(response.body, token)
            request_id = response.headers.get("request-id", "")
            status = response.status
            log.log(
                logging.DEBUG if status < 400 else logging.INFO,
                "%s %s -> %d in %.3fs client-request-id=%s request-id=%s",
                method, rel, status, elapsed, client_request_id, request_id,
            )  # fmt: skip
            self._emit("response", method=method, path=rel, status=status, elapsed=elapsed)
            if status != 401:
                rejected.clear()  # the token was accepted: a later 401 is a new expiry

            if status < 400:
                if self._pacer is not None:
                    self._pacer.succeeded(wanted, sent_at=sent_at)
                return response

            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), now=self._wallclock()
            )
            if status == 429 or (status == 503 and retry_after is not None) or status == 509:
                # Graph did not do the work (concepts/errors.md): any request may be repeated.
                attempt += 1
                if self._pacer is not None:
                    self._pacer.throttled(wanted, retry_after=retry_after, sent_at=sent_at)
                if retry_after is not None and retry_after > self.max_retry_after:
                    raise self._error(
                        ThrottledError,
                        response,
                        method,
                        rel,
                        hint=f"Graph asked to wait {retry_after:.0f}s before retrying, more "
                        f"than the {self.max_retry_after:.0f}s allowed; try again later",
                    )
                if attempt > self._max_retries:
                    raise self._error(
                        ThrottledError,
                        response,
                        method,
                        rel,
                        hint=f"still throttled after {self._max_retries} retries; another app "
                        "may be using this tenant's limits, try again later or lower --max-rps",
                    )
                delay = (
                    retry_after
                    if retry_after is not None
                    else backoff_delay(attempt - 1, rand=self._rand)
                )
                self._emit("throttled", method=method, path=rel, status=status, delay=delay)
                log.info(
                    "%s %s throttled (%d), retrying in %.2fs (attempt %d)",
                    method, rel, status, delay, attempt + 1,
                )  # fmt: skip
                earliest = self._clock() + delay
                continue

            if status == 401 and token not in rejected and len(rejected) < MAX_TOKEN_REFRESHES:
                # A call can meet more than one expired token: throttled or paced for longer
                # than the refreshed token lives (or revoked again), it is refused anew. Each
                # token gets one refresh; the same token refused twice, or a credential whose
                # every new token is refused, ends the call.
                rejected.add(token)
                self._credential.invalidate()
                self._emit("token_refresh", method=method, path=rel)
                earliest = -math.inf
                continue

            if status in (500, 502, 503, 504):
                # Without Retry-After, Graph may have done the work before failing.
                maybe_done = True
                if not idempotent:
                    raise self._error(
                        AmbiguousOutcome,
                        response,
                        method,
                        rel,
                        hint="not retried, because repeating this request could do it twice",
                    )
                attempt += 1
                if attempt > self._max_retries:
                    raise self._error(GraphError, response, method, rel)
                earliest = self._backoff(attempt - 1, method, rel, f"{status}")
                continue

            if status == 404 and method == "DELETE" and maybe_done:
                # An earlier attempt that timed out did the delete.
                return Response(204, response.headers, None, client_request_id, attempt + 1)
            raise self._classify(response, method, rel, route)

    # -- helpers ---------------------------------------------------------------------------------

    def _url(self, path: str) -> tuple[str, str]:
        """Absolute URL and path relative to the version root, refusing other origins (a
        nextLink elsewhere would receive our token)."""
        if "://" in path:
            parts = urlsplit(path)
            if (parts.scheme, parts.netloc) != (self._origin.scheme, self._origin.netloc) or not (
                parts.path.startswith(self._origin.path)
            ):
                raise GraphError(
                    f"refusing to follow a link to another host: {parts.scheme}://{parts.netloc}",
                    hint="the access token is only sent to the configured Graph URL",
                )
            rel = parts.path[len(self._origin.path) :] or "/"
            return path, rel
        rel = path if path.startswith("/") else f"/{path}"
        return self.base_url + rel, rel

    def _wait_turn(self, scopes: Sequence[Scope], earliest: float) -> float:
        if self._pacer is not None:
            return self._pacer.acquire(scopes, not_before=earliest)
        now = self._clock()
        if earliest > now:
            self._sleep(earliest - now)
            now = self._clock()
        return now

    def _backoff(self, attempt: int, method: str, rel: str, reason: str) -> float:
        delay = backoff_delay(attempt, rand=self._rand)
        self._emit("retry", method=method, path=rel, reason=reason, delay=delay)
        log.info("%s %s: %s, retrying in %.2fs", method, rel, reason, delay)
        return self._clock() + delay

    def _emit(self, kind: str, **info: Any) -> None:
        if self._on_event is not None:
            self._on_event(kind, info)

    def _pages(self, path: str, params: Mapping[str, str] | None) -> Iterator[dict[str, Any]]:
        next_path: str | None = path
        while next_path is not None:
            body = self._json(self.request("GET", next_path, params=params))
            params = None  # the nextLink carries the query
            yield from body.get("value", [])
            link = body.get("@odata.nextLink")
            next_path = str(link) if link else None

    @staticmethod
    def _json(response: Response) -> dict[str, Any]:
        return response.body if isinstance(response.body, dict) else {}

    def _batch_chunk(self, chunk: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        scopes = [s for item in chunk for s in route_for(item["method"], item["url"]).scopes]
        idempotent = all(
            str(item["method"]).upper() in ("GET", "PUT", "PATCH", "DELETE") for item in chunk
        )
        response = self.request(
            "POST", "/$batch", json={"requests": chunk}, idempotent=idempotent, scopes=scopes
        )
        answers = {str(r.get("id")): r for r in self._json(response).get("responses", [])}
        answered = self._clock()
        results: dict[str, dict[str, Any]] = {}
        retries: list[tuple[dict[str, Any], float]] = []
        for item in chunk:
            answer = answers.get(item["id"])
            if answer is None:
                raise GraphError(
                    f"$batch response has no answer for request {item['id']!r}",
                    method="POST",
                    path="/$batch",
                    client_request_id=response.client_request_id,
                )
            status = int(answer.get("status", 0))
            headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
            retry_after = parse_retry_after(_header(headers, "Retry-After"), now=self._wallclock())
            if status == 429 or (status == 503 and retry_after is not None):
                # concepts/json-batching.md: items are throttled individually; retry each
                # on its own, after its own Retry-After, through the normal request loop.
                # All of them count from this answer (one congestion event for the pacer),
                # so several throttled items cost one Retry-After, not one each in turn.
                item_scopes = route_for(item["method"], item["url"]).scopes
                if self._pacer is not None:
                    self._pacer.throttled(item_scopes, retry_after=retry_after, sent_at=answered)
                delay = (
                    retry_after if retry_after is not None else backoff_delay(0, rand=self._rand)
                )
                self._emit("throttled", method=item["method"], path=item["url"], status=status,
                           delay=delay)  # fmt: skip
                retries.append((item, answered + delay))
                continue
            results[item["id"]] = _item_result(item, answer)
        for item, not_before in retries:
            results[item["id"]] = _item_result(item, self._retry_item(item, not_before))
        return results

    def _retry_item(self, item: Mapping[str, Any], not_before: float) -> dict[str, Any]:
        method = str(item["method"]).upper()
        try:
            response = self.request(
                method, str(item["url"]), json=item.get("body"), not_before=not_before
            )
        except GraphError as exc:
            if exc.status == 0:
                raise
            return {
                "status": exc.status,
                "headers": {"request-id": exc.request_id},
                "body": {"error": {"code": exc.code, "message": exc.graph_message}},
            }
        return {"status": response.status, "headers": dict(response.headers), "body": response.body}

    def _classify(self, response: Response, method: str, rel: str, route: Route) -> GraphError:
        status = response.status
        if status == 401:
            return self._error(
                GraphAuthError,
                response,
                method,
                rel,
                hint="the access token was rejected even after a refresh: check the tenant, "
                "the app registration and --cloud",
            )
        if status == 403:
            needed = route.permission
            hint = (
                f"this call needs the Microsoft Graph permission {needed} granted to the app "
                "(application permission, with admin consent) or the user (delegated)"
                if needed
                else "the app or user lacks a permission for this call"
            )
            return self._error(
                GraphPermissionError, response, method, rel, hint=hint, permission=needed
            )
        if status == 404:
            return self._error(GraphNotFound, response, method, rel)
        return self._error(GraphError, response, method, rel)

    def _error(
        self,
        cls: type[GraphError],
        response: Response,
        method: str,
        rel: str,
        *,
        hint: str | None = None,
        **extra: Any,
    ) -> GraphError:
        code, message, inner = parse_error_body(response.body)
        if not message:
            message = {
                429: "Too Many Requests",
                503: "Service Unavailable",
                504: "Gateway Timeout",
            }.get(response.status, f"HTTP {response.status}")
        return cls(
            message,
            status=response.status,
            code=code,
            method=method,
            path=rel,
            request_id=response.headers.get("request-id") or inner.get("request-id", ""),
            client_request_id=response.client_request_id,
            date=inner.get("date") or response.headers.get("Date", ""),
            hint=hint,
            **extra,
        )


def _item_result(item: Mapping[str, Any], answer: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "status": int(answer.get("status", 0)),
        "headers": answer.get("headers") or {},
        "body": answer.get("body"),
    }


def _response(raw: requests.Response, client_request_id: str, attempts: int) -> Response:
    headers = {k: v for k, v in raw.headers.items()}
    body: Any = None
    if raw.content:
        try:
            body = raw.json()
        except ValueError:
            body = raw.text[:1000]
    return Response(raw.status_code, _Caseless(headers), body, client_request_id, attempts)


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


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


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


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection could not even be opened, so Graph saw nothing."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)  # includes DNS (NameResolutionError)
    return False


def _transport_reason(exc: requests.RequestException) -> str:
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
