from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from lib.fs_helpers import make_readonly, snapshot  # noqa: F401  (fixture)

from provisioner import __version__
from provisioner.errors import PlanError
from provisioner.models import Chat, DesiredState, Member
from provisioner.plans.files import check_applicable, load_plan, save_plan
from provisioner.plans.planner import LiveChat, make_plan
from provisioner.plans.types import Action, Plan
from provisioner.states.local import LocalStateStore
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
URL = "https://graph.microsoft.com/v1.0"


def rich_plan(state: State | None = None) -> Plan:
    """A plan with every kind of change and a drift entry."""
    state = state or State(serial=4, exists=True)
    members = (MemberRecord(A, membership_id="m-a"), MemberRecord(B, membership_id="m-b"))
    state.put_chat("upd", ChatRecord("19:upd", "group", members, topic="Old"))
    state.put_chat("gone", ChatRecord("19:gone", "group", members, topic="G"))
    state.put_chat("drift", ChatRecord("19:drift", "group", members, topic="D"))
    state.put_intent(
        Intent("pend", "group", members, attempt_id="att", started_at="2024-01-01T00:00:00Z")
    )
    chats = (
        Chat("drift", "group", (Member(A), Member(B)), topic="D"),
        Chat("new", "group", (Member(A), Member(B, role="guest")), topic="Ünïcode ✓"),
        Chat("pend", "group", (Member(A), Member(B)), topic="P"),
        Chat("upd", "group", (Member(A),), topic="New"),
    )
    live = {"drift": LiveChat("19:drift", "group", topic="Renamed", members=())}
    return make_plan(
        DesiredState(chats=chats, files=("a.yaml",), digest="sha256:abc"), state, live=live
    )


def test_summary_counts_every_action() -> None:
    plan = rich_plan()
    assert plan.summary == {
        "create": 1,
        "update": 2,
        "delete": 0,
        "forget": 1,
        "reconcile": 1,
        "no-op": 0,
    }
    assert plan.has_changes
    assert [c.action for c in plan.actionable] == [
        Action.UPDATE,
        Action.FORGET,
        Action.CREATE,
        Action.RECONCILE,
        Action.UPDATE,
    ]


def test_saved_plan_round_trips_and_is_private(tmp_path: Path) -> None:
    plan = rich_plan()
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["plan.json"]
    assert load_plan(path) == plan


def test_saved_plan_records_what_it_was_made_against(tmp_path: Path) -> None:
    save_plan(rich_plan(), tmp_path / "p")
    doc = json.loads((tmp_path / "p").read_text())
    assert doc["kind"] == "provision-plan" and doc["format_version"] == 1
    body = doc["plan"]
    assert body["state"]["serial"] == 4 and body["state"]["lineage"]
    assert body["manifest"] == {"digest": "sha256:abc", "files": ["a.yaml"]}
    assert body["graph_url"] == URL and body["tool_version"] == __version__
    assert doc["digest"].startswith("sha256:")


def edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d["plan"]["changes"][0].update(action="delete"), "modified after it was"),
        (lambda d: d["plan"]["state"].update(serial=99), "modified after it was"),
        (lambda d: d.update(digest="sha256:0"), "modified after it was"),
        (lambda d: d.update(kind="something-else"), "not a provision plan file"),
        (lambda d: d.update(format_version=2), "newer provision"),
        (lambda d: d.update(format_version="1"), "no valid format_version"),
        (lambda d: d.clear(), "not a provision plan file"),
    ],
)
def test_edited_or_foreign_plan_files_are_refused(tmp_path: Path, mangle, message: str) -> None:
    path = tmp_path / "plan.json"
    save_plan(rich_plan(), path)
    edit(path, mangle)
    with pytest.raises(PlanError, match=message):
        load_plan(path)


def test_non_plan_files_are_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    store = LocalStateStore(state_file)
    store.write(store.read())
    for path, message in (
        (state_file, "not a provision plan file"),
        (tmp_path / "missing", "cannot read plan file"),
    ):
        with pytest.raises(PlanError, match=message):
            load_plan(path)
    truncated = tmp_path / "t"
    save_plan(rich_plan(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(PlanError, match="not JSON"):
        load_plan(truncated)


def test_plan_file_in_read_only_directory(tmp_path: Path, make_readonly) -> None:  # noqa: F811
    make_readonly(tmp_path)
    with pytest.raises(PlanError, match="cannot write plan file"):
        save_plan(rich_plan(), tmp_path / "plan.json")
    assert snapshot(tmp_path) == {}


# --- a saved plan applies only to the state it was made against -------------------------------


def stored_state(tmp_path: Path) -> tuple[LocalStateStore, State]:
    store = LocalStateStore(tmp_path / "s.json")
    state = store.read()
    store.write(state)
    return store, state


def test_plan_applies_to_its_own_state(tmp_path: Path) -> None:
    _, state = stored_state(tmp_path)
    plan = make_plan(DesiredState(chats=()), state)
    check_applicable(plan, state, URL)
    check_applicable(plan, state, URL + "/")  # same Graph


def test_plan_refused_once_state_moved_on(tmp_path: Path) -> None:
    store, state = stored_state(tmp_path)
    plan = make_plan(DesiredState(chats=()), state)
    store.write(state)
    with pytest.raises(PlanError, match=r"changed since the plan was made .*serial 1.*serial 2"):
        check_applicable(plan, store.read(), URL)


def test_plan_refused_once_applied(tmp_path: Path) -> None:
    store, state = stored_state(tmp_path)
    plan = make_plan(DesiredState(chats=()), state)
    state.last_plan_id = plan.plan_id  # what the apply records
    store.write(state)
    with pytest.raises(PlanError, match="already applied"):
        check_applicable(plan, store.read(), URL)


def test_plan_made_with_no_state_refused_once_state_exists(tmp_path: Path) -> None:
    # hashicorp/terraform#21785: the check must not be skipped when there was no state.
    store = LocalStateStore(tmp_path / "s.json")
    empty = store.read()
    plan = make_plan(DesiredState(chats=()), empty)
    assert plan.state_lineage is None
    check_applicable(plan, empty, URL)
    check_applicable(plan, LocalStateStore(tmp_path / "s.json").read(), URL)
    store.write(empty)
    with pytest.raises(PlanError, match="no state existed"):
        check_applicable(plan, store.read(), URL)


def test_plan_refused_for_another_lineage_or_missing_state(tmp_path: Path) -> None:
    _, state = stored_state(tmp_path)
    plan = make_plan(DesiredState(chats=()), state)
    other = State(serial=state.serial, exists=True)
    with pytest.raises(PlanError, match="another state"):
        check_applicable(plan, other, URL)
    with pytest.raises(PlanError, match="no state now"):
        check_applicable(plan, State(), URL)


def test_plan_refused_for_another_graph_or_tool_version(tmp_path: Path) -> None:
    _, state = stored_state(tmp_path)
    plan = make_plan(DesiredState(chats=()), state)
    with pytest.raises(PlanError, match="made for Graph at"):
        check_applicable(plan, state, "https://graph.microsoft.us/v1.0")
    with pytest.raises(PlanError, match=r"made by provision 0\.0\.1"):
        check_applicable(dataclasses.replace(plan, tool_version="0.0.1"), state, URL)


def test_lifecycle_fields_round_trip(tmp_path: Path) -> None:
    from dataclasses import replace

    from provisioner.models import Move

    state = State(serial=2, exists=True)
    members = (MemberRecord(A, membership_id="m-a"), MemberRecord(B, membership_id="m-b"))
    state.put_chat("old", ChatRecord("19:old", "group", members, topic="T"))
    chats = (Chat("new", "group", (Member(A), Member(B), Member("c@x.com")), "T", protect=True,
                  history="all"),)  # fmt: skip
    live = {"old": LiveChat("19:old", "group", topic="Renamed", members=())}
    desired = DesiredState(chats=chats, moves=(Move("old", "new"),))
    plan = replace(make_plan(desired, state, live=live), users={"c@x.com": "oid-c"})
    (change,) = plan.changes
    assert change.moved_from == "old" and change.protect_change == (False, True)
    assert change.history == "all"
    assert plan.drift[0].record is not None and plan.drift[0].record.topic == "Renamed"
    save_plan(plan, tmp_path / "p")
    assert load_plan(tmp_path / "p") == plan
    only_drift = replace(plan, changes=(), refresh_only=True)
    save_plan(only_drift, tmp_path / "r")
    loaded = load_plan(tmp_path / "r")
    assert loaded == only_drift and loaded.has_changes  # drift: something to record
    assert not replace(only_drift, drift=()).has_changes


@pytest.mark.parametrize(
    "serial, what",
    [("7" * 5000, "digits"), ("NaN", "NaN"), ("-3", "out of range"), ("1e400", "out of range")],
)
def test_plan_file_with_hostile_numbers_is_refused_clearly(
    tmp_path: Path, serial: str, what: str
) -> None:
    path = tmp_path / "p.plan"
    save_plan(rich_plan(), path)
    text = path.read_text()
    document = json.loads(text)
    payload = document["plan"]
    payload["state"]["serial"] = "__SERIAL__"
    from provisioner.plans.files import plan_digest

    raw = json.dumps({**document, "plan": payload})
    # The digest is recomputed as a forger would, so only the number check can refuse it.
    if what == "out of range":
        payload["state"]["serial"] = json.loads(serial)
        document = {**document, "plan": payload, "digest": plan_digest(payload)}
        raw = json.dumps(document)
    else:
        raw = raw.replace('"__SERIAL__"', serial)
    path.write_text(raw)
    with pytest.raises(PlanError, match=r"not a provision plan file|modified") as err:
        load_plan(path)
    assert "Traceback" not in str(err.value)


def test_deeply_nested_plan_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "p.plan"
    path.write_text('{"kind": "provision-plan", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(PlanError, match="nested too deeply"):
        load_plan(path)
