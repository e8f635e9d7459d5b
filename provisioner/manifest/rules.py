"""Graph's rules for chats that JSON Schema cannot express: they compare members with each other
and chats across files.

The schema already checks each field on its own (types, patterns, member counts per chat type,
no topic on oneOnOne, key required for group). What is left, with where Graph says it:

* the same user twice in one chat, case-insensitively (GUIDs and UPNs both are): a oneOnOne
  chat needs two *distinct* members and a group chat at least two (chat.md, chatType values:
  "The roster size (of at least two people)");
* an out-of-tenant member (``tenantId`` set) must be an owner (chat-post.md, request body,
  ``members``: "Out-of-tenant external users must be assigned with owner role"), and named by
  object id: this tenant's directory cannot resolve another tenant's UPN, Graph reports such
  members by ``userId`` with a null ``email`` (MicrosoftDocs/msteams-docs#2190), and
  chat-post.md's example 5 names the federated user by object id with its ``tenantId``;
* a group chat holds at most 250 members (Teams' limit for a group chat, graph-facts);
* one oneOnOne chat per pair of users (chat-post.md: "Only one one-on-one chat can exist
  between two members"), so two entries for one pair would fight over the same chat;
* keys are unique across all manifest files of a run (contract: the key is the chat's identity
  in state);
* a topic has a character that is not white space: the schema's ``minLength: 1`` lets ``" "``
  through, and Graph refuses such a title when the chat is created (issue 20; the docs do
  not say so, so the safe side is to refuse it before any change);
* ``expires`` names a moment that exists (the schema's pattern lets 2026-02-30 through).

All docs: ``api-reference/v1.0/{api/chat-post.md,resources/chat.md}`` in
microsoftgraph/microsoft-graph-docs-contrib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yaml.nodes import Node

from provisioner.errors import Diagnostic
from provisioner.manifest.yamlload import JsonPath, format_path, locate, position
from provisioner.models import (
    BUILTIN_TAB_APPS,
    GROUP,
    GUID_RE,
    HISTORIES,
    MAX_GROUP_MEMBERS,
    ONE_ON_ONE,
    Chat,
    Member,
    Source,
    expiry_of,
    since_time,
)


@dataclass(frozen=True)
class Entry:
    """A chat built from a manifest, with where it came from (file, index, node)."""

    chat: Chat
    file: str
    index: int
    root: Node  # the file's document node, to point diagnostics at fields
    # A chat that has schema errors, rebuilt leniently so its members can still be checked
    # (every problem at once). Unreadable members are user "" and an invalid key is "": the
    # cross-chat rules use what is left (a valid key, a readable pair), so a duplicate key
    # or pair is reported together with the chat's other errors (issue 25).
    partial: bool = False
    # A generated chat (``manifest.generators``): ``root`` is its own document at the row,
    # ``display`` the template's path shown instead of ``chats[index]``, ``origin`` added to
    # every hint (the generator and the template's position).
    display: JsonPath | None = None
    origin: str | None = None
    # Put before every message: which of a group's users made the chat (``groupsource``).
    label: str | None = None


def check(entries: Sequence[Entry]) -> list[Diagnostic]:
    """Every rule violation among ``entries`` (in manifest order: the first occurrence of a
    key or pair is the one kept, later ones are reported)."""
    out: list[Diagnostic] = []
    keys: dict[str, Entry] = {}
    pairs: dict[frozenset[str], Entry] = {}
    for entry in entries:
        problems, identities = _check_members(entry)
        out.extend(problems)
        if entry.chat.history not in HISTORIES and since_time(entry.chat.history) is None:
            out.append(
                _diag(
                    entry,
                    ("chats", entry.index, "history", "since"),
                    f"history since '{entry.chat.history}' is not a real date",
                    "write an existing date, like '2025-03-01'",
                )
            )
        out.extend(_check_workspace(entry))
        expires = entry.chat.expires
        if expires is not None and expiry_of(expires) is None:
            out.append(
                _diag(
                    entry,
                    ("chats", entry.index, "expires"),
                    f"'{expires}' is not a date or time that exists",
                    "a date (2026-12-31) or a date and time (2026-12-31T18:00:00+01:00)",
                )
            )
        chat = entry.chat
        if chat.topic is not None and chat.topic and not chat.topic.strip():
            out.append(
                _diag(
                    entry,
                    ("chats", entry.index, "topic"),
                    "topic is only white space",
                    "give the chat a title with a visible character, or leave topic out",
                )
            )
        readable = not entry.partial or all(m.user for m in chat.members)
        if chat.chat_type == ONE_ON_ONE and len(identities) == 2 and readable:
            pair = frozenset(identities)
            if pair in pairs:
                users = " and ".join(f"'{m.user}'" for m in chat.members)
                out.append(
                    _diag(
                        entry,
                        ("chats", entry.index, "members"),
                        f"a oneOnOne chat between {users} is already defined at "
                        f"{_where(pairs[pair])}",
                        "Graph keeps a single oneOnOne chat per pair of users",
                    )
                )
                continue
            pairs[pair] = entry
        if not chat.key:  # a broken chat's invalid or missing key
            continue
        if chat.key in keys:
            out.append(
                _diag(
                    entry,
                    ("chats", entry.index, "key"),
                    f"duplicate key '{chat.key}': already used at {_where(keys[chat.key])}",
                    "keys identify chats in state and must be unique across all manifests",
                )
            )
        else:
            keys[chat.key] = entry
    return out


def _check_members(entry: Entry) -> tuple[list[Diagnostic], dict[str, int]]:
    """The rules within one chat's members, and each distinct member identity's first index."""
    out: list[Diagnostic] = []
    chat = entry.chat
    first_at: dict[str, int] = {}
    for j, member in enumerate(chat.members):
        here: JsonPath = ("chats", entry.index, "members", j)
        if not member.user:
            continue
        if member.identity in first_at:
            hint = (
                "a oneOnOne chat is between two different users"
                if (chat.chat_type == ONE_ON_ONE)
                else "list each user once"
            )
            out.append(
                _member_diag(
                    entry,
                    member,
                    (*here, "user"),
                    f"user '{member.user}' is already a member of this chat "
                    f"(members[{_written_index(chat, first_at[member.identity])}])",
                    hint,
                )
            )
        else:
            first_at[member.identity] = j
        if member.tenant_id and member.role != "owner":
            explicit = bool(chat.entries) or _has_field(entry.root, here, "role")
            out.append(
                _member_diag(
                    entry,
                    member,
                    (*here, "role"),
                    f"an out-of-tenant member (tenantId set) must be an owner, not a "
                    f"{member.role}"
                    + ("" if explicit or chat.entries else " (from defaults.role)"),
                    "Graph requires the owner role for users of other tenants; "
                    "set 'role: owner' on this member",
                )
            )
        if member.tenant_id and not GUID_RE.match(member.user):
            out.append(_external_upn(entry, member, here))
    out.extend(_member_count(entry, len(first_at)))
    return out, first_at


def _member_count(entry: Entry, distinct: int) -> list[Diagnostic]:
    chat = entry.chat
    where: JsonPath = ("chats", entry.index, "members")
    if chat.chat_type == GROUP and distinct > MAX_GROUP_MEMBERS:
        return [
            _diag(
                entry,
                where,
                f"a group chat holds at most {MAX_GROUP_MEMBERS} members; this one has {distinct}",
                "split the chat, or use a team and channels for larger groups",
            )
        ]
    if chat.chat_type == GROUP and chat.entries and not chat.groups and distinct < 2:
        # Sets can bring fewer people than the entries suggest (the schema counts entries).
        return [
            _diag(
                entry,
                where,
                f"a group chat needs at least two distinct members; its entries bring {distinct}",
                "add members, or use a oneOnOne chat",
            )
        ]
    return []


def _written_index(chat: Chat, j: int) -> int:
    """The index in the manifest's ``members`` list of the chat's j-th member."""
    if not chat.entries:
        return j
    member = chat.members[j]
    return next((i for i, e in enumerate(chat.entries) if e is member), j)


def _member_diag(
    entry: Entry, member: Member, path: JsonPath, message: str, hint: str | None
) -> Diagnostic:
    """A problem of one member: at its field in the chat, or (a chat with ``set:`` entries,
    whose members no longer line up with the list as written) where the member is written."""
    if not entry.chat.entries or member.source is None:
        return _diag(entry, path, message, hint)
    at = member.source
    where = f" (from {member.via})" if member.via else ""
    return Diagnostic(at.file, at.line, at.col, message + where, hint=hint)


def _check_workspace(entry: Entry) -> list[Diagnostic]:
    """Apps named once each, by exactly one of id/externalId/name; tabs named once each, each
    from a built-in tab app or one of the chat's apps (chat-post-tabs.md: "The corresponding
    app must already be installed in the chat")."""
    out: list[Diagnostic] = []
    chat = entry.chat
    here: JsonPath = ("chats", entry.index)
    refs: set[str] = set()
    seen_apps: dict[str, int] = {}
    for i, app in enumerate(chat.apps):
        if app.by in ("", "several"):
            out.append(
                _diag(
                    entry,
                    (*here, "apps", i),
                    "an app is named by exactly one of id, externalId or name",
                    "id: the catalog id; externalId: the id in the app's manifest; name: its "
                    "display name",
                )
            )
            continue
        if app.ref in seen_apps:
            out.append(
                _diag(
                    entry,
                    (*here, "apps", i, app.by),
                    f"app {app.value!r} is already listed (apps[{seen_apps[app.ref]}])",
                    "list each app once",
                )
            )
        seen_apps.setdefault(app.ref, i)
        refs.add(app.value)
    names: dict[str, int] = {}
    for i, tab in enumerate(chat.tabs):
        if tab.app not in refs and tab.app not in BUILTIN_TAB_APPS:
            out.append(
                _diag(
                    entry,
                    (*here, "tabs", i, "app"),
                    f"tab {tab.name!r} is from app {tab.app!r}, which is neither one of this "
                    f"chat's apps nor a built-in tab app",
                    "add the app to the chat's apps (its tabs need it installed), or use a "
                    "built-in one: " + ", ".join(sorted(BUILTIN_TAB_APPS)),
                )
            )
        folded = tab.name.casefold()
        if folded in names:
            out.append(
                _diag(
                    entry,
                    (*here, "tabs", i, "name"),
                    f"a tab named {tab.name!r} is already listed (tabs[{names[folded]}])",
                    "provision matches tabs by name: give each its own",
                )
            )
        names.setdefault(folded, i)
    return out


def _external_upn(entry: Entry, member: Member, here: JsonPath) -> Diagnostic:
    return _member_diag(
        entry,
        member,
        (*here, "user"),
        f"an out-of-tenant member (tenantId set) must be named by object id, not by UPN "
        f"'{member.user}': Graph reports other tenants' members by object id only, so provision "
        "could never recognise this member",
        "use the user's object id (a GUID from their home tenant) with tenantId, as Graph's "
        "'Create chat' example 5 does",
    )


def _where(entry: Entry) -> str:
    if entry.chat.source is not None:
        # A group's users share their generator's line: say which user made it.
        return f"{entry.chat.source} ({entry.label})" if entry.label else str(entry.chat.source)
    # A broken chat (rebuilt leniently) has no source: its node in the document has.
    _, node = locate(entry.root, ("chats", entry.index))
    line, col = position(node) if node is not None else (0, 0)
    return str(Source(entry.file, line, col))


def _has_field(root: Node, path: JsonPath, name: str) -> bool:
    key, _ = locate(root, (*path, name))
    return key is not None


def _diag(entry: Entry, path: JsonPath, message: str, hint: str | None) -> Diagnostic:
    if entry.display is not None and entry.chat.source is not None:  # generated: at its row
        line, col = entry.chat.source.line, entry.chat.source.col
    else:
        _, node = locate(entry.root, path)
        line, col = position(node)
    shown = path if entry.display is None else (*entry.display, *path[2:])
    if entry.origin is not None:
        hint = f"{hint}; {entry.origin}" if hint else entry.origin
    if entry.label is not None:
        message = f"{entry.label}: {message}"
    return Diagnostic(entry.file, line, col, message, format_path(shown), hint)
