"""The executor against the in-process emulator (and a few fakes): every action, the journal,
reconciliation, failure isolation, interleaving of chats, stopping."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from provisioner.apply.control import ApplyListener, RequestStats, StopSignal
from provisioner.apply.executor import ApplyOptions, Executor
from provisioner.apply.results import ApplyResult, Outcome
from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.graph.errors import GraphPermissionError
from provisioner.graph.pacing import CHAT, CHAT_MEMBERS, Pacer
from provisioner.models import Chat, DesiredState, Member, one_on_one_key
from provisioner.operations.clients import EmulatorToken
from provisioner.plans.planner import make_plan
from provisioner.plans.types import Action
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.local import LocalStateStore
from provisioner.states.records import Intent, MemberRecord, State
from provisioner.states.store import local_store

A, B, C, D, E = (str(uuid.UUID(int=n)) for n in range(1, 6))
FAST = {CHAT: 50.0, CHAT_MEMBERS: 50.0}  # per-chat limits sped up, so tests take no minutes


def group(key: str, *users: str, topic: str | None = "Topic", guest: str = "") -> Chat:
    members = tuple(Member(u, "guest" if u == guest else "owner") for u in users)
    return Chat(key=key, chat_type="group", members=members, topic=topic)


def pair(a: str, b: str) -> Chat:
    return Chat(key=one_on_one_key(a, b), chat_type="oneOnOne", members=(Member(a), Member(b)))


def desired(*chats: Chat) -> DesiredState:
    return DesiredState(chats=tuple(sorted(chats, key=lambda c: c.key)), digest="sha256:t")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    # Made-up users (A..E); the listing lag is off, since these tests are about the executor:
    # the ambiguous-creation tests below start their own emulator with a lag.
    with EmulatorServer(limits="off", seed=7, invent_users=True, list_delay_s=0) as s:
        yield s
        assert s.tenant.counters.internal_errors_total == 0, s.last_internal_error


class Recorder(ApplyListener):
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()

    def finished(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)


def run(
    server: EmulatorServer,
    want: DesiredState,
    state_path: Path,
    *,
    prune: bool = False,
    listener: ApplyListener | None = None,
    stop: StopSignal | None = None,
    max_rps: float | None = None,
    limits: dict[str, float] | None = None,
    concurrency: int = 8,
    client: Any = None,
    window: float = 0.5,
) -> tuple[ApplyResult, State]:
    store = local_store(str(state_path))
    state = store.read()
    plan = make_plan(want, state, prune=prune, graph_url=server.url)
    stop = stop or StopSignal()
    stats = RequestStats()
    pacer = Pacer(limits if limits is not None else FAST, max_rps=max_rps, sleep=stop.sleep)
    if client is None:
        client = GraphClient(server.url, EmulatorToken(), pacer=pacer, on_event=stats)
    with JournalWriter(store, state).running() as writer:
        executor = Executor(
            plan,
            client,
            writer,
            options=ApplyOptions(concurrency=concurrency, consistency_window_s=window, tick_s=0.02),
            listener=listener,
            stats=stats,
            stop=stop,
            pacer=pacer,
        )
        result = executor.run()
    return result, local_store(str(state_path)).read()


def live(server: EmulatorServer, chat_id: str) -> tuple[str | None, dict[str, str]]:
    """Topic and {user id: role} of a chat, from the emulator's side."""
    chat = server.tenant.chat(chat_id)
    assert chat is not None and not chat.is_deleted
    return chat.topic, {m.user_id: m.roles[0] for m in chat.members}


def test_creates_chats_and_records_each_before_reporting_it(
    server: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    seen_durable: list[bool] = []

    class CheckDurable(ApplyListener):
        def finished(self, outcome: Outcome) -> None:
            # Durable: in the state file or in its journal (what the next run reads).
            seen_durable.append(outcome.key in local_store(str(path)).read().chats)

    want = desired(group("team", A, B, C, topic="Team"), pair(A, B), pair(C, D))
    result, state = run(server, want, path, listener=CheckDurable())
    assert result.counts["created"] == 3 and result.complete
    assert seen_durable == [True, True, True]
    assert state.intents == {}
    assert live(server, state.chats["team"].chat_id) == (
        "Team",
        {A: "owner", B: "owner", C: "owner"},
    )
    assert server.tenant.counters.chats_created_total == 3
    assert not make_plan(want, state, graph_url=server.url).has_changes
    assert state.last_plan_id == result.plan_id


def test_group_creation_is_journaled_before_the_post(
    server: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    journaled: list[dict[str, Any]] = []

    class Spy(GraphClient):
        def create_chat(self, body: Any, *, idempotent: bool) -> dict[str, Any]:
            if body["chatType"] == "group":  # the oneOnOne runs alongside; it may see g's intent
                durable = local_store(str(path)).read()  # what the next run reads: state + journal
                journaled.append({k: i.to_dict() for k, i in durable.intents.items()})
            return super().create_chat(body, idempotent=idempotent)

    client = Spy(server.url, EmulatorToken(), pacer=Pacer())
    result, state = run(
        server, desired(group("g", A, B, topic="G"), pair(A, B)), path, client=client
    )
    assert result.complete
    group_intents = [i for i in journaled if i]
    assert len(group_intents) == 1
    intent = group_intents[0]["g"]
    assert intent["topic"] == "G" and [m["user"] for m in intent["members"]] == [A, B]
    assert intent["attempt_id"] and intent["started_at"]
    assert state.intents == {}


def test_updates_topic_members_and_roles(server: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    run(server, desired(group("g", A, B, C, topic="Old")), path)
    # B leaves, D joins, the topic changes (a role change is refused at plan time, issue 22);
    # and B's membership id is not in
    # state (an imported chat), so apply reads the members first.
    store = LocalStateStore(path)
    state = store.read()
    rec = state.chats["g"]
    state.put_chat(
        "g",
        type(rec)(
            rec.chat_id,
            rec.chat_type,
            tuple(
                MemberRecord(m.user, m.role, m.object_id, m.tenant_id, None) for m in rec.members
            ),
            rec.topic,
            rec.created_at,
        ),
    )
    store.write(state)
    want = desired(group("g", A, C, D, topic="New"))
    result, state = run(server, want, path)
    assert result.counts["updated"] == 1 and result.complete, result.outcomes
    topic, members = live(server, state.chats["g"].chat_id)
    assert topic == "New"
    assert members == {A: "owner", C: "owner", D: "owner"}
    assert not make_plan(want, state, graph_url=server.url).has_changes
    assert all(m.membership_id for m in state.chats["g"].members)


def test_member_changes_of_many_chats_are_interleaved(
    server: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    keys = [f"g{n}" for n in range(4)]
    run(server, desired(*(group(k, A, B, topic=k) for k in keys)), path)
    order: list[str] = []

    class Spy(GraphClient):
        def add_member(self, chat_id: str, body: Any) -> dict[str, Any]:
            order.append(chat_id)
            return super().add_member(chat_id, body)

    stop = StopSignal()
    # Two member changes per chat, at most 4 per second per chat, one worker: a worker that
    # waited out each chat's limit would do chat by chat; interleaving serves the others.
    limits = {CHAT: 50.0, CHAT_MEMBERS: 4.0}
    client = Spy(server.url, EmulatorToken(), pacer=Pacer(limits, sleep=stop.sleep))
    want = desired(*(group(k, A, B, C, D, topic=k) for k in keys))
    result, state = run(server, want, path, client=client, concurrency=1, limits=limits, stop=stop)
    assert result.complete
    assert len(order) == 8
    assert set(order[:4]) == {state.chats[k].chat_id for k in keys}, order


def test_one_chat_failing_does_not_stop_the_others(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    guest = "guest@fabrikam.com"
    users.write_text(
        json.dumps(
            [{"id": u, "userPrincipalName": f"u{n}@contoso.com"} for n, u in enumerate((A, B, C))]
            + [{"id": D, "userPrincipalName": guest, "userType": "Guest"}]
        )
    )
    with EmulatorServer(limits="off", users=users) as server:
        # D is an in-tenant guest: Graph answers 400 unless the role is guest.
        want = desired(
            group("bad", A, D, topic="Bad"), group("good", A, B, topic="Good"), pair(B, C)
        )
        result, state = run(server, want, tmp_path / "state.json")
    failed = result.failed
    assert [o.key for o in failed] == ["bad"]
    error = failed[0].error
    assert error is not None and error.status == 400 and error.code == "BadRequest"
    assert "guest" in error.message and error.request_id and error.client_request_id
    assert result.counts["created"] == 2 and result.stopped is None
    assert set(state.chats) == {"good", one_on_one_key(B, C)}
    assert state.intents == {}  # the 400 means Graph made nothing: no journal entry is left


@pytest.mark.parametrize("fault", ["504", "drop"])
def test_ambiguous_group_creations_are_looked_up_not_repeated(tmp_path: Path, fault: str) -> None:
    faults = [f"{fault}=1.0,method=POST,path=/chats,chat-type=group"]
    # Graph lists a new chat late: here 0.2-1 s, inside a 3 s consistency window.
    lag = (0.2, 1.0)
    with EmulatorServer(
        limits="off", faults=faults, seed=3, invent_users=True, list_delay_s=lag
    ) as server:
        want = desired(*(group(f"g{n}", A, B, C, topic=f"T{n}") for n in range(5)), pair(A, B))
        result, state = run(server, want, tmp_path / "state.json", window=3.0)
        assert result.counts["adopted"] == 5 and result.counts["created"] == 1, result.outcomes
        assert server.tenant.duplicate_group_chats() == []
        assert server.tenant.counters.post_chats_total == 6  # never a second POST
        for n in range(5):
            (found,) = server.tenant.find_chats(chat_type="group", topic=f"T{n}")
            assert state.chats[f"g{n}"].chat_id == found.id
    assert state.intents == {}
    assert result.lookups == 5 and result.lookup_requests >= 5
    assert 0 < result.settle_seconds <= 5 * 3.0
    assert not make_plan(want, state, graph_url="x").has_changes


def test_a_creation_is_repeated_only_after_the_window_found_nothing(
    server: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    # A run killed right after journaling: its POST never reached Graph.
    state_with_intents(path, leftover("lost", A, C, topic="Lost", ago=0.0))
    want = desired(group("lost", A, C, topic="Lost"))
    started = time.monotonic()
    result, state = run(server, want, path, window=1.5)
    (outcome,) = result.outcomes
    assert outcome.status == "created" and time.monotonic() - started >= 1.4
    assert result.lookups == 1 and result.lookup_requests >= 3  # spread over the window
    assert len(server.tenant.find_chats(topic="Lost")) == 1 and state.intents == {}


def test_other_chats_go_on_while_a_creation_settles(tmp_path: Path) -> None:
    faults = ["504=1.0,method=POST,path=/chats,chat-type=group"]
    with EmulatorServer(
        limits="off", faults=faults, seed=5, invent_users=True, list_delay_s=1.0
    ) as server:
        want = desired(group("g", A, B, C, topic="G"), *(pair(A, u) for u in (B, C, D, E)))
        done: list[tuple[str, float]] = []
        started = time.monotonic()

        class Times(ApplyListener):
            def finished(self, outcome: Outcome) -> None:
                done.append((outcome.key, time.monotonic() - started))

        result, _ = run(server, want, tmp_path / "s.json", window=4.0, listener=Times())
        assert result.counts["adopted"] == 1 and result.counts["created"] == 4
        last_pair = max(t for k, t in done if k != "g")
        assert last_pair < dict(done)["g"]  # the pairs did not wait for the group to settle
        assert server.tenant.duplicate_group_chats() == []


def leftover(key: str, *users: str, topic: str, ago: float = 60.0) -> Intent:
    started = datetime.now(timezone.utc) - timedelta(seconds=ago)
    return Intent(
        key=key,
        chat_type="group",
        members=tuple(MemberRecord(u, object_id=u) for u in users),
        attempt_id="killed-run",
        started_at=started.isoformat(timespec="milliseconds"),
        topic=topic,
    )


def state_with_intents(path: Path, *intents: Intent) -> None:
    store = LocalStateStore(path)
    state = store.read()
    for intent in intents:
        state.put_intent(intent)
    store.write(state)


def post_group(server: EmulatorServer, topic: str, *users: str) -> str:
    client = GraphClient(server.url, EmulatorToken())
    chat = client.create_chat(
        group("x", *users, topic=topic).request_body(server.url), idempotent=False
    )
    return str(chat["id"])


def test_leftover_intents_are_reconciled_at_the_start_of_a_run(
    server: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    made = post_group(server, "Made", A, B, C)  # a killed run's POST that went through
    first = post_group(server, "Twice", A, B)  # ... and one whose chat exists twice
    second = post_group(server, "Twice", A, B)
    state_with_intents(
        path,
        leftover("made", A, B, C, topic="Made"),
        leftover("lost", A, C, topic="Lost"),  # a POST that never reached Graph
        leftover("twice", A, B, topic="Twice"),
        leftover("gone", A, D, topic="Gone"),  # no longer in the manifest
    )
    want = desired(
        group("made", A, B, C, topic="Made"),
        group("lost", A, C, topic="Lost"),
        group("twice", A, B, topic="Twice"),
    )
    plan = make_plan(want, LocalStateStore(path).read(), graph_url=server.url)
    assert {c.key: c.action for c in plan.changes} == dict.fromkeys(
        ("gone", "lost", "made", "twice"), Action.RECONCILE
    )
    result, state = run(server, want, path)
    by_key = {o.key: o for o in result.outcomes}
    assert by_key["made"].status == "adopted" and by_key["made"].chat_id == made
    assert by_key["lost"].status == "created"
    assert by_key["twice"].status == "adopted" and by_key["twice"].chat_id == first
    assert by_key["twice"].duplicates == (second,)
    assert by_key["gone"].status == "forgotten"
    assert state.intents == {} and set(state.chats) == {"made", "lost", "twice"}
    assert server.tenant.chat(second) is not None  # never deleted
    assert len(server.tenant.find_chats(topic="Lost")) == 1
    assert not make_plan(want, state, graph_url=server.url).has_changes


def test_an_old_chat_with_the_same_members_is_not_adopted(
    server: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    old = post_group(server, "Same", A, B)
    # The journal says the creation started an hour after that chat was made.
    state_with_intents(path, leftover("same", A, B, topic="Same", ago=-3600))
    result, state = run(server, desired(group("same", A, B, topic="Same")), path)
    assert result.outcomes[0].status == "created"
    assert state.chats["same"].chat_id != old


def test_delete_with_prune_and_forget_without(server: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    run(server, desired(group("a", A, B, topic="A"), group("b", A, C, topic="B")), path)
    ids = {k: r.chat_id for k, r in LocalStateStore(path).read().chats.items()}
    result, state = run(server, desired(group("b", A, C, topic="B")), path, prune=True)
    assert [(o.key, o.status) for o in result.outcomes] == [("a", "deleted")]
    deleted = server.tenant.chat(ids["a"])
    assert deleted is not None and deleted.is_deleted  # soft delete
    result, state = run(server, desired(), path)
    assert [(o.key, o.status) for o in result.outcomes] == [("b", "forgotten")]
    assert state.chats == {}
    kept = server.tenant.chat(ids["b"])
    assert kept is not None and not kept.is_deleted


def test_a_stop_starts_no_new_work_and_keeps_what_was_done(
    server: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    stop = StopSignal()

    class StopAfterThree(Recorder):
        def finished(self, outcome: Outcome) -> None:
            super().finished(outcome)
            if len(self.outcomes) == 3:
                stop.set("SIGINT")

    listener = StopAfterThree()
    want = desired(
        *(pair(A, u) for u in (B, C, D, E)), *(group(f"g{n}", B, C, topic=str(n)) for n in range(8))
    )
    # 4 writes per second: most requests are waiting for their turn when the stop comes.
    result, state = run(server, want, path, listener=listener, stop=stop, max_rps=4.0, limits={})
    assert result.stopped == "SIGINT"
    done = [o for o in result.outcomes if o.status in ("created", "adopted")]
    assert len(done) >= 3
    assert result.counts["skipped"] + result.counts["interrupted"] == 12 - len(done)
    assert set(state.chats) == {o.key for o in done}
    # A creation that waited for its turn was never sent, so its journal entry is gone too.
    assert state.intents == {}
    assert server.tenant.counters.chats_created_total == len(done)


class Forbidden:
    """A Graph that refuses every creation with 403, as without Chat.Create."""

    def __init__(self) -> None:
        self.calls = 0

    def create_chat(self, body: Any, *, idempotent: bool) -> dict[str, Any]:
        self.calls += 1
        raise GraphPermissionError(
            "Missing role permissions on the request.",
            status=403,
            code="Forbidden",
            method="POST",
            path="/chats",
            request_id="rid",
            client_request_id="crid",
            permission="Chat.Create",
            hint="this call needs the Microsoft Graph permission Chat.Create",
        )

    def graph_now(self) -> None:  # Graph's time (issue 20): this Graph never says
        return None

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call {name}")


def test_a_permission_error_stops_the_run_early(server: EmulatorServer, tmp_path: Path) -> None:
    client = Forbidden()
    want = desired(*(group(f"g{n}", A, B, topic=str(n)) for n in range(20)))
    result, state = run(server, want, tmp_path / "state.json", client=client, concurrency=2)
    assert result.stopped == "GraphPermissionError"
    assert result.stop_error is not None and result.stop_error.permission == "Chat.Create"
    assert client.calls <= 2
    assert result.counts["failed"] == client.calls
    assert result.counts["skipped"] == 20 - client.calls
    assert state.intents == {} and state.chats == {}


def test_dropping_a_topic_from_the_manifest_keeps_the_chats_topic(
    server: EmulatorServer, tmp_path: Path
) -> None:
    # Graph documents no way to clear a group chat's topic (chat-patch.md), so the planner
    # leaves it alone instead of planning a change that could never be applied.
    path = tmp_path / "state.json"
    run(server, desired(group("g", A, B, topic="Kept"), group("h", A, C, topic="H")), path)
    want = desired(group("g", A, B, topic=None), group("h", A, C, topic="H2"))
    result, state = run(server, want, path)
    by_key = {o.key: o for o in result.outcomes}
    assert "g" not in by_key or by_key["g"].status != "failed"
    assert by_key["h"].status == "updated"
    assert state.chats["g"].topic == "Kept"
    (chat,) = server.tenant.find_chats(chat_type="group", topic="Kept")
    assert chat.id == state.chats["g"].chat_id


def test_a_lookup_throttled_mid_window_is_followed_by_the_next(tmp_path: Path) -> None:
    from provisioner.graph.errors import ThrottledError

    class Flaky(GraphClient):
        failed = 0

        def list_user_chats(self, user_id: str, **kw: Any) -> Any:
            if Flaky.failed < 2:  # the first two lookups are throttled past the retry budget
                Flaky.failed += 1
                raise ThrottledError("throttled", status=429, code="TooManyRequests")
            return super().list_user_chats(user_id, **kw)

    faults = ["504=1.0,method=POST,path=/chats,chat-type=group"]
    with EmulatorServer(
        limits="off", faults=faults, seed=3, invent_users=True, list_delay_s=0.2
    ) as server:
        client = Flaky(server.url, EmulatorToken())
        want = desired(group("g", A, B, C, topic="G"))
        result, state = run(server, want, tmp_path / "s.json", window=2.0, client=client)
        assert [o.status for o in result.outcomes] == ["adopted"] and Flaky.failed == 2
        assert server.tenant.counters.post_chats_total == 1 and state.intents == {}


def test_lookups_fall_back_when_graph_refuses_the_filter(tmp_path: Path) -> None:
    # Every group creation times out after Graph made the chat, and this Graph refuses the
    # undocumented `topic eq` / `chatType eq` filters of List chats with a 400.
    faults = ["504=1.0,method=POST,path=/chats,chat-type=group"]
    with EmulatorServer(
        limits="off", faults=faults, seed=3, invent_users=True, list_delay_s=0.2,
        chat_filters=(),
    ) as server:  # fmt: skip
        want = desired(group("t", A, B, C, topic="T"), group("u", A, B, C, topic=None))
        result, state = run(server, want, tmp_path / "state.json", window=2.0)
        assert result.counts["adopted"] == 2, result.outcomes
        assert server.tenant.duplicate_group_chats() == []
        assert server.tenant.counters.post_chats_total == 2
    assert all("Graph refused $filter" in " ".join(o.notes) for o in result.outcomes)
    assert state.intents == {} and set(state.chats) == {"t", "u"}
