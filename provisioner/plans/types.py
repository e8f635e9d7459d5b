"""The plan as data: what apply will do per chat key.

A ``Plan`` holds everything apply needs (request bodies, chat ids, membership ids), so nothing is
recomputed at apply time and a reviewed plan is exactly what runs. It records the state lineage
and serial it was made against, including "no state yet" (``state_lineage`` None, serial 0), so
a saved plan (``plans.files``) can refuse to be applied twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from provisioner import __version__
from provisioner.plans.workspace import WorkspaceChange
from provisioner.states.records import ChatRecord, GroupRecord, Intent, MemberRecord

PLAN_FORMAT_VERSION = 1
PLAN_FILE_KIND = "provision-plan"


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    FORGET = "forget"
    RECONCILE = "reconcile"
    NOOP = "no-op"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


# Terraform's symbols where it has the action (+ ~ -, and "." for "removed from state").
_SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.FORGET: ".",
    Action.RECONCILE: "?",
    Action.NOOP: " ",
}
ACTIONS = tuple(Action)


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A member whose role changes; ``member`` carries the new role and the membership id."""

    member: MemberRecord
    old_role: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.member.to_dict(), "old_role": self.old_role}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoleChange:
        return cls(member=_member(data), old_role=str(data["old_role"]))


@dataclass(frozen=True, slots=True)
class Change:
    """One chat key's planned action.

    ``members`` and ``topic`` are the chat as it will be after apply (members carry the object
    and membership ids known so far), ready to record in state. ``before`` is the chat as
    currently known (state, or the refreshed view from Graph).
    """

    key: str
    action: Action
    chat_type: str
    members: tuple[MemberRecord, ...] = ()
    topic: str | None = None
    chat_id: str | None = None
    before: ChatRecord | None = None
    topic_change: tuple[str | None, str | None] | None = None  # (before, after)
    add: tuple[MemberRecord, ...] = ()
    remove: tuple[MemberRecord, ...] = ()
    role_changes: tuple[RoleChange, ...] = ()
    body: dict[str, Any] | None = None  # exactly the POST /chats body, for create/reconcile
    intent: Intent | None = None  # the pending creation to reconcile
    notes: tuple[str, ...] = ()
    source: str | None = None  # manifest file:line:col
    # Issue 7: the key the state knew this chat by (a ``moved:`` entry; apply renames it),
    # the ``protect`` flip to record in state ((before, after), None: unchanged), and the
    # chat's ``history`` setting for members added to it (``models.Member.request_body``).
    moved_from: str | None = None
    protect_change: tuple[bool, bool] | None = None
    history: str | None = None
    # Issue 22: members someone else added that ``membership: additive`` leaves as they are
    # (they are in ``members`` too, with ``added`` False): shown as unmanaged, never changed.
    unmanaged: tuple[MemberRecord, ...] = ()
    # Issue 23: why a chat still in the manifest is deleted or kept: ``expired`` (its
    # ``expires`` passed: a delete), ``expired-protected`` (past, but protected: a no-op the
    # plan shows with its note).
    reason: str | None = None
    # Issue 23: an ``import:`` entry adopts this existing chat (id) as the key: apply records
    # ``before`` under the key before any other change, without POST /chats.
    import_id: str | None = None
    # A generated chat: which generator and row made it (``generator NAME, FILE:LINE``).
    origin: str | None = None
    # Issue 24: apps to install or remove, tabs to pin, change or unpin (``plans.workspace``).
    workspace: WorkspaceChange | None = None

    @property
    def bookkeeping(self) -> bool:
        """True when apply records something in state for this key even without a Graph
        call: a renamed key, a protection change, an imported chat, or apps and tabs found
        in the chat that the state does not record yet (issue 24)."""
        return (
            self.moved_from is not None
            or self.protect_change is not None
            or self.import_id is not None
            or (self.workspace is not None and self.workspace.adopt)
        )

    @property
    def shown(self) -> bool:
        """True when a plan view lists this change: an action, bookkeeping, or a no-op with
        a reason the reader must see (an expired chat kept because it is protected)."""
        return self.action is not Action.NOOP or self.bookkeeping or self.reason is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "action": self.action.value,
            "chat_type": self.chat_type,
            "chat_id": self.chat_id,
        }
        if self.topic is not None:
            data["topic"] = self.topic
        data["members"] = [m.to_dict() for m in self.members]
        if self.topic_change is not None:
            data["topic_change"] = {"before": self.topic_change[0], "after": self.topic_change[1]}
        if self.add:
            data["members_add"] = [m.to_dict() for m in self.add]
        if self.remove:
            data["members_remove"] = [m.to_dict() for m in self.remove]
        if self.role_changes:
            data["role_changes"] = [r.to_dict() for r in self.role_changes]
        if self.body is not None:
            data["request"] = self.body
        if self.before is not None:
            data["before"] = self.before.to_dict()
        if self.intent is not None:
            data["intent"] = self.intent.to_dict()
        if self.notes:
            data["notes"] = list(self.notes)
        if self.source is not None:
            data["source"] = self.source
        if self.moved_from is not None:
            data["moved_from"] = self.moved_from
        if self.protect_change is not None:
            data["protect_change"] = {
                "before": self.protect_change[0],
                "after": self.protect_change[1],
            }
        if self.history is not None:
            data["history"] = self.history
        if self.unmanaged:
            data["members_unmanaged"] = [m.to_dict() for m in self.unmanaged]
        if self.reason is not None:
            data["reason"] = self.reason
        if self.import_id is not None:
            data["import_id"] = self.import_id
        if self.origin is not None:
            data["origin"] = self.origin
        if self.workspace is not None:
            data["workspace"] = self.workspace.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        key = str(data["key"])
        topic_change = data.get("topic_change")
        before = data.get("before")
        intent = data.get("intent")
        return cls(
            key=key,
            action=Action(data["action"]),
            chat_type=str(data["chat_type"]),
            chat_id=_opt_str(data.get("chat_id")),
            topic=_opt_str(data.get("topic")),
            members=tuple(_member(m) for m in data["members"]),
            topic_change=(
                (_opt_str(topic_change["before"]), _opt_str(topic_change["after"]))
                if topic_change is not None
                else None
            ),
            add=tuple(_member(m) for m in data.get("members_add", ())),
            remove=tuple(_member(m) for m in data.get("members_remove", ())),
            role_changes=tuple(RoleChange.from_dict(r) for r in data.get("role_changes", ())),
            body=dict(data["request"]) if data.get("request") is not None else None,
            before=_record(before) if before is not None else None,
            intent=_intent(key, intent) if intent is not None else None,
            notes=tuple(str(n) for n in data.get("notes", ())),
            source=_opt_str(data.get("source")),
            moved_from=_opt_str(data.get("moved_from")),
            protect_change=(
                (bool(protect["before"]), bool(protect["after"]))
                if (protect := data.get("protect_change")) is not None
                else None
            ),
            reason=_opt_str(data.get("reason")),
            import_id=_opt_str(data.get("import_id")),
            origin=_opt_str(data.get("origin")),
            workspace=(
                WorkspaceChange.from_dict(data["workspace"])
                if data.get("workspace") is not None
                else None
            ),
            history=_opt_str(data.get("history")),
            unmanaged=tuple(_member(m) for m in data.get("members_unmanaged", ())),
        )


@dataclass(frozen=True, slots=True)
class Drift:
    """A difference between state and Graph found by refresh: changed outside provision."""

    key: str
    chat_id: str
    gone: bool = False
    topic_change: tuple[str | None, str | None] | None = None  # (state, Graph)
    added: tuple[MemberRecord, ...] = ()  # in Teams, not in state
    removed: tuple[MemberRecord, ...] = ()  # in state, no longer in Teams
    role_changes: tuple[RoleChange, ...] = ()
    # The chat as refresh read it (None when gone): what apply records in state before it
    # makes any change, as Terraform's apply persists the refreshed state.
    record: ChatRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "chat_id": self.chat_id, "gone": self.gone}
        if self.topic_change is not None:
            data["topic_change"] = {"before": self.topic_change[0], "after": self.topic_change[1]}
        data["members_added"] = [m.to_dict() for m in self.added]
        data["members_removed"] = [m.to_dict() for m in self.removed]
        data["role_changes"] = [r.to_dict() for r in self.role_changes]
        if self.record is not None:
            data["refreshed"] = self.record.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Drift:
        topic_change = data.get("topic_change")
        return cls(
            key=str(data["key"]),
            chat_id=str(data["chat_id"]),
            gone=bool(data["gone"]),
            topic_change=(
                (_opt_str(topic_change["before"]), _opt_str(topic_change["after"]))
                if topic_change is not None
                else None
            ),
            added=tuple(_member(m) for m in data.get("members_added", ())),
            removed=tuple(_member(m) for m in data.get("members_removed", ())),
            role_changes=tuple(RoleChange.from_dict(r) for r in data.get("role_changes", ())),
            record=_record(data["refreshed"]) if data.get("refreshed") is not None else None,
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Plan:
    """Every chat key's change (no-ops included), ordered by key, and what it was made against."""

    changes: tuple[Change, ...]
    state_lineage: str | None  # None: made when no state existed
    state_serial: int
    graph_url: str
    manifest_digest: str = ""
    manifest_files: tuple[str, ...] = ()
    drift: tuple[Drift, ...] = ()
    refreshed: bool = False
    prune: bool = False
    # Issue 7: UPN (lower case) -> object id resolved while planning (apply caches them in
    # state), and a ``plan --refresh-only`` plan: drift only, no changes from the manifest.
    users: Mapping[str, str] = field(default_factory=dict)
    refresh_only: bool = False
    # Issue 22: the groups of ``group:`` entries as this plan read them (ref -> group), for
    # apply to record in the state (empty when the plan used the state's).
    groups: Mapping[str, GroupRecord] = field(default_factory=dict)
    # ``--target`` patterns (issue 23, ``plans.targets``): only matching keys were planned.
    targets: tuple[str, ...] = ()
    tool_version: str = __version__
    created_at: str = field(default_factory=_now)
    plan_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    format_version: int = PLAN_FORMAT_VERSION

    @property
    def summary(self) -> dict[str, int]:
        """Each action name -> count, every action present (contract: ``plan --format json``)."""
        counts = dict.fromkeys((a.value for a in ACTIONS), 0)
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        """True when apply would change anything (Teams or state): not only no-ops. A
        refresh-only plan has changes when it found drift (apply records the refreshed view)."""
        if self.refresh_only:
            return bool(self.drift)
        return any(c.action is not Action.NOOP or c.bookkeeping for c in self.changes)

    @property
    def actionable(self) -> tuple[Change, ...]:
        """The changes that make Graph calls or remove a key (no-ops excluded)."""
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def reported(self) -> tuple[Change, ...]:
        """The changes a plan view lists: actionable ones, and no-ops that only rename a key
        or change its protection."""
        return tuple(c for c in self.changes if c.shown)

    @property
    def moves(self) -> tuple[tuple[str, str], ...]:
        """(old key, new key) of every renamed key."""
        return tuple((c.moved_from, c.key) for c in self.changes if c.moved_from is not None)

    @property
    def imports(self) -> tuple[tuple[str, str], ...]:
        """(key, chat id) of every chat an ``import:`` entry adopts."""
        return tuple((c.key, c.import_id) for c in self.changes if c.import_id is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "created_at": self.created_at,
            "tool_version": self.tool_version,
            "graph_url": self.graph_url,
            "state": {"lineage": self.state_lineage, "serial": self.state_serial},
            "manifest": {"digest": self.manifest_digest, "files": list(self.manifest_files)},
            "refreshed": self.refreshed,
            "refresh_only": self.refresh_only,
            "prune": self.prune,
            "targets": list(self.targets),
            "users": dict(sorted(self.users.items())),
            "groups": {k: g.to_dict() for k, g in sorted(self.groups.items())},
            # Renamed keys are counted apart: a moved key also has its own action (issue 17).
            "summary": {**self.summary, "move": len(self.moves), "import": len(self.imports)},
            "moves": [{"from": old, "to": new} for old, new in self.moves],
            "changes": [c.to_dict() for c in self.changes],
            "drift": [d.to_dict() for d in self.drift],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], format_version: int) -> Plan:
        state = data["state"]
        manifest = data["manifest"]
        return cls(
            changes=tuple(Change.from_dict(c) for c in data["changes"]),
            state_lineage=_opt_str(state["lineage"]),
            state_serial=_serial(state["serial"]),
            graph_url=str(data["graph_url"]),
            manifest_digest=str(manifest["digest"]),
            manifest_files=tuple(str(f) for f in manifest["files"]),
            drift=tuple(Drift.from_dict(d) for d in data.get("drift", ())),
            refreshed=bool(data["refreshed"]),
            prune=bool(data["prune"]),
            users={str(k): str(v) for k, v in (data.get("users") or {}).items()},
            refresh_only=bool(data.get("refresh_only", False)),
            groups={str(k): _group(g) for k, g in (data.get("groups") or {}).items()},
            targets=tuple(str(t) for t in data.get("targets") or ()),
            tool_version=str(data["tool_version"]),
            created_at=str(data["created_at"]),
            plan_id=str(data["plan_id"]),
            format_version=format_version,
        )


def _serial(value: object) -> int:
    from provisioner.states.records import MAX_SERIAL

    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SERIAL:
        raise ValueError(f"state serial {value!r} is out of range")
    return value


# --- saved plans ---------------------------------------------------------------------------


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _member(data: Mapping[str, Any]) -> MemberRecord:
    return MemberRecord(
        user=str(data["user"]),
        role=str(data["role"]),
        object_id=_opt_str(data.get("object_id")),
        tenant_id=_opt_str(data.get("tenant_id")),
        membership_id=_opt_str(data.get("membership_id")),
        added=data.get("added", True) is not False,
        via=_opt_str(data.get("via")),
    )


def _record(data: Mapping[str, Any]) -> ChatRecord:
    return ChatRecord(
        chat_id=str(data["chat_id"]),
        chat_type=str(data["chat_type"]),
        members=tuple(_member(m) for m in data["members"]),
        topic=_opt_str(data.get("topic")),
        created_at=_opt_str(data.get("created_at")),
    )


def _group(data: Any) -> GroupRecord:
    from provisioner.states.codec import group_json

    return group_json(data, "groups")


def _intent(key: str, data: Mapping[str, Any]) -> Intent:
    return Intent(
        key=key,
        chat_type=str(data["chat_type"]),
        members=tuple(_member(m) for m in data["members"]),
        attempt_id=str(data["attempt_id"]),
        started_at=str(data["started_at"]),
        topic=_opt_str(data.get("topic")),
        graph_started_at=_opt_str(data.get("graph_started_at")),
    )
