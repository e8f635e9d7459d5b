"""`plan --format json` against its published schema (schemas/plan.schema.json, `provision schema
plan`): every kind of change, drift and renamed keys validate, moves are in the summary, and a
new chat's `protect: true` is not counted as a protection change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from provisioner.manifest.schema import shipped_schemas
from provisioner.models import Chat, DesiredState, Member, Move
from provisioner.plans.live import LiveChat, LiveMember
from provisioner.plans.planner import make_plan
from provisioner.plans.types import Plan
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State
from provisioner.views.plan import render_json, render_markdown, render_text, summary_line

ROOT = Path(__file__).resolve().parents[2]
A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"


def _schema() -> dict[str, Any]:
    return dict(json.loads(shipped_schemas()["plan"].read_text(encoding="utf-8")))


def _group(key: str, *users: str, topic: str = "Topic", protect: bool = False) -> Chat:
    return Chat(
        key=key,
        chat_type="group",
        members=tuple(Member(u) for u in users),
        topic=topic,
        protect=protect,
    )


def _record(chat: Chat, chat_id: str) -> ChatRecord:
    return ChatRecord(
        chat_id=chat_id,
        chat_type=chat.chat_type,
        topic=chat.topic,
        members=tuple(
            MemberRecord(user=m.user, role=m.role, object_id=m.user, membership_id=f"m-{m.user}")
            for m in chat.members
        ),
    )


def _desired(*chats: Chat, moves: tuple[Move, ...] = ()) -> DesiredState:
    return DesiredState(
        chats=tuple(sorted(chats, key=lambda c: c.key)), digest="sha256:t", moves=moves
    )


def _everything() -> Plan:
    """One plan with a create, an update, a forget, a reconcile, a rename and drift."""
    kept = _group("kept", A, B)
    renamed = _group("renamed", A, C)
    updated = _group("updated", A, B, C, topic="New topic")
    state = State(serial=3, exists=True)
    state.put_chat("kept", _record(kept, "19:kept"))
    state.put_chat("old-name", _record(renamed, "19:renamed"))
    state.put_chat("updated", _record(_group("updated", A, B, topic="Old"), "19:updated"))
    state.put_chat("gone-from-manifest", _record(_group("g", A, B), "19:gone"))
    members = (MemberRecord(user=A, role="owner"), MemberRecord(user=B, role="owner"))
    state.intents["pending"] = Intent(
        key="pending",
        chat_type="group",
        members=members,
        attempt_id="att-1",
        started_at="2026-01-01T00:00:00+00:00",
        topic="Topic",
    )
    live = {
        "kept": LiveChat(
            chat_id="19:kept",
            chat_type="group",
            topic="Renamed in Teams",
            members=(LiveMember(A, membership_id=f"m-{A}"), LiveMember(B, membership_id=f"m-{B}")),
        )
    }
    desired = _desired(
        kept,
        renamed,
        updated,
        _group("pending", A, B),
        _group("new", A, B, protect=True),
        moves=(Move("old-name", "renamed"),),
    )
    return make_plan(desired, state, live=live)


def test_a_plan_with_every_kind_of_change_validates() -> None:
    plan = _everything()
    document = json.loads(render_json(plan))
    jsonschema.validate(document, _schema())
    assert {c["action"] for c in document["changes"]} >= {
        "create",
        "update",
        "forget",
        "reconcile",
        "no-op",
    }
    assert document["drift"], "the refreshed topic is drift"


def test_moves_are_in_the_summary_and_listed() -> None:
    document = json.loads(render_json(_everything()))
    assert document["summary"]["move"] == 1
    assert document["moves"] == [{"from": "old-name", "to": "renamed"}]
    assert document["summary"]["create"] == 1  # the action counts are unchanged


def test_the_schema_refuses_what_it_does_not_describe() -> None:
    document = json.loads(render_json(_everything()))
    document["summary"]["moved"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, _schema())


def test_a_new_protected_chat_is_not_a_protection_change() -> None:
    plan = make_plan(_desired(_group("new", A, B, protect=True)), State())
    assert summary_line(plan) == (
        "Plan: 1 to create, 0 to update, 0 to delete, "
        "0 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes."
    )
    assert "+ protect true" in render_text(plan)
    assert "1 protection change" not in render_markdown(plan)


def test_protecting_an_existing_chat_is_one() -> None:
    chat = _group("kept", A, B)
    state = State(serial=1, exists=True)
    state.put_chat("kept", _record(chat, "19:kept"))
    plan = make_plan(_desired(_group("kept", A, B, protect=True)), state)
    assert summary_line(plan) == (
        "Plan: 0 to create, 0 to update, 0 to delete, "
        "0 to forget, 0 to reconcile, 0 to move, 0 to import, 1 protection changes."
    )


def test_the_top_level_copy_is_the_shipped_schema() -> None:
    for name, path in shipped_schemas().items():
        assert (ROOT / "schemas" / path.name).read_bytes() == path.read_bytes(), name
