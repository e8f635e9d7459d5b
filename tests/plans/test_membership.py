"""Issue 22: membership policy (exact | additive) in the planner, from a refreshed view."""

from __future__ import annotations

import dataclasses

from provisioner.models import MEMBERSHIP_ADDITIVE, Chat, DesiredState, Member
from provisioner.plans.planner import LiveChat, LiveMember, make_plan, refresh_only_plan
from provisioner.plans.types import Action, Change
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.views.plan import render_markdown, render_text

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"
HAND = "82fe7758-5bb3-4f0d-a43f-e555fd399c6f"  # added in Teams by someone else
TENANT = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"


def group(*users: str, membership: str = "exact") -> Chat:
    return Chat("g", "group", tuple(Member(u) for u in users), "T", membership=membership)


def record(*members: MemberRecord) -> ChatRecord:
    return ChatRecord("19:g", "group", members, "T")


def mem(user: str, *, added: bool = True, tenant: str | None = None) -> MemberRecord:
    return MemberRecord(user, "owner", user, tenant, f"m-{user}", added)


def live(*members: MemberRecord) -> LiveChat:
    return LiveChat(
        "19:g",
        "group",
        "T",
        tuple(LiveMember(m.object_id or m.user, m.role, m.membership_id) for m in members),
    )


def plan_for(chat: Chat, rec: ChatRecord, seen: LiveChat) -> Change:
    state = State(exists=True)
    state.put_chat("g", rec)
    plan = make_plan(DesiredState((chat,)), state, live={"g": seen})
    (change,) = plan.changes
    return change


def test_additive_keeps_a_member_added_in_teams_and_exact_removes_it() -> None:
    rec = record(mem(A), mem(B))
    seen = live(mem(A), mem(B), mem(HAND))
    change = plan_for(group(A, B, membership=MEMBERSHIP_ADDITIVE), rec, seen)
    assert change.action is Action.NOOP
    assert [m.user for m in change.unmanaged] == [HAND]
    # Recorded with the chat (so a later refresh is not drift), flagged as not ours.
    assert [(m.user, m.added) for m in change.members] == [(A, True), (B, True), (HAND, False)]
    exact = plan_for(group(A, B), rec, seen)
    assert exact.action is Action.UPDATE
    assert [m.user for m in exact.remove] == [HAND] and exact.unmanaged == ()


def test_additive_removes_a_member_provision_added_and_the_manifest_dropped() -> None:
    rec = record(mem(A), mem(B), mem(C), mem(HAND, added=False))
    seen = live(*rec.members)
    change = plan_for(group(A, B, membership=MEMBERSHIP_ADDITIVE), rec, seen)
    assert change.action is Action.UPDATE
    assert [m.user for m in change.remove] == [C]
    assert [m.user for m in change.unmanaged] == [HAND]
    text = render_text(_plan(change))
    assert f"- member {C}  owner" in text
    assert f"member {HAND}  owner  (unmanaged: added outside provision, kept)" in text


def test_a_member_someone_else_added_stays_theirs_while_the_manifest_lists_it() -> None:
    # Listed by the manifest later, then dropped from it: provision never added this person,
    # so additive still leaves them.
    rec = record(mem(A), mem(B), mem(HAND, added=False))
    listed = plan_for(group(A, B, HAND, membership=MEMBERSHIP_ADDITIVE), rec, live(*rec.members))
    assert listed.action is Action.NOOP
    assert [(m.user, m.added) for m in listed.members][-1] == (HAND, False)
    dropped = plan_for(group(A, B, membership=MEMBERSHIP_ADDITIVE), rec, live(*rec.members))
    assert dropped.action is Action.NOOP and [m.user for m in dropped.unmanaged] == [HAND]


def test_additive_to_exact_shows_every_person_removed() -> None:
    rec = record(mem(A), mem(B), mem(HAND, added=False), mem(C, added=False))
    change = plan_for(group(A, B), rec, live(*rec.members))
    assert change.action is Action.UPDATE
    assert sorted(m.user for m in change.remove) == sorted([HAND, C])
    # Without a refresh the state's record says the same.
    state = State(exists=True)
    state.put_chat("g", rec)
    (offline,) = make_plan(DesiredState((group(A, B),)), state).changes
    assert sorted(m.user for m in offline.remove) == sorted([HAND, C])


def test_unmanaged_members_of_an_unchanged_chat_are_named_in_every_view() -> None:
    rec = record(mem(A), mem(B), mem(HAND, added=False))
    change = plan_for(group(A, B, membership=MEMBERSHIP_ADDITIVE), rec, live(*rec.members))
    plan = _plan(change)
    assert not plan.has_changes
    text = render_text(plan)
    assert "Members added outside provision, left as they are" in text
    assert f"member {HAND}  owner  (unmanaged" in text
    assert HAND in render_markdown(plan)
    assert plan.to_dict()["changes"][0]["members_unmanaged"][0]["added"] is False


def test_refresh_after_recording_an_unmanaged_member_is_clean() -> None:
    rec = record(mem(A), mem(B), mem(HAND, added=False))
    state = State(exists=True)
    state.put_chat("g", rec)
    assert refresh_only_plan(state, {"g": live(*rec.members)}).drift == ()


def test_saved_plan_keeps_the_added_flags() -> None:
    rec = record(mem(A), mem(B))
    change = plan_for(group(A, B, membership=MEMBERSHIP_ADDITIVE), rec, live(A_, B_, H_))
    again = Change.from_dict(change.to_dict())
    assert again.unmanaged == change.unmanaged and again.members == change.members


A_, B_, H_ = mem(A), mem(B), mem(HAND)


def _plan(change: Change):
    from provisioner.plans.types import Plan

    return dataclasses.replace(
        Plan(changes=(change,), state_lineage="l", state_serial=1, graph_url="u"), refreshed=True
    )


def test_plan_json_with_unmanaged_members_validates_against_the_published_schema() -> None:
    import json

    import jsonschema

    from provisioner.manifest.schema import shipped_schemas
    from provisioner.views.plan import render_json

    rec = record(mem(A), mem(B), mem(C), mem(HAND, added=False))
    change = plan_for(group(A, B, membership=MEMBERSHIP_ADDITIVE), rec, live(*rec.members))
    document = json.loads(render_json(_plan(change)))
    schema = json.loads(shipped_schemas()["plan"].read_text(encoding="utf-8"))
    jsonschema.validate(document, schema)
    assert document["changes"][0]["members_unmanaged"] == [
        {
            "user": HAND,
            "role": "owner",
            "object_id": HAND,
            "membership_id": f"m-{HAND}",
            "added": False,
        }
    ]


def test_a_creation_over_200_members_sends_200_and_plans_the_rest() -> None:
    people = [f"00000000-0000-4000-8000-{n:012d}" for n in range(230)]
    chat = Chat("big", "group", tuple(Member(p) for p in people), "Big")
    (change,) = make_plan(DesiredState((chat,)), State()).changes
    assert change.action is Action.CREATE
    assert change.body is not None and len(change.body["members"]) == 200
    assert [m.user for m in change.add] == people[200:]
    assert len(change.members) == 230
    assert any("the other 30 are added one by one" in n for n in change.notes)
    from provisioner.apply.work import planned_requests

    assert planned_requests(change) == 31


def test_groups_read_by_a_plan_survive_its_file_and_the_state_file(tmp_path) -> None:
    import json

    import jsonschema

    from provisioner.manifest.schema import shipped_schemas
    from provisioner.models import GroupRef
    from provisioner.plans.types import Plan
    from provisioner.states.local import LocalStateStore
    from provisioner.states.records import GroupRecord, GroupUser
    from provisioner.views.plan import render_json

    group = GroupRecord(
        "gid", "Falcon-Team", "2026-01-01T00:00:00Z", (GroupUser(B, "b@x.com"), GroupUser(C))
    )
    chat = Chat("g", "group", (Member(A),), "T", groups=(GroupRef("falcon@x.com"),))
    plan = make_plan(DesiredState((chat,)), State(), groups={"falcon@x.com": group})
    (change,) = plan.changes
    assert [(m.user, m.via) for m in change.members] == [
        (A, None),
        ("b@x.com", "group Falcon-Team"),
        (C, "group Falcon-Team"),
    ]
    assert plan.users == {"b@x.com": B}
    doc = json.loads(render_json(plan))
    jsonschema.validate(doc, json.loads(shipped_schemas()["plan"].read_text(encoding="utf-8")))
    again = Plan.from_dict(plan.to_dict(), 1)
    assert again.groups == plan.groups
    store = LocalStateStore(tmp_path / "s.json")
    state = State()
    state.put_group("falcon@x.com", group)
    store.write(state)
    assert store.read().groups == {"falcon@x.com": group}
    # Offline, the state's copy serves; without one the plan says the group was never read.
    (offline,) = make_plan(DesiredState((chat,)), store.read()).changes
    assert len(offline.members) == 3
    import pytest

    from provisioner.errors import PlanError

    with pytest.raises(PlanError, match="has not been read from Graph yet"):
        make_plan(DesiredState((chat,)), State())


def test_delegated_the_caller_must_be_among_the_first_200() -> None:
    from provisioner.plans.live import without_signed_in_user

    people = [f"00000000-0000-4000-8000-{n:012d}" for n in range(230)]
    chat = Chat("big", "group", tuple(Member(p) for p in people), "Big")
    plan = make_plan(DesiredState((chat,)), State())
    assert without_signed_in_user(plan.changes, people[0], {}) == []
    assert without_signed_in_user(plan.changes, people[220], {}) == ["big"]
