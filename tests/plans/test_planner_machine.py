"""The planner as a state machine (issue 21): manifests change one after another (group and
one-on-one chats, protection, ``moved:`` entries, UPN and external members), each is planned
and applied in full or cut short (a killed run); after any full apply, planning the same
manifest again has nothing to do and the state manages exactly the manifest's keys.
"""

from __future__ import annotations

import dataclasses

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from provisioner.errors import PlanError
from provisioner.models import Chat, DesiredState, Member, Move, one_on_one_key
from provisioner.operations.apply import record_plan_facts
from provisioner.plans.planner import make_plan
from provisioner.plans.types import Action, Change
from provisioner.states.records import ChatRecord, State

USERS = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(1, 7)]
UPNS = ["ann@contoso.com", "bob@contoso.com"]
TENANT = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"
KEYS = ["a", "b", "c", "d"]

members = st.lists(
    st.sampled_from(USERS + UPNS).flatmap(
        lambda user: st.builds(
            Member,
            user=st.just(user),
            role=st.just("owner") if "@" in user else st.sampled_from(["owner", "guest"]),
            tenant_id=st.none() if "@" in user else st.sampled_from([None, TENANT]),
        )
    ),
    min_size=2,
    max_size=4,
    unique_by=lambda m: m.user,
).map(lambda ms: tuple(dataclasses.replace(m, role="owner") if m.tenant_id else m for m in ms))
groups = st.builds(
    Chat,
    key=st.sampled_from(KEYS),
    chat_type=st.just("group"),
    members=members,
    topic=st.sampled_from(["One", "Two", None]),
    protect=st.booleans(),
)
pairs = st.lists(st.sampled_from(USERS), min_size=2, max_size=2, unique=True).map(
    lambda p: Chat(
        key=one_on_one_key(*p), chat_type="oneOnOne", members=(Member(p[0]), Member(p[1]))
    )
)


class PlannerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = State(serial=1, exists=True)
        self.desired = DesiredState(chats=())
        self.prune = False
        self.ids = 0

    @rule(
        chats=st.lists(groups | pairs, max_size=5, unique_by=lambda c: c.key),
        moves=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(KEYS)), max_size=1),
        prune=st.booleans(),
    )
    def new_manifest(self, chats: list[Chat], moves: list[tuple[str, str]], prune: bool) -> None:
        moved = tuple(Move(a, b) for a, b in moves if a != b)
        wanted = {c.key for c in chats}
        moved = tuple(m for m in moved if m.to_key in wanted and m.from_key not in wanted)
        self.desired = DesiredState(
            chats=tuple(sorted(chats, key=lambda c: c.key)), digest="sha256:x", moves=moved
        )
        self.prune = prune

    @rule(users=st.booleans())
    def resolve_upns(self, users: bool) -> None:
        """What ``graph.users`` fills in before planning: each UPN's object id."""
        if users:
            self.state.put_users({u: f"{n:08x}-1111-4000-8000-000000000000"
                                  for n, u in enumerate(UPNS)})  # fmt: skip

    @rule(cut=st.integers(0, 6))
    def apply_cut_short(self, cut: int) -> None:
        self._apply(cut)

    @rule()
    def apply(self) -> None:
        if not self._apply(None):
            return
        again = make_plan(self.desired, self.state, prune=self.prune)
        assert not again.has_changes, [c.to_dict() for c in again.changes]
        assert set(self.state.chats) == {c.key for c in self.desired.chats}
        assert {k for k in self.state.protected if k in self.state.chats} == {
            c.key for c in self.desired.chats if c.protect
        }

    @precondition(lambda self: self.state.chats)
    @rule(data=st.data())
    def deleted_outside(self, data: st.DataObject) -> None:
        """Someone removes a chat from the state by hand (``state rm``)."""
        self.state.remove_chat(data.draw(st.sampled_from(sorted(self.state.chats))))

    def _apply(self, cut: int | None) -> bool:
        try:
            plan = make_plan(self.desired, self.state, prune=self.prune)
        except PlanError:
            return False  # refused as a whole: nothing changes
        record_plan_facts(plan, self.state)
        changes = [c for c in plan.changes if c.action is not Action.NOOP]
        for change in changes[:cut]:
            self._do(change)
        return True

    def _do(self, change: Change) -> None:
        """What the executor records once Graph did the change."""
        if change.action in (Action.CREATE, Action.UPDATE):
            self.ids += 1
            members = tuple(
                dataclasses.replace(m, membership_id=m.membership_id or f"mem-{self.ids}-{i}")
                for i, m in enumerate(change.members)
            )
            chat_id = change.chat_id or f"19:{self.ids}@thread.v2"
            record = ChatRecord(chat_id, change.chat_type, members, topic=change.topic)
            self.state.put_chat(change.key, record)
        elif change.action in (Action.DELETE, Action.FORGET):
            self.state.remove_chat(change.key)


PlannerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=12, deadline=None)
test_planner_machine = PlannerMachine.TestCase
