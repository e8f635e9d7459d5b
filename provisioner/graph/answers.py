"""Checks on what Graph answered, before the client hands it on (issue 15).

A success is only a success with what it promises: a ``POST /chats`` answer must carry the new
chat's id (api-reference/v1.0/api/chat-post.md: 201 with the chat), and a collection's
``@odata.nextLink`` (concepts/paging.md) must lead somewhere new. An answer that breaks either
is a failure the caller can act on, never a record of ``chat_id: "None"`` or a loop.
"""

from __future__ import annotations

from typing import Any

from provisioner.graph.errors import AmbiguousOutcome, GraphError
from provisioner.graph.transport import Response
from provisioner.models import GUID_RE

#: Pages followed for one collection at most (50 chats a page: 500,000 chats).
MAX_PAGES = 10_000
#: Graph chat ids are ``19:...@thread.v2`` / ``19:..._...@unq.gbl.spaces``, under 200 chars.
MAX_CHAT_ID = 512
MAX_LINK = 8192


def is_chat_id(value: object) -> bool:
    """A usable chat id from an answer: a short, non-empty, printable text."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CHAT_ID
        and value.isprintable()
        and value.strip() == value
    )


def checked_chat(response: Response, chat: dict[str, Any]) -> dict[str, Any]:
    """The chat of a ``POST /chats`` answer; `AmbiguousOutcome` when it has no usable id,
    since Graph may have made the chat (the caller looks it up before creating again)."""
    if is_chat_id(chat.get("id")):
        return chat
    raise AmbiguousOutcome(
        f"Graph answered {response.status} without a usable chat id; it may or may not have "
        f"made the chat",
        status=response.status,
        method="POST",
        path="/chats",
        request_id=response.headers.get("request-id", ""),
        client_request_id=response.client_request_id,
        hint="the chat is looked up before anything is created again",
    )


def next_page(body: dict[str, Any], seen: set[str], path: str) -> str | None:
    """The page after ``body``, or None at the end. GraphError for a link that is not one, or
    one seen before (``seen`` is updated), or past ``MAX_PAGES``: it would page forever. Links
    to another host are refused when followed (``routes.resolve_url``)."""
    link = body.get("@odata.nextLink")
    if link is None:
        return None
    if not isinstance(link, str) or not link or len(link) > MAX_LINK:
        raise GraphError("Graph answered a page whose @odata.nextLink is not a link")
    if link in seen or len(seen) >= MAX_PAGES:
        raise GraphError(
            f"paging stopped: Graph's @odata.nextLink repeats an earlier page (or more than "
            f"{MAX_PAGES} pages)",
            method="GET",
            path=path,
        )
    seen.add(link)
    return link


def organization_id(body: dict[str, Any]) -> str | None:
    """The tenant id in a ``GET /organization`` answer (organization-list.md: a collection
    holding the signed-in tenant's organization, whose ``id`` is the tenant id). None unless
    exactly one organization with a GUID id is listed: anything else is no evidence."""
    items = body.get("value")
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        return None
    tenant = items[0].get("id")
    return tenant.lower() if isinstance(tenant, str) and GUID_RE.match(tenant) else None
