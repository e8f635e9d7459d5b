"""``provision restore KEY``: bring back a chat provision deleted (issue 23).

Graph soft-deletes chats: "After chats are deleted, tenant admins have seven days to restore
them. Chats deleted for more than seven days can't be restored" (api-reference/v1.0/api/
chat-delete.md), with ``POST /teamwork/deletedChats/{id}/undoDelete`` (deletedchat-undodelete.md,
204 No Content, Chat.ManageDeletion.All). The state keeps each chat provision deleted (an
expired chat, or one pruned) for that period (``State.deleted``), so the key still names it.
A restore reads the chat back and records it under its key again, as ``import`` does.

The period is measured with this machine's clock against the time of the delete, also taken
from it; Graph decides in the end: a 404 from undoDelete means the chat is gone for good.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from provisioner.errors import ProvisionError, StateError
from provisioner.graph.errors import GraphNotFound
from provisioner.models import expiry_of
from provisioner.operations.adopt import member_upns, record_from_live
from provisioner.operations.refresh import read_chats
from provisioner.operations.state import OnTakeover, check_client_home, locked
from provisioner.states.records import ChatRecord, State

if TYPE_CHECKING:
    from provisioner.graph.client import GraphClient
    from provisioner.states.store import StateStore

#: chat-delete.md: "tenant admins have seven days to restore them".
RESTORE_PERIOD = timedelta(days=7)


def restorable_until(deleted_at: str) -> datetime | None:
    """The end of the restore period of a chat deleted at ``deleted_at`` (None if unreadable)."""
    moment = expiry_of(deleted_at)  # a date or date and time read as the manifest's, in UTC
    return None if moment is None else moment + RESTORE_PERIOD


def drop_lapsed(state: State, now: datetime) -> list[str]:
    """Forget the deleted chats whose restore period is over (through ``State``'s methods, so
    an apply journals it). Returns their keys."""
    lapsed = []
    for key, deleted in sorted(state.deleted.items()):
        until = restorable_until(deleted.deleted_at)
        if until is None or until < now:
            lapsed.append(key)
    for key in lapsed:
        state.drop_deleted(key)
    return lapsed


def restore(
    store: StateStore,
    client: GraphClient,
    key: str,
    *,
    now: datetime | None = None,
    on_takeover: OnTakeover | None = None,
) -> ChatRecord:
    """Undo the delete of the chat provision deleted as ``key`` and manage it as ``key`` again,
    under the state's lock. StateError (nothing changed) when the state has no such deleted
    chat, the key is managed again, or the restore period is over; ProvisionError when Graph no
    longer has the chat (the state then forgets it)."""
    now = now or datetime.now(timezone.utc)
    with locked(store, "restore", on_takeover=on_takeover) as state:
        deleted = state.deleted.get(key)
        if deleted is None:
            raise StateError(
                f"the state {store.location} has no chat deleted by provision under {key}",
                hint="provision keeps a deleted chat's key for the 7 days Graph can restore it; "
                "a chat deleted outside provision can be restored by a Teams admin",
            )
        if key in state.chats or key in state.intents:
            raise StateError(
                f"{key} names a chat again (created after the delete); restoring the old one "
                f"would give one key two chats",
                hint=f"move the new one first (provision state mv {key} NEW-KEY), then restore",
            )
        until = restorable_until(deleted.deleted_at)
        if until is None or until < now:
            raise StateError(
                f"{key}: chat {deleted.chat_id} was deleted at {deleted.deleted_at}, more than "
                f"7 days ago; Graph restores deleted chats for 7 days only (chat-delete.md)",
                hint="it can no longer be restored; remove the entry or give it a new expires "
                "date to have a new chat created",
            )
        # After the refusals above, which need no Graph call: a token without tid asks Graph
        # its tenant (issue 20), and a 404 below must come from the state's own tenant.
        check_client_home(state, store.location, client)  # another tenant: stop (issue 15)
        try:
            client.restore_chat(deleted.chat_id)
        except GraphNotFound as exc:
            # Not a deleted chat any more: gone for good, or restored by a run that stopped
            # before recording it (then it is active again, and is taken back below).
            if read_chats(client, [deleted.chat_id])[deleted.chat_id].gone:
                state.drop_deleted(key)
                store.write(state)
                raise ProvisionError(
                    f"{key}: Graph no longer has the deleted chat {deleted.chat_id}, so it "
                    f"cannot be restored; the state forgets it",
                    hint="the next apply creates the chat again if the manifest still lists "
                    "it and it has not expired",
                ) from exc
        # Recorded at once, before anything else can fail: a restored chat is never lost.
        record = ChatRecord(deleted.chat_id, deleted.chat_type, (), topic=deleted.topic)
        state.drop_deleted(key)
        state.put_chat(key, record)
        store.write(state)
        live = read_chats(client, [deleted.chat_id])[deleted.chat_id]
        if not live.gone:  # its members, as import records them (a lagging read: next plan)
            upns = member_upns(client, [live])
            record = record_from_live(live, upns)
            state.put_chat(key, record)
            state.users.update({upn.lower(): oid for oid, upn in upns.items()})
            store.write(state)
    return record
