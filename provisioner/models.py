"""The desired state: frozen value objects built from manifests, planned from, and sent to Graph.

These types are deliberately plain: the manifest loader builds them, the planner compares them
with state, and ``Chat.request_body`` renders exactly the ``POST /chats`` body the contract fixes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

#: A Microsoft Entra object or tenant id (a GUID), any case.
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")

DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"

ONE_ON_ONE = "oneOnOne"
GROUP = "group"
CHAT_TYPES = (ONE_ON_ONE, GROUP)
ROLES = ("owner", "guest")
HISTORY_NONE = "none"
HISTORY_ALL = "all"
HISTORIES = (HISTORY_NONE, HISTORY_ALL)
#: ``visibleHistoryStartDateTime`` that shows a new member the whole chat history
#: (api-reference/v1.0/api/chat-post-members.md, example 3); omitting it shares none (example 2).
ALL_HISTORY_START = "0001-01-01T00:00:00Z"


def since_time(text: str) -> str | None:
    """``history: {since: ...}`` as the UTC time Graph takes (``2025-03-01T00:00:00Z``): a
    date is midnight UTC, a time without an offset is UTC. None when it is no real date."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_start(history: str | None) -> str | None:
    """``visibleHistoryStartDateTime`` for a member added to an existing chat: ``all`` is
    ``0001-01-01T00:00:00Z`` (the whole history, chat-post-members.md example 3); ``none``
    (or None) omits it (from when they join, example 2); otherwise the ``since`` time."""
    if history is None or history == HISTORY_NONE:
        return None
    if history == HISTORY_ALL:
        return ALL_HISTORY_START
    return history


#: ``membership:`` policies (issue 22). ``exact``: the manifest lists every member; anyone else
#: is removed. ``additive``: provision adds and updates the members it declares and removes only
#: members it added itself; members added by someone else are left alone ("unmanaged").
MEMBERSHIP_EXACT = "exact"
MEMBERSHIP_ADDITIVE = "additive"
MEMBERSHIPS = (MEMBERSHIP_EXACT, MEMBERSHIP_ADDITIVE)
#: The default when neither the chat nor ``defaults.membership`` sets one: ``exact``, what every
#: manifest meant before the field existed, so upgrading provision removes no one it did not
#: remove before and keeps no one it removed before (README, "Membership policy").
DEFAULT_MEMBERSHIP = MEMBERSHIP_EXACT
#: Teams' limit for a group chat (graph-facts: "A group chat holds at most 250 members").
MAX_GROUP_MEMBERS = 250
#: "Only 200 members can be added at one time" (Teams limits documentation,
#: Teams/limits-specifications-teams.md in MicrosoftDocs/OfficeDocs-SkypeForBusiness): a
#: ``POST /chats`` with more fails (msgraph-sdk-powershell#1156 saw 98 of 400 added). A bigger
#: group chat is created with this many and the rest are added one by one (issue 22).
MAX_MEMBERS_AT_ONCE = 200


@dataclass(frozen=True)
class Source:
    """Where a value came from in a manifest (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Member:
    """A chat member as the manifest states it. ``user`` is a GUID or a UPN, as written."""

    user: str
    role: str = "owner"
    tenant_id: str | None = None
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)
    # How the member reached the chat when not named in it directly: "set NAME" (a
    # ``memberSets`` entry, issue 22). Shown in plans; not part of the member's identity.
    via: str | None = field(default=None, compare=False, hash=False)

    @property
    def identity(self) -> str:
        """Case-insensitive identity used to compare members (GUIDs and UPNs are both
        case-insensitive in Entra ID)."""
        return self.user.lower()

    def request_body(
        self, graph_url: str = DEFAULT_GRAPH_URL, *, history: str | None = None
    ) -> dict[str, object]:
        """The member as Graph takes it in ``POST /chats`` and ``POST /chats/{id}/members``.

        ``history`` is the chat's ``history`` setting, for a member added to an existing chat
        only (``history_start``): ``all`` adds ``visibleHistoryStartDateTime:
        0001-01-01T00:00:00Z`` (the whole history, chat-post-members.md example 3); ``none``/
        None omit it (no history, example 2); a ``since`` time is sent as it is. Creation
        bodies never carry it (contract: "Request bodies").
        """
        # Shape from Graph "Create chat" (api-reference/v1.0/api/chat-post.md), examples 1-5:
        # an aadUserConversationMember with roles and a user@odata.bind URL; tenantId only for
        # out-of-tenant (federated) users, example 5.
        body: dict[str, object] = {
            "@odata.type": "#microsoft.graph.aadUserConversationMember",
            "roles": [self.role],
            "user@odata.bind": f"{graph_url.rstrip('/')}/users('{odata_key(self.user)}')",
        }
        if self.tenant_id:
            body["tenantId"] = self.tenant_id
        start = history_start(history)
        if start is not None:
            body["visibleHistoryStartDateTime"] = start
        return body


@dataclass(frozen=True)
class SetRef:
    """A ``set: NAME`` member entry: every member of the named ``memberSets`` list, with
    ``role`` (when given) for each of them. Expanded before planning
    (``manifest.membersets``)."""

    name: str
    role: str | None = None
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class GroupRef:
    """A ``group: <object id or mail>`` member entry: the Entra ID group's users, nested
    groups followed (``GET /groups/{id}/transitiveMembers/microsoft.graph.user``), read from
    Graph whenever a plan refreshes (``plans.groups``). ``role`` is the role of its member
    accounts; its guests are always ``guest`` (chat-post.md)."""

    group: str
    role: str | None = None
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def identity(self) -> str:
        return self.group.lower()


@dataclass(frozen=True)
class MemberSet:
    """A named list of member entries from a manifest's top-level ``memberSets``."""

    name: str
    entries: tuple[Member | SetRef | GroupRef, ...]
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)


def odata_key(value: str) -> str:
    """``value`` as the inside of an OData key literal in a URL: a single quote is doubled
    (OData ABNF, ``SQUOTE-in-string``) and '%' and '#' are percent-encoded so that a guest UPN
    like ``ann_fabrikam.com#EXT#@contoso.onmicrosoft.com`` is not cut at a URL fragment. Plain
    GUIDs and UPNs, which is nearly every user, come out unchanged, as the contract shows them.
    """
    return value.replace("%", "%25").replace("#", "%23").replace("'", "''")


#: Teams' built-in tab apps, usable in ``tabs:`` without an ``apps:`` entry (Graph's
#: "Configuring the built-in tab types": the Website tab and the file viewers).
BUILTIN_TAB_APPS = frozenset(
    {
        "com.microsoft.teamspace.tab.web",
        "com.microsoft.teamspace.tab.file.staticviewer.word",
        "com.microsoft.teamspace.tab.file.staticviewer.excel",
        "com.microsoft.teamspace.tab.file.staticviewer.powerpoint",
        "com.microsoft.teamspace.tab.file.staticviewer.pdf",
    }
)


@dataclass(frozen=True)
class App:
    """An ``apps:`` entry (issue 24): a Teams app to install in the chat, named by its catalog
    ``id``, its ``externalId`` or its display ``name`` (exactly one; ``ref`` says which), with
    the resource-specific permissions to consent to (``(permissionValue, permissionType)``)."""

    by: str  # "id" | "externalId" | "name"
    value: str
    consent: tuple[tuple[str, str], ...] = ()
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def ref(self) -> str:
        """How the manifest names it, e.g. ``name:Incident Bot``; the state remembers it."""
        return f"{self.by}:{self.value}"


def tab_configuration(
    entity_id: str | None, content_url: str | None, website_url: str | None, remove_url: str | None
) -> dict[str, str | None]:
    """Graph's teamsTabConfiguration (chat-post-tabs.md): a manifest's tab and a recorded one."""
    return {
        "entityId": entity_id,
        "contentUrl": content_url,
        "websiteUrl": website_url,
        "removeUrl": remove_url,
    }


@dataclass(frozen=True)
class Tab:
    """A ``tabs:`` entry: a tab pinned to the chat, by display name, from ``app`` (a built-in
    tab app id, or the id, externalId or name of one of the chat's ``apps``)."""

    name: str
    app: str
    entity_id: str | None = None
    content_url: str | None = None
    website_url: str | None = None
    remove_url: str | None = None
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)

    def configuration(self) -> dict[str, str | None]:
        return tab_configuration(
            self.entity_id, self.content_url, self.website_url, self.remove_url
        )


@dataclass(frozen=True)
class Chat:
    """One desired chat. ``key`` is its stable identity in state.

    ``history`` (group chats): how much of the chat history members added later see, ``none``,
    ``all``, or the UTC time of a ``since:`` (``2025-03-01T00:00:00Z``, ``since_time``).
    ``protect``: a planned delete of this chat is an error (recorded in state, so it still
    holds once the chat is removed from the manifest). ``membership``: ``exact`` or
    ``additive`` (``MEMBERSHIPS``), what happens to members the manifest does not list.
    """

    key: str
    chat_type: str
    members: tuple[Member, ...]
    topic: str | None = None
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)
    history: str = HISTORY_NONE
    protect: bool = False
    membership: str = DEFAULT_MEMBERSHIP
    # The member entries as written, in order, when some are ``set:`` or ``group:`` entries
    # (empty when every entry names a user: then ``members`` is the list as written).
    # ``members`` holds the users named directly until ``manifest.membersets`` expands the
    # sets in place; ``groups`` are the ``group:`` entries, whose users join ``members`` at
    # plan time (``plans.groups``), after the others.
    entries: tuple[Member | SetRef | GroupRef, ...] = field(
        default=(), compare=False, hash=False, repr=False
    )
    groups: tuple[GroupRef, ...] = ()
    #: ``expires`` as written (a date or a date and time; `expiry_of` reads it), or None.
    expires: str | None = None
    #: Where a generated chat came from (``generator NAME, FILE:LINE``); None when written
    #: by hand (``manifest.generators``).
    origin: str | None = field(default=None, compare=False, hash=False)
    #: Issue 24: apps installed in the chat and tabs pinned to it (empty: none managed).
    apps: tuple[App, ...] = ()
    tabs: tuple[Tab, ...] = ()

    @property
    def additive(self) -> bool:
        return self.membership == MEMBERSHIP_ADDITIVE

    @property
    def member_identities(self) -> frozenset[str]:
        return frozenset(m.identity for m in self.members)

    def request_body(self, graph_url: str = DEFAULT_GRAPH_URL) -> dict[str, object]:
        """Exactly Graph's ``POST /chats`` body (contract: "Request bodies"), with at most
        ``MAX_MEMBERS_AT_ONCE`` members (the first ones, in the manifest's order)."""
        body: dict[str, object] = {"chatType": self.chat_type}
        if self.topic is not None:
            body["topic"] = self.topic
        body["members"] = [m.request_body(graph_url) for m in self.members[:MAX_MEMBERS_AT_ONCE]]
        return body


def expiry_of(text: str) -> datetime | None:
    """The moment ``expires: TEXT`` means, in UTC: a date alone is 00:00 UTC that day; a date
    and time without an offset is UTC. None when it is not a real date or time (2026-02-30)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def one_on_one_key(user_a: str, user_b: str) -> str:
    """The key of a oneOnOne chat that has none in the manifest: derived from its member pair,
    order- and case-independent, and valid under the key pattern ``[a-z0-9][a-z0-9._-]{0,127}``.
    """
    pair = "\n".join(sorted((user_a.lower(), user_b.lower())))
    return "oneonone-" + hashlib.sha256(pair.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Move:
    """A ``moved:`` entry: the chat state knows as ``from_key`` is now ``to_key`` (like
    Terraform's ``moved`` blocks): its state record is renamed, the chat is not recreated."""

    from_key: str
    to_key: str
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Import:
    """An ``import:`` entry: adopt the existing chat ``chat_id`` as ``key`` on the next apply
    (like Terraform's import blocks), checked by ``manifest.imports``."""

    key: str
    chat_id: str
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class GroupGenerator:
    """A generator whose rows are the users of an Entra ID group (``source: {group: X}``):
    only Graph knows them, so it is expanded when a plan has read the group (issue 23)."""

    name: str
    group: str  # object id or mail, as written
    source: Source | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def identity(self) -> str:
        return self.group.lower()


@dataclass(frozen=True)
class DesiredState:
    """Every chat of one run, from all manifest files, ordered by key, and the ``moved:``
    entries of all files (in file order), already checked by ``provisioner.manifest.moves``.
    ``deferred``: the group generators not expanded yet (their chats are not in ``chats``)."""

    chats: tuple[Chat, ...]
    files: tuple[str, ...] = ()
    digest: str = ""  # sha256 over the manifest files' bytes, in order
    moves: tuple[Move, ...] = ()
    imports: tuple[Import, ...] = ()
    deferred: tuple[GroupGenerator, ...] = ()

    def by_key(self) -> dict[str, Chat]:
        return {c.key: c for c in self.chats}
