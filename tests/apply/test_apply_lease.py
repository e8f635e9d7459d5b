"""Issue 20, item 5: a run whose Azure Blob lease was broken (``provision force-unlock``, or the
portal) sends no ``POST /chats`` after the break, and the run that takes over creates each
chat once. Against Azurite (the ``azurite`` session fixture) and the loopback emulator."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lib.azurite_support import ACCOUNT, Azurite

from provisioner.apply.control import ApplyListener, RequestStats, StopSignal
from provisioner.apply.executor import ApplyOptions, Executor
from provisioner.apply.results import ApplyResult, Outcome
from provisioner.emulator import EmulatorServer
from provisioner.errors import LockError
from provisioner.graph.client import GraphClient
from provisioner.graph.pacing import CHAT, CHAT_MEMBERS, Pacer
from provisioner.models import Chat, DesiredState, Member, one_on_one_key
from provisioner.operations.clients import EmulatorToken
from provisioner.plans.planner import make_plan
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.store import JournaledStore

FAST = {CHAT: 50.0, CHAT_MEMBERS: 50.0}
USERS = [str(uuid.UUID(int=n)) for n in range(1, 8)]


def want() -> DesiredState:
    groups = [
        Chat(f"g{i}", "group", tuple(Member(u) for u in USERS[i % 3 : i % 3 + 3]), f"G{i}")
        for i in range(6)
    ]
    pairs = [
        Chat(one_on_one_key(USERS[0], u), "oneOnOne", (Member(USERS[0]), Member(u)))
        for u in USERS[1:4]
    ]
    return DesiredState(chats=tuple(sorted(groups + pairs, key=lambda c: c.key)), digest="t")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(limits="off", seed=3, invent_users=True, list_delay_s=0) as s:
        yield s


@pytest.fixture
def open_store(azurite: Azurite) -> Callable[[], JournaledStore]:
    from provisioner.states.azblob.store import open_azblob_store

    spec = f"azblob://{ACCOUNT}/{azurite.new_container()}/provision.state.json"

    def make() -> JournaledStore:
        inner = open_azblob_store(spec, env=azurite.env)
        return JournaledStore(inner, inner.journal_file())

    return make


class BreakAfter(ApplyListener):
    """Breaks the run's lease (as ``provision force-unlock`` does) once ``after`` chats are
    done, from the thread that finished the last of them, and notes how many chats Graph
    held at that moment."""

    def __init__(self, after: int, unlock: Callable[[], None], server: EmulatorServer) -> None:
        self.after = after
        self.unlock = unlock
        self.server = server
        self.done = 0
        self.at_break: int | None = None
        self.lock = threading.Lock()

    def finished(self, outcome: Outcome) -> None:
        with self.lock:
            self.done += 1
            if self.done == self.after:
                self.unlock()
                self.at_break = len(self.server.tenant.chats())


def apply(
    server: EmulatorServer, store: JournaledStore, listener: ApplyListener | None = None
) -> ApplyResult:
    stop = StopSignal()
    stats = RequestStats()
    pacer = Pacer(FAST, sleep=stop.sleep)
    client = GraphClient(server.url, EmulatorToken(), pacer=pacer, on_event=stats)
    with store.lock("apply"):
        state = store.read()
        plan = make_plan(want(), state, graph_url=server.url)
        with JournalWriter(store, state).running() as writer:
            options = ApplyOptions(concurrency=1, consistency_window_s=0.5, tick_s=0.02)
            executor = Executor(
                plan, client, writer, options=options, listener=listener, stats=stats, stop=stop
            )
            return executor.run()


def created_per_key(server: EmulatorServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for chat in server.tenant.chats():
        name: Any = chat.topic or ",".join(sorted(m.user_id for m in chat.members))
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_a_broken_lease_stops_the_run_before_its_next_creation(
    server: EmulatorServer, open_store: Callable[[], JournaledStore]
) -> None:
    old = open_store()
    rescuer = open_store()

    def force_unlock() -> None:
        holder = rescuer.current_lock()
        assert holder is not None
        rescuer.force_unlock(holder.id)

    listener = BreakAfter(2, force_unlock, server)
    # The executor stops at the first refused creation; the final state write is refused too
    # (the lease is gone), so the run ends in LockError.
    with pytest.raises(LockError, match="lost its lock"):
        apply(server, old, listener)
    # Before: the old run kept creating until its keeper's next renewal (every 5 s and more),
    # here every remaining chat.
    assert listener.at_break is not None
    assert len(server.tenant.chats()) == listener.at_break == 2
    # The run that takes over creates each chat once.
    again = apply(server, open_store())
    assert again.stop_error is None
    counts = created_per_key(server)
    assert len(counts) == len(want().chats) and set(counts.values()) == {1}, counts
