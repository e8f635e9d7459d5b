"""Issue 20, item 9: honest reports. A final state write that fails after chats were made
must say what was made and where it is recorded (never "nothing was changed"), and exit 1;
a read of the state while an apply writes it sees a consistent view (or waits), never an
error inviting to move the journal away."""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.errors import StateError
from provisioner.operations.state import read_unlocked
from provisioner.states.journal import header
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import LockInfo
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.states.store import local_store

USERS = [str(uuid.UUID(int=0x5000 + n)) for n in range(8)]


def manifest(groups: int) -> str:
    lines = ["version: 1", "chats:"]
    for n in range(groups):
        lines += [f"  - key: team-{n}", "    chatType: group", f"    topic: Team {n}"]
        lines += ["    members:", *(f"      - user: {u}" for u in USERS[n : n + 3])]
    return "\n".join(lines) + "\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "PROVISION_")):
            monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with EmulatorServer(limits="off", invent_users=True, list_delay_s=0) as s:
        monkeypatch.setenv("PROVISION_GRAPH_URL", s.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "opaque")
        yield s


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return code, out, err


def test_a_failed_final_state_write_reports_what_was_made_and_where_it_is_recorded(
    workdir: Path,
    server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (workdir / "chats.yaml").write_text(manifest(5))
    real = LocalStateStore.write

    def disk_full_once_chats_exist(self: LocalStateStore, state: State) -> None:
        if state.chats:  # the first write (an empty new state) works; the final one not
            raise self._unwritable(OSError(errno.ENOSPC, "No space left on device"), ".")
        real(self, state)

    monkeypatch.setattr(LocalStateStore, "write", disk_full_once_chats_exist)
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve", "--format", "json")
    assert code == 1, out + err
    assert "nothing was changed" not in out + err
    report = json.loads(out)
    schema = resources.files("provisioner").joinpath("schemas/apply-result.schema.json")
    jsonschema.Draft202012Validator(json.loads(schema.read_text())).validate(report)
    made = {c["key"] for c in report["outcomes"] if c["status"] == "created"}
    assert made == {f"team-{n}" for n in range(5)}, report
    assert report["status"] == "failed" and "journal" in report["unsaved"]["hint"]
    assert "provision.state.json.journal" in err and "5" in err, err
    assert len(server.tenant.chats(include_deleted=False)) == 5

    monkeypatch.setattr(LocalStateStore, "write", real)  # the disk has room again
    code, out, err = run(capsys, "state", "list")
    assert code == 0 and all(f"team-{n}" in out for n in range(5)), out + err
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0 and "No changes" in out + err, out + err
    assert len(server.tenant.chats(include_deleted=False)) == 5  # no duplicate


def test_the_text_report_of_a_failed_final_write_lists_the_chats_made(
    workdir: Path,
    server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (workdir / "chats.yaml").write_text(manifest(3))
    real = LocalStateStore.write

    def disk_full_once_chats_exist(self: LocalStateStore, state: State) -> None:
        if state.chats:
            raise self._unwritable(OSError(errno.ENOSPC, "No space left on device"), ".")
        real(self, state)

    monkeypatch.setattr(LocalStateStore, "write", disk_full_once_chats_exist)
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 1 and "nothing was changed" not in out + err
    assert "3 created" in out, out
    assert "Error:" in err and "journal" in err and "keep" in err, err


def chat(n: int) -> ChatRecord:
    members = tuple(MemberRecord(u, object_id=u) for u in USERS[n : n + 3])
    return ChatRecord(chat_id=f"19:chat{n}@thread.v2", chat_type="group", members=members)


def test_a_read_while_an_apply_compacts_the_state_sees_a_consistent_view(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The running apply: a state at serial 1, its journal holding one more chat, its lock.
    writer = local_store("provision.state.json")
    state = writer.read()
    state.put_chat("team-0", chat(0))
    writer.write(state)
    journaled = state.copy()
    journaled.put_chat("team-1", chat(1))
    writer.journal.reset(header(state.lineage, state.serial))
    real_read = LocalStateStore.read
    compacted: list[int] = []

    def read_then_compact(self: LocalStateStore) -> State:
        got = real_read(self)
        if not compacted:  # between this read and the journal's: the apply compacts
            compacted.append(1)
            other = local_store("provision.state.json")
            other.inner.read()
            other.inner.write(journaled)
            other.journal.reset(header(journaled.lineage, journaled.serial))
        return got

    monkeypatch.setattr(LocalStateStore, "read", read_then_compact)
    with writer.lock("apply"):
        code, out, err = run(capsys, "state", "list")
    assert code == 0, err
    assert "move" not in err and "team-0" in out and "team-1" in out, out + err
    assert compacted == [1]


class MovingStore:
    """A store whose reads are refused ``refusals`` times (a compaction under way)."""

    location = "s.json"

    def __init__(self, refusals: int, locked: bool) -> None:
        self.refusals, self.locked, self.reads = refusals, locked, 0

    def read(self) -> State:
        self.reads += 1
        if self.reads <= self.refusals:
            raise StateError("the journal continues serial 2 ...", hint="... move it away")
        return State()

    def current_lock(self) -> LockInfo | None:
        return LockInfo("id-1", "apply", "ci@host", 1, "now", "host") if self.locked else None


def test_a_read_waits_for_a_consistent_view_only_while_a_live_run_writes() -> None:
    ticks = [0.0]

    def pause(seconds: float) -> None:
        ticks[0] += seconds

    clock = lambda: ticks[0]  # noqa: E731
    store = MovingStore(refusals=3, locked=True)
    assert read_unlocked(store, clock=clock, pause=pause).exists is False  # type: ignore[arg-type]
    assert store.reads == 4
    # No live run: the error is the state's own, at once.
    with pytest.raises(StateError, match="continues serial"):
        read_unlocked(MovingStore(refusals=1, locked=False), clock=clock, pause=pause)  # type: ignore[arg-type]
    # A live run, and never a consistent view: a bounded wait, no advice to move files away.
    with pytest.raises(StateError) as caught:
        read_unlocked(MovingStore(refusals=10**9, locked=True), clock=clock, pause=pause)  # type: ignore[arg-type]
    assert "being written by a running apply" in str(caught.value)
    assert "move" not in (caught.value.hint or "")
