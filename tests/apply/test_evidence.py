"""A group creation's intent is cleared only with evidence that no chat was made (issue 15)."""

from __future__ import annotations

import pytest

from provisioner.apply.control import Cancelled
from provisioner.apply.steps import not_created
from provisioner.errors import AuthError
from provisioner.graph.errors import (
    AmbiguousOutcome,
    GraphConnectionError,
    GraphError,
    GraphNotFound,
    GraphPermissionError,
    ThrottledError,
)


@pytest.mark.parametrize(
    "exc",
    [
        Cancelled("stopping"),
        GraphConnectionError("cannot connect"),
        ThrottledError("throttled", status=429),
        GraphPermissionError("forbidden", status=403),
        GraphError("bad request", status=400),
        GraphNotFound("no such user", status=404),
        GraphError("Graph answered with a redirect (307)", status=307),
        AuthError("no token"),
    ],
)
def test_an_answer_or_no_send_is_evidence(exc: BaseException) -> None:
    assert not_created(exc)


@pytest.mark.parametrize(
    "exc",
    [
        AmbiguousOutcome("timed out"),
        AmbiguousOutcome("answer larger than 33554432 bytes", status=201),
        GraphError("Gateway Timeout", status=504),
        GraphError("connection dropped, 9 times"),  # no status: may have reached Graph
        OverflowError("int too large to convert to float"),
        ValueError("anything else"),
        KeyError("id"),
    ],
)
def test_anything_else_may_have_reached_graph(exc: BaseException) -> None:
    assert not not_created(exc)
