"""Issue 20, item 3: matching an ambiguous creation never depends on the host's clock agreeing
with Graph's. The emulator's clock is set off the host's (``clock_offset_s``: a host clock
10 minutes ahead of Graph is an emulator 10 minutes behind), and the host clock of a rerun
is injected (``Executor(wallclock=...)``): no test sleeps to line events up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from provisioner.apply.control import RequestStats, StopSignal
from provisioner.apply.executor import ApplyOptions, Executor
from provisioner.apply.results import ApplyResult
from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.graph.clock import GraphClock, parse_http_date
from provisioner.graph.pacing import CHAT, CHAT_MEMBERS, Pacer
from provisioner.models import Chat, DesiredState, Member
from provisioner.operations.clients import EmulatorToken
from provisioner.plans.planner import make_plan
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.local import LocalStateStore
from provisioner.states.records import Intent, MemberRecord, State
from provisioner.states.store import local_store

A, B, C = (str(uuid.UUID(int=0x4000 + n)) for n in range(3))
FAST = {CHAT: 50.0, CHAT_MEMBERS: 50.0}
TEN_MINUTES = 600.0


def group(key: str, topic: str) -> Chat:
    return Chat(key=key, chat_type="group", members=(Member(A), Member(B), Member(C)), topic=topic)


def desired(*chats: Chat) -> DesiredState:
    return DesiredState(chats=tuple(sorted(chats, key=lambda c: c.key)), digest="sha256:t")


def run(
    server: EmulatorServer,
    want: DesiredState,
    path: Path,
    *,
    window: float,
    wallclock: Callable[[], float] = time.time,
) -> tuple[ApplyResult, State]:
    store = local_store(str(path))
    state = store.read()
    plan = make_plan(want, state, graph_url=server.url)
    stop, stats = StopSignal(), RequestStats()
    pacer = Pacer(FAST, sleep=stop.sleep)
    client = GraphClient(server.url, EmulatorToken(), pacer=pacer, on_event=stats)
    with JournalWriter(store, state).running() as writer:
        options = ApplyOptions(concurrency=4, consistency_window_s=window, tick_s=0.02)
        executor = Executor(
            plan, client, writer, options=options, stats=stats, stop=stop, pacer=pacer,
            wallclock=wallclock,
        )  # fmt: skip
        result = executor.run()
    client.close()
    return result, local_store(str(path)).read()


# -- Graph's clock --------------------------------------------------------------------------


def test_graph_time_is_the_last_date_carried_forward_on_the_monotonic_clock() -> None:
    ticks = [100.0]
    clock = GraphClock(lambda: ticks[0])
    assert clock.now() is None
    clock.observe("not a date")
    assert clock.now() is None
    clock.observe("Mon, 07 Dec 2026 13:00:00 GMT")
    ticks[0] += 90.5  # the host's wall clock may jump meanwhile; the monotonic one does not
    assert clock.now() == datetime(2026, 12, 7, 13, 1, 30, 500000, tzinfo=timezone.utc)
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") is not None
    assert parse_http_date("x" * 100) is None and parse_http_date(None) is None


def test_asking_for_graph_time_sends_one_request_however_many_ask() -> None:
    asked: list[int] = []
    clock = GraphClock(time.monotonic)

    def ask() -> None:
        asked.append(1)
        clock.observe("Mon, 07 Dec 2026 13:00:00 GMT")

    assert clock.now(ask=ask) is not None and clock.now(ask=ask) is not None
    assert asked == [1]
    silent = GraphClock(time.monotonic)  # a server that sends no Date: asked once only
    assert silent.now(ask=lambda: asked.append(2)) is None
    assert silent.now(ask=lambda: asked.append(2)) is None
    assert asked == [1, 2]


@pytest.mark.parametrize("offset", [TEN_MINUTES, -TEN_MINUTES])
def test_the_emulator_dates_its_answers_and_chats_on_its_own_clock(offset: float) -> None:
    with EmulatorServer(limits="off", invent_users=True, clock_offset_s=offset) as server:
        answer = requests.get(f"{server.url}/organization", headers={"Authorization": "Bearer x"})
        client = GraphClient(server.url, EmulatorToken())
        graph_now = client.graph_now()
        client.close()
    date = parse_http_date(answer.headers["Date"])
    assert date is not None and graph_now is not None
    host = datetime.now(timezone.utc)
    assert abs((date - host).total_seconds() - offset) < 5
    assert abs((graph_now - host).total_seconds() - offset) < 5


# -- ambiguous creations under a skewed host clock ------------------------------------------


@pytest.mark.parametrize(
    "graph_offset", [-TEN_MINUTES, TEN_MINUTES], ids=["host-ahead", "host-behind"]
)
def test_a_host_clock_ten_minutes_off_graph_makes_no_duplicate(
    tmp_path: Path, graph_offset: float
) -> None:
    # Every group creation times out after Graph made the chat; Graph lists it 0.2-1 s later.
    faults = ["504=1.0,method=POST,path=/chats,chat-type=group"]
    with EmulatorServer(
        limits="off", faults=faults, seed=4, invent_users=True, list_delay_s=(0.2, 1.0),
        clock_offset_s=graph_offset,
    ) as server:  # fmt: skip
        want = desired(*(group(f"g{n}", f"T{n}") for n in range(5)))
        result, state = run(server, want, tmp_path / "state.json", window=3.0)
        assert server.tenant.duplicate_group_chats() == []
        assert server.tenant.counters.post_chats_total == 5
        assert result.counts["adopted"] == 5, result.outcomes
    assert state.intents == {} and len(state.chats) == 5


# -- a clock jump between a killed run and its rerun ----------------------------------------


def killed_run_intent(server: EmulatorServer, *, graph_time: bool) -> Intent:
    """The intent a run killed right after its POST left (the host's time, and Graph's as
    its answers told it; a state written before issue 20 has no Graph time)."""
    graph_now = datetime.fromtimestamp(server.tenant.now(), tz=timezone.utc)
    return Intent(
        key="g",
        chat_type="group",
        members=tuple(MemberRecord(u, object_id=u) for u in (A, B, C)),
        attempt_id="killed-run",
        started_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        topic="Killed",
        **(
            {"graph_started_at": graph_now.isoformat(timespec="milliseconds")} if graph_time else {}
        ),
    )


@pytest.mark.parametrize("jump", [2 * 3600.0, -2 * 3600.0], ids=["forward", "backward"])
@pytest.mark.parametrize("graph_time", [True, False], ids=["graph-time", "older-state"])
def test_a_clock_jump_before_the_rerun_does_not_cut_the_lookups_short(
    tmp_path: Path, jump: float, graph_time: bool
) -> None:
    path = tmp_path / "state.json"
    # Graph lists the killed run's chat 1 s after it made it: the first lookup misses it.
    with EmulatorServer(limits="off", seed=9, invent_users=True, list_delay_s=1.0) as server:
        store = LocalStateStore(path)
        state = store.read()
        state.put_intent(killed_run_intent(server, graph_time=graph_time))
        store.write(state)
        poster = GraphClient(server.url, EmulatorToken())
        body = group("g", "Killed").request_body(server.url)
        made = poster.create_chat(body, idempotent=False)["id"]  # the POST that went through
        poster.close()
        result, state = run(
            server, desired(group("g", "Killed")), path, window=3.0,
            wallclock=lambda: time.time() + jump,  # the host's clock jumped since the kill
        )  # fmt: skip
        assert server.tenant.duplicate_group_chats() == []
        assert server.tenant.counters.post_chats_total == 1
    (outcome,) = result.outcomes
    assert outcome.status == "adopted" and outcome.chat_id == made
    assert state.chats["g"].chat_id == made and state.intents == {}
    assert result.lookup_requests >= 2  # looked up more than once: spread over the window
