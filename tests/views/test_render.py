from __future__ import annotations

import dataclasses
import json
import re

import pytest

from provisioner.models import Chat, DesiredState, Member, one_on_one_key
from provisioner.plans.planner import LiveChat, LiveMember, make_plan
from provisioner.plans.types import Plan, RoleChange
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.views.plan import GITHUB_COMMENT_LIMIT, render_plan

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"
TENANT = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def example_plan() -> Plan:
    state = State(serial=2, exists=True)
    ab = (MemberRecord(A, membership_id="m-a"), MemberRecord(B, membership_id="m-b"))
    state.put_chat("same", ChatRecord("19:same", "group", ab, topic="Same"))
    state.put_chat("upd", ChatRecord("19:upd", "group", ab, topic="Old"))
    state.put_chat("old", ChatRecord("19:old", "group", ab, topic="Old chat"))
    chats = (
        Chat("same", "group", (Member(A), Member(B)), topic="Same"),
        Chat("upd", "group", (Member(A), Member(C)), topic="New"),
        Chat("new", "group", (Member(A), Member(C, tenant_id=TENANT)), topic="Project X"),
        Chat(one_on_one_key(A, B), "oneOnOne", (Member(A), Member(B))),
    )
    plan = make_plan(DesiredState(chats=chats, digest="sha256:abc"), state)
    # The planner refuses role changes (issue 22), but a view still renders one it is given
    # (a plan file written before that).
    role = RoleChange(MemberRecord(A, "guest", membership_id="m-a"), "owner")
    changes = tuple(
        dataclasses.replace(c, role_changes=(role,)) if c.key == "upd" else c for c in plan.changes
    )
    return dataclasses.replace(plan, changes=changes)


def test_text_is_terraform_like() -> None:
    text = render_plan(example_plan(), "text")
    assert not ANSI.search(text)
    assert text.rstrip().endswith(
        "Plan: 2 to create, 1 to update, 0 to delete, "
        "1 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes."
    )
    assert '  # new will be created\n  + chat "new" (group)\n' in text
    assert '      + topic "Project X"' in text
    assert f"      + member {C}  owner, tenant {TENANT}" in text
    assert "will be created, or the existing one-on-one chat adopted" in text
    assert "  # upd will be updated in place (chat 19:upd)" in text
    assert '      ~ topic "Old" -> "New"' in text
    assert f"      + member {C}  owner" in text
    assert f"      - member {B}  owner" in text
    assert f"      ~ member {A}  role owner -> guest" in text
    assert '  . chat "old" (group)' in text
    assert "same" not in text  # no-ops are counted, not listed


def test_summary_line_without_optional_actions() -> None:
    plan = make_plan(
        DesiredState(chats=(Chat("n", "group", (Member(A), Member(B)), topic="T"),)), State()
    )
    assert (
        render_plan(plan)
        .rstrip()
        .endswith(
            "Plan: 1 to create, 0 to update, 0 to delete, "
            "0 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes."
        )
    )


def test_no_changes() -> None:
    text = render_plan(make_plan(DesiredState(chats=()), State()))
    assert text == "No changes. The chats match the manifest.\n"


def test_color_only_when_asked() -> None:
    plain = render_plan(example_plan(), "text", color=False)
    colored = render_plan(example_plan(), "text", color=True)
    assert "\x1b[32m  + chat" in colored and "\x1b[31m      - member" in colored
    assert ANSI.sub("", colored) == plain


def test_user_text_cannot_inject_escapes_or_lines() -> None:
    state = State(exists=True)
    state.put_chat(
        "k",
        ChatRecord("19:k", "group", (MemberRecord(A), MemberRecord(B)), topic="evil\x1b[2J\nline"),
    )
    chats = (Chat("k", "group", (Member(A), Member(B)), topic="fine"),)
    text = render_plan(make_plan(DesiredState(chats=chats), state))
    assert "\x1b" not in text
    assert '~ topic "evil\\u001b[2J\\nline" -> "fine"' in text


def test_drift_has_its_own_section() -> None:
    state = State(exists=True)
    state.put_chat("k", ChatRecord("19:k", "group", (MemberRecord(A, object_id=A),), topic="Right"))
    state.put_chat("gone", ChatRecord("19:g", "group", (MemberRecord(A, object_id=A),)))
    live = {
        "k": LiveChat("19:k", "group", "Renamed", (LiveMember(A), LiveMember(B))),
        "gone": LiveChat("19:g", gone=True),
    }
    chats = (Chat("k", "group", (Member(A),), topic="Right"),)
    text = render_plan(make_plan(DesiredState(chats=chats), state, live=live))
    drift, actions = text.split("provision will perform the following actions:")
    assert drift.startswith("Changes outside provision")
    assert "  # gone was deleted outside provision (chat 19:g)" in drift
    assert '      ~ topic "Right" -> "Renamed"' in drift
    assert f"      + member {B}  owner" in drift
    assert '~ topic "Renamed" -> "Right"' in actions


def test_json_has_the_contract_shape() -> None:
    plan = example_plan()
    doc = json.loads(render_plan(plan, "json"))
    assert doc["format_version"] == 1
    assert doc["summary"] == {
        "create": 2,
        "update": 1,
        "delete": 0,
        "forget": 1,
        "reconcile": 0,
        "no-op": 1,
        "move": 0,
        "import": 0,
    }
    assert [c["key"] for c in doc["changes"]] == sorted(c.key for c in plan.changes)
    assert len(doc["changes"]) == 5  # one per key, no-ops included
    new = next(c for c in doc["changes"] if c["key"] == "new")
    assert new["request"] == next(c.body for c in plan.changes if c.key == "new")
    upd = next(c for c in doc["changes"] if c["key"] == "upd")
    assert upd["topic_change"] == {"before": "Old", "after": "New"}
    assert [m["user"] for m in upd["members_remove"]] == [B]
    assert upd["role_changes"][0]["old_role"] == "owner"


def test_markdown_summary_table_and_details() -> None:
    md = render_plan(example_plan(), "markdown")
    assert (
        "**Plan: 2 to create, 1 to update, 0 to delete, "
        "1 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes.**"
    ) in md
    assert "| `+` create | 2 |" in md and "| no change | 1 |" in md
    assert "<details><summary>Changes (4)</summary>" in md
    assert "```diff\n" in md and "</details>" in md
    assert f"!     member {A}  role owner -> guest" in md  # "!" is highlighted by GitHub
    assert f"-     member {B}  owner" in md
    assert "Truncated" not in md


def test_markdown_fence_survives_backticks_in_topics() -> None:
    chats = (Chat("k", "group", (Member(A), Member(B)), topic="```oops````"),)
    md = render_plan(make_plan(DesiredState(chats=chats), State()), "markdown")
    assert "`````diff\n" in md


@pytest.mark.parametrize("count", [2_000, 20_000])
def test_large_markdown_is_truncated_below_githubs_limit(count: int) -> None:
    chats = tuple(
        Chat(f"chat-{i:05d}", "group", (Member(A), Member(B), Member(C)), topic=f"Topic {i}")
        for i in range(count)
    )
    md = render_plan(make_plan(DesiredState(chats=chats), State()), "markdown")
    assert len(md) < GITHUB_COMMENT_LIMIT
    match = re.search(r"\*\*Truncated:\*\* ([\d,]+) of ([\d,]+) chats are shown", md)
    assert match is not None
    shown = int(match.group(1))
    assert match.group(2) == str(count) and 0 < shown < count
    assert md.count("\n+ chat ") == shown  # every shown block is complete
    assert md.index("</details>") < md.index("**Truncated:**")  # the HTML is well closed
    assert f"| `+` create | {count} |" in md  # the table still counts everything


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown plan format"):
        render_plan(example_plan(), "yaml")


def test_a_protected_new_chat_shows_protect_as_added() -> None:
    chat = Chat("p", "group", (Member("a@contoso.com"), Member("b@contoso.com")), "T", protect=True)
    text = render_plan(make_plan(DesiredState((chat,)), State()), "text")
    assert "+ protect true" in text and "protect false -> true" not in text
