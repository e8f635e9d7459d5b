"""The journal as a state machine (issue 21): a run's changes, compactions on its schedule,
clean ends, kills, and kills in the middle of an append (a torn or garbled last record),
checked against a model (a dict of what each change reported durable said).

After every kill, the next read (``JournaledStore.read``: the state plus its journal replayed)
must give exactly the model: every change whose ``update`` returned, nothing of a torn one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from state_strategies import chats, intents, keys, texts, view

from provisioner.states.journal_writer import JournalWriter
from provisioner.states.records import State
from provisioner.states.store import local_store


class JournalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A kill keeps what reached the page cache: fsync only costs time here.
        self.patches = pytest.MonkeyPatch()
        self.patches.setattr(os, "fsync", lambda fd: None)
        self.patches.setattr(os, "fdatasync", lambda fd: None, raising=False)
        self.dir = tempfile.mkdtemp(prefix="journal-machine-")
        self.path = os.path.join(self.dir, "s.json")
        self.now = 0.0
        self.model: dict[str, Any] = _plain(State())
        self.last: tuple[int, int, dict[str, Any]] | None = None  # the last append, undoable
        self._start()

    # -- the run --------------------------------------------------------------------------

    def _start(self) -> None:
        self.store = local_store(self.path)
        state = self.store.read()
        assert _plain(state) == self.model
        self.writer = JournalWriter(self.store, state, every_s=10.0, clock=lambda: self.now)
        self.writer.start()
        self.last = None

    def _size(self) -> int:
        try:
            return os.path.getsize(self.store.journal.location)
        except FileNotFoundError:
            return 0

    def _change(self, fn: Any) -> None:
        before, size, compactions = _copy(self.model), self._size(), self.writer.compactions
        self.writer.update(fn)
        fn_model = State(
            chats=dict(self.model["chats_obj"]),
            intents=dict(self.model["intents_obj"]),
            users=dict(self.model["users"]),
            protected=set(self.model["protected"]),
            last_plan_id=self.model["last_plan_id"],
        )
        fn(fn_model)
        self.model = _plain(fn_model)
        grew = self._size() > size
        self.last = (
            (size, self._size(), before)
            if grew and compactions == self.writer.compactions
            else None
        )

    def _killed(self) -> None:
        self.writer.abandon()  # nothing more is written: the journal stays as it is
        self.store.journal.close()  # type: ignore[attr-defined]
        self._start()

    # -- changes ---------------------------------------------------------------------------

    @rule(key=keys, record=chats)
    def put_chat(self, key: str, record: Any) -> None:
        self._change(lambda s: s.put_chat(key, record))

    @precondition(lambda self: self.model["chats"])
    @rule(data=st.data())
    def remove_chat(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model["chats"])))
        self._change(lambda s: s.remove_chat(key))

    @precondition(lambda self: self.model["chats"])
    @rule(data=st.data(), new=keys)
    def rename_chat(self, data: st.DataObject, new: str) -> None:
        old = data.draw(st.sampled_from(sorted(self.model["chats"])))
        if new in self.model["chats"]:
            return
        self._change(lambda s: s.rename_chat(old, new))

    @precondition(lambda self: self.model["chats"])
    @rule(data=st.data(), on=st.booleans())
    def protect(self, data: st.DataObject, on: bool) -> None:
        key = data.draw(st.sampled_from(sorted(self.model["chats"])))
        self._change(lambda s: s.set_protected(key, on))

    @rule(data=st.data(), key=keys)
    def intent(self, data: st.DataObject, key: str) -> None:
        intent = data.draw(intents(key))
        self._change(lambda s: s.put_intent(intent))

    @precondition(lambda self: self.model["intents"])
    @rule(data=st.data())
    def clear_intent(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model["intents"])))
        self._change(lambda s: s.clear_intent(key))

    @rule(users=st.dictionaries(texts, texts, min_size=1, max_size=2), plan=st.none() | texts)
    def users_and_plan(self, users: dict[str, str], plan: str | None) -> None:
        def both(s: State) -> None:
            s.put_users(users)
            s.set_last_plan(plan)

        self._change(both)

    # -- time, ends and kills ----------------------------------------------------------------

    @rule()
    def compaction_due(self) -> None:
        self.now += 11.0  # the next change compacts after its append

    @rule()
    def clean_end(self) -> None:
        self.writer.close()
        assert not os.path.exists(self.store.journal.location)
        self._start()

    @rule()
    def kill(self) -> None:
        self._killed()

    @precondition(lambda self: self.last is not None)
    @rule(data=st.data())
    def kill_mid_append(self, data: st.DataObject) -> None:
        """Killed while the last append was being written: only part of it is on storage,
        maybe followed by what a filesystem leaves in a torn tail (zeros, old bytes)."""
        assert self.last is not None
        start, end, before = self.last
        cut = data.draw(st.integers(start, end - 1))
        tail = data.draw(st.sampled_from([b"", b"\0" * 8, b"\0" * 64]) | st.binary(max_size=16))
        with open(self.store.journal.location, "r+b") as f:
            f.truncate(cut)
            f.seek(cut)
            f.write(tail)
        self.model = before
        self._killed()

    @invariant()
    def durable_is_what_the_model_says(self) -> None:
        assert _plain(self.writer.state) == self.model

    def teardown(self) -> None:
        self.writer.abandon()
        self.store.journal.close()  # type: ignore[attr-defined]
        shutil.rmtree(self.dir, ignore_errors=True)
        self.patches.undo()


def _plain(state: State) -> dict[str, Any]:
    out = view(state)
    del out["lineage"]
    out["chats_obj"] = dict(state.chats)
    out["intents_obj"] = dict(state.intents)
    return out


def _copy(model: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.copy() if hasattr(v, "copy") else v) for k, v in model.items()}


JournalMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_journal_machine = JournalMachine.TestCase
