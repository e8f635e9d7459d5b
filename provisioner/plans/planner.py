"""The planner: desired chats x state (x live view from Graph) -> Plan. Pure and deterministic.

No I/O and no clock beyond the plan's own timestamp: the same inputs give the same changes, in
key order. Everything apply needs goes into the plan (see ``plans.types``). How one chat
compares with what it is now (the update of a key on both sides) is ``plans.compare``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from provisioner.errors import PlanError
from provisioner.graph.pacing import MEMBER_CHANGES_PER_MINUTE
from provisioner.manifest import moves as moves_
from provisioner.models import (
    DEFAULT_GRAPH_URL,
    MAX_MEMBERS_AT_ONCE,
    Chat,
    DesiredState,
    expiry_of,
)
from provisioner.plans.compare import CannotUpdate, after_member, compare, source_of
from provisioner.plans.groups import expand_groups
from provisioner.plans.live import LiveChat, LiveMember, find_drift, upn_names, with_object_ids
from provisioner.plans.types import Action, Change, Drift, Plan
from provisioner.plans.workspace import LiveWorkspace, Unresolved, plan_workspace
from provisioner.states.records import ChatRecord, GroupRecord, Intent, State, Workspace

__all__ = ["LiveChat", "LiveMember", "make_plan", "refresh_only_plan"]

#: Seconds between two member changes of one chat: Graph's 4 per minute
#: (includes/throttling-teams.md). From the constant, not from the pacer's table: tests raise
#: the table's rates while the plan's estimate must stay Graph's.
MEMBER_CHANGE_INTERVAL_S = 60.0 / MEMBER_CHANGES_PER_MINUTE


def make_plan(
    desired: DesiredState,
    state: State,
    *,
    live: Mapping[str, LiveChat] | None = None,
    prune: bool = False,
    graph_url: str = DEFAULT_GRAPH_URL,
    now: datetime | None = None,
    imported: Mapping[str, LiveChat] | None = None,
    app_refs: Mapping[str, str] | None = None,
    workspaces: Mapping[str, LiveWorkspace] | None = None,
    groups: Mapping[str, GroupRecord] | None = None,
) -> Plan:
    """Plan every key of ``desired`` and ``state`` (ordered by key).

    ``now`` (default: this machine's clock, once) decides which ``expires`` have passed: a
    managed chat past its expiry is planned as a delete, unless protected. ``imported`` is
    the chat of each ``import:`` entry the state does not hold yet, read from Graph by key
    (None: not read; such an entry is then an error, as the plan cannot show the chat).
    ``app_refs`` resolves the manifests' apps named by externalId or name (``name:X`` ->
    catalog id; the state remembers earlier ones) and ``workspaces`` is the refreshed view of
    the apps and tabs of managed chats, by state key (``plans.workspace``).

    ``groups`` are the groups of ``group:`` entries as a refresh read them (None: the
    state's, ``State.groups``); their users join the chats (``plans.groups``).

    ``live`` is the refreshed view of managed chats by *state* key (None: no refresh; a key
    missing from it was not refreshed). ``desired.moves`` rename state keys first (the change
    of the new key carries ``moved_from``). ``state.users`` (UPN -> object id, filled in by
    ``provisioner.graph.users`` before planning) makes member comparisons exact.

    Raises PlanError, listing every offending key, for changes Graph cannot make in place (a
    chat's type, a oneOnOne's member pair), for a planned delete of a protected key, and for
    a ``moved:`` entry whose old and new keys are both in the state.
    """
    now = now or datetime.now(timezone.utc)
    errors: list[tuple[str, str]] = []
    # ``group:`` entries: the groups this plan read (a refresh), else as the state recorded.
    desired, taught, problems = expand_groups(
        desired, state.groups if groups is None else groups, state.users
    )
    errors.extend((str(p), p.hint) for p in problems)
    users = {**state.users, **taught} if taught else state.users
    wanted = desired.by_key()
    names = upn_names(users) if live is not None else {}
    chats, intents, protected, live, moved_from = _moved(desired, state, live, errors)
    changes: list[Change] = []
    drift: list[Drift] = []
    adopting = _imports(desired, chats, intents, imported, errors)
    refs = _known_refs(state, app_refs)
    for key in sorted(set(wanted) | set(chats) | set(intents)):
        if key in adopting:
            change = _import(wanted[key], adopting[key], users, errors)
            if change is not None:
                adopted = (workspaces or {}).get(key) or LiveWorkspace()
                change = _workspace(change, wanted[key], refs, Workspace(), adopted, prune, errors)
                changes.append(change)
            continue
        sides = _sides(key, wanted.get(key), chats.get(key), intents.get(key), live, users, names)
        if sides.drift is not None:
            drift.append(sides.drift)
        change = _change(sides, users, protected, errors, prune=prune, graph_url=graph_url, now=now)
        if change is None:
            continue
        chat = sides.chat
        if chat is not None and chat.origin is not None:
            change = replace(change, origin=chat.origin)
        if chat is not None and chat.protect != (key in protected):
            change = replace(change, protect_change=(key in protected, chat.protect))
        if key in moved_from:
            change = replace(change, moved_from=moved_from[key])
        if chat is not None:
            old = moved_from.get(key, key)
            recorded = state.workspaces.get(old) or Workspace()
            seen = None if workspaces is None else workspaces.get(old)
            change = _workspace(change, chat, refs, recorded, seen, prune, errors)
        changes.append(change)
    if errors:
        raise PlanError(
            "the plan cannot be made:\n" + "\n".join(f"  - {e}" for e, _ in errors),
            hint="; ".join(dict.fromkeys(h for _, h in errors)),
        )
    return Plan(
        changes=tuple(changes),
        state_lineage=state.lineage if state.exists else None,
        state_serial=state.serial if state.exists else 0,
        graph_url=graph_url,
        manifest_digest=desired.digest,
        manifest_files=desired.files,
        drift=tuple(drift),
        refreshed=live is not None,
        prune=prune,
        users=taught,
        groups=dict(groups or {}),
    )


def refresh_only_plan(
    state: State,
    live: Mapping[str, LiveChat],
    *,
    graph_url: str = DEFAULT_GRAPH_URL,
    desired: DesiredState | None = None,
) -> Plan:
    """``plan --refresh-only``: the drift between ``state`` and ``live`` alone, no changes
    from the manifests (Terraform's refresh-only mode). Applying it records the refreshed view
    in state (``operations.apply.record_plan_facts``)."""
    drift = []
    names = upn_names(state.users)
    for key in sorted(state.chats):
        if key in live:
            record = with_object_ids(state.chats[key], state.users)
            found = find_drift(key, record, live[key], state.users, names)
            if found is not None:
                drift.append(found)
    return Plan(
        changes=(),
        state_lineage=state.lineage if state.exists else None,
        state_serial=state.serial if state.exists else 0,
        graph_url=graph_url,
        manifest_digest=desired.digest if desired is not None else "",
        manifest_files=desired.files if desired is not None else (),
        drift=tuple(drift),
        refreshed=True,
        refresh_only=True,
    )


_NEW_KEY_HINT = (
    "a different chat needs a different key; the old key is then planned as forget (or "
    "remove it now with: provision state rm KEY)"
)
_UNPROTECT_HINT = (
    "to delete it, put it back in the manifest with protect: false and apply, then remove it; "
    "to stop managing it without deleting, plan without --prune (forget) or run: provision "
    "state rm KEY"
)


@dataclass(frozen=True, slots=True)
class _Sides:
    """One key as the planner sees it: the manifest's chat, the state's record (with object ids
    when the plan is refreshed), the chat as it is now (None: not created yet, or ``gone``:
    deleted outside provision), an unfinished creation, and the drift the refresh found."""

    key: str
    chat: Chat | None
    record: ChatRecord | None
    current: ChatRecord | None
    intent: Intent | None
    gone: bool = False
    drift: Drift | None = None


def _sides(
    key: str,
    chat: Chat | None,
    record: ChatRecord | None,
    intent: Intent | None,
    live: Mapping[str, LiveChat] | None,
    users: Mapping[str, str],
    names: Mapping[str, str],
) -> _Sides:
    if record is None or live is None:
        return _Sides(key, chat, record, record, intent)
    record = with_object_ids(record, users)
    if key not in live:  # not refreshed: the record is the best knowledge
        return _Sides(key, chat, record, record, intent)
    seen = live[key]
    drift = find_drift(key, record, seen, users, names)
    current = None if seen.gone else seen.as_record(record, names=names)
    return _Sides(key, chat, record, current, intent, seen.gone, drift)


def _change(
    sides: _Sides,
    users: Mapping[str, str],
    protected: set[str],
    errors: list[tuple[str, str]],
    *,
    prune: bool,
    graph_url: str,
    now: datetime,
) -> Change | None:
    """The key's change; None when there is nothing to plan, or when it cannot be planned (the
    reason is added to ``errors``)."""
    key, chat, record = sides.key, sides.chat, sides.record
    if sides.intent is not None:
        return _reconcile(key, sides.intent, chat, graph_url, users)
    if chat is not None and chat.expires is not None:
        expiry = expiry_of(chat.expires)
        if expiry is not None and expiry <= now:
            return _expired(sides, chat, key in protected or chat.protect)
    if chat is None:
        if record is None:
            return None
        change = _unmanaged(key, record, prune=prune, gone=sides.gone)
        if change.action is Action.DELETE and key in protected:
            errors.append(
                (
                    f"{key}: it is protected (protect: true when last applied), so its "
                    f"chat {record.chat_id} cannot be deleted",
                    _UNPROTECT_HINT,
                )
            )
        return change
    if sides.current is None:
        change = _create(chat, graph_url, users)
        if sides.gone and record is not None:
            note = f"chat {record.chat_id} was deleted outside provision: created again"
            change = replace(change, notes=(note, *change.notes))
        return change
    try:
        return compare(chat, sides.current, users)
    except CannotUpdate as exc:
        errors.append((str(exc), exc.hint or _NEW_KEY_HINT))
        return None


def _known_refs(state: State, app_refs: Mapping[str, str] | None) -> dict[str, str]:
    """App references -> catalog ids: what the state remembers, then what refresh looked up."""
    refs = {a.ref: a.app_id for w in state.workspaces.values() for a in w.apps}
    refs.update(app_refs or {})
    return refs


def _workspace(
    change: Change,
    chat: Chat,
    refs: Mapping[str, str],
    recorded: Workspace,
    live: LiveWorkspace | None,
    prune: bool,
    errors: list[tuple[str, str]],
) -> Change:
    """``change`` with the apps and tabs to install, pin or remove (issue 24); a chat whose
    only difference is there becomes an update."""
    if change.action not in (Action.CREATE, Action.UPDATE, Action.NOOP, Action.RECONCILE):
        return change
    if not (chat.apps or chat.tabs or recorded):
        return change
    if change.action in (Action.CREATE, Action.RECONCILE):
        recorded, live = Workspace(), LiveWorkspace()  # a new chat holds nothing yet
    try:
        found = plan_workspace(chat, refs, recorded, live, prune=prune)
    except Unresolved as exc:
        errors.append(
            (
                f"{chat.key}: app {exc.args[0]!r} is not known (no catalog id)",
                "plan with refresh: apps named by externalId or name are looked up in the "
                "tenant's app catalog (GET /appCatalogs/teamsApps)",
            )
        )
        return change
    if not found and not found.adopt:
        return change
    # Only to record (``adopt``): a no-op for Graph, bookkeeping for the state.
    action = Action.UPDATE if change.action is Action.NOOP and found else change.action
    notes = change.notes + found.notes
    return replace(change, action=action, workspace=found, notes=notes)


def _imports(
    desired: DesiredState,
    chats: Mapping[str, ChatRecord],
    intents: Mapping[str, Intent],
    imported: Mapping[str, LiveChat] | None,
    errors: list[tuple[str, str]],
) -> dict[str, LiveChat]:
    """The ``import:`` entries still to adopt, by key, with the chat read from Graph. An entry
    whose key the state holds with that chat is done; with another chat, or a chat the state
    manages under another key, it is an error, as is a chat Graph does not find."""
    managed = {record.chat_id.lower(): key for key, record in chats.items()}
    out: dict[str, LiveChat] = {}
    for imp in desired.imports:
        record = chats.get(imp.key)
        if record is not None:
            if record.chat_id.lower() != imp.chat_id.lower():
                errors.append(
                    (
                        f"{imp.key}: the import names chat {imp.chat_id}, but the state "
                        f"manages {imp.key} as chat {record.chat_id}",
                        "remove the import entry, or stop managing the other chat first "
                        f"(provision state rm {imp.key})",
                    )
                )
            continue
        other = managed.get(imp.chat_id.lower())
        if other is not None:
            errors.append(
                (
                    f"{imp.key}: chat {imp.chat_id} is already managed as {other}",
                    "to rename its key, use a moved: entry instead of import",
                )
            )
        elif imp.key in intents:
            errors.append(
                (
                    f"{imp.key}: a creation for this key is unfinished, so it cannot import",
                    "apply once without the import entry (it reconciles the creation)",
                )
            )
        elif imported is None or imp.key not in imported:
            errors.append(
                (
                    f"{imp.key}: importing chat {imp.chat_id} needs it read from Graph",
                    "plan with refresh (drop --no-refresh): the plan shows the chat adopted",
                )
            )
        elif imported[imp.key].gone:
            errors.append(
                (
                    f"{imp.key}: chat {imp.chat_id} was not found (Graph answered 404)",
                    "check the id (provision export --user UPN lists a user's chats with "
                    "their ids) and that the app may read it",
                )
            )
        else:
            out[imp.key] = imported[imp.key]
    return out


def _import(
    chat: Chat, seen: LiveChat, users: Mapping[str, str], errors: list[tuple[str, str]]
) -> Change | None:
    """An existing chat adopted as ``chat.key``: recorded as it is now, then updated in the
    same apply to match the manifest (no ``POST /chats``)."""
    current = seen.as_record(None, names=upn_names(users))
    try:
        change = compare(chat, current, users)
    except CannotUpdate as exc:
        errors.append((str(exc), "import a chat of the manifest entry's chatType"))
        return None
    note = f"existing chat {seen.chat_id} is adopted as {chat.key} (import:), not created"
    return replace(change, import_id=seen.chat_id, before=current, notes=(note, *change.notes))


def _moved(
    desired: DesiredState,
    state: State,
    live: Mapping[str, LiveChat] | None,
    errors: list[tuple[str, str]],
) -> tuple[
    dict[str, ChatRecord],
    Mapping[str, Intent],
    set[str],
    Mapping[str, LiveChat] | None,
    dict[str, str],
]:
    """The state's chats, protected keys and refreshed view with ``moved:`` applied, and the
    old key of each renamed one (new key -> old key). Entries whose old key the state does
    not hold do nothing (they may have been applied already, or this is a fresh state)."""
    if not desired.moves:
        return state.chats, state.intents, state.protected, live, {}
    chats = dict(state.chats)
    protected = set(state.protected)
    seen = dict(live) if live is not None else None
    moved_from: dict[str, str] = {}
    for old, new in sorted(moves_.resolve(desired.moves).items()):
        if old not in state.chats:
            if old in state.intents:
                errors.append(
                    (
                        f"{old}: moved to {new}, but its creation is unfinished",
                        "apply once without the moved: entry (it reconciles the creation), "
                        "then add it again",
                    )
                )
            continue
        if new in state.chats or new in state.intents or new in moved_from:
            other = moved_from.get(new, new)
            errors.append(
                (
                    f"{old}: moved to {new}, but the state already has a chat under "
                    f"{other if other != new else new} ({_chat_id(state, other)})",
                    "keep the entry of the chat that is now this key, and stop managing the "
                    "other one: provision state rm KEY",
                )
            )
            continue
        chats[new] = chats.pop(old)
        if old in protected:
            protected.discard(old)
            protected.add(new)
        if seen is not None and old in seen:
            seen[new] = seen.pop(old)
        moved_from[new] = old
    return chats, state.intents, protected, seen, moved_from


def _chat_id(state: State, key: str) -> str:
    record = state.chats.get(key)
    return f"chat {record.chat_id}" if record is not None else "a creation in progress"


def _create(chat: Chat, graph_url: str, users: Mapping[str, str]) -> Change:
    # A oneOnOne create is "create, or adopt the existing chat": Graph returns the existing
    # one-on-one chat of a pair instead of creating another (api-reference/v1.0/api/chat-post.md),
    # so unlike a group creation it is safe to repeat and needs no journal.
    members = tuple(after_member(m, users) for m in chat.members)
    later = members[MAX_MEMBERS_AT_ONCE:]
    return Change(
        key=chat.key,
        action=Action.CREATE,
        chat_type=chat.chat_type,
        members=members,
        topic=chat.topic,
        body=chat.request_body(graph_url),
        source=source_of(chat),
        add=later,
        notes=(completion_note(len(later)),) if later else (),
    )


def completion_note(later: int) -> str:
    """What a creation of more than ``MAX_MEMBERS_AT_ONCE`` members says in the plan."""
    # 4 member changes per minute per chat (includes/throttling-teams.md), the first one
    # right after the creation.
    minutes = (later - 1) * MEMBER_CHANGE_INTERVAL_S / 60
    return (
        f"Graph adds at most {MAX_MEMBERS_AT_ONCE} members at one time (Teams limits): the chat "
        f"is created with the first {MAX_MEMBERS_AT_ONCE} and the other {later} are added one "
        f"by one at Graph's pace of 4 member changes per minute per chat, which takes about "
        f"{_duration(minutes)}"
    )


def _duration(minutes: float) -> str:
    if minutes < 1:
        return "a minute"
    if minutes < 90:
        return f"{minutes:.0f} minutes"
    return f"{minutes / 60:.1f} hours"


def _reconcile(
    key: str, intent: Intent, chat: Chat | None, graph_url: str, users: Mapping[str, str]
) -> Change:
    # A group creation was started and its outcome never recorded (killed run, timeout...):
    # apply must look the chat up before creating anything (issue 6), never blindly re-POST.
    notes = [
        f"a creation started at {intent.started_at} (attempt {intent.attempt_id}) has no "
        f"recorded outcome: apply looks for that chat first and adopts it, or creates it if "
        f"it does not exist"
    ]
    if chat is None:
        notes.append("no longer in the manifest: a chat found is recorded, then forgotten")
        return Change(
            key=key,
            action=Action.RECONCILE,
            chat_type=intent.chat_type,
            members=intent.members,
            topic=intent.topic,
            intent=intent,
            notes=tuple(notes),
        )
    if chat.member_identities != intent.member_identities or chat.topic != intent.topic:
        notes.append("the manifest changed since: the next plan shows the difference")
    return Change(
        key=key,
        action=Action.RECONCILE,
        chat_type=chat.chat_type,
        members=tuple(after_member(m, users) for m in chat.members),
        topic=chat.topic,
        body=chat.request_body(graph_url),
        intent=intent,
        notes=tuple(notes),
        source=source_of(chat),
    )


def _expired(sides: _Sides, chat: Chat, protected: bool) -> Change | None:
    """A chat whose ``expires`` has passed: deleted (a soft delete Graph can undo for seven
    days, chat-delete.md, which ``provision restore KEY`` does), never created; kept with a
    note when protected."""
    record = sides.record
    if record is None:
        return None  # never created (or already deleted by provision): nothing to do
    if sides.gone:
        note = f"expired ({chat.expires}) and already deleted outside provision"
        return replace(_unmanaged(sides.key, record, prune=False, gone=True), notes=(note,))
    kept = Change(
        key=sides.key,
        action=Action.NOOP,
        chat_type=record.chat_type,
        members=record.members,
        topic=record.topic,
        chat_id=record.chat_id,
        before=record,
        notes=(
            f"expired ({chat.expires}) but protected: kept. Set protect: false to let "
            f"it be deleted, or move expires",
        ),
        source=source_of(chat),
        reason="expired-protected",
    )
    if protected:
        return kept
    return replace(
        kept,
        action=Action.DELETE,
        notes=(
            f"expired ({chat.expires}): deleted in Teams. Graph soft-deletes chats: "
            f"provision restore {sides.key} brings it back within 7 days. Needs "
            f"Chat.ManageDeletion.All; one delete per second per tenant",
        ),
        reason="expired",
    )


def _unmanaged(key: str, record: ChatRecord, *, prune: bool, gone: bool) -> Change:
    if gone:
        action, note = Action.FORGET, "not in the manifest and already deleted outside provision"
    elif prune:
        # api-reference/v1.0/api/chat-delete.md: a soft delete, admin only
        # (Chat.ManageDeletion.All), one delete per second per tenant, restorable for 7 days.
        action, note = (
            Action.DELETE,
            "not in the manifest (--prune): deleted in Teams. Graph soft-deletes chats: a "
            "tenant admin can restore it for 7 days. Needs Chat.ManageDeletion.All; one "
            "delete per second per tenant",
        )
    else:
        action, note = (
            Action.FORGET,
            "not in the manifest: removed from state only; the chat stays in Teams",
        )
    return Change(
        key=key,
        action=action,
        chat_type=record.chat_type,
        members=record.members,
        topic=record.topic,
        chat_id=record.chat_id,
        before=record,
        notes=(note,),
    )
