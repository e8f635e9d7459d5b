"""Graph's documented example answers (tests/data/graph-docs/) and what checks the emulator
against them: shared by the emulator's documented-response tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

DOCS = Path(__file__).resolve().parents[1] / "data" / "graph-docs"

MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"

GRAPH = "https://graph.microsoft.com/v1.0"

EX1 = ("8b081ef6-4792-4def-b2c9-c363a1bf41d5", "82af01c5-f7cc-4a2e-a728-3a5df21afd9d")

EX2 = (
    "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca",
    "82fe7758-5bb3-4f0d-a43f-e555fd399c6f",
    "3626a173-f2bc-4883-bcf7-01514c3bfb82",
)


def documented_file(name: str) -> dict[str, Any]:
    """A recorded example: its page, request and response."""
    doc: dict[str, Any] = json.loads((DOCS / name).read_text())
    return doc


def documented(name: str) -> dict[str, Any]:
    """The response of a recorded example."""
    response: dict[str, Any] = documented_file(name)["response"]
    return response


def assert_shape(doc: Any, got: Any, where: str = "$") -> None:
    """Every field of ``doc`` is in ``got`` with the same JSON type (null matches any)."""
    if doc is None or got is None:
        return
    if isinstance(doc, dict):
        assert isinstance(got, dict), f"{where}: expected an object, got {got!r}"
        for key, value in doc.items():
            assert key in got, f"{where}: the emulator's answer has no {key!r}"
            assert_shape(value, got[key], f"{where}.{key}")
    elif isinstance(doc, list):
        assert isinstance(got, list), f"{where}: expected a list"
        for item in got[:1] if doc else ():
            assert_shape(doc[0], item, f"{where}[0]")
    else:
        assert type(doc) is type(got), f"{where}: {doc!r} vs {got!r}"


def member(user: str) -> dict[str, object]:
    bind = f"{GRAPH}/users('{user}')"
    return {"@odata.type": MEMBER_TYPE, "roles": ["owner"], "user@odata.bind": bind}


def group(url: str, s: requests.Session, topic: str = "Group chat title") -> dict[str, Any]:
    body = {"chatType": "group", "topic": topic, "members": [member(u) for u in EX2]}
    resp = s.post(f"{url}/chats", json=body)
    assert resp.status_code == 201, resp.text
    chat: dict[str, Any] = resp.json()
    return chat
