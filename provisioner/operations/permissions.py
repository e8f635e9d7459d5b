"""Which Graph permissions a run needs, from the manifests and the plan, against what a token
carries (its ``roles`` or ``scp`` claim): the permission check of ``provision doctor``.

Pure: no I/O. Each need names the feature and the Graph page that sets the least permission
(microsoftgraph/microsoft-graph-docs-contrib, api-reference/v1.0/api/). A permission is met by
itself or by a more privileged one the same page lists (``SATISFIED_BY``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.models import GUID_RE

# Application permission -> the permissions each page lists as also sufficient (least first).
SATISFIED_BY: Mapping[str, tuple[str, ...]] = {
    # chat-post.md
    "Chat.Create": ("Chat.Create", "Chat.ReadWrite.All"),
    # chat-get.md, chat-list.md, chat-list-members.md
    "Chat.ReadBasic.All": ("Chat.ReadBasic.All", "Chat.Read.All", "Chat.ReadWrite.All"),
    # user-get.md
    "User.Read.All": (
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ),
    # chat-post-members.md, chat-delete-members.md
    "ChatMember.ReadWrite.All": ("ChatMember.ReadWrite.All", "Chat.ReadWrite.All"),
    # chat-patch.md (its least one, ChatSettings.ReadWrite.Chat, is consented per chat)
    "Chat.ReadWrite.All": ("Chat.ReadWrite.All",),
    # chat-delete.md
    "Chat.ManageDeletion.All": ("Chat.ManageDeletion.All",),
}


@dataclass(frozen=True)
class Need:
    """A permission a feature needs; ``required`` False: needed only once that feature is used
    (a warning, not a failure)."""

    permission: str
    feature: str
    required: bool = True


def needs(
    chats: Iterable[Any], actions: Mapping[str, int], *, renames: int, prune_deletes: int
) -> list[Need]:
    """What ``chats`` (the manifests' desired chats) and a plan without refresh (``actions``:
    action -> count, ``renames``: topic changes, ``prune_deletes``: deletions) need."""
    chats = list(chats)
    groups = [c for c in chats if c.chat_type == "group"]
    upns = any(not m.tenant_id and not GUID_RE.match(m.user) for c in chats for m in c.members)
    out = [
        Need("Chat.ReadBasic.All", "refresh: read the managed chats back (plan, apply)"),
    ]
    if actions.get("create", 0) or actions.get("reconcile", 0):
        out.append(Need("Chat.Create", f"create {actions.get('create', 0)} chat(s)"))
    if upns:
        out.append(Need("User.Read.All", "resolve the manifests' UPNs to object ids"))
    if groups:
        # Declared members are kept: an edit of the manifest or a member who left in Teams
        # (drift) is repaired by adding or removing members, at any apply.
        out.append(
            Need("ChatMember.ReadWrite.All", f"keep the members of {len(groups)} group chat(s)")
        )
    if renames:
        out.append(Need("Chat.ReadWrite.All", f"rename {renames} group chat(s)"))
    elif any(getattr(c, "topic", None) for c in groups):
        out.append(Need("Chat.ReadWrite.All", "rename a group chat (when a topic changes)", False))
    if prune_deletes:
        out.append(Need("Chat.ManageDeletion.All", f"delete {prune_deletes} chat(s) (--prune)"))
    return out


def granted(claims: Mapping[str, Any]) -> tuple[str, set[str]] | None:
    """``("application", roles)`` or ``("delegated", scopes)`` from a token's claims; None
    when the token says nothing (not a JWT: an opaque token, the emulator's)."""
    roles = claims.get("roles")
    if isinstance(roles, list) and roles:
        return "application", {str(r) for r in roles}
    scp = claims.get("scp")
    if isinstance(scp, str) and scp.strip():
        return "delegated", set(scp.split())
    return None


def met(need: str, kind: str, have: set[str]) -> bool:
    """Whether ``have`` meets the application permission ``need``; a delegated token's scopes
    are the same names without ``.All`` where Graph's pages list them so (``Chat.ReadBasic``,
    ``ChatMember.ReadWrite``, ``Chat.ReadWrite``)."""
    options = SATISFIED_BY.get(need, (need,))
    if kind == "delegated":
        options = tuple(o.removesuffix(".All") if o.startswith("Chat") else o for o in options)
        options += SATISFIED_BY.get(need, (need,))
    return any(o in have for o in options)
