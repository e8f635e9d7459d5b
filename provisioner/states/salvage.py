"""Salvage for ``provision state repair``: every readable record of a damaged journal, and
every complete chat of a damaged state file.

A journal is damaged when bytes in its middle fail their checksum (``states.journal``). Each
record is framed with a CRC-32, which detects every single-bit error and also says where it is:
CRC-32 is linear over GF(2), so the difference between the stored and the computed checksum
(the syndrome) equals the checksum contribution of the flipped bit alone, and each bit position
has a distinct one. A record with one flipped bit (in its payload, its length or its checksum)
is therefore restored exactly; a record damaged beyond that is reported, never guessed.

A state file cut short (a copy interrupted, a full disk under another tool) still holds its
header and one complete chat per line up to the cut (``State.encode`` writes one chat a line).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from provisioner.states.codec import chat_from_json, intent_from_json
from provisioner.states.journal import Damage, Parsed, parse
from provisioner.states.records import ChatRecord, Intent

_FRAME = 8  # length + CRC-32, see ``states.journal``
# The CRC-32 of each single byte, without the initial and final inversion: the linear part
# of the checksum (zlib.crc32(bytes([i])) ^ zlib.crc32(b"\0") == the table entry of i).
_TABLE = [zlib.crc32(bytes([i])) ^ zlib.crc32(b"\0") for i in range(256)]


@dataclass
class JournalSalvage:
    """A damaged journal read back: ``parsed`` with every restored record in its place,
    the offsets of the records restored, and the damage that could not be restored."""

    parsed: Parsed
    restored: list[int] = field(default_factory=list)
    lost: list[Damage] = field(default_factory=list)


def salvage_journal(raw: bytes, location: str) -> JournalSalvage:
    parsed = parse(raw, location, salvage=True)
    out = JournalSalvage(parsed)
    if not parsed.damage:
        return out
    records: list[list[Any]] = []
    offsets: list[int] = []
    header = parsed.header
    pending = sorted(parsed.damage, key=lambda d: d.offset)
    for i, (record, offset) in enumerate(zip(parsed.records, parsed.offsets, strict=True)):
        while pending and pending[0].before == i:
            _restore(raw, pending.pop(0), out, records, offsets)
        records.append(record)
        offsets.append(offset)
    for damage in pending:
        _restore(raw, damage, out, records, offsets)
    if header is None and records and isinstance(records[0], dict):
        header = records.pop(0)  # the header itself was the flipped record
        offsets.pop(0)
    out.parsed = Parsed(header, records, parsed.dropped, [], offsets, parsed.end)
    return out


def _restore(
    raw: bytes, damage: Damage, out: JournalSalvage, records: list[Any], offsets: list[int]
) -> None:
    payload = fix_one_bit(raw[damage.offset : damage.offset + damage.length])
    value: Any = None
    if payload is not None:
        try:
            value = json.loads(payload)
        except ValueError:
            value = None
    if isinstance(value, list) or (isinstance(value, dict) and damage.offset == 0):
        records.append(value)
        offsets.append(damage.offset)
        out.restored.append(damage.offset)
    else:
        out.lost.append(damage)


def fix_one_bit(frame: bytes) -> bytes | None:
    """The payload of ``frame`` (one record: length, CRC-32, payload) if one flipped bit
    explains why it fails its checksum; else None."""
    if len(frame) < _FRAME + 2:
        return None
    stored_len = int.from_bytes(frame[:4], "big")
    stored_crc = int.from_bytes(frame[4:8], "big")
    payload = frame[_FRAME:]
    actual = zlib.crc32(payload)
    if stored_len != len(payload):  # the flip is in the length: the rest must be intact
        one = (stored_len ^ len(payload)).bit_count() == 1
        return payload if one and actual == stored_crc else None
    syndrome = actual ^ stored_crc
    if syndrome.bit_count() == 1:
        return payload  # the flip is in the stored checksum
    where = _flipped_bit(syndrome, len(payload))
    if where is None:
        return None
    fixed = bytearray(payload)
    fixed[where[0]] ^= 1 << where[1]
    return bytes(fixed) if zlib.crc32(fixed) == stored_crc else None


def _flipped_bit(syndrome: int, n: int) -> tuple[int, int] | None:
    """(byte index, bit) of the single bit whose flip changes the CRC-32 of an ``n``-byte
    message by ``syndrome``. A bit ``k`` bytes from the end contributes its byte's table entry
    carried through ``k`` zero bytes, so walk back from the end, one register step a byte."""
    regs = [_TABLE[1 << b] for b in range(8)]
    for k in range(n):
        for b, reg in enumerate(regs):
            if reg == syndrome:
                return n - 1 - k, b
        regs = [(reg >> 8) ^ _TABLE[reg & 0xFF] for reg in regs]
    return None


@dataclass
class RepairReport:
    """What ``repair`` did (the CLI renders it)."""

    applied: int = 0  # journal records written into the state
    restored: list[int] = field(default_factory=list)  # offsets of records with a fixed bit
    lost: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) unreadable
    absorbed: bool = False  # the state already held the journal
    skipped: list[tuple[int, str]] = field(default_factory=list)  # records it cannot apply
    kept: list[str] = field(default_factory=list)  # copies of damaged files
    from_backup: int | None = None  # serial of the backup the state was rebuilt on
    salvaged_chats: int = 0  # complete chat lines taken from a damaged state file
    protected: list[str] = field(default_factory=list)  # backup chats after the cut
    serial: int = 0  # the serial written
    nothing: bool = False  # nothing to repair


# --- a state file cut short ------------------------------------------------------------------

_CHAT_LINE = re.compile(rb'^    ("(?:[^"\\]|\\.)*"): (\{.*\}),?$')
_INTENTS_LINE = re.compile(rb'^  "intents": (\{.*\}),$')


@dataclass
class StatePieces:
    """What a damaged state file still says: its lineage and serial (None: not readable),
    every complete chat line, and its intents (None: cut before their line ended)."""

    lineage: str | None = None
    serial: int | None = None
    chats: dict[str, ChatRecord] = field(default_factory=dict)
    intents: dict[str, Intent] | None = None


def salvage_state(raw: bytes, where: str) -> StatePieces:
    """The complete lines of a state file written by ``State.encode`` (see the module
    docstring); a line that does not decode is left out (the file is cut there)."""
    pieces = StatePieces()
    lineage = re.search(rb'^  "lineage": "([0-9A-Za-z-]{1,64})",$', raw, re.M)
    serial = re.search(rb'^  "serial": (\d{1,18}),$', raw, re.M)
    pieces.lineage = lineage.group(1).decode() if lineage else None
    pieces.serial = int(serial.group(1)) if serial else None
    for line in raw.split(b"\n"):
        try:
            if found := _CHAT_LINE.match(line):
                key = json.loads(found.group(1))
                record = chat_from_json(json.loads(found.group(2)), f"{where}: chats.{key}")
                pieces.chats[key] = record
            elif found := _INTENTS_LINE.match(line):
                value = json.loads(found.group(1))
                pieces.intents = {
                    k: intent_from_json(k, v, f"{where}: intents.{k}") for k, v in value.items()
                }
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # the line the file was cut in
    return pieces
