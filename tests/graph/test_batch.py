"""``$batch`` shaping without a network: chunks, and sorting a batch answer."""

from __future__ import annotations

import pytest

from provisioner.graph.batch import (
    BATCH_LIMIT,
    Throttled,
    chunk_is_idempotent,
    chunked,
    error_answer,
    sort_answers,
)
from provisioner.graph.errors import GraphError, GraphNotFound
from provisioner.graph.transport import Response


def test_chunks_of_twenty_with_string_ids_and_typed_bodies() -> None:
    requests_ = [{"id": i, "method": "GET", "url": f"/chats/{i}"} for i in range(45)]
    requests_[44] = {"id": 44, "method": "PATCH", "url": "/chats/44", "body": {"topic": "t"}}
    chunks = chunked(requests_)
    assert [len(c) for c in chunks] == [BATCH_LIMIT, BATCH_LIMIT, 5]
    assert chunks[0][0]["id"] == "0"
    assert chunks[2][-1]["headers"] == {"Content-Type": "application/json"}
    assert "headers" not in chunks[2][0]
    assert requests_[44] == {
        "id": 44,
        "method": "PATCH",
        "url": "/chats/44",
        "body": {"topic": "t"},
    }


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        chunked(
            [{"id": 1, "method": "GET", "url": "/a"}, {"id": "1", "method": "GET", "url": "/b"}]
        )


def test_a_batch_is_idempotent_when_each_item_is() -> None:
    assert chunk_is_idempotent([{"method": "get"}, {"method": "DELETE"}])
    assert not chunk_is_idempotent([{"method": "GET"}, {"method": "POST"}])


def test_sort_answers_picks_out_throttled_items() -> None:
    chunk = [{"id": str(i), "method": "GET", "url": f"/chats/{i}"} for i in range(4)]
    body = {
        "responses": [
            {"id": "3", "status": 200, "body": {"id": "c3"}},
            {"id": "0", "status": 429, "headers": {"retry-after": "4"}},
            {"id": "1", "status": 503, "headers": {"Retry-After": "2"}},
            {"id": "2", "status": 503},  # no Retry-After: returned for the caller to judge
        ]
    }
    results, throttled = sort_answers(chunk, Response(200, {}, body), now=0.0)
    assert throttled == [Throttled(chunk[0], 429, 4.0), Throttled(chunk[1], 503, 2.0)]
    assert results == {
        "2": {"id": "2", "status": 503, "headers": {}, "body": None},
        "3": {"id": "3", "status": 200, "headers": {}, "body": {"id": "c3"}},
    }
    assert throttled[0].delay(lambda: 0.9) == 4.0
    assert Throttled(chunk[0], 429, None).delay(lambda: 0.5) == 0.25


def test_a_missing_answer_is_an_error() -> None:
    chunk = [{"id": "a", "method": "GET", "url": "/chats/a"}]
    with pytest.raises(GraphError, match="no answer for request 'a'") as info:
        sort_answers(chunk, Response(200, {}, {"responses": []}, client_request_id="cr"), now=0)
    assert info.value.client_request_id == "cr"


def test_error_answer_keeps_what_support_needs() -> None:
    exc = GraphNotFound("gone", status=404, code="NotFound", request_id="rid")
    assert error_answer(exc) == {
        "status": 404,
        "headers": {"request-id": "rid"},
        "body": {"error": {"code": "NotFound", "message": "gone"}},
    }
