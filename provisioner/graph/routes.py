"""The Graph endpoints provision calls: their throttling scopes and the permission each needs.

One table serves the client (pacing, 403 messages) and ``$batch`` items alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from provisioner.graph.errors import GraphError
from provisioner.graph.pacing import (
    CHAT,
    CHAT_MEMBERS,
    DIRECTORY_READ,
    TENANT_DELETE,
    TENANT_READ,
    TENANT_TABS,
    TENANT_WRITE,
    USER_CHATS,
    Scope,
)


@dataclass(frozen=True)
class Route:
    scopes: tuple[Scope, ...]
    permission: str  # least-privileged application permission, as the API doc lists it


_ROUTES: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], Route]]] = [
    # api-reference/v1.0/api/chat-post.md
    ("POST", re.compile(r"^/chats/?$"), lambda m: Route((Scope(TENANT_WRITE),), "Chat.Create")),
    # chat-get.md
    (
        "GET",
        re.compile(r"^/chats/(?P<chat>[^/]+)/?$"),
        lambda m: Route(
            (Scope(TENANT_READ), Scope(CHAT, m["chat"])), "Chat.ReadBasic.All (or Chat.Read.All)"
        ),
    ),
    # chat-patch.md
    (
        "PATCH",
        re.compile(r"^/chats/(?P<chat>[^/]+)/?$"),
        lambda m: Route((Scope(TENANT_WRITE), Scope(CHAT, m["chat"])), "Chat.ReadWrite.All"),
    ),
    # chat-delete.md: "One delete request per second per tenant is allowed."
    (
        "DELETE",
        re.compile(r"^/chats/(?P<chat>[^/]+)/?$"),
        lambda m: Route(
            (Scope(TENANT_WRITE), Scope(TENANT_DELETE), Scope(CHAT, m["chat"])),
            "Chat.ManageDeletion.All",
        ),
    ),
    # Issue 24: apps in a chat (chat-*-installedapps.md) and tabs (chat-*-tabs.md). Tab
    # writes also count against TENANT_TABS, a conservative pace (see graph/pacing.py).
    (
        "GET",
        re.compile(r"^/chats/(?P<chat>[^/]+)/installedApps(/[^/]+)?/?$"),
        lambda m: Route(
            (Scope(TENANT_READ), Scope(CHAT, m["chat"])),
            "TeamsAppInstallation.ReadForChat.All (or TeamsAppInstallation.ReadWriteForChat.All)",
        ),
    ),
    (
        "POST|DELETE",
        re.compile(r"^/chats/(?P<chat>[^/]+)/installedApps(/[^/]+)?/?$"),
        lambda m: Route(
            (Scope(TENANT_WRITE), Scope(CHAT, m["chat"])),
            "TeamsAppInstallation.ReadWriteForChat.All (TeamsAppInstallation."
            "ReadWriteAndConsentForChat.All for an app with resource-specific consent)",
        ),
    ),
    (
        "GET",
        re.compile(r"^/chats/(?P<chat>[^/]+)/tabs(/[^/]+)?/?$"),
        lambda m: Route(
            (Scope(TENANT_READ), Scope(CHAT, m["chat"])),
            "TeamsTab.Read.All (or TeamsTab.ReadWriteForChat.All)",
        ),
    ),
    (
        "POST",
        re.compile(r"^/chats/(?P<chat>[^/]+)/tabs/?$"),
        lambda m: Route(
            (Scope(TENANT_WRITE), Scope(TENANT_TABS), Scope(CHAT, m["chat"])),
            "TeamsTab.Create (or TeamsTab.ReadWriteForChat.All)",
        ),
    ),
    (
        "PATCH|DELETE",
        re.compile(r"^/chats/(?P<chat>[^/]+)/tabs/[^/]+/?$"),
        lambda m: Route(
            (Scope(TENANT_WRITE), Scope(TENANT_TABS), Scope(CHAT, m["chat"])),
            "TeamsTab.ReadWriteForChat.All",
        ),
    ),
    # appcatalogs-list-teamsapps.md
    (
        "GET",
        re.compile(r"^/appCatalogs/teamsApps/?$"),
        lambda m: Route((Scope(TENANT_READ),), "AppCatalog.Read.All"),
    ),
    # chat-list-members.md
    (
        "GET",
        re.compile(r"^/chats/(?P<chat>[^/]+)/members(/[^/]+)?/?$"),
        lambda m: Route((Scope(TENANT_READ), Scope(CHAT, m["chat"])), "ChatMember.Read.All"),
    ),
    # chat-post-members.md, chat-delete-members.md; throttling-teams.md: 4 rpm per chat
    (
        "POST|DELETE",
        re.compile(r"^/chats/(?P<chat>[^/]+)/members(/[^/]+)?/?$"),
        lambda m: Route(
            (Scope(TENANT_WRITE), Scope(CHAT, m["chat"]), Scope(CHAT_MEMBERS, m["chat"])),
            "ChatMember.ReadWrite.All",
        ),
    ),
    # chat-list.md: GET /users/{id}/chats with application permissions
    (
        "GET",
        re.compile(r"^/users/(?P<user>[^/]+)/chats/?$"),
        lambda m: Route(
            (Scope(TENANT_READ), Scope(USER_CHATS, m["user"].lower())),
            "Chat.ReadBasic.All (or Chat.Read.All)",
        ),
    ),
    # deletedchat-undodelete.md (a restore, paced as the delete it undoes) and deletedchat-get.md
    (
        "POST",
        re.compile(r"^/teamwork/deletedChats/[^/]+/undoDelete/?$"),
        lambda m: Route((Scope(TENANT_WRITE), Scope(TENANT_DELETE)), "Chat.ManageDeletion.All"),
    ),
    (
        "GET",
        re.compile(r"^/teamwork/deletedChats/[^/]+/?$"),
        lambda m: Route((Scope(TENANT_READ),), "Chat.ManageDeletion.All"),
    ),
    # user-get.md (directory, not Teams, limits)
    (
        "GET",
        re.compile(r"^/users/(?P<user>[^/]+)/?$"),
        lambda m: Route((Scope(DIRECTORY_READ),), "User.Read.All (or User.ReadBasic.All)"),
    ),
    # group-get.md, group-list.md, group-list-transitivemembers.md (directory limits): the
    # least privileged application permission of all three is GroupMember.Read.All.
    (
        "GET",
        re.compile(r"^/groups(/[^/]+(/transitiveMembers(/microsoft\.graph\.user)?)?)?/?$"),
        lambda m: Route((Scope(DIRECTORY_READ),), "GroupMember.Read.All"),
    ),
    # organization-list.md: the tenant an app-only token acts in (directory limits)
    (
        "GET",
        re.compile(r"^/organization/?$"),
        lambda m: Route((Scope(DIRECTORY_READ),), "Directory.Read.All (delegated: User.Read)"),
    ),
]


def route_for(method: str, path: str) -> Route:
    """Throttling scopes and needed permission of a Graph call (path relative to the version)."""
    bare = urlsplit(path).path
    for methods, pattern, build in _ROUTES:
        if method.upper() in methods.split("|"):
            match = pattern.match(bare)
            if match:
                return build(match)
    read = method.upper() == "GET"
    return Route((Scope(TENANT_READ if read else TENANT_WRITE),), "")


_TEMPLATE_PARTS = (
    (re.compile(r"^/chats/[^/]+"), "/chats/{chat-id}"),
    (re.compile(r"^/users/[^/]+"), "/users/{user}"),
    (re.compile(r"/members/[^/]+"), "/members/{membership-id}"),
)


def route_template(path: str) -> str:
    """The route of a Graph call without its ids or query (``/chats/{chat-id}/members``): what
    a log line may carry, since chat ids, object ids and UPNs identify people."""
    bare = urlsplit(path).path or "/"
    for pattern, template in _TEMPLATE_PARTS:
        bare = pattern.sub(template, bare)
    return bare


def chat_path(chat_id: str) -> str:
    # Chat ids look like 19:...@thread.v2; ':' and '@' are legal in a path segment and Graph's
    # own examples use them unescaped (api/chat-get.md).
    return f"/chats/{quote(chat_id, safe=':@')}"


def deleted_chat_path(chat_id: str) -> str:
    """``/teamwork/deletedChats/{id}`` (deletedchat-get.md, deletedchat-undodelete.md)."""
    return f"/teamwork/deletedChats/{quote(chat_id, safe=':@')}"


def user_path(id_or_upn: str) -> str:
    # api/user-get.md: a UPN starting with '$' must use the /users('...') form; '#' is %23.
    if id_or_upn.startswith("$"):
        return "/users('" + quote(id_or_upn.replace("'", "''"), safe="$@:'") + "')"
    return f"/users/{quote(id_or_upn, safe='@:')}"


def group_path(group_id: str) -> str:
    return f"/groups/{quote(group_id, safe='')}"


def odata_string(value: str) -> str:
    """An OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def membership_id_from_location(location: str | None) -> str | None:
    """The membership id at the end of the ``Location`` of ``POST /chats/{id}/members``.

    chat-post-members.md answers "201 Created ... and a Location header that provides a URL
    path to the newly created member object", with no body in any example, e.g.
    ``/chats/19:cf66...@thread.v2/members/MCMjMjQz...YmQ4Mw==``. The id is opaque; it is only
    percent-decoded (it may arrive encoded, ``%3D`` for ``=``)."""
    if not location:
        return None
    path = urlsplit(location.strip()).path.rstrip("/")
    head, _, last = path.rpartition("/")
    if not last or not head.endswith("/members"):
        return None
    return unquote(last) or None


def resolve_url(base_url: str, path: str) -> tuple[str, str]:
    """Absolute URL and path relative to the version root of ``path`` (relative to
    ``base_url``, or an absolute ``@odata.nextLink``), refusing other origins: a nextLink
    elsewhere would receive our token."""
    origin = urlsplit(base_url)
    if "://" in path:
        parts = urlsplit(path)
        if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc) or not (
            parts.path.startswith(origin.path)
        ):
            raise GraphError(
                f"refusing to follow a link to another host: {parts.scheme}://{parts.netloc}",
                hint="the access token is only sent to the configured Graph URL",
            )
        rel = parts.path[len(origin.path) :] or "/"
        return path, rel
    rel = path if path.startswith("/") else f"/{path}"
    return base_url + rel, rel


def added_member(body: dict[str, Any], location: str | None) -> dict[str, Any]:
    """The answer of ``POST /chats/{id}/members`` as a member: its body, or (the documented
    answer has none) its membership id from ``Location``."""
    if body.get("id"):
        return body
    membership_id = membership_id_from_location(location)
    return {**body, "id": membership_id} if membership_id else body


def chats_query(
    *, chat_type: str | None, topic: str | None, expand: bool, top: int | None
) -> dict[str, str]:
    """The query of List chats (chat-list.md). At most one of ``chat_type`` and ``topic``:
    Graph documents no ``$filter`` joining properties with ``and`` (graph-facts), so a caller
    filters on one and checks the rest itself."""
    if chat_type is not None and topic is not None:
        raise ValueError("filter chats on chatType or on topic, not both")
    params: dict[str, str] = {}
    if chat_type is not None:
        params["$filter"] = f"chatType eq {odata_string(chat_type)}"
    if topic is not None:
        params["$filter"] = f"topic eq {odata_string(topic)}"
    if expand:
        params["$expand"] = "members"
    if top is not None:
        params["$top"] = str(top)  # chat-list.md: at most 50
    return params
