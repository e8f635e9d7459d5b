"""Decoding a state file's bytes into a ``State``, naming the file and JSON path of any problem.

Reading a 100,000-chat state is on every plan's path, so the common shape takes a fast path
with inline type checks; anything else falls back to the field-by-field checks, which say
exactly what is wrong. Also decodes single records for the journal (``states.journal``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from provisioner import __version__
from provisioner.errors import StateError
from provisioner.fsutil import loads_json
from provisioner.models import CHAT_TYPES, ROLES
from provisioner.states.records import (
    MAX_SERIAL,
    STATE_FORMAT_VERSION,
    AppRecord,
    ChatRecord,
    DeletedChat,
    GroupRecord,
    GroupUser,
    Intent,
    MemberRecord,
    State,
    TabRecord,
    Workspace,
)
from provisioner.states.settling import Settling, settling_from


class _Bad(Exception):
    """A structural problem at a JSON path inside the state file."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


def lineage_of(head: bytes) -> str | None:
    """The lineage named in the first bytes of a state file (None when there is none there):
    the caller reads only the file's head, cheap enough to check before every backup."""
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
        state = _state_from(data)
        state._source.update(raw=raw, chats=dict(state.chats))
        return state
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
    value: str | None = _get(obj, name, "$", str, optional=True)
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
        added = _get(m, "added", w, bool, optional=True)
        out.append(
            MemberRecord(
                user=_get(m, "user", w, str),
                role=role,
                object_id=_get(m, "object_id", w, str, optional=True),
                tenant_id=_get(m, "tenant_id", w, str, optional=True),
                membership_id=_get(m, "membership_id", w, str, optional=True),
                added=added is not False,
                via=_get(m, "via", w, str, optional=True),
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
    added, via = m.get("added", True), m.get("via")
    if (
        type(user) is not str
        or role not in ROLES
        or (oid is not None and type(oid) is not str)
        or (tid is not None and type(tid) is not str)
        or (mid is not None and type(mid) is not str)
        or type(added) is not bool
        or (via is not None and type(via) is not str)
    ):
        raise _Slow
    if oid == user:
        oid = user  # one string, not two equal ones: a GUID member's id is its user
    return MemberRecord(user, role, oid, tid, mid, added, via)


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


def workspace_from_json(w: Any, where: str) -> Workspace:
    """One workspace as ``Workspace.to_dict`` wrote it; ValueError says what is wrong."""
    try:
        return _workspace(w, where)
    except _Bad as exc:
        raise ValueError(str(exc)) from exc


def _workspace(w: Any, where: str) -> Workspace:
    if not isinstance(w, dict):
        raise _Bad(where, "expected an object")
    apps = _list(w, "apps", where)
    tabs = _list(w, "tabs", where)
    return Workspace(
        tuple(_app(a, f"{where}.apps[{i}]") for i, a in enumerate(apps)),
        tuple(_tab(x, f"{where}.tabs[{i}]") for i, x in enumerate(tabs)),
    )


def _list(c: dict[str, Any], name: str, where: str) -> list[Any]:
    value = c.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{where}.{name}", "expected a list")
    return value


def _app(a: Any, where: str) -> AppRecord:
    if not isinstance(a, dict):
        raise _Bad(where, "expected an object")
    return AppRecord(
        app_id=_get(a, "app_id", where, str),
        ref=_get(a, "ref", where, str),
        installation_id=_get(a, "installation_id", where, str, optional=True),
    )


def _tab(x: Any, where: str) -> TabRecord:
    if not isinstance(x, dict):
        raise _Bad(where, "expected an object")
    return TabRecord(
        tab_id=_get(x, "tab_id", where, str),
        name=_get(x, "name", where, str),
        app_id=_get(x, "app_id", where, str),
        entity_id=_get(x, "entityId", where, str, optional=True),
        content_url=_get(x, "contentUrl", where, str, optional=True),
        website_url=_get(x, "websiteUrl", where, str, optional=True),
        remove_url=_get(x, "removeUrl", where, str, optional=True),
    )


def _settling(raw: Any, where: str) -> tuple[Settling, ...]:
    try:
        return settling_from(raw, where)
    except ValueError as exc:
        raise _Bad(where, str(exc)) from None


def _intent(key: str, i: Any, w: str) -> Intent:
    if not isinstance(i, dict):
        raise _Bad(w, "expected an object")
    return Intent(
        key=key,
        chat_type=_chat_type(i, w),
        members=_members(i.get("members"), f"{w}.members"),
        attempt_id=_get(i, "attempt_id", w, str),
        started_at=_get(i, "started_at", w, str),
        topic=_get(i, "topic", w, str, optional=True),
        graph_started_at=_get(i, "graph_started_at", w, str, optional=True),
    )


def chat_from_json(data: Any, where: str) -> ChatRecord:
    """One chat record as ``ChatRecord.to_dict`` wrote it; ValueError says what is wrong."""
    try:
        return _chat_checked(data, where)
    except _Bad as exc:
        raise ValueError(str(exc)) from exc


def group_from_json(data: Any, where: str) -> GroupRecord:
    """One group as ``GroupRecord.to_dict`` wrote it; ``_Bad`` says what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise _Bad(where, "expected an object with id, name, read_at and users")
    users = []
    for i, u in enumerate(data["users"]):
        w = f"{where}.users[{i}]"
        if not isinstance(u, dict):
            raise _Bad(w, "expected an object")
        guest = _get(u, "guest", w, bool, optional=True)
        users.append(
            GroupUser(
                _get(u, "id", w, str),
                _get(u, "upn", w, str, optional=True),
                bool(guest),
                _get(u, "name", w, str, optional=True),
                _get(u, "mail", w, str, optional=True),
            )
        )
    return GroupRecord(
        _get(data, "id", where, str),
        _get(data, "name", where, str),
        _get(data, "read_at", where, str),
        tuple(users),
    )


def group_json(data: Any, where: str) -> GroupRecord:
    """``group_from_json`` for the journal: ValueError says what is wrong."""
    try:
        return group_from_json(data, where)
    except _Bad as exc:
        raise ValueError(str(exc)) from exc


def intent_from_json(key: str, data: Any, where: str) -> Intent:
    """One intent as ``Intent.to_dict`` wrote it; ValueError says what is wrong."""
    try:
        return _intent(key, data, where)
    except _Bad as exc:
        raise ValueError(str(exc)) from exc


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
        intents[key] = _intent(key, i, f"$.intents[{key!r}]")
    users = _get(data, "users", "$", dict, optional=True) or {}
    for upn, oid in users.items():
        if not isinstance(oid, str):
            raise _Bad(f"$.users[{upn!r}]", "expected a string")
    groups = {
        str(ref): group_from_json(g, f"$.groups[{ref!r}]")
        for ref, g in (_get(data, "groups", "$", dict, optional=True) or {}).items()
    }
    protected = _get(data, "protected", "$", list, optional=True) or []
    for i, key in enumerate(protected):
        if not isinstance(key, str):
            raise _Bad(f"$.protected[{i}]", "expected a string")
    workspaces = {}
    for key, w in (_get(data, "workspaces", "$", dict, optional=True) or {}).items():
        workspaces[key] = _workspace(w, f"$.workspaces[{key!r}]")
    deleted = {}
    for key, d in (_get(data, "deleted", "$", dict, optional=True) or {}).items():
        if not isinstance(d, dict):
            raise _Bad(f"$.deleted[{key!r}]", "expected an object")
        try:
            deleted[key] = DeletedChat.from_dict(d)
        except ValueError as exc:
            raise _Bad(f"$.deleted[{key!r}]", str(exc)) from exc
    return State(
        lineage=lineage,
        serial=serial,
        format_version=STATE_FORMAT_VERSION,
        tool_version=str(data.get("tool_version", "")),
        chats=chats,
        intents=intents,
        users=dict(users),
        groups=groups,
        protected=set(protected),
        last_plan_id=_get(data, "last_plan_id", "$", str, optional=True),
        deleted=deleted,
        workspaces=workspaces,
        tenant_id=_short(data, "tenant_id"),
        cloud=_short(data, "cloud"),
        exists=True,
    )
