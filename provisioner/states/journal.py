"""The write-ahead journal beside a state: its records, how it is read back, the local file.

During an apply, each change (a group creation's intent before its ``POST /chats``, a chat
recorded, members added or removed, a chat forgotten or deleted) is appended to the journal and
made durable, so a change costs O(size of the change) instead of a rewrite of the whole state;
the full state is written only now and then (compaction, ``states.journal_writer``).

The journal is a sequence of records, each framed as::

    length (4 bytes, big endian) | CRC-32 of the payload (4 bytes) | payload (UTF-8 JSON)

The first record is the header ``{"journal": 1, "lineage": L, "serial": S}``: the journal
continues the state of lineage ``L`` at serial ``S``. Every other record is a list of changes
made together (an intent with the users it resolved, say), applied all or nothing:

    ["chat", key, record] ["rm", key] ["mv", old, new] ["intent", key, intent]
    ["unintent", key] ["users", {upn: id}] ["protect", key, bool] ["plan", plan_id]
    ["group", ref, {id, name, read_at, users}]
    ["deleted", key, deleted-chat] ["undeleted", key] ["ws", key, workspace]
    ["compact", serial]   (a marker: the state written as ``serial`` holds everything before it)

A run killed in the middle of an append leaves a torn last record: a short frame, a checksum
that does not match, or a tail of zeros (a file extended before its data reached the disk, the
usual power-loss leftover). It is dropped, never misread: nothing in it was reported durable (an
append returns only once the bytes are on storage). Only the *last* record can be torn: bytes
that fail their checksum *followed by a good record* are damage (a flipped bit, a bad sector),
and dropping them with everything after would silently forget changes Graph has made (the next
apply would create those chats again). Such a journal is refused with how to salvage it
(``provision state repair``, ``states.salvage``), and left in place. A marker appended after a
torn tail says so (``["torn", offset, length]``), so the tail it covers is not damage.

A journal of another lineage, or one that does not continue the state's serial, is refused and
left alone.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.errors import StateError
from provisioner.states.codec import (
    chat_from_json,
    group_json,
    intent_from_json,
    workspace_from_json,
)
from provisioner.states.journal_local import LocalJournalFile as LocalJournalFile
from provisioner.states.records import (
    ChatRecord,
    DeletedChat,
    GroupRecord,
    Intent,
    State,
    Workspace,
)

JOURNAL_SUFFIX = ".journal"
JOURNAL_FORMAT = 1
_FRAME = struct.Struct(">II")
# A record is one change: even a 250-member chat is a few tens of kB. Anything bigger is not
# a record this program wrote (bounded input), and is treated like a torn one.
MAX_RECORD = 16 * 1024 * 1024

Change = tuple[Any, ...]


class JournalFile(Protocol):
    """Where a journal lives (a local file, an append blob). ``atomic_reset``: whether
    ``reset`` replaces the journal in one step (else the writer holds appends meanwhile)."""

    atomic_reset: bool

    @property
    def location(self) -> str: ...

    def read(self) -> bytes | None:
        """The journal's bytes, or None when there is none."""
        ...

    def append(self, data: bytes) -> None:
        """Append ``data``; returns once it is durable."""
        ...

    def reset(self, data: bytes) -> None:
        """Replace the whole journal with ``data``, atomically and durably."""
        ...

    def remove(self) -> None:
        """Delete the journal (it is absorbed in a written state)."""
        ...

    def keep(self, data: bytes, suffix: str) -> str:
        """Store ``data`` beside the journal under its name + ``suffix``; returns where."""
        ...


# --- records -------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def header(lineage: str, serial: int) -> bytes:
    return frame(_dumps({"journal": JOURNAL_FORMAT, "lineage": lineage, "serial": serial}))


def marker(serial: int, torn: tuple[int, int] | None = None) -> bytes:
    """The record saying the state written as ``serial`` holds everything before it;
    ``torn``: the (offset, length) of a torn tail it was appended after."""
    changes: list[list[Any]] = [["compact", serial]]
    if torn is not None:
        changes.append(["torn", torn[0], torn[1]])
    return frame(_dumps(changes))


def is_marker(record: list[Any], serial: int) -> bool:
    return bool(record) and record[0] == ["compact", serial]


def encode(changes: Iterable[Change]) -> bytes:
    """One record from the changes ``State`` noted (see ``State._note``)."""
    out: list[list[Any]] = []
    for change in changes:
        kind = change[0]
        if kind == "chat":
            record: ChatRecord = change[2]
            out.append(["chat", change[1], record.to_dict()])
        elif kind == "intent":
            intent: Intent = change[2]
            out.append(["intent", change[1], intent.to_dict()])
        elif kind == "group":
            group: GroupRecord = change[2]
            out.append(["group", change[1], group.to_dict()])
        elif kind == "deleted":
            deleted: DeletedChat = change[2]
            out.append(["deleted", change[1], deleted.to_dict()])
        elif kind == "ws":
            workspace: Workspace = change[2]
            out.append(["ws", change[1], workspace.to_dict()])
        else:
            out.append(list(change))
    return frame(_dumps(out))


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- reading back --------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """Bytes that fail their checksum with a good record after them: not a torn tail.
    ``before``: how many records (after the header) were read before them."""

    offset: int
    length: int
    before: int


@dataclass
class Parsed:
    """A journal read back: its header (None: empty, or torn before its header was durable),
    its records (each a list of changes), how many torn bytes were dropped at its end (from
    ``end``), and any damage in the middle (see the module docstring)."""

    header: dict[str, Any] | None
    records: list[list[Any]] = field(default_factory=list)
    dropped: int = 0
    damage: list[Damage] = field(default_factory=list)
    # Each record's byte offset (same order as ``records``), for messages and salvage.
    offsets: list[int] = field(default_factory=list)
    end: int = 0  # where the readable journal ends (a torn tail starts here)


def parse(raw: bytes, location: str, *, salvage: bool = False) -> Parsed:
    """Read ``raw`` back; never raises for damage (``Parsed.damage``: ``replay`` refuses it),
    only for bytes with a good checksum that this program did not write (``salvage``: those
    are damage too, for ``state repair`` to report)."""
    parsed = Parsed(None)
    offset = 0
    while offset < len(raw):
        payload = _payload(raw, offset)
        if payload is None:
            found = next_frame(raw, offset + 1)
            if found is None:
                break  # torn: this record and anything after it was never reported durable
            if not _declared_torn(raw, found, offset):
                parsed.damage.append(Damage(offset, found - offset, len(parsed.records)))
            offset = found
            continue
        size = _FRAME.size + len(payload)
        try:
            _read_frame(parsed, payload, offset, location)
        except StateError as exc:
            if not salvage or isinstance(exc, _NewerFormat):
                raise
            parsed.damage.append(Damage(offset, size, len(parsed.records)))
        offset += size
    parsed.end = min(offset, len(raw))
    parsed.dropped = len(raw) - parsed.end
    return parsed


class _NewerFormat(StateError):
    """A journal written by a newer provision: upgrade, never salvage."""


def _read_frame(parsed: Parsed, payload: bytes, offset: int, location: str) -> None:
    try:
        value = json.loads(payload)
    except ValueError as exc:
        # The checksum matched: not a torn write, but bytes this program did not write.
        raise _corrupt(location, offset, "a record is not JSON") from exc
    if parsed.header is None and offset == 0:
        parsed.header = _check_header(value, location)
    elif isinstance(value, list):
        parsed.records.append(value)
        parsed.offsets.append(offset)
    else:
        raise _corrupt(location, offset, "a record is not a list of changes")


def next_frame(raw: bytes, start: int) -> int | None:
    """The offset of the next good record frame at or after ``start`` (None: none). A record's
    payload is a JSON list, so only frames whose payload starts with ``[`` are tried: a tail
    of zeros has none (and an empty frame of zeros, whose checksum is 0, is never a record)."""
    at = raw.find(b"[", start + _FRAME.size)
    while at != -1:
        begin = at - _FRAME.size
        length, crc = _FRAME.unpack_from(raw, begin)
        stop = at + length
        fits = 2 <= length <= MAX_RECORD and stop <= len(raw) and raw[stop - 1 : stop] == b"]"
        if fits and zlib.crc32(raw[at:stop]) == crc:
            return begin
        at = raw.find(b"[", at + 1)
    return None


def _declared_torn(raw: bytes, at: int, offset: int) -> bool:
    """Whether the record at ``at`` is a marker declaring ``raw[offset:at]`` a torn tail."""
    payload = _payload(raw, at)
    try:
        value = json.loads(payload) if payload is not None else None
    except ValueError:
        return False
    return isinstance(value, list) and ["torn", offset, at - offset] in value


def _payload(raw: bytes, offset: int) -> bytes | None:
    if len(raw) - offset < _FRAME.size:
        return None
    length, crc = _FRAME.unpack_from(raw, offset)
    start = offset + _FRAME.size
    # An empty payload is never a record: the zeros a crash mid-append can leave (the file
    # extended before its data landed) frame one, and the checksum of nothing is 0.
    if not 2 <= length <= MAX_RECORD or start + length > len(raw):
        return None
    payload = raw[start : start + length]
    return payload if zlib.crc32(payload) == crc else None


def _check_header(value: Any, location: str) -> dict[str, Any]:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("lineage"), str)
        or type(value.get("serial")) is not int
        or type(value.get("journal")) is not int
    ):
        raise _corrupt(location, 0, "it does not start with a journal header")
    if value["journal"] > JOURNAL_FORMAT:
        raise _NewerFormat(
            f"the journal {location} has format {value['journal']}, written by a newer "
            f"provision; this one reads up to {JOURNAL_FORMAT}",
            hint="upgrade provision; the journal was left in place",
        )
    return value


#: Every refusal of a damaged or out-of-step journal leads here (``states.salvage``).
REPAIR_HINT = (
    "provision left it in place; `provision state repair` (with the same --state) writes "
    "every readable record of it into the state and keeps a copy of the journal's bytes"
)


def _corrupt(location: str, offset: int, what: str) -> StateError:
    return StateError(
        f"the journal {location} is corrupt at byte {offset}: {what}", hint=REPAIR_HINT
    )


def damaged(location: str, damage: Damage, total: int) -> StateError:
    return StateError(
        f"the journal {location} is damaged: {damage.length} bytes at byte {damage.offset} fail "
        f"their checksum, and {total - damage.before} good record(s) follow them (a torn write "
        "can only be the last record); reading on would forget changes Graph has made",
        hint=REPAIR_HINT,
    )


def replay(state: State, parsed: Parsed, location: str, state_location: str) -> int:
    """Apply the journal's changes to ``state`` (read from ``state_location``); returns how
    many records were applied. Refuses (StateError, nothing applied) a journal of another
    lineage, one that does not continue the state's serial, or a damaged one."""
    records = pending(state, parsed, location, state_location)
    apply_records(state, records, location)
    return len(records)


def pending(
    state: State, parsed: Parsed, location: str, state_location: str, *, salvage: bool = False
) -> list[list[Any]]:
    """The records of ``parsed`` that ``state`` does not hold yet. ``salvage``
    (``provision state repair``): damage was dealt with by the caller; a journal without a
    readable header continues ``state``; a state one serial ahead without its marker absorbed
    the journal (a run whose journal broke wrote its full state, then died before removing the
    journal); a journal ahead of ``state`` (a backup put back) is applied onto it."""
    head = parsed.header
    if head is None:
        if parsed.damage and not salvage:
            raise damaged(location, parsed.damage[0], len(parsed.records))
        if not salvage:
            return []
        head = {"lineage": state.lineage, "serial": state.serial}
    lineage, serial = head["lineage"], head["serial"]
    if lineage != state.lineage:
        raise StateError(
            f"the journal {location} belongs to another state (lineage {lineage}) than "
            f"{state_location} (lineage {state.lineage}); provision left it in place",
            hint=f"if {state_location} was replaced on purpose, move the journal away; "
            "otherwise restore the state it belongs to",
        )
    start = 0
    if serial != state.serial:
        # A run killed between writing a compacted state and starting the next journal: the
        # state holds everything up to the marker of its serial.
        ends = [i for i, r in enumerate(parsed.records) if is_marker(r, state.serial)]
        if ends and serial < state.serial:
            start = ends[-1] + 1
        elif salvage and serial + 1 == state.serial:
            return []
        elif not (salvage and serial > state.serial):
            raise StateError(
                f"the journal {location} continues serial {serial} of the state, but "
                f"{state_location} is at serial {state.serial}; provision left it in place",
                hint=REPAIR_HINT,
            )
    if not salvage:
        for damage in parsed.damage:
            if damage.before >= start:
                raise damaged(location, damage, len(parsed.records))
    return parsed.records[start:]


def apply_records(
    state: State, records: list[list[Any]], location: str, *, skip_bad: bool = False
) -> list[tuple[int, str]]:
    """Apply ``records`` in order. A record this version cannot apply is refused (nothing
    applied); with ``skip_bad`` (``state repair``) it is left out and returned (its number
    from 1, why), every other record applied: each record is first tried on an empty state,
    so a bad one is never half applied."""
    skipped: list[tuple[int, str]] = []
    for i, record in enumerate(records):
        where = f"{location}: record {i + 1}"
        try:
            if skip_bad:
                for change in record:
                    _apply(State(), change, where)
            for change in record:
                _apply(state, change, where)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            if skip_bad:
                skipped.append((i + 1, str(exc)))
                continue
            raise StateError(
                f"the journal {location} holds a change provision cannot apply ({exc})",
                hint="provision left it in place: if a newer provision wrote it, upgrade; "
                "else `provision state repair` (same --state) writes every other record into "
                "the state and names this one",
            ) from exc
    return skipped


def _apply(state: State, change: list[Any], where: str) -> None:
    kind = change[0]
    if kind == "chat":
        state.put_chat(_str(change[1]), chat_from_json(change[2], where))
    elif kind == "rm":
        state.remove_chat(_str(change[1]))
    elif kind == "mv":
        if change[1] in state.chats:
            state.rename_chat(_str(change[1]), _str(change[2]))
    elif kind == "intent":
        state.put_intent(intent_from_json(_str(change[1]), change[2], where))
    elif kind == "unintent":
        state.clear_intent(_str(change[1]))
    elif kind == "users":
        users = change[1]
        if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
            raise ValueError("users: expected an object of strings")
        state.put_users(users)
    elif kind == "protect":
        state.set_protected(_str(change[1]), bool(change[2]))
    elif kind == "group":
        state.put_group(_str(change[1]), group_json(change[2], where))
    elif kind == "plan":
        state.set_last_plan(None if change[1] is None else _str(change[1]))
    elif kind == "deleted":
        if not isinstance(change[2], dict):
            raise ValueError("deleted: expected an object")
        state.put_deleted(_str(change[1]), DeletedChat.from_dict(change[2]))
    elif kind == "undeleted":
        state.drop_deleted(_str(change[1]))
    elif kind == "ws":
        state.put_workspace(_str(change[1]), workspace_from_json(change[2], where))
    elif kind not in ("compact", "torn"):
        raise ValueError(f"unknown change {kind!r}")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {type(value).__name__}")
    return value
