"""The Microsoft Graph client: one pooled session, paced, retrying only what is safe to retry.

`GraphClient.request` is the send loop: wait for the pacer, send, and ask the retry policy
(`provisioner.graph.retry.decide`, a pure function of the answer, where the rules and their
sources are) whether to return, raise, refresh the token or send again after a delay.
``$batch`` requests and answers are shaped in `provisioner.graph.batch`; `requests` answers and
exceptions become facts in `provisioner.graph.transport`.

Every request carries a fresh ``client-request-id``; it and Graph's ``request-id`` are logged
(``provision.graph``) and kept on every error so a user can quote them to Microsoft support.
The bearer token is never logged and never part of an exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from provisioner import __version__
from provisioner.graph import batch as batching
from provisioner.graph.answers import checked_chat, next_page, organization_id
from provisioner.graph.clock import GraphClock
from provisioner.graph.errors import (
    GraphError,
)
from provisioner.graph.pacing import Pacer, Scope
from provisioner.graph.retry import (
    Answer,
    Call,
    Limits,
    Raise,
    RefreshToken,
    Retry,
    RetryState,
    Return,
    TransportFailure,
    decide,
    is_throttled,
    parse_retry_after,
)
from provisioner.graph.routes import (
    added_member,
    chat_path,
    chats_query,
    deleted_chat_path,
    group_path,
    odata_string,
    resolve_url,
    route_for,
    user_path,
)
from provisioner.graph.transport import (
    Response,
    error_for,
    fetch,
    new_session,
    request_headers,
    response_from,
)
from provisioner.redact import remember
from provisioner.signin.chooser import Credential, validate_graph_url
from provisioner.signin.claims import signed_in_user, tenant_of_token, token_claims

log = logging.getLogger("provision.graph")

EventHook = Callable[[str, Mapping[str, Any]], None]
_ONCE = Limits(max_retries=0, max_connect_retries=0, max_retry_after=0.0)  # no retry at all


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
        self._host = urlsplit(self.base_url).netloc
        self._credential = credential
        self._pacer = pacer
        self._session = session if session is not None else new_session(pool_size)
        self._timeout = timeout
        self._limits = Limits(max_retries, max_connect_retries, max_retry_after)
        self._user_agent = user_agent
        self._on_event = on_event
        self._clock = pacer.clock if pacer is not None else clock
        self._graph_clock = GraphClock(self._clock)
        self._wallclock = wallclock
        self._sleep = sleep
        self._rand = rand

    @property
    def max_retry_after(self) -> float:
        return self._limits.max_retry_after

    def __repr__(self) -> str:
        return f"GraphClient({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def signed_in_user(self) -> str | None:
        """The object id of the person this client acts for (a delegated token), else None
        (app-only). In delegated mode Graph wants that person in every new chat and lists
        only their chats (chat-post.md, chat-list.md)."""
        return signed_in_user(self._credential.get_token())

    def token_claims(self) -> dict[str, Any]:
        """What the credential's token says (tenant, identity, roles or scopes; {} for a
        token that is not a JWT), read without its signing key. Gets a token: signs in if
        needed."""
        return token_claims(self._credential.get_token())

    def signed_in_tenant(self) -> str | None:
        """The tenant the credential signs in to (the token's ``tid``), or None when the token
        does not say (an opaque token, the emulator's). Gets a token: signs in if needed."""
        return tenant_of_token(self._credential.get_token())

    def graph_now(self) -> datetime | None:
        """Graph's time (`provisioner.graph.clock`): its last ``Date``, carried forward. With
        no answer yet, ``GET /organization`` is sent (any answer, a 403 too, has a ``Date``)."""
        return self._graph_clock.now(ask=self._ask_time)

    def _ask_time(self) -> None:
        # One attempt: any answer tells the time, and a Graph that answers nothing now will
        # fail the real call with its own error.
        with contextlib.suppress(GraphError):
            self.request("GET", "/organization", params={"$select": "id"}, limits=_ONCE)

    def organization_tenant(self) -> str | None:
        """The tenant Graph says this client acts in, for tokens without ``tid``: ``GET
        /organization`` (organization-list.md: the tenant's organization, ``id`` = tenant id;
        Directory.Read.All, or User.Read delegated). Graph's errors raise."""
        body = self._json(self.request("GET", "/organization", params={"$select": "id"}))
        return organization_id(body)

    # -- endpoints -----------------------------------------------------------------------------

    def create_chat(self, body: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """``POST /chats`` (api/chat-post.md). ``idempotent`` is True for oneOnOne chats only:
        Graph returns the existing one; a group POST always makes a new chat.

        A success must carry the new chat's id (chat-post.md: 201 with the chat): an answer
        without a usable one raises `AmbiguousOutcome`, since Graph may have made the chat."""
        response = self.request("POST", "/chats", json=body, idempotent=idempotent)
        return checked_chat(response, self._json(response))

    def get_chat(self, chat_id: str, *, expand_members: bool = True) -> dict[str, Any]:
        params = {"$expand": "members"} if expand_members else None
        return self._json(self.request("GET", chat_path(chat_id), params=params))

    def update_chat_topic(self, chat_id: str, topic: str) -> dict[str, Any]:
        # PATCH sets the topic to a value: repeating it is harmless (api/chat-patch.md).
        return self._json(
            self.request("PATCH", chat_path(chat_id), json={"topic": topic}, idempotent=True)
        )

    def pages(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a collection (``@odata.nextLink`` followed, see ``_pages``)."""
        return list(self._pages(path, params))

    def list_members(self, chat_id: str) -> list[dict[str, Any]]:
        return list(self._pages(f"{chat_path(chat_id)}/members", None))

    def add_member(self, chat_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        # Repeating an add cannot create a second membership (a user is a member or not), so
        # a timed-out add is retried; the caller may see "already a member" as the outcome.
        response = self.request("POST", f"{chat_path(chat_id)}/members", json=body, idempotent=True)
        return added_member(self._json(response), response.headers.get("Location"))

    def remove_member(self, chat_id: str, membership_id: str) -> None:
        path = f"{chat_path(chat_id)}/members/{quote(membership_id, safe='')}"
        self.request("DELETE", path, idempotent=True)

    def delete_chat(self, chat_id: str) -> None:
        self.request("DELETE", chat_path(chat_id), idempotent=True)

    def restore_chat(self, chat_id: str) -> None:
        """Undo a chat's soft delete (deletedchat-undodelete.md: 204). Restoring an active
        chat again changes nothing, so a timed-out restore is retried."""
        self.request("POST", f"{deleted_chat_path(chat_id)}/undoDelete", idempotent=True)

    def get_user(
        self, id_or_upn: str, *, select: Sequence[str] = ("id", "userPrincipalName", "displayName")
    ) -> dict[str, Any]:
        params = {"$select": ",".join(select)} if select else None
        return self._json(self.request("GET", user_path(id_or_upn), params=params))

    def get_group(self, group_id: str) -> dict[str, Any]:
        """The group's id and displayName (group-get.md)."""
        params = {"$select": "id,displayName,mail"}
        return self._json(self.request("GET", group_path(group_id), params=params))

    def find_groups_by_mail(self, mail: str) -> list[dict[str, Any]]:
        """Groups whose mail is ``mail`` (group-list.md: ``$filter`` on mail, ``eq``)."""
        params = {"$filter": f"mail eq {odata_string(mail)}", "$select": "id,displayName,mail"}
        return list(self._pages("/groups", params))

    def group_users(self, group_id: str) -> list[dict[str, Any]]:
        """Every user of the group, nested groups followed, 999 a page
        (group-list-transitivemembers.md: the OData cast keeps users only; ``$select`` the
        fields needed, displayName and mail for generators (issue 23); paging through
        ``@odata.nextLink``)."""
        path = f"{group_path(group_id)}/transitiveMembers/microsoft.graph.user"
        params = {"$select": "id,userPrincipalName,userType,displayName,mail", "$top": "999"}
        return list(self._pages(path, params))

    def list_user_chats(
        self,
        user_id: str,
        *,
        chat_type: str | None = None,
        topic: str | None = None,
        expand_members: bool = True,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """``GET /users/{id}/chats`` (api/chat-list.md), following ``@odata.nextLink``; one
        ``$filter`` clause at most (``routes.chats_query``)."""
        params = chats_query(chat_type=chat_type, topic=topic, expand=expand_members, top=top)
        return self._pages(f"{user_path(user_id)}/chats", params)

    def batch(self, requests_: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Run requests through ``$batch`` (concepts/json-batching.md), 20 per call.

        Each request is ``{"id", "method", "url"[, "body"][, "headers"]}`` with ``url``
        relative to the version (``/users/...``). Returns one ``{"id", "status", "headers",
        "body"}`` per request, in request order. Items Graph throttled inside the batch are
        retried one by one after their own ``Retry-After`` (the SDKs' batch handlers don't);
        other failed items are returned as they are, for the caller to judge.
        """
        return [result for chunk in batching.chunked(requests_) for result in self._chunk(chunk)]

    # -- the send loop -------------------------------------------------------------------------

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
        limits: Limits | None = None,
    ) -> Response:
        """One Graph call with pacing and the retry policy of `provisioner.graph.retry`.

        ``path`` is relative to ``base_url`` (or an absolute URL on the same origin, for
        ``@odata.nextLink``). ``idempotent`` defaults to True for GET, PUT, PATCH, DELETE.
        """
        url, rel = resolve_url(self.base_url, path)
        route = route_for(method.upper(), rel)
        call = Call.of(method, idempotent=idempotent, host=self._host, permission=route.permission)
        wanted = tuple(scopes) if scopes is not None else route.scopes
        state = RetryState()
        earliest = not_before if not_before is not None else -math.inf
        while True:
            sent_at = self._wait_turn(wanted, earliest)
            response, outcome, client_request_id = self._send(
                call, url, rel, params, json, state.attempts
            )
            decision, next_state = decide(call, state, outcome, limits or self._limits)
            if isinstance(outcome, Answer) and is_throttled(outcome.status, outcome.retry_after):
                self._throttled(wanted, self._imposed(outcome.retry_after), sent_at)
            if isinstance(decision, Return):
                assert response is not None  # the policy returns only what Graph answered
                if decision.deleted:
                    return dataclasses.replace(response, status=204, body=None)
                if self._pacer is not None:
                    self._pacer.succeeded(wanted, sent_at=sent_at)
                return response
            if isinstance(decision, Raise):
                raise error_for(decision, call.method, rel, response, client_request_id)
            if isinstance(decision, RefreshToken):
                self._credential.invalidate()
                self._emit("token_refresh", method=call.method, path=rel)
                earliest = -math.inf
            elif isinstance(decision, Retry):
                earliest = self._retry_at(decision, call.method, rel, next_state)
            state = next_state

    def _send(
        self,
        call: Call,
        url: str,
        rel: str,
        params: Mapping[str, str] | None,
        json: Any,
        attempts: int,
    ) -> tuple[Response | None, Answer | TransportFailure, str]:
        """One attempt: the answer (None when there is none), the facts for the policy, and
        the attempt's client-request-id."""
        client_request_id = str(uuid.uuid4())
        token = self._credential.get_token()
        remember(token)  # whatever echoes it later (a header, an error) is redacted
        headers = request_headers(token, client_request_id, self._user_agent)
        started = self._clock()
        raw = fetch(
            self._session, call.method, url, params=params, json=json, headers=headers,
            timeout=self._timeout, deadline=max(self._timeout),
        )  # fmt: skip
        if isinstance(raw, TransportFailure):
            failure = raw
            log.warning(
                "%s %s failed after %.3fs: %s client-request-id=%s",
                call.method, rel, self._clock() - started, failure.reason, client_request_id,
            )  # fmt: skip
            return None, failure, client_request_id
        elapsed = self._clock() - started
        response = response_from(raw, client_request_id, attempts, token=token)
        self._graph_clock.observe(response.headers.get("Date"))
        status = response.status
        log.log(
            logging.DEBUG if status < 400 else logging.INFO,
            "%s %s -> %d in %.3fs client-request-id=%s request-id=%s",
            call.method, rel, status, elapsed, client_request_id,
            response.headers.get("request-id", ""),
        )  # fmt: skip
        self._emit("response", method=call.method, path=rel, status=status, elapsed=elapsed)
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After"), now=self._wallclock())
            if status >= 400
            else None
        )
        return response, Answer(status, retry_after, token), client_request_id

    def _retry_at(
        self,
        retry: Retry,
        method: str,
        rel: str,
        state: RetryState,
    ) -> float:
        """Announce the retry; return the monotonic time not to send it before."""
        delay = retry.delay(self._rand)
        if retry.throttled:
            self._emit("throttled", method=method, path=rel, status=retry.status, delay=delay)
            log.info(
                "%s %s throttled (%d), retrying in %.2fs (attempt %d)",
                method, rel, retry.status, delay, state.attempts,
            )  # fmt: skip
        else:
            self._emit("retry", method=method, path=rel, reason=retry.reason, delay=delay)
            log.info("%s %s: %s, retrying in %.2fs", method, rel, retry.reason, delay)
        return self._clock() + delay

    # -- helpers ---------------------------------------------------------------------------------

    def _wait_turn(self, scopes: Sequence[Scope], earliest: float) -> float:
        if self._pacer is not None:
            return self._pacer.acquire(scopes, not_before=earliest)
        now = self._clock()
        if earliest > now:
            self._sleep(earliest - now)
            now = self._clock()
        return now

    def _imposed(self, retry_after: float | None) -> float | None:
        """The ``Retry-After`` the pacer may impose on the other requests: none from an answer
        whose request fails for it (longer than a request waits); the pacer caps the rest."""
        if retry_after is not None and retry_after > self._limits.max_retry_after:
            return None
        return retry_after

    def _throttled(self, scopes: Sequence[Scope], retry_after: float | None, at: float) -> None:
        """Tell the pacer, so the whole scope slows down, not just this request."""
        if self._pacer is not None:
            self._pacer.throttled(scopes, retry_after=retry_after, sent_at=at)

    def _emit(self, kind: str, **info: Any) -> None:
        if self._on_event is not None:
            self._on_event(kind, info)

    def _pages(self, path: str, params: Mapping[str, str] | None) -> Iterator[dict[str, Any]]:
        """Items of a collection, following ``@odata.nextLink`` (paging.md), which must be a
        new link on the Graph URL (``resolve_url`` refuses other hosts): a link seen before
        would page forever."""
        next_path: str | None = path
        seen: set[str] = set()
        while next_path is not None:
            body = self._json(self.request("GET", next_path, params=params))
            params = None  # the nextLink carries the query
            items = body.get("value", [])
            if isinstance(items, list):
                yield from (item for item in items if isinstance(item, dict))
            next_path = next_page(body, seen, resolve_url(self.base_url, path)[1])

    @staticmethod
    def _json(response: Response) -> dict[str, Any]:
        return response.body if isinstance(response.body, dict) else {}

    def _chunk(self, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One ``$batch`` call; items Graph throttled are sent again one by one."""
        response = self.request(
            "POST",
            "/$batch",
            json={"requests": chunk},
            idempotent=batching.chunk_is_idempotent(chunk),
            scopes=[s for item in chunk for s in batching.item_scopes(item)],
        )
        answered = self._clock()
        results, throttled = batching.sort_answers(chunk, response, now=self._wallclock())
        retries: list[tuple[Mapping[str, Any], float]] = []
        for t in throttled:
            # All of them count from this answer (one congestion event for the pacer), so
            # several throttled items cost one Retry-After, not one each in turn.
            self._throttled(batching.item_scopes(t.item), self._imposed(t.retry_after), answered)
            refused = t.too_long(self._limits.max_retry_after)
            if refused is not None:  # fails now, as a request of its own would; the rest go on
                results[t.item["id"]] = batching.item_result(t.item, batching.error_answer(refused))
                continue
            delay = t.delay(self._rand)
            self._emit("throttled", method=t.item["method"], path=t.item["url"], status=t.status,
                       delay=delay)  # fmt: skip
            retries.append((t.item, answered + delay))
        for item, not_before in retries:
            results[item["id"]] = batching.item_result(item, self._retry_item(item, not_before))
        return [results[item["id"]] for item in chunk]

    def _retry_item(self, item: Mapping[str, Any], not_before: float) -> dict[str, Any]:
        method = str(item["method"]).upper()
        try:
            response = self.request(
                method, str(item["url"]), json=item.get("body"), not_before=not_before
            )
        except GraphError as exc:
            if exc.status == 0:
                raise
            return batching.error_answer(exc)
        return {"status": response.status, "headers": dict(response.headers), "body": response.body}
