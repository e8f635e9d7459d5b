"""What one ``Retry-After`` can impose (issue 20, item 6): a huge one fails its own request
with a clear message and pauses no other request; a throttled ``$batch`` item with it fails
at once instead of holding the batch (and ``plan``) for a day. A credible one pauses the
requests sharing its scope for `MAX_PAUSE` at most.

Everything waits on an injected clock and sleeper: no test sleeps, and a wait shows up as
seconds recorded, not as a hang.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from lib.hostile_server import hostile, send_json
from pytest_httpserver import HTTPServer
from werkzeug import Response

from provisioner.graph.client import GraphClient
from provisioner.graph.errors import ThrottledError
from provisioner.graph.pacing import MAX_PAUSE, TENANT_WRITE, Pacer, Scope
from provisioner.operations.refresh import refresh
from provisioner.signin.chooser import StaticToken
from provisioner.states.records import ChatRecord, MemberRecord, State

HUGE = "99999"
A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
THROTTLED = {"error": {"code": "TooManyRequests", "message": "Too many requests"}}


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def paced_client(url: str, fake: FakeTime) -> GraphClient:
    pacer = Pacer(clock=fake.clock, sleep=fake.sleep)
    return GraphClient(url, StaticToken("t0ken"), pacer=pacer, sleep=fake.sleep, rand=lambda: 0.0)


def json_response(status: int, body: Any, **headers: str) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers)  # fmt: skip


GROUP = {"chatType": "group", "topic": "T", "members": []}


def test_a_huge_retry_after_fails_its_request_and_pauses_no_other_write(
    httpserver: HTTPServer,
) -> None:
    fake = FakeTime()
    client = paced_client(httpserver.url_for("/v1.0"), fake)
    httpserver.expect_request("/v1.0/chats", method="POST").respond_with_response(
        json_response(429, THROTTLED, **{"Retry-After": HUGE})
    )
    httpserver.expect_request("/v1.0/chats/19:b@thread.v2", method="PATCH").respond_with_response(
        json_response(200, {"id": "19:b@thread.v2"})
    )
    with pytest.raises(ThrottledError) as err:
        client.create_chat(GROUP, idempotent=False)
    message = str(err.value)
    assert HUGE in message and "600s" in message and "try again later" in message.lower()
    assert len(message.splitlines()) == 2  # the error and its hint
    # The next write (same tenant-write scope) goes at once: the answer paused nobody.
    client.update_chat_topic("19:b@thread.v2", "New")
    assert sum(fake.slept) < 1.0, fake.slept


def test_one_answer_pauses_a_shared_scope_for_max_pause_at_most() -> None:
    fake = FakeTime()
    pacer = Pacer(clock=fake.clock, sleep=fake.sleep)
    write = Scope(TENANT_WRITE)
    pacer.throttled([write], retry_after=500.0, sent_at=fake.now)
    assert pacer.paused_until(write) - fake.now == pytest.approx(MAX_PAUSE)
    pacer.throttled([write], retry_after=5.0, sent_at=fake.now)  # a shorter one: no change
    assert pacer.paused_until(write) - fake.now == pytest.approx(MAX_PAUSE)


def batch_answer(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"responses": items}


def test_a_throttled_batch_item_with_a_huge_retry_after_fails_at_once() -> None:
    fake = FakeTime()
    chat = {"id": "19:a@thread.v2", "chatType": "group", "topic": "A", "members": []}
    answers = batch_answer(
        [
            {"id": "0", "status": 200, "body": chat},
            {"id": "1", "status": 429, "headers": {"Retry-After": HUGE}, "body": THROTTLED},
        ]
    )
    with hostile() as server:
        server.on("POST", "/v1.0/$batch", lambda h: send_json(h, 200, answers))
        client = paced_client(server.url, fake)
        items = [
            {"id": "0", "method": "GET", "url": "/chats/19:a@thread.v2"},
            {"id": "1", "method": "GET", "url": "/chats/19:b@thread.v2"},
        ]
        results = client.batch(items)
        sent = [path for method, path, _ in server.requests]
    assert [r["status"] for r in results] == [200, 429]
    assert results[0]["body"]["id"] == "19:a@thread.v2"
    assert sum(fake.slept) < 1.0, fake.slept  # not 99,999 s before the item was retried
    assert sent == ["/v1.0/$batch"]  # the item failed where it stood: no retry later


def test_plan_reading_chats_with_a_huge_retry_after_fails_with_a_clear_error() -> None:
    """The whole path of ``plan``'s refresh: the batch item fails, its own read is refused
    the same way, and the error says what happened; nothing waited."""
    fake = FakeTime()
    state = State()
    for n, chat_id in enumerate(("19:a@thread.v2", "19:b@thread.v2")):
        members = (MemberRecord(A, object_id=A), MemberRecord(B, object_id=B))
        state.put_chat(f"chat-{n}", ChatRecord(chat_id, "group", members, topic=f"T{n}"))
    chat = {"id": "19:a@thread.v2", "chatType": "group", "topic": "T0", "members": []}
    answers = batch_answer(
        [
            {"id": "0", "status": 200, "body": chat},
            {"id": "1", "status": 429, "headers": {"Retry-After": HUGE}, "body": THROTTLED},
        ]
    )
    with hostile() as server:
        server.on("POST", "/v1.0/$batch", lambda h: send_json(h, 200, answers))
        server.on("GET", "/v1.0/chats/", lambda h: send_json(
            h, 429, THROTTLED, Retry_After=HUGE
        ))  # fmt: skip
        client = paced_client(server.url, fake)
        with pytest.raises(ThrottledError, match=HUGE):
            refresh(client, state)
    assert sum(fake.slept) < 1.0, fake.slept
