"""Adopt existing chats: ``provision import KEY CHAT_ID`` records a chat made elsewhere.

Import reads the chat and its members (``GET /chats/{id}?$expand=members``, as refresh does)
and records it in state under KEY, as if provision had created it; the next plan then compares
it with the manifest's chat of that key and shows any difference (or, when the manifest has
no such key, plans it as forget). Import never changes the chat in Teams.

Members are recorded with the user principal name Graph reports for them (one batched
``GET /users/{id}``), so a manifest that names them by UPN matches without any change; their
object ids are recorded too, so a manifest that uses object ids matches as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from provisioner.errors import InputError, StateError
from provisioner.graph.reads import READ_CONCURRENCY, BatchClient
from provisioner.graph.users import is_guid, lookup_users, upn_map
from provisioner.manifest.schema import load_schema, regex
from provisioner.operations.refresh import is_manageable, read_chats
from provisioner.operations.state import OnTakeover, check_client_home, check_key, locked
from provisioner.plans.live import LiveChat
from provisioner.states.records import ChatRecord, MemberRecord, State

if TYPE_CHECKING:
    from provisioner.states.store import StateStore

# A UPN the manifest schema accepts as it is (else the object id is written instead).
_UPN_RE = regex(load_schema()["$defs"]["member"]["properties"]["user"]["pattern"])


def check_free(state: State, key: str, chat_id: str) -> None:
    """StateError when ``key`` is taken or ``chat_id`` is managed under another key."""
    record = state.chats.get(key)
    if record is not None:
        raise StateError(
            f"{key} is already managed (chat {record.chat_id})",
            hint="to manage another chat under this key, first: provision state rm " + key,
        )
    if key in state.intents:
        raise StateError(
            f"{key} has an unfinished creation in the state",
            hint="apply first (it reconciles the creation), or: provision state rm " + key,
        )
    for other, known in state.chats.items():
        # Chat ids are compared case-folded: Graph has spelled one chat's id in two cases.
        if known.chat_id.casefold() == chat_id.casefold():
            raise StateError(
                f"chat {chat_id} is already managed as {other}",
                hint="to rename its key, add a moved: entry (from: old, to: new) to the manifest",
            )


def adopt(
    store: StateStore,
    client: BatchClient,
    key: str,
    chat_id: str,
    *,
    on_takeover: OnTakeover | None = None,
) -> ChatRecord:
    """``provision import``: read ``chat_id`` and record it as ``key`` (with the users it
    taught us), under the state's lock. Returns the record."""
    with locked(store, "import", on_takeover=on_takeover) as state:
        check_client_home(state, store.location, client)  # another tenant: stop (issue 15)
        record, users = import_chat(client, state, key, chat_id)
        state.put_chat(key, record)
        state.users.update(users)
        store.write(state)
    return record


def import_chat(
    client: BatchClient, state: State, key: str, chat_id: str
) -> tuple[ChatRecord, dict[str, str]]:
    """Read ``chat_id`` and return its state record and the UPN -> object id pairs learned;
    the caller records both (under the state lock). Raises InputError for a key that is not
    valid or a chat that does not exist or cannot be managed, StateError for a key or chat
    already managed."""
    check_key(key)
    check_free(state, key, chat_id)
    live = read_chats(client, [chat_id])[chat_id]
    if live.gone:
        raise InputError(
            f"chat {chat_id} was not found (Graph answered 404)",
            hint="check the chat id (19:...@thread.v2 or 19:..._...@unq.gbl.spaces) and that "
            "the app may read it (Chat.ReadBasic.All)",
        )
    if not is_manageable(live):
        raise InputError(
            f"chat {chat_id} is a {live.chat_type or 'chat of unknown type'}; only oneOnOne and "
            f"group chats can be managed"
        )
    upns = member_upns(client, [live])
    return record_from_live(live, upns), {upn.lower(): oid for oid, upn in upns.items()}


def member_upns(
    client: BatchClient, chats: Iterable[LiveChat], *, concurrency: int = READ_CONCURRENCY
) -> dict[str, str]:
    """Object id (lower case) -> UPN of the in-tenant members of ``chats`` (users Graph does not
    find any more are left out: they are recorded by object id)."""
    ids = {m.object_id.lower() for c in chats for m in c.members if not m.tenant_id}
    return upn_map(lookup_users(client, sorted(ids), concurrency=concurrency))


def record_from_live(live: LiveChat, upns: Mapping[str, str]) -> ChatRecord:
    """The state record of a chat read from Graph: each in-tenant member named by its UPN
    when known (and valid in a manifest), else by object id; out-of-tenant members by object
    id with their tenant. None of them was added by provision (``added`` False), so
    ``membership: additive`` never removes them (issue 22)."""
    members = []
    for m in live.members:
        upn = upns.get(m.object_id.lower()) if not m.tenant_id else None
        user = upn if upn and _UPN_RE.search(upn) and not is_guid(upn) else m.object_id
        members.append(
            MemberRecord(user, m.role, m.object_id, m.tenant_id, m.membership_id, added=False)
        )
    return ChatRecord(
        chat_id=live.chat_id,
        chat_type=live.chat_type,
        members=tuple(members),
        topic=live.topic if live.chat_type == "group" else None,
        created_at=live.created_at,
    )
