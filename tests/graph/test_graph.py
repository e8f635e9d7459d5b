"""The Graph client against HTTP test doubles on loopback (pytest-httpserver, raw sockets)."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from lib.clock import FakeClock
from pytest_httpserver import HTTPServer
from urllib3.exceptions import MaxRetryError, NameResolutionError
from werkzeug import Request, Response

from provisioner import __version__
from provisioner.errors import InputError, ProvisionError
from provisioner.graph.client import GraphClient
from provisioner.graph.errors import (
    AmbiguousOutcome,
    GraphAuthError,
    GraphConnectionError,
    GraphError,
    GraphNotFound,
    GraphPermissionError,
    ThrottledError,
)
from provisioner.graph.pacing import (
    CHAT,
    CHAT_MEMBERS,
    TENANT_DELETE,
    TENANT_READ,
    TENANT_WRITE,
    Pacer,
    Scope,
)
from provisioner.graph.retry import MAX_TOKEN_REFRESHES, parse_retry_after
from provisioner.graph.routes import route_for, user_path

SECRET = "eyJ0eXAiOiJKV1QiLCJub3RhIjoicmVhbCJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
GROUP = {"chatType": "group", "topic": "X", "members": []}
ERROR = {
    "error": {
        "code": "Forbidden",
        "message": "Missing role permissions on the request.",
        "innerError": {"date": "2024-05-01T10:00:00", "request-id": "inner-rid"},
    }
}


class FakeCredential:
    description = "fake"

    def __init__(self) -> None:
        self.generation = 0
        self.invalidated = 0

    def get_token(self) -> str:
        return f"{SECRET}-{self.generation}"

    def invalidate(self) -> None:
        self.invalidated += 1
        self.generation += 1


@pytest.fixture
def fake_time() -> FakeClock:
    """Retries wait on this clock, not on the wall clock: waits are recorded and pass at once."""
    return FakeClock(100.0)


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


def client_for(
    server: HTTPServer,
    credential: FakeCredential,
    fake_time: FakeClock,
    **kwargs: Any,
) -> GraphClient:
    kwargs.setdefault("clock", fake_time.clock)
    kwargs.setdefault("sleep", fake_time.sleep)
    kwargs.setdefault("rand", lambda: 0.5)
    kwargs.setdefault("wallclock", time.time)
    return GraphClient(server.url_for("/v1.0"), credential, **kwargs)


@pytest.fixture
def threaded_server() -> Iterator[HTTPServer]:
    """Answers requests concurrently, so a deliberately slow answer blocks no other test."""
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def client(httpserver: HTTPServer, credential: FakeCredential, fake_time: FakeClock) -> GraphClient:
    return client_for(httpserver, credential, fake_time)


def sequence(*responses: Response) -> Any:
    """A handler answering each call with the next response (the last one repeats)."""
    calls: list[Request] = []

    def handler(request: Request) -> Response:
        calls.append(request)
        return responses[min(len(calls), len(responses)) - 1]

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


def json_response(status: int, body: Any = None, **headers: str) -> Response:
    return Response(
        json.dumps(body) if body is not None else "",
        status=status,
        headers=headers,
        content_type="application/json",
    )


# -- URLs and requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.microsoft.com/v1.0",
        "http://127.0.0.1:8080/v1.0",
        "http://127.5.5.5/v1.0",
        "http://[::1]:9000/v1.0",
        "http://localhost:9000/v1.0/",
    ],
)
def test_accepts_https_and_loopback_http(url: str, credential: FakeCredential) -> None:
    assert GraphClient(url, credential).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://graph.microsoft.com/v1.0", "http://10.0.0.1/v1.0", "ftp://x/v1.0", "graph.local"],
)
def test_refuses_plain_http_elsewhere(url: str, credential: FakeCredential) -> None:
    with pytest.raises(InputError) as err:
        GraphClient(url, credential)
    assert "http" in str(err.value)


def test_request_headers_and_body(
    httpserver: HTTPServer, client: GraphClient, credential: FakeCredential
) -> None:
    handler = sequence(json_response(201, {"id": "19:new@thread.v2"}, **{"request-id": "r1"}))
    httpserver.expect_request("/v1.0/chats", method="POST").respond_with_handler(handler)
    assert client.create_chat(GROUP, idempotent=False) == {"id": "19:new@thread.v2"}
    sent = handler.calls[0]
    assert sent.headers["Authorization"] == f"Bearer {SECRET}-0"
    assert sent.headers["User-Agent"] == f"provision/{__version__}"
    uuid.UUID(sent.headers["client-request-id"])
    assert json.loads(sent.get_data()) == GROUP


def test_each_request_gets_its_own_client_request_id(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    handler = sequence(json_response(200, {"id": "c"}))
    httpserver.expect_request("/v1.0/chats/19:c@thread.v2").respond_with_handler(handler)
    client.get_chat("19:c@thread.v2")
    client.get_chat("19:c@thread.v2", expand_members=False)
    ids = {r.headers["client-request-id"] for r in handler.calls}
    assert len(ids) == 2
    assert handler.calls[0].args.get("$expand") == "members"
    assert "$expand" not in handler.calls[1].args


def test_get_user_quotes_the_upn(httpserver: HTTPServer, client: GraphClient) -> None:
    handler = sequence(json_response(200, {"id": "u1"}))
    httpserver.expect_request("/v1.0/users/a_b.com#EXT#@c.com").respond_with_handler(handler)
    assert client.get_user("a_b.com#EXT#@c.com")["id"] == "u1"
    assert handler.calls[0].args["$select"] == "id,userPrincipalName,displayName"
    assert user_path("$x@y.com") == "/users('$x@y.com')"


# -- typed errors -------------------------------------------------------------------------------


def test_graph_error_carries_status_code_message_and_ids(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    body = {
        "error": {
            "code": "BadRequest",
            "message": "Invalid bind property name user@odata.bind.",
            "innerError": {"date": "2024-05-01T10:00:00", "request-id": "inner"},
        }
    }
    httpserver.expect_request("/v1.0/chats").respond_with_response(
        json_response(400, body, **{"request-id": "rid-400"})
    )
    with pytest.raises(GraphError) as err:
        client.create_chat(GROUP, idempotent=False)
    e = err.value
    assert (e.status, e.code, e.request_id, e.date) == (
        400,
        "BadRequest",
        "rid-400",
        "2024-05-01T10:00:00",
    )
    uuid.UUID(e.client_request_id)
    assert isinstance(e, ProvisionError)
    text = str(e)
    assert "Invalid bind property name" in text and "rid-400" in text
    assert e.client_request_id in text


@pytest.mark.parametrize(
    ("method", "call", "permission"),
    [
        ("POST", lambda c: c.create_chat(GROUP, idempotent=False), "Chat.Create"),
        ("GET", lambda c: c.get_chat("c1"), "Chat.ReadBasic.All"),
        ("PATCH", lambda c: c.update_chat_topic("c1", "T"), "Chat.ReadWrite.All"),
        ("POST", lambda c: c.add_member("c1", {}), "ChatMember.ReadWrite.All"),
        ("DELETE", lambda c: c.remove_member("c1", "m1"), "ChatMember.ReadWrite.All"),
        ("GET", lambda c: c.list_members("c1"), "ChatMember.Read.All"),
        ("DELETE", lambda c: c.delete_chat("c1"), "Chat.ManageDeletion.All"),
        ("GET", lambda c: list(c.list_user_chats("u1")), "Chat.ReadBasic.All"),
        ("GET", lambda c: c.get_user("u1"), "User.Read.All"),
    ],
)
def test_403_names_the_permission_the_call_needs(
    httpserver: HTTPServer, client: GraphClient, method: str, call: Any, permission: str
) -> None:
    httpserver.expect_request(re.compile(".*"), method=method).respond_with_response(
        json_response(403, ERROR)
    )
    with pytest.raises(GraphPermissionError) as err:
        call(client)
    assert err.value.permission.startswith(permission)
    assert permission in str(err.value)
    assert "Missing role permissions" in str(err.value)


def test_404_is_not_found(httpserver: HTTPServer, client: GraphClient) -> None:
    httpserver.expect_request("/v1.0/chats/gone").respond_with_response(
        json_response(404, {"error": {"code": "NotFound", "message": "No chat"}})
    )
    with pytest.raises(GraphNotFound):
        client.get_chat("gone")


def test_401_refreshes_the_token_once(
    httpserver: HTTPServer, client: GraphClient, credential: FakeCredential
) -> None:
    handler = sequence(json_response(401, {"error": {"code": "InvalidAuthenticationToken"}}),
                       json_response(200, {"id": "c"}))  # fmt: skip
    httpserver.expect_request("/v1.0/chats/c").respond_with_handler(handler)
    assert client.get_chat("c")["id"] == "c"
    assert credential.invalidated == 1
    assert [r.headers["Authorization"][-2:] for r in handler.calls] == ["-0", "-1"]


def test_401_after_refresh_is_an_auth_error(
    httpserver: HTTPServer, client: GraphClient, credential: FakeCredential
) -> None:
    # Every new token refused as well (a wrong tenant or audience): a few tries, then stop.
    httpserver.expect_request("/v1.0/chats/c").respond_with_response(json_response(401, {}))
    with pytest.raises(GraphAuthError) as err:
        client.get_chat("c")
    assert credential.invalidated == MAX_TOKEN_REFRESHES
    assert err.value.status == 401


def test_the_same_token_refused_twice_is_not_refreshed_again(
    httpserver: HTTPServer, client: GraphClient, credential: FakeCredential
) -> None:
    credential.invalidate = lambda: setattr(credential, "invalidated", credential.invalidated + 1)  # type: ignore[method-assign]
    httpserver.expect_request("/v1.0/chats/c").respond_with_response(json_response(401, {}))
    with pytest.raises(GraphAuthError):
        client.get_chat("c")
    assert credential.invalidated == 1  # the credential handed out the refused token again


def test_a_token_expiring_again_later_in_the_same_call_is_refreshed_again(
    httpserver: HTTPServer, client: GraphClient, credential: FakeCredential
) -> None:
    """Throttled for longer than the refreshed token lives: 401, 429, 401, then success."""
    handler = sequence(
        json_response(401, {"error": {"code": "InvalidAuthenticationToken"}}),
        json_response(429, {}, **{"Retry-After": "1"}),
        json_response(401, {"error": {"code": "InvalidAuthenticationToken"}}),
        json_response(200, {"id": "c"}),
    )
    httpserver.expect_request("/v1.0/chats/c").respond_with_handler(handler)
    assert client.get_chat("c")["id"] == "c"
    assert credential.invalidated == 2
    assert [r.headers["Authorization"][-2:] for r in handler.calls] == ["-0", "-1", "-1", "-2"]


# -- throttling ---------------------------------------------------------------------------------


def test_retry_after_is_honoured_without_a_low_cap(
    httpserver: HTTPServer, client: GraphClient, fake_time: FakeClock
) -> None:
    handler = sequence(json_response(429, ERROR, **{"Retry-After": "315"}),
                       json_response(201, {"id": "ok"}))  # fmt: skip
    httpserver.expect_request("/v1.0/chats").respond_with_handler(handler)
    events: list[tuple[str, Any]] = []
    client._on_event = lambda kind, info: events.append((kind, dict(info)))
    # A group creation is retried: a 429 means Graph did not create anything.
    assert client.create_chat(GROUP, idempotent=False)["id"] == "ok"
    assert fake_time.slept == [315.0]
    assert len(handler.calls) == 2
    throttled = [info for kind, info in events if kind == "throttled"]
    assert throttled == [{"method": "POST", "path": "/chats", "status": 429, "delay": 315.0}]


def test_retry_after_beyond_the_maximum_is_a_clear_error(
    httpserver: HTTPServer, credential: FakeCredential, fake_time: FakeClock
) -> None:
    client = client_for(httpserver, credential, fake_time, max_retry_after=60)
    httpserver.expect_request("/v1.0/chats").respond_with_response(
        json_response(429, ERROR, **{"Retry-After": "900"})
    )
    with pytest.raises(ThrottledError) as err:
        client.create_chat(GROUP, idempotent=False)
    assert "900s" in str(err.value) and "60s" in str(err.value)
    assert fake_time.slept == []


def test_503_with_retry_after_is_retried_even_for_a_group_creation(
    httpserver: HTTPServer, client: GraphClient, fake_time: FakeClock
) -> None:
    handler = sequence(json_response(503, None, **{"Retry-After": "1.5"}),
                       json_response(201, {"id": "ok"}))  # fmt: skip
    httpserver.expect_request("/v1.0/chats").respond_with_handler(handler)
    assert client.create_chat(GROUP, idempotent=False)["id"] == "ok"
    assert fake_time.slept == [1.5]


def test_429_without_retry_after_backs_off_with_jitter(
    httpserver: HTTPServer, client: GraphClient, fake_time: FakeClock
) -> None:
    handler = sequence(json_response(429, ERROR), json_response(429, ERROR),
                       json_response(200, {"value": []}))  # fmt: skip
    httpserver.expect_request("/v1.0/chats/c/members").respond_with_handler(handler)
    assert client.list_members("c") == []
    # rand() = 0.5: half of 0.5 s, then half of 1 s
    assert fake_time.slept == [0.25, 0.5]


def test_throttling_is_bounded(
    httpserver: HTTPServer, credential: FakeCredential, fake_time: FakeClock
) -> None:
    client = client_for(httpserver, credential, fake_time, max_retries=3)
    httpserver.expect_request("/v1.0/chats/c").respond_with_response(
        json_response(429, ERROR, **{"Retry-After": "2"})
    )
    with pytest.raises(ThrottledError) as err:
        client.get_chat("c")
    assert fake_time.slept == [2.0, 2.0, 2.0]
    assert err.value.status == 429


@pytest.mark.documented_pace  # the pacer's rate after a 429, from the documented one
def test_a_429_slows_the_shared_pacer(
    httpserver: HTTPServer, credential: FakeCredential, fake_time: FakeClock
) -> None:
    pacer = Pacer(clock=fake_time.clock, sleep=fake_time.sleep)
    client = client_for(httpserver, credential, fake_time, pacer=pacer)
    handler = sequence(json_response(429, ERROR, **{"Retry-After": "4"}),
                       json_response(200, {"topic": "T"}))  # fmt: skip
    httpserver.expect_request("/v1.0/chats/c", method="PATCH").respond_with_handler(handler)
    client.update_chat_topic("c", "T")
    assert pacer.rate(Scope(TENANT_WRITE)) < 30.0
    assert pacer.rate(Scope(CHAT, "c")) < 1.0
    assert pacer.throttle_count(Scope(TENANT_WRITE)) == 1
    assert sum(fake_time.slept) >= 4.0
    assert pacer.rate(Scope(TENANT_READ)) == 30.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.25", 0.25), ("-4", 0.0), ("", None), ("soon", None), (None, None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(42.0)
    assert parse_retry_after(format_datetime(now, usegmt=True), now=now.timestamp() + 9) == 0.0


# -- ambiguous outcomes ---------------------------------------------------------------------------


def test_504_on_a_group_creation_is_ambiguous_and_not_repeated(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    handler = sequence(json_response(504, None), json_response(201, {"id": "dup"}))
    httpserver.expect_request("/v1.0/chats").respond_with_handler(handler)
    with pytest.raises(AmbiguousOutcome) as err:
        client.create_chat(GROUP, idempotent=False)
    assert len(handler.calls) == 1
    assert err.value.status == 504
    assert err.value.client_request_id == handler.calls[0].headers["client-request-id"]


def test_500_without_retry_after_on_a_group_creation_is_ambiguous(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    handler = sequence(json_response(500, ERROR))
    httpserver.expect_request("/v1.0/chats").respond_with_handler(handler)
    with pytest.raises(AmbiguousOutcome):
        client.create_chat(GROUP, idempotent=False)
    assert len(handler.calls) == 1


def test_504_on_a_one_on_one_creation_is_retried(
    httpserver: HTTPServer, client: GraphClient, fake_time: FakeClock
) -> None:
    handler = sequence(json_response(504, None), json_response(201, {"id": "19:a_b"}))
    httpserver.expect_request("/v1.0/chats").respond_with_handler(handler)
    body = {"chatType": "oneOnOne", "members": []}
    assert client.create_chat(body, idempotent=True)["id"] == "19:a_b"
    assert len(handler.calls) == 2
    assert fake_time.slept == [0.25]


def test_read_timeout_on_a_group_creation_is_ambiguous(
    threaded_server: HTTPServer, credential: FakeCredential, fake_time: FakeClock
) -> None:
    client = client_for(threaded_server, credential, fake_time, timeout=(2.0, 0.2))
    calls: list[int] = []
    answered = threading.Event()  # the answer comes only after the client gave up

    def slow(request: Request) -> Response:
        calls.append(1)
        answered.wait(10)
        return json_response(201, {"id": "late"})

    threaded_server.expect_request("/v1.0/chats").respond_with_handler(slow)
    try:
        with pytest.raises(AmbiguousOutcome) as err:
            client.create_chat(GROUP, idempotent=False)
    finally:
        answered.set()
    assert "read timeout" in str(err.value)
    assert len(calls) == 1


def test_read_timeout_on_a_read_is_retried(
    threaded_server: HTTPServer, credential: FakeCredential, fake_time: FakeClock
) -> None:
    client = client_for(threaded_server, credential, fake_time, timeout=(2.0, 0.2))
    calls: list[int] = []
    late = threading.Event()  # the first answer comes only after the retry was answered

    def slow_once(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            late.wait(10)
        return json_response(200, {"id": "c"})

    threaded_server.expect_request("/v1.0/chats/c").respond_with_handler(slow_once)
    try:
        assert client.get_chat("c")["id"] == "c"
    finally:
        late.set()
    assert len(calls) == 2


def test_delete_that_timed_out_then_404s_was_done(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    handler = sequence(
        json_response(504, None), json_response(404, {"error": {"code": "NotFound"}})
    )
    httpserver.expect_request("/v1.0/chats/c", method="DELETE").respond_with_handler(handler)
    client.delete_chat("c")
    assert len(handler.calls) == 2


@pytest.fixture
def dropping_server() -> Iterator[tuple[str, list[int]]]:
    """A server that reads the request and closes the connection without answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1.0", accepted
    stop.set()
    thread.join()
    listener.close()


def test_dropped_connection_on_a_group_creation_is_ambiguous(
    dropping_server: tuple[str, list[int]], credential: FakeCredential, fake_time: FakeClock
) -> None:
    url, accepted = dropping_server
    client = GraphClient(url, credential, clock=fake_time.clock, sleep=fake_time.sleep)
    with pytest.raises(AmbiguousOutcome) as err:
        client.create_chat(GROUP, idempotent=False)
    assert "connection dropped" in str(err.value)
    assert len(accepted) == 1


def test_dropped_connection_on_a_read_is_retried_then_fails(
    dropping_server: tuple[str, list[int]], credential: FakeCredential, fake_time: FakeClock
) -> None:
    url, accepted = dropping_server
    client = GraphClient(
        url, credential, clock=fake_time.clock, sleep=fake_time.sleep, max_retries=2
    )
    with pytest.raises(GraphError) as err:
        client.get_chat("c")
    assert not isinstance(err.value, AmbiguousOutcome)
    assert len(accepted) == 3


def test_connection_refused_is_retried_then_reported(
    credential: FakeCredential, fake_time: FakeClock
) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    client = GraphClient(
        f"http://127.0.0.1:{port}/v1.0", credential, clock=fake_time.clock, sleep=fake_time.sleep
    )
    # Not ambiguous even for a group creation: nothing reached Graph.
    with pytest.raises(GraphConnectionError) as err:
        client.create_chat(GROUP, idempotent=False)
    assert "cannot connect" in str(err.value)
    assert len(fake_time.slept) == 3


def test_dns_failure_is_a_connection_error(
    credential: FakeCredential, fake_time: FakeClock
) -> None:
    class NoDns(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            reason = NameResolutionError("graph.example", None, socket.gaierror("no such name"))  # type: ignore[arg-type]
            raise requests.exceptions.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]

    client = GraphClient(
        "https://graph.example/v1.0", credential, session=NoDns(),
        clock=fake_time.clock, sleep=fake_time.sleep, max_connect_retries=1,
    )  # fmt: skip
    with pytest.raises(GraphConnectionError) as err:
        client.get_user("u")
    assert "DNS lookup failed" in str(err.value)


# -- paging, batching -----------------------------------------------------------------------------


def test_list_user_chats_filters_and_follows_next_links(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    second = httpserver.url_for("/v1.0/users/u1/chats") + "?$skiptoken=abc"
    calls: list[Request] = []

    def handler(request: Request) -> Response:
        calls.append(request)
        if request.args.get("$skiptoken") == "abc":
            return json_response(200, {"value": [{"id": "c3"}]})
        return json_response(
            200, {"value": [{"id": "c1"}, {"id": "c2"}], "@odata.nextLink": second}
        )

    httpserver.expect_request("/v1.0/users/u1/chats").respond_with_handler(handler)
    chats = list(client.list_user_chats("u1", topic="Bob's team", top=50))
    assert [c["id"] for c in chats] == ["c1", "c2", "c3"]
    first = calls[0].args
    # One clause: Graph documents no $filter joining properties with `and` (issue 14).
    assert first["$filter"] == "topic eq 'Bob''s team'"
    assert first["$expand"] == "members" and first["$top"] == "50"
    assert dict(calls[1].args) == {"$skiptoken": "abc"}
    with pytest.raises(ValueError):
        client.list_user_chats("u1", chat_type="group", topic="x")


def test_a_next_link_to_another_host_is_refused(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    httpserver.expect_request("/v1.0/users/u1/chats").respond_with_json(
        {"value": [], "@odata.nextLink": "https://evil.example/v1.0/users/u1/chats?x=1"}
    )
    with pytest.raises(GraphError) as err:
        list(client.list_user_chats("u1"))
    assert "another host" in str(err.value)


def test_batch_splits_by_20_and_retries_throttled_items_alone(
    httpserver: HTTPServer, client: GraphClient, fake_time: FakeClock
) -> None:
    batches: list[list[dict[str, Any]]] = []

    def batch_handler(request: Request) -> Response:
        items = json.loads(request.get_data())["requests"]
        batches.append(items)
        answers = []
        for item in items:
            if item["id"] == "7":
                answers.append({"id": "7", "status": 429, "headers": {"Retry-After": "3"},
                                "body": ERROR})  # fmt: skip
            elif item["id"] == "8":
                answers.append({"id": "8", "status": 404, "body": {"error": {"code": "NotFound"}}})
            else:
                answers.append({"id": item["id"], "status": 200, "body": {"id": item["url"]}})
        return json_response(200, {"responses": list(reversed(answers))})

    httpserver.expect_request("/v1.0/$batch", method="POST").respond_with_handler(batch_handler)
    httpserver.expect_request("/v1.0/users/user7").respond_with_json({"id": "retried-7"})
    requests_ = [{"id": str(i), "method": "GET", "url": f"/users/user{i}"} for i in range(25)]
    results = client.batch(requests_)
    assert [len(b) for b in batches] == [20, 5]
    assert [r["id"] for r in results] == [str(i) for i in range(25)]
    assert results[7] == {"id": "7", "status": 200, "headers": results[7]["headers"],
                          "body": {"id": "retried-7"}}  # fmt: skip
    assert results[8]["status"] == 404
    assert results[3]["body"] == {"id": "/users/user3"}
    assert fake_time.slept == [3.0]


def test_batch_ids_must_be_unique(client: GraphClient) -> None:
    with pytest.raises(ValueError):
        client.batch([{"id": "1", "method": "GET", "url": "/a"}] * 2)


# -- routes and secrecy ---------------------------------------------------------------------------


def test_routes_declare_pacing_scopes() -> None:
    c = "19:abc@thread.v2"
    assert route_for("POST", "/chats").scopes == (Scope(TENANT_WRITE),)
    assert route_for("PATCH", f"/chats/{c}").scopes == (Scope(TENANT_WRITE), Scope(CHAT, c))
    assert route_for("POST", f"/chats/{c}/members").scopes == (
        Scope(TENANT_WRITE), Scope(CHAT, c), Scope(CHAT_MEMBERS, c),
    )  # fmt: skip
    assert Scope(TENANT_DELETE) in route_for("DELETE", f"/chats/{c}").scopes
    assert route_for("GET", f"/chats/{c}/members").scopes == (Scope(TENANT_READ), Scope(CHAT, c))


def test_the_token_never_reaches_logs_errors_or_repr(
    httpserver: HTTPServer, client: GraphClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/v1.0/chats").respond_with_response(json_response(403, ERROR))
    httpserver.expect_request("/v1.0/chats/c").respond_with_response(json_response(401, {}))
    texts = [repr(client)]
    for call in (lambda: client.create_chat(GROUP, idempotent=False), lambda: client.get_chat("c")):
        with pytest.raises(GraphError) as err:
            call()
        texts += [str(err.value), repr(err.value)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("client-request-id=" in t for t in texts)
    for text in texts:
        assert SECRET not in text
        assert "Bearer" not in text


def test_many_threads_share_one_client_and_pacer(threaded_server: HTTPServer) -> None:
    """Thread safety end to end: every third answer is a 429, all requests still succeed."""
    counter = {"n": 0}
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        with lock:
            counter["n"] += 1
            n = counter["n"]
        if n % 3 == 0:
            return json_response(429, ERROR, **{"Retry-After": "0.01"})
        return json_response(201, {"id": request.headers["client-request-id"]})

    threaded_server.expect_request("/v1.0/chats").respond_with_handler(handler)
    pacer = Pacer(max_rps=500)
    client = GraphClient(threaded_server.url_for("/v1.0"), FakeCredential(), pacer=pacer)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in range(5):
            try:
                chat = client.create_chat({"chatType": "oneOnOne"}, idempotent=True)
                with lock:
                    results.append(chat["id"])
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 40
    assert pacer.throttle_count(Scope(TENANT_WRITE)) == counter["n"] - 40


def test_several_throttled_batch_items_cost_one_retry_after(
    httpserver: HTTPServer, credential: FakeCredential, fake_time: FakeClock
) -> None:
    # Each throttled item is paused from the batch's answer, not from the previous item's
    # retry: five items throttled with Retry-After 2 cost 2 s in all, not 10 s.
    pacer = Pacer(clock=fake_time.clock, sleep=fake_time.sleep)
    client = client_for(httpserver, credential, fake_time, pacer=pacer)
    throttled = {str(i) for i in range(5)}

    def batch_handler(request: Request) -> Response:
        items = json.loads(request.get_data())["requests"]
        return json_response(
            200,
            {
                "responses": [
                    {"id": i["id"], "status": 429, "headers": {"Retry-After": "2"}, "body": ERROR}
                    if i["id"] in throttled
                    else {"id": i["id"], "status": 200, "body": {}}
                    for i in items
                ]
            },
        )

    httpserver.expect_request("/v1.0/$batch", method="POST").respond_with_handler(batch_handler)
    for i in range(8):
        httpserver.expect_request(f"/v1.0/users/user{i}").respond_with_json({"id": f"r{i}"})
    started = fake_time.now
    results = client.batch(
        [{"id": str(i), "method": "GET", "url": f"/users/user{i}"} for i in range(8)]
    )
    assert [r["status"] for r in results] == [200] * 8
    assert [r["body"]["id"] for r in results[:5]] == [f"r{i}" for i in range(5)]
    assert fake_time.now - started == pytest.approx(2.0, abs=0.2)
