"""Helpers for the emulator-backed lifecycle tests: a Graph client on an emulator, and chats
made or changed "outside provision" (as a person in Teams would)."""

from __future__ import annotations

from typing import Any

from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.graph.pacing import Pacer
from provisioner.models import Chat, Member
from provisioner.signin.chooser import StaticToken

A = "adele@contoso.com"
M = "megan@contoso.com"
L = "lee@contoso.com"
N = "nestor@contoso.com"


def client_for(server: EmulatorServer, pacer: Pacer | None = None) -> GraphClient:
    return GraphClient(server.url, StaticToken("test-token"), pacer=pacer)


def group(key: str, topic: str | None, *users: str, roles: dict[str, str] | None = None) -> Chat:
    roles = roles or {}
    return Chat(key, "group", tuple(Member(u, roles.get(u, "owner")) for u in users), topic)


def create(client: GraphClient, chat: Chat) -> str:
    """Make ``chat`` in the emulated tenant; its id."""
    made = client.create_chat(chat.request_body(client.base_url), idempotent=False)
    return str(made["id"])


def member_of(client: GraphClient, chat_id: str, user: str) -> dict[str, Any]:
    oid = str(client.get_user(user)["id"])
    return next(m for m in client.list_members(chat_id) if m["userId"] == oid)


def set_role(client: GraphClient, chat_id: str, user: str, role: str) -> None:
    """A role change in Teams: remove the member and add them back with ``role``."""
    client.remove_member(chat_id, str(member_of(client, chat_id, user)["id"]))
    client.add_member(chat_id, Member(user, role).request_body(client.base_url))
