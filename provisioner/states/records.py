"""The state's vocabulary and codec: what provision created, keyed like the manifest.

One JSON document (``format_version``, ``serial``, ``lineage``, ``tool_version``, ``chats``,
``intents``, ``users``). ``serial`` is bumped by every write, ``lineage`` is a UUID fixed when the
state is first created; a saved plan records both so ``apply`` can refuse a stale one (Terraform's
``statefile.File`` does the same).

Writes are meant to happen after every change an apply makes, so they are cheap: each chat's
JSON is encoded once and cached against the (immutable) record object, so a write of a
10,000-chat state re-encodes only what changed (see ``benchmarks/bench_plan.py`` for figures).
This module does no I/O: the stores (``states.local``, ``states.azblob``) read and write bytes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner import __version__
from provisioner.errors import StateError
from provisioner.fsutil import loads_json
from provisioner.models import CHAT_TYPES, ROLES
from provisioner.states.settling import Settling, settling_from

STATE_FORMAT_VERSION = 1
DEFAULT_STATE_PATH = "provision.state.json"
BACKUP_SUFFIX = ".backup"
#: Serials count writes: 2**63 - 1 is more than any state will ever see, and what other tools
#: reading the file (Terraform-style int64) can hold.
MAX_SERIAL = 2**63 - 1


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member as last applied: ``user`` as written in the manifest, plus what Graph told us."""

    user: str
    role: str = "owner"
    object_id: str | None = None
    tenant_id: str | None = None
    membership_id: str | None = None  # conversationMember id, needed to remove or re-role

    @property
    def identity(self) -> str:
        return self.user.lower()

    def to_dict(self) -> dict[str, str]:
        data = {"user": self.user, "role": self.role}
        if self.object_id is not None:
            data["object_id"] = self.object_id
        if self.tenant_id is not None:
            data["tenant_id"] = self.tenant_id
        if self.membership_id is not None:
            data["membership_id"] = self.membership_id
        return data


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """One managed chat as last applied (or imported)."""

    chat_id: str
    chat_type: str
    members: tuple[MemberRecord, ...]
    topic: str | None = None
    created_at: str | None = None  # Graph's createdDateTime
    settling: tuple[Settling, ...] = ()  # recent membership changes (see Settling)

    @property
    def member_identities(self) -> frozenset[str]:
        return frozenset(m.identity for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"chat_id": self.chat_id, "chat_type": self.chat_type}
        if self.topic is not None:
            data["topic"] = self.topic
        if self.created_at is not None:
            data["created_at"] = self.created_at
        data["members"] = [m.to_dict() for m in self.members]
        if self.settling:
            data["settling"] = [s.to_dict() for s in self.settling]
        return data


@dataclass(frozen=True, slots=True)
class Intent:
    """A group creation that was started but whose outcome is not recorded yet.

    Group ``POST /chats`` is not idempotent (api-reference/v1.0/api/chat-post.md: a new chat on
    every call), so the apply journals this *before* sending and clears it after recording the
    chat id; a leftover intent is reconciled (looked up) before anything is created again.
    """

    key: str
    chat_type: str
    members: tuple[MemberRecord, ...]
    attempt_id: str
    started_at: str  # ISO 8601, UTC
    topic: str | None = None

    @property
    def member_identities(self) -> frozenset[str]:
        return frozenset(m.identity for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "chat_type": self.chat_type,
            "attempt_id": self.attempt_id,
            "started_at": self.started_at,
        }
        if self.topic is not None:
            data["topic"] = self.topic
        data["members"] = [m.to_dict() for m in self.members]
        return data


@dataclass(eq=False)
class State:
    """The whole state. Mutate it through the small methods below (the apply executor calls
    them from worker threads under its own lock, then ``StateStore.write``)."""

    lineage: str = field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    format_version: int = STATE_FORMAT_VERSION
    tool_version: str = __version__
    chats: dict[str, ChatRecord] = field(default_factory=dict)
    intents: dict[str, Intent] = field(default_factory=dict)
    # UPN (lower case) -> Entra object id, filled by UPN resolution (issue 7).
    users: dict[str, str] = field(default_factory=dict)
    # Keys whose chat had ``protect: true`` when last applied: deleting them is refused even
    # after their entry left the manifest (issue 7). Absent from the file when empty.
    protected: set[str] = field(default_factory=set)
    # The id of the last saved plan an apply started from, so re-applying it is named as such.
    last_plan_id: str | None = None
    # Where the chats live (``states.home``): the tenant id and the Graph cloud, recorded the
    # first time the state is used against Graph. Absent from the file until known.
    tenant_id: str | None = None
    cloud: str | None = None
    # True when read from an existing file (or written); False for "no state yet".
    exists: bool = False
    _encoded: dict[str, tuple[ChatRecord, bytes]] = field(default_factory=dict, repr=False)

    def put_chat(self, key: str, record: ChatRecord) -> None:
        self.chats[key] = record

    def remove_chat(self, key: str) -> ChatRecord | None:
        self._encoded.pop(key, None)
        self.protected.discard(key)
        return self.chats.pop(key, None)

    def rename_chat(self, old: str, new: str) -> None:
        """Record the chat of ``old`` under ``new`` (a ``moved:`` entry), protection included."""
        record = self.chats.pop(old)
        self._encoded.pop(old, None)
        self.chats[new] = record
        if old in self.protected:
            self.protected.discard(old)
            self.protected.add(new)

    def put_intent(self, intent: Intent) -> None:
        self.intents[intent.key] = intent

    def clear_intent(self, key: str) -> Intent | None:
        return self.intents.pop(key, None)

    def copy(self) -> State:
        """A copy to write from while other threads keep changing this one. Records are
        frozen, so sharing them is safe; the encoding cache is shared too."""
        return State(
            lineage=self.lineage,
            serial=self.serial,
            format_version=self.format_version,
            tool_version=self.tool_version,
            chats=dict(self.chats),
            intents=dict(self.intents),
            users=dict(self.users),
            protected=set(self.protected),
            last_plan_id=self.last_plan_id,
            tenant_id=self.tenant_id,
            cloud=self.cloud,
            exists=self.exists,
            _encoded=self._encoded,
        )

    def encode(self, serial: int | None = None) -> bytes:
        """The state file's bytes (with ``serial`` instead of ``self.serial`` if given).

        One chat per line keeps the file readable and diffable. Each chat's line is cached
        against its record object, which is frozen, so a write re-encodes only the records
        replaced since the last one: the apply executor writes after every change.
        """
        chats = list(self.chats.items())  # a snapshot: safe against a concurrent put_chat
        chats.sort(key=_first)
        cache = self._encoded
        lines = []
        for key, record in chats:
            hit = cache.get(key)
            if hit is None or hit[0] is not record:
                line = f"    {_dumps(key)}: {_dumps(record.to_dict())}".encode()
                cache[key] = (record, line)
                lines.append(line)
            else:
                lines.append(hit[1])
        head = {
            "format_version": self.format_version,
            "serial": self.serial if serial is None else serial,
            "lineage": self.lineage,
            "tool_version": __version__,
            "last_plan_id": self.last_plan_id,
        }
        if self.tenant_id is not None:
            head["tenant_id"] = self.tenant_id
        if self.cloud is not None:
            head["cloud"] = self.cloud
        parts = ["{"]
        parts.extend(f"  {_dumps(k)}: {_dumps(v)}," for k, v in head.items())
        parts.append('  "chats": {')
        intents = {k: v.to_dict() for k, v in sorted(self.intents.items())}
        tail = [
            "  }," if lines else '  "chats": {},',
            f'  "intents": {_dumps(intents)},',
            f'  "users": {_dumps(dict(sorted(self.users.items())))}',
            "}\n",
        ]
        if self.protected:
            tail[-2] += ","
            tail.insert(-1, f'  "protected": {_dumps(sorted(self.protected))}')
        if not lines:
            parts.pop()
        out = "\n".join(parts).encode() + b"\n"
        if lines:
            out += b",\n".join(lines) + b"\n"
        return out + "\n".join(tail).encode()


def _first(item: tuple[str, ChatRecord]) -> str:
    return item[0]


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def iter_keys(state: State) -> Iterator[str]:
    """Every key the state knows: managed chats and pending creations, sorted."""
    yield from sorted(set(state.chats) | set(state.intents))


# --- decoding ------------------------------------------------------------------------------


class _Bad(Exception):
    """A structural problem at a JSON path inside the state file."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


def peek_lineage(path: str) -> str | None:
    """The lineage of the state file at ``path`` from its first lines (None when there is no
    file or no lineage there): cheap enough to check before every backup."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    found = _LINEAGE.search(head)
    return found.group(1).decode("ascii") if found else None


_LINEAGE = re.compile(rb'"lineage"\s*:\s*"([0-9A-Za-z-]{1,64})"')


def decode_state(raw: bytes, path: str, hint: str) -> State:
    """Parse a state file's bytes; any problem is a StateError naming the file."""
    if not raw or raw.isspace():
        raise StateError(f"the state file {path} is empty (truncated?)", hint=hint)
    try:
        # Straight from bytes: a 100,000-chat state is ~100 MB, so no extra decoded copy.
        data = loads_json(raw)
    except UnicodeDecodeError as exc:
        raise StateError(f"the state file {path} is not UTF-8 text", hint=hint) from exc
    except json.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StateError(f"the state file {path} is not UTF-8 text", hint=hint) from exc
        # Every state file ends with the closing brace of its document; one that stops before
        # it was cut short (a copy interrupted, a full disk under another tool...).
        if raw.lstrip().startswith(b"{") and not raw.rstrip().endswith(b"}"):
            raise StateError(
                f"the state file {path} is truncated: it stops after {len(raw)} bytes, in the "
                f"middle of the document",
                hint=hint,
            ) from exc
        raise StateError(
            f"the state file {path} is corrupt: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            hint=hint,
        ) from exc
    except ValueError as exc:  # NaN, a 5,000-digit number, 100,000 levels of nesting
        raise StateError(f"the state file {path} is corrupt: {exc}", hint=hint) from exc
    if not isinstance(data, dict) or "lineage" not in data or "format_version" not in data:
        raise StateError(
            f"{path} is not a provision state file (no format_version/lineage)", hint=hint
        )
    version = data["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StateError(f"the state file {path} has an invalid format_version", hint=hint)
    if version > STATE_FORMAT_VERSION:
        raise StateError(
            f"the state file {path} has format version {version}, written by a newer "
            f"provision ({data.get('tool_version', '?')}); this provision {__version__} reads up "
            f"to version {STATE_FORMAT_VERSION}",
            hint="upgrade provision; the file was not changed",
        )
    try:
        return _state_from(data)
    except _Bad as exc:
        raise StateError(f"the state file {path} is corrupt: {exc}", hint=hint) from exc


def _get(obj: Mapping[str, Any], name: str, where: str, kind: type, optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{where}.{name}", f"expected {kind.__name__}, found {type(value).__name__}")
    return value


def _short(obj: Mapping[str, Any], name: str) -> str | None:
    value = _get(obj, name, "$", str, optional=True)
    if value is not None and not 0 < len(value) <= 256:
        raise _Bad(f"$.{name}", "expected a short non-empty text")
    return value


def _members(raw: Any, where: str) -> tuple[MemberRecord, ...]:
    if not isinstance(raw, list):
        raise _Bad(where, "expected a list of members")
    out = []
    for i, m in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise _Bad(w, "expected an object")
        role = _get(m, "role", w, str)
        if role not in ROLES:
            raise _Bad(f"{w}.role", f"unknown role {role!r}")
        out.append(
            MemberRecord(
                user=_get(m, "user", w, str),
                role=role,
                object_id=_get(m, "object_id", w, str, optional=True),
                tenant_id=_get(m, "tenant_id", w, str, optional=True),
                membership_id=_get(m, "membership_id", w, str, optional=True),
            )
        )
    return tuple(out)


def _chat_type(obj: Mapping[str, Any], where: str) -> str:
    chat_type = _get(obj, "chat_type", where, str)
    if chat_type not in CHAT_TYPES:
        raise _Bad(f"{where}.chat_type", f"unknown chat type {chat_type!r}")
    return str(chat_type)


class _Slow(Exception):
    """Not the common shape: take the checked path, which names the problem."""


def _member_fast(m: dict[str, Any]) -> MemberRecord:
    user, role = m["user"], m["role"]
    oid, tid, mid = m.get("object_id"), m.get("tenant_id"), m.get("membership_id")
    if (
        type(user) is not str
        or role not in ROLES
        or (oid is not None and type(oid) is not str)
        or (tid is not None and type(tid) is not str)
        or (mid is not None and type(mid) is not str)
    ):
        raise _Slow
    if oid == user:
        oid = user  # one string, not two equal ones: a GUID member's id is its user
    return MemberRecord(user, role, oid, tid, mid)


def _chat_fast(c: dict[str, Any]) -> ChatRecord:
    # Reading a 100,000-chat state is on every plan's path: check types inline and only fall
    # back to the field-by-field checks (with their precise messages) when something is off.
    chat_id, chat_type = c["chat_id"], c["chat_type"]
    topic, created_at = c.get("topic"), c.get("created_at")
    if (
        type(chat_id) is not str
        or chat_type not in CHAT_TYPES
        or (topic is not None and type(topic) is not str)
        or (created_at is not None and type(created_at) is not str)
        or type(c["members"]) is not list
        or "settling" in c  # rare: checked the slow way
    ):
        raise _Slow
    members = tuple([_member_fast(m) for m in c["members"]])
    return ChatRecord(chat_id, chat_type, members, topic, created_at)


def _settling(raw: Any, where: str) -> tuple[Settling, ...]:
    try:
        return settling_from(raw, where)
    except ValueError as exc:
        raise _Bad(where, str(exc)) from None


def _chat_checked(c: Any, where: str) -> ChatRecord:
    if not isinstance(c, dict):
        raise _Bad(where, "expected an object")
    return ChatRecord(
        chat_id=_get(c, "chat_id", where, str),
        chat_type=_chat_type(c, where),
        members=_members(c.get("members"), f"{where}.members"),
        topic=_get(c, "topic", where, str, optional=True),
        created_at=_get(c, "created_at", where, str, optional=True),
        settling=_settling(c.get("settling"), f"{where}.settling"),
    )


def _state_from(data: Mapping[str, Any]) -> State:
    lineage = _get(data, "lineage", "$", str)
    serial = _get(data, "serial", "$", int)
    if not 0 <= serial <= MAX_SERIAL:
        raise _Bad("$.serial", f"{serial} is out of range (0 to {MAX_SERIAL})")
    raw_chats = _get(data, "chats", "$", dict)
    chats = {}
    while raw_chats:  # popping frees each parsed chat as soon as its record exists
        key, c = raw_chats.popitem()
        try:
            chats[key] = _chat_fast(c)
        except (_Slow, TypeError, KeyError, AttributeError):
            chats[key] = _chat_checked(c, f"$.chats[{key!r}]")  # says exactly what is wrong
    intents = {}
    for key, i in (_get(data, "intents", "$", dict, optional=True) or {}).items():
        w = f"$.intents[{key!r}]"
        if not isinstance(i, dict):
            raise _Bad(w, "expected an object")
        intents[key] = Intent(
            key=key,
            chat_type=_chat_type(i, w),
            members=_members(i.get("members"), f"{w}.members"),
            attempt_id=_get(i, "attempt_id", w, str),
            started_at=_get(i, "started_at", w, str),
            topic=_get(i, "topic", w, str, optional=True),
        )
    users = _get(data, "users", "$", dict, optional=True) or {}
    for upn, oid in users.items():
        if not isinstance(oid, str):
            raise _Bad(f"$.users[{upn!r}]", "expected a string")
    protected = _get(data, "protected", "$", list, optional=True) or []
    for i, key in enumerate(protected):
        if not isinstance(key, str):
            raise _Bad(f"$.protected[{i}]", "expected a string")
    return State(
        lineage=lineage,
        serial=serial,
        format_version=STATE_FORMAT_VERSION,
        tool_version=str(data.get("tool_version", "")),
        chats=chats,
        intents=intents,
        users=dict(users),
        protected=set(protected),
        last_plan_id=_get(data, "last_plan_id", "$", str, optional=True),
        tenant_id=_short(data, "tenant_id"),
        cloud=_short(data, "cloud"),
        exists=True,
    )
