"""The operations layer without the command line: the lock helper, ``state rm``, recording what
a plan learned, and a whole apply (and a second one with nothing to do) driven as a library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lib.lifecycle_support import A, L, M, group

from provisioner.emulator import EmulatorServer
from provisioner.errors import ProvisionError, StateError
from provisioner.models import DesiredState, Member
from provisioner.operations.apply import (
    ApplySettings,
    NoHooks,
    record_plan_facts,
    run_apply,
)
from provisioner.operations.clients import EmulatorToken
from provisioner.operations.state import locked, remove_keys
from provisioner.plans.planner import LiveChat, LiveMember, make_plan
from provisioner.plans.types import Plan
from provisioner.states.local import LocalStateStore
from provisioner.states.records import ChatRecord, MemberRecord, State


def test_nothing_under_operations_imports_click_or_prints() -> None:
    package = Path(__file__).parents[2] / "provisioner" / "operations"
    modules = sorted(f"provisioner.operations.{p.stem}" for p in package.glob("[!_]*.py"))
    assert "provisioner.operations.apply" in modules
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + ("print('click' in sys.modules)")
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for path in package.glob("*.py"):
        assert "print(" not in path.read_text(encoding="utf-8"), path


def test_locked_yields_the_state_read_under_the_lock(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "s.json")
    state = store.read()
    state.put_chat("g", ChatRecord("19:g", "group", (MemberRecord(A),)))
    store.write(state)
    with locked(store, "test") as held:
        assert sorted(held.chats) == ["g"]
        assert store.current_lock() is not None
    assert store.current_lock() is None


def test_locked_adds_its_hint_when_the_lock_is_taken(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "s.json")
    with store.lock("apply"), pytest.raises(ProvisionError) as caught:  # noqa: SIM117
        with locked(store, "plan", hint="plan without it"):
            pass
    assert caught.value.hint is not None and caught.value.hint.endswith("; plan without it")


def test_remove_keys_removes_all_or_nothing(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "s.json")
    state = store.read()
    for key in ("a", "b"):
        state.put_chat(key, ChatRecord(f"19:{key}", "group", (MemberRecord(A),)))
    store.write(state)
    with pytest.raises(StateError, match=r"not in the state .*: nope; nothing was removed"):
        remove_keys(store, ["a", "nope"])
    assert sorted(store.read().chats) == ["a", "b"]
    assert remove_keys(store, ["a", "a"]) == [("a", "19:a")]
    assert sorted(LocalStateStore(tmp_path / "s.json").read().chats) == ["b"]


class Recorder(NoHooks):
    def __init__(self) -> None:
        self.reviewed: list[Plan] = []

    def review(self, plan: Plan) -> None:
        self.reviewed.append(plan)


def test_an_apply_runs_without_the_command_line(tmp_path: Path) -> None:
    desired = DesiredState((group("team", "Team", A, M, L), group("pair", None, A, M)))
    state_path = str(tmp_path / "state.json")
    # Made-up users, lists at once: this test is about the operation, not Graph's lag.
    with EmulatorServer(limits="off", seed=5, invent_users=True, list_delay_s=0) as server:
        hooks = Recorder()
        first = run_apply(
            desired, state_path, None, graph_url=server.url, credential=EmulatorToken(),
            hooks=hooks,
        )  # fmt: skip
        assert first.result is not None and first.result.complete
        assert [p.has_changes for p in hooks.reviewed] == [True]
        assert sorted(LocalStateStore(state_path).read().chats) == ["pair", "team"]
        again = run_apply(
            desired, state_path, None, graph_url=server.url, credential=EmulatorToken(),
            settings=ApplySettings(refresh=True), hooks=hooks,
        )  # fmt: skip
        assert again.result is None and not again.plan.has_changes  # nothing ran
        assert len(server.tenant.chats()) == 2


def test_record_plan_facts_persists_what_the_plan_learned() -> None:
    state = State()
    old = ChatRecord("19:a", "group", (MemberRecord(A),), "Old")
    state.put_chat("old-key", old)
    state.put_chat("gone", ChatRecord("19:g", "group", (MemberRecord(A),)))
    from provisioner.models import Chat, Move

    desired = DesiredState(
        (Chat("new-key", "group", (Member(A),), "Old", protect=True),),
        moves=(Move("old-key", "new-key"),),
    )
    live = {
        "old-key": LiveChat("19:a", "group", "Renamed", (LiveMember("oid-a", email=A),)),
        "gone": LiveChat("19:g", gone=True),
    }
    plan: Plan = make_plan(desired, state, live=live)
    assert plan.moves == (("old-key", "new-key"),)
    assert record_plan_facts(plan, state)
    assert sorted(state.chats) == ["new-key"]
    assert state.chats["new-key"].topic == "Renamed"  # the refreshed view
    assert state.protected == {"new-key"}
    assert not record_plan_facts(plan, state)  # a second time changes nothing
