"""Issue 22: the manifest's membership fields, through both the fast and the error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import ValidationFailed
from provisioner.manifest.load import load_desired, validate_paths

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return str(path)


def chats(head: str, chat_extra: str = "") -> str:
    return (
        f"version: 1\n{head}chats:\n"
        f"  - key: g\n    chatType: group\n{chat_extra}"
        f"    members:\n      - user: {A}\n      - user: {B}\n"
        f"  - key: h\n    chatType: group\n"
        f"    members:\n      - user: {A}\n      - user: {B}\n"
    )


def test_default_is_exact_and_defaults_and_chats_can_say_otherwise(tmp_path: Path) -> None:
    desired = load_desired([write(tmp_path, chats(""))])
    assert [c.membership for c in desired.chats] == ["exact", "exact"]
    head = "defaults:\n  role: owner\n  membership: additive\n"
    desired = load_desired([write(tmp_path, chats(head, "    membership: exact\n"))])
    assert {c.key: c.membership for c in desired.chats} == {"g": "exact", "h": "additive"}


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (chats("", "    membership: partial\n"), "m.yaml:5:17", "membership"),
        (chats("defaults:\n  membership: sometimes\n"), "m.yaml:3:15", "membership"),
        (
            f"version: 1\nchats:\n  - chatType: oneOnOne\n    membership: additive\n"
            f"    members:\n      - user: {A}\n      - user: {B}\n",
            "m.yaml:4:17",
            "only allowed in group chats",
        ),
    ],
)
def test_bad_membership_is_located(tmp_path: Path, text: str, where: str, message: str) -> None:
    result = validate_paths([write(tmp_path, text)])
    assert not result.ok
    shown = [f"{Path(d.file).name}:{d.line}:{d.col} {d.message}" for d in result.diagnostics]
    assert any(s.startswith(where) and message in s for s in shown), shown
    with pytest.raises(ValidationFailed):
        load_desired([write(tmp_path, text)])


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("none", "none"),
        ("all", "all"),
        ("{since: '2025-03-01'}", "2025-03-01T00:00:00Z"),
        ("{since: 2025-03-01}", "2025-03-01T00:00:00Z"),  # unquoted: YAML's timestamp
        ("{since: '2025-03-01T10:30:00+02:00'}", "2025-03-01T08:30:00Z"),
        ("\n      since: '2025-03-01T10:30:00'", "2025-03-01T10:30:00Z"),
    ],
)
def test_history_all_none_or_since(tmp_path: Path, written: str, stored: str) -> None:
    desired = load_desired([write(tmp_path, chats("", f"    history: {written}\n"))])
    chat = desired.chats[0]
    assert chat.history == stored
    body = chat.members[0].request_body(history=chat.history)
    expected = {"all": "0001-01-01T00:00:00Z", "none": None}.get(stored, stored)
    assert body.get("visibleHistoryStartDateTime") == expected
    assert "visibleHistoryStartDateTime" not in str(chat.request_body())  # never on creation


@pytest.mark.parametrize(
    ("written", "where", "message"),
    [
        ("{since: '2025-02-30'}", "m.yaml:5:22", "is not a real date"),
        ("{since: 'March 1st'}", "m.yaml:5:14", "history must be none, all, or since"),
        ("{until: '2025-03-01'}", "m.yaml:5:14", "history must be none, all, or since"),
    ],
)
def test_bad_history_is_located(tmp_path: Path, written: str, where: str, message: str) -> None:
    result = validate_paths([write(tmp_path, chats("", f"    history: {written}\n"))])
    shown = [f"{Path(d.file).name}:{d.line}:{d.col} {d.message}" for d in result.diagnostics]
    assert any(s.startswith(where) and message in s for s in shown), shown
