"""URL routing of the emulated Graph endpoints, and which throttling buckets each one draws on.

Paths are the ones the docs list (``chat-post.md``, ``chat-get.md``, ``chat-patch.md``,
``chat-delete.md``, ``chat-list.md``, ``chat-list-members.md``, ``chat-post-members.md``,
``chat-delete-members.md``, ``user-get.md``, ``organization-list.md``, ``json-batching.md``,
``deletedchat-get.md``, ``deletedchat-undodelete.md``). Segments are percent-decoded, so chat
ids may be sent raw (``19:...@thread.v2``) or encoded (``19%3A...``).
``users('x')`` is accepted as well as ``users/x`` (``user-get.md`` documents both forms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

import provisioner.emulator.throttle as t
from provisioner.emulator.errors import GraphError, bad_request

TEMPLATES = (
    "/$batch",
    "/chats",
    "/chats/{chat-id}",
    "/chats/{chat-id}/members",
    "/chats/{chat-id}/members/{membership-id}",
    "/groups",
    "/groups/{group-id}",
    "/groups/{group-id}/transitiveMembers/microsoft.graph.user",
    "/me",
    "/me/chats",
    "/me/chats/{chat-id}",
    "/me/chats/{chat-id}/members",
    "/organization",
    "/users/{user-id}",
    "/users/{user-id}/chats",
    "/users/{user-id}/chats/{chat-id}",
    "/users/{user-id}/chats/{chat-id}/members",
    "/teamwork/deletedChats/{deletedChat-id}",
    "/chats/{chat-id}/installedApps",
    "/chats/{chat-id}/installedApps/{teamsAppInstallation-id}",
    "/chats/{chat-id}/tabs",
    "/chats/{chat-id}/tabs/{teamsTab-id}",
    "/appCatalogs/teamsApps",
    "/teamwork/deletedChats/{deletedChat-id}/undoDelete",
)
_SPLIT = [tuple(tpl.strip("/").split("/")) for tpl in TEMPLATES]
_KEY_SEGMENT = re.compile(r"^([A-Za-z$]+)\('(.*)'\)$")

# (method, template) pairs that exist; anything else on a known template is 405.
METHODS: dict[str, tuple[str, ...]] = {
    "/$batch": ("POST",),
    "/chats": ("GET", "POST"),
    "/chats/{chat-id}": ("GET", "PATCH", "DELETE"),
    "/chats/{chat-id}/members": ("GET", "POST"),
    "/chats/{chat-id}/members/{membership-id}": ("GET", "DELETE"),
    "/teamwork/deletedChats/{deletedChat-id}/undoDelete": ("POST",),
    "/chats/{chat-id}/installedApps": ("GET", "POST"),
    "/chats/{chat-id}/installedApps/{teamsAppInstallation-id}": ("DELETE",),
    "/chats/{chat-id}/tabs": ("GET", "POST"),
    "/chats/{chat-id}/tabs/{teamsTab-id}": ("PATCH", "DELETE"),
}


@dataclass(frozen=True)
class Match:
    method: str
    template: str
    params: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def chat_id(self) -> str | None:
        return self.params.get("chat-id")


def split_path(path: str) -> list[str]:
    segments: list[str] = []
    for raw in path.strip("/").split("/"):
        seg = unquote(raw)
        keyed = _KEY_SEGMENT.match(seg)
        if keyed:  # users('jacob@contoso.com') -> users / jacob@contoso.com
            segments.extend((keyed.group(1), keyed.group(2).replace("''", "'")))
        else:
            segments.append(seg)
    return [s for s in segments if s]


def _matched_prefix(parts: tuple[str, ...], segments: list[str]) -> int:
    n = 0
    for part, seg in zip(parts, segments, strict=False):
        if not (part.startswith("{") or part == seg):
            break
        n += 1
    return n


def match(method: str, path: str) -> Match:
    """Route a request; raises 400 for an unknown segment (Graph's "Resource not found for
    the segment" answer) or 405 for a method the resource does not have."""
    segments = split_path(path)
    for tpl, parts in zip(TEMPLATES, _SPLIT, strict=True):
        if len(parts) == len(segments) and _matched_prefix(parts, segments) == len(parts):
            allowed = METHODS.get(tpl, ("GET",))
            if method not in allowed:
                # json-batching.md example, item 4: 405 for a method the target does not allow.
                raise GraphError(
                    405,
                    "Request_BadRequest",
                    "Specified HTTP method is not allowed for the request target.",
                    {"Allow": ", ".join(allowed)},
                )
            params = {
                p[1:-1]: s for p, s in zip(parts, segments, strict=False) if p.startswith("{")
            }
            return Match(method, tpl, params)
    best = max(_matched_prefix(parts, segments) for parts in _SPLIT)
    culprit = segments[min(best, len(segments) - 1)] if segments else ""
    raise bad_request(f"Resource not found for the segment '{culprit}'.")


def demands(m: Match, tenant_key: str, user_key: str | None) -> list[t.Demand]:
    """The buckets a request draws on (see ``throttle.py`` for the documented numbers)."""
    chat = m.chat_id
    tpl, method = m.template, m.method
    if tpl == "/$batch":
        return []  # json-batching.md: items "are evaluated individually" against the limits
    if tpl in ("/me", "/users/{user-id}", "/organization") or tpl.startswith("/groups"):
        return [(t.IDENTITY, tenant_key)]  # directory reads, not Teams
    if tpl == "/appCatalogs/teamsApps":
        return [(t.TEAMS_READ, tenant_key)]
    if tpl.startswith("/teamwork/deletedChats"):
        # No published limit of their own: counted as Teams reads and writes, and a restore
        # at the pace of the delete it undoes (chat-delete.md: one per second per tenant).
        if method == "GET":
            return [(t.TEAMS_READ, tenant_key)]
        return [(t.TEAMS_WRITE, tenant_key), (t.CHAT_DELETE, tenant_key)]
    if tpl.endswith("/chats"):
        if method == "POST":
            return [(t.TEAMS_WRITE, tenant_key)]
        return [(t.TEAMS_READ, tenant_key), (t.PER_USER_CHAT_READS, user_key or "me")]
    assert chat is not None
    if tpl.endswith("/members") and method == "POST":
        return [(t.MEMBER_ADD, tenant_key), (t.MEMBER_ADD_PER_CHAT, chat), (t.PER_CHAT, chat)]
    if tpl.endswith("{membership-id}") and method == "DELETE":
        return [
            (t.MEMBER_REMOVE, tenant_key),
            (t.MEMBER_REMOVE_PER_CHAT, chat),
            (t.PER_CHAT, chat),
        ]
    if method == "GET":
        return [(t.TEAMS_READ, tenant_key), (t.PER_CHAT, chat)]
    if method == "DELETE" and tpl == "/chats/{chat-id}":
        return [(t.TEAMS_WRITE, tenant_key), (t.PER_CHAT, chat), (t.CHAT_DELETE, tenant_key)]
    return [(t.TEAMS_WRITE, tenant_key), (t.PER_CHAT, chat)]
