from __future__ import annotations

import dataclasses
import random
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.errors import PlanError
from provisioner.models import Chat, DesiredState, Member, Source, one_on_one_key
from provisioner.plans.planner import LiveChat, LiveMember, make_plan, refresh_only_plan
from provisioner.plans.types import Action, Change
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"
JACOB = "jacob@contoso.com"
JACOB_ID = "5b2a1b0c-7c1d-4f7e-9a3b-2c1d0e9f8a7b"
TENANT = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"
T = TypeVar("T")


def group(key: str, *members: Member, topic: str | None = "Topic") -> Chat:
    return Chat(key=key, chat_type="group", members=members, topic=topic)


def pair(a: str, b: str, key: str | None = None) -> Chat:
    return Chat(
        key=key or one_on_one_key(a, b), chat_type="oneOnOne", members=(Member(a), Member(b))
    )


def desired(*chats: Chat) -> DesiredState:
    return DesiredState(chats=tuple(sorted(chats, key=lambda c: c.key)), digest="sha256:test")


def applied(chat: Chat, chat_id: str = "19:x@thread.v2") -> ChatRecord:
    """The record an apply would leave for ``chat``, with membership ids from Graph."""
    return ChatRecord(
        chat_id=chat_id,
        chat_type=chat.chat_type,
        topic=chat.topic,
        members=tuple(
            MemberRecord(
                user=m.user,
                role=m.role,
                tenant_id=m.tenant_id,
                object_id=m.user if "@" not in m.user else None,
                membership_id=f"mem-{m.user}",
            )
            for m in chat.members
        ),
    )


def state_with(**records: ChatRecord) -> State:
    state = State(serial=7, exists=True)
    for key, rec in records.items():
        state.put_chat(key, rec)
    return state


def only(items: tuple[T, ...]) -> T:
    assert len(items) == 1
    return items[0]


def test_nothing_to_do() -> None:
    plan = make_plan(desired(), State())
    assert plan.changes == () and not plan.has_changes
    assert plan.state_lineage is None and plan.state_serial == 0  # "no state yet"


def test_create_carries_the_exact_request_body() -> None:
    chat = group("project-x", Member(A), Member(B, role="guest"), Member(C, tenant_id=TENANT))
    chat = dataclasses.replace(chat, source=Source("chats.yaml", 3, 5))
    url = "http://127.0.0.1:8080/v1.0"
    change = only(make_plan(desired(chat), State(), graph_url=url).changes)
    assert change.action is Action.CREATE
    assert change.body == chat.request_body(url)
    assert change.body["members"][2]["tenantId"] == TENANT
    assert change.chat_id is None and change.before is None
    assert change.source == "chats.yaml:3:5"
    assert [m.object_id for m in change.members] == [A, B, C]  # GUIDs are object ids


def test_one_on_one_create_means_create_or_adopt() -> None:
    chat = pair(A, JACOB)
    change = only(make_plan(desired(chat), State()).changes)
    assert change.action is Action.CREATE
    assert change.body == chat.request_body()
    assert change.members[1].object_id is None  # a UPN, not resolved yet


def test_applied_chat_is_a_no_op() -> None:
    chats = [group("g", Member(A), Member(JACOB, role="guest")), pair(A, B)]
    state = state_with(**{c.key: applied(c) for c in chats})
    plan = make_plan(desired(*chats), state)
    assert [c.action for c in plan.changes] == [Action.NOOP, Action.NOOP]
    assert not plan.has_changes
    assert plan.state_lineage == state.lineage and plan.state_serial == 7


def test_users_match_case_insensitively_and_by_object_id() -> None:
    chat = group("g", Member(A.upper()), Member("Jacob@Contoso.com"))
    rec = applied(group("g", Member(A), Member(JACOB)))
    state = state_with(g=rec)
    assert only(make_plan(desired(chat), state).changes).action is Action.NOOP
    # The manifest switches Jacob from UPN to object id: the same member once resolved.
    rec = dataclasses.replace(
        rec, members=(rec.members[0], dataclasses.replace(rec.members[1], object_id=JACOB_ID))
    )
    by_id = group("g", Member(A), Member(JACOB_ID))
    assert only(make_plan(desired(by_id), state_with(g=rec)).changes).action is Action.NOOP
    # And a UPN resolved through the state's user cache matches a member recorded by id.
    by_upn = group("g", Member(A), Member(JACOB))
    state = state_with(g=applied(by_id))
    assert only(make_plan(desired(by_upn), state).changes).action is Action.UPDATE
    state.users[JACOB] = JACOB_ID
    assert only(make_plan(desired(by_upn), state).changes).action is Action.NOOP


def test_update_topic_members_and_roles() -> None:
    old = group("g", Member(A), Member(B), Member(C), topic="Old")
    new = group("g", Member(A), Member(B), Member(JACOB), topic="New")
    change = only(make_plan(desired(new), state_with(g=applied(old, "19:g"))).changes)
    assert change.action is Action.UPDATE
    assert change.chat_id == "19:g"
    assert change.topic_change == ("Old", "New")
    assert [m.user for m in change.add] == [JACOB]
    assert [(m.user, m.membership_id) for m in change.remove] == [(C, f"mem-{C}")]
    assert change.role_changes == ()
    # Issue 22: a role change is refused, never planned as a remove and an add.
    new_role = group("g", Member(A), Member(B, role="guest"), Member(C), topic="Old")
    with pytest.raises(PlanError, match=rf"{B} \(owner -> guest\)") as err:
        make_plan(desired(new_role), state_with(g=applied(old, "19:g")))
    assert "cannot change a chat member's role in place" in str(err.value)
    assert "remove the member from the manifest" in (err.value.hint or "")
    # The chat as it will be, ready for state: manifest order, known ids kept.
    assert [(m.user, m.role, m.membership_id) for m in change.members] == [
        (A, "owner", f"mem-{A}"),
        (B, "owner", f"mem-{B}"),
        (JACOB, "owner", None),
    ]
    assert change.body is None


def test_unknown_membership_ids_are_noted() -> None:
    old = group("g", Member(A), Member(B))
    rec = dataclasses.replace(
        applied(old),
        members=tuple(dataclasses.replace(m, membership_id=None) for m in applied(old).members),
    )
    change = only(make_plan(desired(group("g", Member(A))), state_with(g=rec)).changes)
    assert change.action is Action.UPDATE
    assert any("membership ids" in n for n in change.notes)


def test_removed_from_manifest_is_forgotten_unless_pruning() -> None:
    rec = applied(group("old", Member(A), Member(B)), "19:old")
    state = state_with(old=rec)
    forget = only(make_plan(desired(), state).changes)
    assert forget.action is Action.FORGET and forget.chat_id == "19:old"
    assert any("stays in Teams" in n for n in forget.notes)
    delete = only(make_plan(desired(), state, prune=True).changes)
    assert delete.action is Action.DELETE and delete.chat_id == "19:old" and delete.before == rec


def test_changes_graph_cannot_make_are_all_reported_at_once() -> None:
    was_group = group("a", Member(A), Member(B))
    was_pair = pair(A, B, key="b")
    state = state_with(a=applied(was_group), b=applied(was_pair))
    now = desired(
        dataclasses.replace(pair(A, B), key="a"),  # group -> oneOnOne
        pair(A, C, key="b"),  # another pair under the same key
    )
    with pytest.raises(PlanError) as err:
        make_plan(now, state)
    text = str(err.value)
    assert "a: chatType changes from group to oneOnOne" in text
    assert "b: this oneOnOne chat is between" in text and C in text
    assert "different chat" in text and "provision state rm" in text


def test_pending_creation_is_planned_as_reconcile() -> None:
    chat = group("g", Member(A), Member(B))
    state = State(serial=3, exists=True)
    state.put_intent(
        Intent(
            key="g",
            chat_type="group",
            topic="Topic",
            members=(MemberRecord(A), MemberRecord(B)),
            attempt_id="att-1",
            started_at="2024-05-01T10:00:00+00:00",
        )
    )
    change = only(make_plan(desired(chat), state).changes)
    assert change.action is Action.RECONCILE
    assert change.intent == state.intents["g"]
    assert change.body == chat.request_body()  # what to create if nothing is found
    assert not any("manifest changed" in n for n in change.notes)
    changed = group("g", Member(A), Member(C))
    assert any("manifest changed" in n for n in make_plan(desired(changed), state).changes[0].notes)
    gone = only(make_plan(desired(), state).changes)
    assert gone.action is Action.RECONCILE and gone.body is None
    assert any("no longer in the manifest" in n for n in gone.notes)


def test_order_is_by_key_whatever_the_input_order() -> None:
    chats = [group(f"k{i:03d}", Member(A), Member(B)) for i in range(50)]
    state = state_with(**{f"k{i:03d}": applied(chats[i]) for i in range(0, 50, 3)})
    state.put_chat("zz-old", applied(chats[0]))
    state.put_chat("aa-old", applied(chats[0]))
    first = make_plan(desired(*chats), state)
    random.Random(4).shuffle(chats)
    second = make_plan(DesiredState(chats=tuple(chats), digest="sha256:test"), state)
    keys = [c.key for c in first.changes]
    assert keys == sorted(keys) and "aa-old" in keys and "zz-old" in keys
    assert first.changes == second.changes


# --- refresh (issue 7 supplies ``live``): drift is shown, and the manifest wins ---------------


def live_of(rec: ChatRecord, **changes: object) -> LiveChat:
    chat = LiveChat(
        chat_id=rec.chat_id,
        chat_type=rec.chat_type,
        topic=rec.topic,
        members=tuple(
            LiveMember(
                object_id=m.object_id or JACOB_ID, role=m.role, membership_id=m.membership_id
            )
            for m in rec.members
        ),
    )
    return dataclasses.replace(chat, **changes)  # type: ignore[arg-type]


def test_refresh_without_drift() -> None:
    chat = group("g", Member(A), Member(B))
    rec = applied(chat)
    plan = make_plan(desired(chat), state_with(g=rec), live={"g": live_of(rec)})
    assert plan.refreshed and plan.drift == ()
    assert only(plan.changes).action is Action.NOOP


def test_drift_renamed_and_member_added_outside_is_repaired() -> None:
    chat = group("g", Member(A), Member(B), topic="Right")
    rec = applied(chat)
    seen = live_of(rec, topic="Renamed")
    seen = dataclasses.replace(
        seen, members=(*seen.members, LiveMember(object_id=C, membership_id="mem-c"))
    )
    plan = make_plan(desired(chat), state_with(g=rec), live={"g": seen})
    drift = only(plan.drift)
    assert drift.topic_change == ("Right", "Renamed")
    assert [m.object_id for m in drift.added] == [C] and drift.removed == ()
    change = only(plan.changes)
    assert change.action is Action.UPDATE
    assert change.topic_change == ("Renamed", "Right")
    assert [(m.object_id, m.membership_id) for m in change.remove] == [(C, "mem-c")]


def test_drift_member_left_and_role_changed() -> None:
    chat = group("g", Member(A), Member(B), Member(C))
    rec = applied(chat)
    seen = live_of(rec)
    seen = dataclasses.replace(
        seen, members=(seen.members[0], dataclasses.replace(seen.members[1], role="guest"))
    )
    plan = refresh_only_plan(state_with(g=rec), {"g": seen})
    drift = only(plan.drift)
    assert [m.user for m in drift.removed] == [C]
    assert [(r.member.user, r.old_role, r.member.role) for r in drift.role_changes] == [
        (B, "owner", "guest")
    ]
    # Repairing the role would be a remove and an add: refused (issue 22), with the reason.
    with pytest.raises(PlanError, match=rf"{B} \(guest -> owner\)"):
        make_plan(desired(chat), state_with(g=rec), live={"g": seen})


def test_chat_deleted_outside_is_created_again_or_forgotten() -> None:
    chat = group("g", Member(A), Member(B))
    rec = applied(chat, "19:gone")
    live = {"g": LiveChat(chat_id="19:gone", gone=True)}
    plan = make_plan(desired(chat), state_with(g=rec), live=live)
    assert only(plan.drift).gone
    change = only(plan.changes)
    assert change.action is Action.CREATE and change.body == chat.request_body()
    assert "deleted outside provision" in change.notes[0]
    plan = make_plan(desired(), state_with(g=rec), live=live, prune=True)
    assert only(plan.changes).action is Action.FORGET  # nothing left to delete


# --- planning what was applied gives nothing to do -------------------------------------------

guids = st.uuids().map(str)
members = st.lists(
    st.builds(Member, user=guids, role=st.sampled_from(["owner", "guest"])),
    min_size=2,
    max_size=5,
    unique_by=lambda m: m.user,
)
groups = st.builds(
    Chat,
    key=st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
    chat_type=st.just("group"),
    members=members.map(tuple),
    topic=st.text(min_size=1, max_size=20).filter(lambda t: ":" not in t),
)


def simulate_apply(plan_changes: tuple[Change, ...], state: State) -> None:
    for n, change in enumerate(plan_changes):
        if change.action in (Action.CREATE, Action.UPDATE):
            chat_id = change.chat_id or f"19:new-{n}@thread.v2"
            members = tuple(
                dataclasses.replace(m, membership_id=m.membership_id or f"mem-{n}-{i}")
                for i, m in enumerate(change.members)
            )
            state.put_chat(
                change.key,
                ChatRecord(chat_id, change.chat_type, members, topic=change.topic),
            )
        elif change.action in (Action.FORGET, Action.DELETE):
            state.remove_chat(change.key)


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(groups, max_size=6, unique_by=lambda c: c.key),
    after=st.lists(groups, max_size=6, unique_by=lambda c: c.key),
    prune=st.booleans(),
)
def test_applying_a_plan_then_planning_again_changes_nothing(
    before: list[Chat], after: list[Chat], prune: bool
) -> None:
    state = State()
    simulate_apply(make_plan(desired(*before), state).changes, state)
    plan = make_plan(desired(*after), state, prune=prune)
    simulate_apply(plan.changes, state)
    again = make_plan(desired(*after), state, prune=prune)
    assert not again.has_changes
    assert sorted(state.chats) == sorted(c.key for c in after)


# --- issue 7: protect, moved, history, role changes, refresh-only ---------------------------


def test_protect_flip_is_a_change_and_a_protected_delete_an_error() -> None:
    from provisioner.plans.planner import make_plan as plan_of

    chat = dataclasses.replace(group("g", Member(A), Member(B)), protect=True)
    state = state_with(g=applied(chat, "19:g"))
    change = only(plan_of(desired(chat), state).changes)
    assert change.action is Action.NOOP and change.protect_change == (False, True)
    assert plan_of(desired(chat), state).has_changes
    state.protected.add("g")
    assert not plan_of(desired(chat), state).has_changes
    unprotect = dataclasses.replace(chat, protect=False)
    assert only(plan_of(desired(unprotect), state).changes).protect_change == (True, False)
    assert only(plan_of(desired(), state).changes).action is Action.FORGET  # forget is fine
    with pytest.raises(PlanError) as err:
        plan_of(desired(), state, prune=True)
    assert "g: it is protected" in str(err.value) and "protect: false" in str(err.value)


def test_moved_chain_renames_and_conflicts_are_errors() -> None:
    from provisioner.models import Move

    chat = group("c", Member(A), Member(B))
    state = state_with(a=applied(chat, "19:a"))
    moves = (Move("a", "b"), Move("b", "c"))
    plan = make_plan(DesiredState((chat,), moves=moves), state)
    change = only(plan.changes)
    assert change.key == "c" and change.moved_from == "a" and change.action is Action.NOOP
    assert plan.moves == (("a", "c"),) and plan.has_changes
    # Old and new key both in the state: refused, naming both.
    both = state_with(a=applied(chat, "19:a"), c=applied(chat, "19:c"))
    with pytest.raises(PlanError) as err:
        make_plan(DesiredState((chat,), moves=moves), both)
    assert "a: moved to c, but the state already has a chat under c (chat 19:c)" in str(err.value)
    # Nothing under the old key: the entry does nothing.
    fresh = make_plan(DesiredState((chat,), moves=moves), State())
    assert only(fresh.changes).action is Action.CREATE and not fresh.moves


def test_role_change_and_history_notes() -> None:
    old = group("g", Member(A), Member(B))
    new = dataclasses.replace(group("g", Member(A), Member(B), Member(C)), history="all")
    change = only(make_plan(desired(new), state_with(g=applied(old))).changes)
    assert change.action is Action.UPDATE and change.history == "all"
    assert change.role_changes == ()
    assert any("whole chat history" in n for n in change.notes)
    topic_only = dataclasses.replace(old, topic="Other")
    change = only(make_plan(desired(topic_only), state_with(g=applied(old))).changes)
    assert change.history is None and not any("history" in n for n in change.notes)


def test_refresh_only_plan_reports_drift_alone() -> None:
    from provisioner.plans.planner import refresh_only_plan

    chat = group("g", Member(A), Member(B))
    state = state_with(g=applied(chat, "19:g"), h=applied(chat, "19:h"))
    live = {
        "g": LiveChat("19:g", "group", "Topic", (LiveMember(A, membership_id="m"),)),
        "h": LiveChat("19:h", gone=True),
    }
    plan = refresh_only_plan(state, live)
    assert plan.refresh_only and plan.changes == () and plan.has_changes
    assert [(d.key, d.gone) for d in plan.drift] == [("g", False), ("h", True)]
    assert [m.user for m in plan.drift[0].removed] == [B]


def test_group_without_topic_in_manifest_leaves_the_chats_topic_alone() -> None:
    # chat-patch.md documents no way to clear a topic: planning to clear it could never apply.
    record = applied(group("g", Member(A), Member(B), topic="Set in Teams"))
    change = only(
        make_plan(
            desired(group("g", Member(A), Member(B), topic=None)), state_with(g=record)
        ).changes
    )
    assert change.action is Action.NOOP and change.topic_change is None
    grown = group("g", Member(A), Member(B), Member(C), topic=None)
    change = only(make_plan(desired(grown), state_with(g=record)).changes)
    assert change.action is Action.UPDATE and change.topic_change is None
    assert change.topic == "Set in Teams"  # what state records after apply
