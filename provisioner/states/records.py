"""The state's vocabulary and codec: what provision created, keyed like the manifest.

One JSON document (``format_version``, ``serial``, ``lineage``, ``tool_version``, ``chats``,
``intents``, ``users``). ``serial`` is bumped by every write, ``lineage`` is a UUID fixed when the
state is first created; a saved plan records both so ``apply`` can refuse a stale one (Terraform's
``statefile.File`` does the same).

Writes are meant to happen after every change an apply makes, so they are cheap: each chat's
JSON is encoded once and cached against the (immutable) record object, so a write of a
10,000-chat state re-encodes only what changed (see ``benchmarks/bench_plan.py`` for figures).
This module does no I/O: the stores (``states.local``, ``states.azblob``) read and write bytes,
``states.codec`` decodes them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from provisioner import __version__
from provisioner.models import tab_configuration
from provisioner.states.settling import Settling

#: 2 (issue 22): a member carries ``"added": false`` when provision did not add it (someone
#: added it in Teams, or it came with an imported chat), which ``membership: additive`` must
#: never remove. Version 1 files are read as they are: every member they list counts as added
#: by provision, which is what version 1 meant (it removed everyone else). A provision that
#: reads only version 1 refuses a version 2 file instead of dropping the flag.
STATE_FORMAT_VERSION = 2
DEFAULT_STATE_PATH = "provision.state.json"
BACKUP_SUFFIX = ".backup"
_STEP = 1 << 20  # bytes of a state file handled in one step by _adopt_source
#: Serials count writes: 2**63 - 1 is more than any state will ever see, and what other tools
#: reading the file (Terraform-style int64) can hold.
MAX_SERIAL = 2**63 - 1


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member as last applied: ``user`` as written in the manifest, plus what Graph told us.

    ``added``: provision added this member (in the chat's creation or with Add member). False
    for a member someone else added (seen by refresh) or that came with an imported chat:
    ``membership: additive`` never removes such a member (issue 22)."""

    user: str
    role: str = "owner"
    object_id: str | None = None
    tenant_id: str | None = None
    membership_id: str | None = None  # conversationMember id, needed to remove or re-role
    added: bool = True
    # Where the manifest got this member when not from a user: entry: "set NAME" or "group
    # NAME" (issue 22). Shown in plans ("from group Falcon-Team"); not part of its identity.
    via: str | None = None

    @property
    def identity(self) -> str:
        return self.user.lower()

    def to_dict(self) -> dict[str, str | bool]:
        data: dict[str, str | bool] = {"user": self.user, "role": self.role}
        if self.object_id is not None:
            data["object_id"] = self.object_id
        if self.tenant_id is not None:
            data["tenant_id"] = self.tenant_id
        if self.membership_id is not None:
            data["membership_id"] = self.membership_id
        if not self.added:
            data["added"] = False  # absent: added by provision (all of a version 1 file)
        if self.via is not None:
            data["via"] = self.via
        return data


@dataclass(frozen=True, slots=True)
class AppRecord:
    """An app provision installed in the chat (issue 24): its catalog id, the manifest's
    reference to it (``name:Incident Bot``; resolves it without the catalog next time) and
    the installation id Graph gave it, once known."""

    app_id: str
    ref: str
    installation_id: str | None = None

    def to_dict(self) -> dict[str, str]:
        data = {"app_id": self.app_id, "ref": self.ref}
        if self.installation_id is not None:
            data["installation_id"] = self.installation_id
        return data


@dataclass(frozen=True, slots=True)
class TabRecord:
    """A tab provision pinned to the chat: Graph's tab id, its name, app and configuration."""

    tab_id: str
    name: str
    app_id: str
    entity_id: str | None = None
    content_url: str | None = None
    website_url: str | None = None
    remove_url: str | None = None

    def configuration(self) -> dict[str, str | None]:
        return tab_configuration(
            self.entity_id, self.content_url, self.website_url, self.remove_url
        )

    def to_dict(self) -> dict[str, str]:
        data = {"tab_id": self.tab_id, "name": self.name, "app_id": self.app_id}
        for name, value in self.configuration().items():
            if value is not None:
                data[name] = value
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
class Workspace:
    """What provision installed in a managed chat and pinned to it (issue 24), kept apart
    from its ``ChatRecord`` (members and topic change far more often)."""

    apps: tuple[AppRecord, ...] = ()
    tabs: tuple[TabRecord, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.apps or self.tabs)

    def to_dict(self) -> dict[str, Any]:
        return {"apps": [a.to_dict() for a in self.apps], "tabs": [x.to_dict() for x in self.tabs]}


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
    started_at: str  # ISO 8601, UTC, the host's clock (shown to people)
    topic: str | None = None
    # Graph's time when the intent was journaled (its answers' ``Date``, graph/clock.py), what
    # a lookup compares ``createdDateTime`` with; None when no answer had told it yet (and in
    # states written before issue 20).
    graph_started_at: str | None = None

    @property
    def member_identities(self) -> frozenset[str]:
        return frozenset(m.identity for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "chat_type": self.chat_type,
            "attempt_id": self.attempt_id,
            "started_at": self.started_at,
        }
        if self.graph_started_at is not None:
            data["graph_started_at"] = self.graph_started_at
        if self.topic is not None:
            data["topic"] = self.topic
        data["members"] = [m.to_dict() for m in self.members]
        return data


@dataclass(frozen=True, slots=True)
class GroupUser:
    """A user of an Entra ID group (transitively): object id, UPN, and whether the account
    is a guest (``userType`` Guest: the guest role in chats, chat-post.md); its display name
    and mail, the fields a generator reading the group fills its templates with (issue 23)."""

    object_id: str
    upn: str | None = None
    guest: bool = False
    name: str | None = None
    mail: str | None = None

    def to_dict(self) -> dict[str, str | bool]:
        data: dict[str, str | bool] = {"id": self.object_id}
        if self.upn is not None:
            data["upn"] = self.upn
        if self.guest:
            data["guest"] = True
        if self.name is not None:
            data["name"] = self.name
        if self.mail is not None:
            data["mail"] = self.mail
        return data


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """An Entra ID group a manifest names (``group:``), as last read from Graph: its object
    id, display name, when it was read (ISO 8601, UTC) and its users, nested groups followed
    (issue 22). A plan without refresh uses it; a refreshing plan reads the group again."""

    group_id: str
    name: str
    read_at: str
    users: tuple[GroupUser, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.group_id,
            "name": self.name,
            "read_at": self.read_at,
            "users": [u.to_dict() for u in self.users],
        }


@dataclass(frozen=True, slots=True)
class DeletedChat:
    """A chat provision deleted (``expires`` passed, or ``--prune``), kept while Graph can
    still restore it (chat-delete.md: seven days) for ``provision restore KEY``. ``deleted_at``
    is UTC, ISO 8601; ``reason`` is ``expired`` or ``pruned``."""

    chat_id: str
    chat_type: str
    deleted_at: str
    topic: str | None = None
    reason: str = "pruned"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "chat_id": self.chat_id,
            "chat_type": self.chat_type,
            "deleted_at": self.deleted_at,
            "reason": self.reason,
        }
        if self.topic is not None:
            data["topic"] = self.topic
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeletedChat:
        topic = data.get("topic")
        fields = [data.get(name) for name in ("chat_id", "chat_type", "deleted_at", "reason")]
        if not all(isinstance(f, str) for f in fields) or not isinstance(topic, (str, type(None))):
            raise ValueError("a deleted chat needs chat_id, chat_type, deleted_at and reason")
        chat_id, chat_type, deleted_at, reason = (str(f) for f in fields)
        return cls(chat_id, chat_type, deleted_at, topic, reason)


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
    # ``group:`` entries (object id or mail, lower case) -> the group as last read (issue 22).
    # Absent from the file when empty.
    groups: dict[str, GroupRecord] = field(default_factory=dict)
    # Keys whose chat had ``protect: true`` when last applied: deleting them is refused even
    # after their entry left the manifest (issue 7). Absent from the file when empty.
    protected: set[str] = field(default_factory=set)
    # The id of the last saved plan an apply started from, so re-applying it is named as such.
    last_plan_id: str | None = None
    # Chats provision deleted, by key, while Graph can restore them (issue 23; absent from
    # the file when empty).
    deleted: dict[str, DeletedChat] = field(default_factory=dict)
    # Apps and tabs provision manages in a chat, by key (issue 24; absent when empty).
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    # Where the chats live (``states.home``): the tenant id and the Graph cloud, recorded the
    # first time the state is used against Graph. Absent from the file until known.
    tenant_id: str | None = None
    cloud: str | None = None
    # True when read from an existing file (or written); False for "no state yet".
    exists: bool = False
    _encoded: dict[str, tuple[ChatRecord, bytes]] = field(default_factory=dict, repr=False)
    # The bytes this state was decoded from and its chats as decoded ("raw", "chats"), until
    # the first encode takes the unchanged chats' lines from them (``_adopt_source``). Shared
    # by copies; emptied once used.
    _source: dict[str, Any] = field(default_factory=dict, repr=False)
    # While a run journals its changes (``states.journal_writer``), each change made through the
    # methods below is also noted here, in order, for the journal to append; None otherwise.
    # Code that changes a journaled state must use these methods, not the dicts directly.
    _log: list[tuple[Any, ...]] | None = field(default=None, repr=False)

    def put_chat(self, key: str, record: ChatRecord) -> None:
        self.chats[key] = record
        self._note("chat", key, record)

    def remove_chat(self, key: str) -> ChatRecord | None:
        self._encoded.pop(key, None)
        self.protected.discard(key)
        self.workspaces.pop(key, None)
        self._note("rm", key)
        return self.chats.pop(key, None)

    def rename_chat(self, old: str, new: str) -> None:
        """Record the chat of ``old`` under ``new`` (a ``moved:`` entry), protection included."""
        record = self.chats.pop(old)
        self._encoded.pop(old, None)
        self.chats[new] = record
        if old in self.protected:
            self.protected.discard(old)
            self.protected.add(new)
        if old in self.workspaces:
            self.workspaces[new] = self.workspaces.pop(old)
        self._note("mv", old, new)

    def put_intent(self, intent: Intent) -> None:
        self.intents[intent.key] = intent
        self._note("intent", intent.key, intent)

    def clear_intent(self, key: str) -> Intent | None:
        self._note("unintent", key)
        return self.intents.pop(key, None)

    def put_users(self, users: Mapping[str, str]) -> None:
        """Remember resolved users (UPN in lower case -> object id)."""
        if users:
            self.users.update(users)
            self._note("users", dict(users))

    def put_group(self, ref: str, record: GroupRecord) -> None:
        """Remember a group as read from Graph under the manifest's ``group:`` text."""
        self.groups[ref.lower()] = record
        self._note("group", ref.lower(), record)

    def set_protected(self, key: str, protected: bool) -> None:
        if protected:
            self.protected.add(key)
        else:
            self.protected.discard(key)
        self._note("protect", key, protected)

    def put_workspace(self, key: str, workspace: Workspace) -> None:
        """Record the apps and tabs provision manages in the chat of ``key`` (empty: none)."""
        if workspace:
            self.workspaces[key] = workspace
        else:
            self.workspaces.pop(key, None)
        self._note("ws", key, workspace)

    def put_deleted(self, key: str, deleted: DeletedChat) -> None:
        self.deleted[key] = deleted
        self._note("deleted", key, deleted)

    def drop_deleted(self, key: str) -> DeletedChat | None:
        self._note("undeleted", key)
        return self.deleted.pop(key, None)

    def set_last_plan(self, plan_id: str | None) -> None:
        self.last_plan_id = plan_id
        self._note("plan", plan_id)

    def _note(self, *change: Any) -> None:
        if self._log is not None:
            self._log.append(change)

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
            groups=dict(self.groups),
            protected=set(self.protected),
            last_plan_id=self.last_plan_id,
            deleted=dict(self.deleted),
            workspaces=dict(self.workspaces),
            tenant_id=self.tenant_id,
            cloud=self.cloud,
            exists=self.exists,
            _encoded=self._encoded,
            _source=self._source,
        )

    def prepare(self, pause: Callable[[], None] | None = None) -> None:
        """Take the unchanged chats' encoded lines from the file this state was read from
        now (``_adopt_source``; else the next ``encode`` does it), calling ``pause()`` between
        steps."""
        if self._source:
            _adopt_source(self._source, self._encoded, pause)

    def encode(self, serial: int | None = None) -> bytes:
        """The state file's bytes (with ``serial`` instead of ``self.serial`` if given).

        One chat per line keeps the file readable and diffable. Each chat's line is cached
        against its record object, which is frozen, so a write re-encodes only the records
        replaced since the last one: the apply executor writes after every change.
        """
        chats = list(self.chats.items())  # a snapshot: safe against a concurrent put_chat
        chats.sort()  # by key (keys are distinct: records are never compared)
        cache = self._encoded
        if self._source:
            _adopt_source(self._source, cache)
        # C-level maps and comprehensions, not a loop: at 100,000 chats this is the cost of
        # every compaction.
        hits = list(map(cache.get, map(itemgetter(0), chats)))
        lines = [
            hit[1] if hit is not None and hit[0] is record else b""
            for (_, record), hit in zip(chats, hits, strict=True)
        ]
        for i in [i for i, line in enumerate(lines) if not line]:
            key, record = chats[i]
            lines[i] = f"    {_dumps(key)}: {_dumps(record.to_dict())}".encode()
            cache[key] = (record, lines[i])
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
        if self.groups:
            groups = {k: v.to_dict() for k, v in sorted(self.groups.items())}
            tail[-2] += ","
            tail.insert(-1, f'  "groups": {_dumps(groups)}')
        if self.deleted:
            deleted = {k: v.to_dict() for k, v in sorted(self.deleted.items())}
            tail[-2] += ","
            tail.insert(-1, f'  "deleted": {_dumps(deleted)}')
        if self.workspaces:
            spaces = {k: v.to_dict() for k, v in sorted(self.workspaces.items())}
            tail[-2] += ","
            tail.insert(-1, f'  "workspaces": {_dumps(spaces)}')
        if not lines:
            parts.pop()
        out = "\n".join(parts).encode() + b"\n"
        if lines:
            out += b",\n".join(lines) + b"\n"
        return out + "\n".join(tail).encode()


def _adopt_source(
    source: dict[str, Any],
    cache: dict[str, tuple[ChatRecord, bytes]],
    pause: Callable[[], None] | None = None,
) -> None:
    """Fill the encoding cache from the file the state was read from, so that the first
    write after a read costs a copy of the unchanged chats' lines rather than encoding each
    again (the journal's compaction of a 100,000-chat state: issue 16).

    Only a file in this module's layout is used: exactly one line per chat between the
    ``"chats"`` line and its closing brace, each ``    "KEY": {...}``, the KEYs exactly the
    chats decoded from that file. Anything else (an edited or pretty-printed file) is simply
    encoded anew. A chat replaced since the read is not taken (the cache checks the record's
    identity). The work goes in steps of about ``_STEP`` bytes, with ``pause()`` between
    them: run beside an apply, no step keeps the other threads from the interpreter long.
    """
    raw, decoded = source.pop("raw", b""), source.pop("chats", {})
    opening = b'\n  "chats": {\n'
    start = raw.find(opening) + len(opening)
    end = raw.rfind(b'\n  },\n  "intents": ')
    n = len(decoded)
    if start < len(opening) or end < start or not n:
        return
    keys: list[str] = []
    lines: list[bytes] = []
    pos = start
    while pos < end:
        stop = raw.find(b",\n", min(pos + _STEP, end), end)
        stop = end if stop < 0 else stop
        # A JSON string holds no raw newline: the chats are separated by ",\n" alone.
        part = raw[pos:stop].split(b",\n")
        if not all(
            [line[:5] == b'    "' and line[-1:] == b"}" and b"\n" not in line for line in part]
        ):
            return
        try:
            keys += [_key(line[5 : line.find(b'": {', 5)]) for line in part]
        except ValueError:  # not "KEY": {, or not UTF-8: encode anew
            return
        lines += part
        pos = stop + 2
        if pause is not None:
            pause()
    if len(lines) != n or len(set(keys)) != n or decoded.keys() != set(keys):
        return
    # Each of the n lines starts a distinct one of the n chats the JSON parser found in this
    # object, so each line is exactly that chat. An entry replaced meanwhile by a newer
    # record's line is only a cache miss (the record's identity is checked on use).
    step = max(1, n * _STEP // max(1, end - start))
    for i in range(0, n, step):
        chunk = keys[i : i + step]
        records = map(decoded.__getitem__, chunk)
        cache.update(zip(chunk, zip(records, lines[i : i + step], strict=True), strict=True))
        if pause is not None:
            pause()


def _key(name: bytes) -> str:
    if b"\\" in name:  # an escape: rare, let JSON decode it
        key = json.loads(b'"' + name + b'"')
        if not isinstance(key, str):
            raise ValueError(name)
        return key
    if b'"' in name:
        raise ValueError(name)
    return name.decode()


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def iter_keys(state: State) -> Iterator[str]:
    """Every key the state knows: managed chats and pending creations, sorted."""
    yield from sorted(set(state.chats) | set(state.intents))
