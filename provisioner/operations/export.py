"""``provision export``: a manifest of the chats a user is in, to bring a tenant under management.

The chats come from ``GET /users/{id}/chats`` (api-reference/v1.0/api/chat-list.md), then each
is read with all its members through the batched reader refresh uses: the list's own
``$expand=members`` is capped at 25 members per chat (chat-list.md, known issue), which would
silently drop people. Members are written by UPN (one batched ``GET /users/{id}``), out-of-tenant
members by object id with their ``tenantId``.

Keys are generated, stable and readable: a group chat's slugified topic, a oneOnOne chat's two
user names, then 6 hex digits of the sha256 of the chat id (more when two keys would collide),
e.g. ``project-x-3fa2c1`` or ``dm-adele-megan-0b5e77``. The same chat gets the same key in every
export, whoever exports it.

Chats a manifest cannot describe are skipped, each with its reason (meeting chats, a topic
with ':', a group chat left with one member...). The manifest is valid under the schema; the
exported chats can be recorded with ``provision import`` (the commands are in the manifest's
comments) or at once with ``export --import-to-state``, after which ``plan`` shows no changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from provisioner import __version__
from provisioner.errors import InputError, StateError
from provisioner.graph.client import GraphClient
from provisioner.graph.errors import GraphNotFound
from provisioner.graph.fallback import first_accepted
from provisioner.manifest.schema import load_schema
from provisioner.models import GROUP, ONE_ON_ONE
from provisioner.operations.adopt import check_free, member_upns, record_from_live
from provisioner.operations.refresh import is_manageable, read_chats
from provisioner.operations.state import OnTakeover, check_client_home, locked
from provisioner.plans.live import LiveChat
from provisioner.states.records import ChatRecord, State

if TYPE_CHECKING:
    from provisioner.states.store import StateStore

_CHAT_SCHEMA = load_schema()["$defs"]["chat"]["properties"]
_TOPIC_MAX = int(_CHAT_SCHEMA["topic"]["maxLength"])
HASH_DIGITS = 6
SLUG_MAX = 40


@dataclass(frozen=True)
class ExportedChat:
    """One chat of the export: its generated key and its record (members as written)."""

    key: str
    record: ChatRecord


@dataclass(frozen=True)
class Export:
    user: str  # as given on the command line
    user_id: str
    chat_type: str | None
    chats: tuple[ExportedChat, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (chat id, reason)
    users: dict[str, str] = field(default_factory=dict)  # UPN (lower case) -> object id


def export_chats(
    client: GraphClient,
    user: str,
    chat_type: str | None = None,
    *,
    managed: Mapping[str, str] | None = None,
) -> Export:
    """Every oneOnOne and group chat ``user`` (UPN or object id) is in, or only those of
    ``chat_type``, ordered by key. ``managed`` (state key -> chat id, from the state the
    export is imported into) keeps the keys of chats already managed, and generated keys
    clear of the others."""
    try:
        found = client.get_user(user, select=("id", "userPrincipalName"))
    except GraphNotFound:
        raise InputError(f"user {user!r} was not found in the directory (Graph: 404)") from None
    user_id = str(found["id"])
    listed = _list_chats(client, user_id, chat_type)
    wanted = (chat_type,) if chat_type else (ONE_ON_ONE, GROUP)
    # Checked here whatever Graph filtered: the filter is not documented (graph.fallback).
    # Once each, ids compared case-folded, as first spelled: pages of a list can repeat items
    # (a chat that moved while the list was paged), and one chat written twice is a manifest
    # that fails validation (issue 20).
    first: dict[str, str] = {}
    for c in listed:
        if c.get("chatType") in wanted:
            first.setdefault(str(c["id"]).casefold(), str(c["id"]))
    ids = list(first.values())
    live = read_chats(client, ids)
    skipped: list[tuple[str, str]] = []
    chats: list[LiveChat] = []
    for chat_id in ids:
        chat = live[chat_id]
        if chat.gone:
            skipped.append((chat_id, "deleted while the export ran"))
        elif not is_manageable(chat):
            skipped.append((chat_id, f"a {chat.chat_type} chat"))
        else:
            chats.append(chat)
    upns = member_upns(client, chats)
    records = []
    for chat in chats:
        record = record_from_live(chat, upns)
        reason = _unexportable(record)
        if reason:
            skipped.append((chat.chat_id, reason))
        else:
            records.append(record)
    exported = tuple(sorted(_keyed(records, managed or {}), key=lambda e: e.key))
    return Export(
        user=user,
        user_id=user_id,
        chat_type=chat_type,
        chats=exported,
        skipped=tuple(skipped),
        users={upn.lower(): oid for oid, upn in upns.items()},
    )


def _list_chats(
    client: GraphClient, user_id: str, chat_type: str | None
) -> Iterator[dict[str, Any]]:
    """The user's chats (chat-list.md), filtered by Graph on ``chatType`` when it accepts
    that undocumented filter, else all of them (a 400 to the filter falls back)."""

    def form(kind: str | None) -> Callable[[], Iterator[dict[str, Any]]]:
        return lambda: client.list_user_chats(user_id, chat_type=kind, expand_members=False, top=50)

    forms = [("$filter=chatType eq", form(chat_type))] if chat_type else []
    chats, _ = first_accepted([*forms, ("a plain list", form(None))])
    return chats


def _unexportable(record: ChatRecord) -> str | None:
    """Why the manifest schema and rules cannot describe this chat, or None."""
    people = {m.object_id.lower() for m in record.members if m.object_id}
    if record.chat_type == ONE_ON_ONE and len(people) != 2:
        return f"a oneOnOne chat with {len(people)} user member(s)"
    if record.chat_type == GROUP and len(people) < 2:
        return f"a group chat with {len(people)} user member(s); a manifest needs two"
    if record.topic is not None and (":" in record.topic or len(record.topic) > _TOPIC_MAX):
        return "its topic has a ':' or more than 250 characters, which Graph no longer allows"
    for m in record.members:
        if m.tenant_id and m.role != "owner":
            return f"out-of-tenant member {m.user} is a {m.role}; the manifest rules need owner"
    return None


# -- keys ---------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """Lowercase letters and digits joined by '-', at most ``SLUG_MAX`` characters."""
    # Accents folded (NFKD, then ASCII): "Équipe" -> "equipe", not "quipe".
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    out = "-".join(words)[:SLUG_MAX].strip("-")
    return out


def _base(record: ChatRecord) -> str:
    if record.chat_type == GROUP:
        return slug(record.topic or "") or "group"
    names = sorted(slug(m.user.split("@", 1)[0]) or "user" for m in record.members)
    return "dm-" + "-".join(n[: SLUG_MAX // 2] for n in names)


def chat_key(record: ChatRecord, digits: int = HASH_DIGITS) -> str:
    digest = hashlib.sha256(record.chat_id.encode("utf-8")).hexdigest()[:digits]
    return f"{_base(record)}-{digest}"


def _keyed(records: Sequence[ChatRecord], managed: Mapping[str, str]) -> list[ExportedChat]:
    known = {chat_id.casefold(): key for key, chat_id in managed.items()}
    taken = set(managed)
    fresh = [r for r in records if r.chat_id.casefold() not in known]
    digits = HASH_DIGITS
    while True:
        keys = [chat_key(r, digits) for r in fresh]
        if (len(set(keys)) == len(keys) and not taken.intersection(keys)) or digits >= 64:
            break
        digits += 4  # two chat ids share a prefix of their hash: longer suffixes for all
    generated = dict(zip((r.chat_id for r in fresh), keys, strict=True))
    return [
        ExportedChat(known.get(r.chat_id.casefold()) or generated[r.chat_id], r) for r in records
    ]


# -- the manifest -------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@'+-]*$")


def yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar that reads back as exactly this string: plain when that is
    safe, else double-quoted with escapes for anything a YAML reader would not keep (control
    characters, line separators, a BOM, lone surrogates)."""
    if _PLAIN.match(text) and yaml.safe_load(text) == text:
        return text
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif code in (0x2028, 0x2029, 0xFEFF) or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_manifest(export: Export, *, graph_url: str) -> str:
    """The export as a commented manifest (version 1) that validates under the schema."""
    what = f"{export.chat_type} chats" if export.chat_type else "oneOnOne and group chats"
    lines = [
        f"# The {what} of {export.user} (object id {export.user_id}), exported by provision "
        f"{__version__} from {graph_url}.",
        "# Review it, then put the chats under management, each with the import command above",
        "# it, or all at once with: provision export ... --import-to-state. After that,",
        "# `provision plan` on this file shows no changes.",
    ]
    for chat_id, reason in export.skipped:
        lines.append(f"# Skipped chat {chat_id}: {reason}.")
    lines += ["version: 1", "chats:" + ("" if export.chats else " []")]
    for item in export.chats:
        record = item.record
        lines.append(f"  # provision import {item.key} {_shell_word(record.chat_id)}")
        lines.append(f"  - key: {yaml_scalar(item.key)}")
        lines.append(f"    chatType: {record.chat_type}")
        if record.topic is not None:
            lines.append(f"    topic: {yaml_scalar(record.topic)}")
        lines.append("    members:")
        for m in record.members:
            lines.append(f"      - user: {yaml_scalar(m.user)}")
            if m.role != "owner":
                lines.append(f"        role: {m.role}")
            if m.tenant_id:
                lines.append(f"        tenantId: {yaml_scalar(m.tenant_id)}")
    return "\n".join(lines) + "\n"


def _shell_word(text: str) -> str:
    # Chat ids hold ':' and '@' (fine in a shell word); quote anything else unusual.
    return text if re.fullmatch(r"[A-Za-z0-9:@._-]+", text) else json.dumps(text)


def import_export(export: Export, state: State) -> list[str]:
    """Record every exported chat in ``state`` (under the lock, by the caller), as ``import``
    would; chats already managed under the same key are left as they are. Checks everything
    first: on any conflict (a key managed for another chat, a chat managed under another
    key) nothing is recorded and StateError names every conflict. Returns the keys added."""
    conflicts = []
    todo = []
    for item in export.chats:
        current = state.chats.get(item.key)
        if current is not None and current.chat_id.casefold() == item.record.chat_id.casefold():
            continue
        try:
            check_free(state, item.key, item.record.chat_id)
        except StateError as exc:
            conflicts.append(exc.message)
            continue
        todo.append(item)
    if conflicts:
        raise StateError(
            "cannot import the exported chats; nothing was recorded:\n"
            + "\n".join(f"  - {c}" for c in conflicts),
            hint="remove the old keys with provision state rm KEY, or import the chats one by "
            "one with provision import KEY CHAT_ID",
        )
    for item in todo:
        state.put_chat(item.key, item.record)
    state.users.update(export.users)
    return [item.key for item in todo]


def record_export(
    store: StateStore,
    export: Export,
    *,
    on_takeover: OnTakeover | None = None,
    client: object = None,
) -> list[str]:
    """``export --import-to-state``: `import_export` under the state's lock, then written.
    Returns the keys added. ``client`` (the one that read the chats) says where they are: a
    state of another tenant or cloud is refused before it changes (issue 15)."""
    with locked(store, "export", on_takeover=on_takeover) as state:
        check_client_home(state, store.location, client)
        added = import_export(export, state)
        store.write(state)
    return added
