"""The emulated tenant: chats, their members, counters, and the inspection API for tests.

Operations raise ``GraphError`` with the status Graph would answer; the HTTP layer renders
them. Everything is guarded by one re-entrant lock, and every change is made durable through
the store before the operation returns.

Inspection (for tests and benchmarks, from the emulator's side)::

    server.tenant.chats()                 # every chat, soft-deleted ones included (ChatView)
    server.tenant.find_chats(chat_type="group", topic="X", members=["a@contoso.com", guid])
    server.tenant.duplicate_group_chats() # live group chats sharing topic and member set
    server.tenant.counters                # a Counters snapshot (requests, 429s, faults...)
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.emulator.errors import bad_request, not_found
from provisioner.emulator.groups import Groups
from provisioner.emulator.model import (
    ALL_HISTORY,
    GROUP,
    ONE_ON_ONE,
    ChatView,
    MemberView,
    graph_time,
    parse_graph_time,
)
from provisioner.emulator.store import Store
from provisioner.emulator.users import Directory, User

#: A group chat holds at most 250 members (chat-post.md; graph-facts: "A group chat holds at
#: most 250 members"), on creation and when members are added later.
MAX_GROUP_MEMBERS = 250
#: "Only 200 members can be added at one time" (Teams limits, limits-specifications-teams.md).
MAX_MEMBERS_AT_ONCE = 200
# chat-delete.md: "tenant admins have seven days to restore them".
RESTORE_PERIOD_S = 7 * 24 * 3600.0


@dataclass
class Counters:
    """What the emulator saw. ``requests_total`` counts authenticated operations: plain
    requests and each ``$batch`` item (the envelope itself is only in
    ``http_requests_total``, which also counts requests refused with 401)."""

    connections_total: int = 0  # TCP connections accepted (keep-alive reuse keeps it low)
    http_requests_total: int = 0
    requests_total: int = 0
    batch_items_total: int = 0
    throttled_total: int = 0  # 429 from the documented buckets
    unauthorized_total: int = 0
    post_chats_total: int = 0  # POST /chats that reached the handler (not throttled/503)
    chats_created_total: int = 0  # POST /chats that created a chat (oneOnOne reuse excluded)
    internal_errors_total: int = 0  # bugs in the emulator; tests assert it stays 0
    faults: Counter[str] = field(default_factory=Counter)  # injected, by kind
    by_route: Counter[str] = field(default_factory=Counter)  # "POST /chats" -> n
    by_status: Counter[int] = field(default_factory=Counter)

    def copy(self) -> Counters:
        return replace(
            self,
            faults=Counter(self.faults),
            by_route=Counter(self.by_route),
            by_status=Counter(self.by_status),
        )

    @property
    def throttled_share(self) -> float:
        return self.throttled_total / self.requests_total if self.requests_total else 0.0


@dataclass(frozen=True)
class NewMember:
    user: User
    role: str
    tenant_id: str
    visible_history_start: str = ALL_HISTORY


class Tenant:
    def __init__(
        self,
        tenant_id: str,
        directory: Directory,
        *,
        rng: random.Random,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        list_delay: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.tenant_id = tenant_id
        self.list_delay = list_delay
        # Member answers without tenantId, email and displayName (Graph's known issue, see
        # ``MemberView.to_graph``); off by default, on in the tests that need it.
        self.sparse_members = False
        self.groups = Groups()  # Entra ID groups (emulator/groups.py)
        self.directory = directory
        self.lock = threading.RLock()
        self._rng = rng
        self._store = store
        self._base_clock = clock
        # Seconds Graph's clock is off the host's (issue 20: a host clock minutes ahead or
        # behind Graph's, or one that jumps between runs). Settable while the emulator runs.
        self.clock_offset_s = 0.0
        # The properties List chats accepts a ``$filter`` on. chat-list.md documents none, so
        # tests can make the emulator refuse them (400) as a Graph may (issue 20).
        self.chat_filters: frozenset[str] = frozenset({"chatType", "topic"})
        self._chats: dict[str, ChatView] = {}
        self._pairs: dict[frozenset[str], str] = {}  # oneOnOne member pair -> chat id
        self._seq = 0
        self._counters = Counters()
        self._counters_lock = threading.Lock()

    # -- loading and persistence ---------------------------------------------------------
    def load(self, records: list[dict[str, Any]]) -> None:
        """Install chats from the store (raises KeyError/TypeError on malformed records)."""
        with self.lock:
            for rec in records:
                chat = ChatView.from_record(rec)
                self._install(chat)
                self._seq = max(self._seq, chat.seq)

    def _install(self, chat: ChatView) -> None:
        self._chats[chat.id] = chat
        if chat.chat_type == ONE_ON_ONE:
            self._pairs[chat.member_user_ids] = chat.id

    def _commit(self, chat: ChatView) -> ChatView:
        self._install(chat)
        if self._store is not None:
            self._store.append("chat", chat.to_record())
            if self._store.needs_compaction:
                self.compact()
        return chat

    def random_bits(self, n: int) -> int:
        """Random bits from the tenant's seeded stream (ids of installations and tabs)."""
        with self.lock:
            return self._rng.getrandbits(n)

    def commit(self, chat: ChatView) -> ChatView:
        """Record a changed chat (call under ``lock``): for the handlers of other modules."""
        return self._commit(chat)

    def persist_user(self, user: User) -> None:
        with self.lock:
            if self._store is not None:
                self._store.append("user", user.to_record())

    def compact(self) -> None:
        with self.lock:
            if self._store is not None:
                chats = [c.to_record() for c in self._chats.values()]
                users = (
                    [u.to_record() for u in self.directory.users()]
                    if self.directory.made_up
                    else []
                )
                self._store.compact(self.tenant_id, chats, users)

    # -- counters ------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        with self._counters_lock:
            setattr(self._counters, name, getattr(self._counters, name) + n)

    def count_in(self, name: str, key: object) -> None:
        with self._counters_lock:
            getattr(self._counters, name)[key] += 1

    @property
    def counters(self) -> Counters:
        with self._counters_lock:
            return self._counters.copy()

    def reset_counters(self) -> None:
        with self._counters_lock:
            self._counters = Counters()

    # -- inspection ----------------------------------------------------------------------
    def chats(self, *, include_deleted: bool = True) -> list[ChatView]:
        with self.lock:
            return [c for c in self._chats.values() if include_deleted or not c.is_deleted]

    def chat(self, chat_id: str) -> ChatView | None:
        with self.lock:
            return self._chats.get(chat_id)

    def user_id(self, ref: str) -> str | None:
        """The object id of a user given by GUID or UPN (as a manifest names them)."""
        user = self.directory.resolve(ref)
        return user.id if user else None

    def find_chats(
        self,
        *,
        chat_type: str | None = None,
        topic: str | None = None,
        members: list[str] | None = None,
        include_deleted: bool = False,
    ) -> list[ChatView]:
        """Chats matching every criterion given; ``members`` (GUIDs or UPNs) is the exact set."""
        wanted = None if members is None else frozenset(self.user_id(m) or m for m in members)
        return [
            c
            for c in self.chats(include_deleted=include_deleted)
            if (chat_type is None or c.chat_type == chat_type)
            and (topic is None or c.topic == topic)
            and (wanted is None or c.member_user_ids == wanted)
        ]

    def duplicate_group_chats(self) -> list[list[ChatView]]:
        """Live group chats that share topic and member set with another one."""
        groups: dict[tuple[str | None, frozenset[str]], list[ChatView]] = {}
        for chat in self.chats(include_deleted=False):
            if chat.chat_type == GROUP:
                groups.setdefault((chat.topic, chat.member_user_ids), []).append(chat)
        return [g for g in groups.values() if len(g) > 1]

    # -- operations ----------------------------------------------------------------------
    def _clock(self) -> float:
        return self._base_clock() + self.clock_offset_s

    def _now(self) -> str:
        return graph_time(self._clock())

    def now(self) -> float:
        """The tenant's clock (epoch seconds): what listing lag is measured against."""
        return self._clock()

    def _listed_from(self, now: float) -> float:
        """When a chat or membership made at ``now`` starts to be listed: a write is listed
        after a delay drawn from ``list_delay`` (see ``ChatView.listed_members``; list calls
        themselves were reported to take 5-12 s, MicrosoftDocs/msteams-docs#8959)."""
        lo, hi = self.list_delay
        return now + (lo if lo == hi else self._rng.uniform(lo, hi))

    def _membership_id(self, chat_id: str, user_id: str) -> str:
        # Graph's ids are opaque (chat-list-members.md); this one has the same shape as the
        # examples' ids: base64 of "0##<tenant>##<chat id>##<user id>".
        raw = f"0##{self.tenant_id}##{chat_id}##{user_id}"
        return base64.b64encode(raw.encode()).decode()

    def _member(self, chat_id: str, new: NewMember) -> MemberView:
        return MemberView(
            membership_id=self._membership_id(chat_id, new.user.id),
            user_id=new.user.id,
            display_name=new.user.display_name,
            email=new.user.mail,
            roles=(new.role,),
            tenant_id=new.tenant_id,
            visible_history_start=new.visible_history_start,
        )

    def live_chat(self, chat_id: str) -> ChatView:
        with self.lock:
            chat = self._chats.get(chat_id)
        if chat is None or chat.is_deleted:
            raise not_found(f"Chat '{chat_id}' was not found.")
        return chat

    def create_chat(
        self, chat_type: str, topic: str | None, members: list[NewMember]
    ) -> tuple[ChatView, bool]:
        """Create a chat. A oneOnOne chat for a pair that has one already returns that chat
        (``chat-post.md``: "Only one one-on-one chat can exist between two members"), reviving
        it if it was soft-deleted; a group chat is always new."""
        with self.lock:
            now = self._now()
            if chat_type == ONE_ON_ONE:
                ids = sorted(m.user.id for m in members)
                existing_id = self._pairs.get(frozenset(ids))
                if existing_id is not None:
                    existing = self._chats[existing_id]
                    if existing.is_deleted:
                        existing = self._commit(replace(existing, deleted=None, last_updated=now))
                    return existing, False
                chat_id = f"19:{ids[0]}_{ids[1]}@unq.gbl.spaces"
            else:
                chat_id = f"19:{self._rng.getrandbits(128):032x}@thread.v2"
            self._seq += 1
            chat = ChatView(
                id=chat_id,
                chat_type=chat_type,
                topic=topic,
                created=now,
                last_updated=now,
                tenant_id=self.tenant_id,
                members=tuple(self._member(chat_id, m) for m in members),
                seq=self._seq,
                listed_at=self._listed_from(self._clock()),
            )
            return self._commit(chat), True

    def update_topic(self, chat_id: str, topic: str) -> ChatView:
        with self.lock:
            chat = self.live_chat(chat_id)
            if chat.chat_type != GROUP:
                raise bad_request("Setting topic is not allowed for 1-on-1 chats.")
            return self._commit(replace(chat, topic=topic, last_updated=self._now()))

    def delete_chat(self, chat_id: str) -> None:
        """Soft delete (``chat-delete.md``): the chat stays in the tenant, marked deleted."""
        with self.lock:
            chat = self.live_chat(chat_id)
            now = self._now()
            self._commit(replace(chat, deleted=now, last_updated=now))

    def deleted_chat(self, chat_id: str) -> ChatView:
        """A soft-deleted chat that can still be restored (``deletedchat-get.md``), else 404:
        chat-delete.md, "After chats are deleted, tenant admins have seven days to restore
        them. Chats deleted for more than seven days can't be restored"."""
        with self.lock:
            chat = self._chats.get(chat_id)
            if chat is None or chat.deleted is None:
                raise not_found(f"Deleted chat '{chat_id}' was not found.")
            if self._clock() - parse_graph_time(chat.deleted) > RESTORE_PERIOD_S:
                raise not_found(f"Deleted chat '{chat_id}' was not found.")
            return chat

    def undo_delete(self, chat_id: str) -> ChatView:
        """``deletedchat-undodelete.md``: the chat is active again, with its id and members."""
        with self.lock:
            chat = self.deleted_chat(chat_id)
            return self._commit(replace(chat, deleted=None, last_updated=self._now()))

    def add_member(self, chat_id: str, new: NewMember) -> MemberView:
        with self.lock:
            chat = self.live_chat(chat_id)
            if chat.chat_type != GROUP:
                raise bad_request("Members can only be added to a group chat.")
            if new.user.id in chat.member_user_ids:
                # chat-post-members.md documents no answer for this (201 only; the OpenAPI
                # description: 2XX and a default error), so no 409 a client could lean on:
                # a plain 400, and the client looks at the member list.
                raise bad_request(f"User '{new.user.id}' is already a member of this chat.")
            if len(chat.members) >= MAX_GROUP_MEMBERS:
                raise bad_request(
                    f"A group chat cannot have more than {MAX_GROUP_MEMBERS} members."
                )
            member = replace(self._member(chat_id, new), listed_at=self._listed_from(self._clock()))
            departed = tuple(m for m in chat.departed if m.user_id != new.user.id)
            members = (*chat.members, member)
            now = self._now()
            self._commit(replace(chat, members=members, departed=departed, last_updated=now))
            return member

    def remove_member(self, chat_id: str, membership_id: str) -> None:
        with self.lock:
            chat = self.live_chat(chat_id)
            if chat.member(membership_id) is None:
                raise not_found(f"Member '{membership_id}' was not found in the chat.")
            if chat.chat_type != GROUP:
                raise bad_request("Members can only be removed from a group chat.")
            gone = chat.member(membership_id)
            assert gone is not None
            members = tuple(m for m in chat.members if m.membership_id != membership_id)
            departed = (*chat.departed, replace(gone, unlisted_at=self._listed_from(self._clock())))
            now = self._now()
            self._commit(replace(chat, members=members, departed=departed, last_updated=now))

    def chats_of(
        self,
        user_id: str,
        *,
        after_seq: int,
        limit: int,
        chat_type: str | None = None,
        topic: str | None = None,
    ) -> tuple[list[ChatView], int | None]:
        """One page of a user's live chats in creation order, and the ``seq`` to continue
        after (keyset paging: chats created meanwhile never shift a page)."""
        now = self._clock()
        with self.lock:
            found = sorted(
                (
                    c
                    for c in self._chats.values()
                    if c.seq > after_seq
                    and not c.is_deleted
                    and c.listed_at <= now  # listing lag, see _listed_from
                    and user_id in c.member_user_ids
                    and (chat_type is None or c.chat_type == chat_type)
                    and (topic is None or c.topic == topic)
                ),
                key=lambda c: c.seq,
            )
        page = found[:limit]
        more = len(found) > limit
        return page, (page[-1].seq if more else None)
