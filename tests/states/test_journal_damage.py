"""Damage to the journal (issue 20, item 2): only the last record may be torn; bytes that fail
their checksum with good records after them are refused, and `provision state repair` writes
every readable record into the state. I/O faults come from a Python shim on ``os.write`` and
``os.fsync`` (no LD_PRELOAD)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.errors import StateError
from provisioner.operations.repair import repair
from provisioner.states.journal import encode, frame, header, marker, parse
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.states.salvage import fix_one_bit
from provisioner.states.store import local_store


def rec(n: int) -> ChatRecord:
    return ChatRecord(f"19:{n}@thread.v2", "group", (MemberRecord("a@x.com", "owner", "oid"),))


def journal_of(state: State, count: int) -> bytes:
    return header(state.lineage, state.serial) + b"".join(
        encode([("chat", f"k{i}", rec(i))]) for i in range(count)
    )


def start_of(raw: bytes, index: int) -> int:
    """The offset of record ``index`` (0 = the first after the header)."""
    return parse(raw, "j").offsets[index]


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[str, State]]:
    path = str(tmp_path / "s.json")
    store = local_store(path)
    state = store.read()
    store.write(state)
    yield path, state


def write_journal(path: str, raw: bytes) -> None:
    Path(path + ".journal").write_bytes(raw)


# --- reading: torn tail or damage ----------------------------------------------------------


@pytest.mark.parametrize("where", ["payload", "length", "checksum"])
def test_a_flipped_bit_before_good_records_is_refused_not_dropped(
    stored: tuple[str, State], where: str
) -> None:
    path, state = stored
    raw = bytearray(journal_of(state, 5))
    at = start_of(bytes(raw), 1)
    raw[at + {"payload": 20, "length": 2, "checksum": 5}[where]] ^= 0x10
    write_journal(path, bytes(raw))
    with pytest.raises(StateError, match="damaged") as err:
        local_store(path).read()
    assert f"at byte {at}" in err.value.message and "3 good record(s) follow" in err.value.message
    assert "state repair" in (err.value.hint or "") and "move" not in (err.value.hint or "")
    assert Path(path + ".journal").read_bytes() == raw  # left in place


def test_a_zero_filled_tail_is_torn_not_damage(stored: tuple[str, State]) -> None:
    path, state = stored
    raw = journal_of(state, 3)
    for tail in (b"\0" * 4096, b"\0" * 3, encode([("chat", "x", rec(9))])[:11] + b"\0" * 900):
        write_journal(path, raw + tail)
        again = local_store(path)
        assert set(again.read().chats) == {"k0", "k1", "k2"}


def test_a_marker_after_a_torn_tail_is_not_damage(stored: tuple[str, State]) -> None:
    path, state = stored
    torn = journal_of(state, 2) + encode([("chat", "x", rec(9))])[:15]
    write_journal(path, torn)
    store = local_store(path)
    seen = store.read()
    # Killed after the marker was appended, before the state was written: the torn tail the
    # marker declares is not damage, and both records still replay.
    store.seal(seen.serial + 1)
    assert set(local_store(path).read().chats) == {"k0", "k1"}
    # The same marker declaring another region is no excuse for damage.
    raw = bytearray(Path(path + ".journal").read_bytes())
    raw[start_of(torn, 0) + 20] ^= 1
    write_journal(path, bytes(raw))
    with pytest.raises(StateError, match="damaged"):
        local_store(path).read()


# --- repair ---------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 2, 4])
def test_repair_restores_a_record_with_one_flipped_bit(
    stored: tuple[str, State], index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = stored
    raw = bytearray(journal_of(state, 6))
    at = start_of(bytes(raw), index)
    raw[at + 30] ^= 0x04
    write_journal(path, bytes(raw))
    assert main(["state", "repair", "--state", path]) == 0
    out = capsys.readouterr().out
    assert "Restored 1 record(s) with one flipped bit" in out and "Wrote 6 journal" in out
    repaired = local_store(path).read()
    assert set(repaired.chats) == {f"k{i}" for i in range(6)}
    assert repaired.chats[f"k{index}"] == rec(index)
    assert not os.path.exists(path + ".journal")
    kept = [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".damaged")]
    assert len(kept) == 1  # the journal's bytes, as they were


def test_repair_keeps_every_good_record_around_unreadable_damage(
    stored: tuple[str, State], capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = stored
    clean = journal_of(state, 5)
    raw = bytearray(clean)
    at = start_of(clean, 1)
    raw[at + 20] ^= 0xFF  # sixteen bits: beyond what the checksum can locate
    raw[at + 40] ^= 0xFF
    write_journal(path, bytes(raw))
    assert main(["state", "repair", "--state", path]) == 0
    out = capsys.readouterr().out
    assert f"Could not read {start_of(clean, 2) - at} bytes at byte {at}" in out
    assert set(local_store(path).read().chats) == {"k0", "k2", "k3", "k4"}


def test_repair_restores_a_flipped_header(stored: tuple[str, State]) -> None:
    path, state = stored
    raw = bytearray(journal_of(state, 3))
    raw[12] ^= 0x02
    write_journal(path, bytes(raw))
    with pytest.raises(StateError, match="damaged"):
        local_store(path).read()
    report = repair(local_store(path))
    assert report.restored == [0] and report.applied == 3
    assert set(local_store(path).read().chats) == {"k0", "k1", "k2"}


def test_fix_one_bit_finds_every_single_bit_and_nothing_else() -> None:
    frame = encode([("chat", "k", rec(1))])
    payload = frame[8:]
    for bit in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert fix_one_bit(bytes(bad)) == payload, bit
    two = bytearray(frame)
    two[10] ^= 1
    two[30] ^= 1
    assert fix_one_bit(bytes(two)) is None


# --- the dead ends of the hostile pass ------------------------------------------------------


class FailingDisk:
    """``os.write`` and ``os.fsync``/``fdatasync`` on the journal fail (ENOSPC, EIO) while
    ``failing`` is set; a failing write first puts half its bytes on disk (a torn record)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, journal: str) -> None:
        self.failing = False
        self.journal = journal
        real_write, real_sync = os.write, getattr(os, "fdatasync", os.fsync)

        def is_journal(fd: int) -> bool:
            try:
                return os.readlink(f"/proc/self/fd/{fd}") == self.journal
            except OSError:
                return False

        def write(fd: int, data: bytes) -> int:
            if self.failing and is_journal(fd):
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        def sync(fd: int) -> None:
            if self.failing and is_journal(fd):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_sync(fd)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fdatasync", sync, raising=False)


def run_until_the_disk_fails(path: str, disk: FailingDisk, *, stays_failing: bool) -> None:
    """A run records two chats, the journal's disk fails on the third, the run writes its
    full state at the end and is killed before it removes the journal."""
    store = local_store(path)
    writer = JournalWriter(store, store.read(), every_s=1e9)
    writer.start()
    writer.update(lambda s: s.put_chat("a", rec(1)))
    writer.update(lambda s: s.put_chat("b", rec(2)))
    disk.failing = True
    with pytest.raises(StateError, match="cannot write the journal"):
        writer.update(lambda s: s.put_chat("c", rec(3)))
    disk.failing = stays_failing
    store.journal.remove = lambda: None  # type: ignore[method-assign]  # killed here
    writer.close()


@pytest.mark.parametrize("stays_failing", [False, True])
def test_torn_tail_then_a_crash_after_the_state_write_has_a_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stays_failing: bool
) -> None:
    path = str(tmp_path / "s.json")
    local_store(path).write(State())
    disk = FailingDisk(monkeypatch, os.path.realpath(path + ".journal"))
    run_until_the_disk_fails(path, disk, stays_failing=stays_failing)
    disk.failing = False
    left = parse(Path(path + ".journal").read_bytes(), "j")
    # A torn tail, declared by the marker the run could still append when the fault passed.
    assert (left.dropped > 0) == stays_failing and not left.damage
    if stays_failing:
        # No marker could be made durable: refused, and the hint's command resolves it.
        with pytest.raises(StateError, match="continues serial") as err:
            local_store(path).read()
        assert "state repair" in (err.value.hint or "")
        assert repair(local_store(path)).absorbed
    store = local_store(path)
    state = store.read()  # after the transient fault, the marker says it all
    assert set(state.chats) == {"a", "b", "c"}
    store.write(state)
    assert not os.path.exists(path + ".journal")


def test_a_truncated_state_with_a_journal_has_a_way_out(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    store = local_store(path)
    state = store.read()
    for i in range(4):
        state.put_chat(f"old{i}", rec(i))
    store.write(state)  # serial 1: the backup after the next write
    for i in range(4, 8):
        state.put_chat(f"new{i}", rec(i))
    store.write(state)  # serial 2
    whole = Path(path).read_bytes()
    state.remove_chat("new5")
    state.remove_chat("old0")
    store.write(state)  # serial 3: new4, new6, new7, old1..3 (the backup holds serial 2)
    write_journal(path, header(state.lineage, 3) + encode([("chat", "late", rec(9))]))
    whole = Path(path).read_bytes()
    Path(path).write_bytes(whole[: whole.index(b'"new7"') + 20])  # cut inside new7's line
    with pytest.raises(StateError, match="truncated") as err:
        local_store(path).read()
    assert "state repair" in (err.value.hint or "")
    # Before: the hint said to put the backup back, and the journal was then refused.
    report = repair(local_store(path))
    assert report.from_backup == 2 and report.salvaged_chats == 2 and report.applied == 1
    repaired = local_store(path).read()
    # Lines before the cut are the damaged version's (new5 was removed in it); the rest comes
    # from the backup (new7's record there is the same), then the journal.
    assert set(repaired.chats) == {"new4", "new6", "new7", "old0", "old1", "old2", "old3", "late"}
    # old0 and the others after the cut are the backup's: protected until someone checks them.
    assert report.protected == ["new7", "old0", "old1", "old2", "old3"]
    assert repaired.serial == 4
    assert Path(path + ".backup").read_bytes() != Path(path).read_bytes()
    assert any(p.endswith(".damaged") for p in os.listdir(tmp_path))


def test_marker_helper_declares_the_torn_region() -> None:
    assert b'["torn",10,5]' in marker(3, (10, 5)) and b"torn" not in marker(3)


def test_a_record_this_version_cannot_apply_is_named_and_the_rest_kept(
    stored: tuple[str, State], capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = stored
    raw = (
        header(state.lineage, state.serial)
        + encode([("chat", "a", rec(1))])
        + frame(b'[["from-the-future",1]]')
        + encode([("chat", "b", rec(2))])
    )
    write_journal(path, raw)
    with pytest.raises(StateError, match="cannot apply") as err:
        local_store(path).read()
    assert "state repair" in (err.value.hint or "")  # before: "left it in place", no way on
    assert main(["state", "repair", "--state", path]) == 0
    assert "Left out journal record 2" in capsys.readouterr().out
    assert set(local_store(path).read().chats) == {"a", "b"}


def test_a_good_checksum_around_bytes_we_did_not_write_is_salvaged_too(
    stored: tuple[str, State],
) -> None:
    path, state = stored
    raw = (
        header(state.lineage, state.serial)
        + encode([("chat", "a", rec(1))])
        + frame(b"[not json")
        + encode([("chat", "b", rec(2))])
    )
    write_journal(path, raw)
    with pytest.raises(StateError, match="corrupt at byte") as err:
        local_store(path).read()
    assert "state repair" in (err.value.hint or "")
    report = repair(local_store(path))
    assert len(report.lost) == 1 and report.applied == 2
    assert set(local_store(path).read().chats) == {"a", "b"}
