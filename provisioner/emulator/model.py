"""Immutable views of chats and members, their Graph JSON and their persisted records."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

ONE_ON_ONE = "oneOnOne"
GROUP = "group"
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
ALL_HISTORY = "0001-01-01T00:00:00Z"  # chat-list-members.md: whole history visible


def graph_time(ts: float) -> str:
    """UTC, millisecond precision, trailing zeros trimmed the way Graph prints them
    (``chat-post.md`` examples: ``2020-12-04T23:10:28.51Z``)."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    ms = dt.microsecond // 1000
    frac = f".{ms:03d}".rstrip("0") if ms else ""
    return f"{dt:%Y-%m-%dT%H:%M:%S}{frac}Z"


def parse_graph_time(text: str) -> float:
    """Epoch seconds of a time written by `graph_time`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class MemberView:
    membership_id: str
    user_id: str
    display_name: str
    email: str | None
    roles: tuple[str, ...]
    tenant_id: str
    visible_history_start: str = ALL_HISTORY
    # Listing lag (see ``ChatView.listed_members``): member listings show this membership from
    # ``listed_at`` (epoch seconds), and a removed one until ``unlisted_at``.
    listed_at: float = 0.0
    unlisted_at: float = 0.0

    def to_graph(self, *, sparse: bool = False) -> dict[str, object]:
        """Shape from chat-get.md example 3 / chat-list-members.md. ``sparse``: Graph's known
        issue "some properties for chat members might be missing"
        (concepts/includes/known-issues/teamwork-communications.md): tenantId, email and
        displayName come back null."""
        return {
            "@odata.type": MEMBER_TYPE,
            "id": self.membership_id,
            "roles": list(self.roles),
            "displayName": None if sparse else self.display_name,
            "visibleHistoryStartDateTime": self.visible_history_start,
            "userId": self.user_id,
            "email": None if sparse else self.email,
            "tenantId": None if sparse else self.tenant_id,
        }

    def to_record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"roles": list(self.roles)}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> MemberView:
        return cls(**{**rec, "roles": tuple(rec["roles"])})


@dataclass(frozen=True)
class ChatView:
    """An immutable snapshot of one chat. ``deleted`` is the soft-delete time, or None."""

    id: str
    chat_type: str
    topic: str | None
    created: str
    last_updated: str
    tenant_id: str
    members: tuple[MemberView, ...]
    deleted: str | None = None
    seq: int = 0
    listed_at: float = 0.0  # List chats shows the chat from then on (epoch seconds)
    departed: tuple[MemberView, ...] = ()  # removed, but still listed until their unlisted_at
    # Issue 24: (installation id, catalog app id) of each installed app, and each tab as
    # (tab id, display name, app id, entityId, contentUrl, websiteUrl, removeUrl).
    apps: tuple[tuple[str, str], ...] = ()
    tabs: tuple[tuple[str | None, ...], ...] = ()

    @property
    def is_deleted(self) -> bool:
        return self.deleted is not None

    @property
    def member_user_ids(self) -> frozenset[str]:
        return frozenset(m.user_id for m in self.members)

    def member(self, membership_id: str) -> MemberView | None:
        return next((m for m in self.members if m.membership_id == membership_id), None)

    def listed_members(self, now: float) -> tuple[MemberView, ...]:
        """The members a member listing shows at ``now``: Graph's lists lag behind writes
        (members added to a conversation were reported missing from its member list for
        about 15 minutes, microsoft-graph-docs-contrib#5343), so a membership added recently
        is not shown yet and one removed recently is shown still."""
        shown = tuple(m for m in self.members if m.listed_at <= now)
        return shown + tuple(m for m in self.departed if m.unlisted_at > now)

    def to_graph(
        self,
        *,
        members: bool = False,
        max_members: int | None = None,
        now: float = 0.0,
        sparse: bool = False,
    ) -> dict[str, object]:
        body: dict[str, object] = {
            "id": self.id,
            "topic": self.topic,
            "createdDateTime": self.created,
            "lastUpdatedDateTime": self.last_updated,
            "chatType": self.chat_type,
            "webUrl": f"https://teams.microsoft.com/l/chat/{self.id}/0?tenantId={self.tenant_id}",
            "tenantId": self.tenant_id,
        }
        if members:
            listed = self.listed_members(now)
            shown = listed if max_members is None else listed[:max_members]
            body["members"] = [m.to_graph(sparse=sparse) for m in shown]
        return body

    def to_record(self) -> dict[str, Any]:
        skip = ("members", "departed")
        rec = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        rec["members"] = [m.to_record() for m in self.members]
        rec["departed"] = [m.to_record() for m in self.departed]
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ChatView:
        members = tuple(MemberView.from_record(m) for m in rec["members"])
        departed = tuple(MemberView.from_record(m) for m in rec.get("departed", ()))
        apps = tuple(tuple(a) for a in rec.get("apps", ()))
        tabs = tuple(tuple(x) for x in rec.get("tabs", ()))
        return cls(**{**rec, "members": members, "departed": departed, "apps": apps, "tabs": tabs})
