"""Handlers of the chat, member and user endpoints, with Graph's validation of bodies.

Error messages quoted from Graph where they are known from the field ("Setting topic is not
allowed for 1-on-1 chats.", "The passed-in role 'member' is not supported.", "Chat members
cannot be null. (Parameter 'Members')", "Unable to read JSON request payload..."); the
others are written in the same style. Clients must branch on status and ``code``, never on
messages (``concepts/errors.md``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import quote

from provisioner.emulator.errors import GraphError, bad_request, not_found
from provisioner.emulator.group_reads import HANDLERS as group_handlers
from provisioner.emulator.members import parse_member, unknown_user
from provisioner.emulator.messages import JSON_TYPE, Request, Response
from provisioner.emulator.model import GROUP, ONE_ON_ONE, ChatView, graph_time
from provisioner.emulator.organization import list_organization
from provisioner.emulator.protocol import Context
from provisioner.emulator.routes import Match
from provisioner.emulator.tenant import MAX_GROUP_MEMBERS, MAX_MEMBERS_AT_ONCE
from provisioner.emulator.users import User

UNREADABLE = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and "
    "payload is of valid JSON format."
)
CHAT_PROPERTIES = {"@odata.type", "chatType", "topic", "members"}
MAX_TOPIC = 250  # chat-patch.md: "Maximum length is 250 characters. Use of ':' is not allowed."
# List chats without $top: 20 per page. Not in chat-list.md (which fixes only the maximum);
# observed in responses, e.g. the "@odata.count":20 page with a nextLink quoted in
# learn.microsoft.com/answers/questions/1303807.
DEFAULT_PAGE = 20
MAX_PAGE = 50  # chat-list.md: "Maximum allowed $top value is 50."
MAX_EXPANDED_MEMBERS = 25  # chat-list.md known issue: $expand=members returns at most 25
FILTER_RE = re.compile(r"\s*(chatType|topic)\s+eq\s+'((?:[^']|'')*)'\s*$")


def json_ok(status: int, body: dict[str, object], **headers: str) -> Response:
    return Response(status, body, {"Content-Type": JSON_TYPE, **headers})


def json_object(req: Request) -> dict[str, object]:
    if req.body_error is not None:
        raise req.body_error
    if not isinstance(req.body, dict):
        raise bad_request(UNREADABLE)
    return req.body


def check_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise bad_request("The topic of a chat must be a string.")
    if len(topic) > MAX_TOPIC:
        raise bad_request(f"The topic of a chat cannot be longer than {MAX_TOPIC} characters.")
    if ":" in topic:
        raise bad_request("The topic of a chat cannot contain ':'.")
    return topic


def chat_body(
    req: Request, chat: ChatView, *, members: bool = False, now: float = 0.0, sparse: bool = False
) -> dict[str, object]:
    base = req.base_url
    if not members:
        return {"@odata.context": f"{base}/$metadata#chats/$entity", **chat.to_graph()}
    body: dict[str, object] = {
        "@odata.context": f"{base}/$metadata#chats(members())/$entity",
        **chat.to_graph(members=True, now=now, sparse=sparse),
    }
    body["members@odata.context"] = f"{base}/$metadata#chats('{chat.id}')/members"
    return body


def expand_members(req: Request) -> bool:
    expand = req.query.get("$expand")
    if expand is None:
        return False
    if expand.strip() != "members":
        raise bad_request(f"Expanding '{expand}' is not supported; only $expand=members is.")
    return True


# -- chats -----------------------------------------------------------------------------------
def post_chat(api: Context, req: Request, m: Match) -> Response:
    api.tenant.count("post_chats_total")
    body = json_object(req)
    unknown = sorted(set(body) - CHAT_PROPERTIES)
    if unknown:
        raise bad_request(
            f"The property '{unknown[0]}' does not exist on type 'microsoft.graph.chat'."
        )
    chat_type = body.get("chatType")
    if chat_type not in (ONE_ON_ONE, GROUP):
        raise bad_request(f"Invalid chatType {chat_type!r}: expected 'oneOnOne' or 'group'.")
    raw_members = body.get("members")
    if raw_members is None:
        raise bad_request("Chat members cannot be null. (Parameter 'Members')")
    if not isinstance(raw_members, list):
        raise bad_request("Chat members must be a collection of conversationMember.")
    topic = body.get("topic")
    if chat_type == ONE_ON_ONE:
        if topic is not None:
            raise bad_request("Setting topic is not allowed for 1-on-1 chats.")
        if len(raw_members) != 2:
            raise bad_request("A one-on-one chat must have exactly two members.")
    else:
        if topic is not None:
            topic = check_topic(topic)
        if len(raw_members) < 2:
            raise bad_request("A group chat must have at least two members.")
        if len(raw_members) > MAX_GROUP_MEMBERS:
            raise bad_request(f"A group chat cannot have more than {MAX_GROUP_MEMBERS} members.")
        if len(raw_members) > MAX_MEMBERS_AT_ONCE:
            # Teams limits (limits-specifications-teams.md): "Only 200 members can be added
            # at one time". Graph's answer to more is not documented; users saw a partial
            # roster (msgraph-sdk-powershell#1156); a refusal here.
            raise bad_request(f"Only {MAX_MEMBERS_AT_ONCE} members can be added at one time.")
    members = [parse_member(api, raw) for raw in raw_members]
    if len({mem.user.id for mem in members}) != len(members):
        raise bad_request("A user cannot be a member of the same chat twice.")
    signed_in = api.signed_in(req)
    if signed_in is not None and signed_in not in {mem.user.id for mem in members}:
        # chat-post.md: in delegated calls the signed-in user is one of the members listed
        # ("Every participant is listed, including the caller", graph-facts). The status of
        # Graph's refusal is not documented; a refused body is a 400 here.
        raise bad_request("The signed-in user must be a member of the chat being created.")
    chat, created = api.tenant.create_chat(str(chat_type), topic, members)
    if created:
        api.tenant.count("chats_created_total")
    # chat-post.md: 201 Created with the chat, also when an existing oneOnOne is returned.
    return json_ok(201, chat_body(req, chat))


def get_chat(api: Context, req: Request, m: Match) -> Response:
    members = expand_members(req)
    chat = api.tenant.live_chat(m.params["chat-id"])
    if m.template.startswith(("/me/", "/users/")):  # a chat seen through one of its members
        _chat_of_user(api, req, m, chat)
    body = chat_body(
        req, chat, members=members, now=api.tenant.now(), sparse=api.tenant.sparse_members
    )
    return json_ok(200, body)


def _chat_of_user(api: Context, req: Request, m: Match, chat: ChatView) -> None:
    user = _listable_user(api, req, m)
    if user.id not in chat.member_user_ids:
        raise not_found(f"Chat '{chat.id}' was not found.")


def patch_chat(api: Context, req: Request, m: Match) -> Response:
    body = json_object(req)
    for key in body:
        if key not in ("topic", "@odata.type"):
            raise bad_request(f"The property '{key}' of a chat cannot be updated.")
    if "topic" not in body:
        raise bad_request("Nothing to update: only 'topic' can be set (chat-patch).")
    chat_id = m.params["chat-id"]
    if api.tenant.live_chat(chat_id).chat_type != GROUP:
        raise bad_request("Setting topic is not allowed for 1-on-1 chats.")
    chat = api.tenant.update_topic(chat_id, check_topic(body["topic"]))
    return json_ok(200, chat_body(req, chat))  # chat-patch.md: 200 OK with the chat


def delete_chat(api: Context, req: Request, m: Match) -> Response:
    api.tenant.delete_chat(m.params["chat-id"])
    return Response(204)


def get_deleted_chat(api: Context, req: Request, m: Match) -> Response:
    """``deletedchat-get.md``: 200 with the deletedChat (an entity: its id) while restorable."""
    chat = api.tenant.deleted_chat(m.params["deletedChat-id"])
    body = {"@odata.context": f"{req.base_url}/$metadata#teamwork/deletedChats/$entity"}
    return json_ok(200, {**body, "id": chat.id})


def undo_delete(api: Context, req: Request, m: Match) -> Response:
    """``deletedchat-undodelete.md``: 204 No Content; the chat is active again."""
    api.tenant.undo_delete(m.params["deletedChat-id"])
    return Response(204)


# -- members ---------------------------------------------------------------------------------
def list_members(api: Context, req: Request, m: Match) -> Response:
    chat = api.tenant.live_chat(m.params["chat-id"])
    if m.template.startswith(("/me/", "/users/")):  # a chat seen through one of its members
        _chat_of_user(api, req, m, chat)
    sparse = api.tenant.sparse_members
    value = [m.to_graph(sparse=sparse) for m in chat.listed_members(api.tenant.now())]
    return json_ok(
        200,
        {
            "@odata.context": f"{req.base_url}/$metadata#chats('{chat.id}')/members",
            "@odata.count": len(value),
            "value": value,
        },
    )


def get_member(api: Context, req: Request, m: Match) -> Response:
    chat = api.tenant.live_chat(m.params["chat-id"])
    member = chat.member(m.params["membership-id"])
    if member is None:
        raise not_found(f"Member '{m.params['membership-id']}' was not found in the chat.")
    return json_ok(
        200,
        {"@odata.context": f"{req.base_url}/$metadata#chats('{chat.id}')/members/$entity"}
        | member.to_graph(sparse=api.tenant.sparse_members),
    )


def add_member(api: Context, req: Request, m: Match) -> Response:
    chat_id = m.params["chat-id"]
    api.tenant.live_chat(chat_id)  # 404 before looking at the body
    body = json_object(req)
    new = parse_member(api, body)
    if "visibleHistoryStartDateTime" not in body:
        # chat-post-members.md example 2: without it the member sees no history from before
        # they were added: their history starts now.
        new = replace(new, visible_history_start=graph_time(api.tenant.now()))
    member = api.tenant.add_member(chat_id, new)
    # chat-post-members.md: "a 201 Created response code and a Location header that provides
    # a URL path to the newly created member object"; every example's response has no body.
    return Response(201, None, {"Location": f"/chats/{chat_id}/members/{member.membership_id}"})


def remove_member(api: Context, req: Request, m: Match) -> Response:
    api.tenant.remove_member(m.params["chat-id"], m.params["membership-id"])
    return Response(204)  # chat-delete-members.md


# -- users -----------------------------------------------------------------------------------
def _path_user(api: Context, m: Match) -> User:
    ref = m.params.get("user-id", api.me)  # /me/... and GET /chats: the signed-in user
    user = api.tenant.directory.resolve(ref)
    if user is None:
        raise unknown_user(ref)
    return user


def _listable_user(api: Context, req: Request, m: Match) -> User:
    """Whose chats a list call reads. Delegated calls read the signed-in user's only
    (chat-list.md; graph-facts: "/me/chats and /users/{id}/chats serve the signed-in user
    only"); Graph's refusal of another user's is not quoted in the docs: 403 here."""
    user = _path_user(api, m)
    signed_in = api.signed_in(req)
    if signed_in is not None and user.id != signed_in:
        raise GraphError(
            403, "Forbidden", "A delegated call can only list the chats of the signed-in user."
        )
    return user


def get_user(api: Context, req: Request, m: Match) -> Response:
    user = _path_user(api, m)
    return json_ok(
        200, {"@odata.context": f"{req.base_url}/$metadata#users/$entity"} | user.to_graph()
    )


def parse_filter(text: str) -> dict[str, str]:
    """One clause, ``chatType eq '...'`` or ``topic eq '...'`` (quotes doubled).

    chat-list.md supports ``$filter`` but documents no filter that joins properties with
    ``and``, and other tools filter on one property at a time (graph-facts); so a joined
    filter, or any other form, is refused with a 400 as Graph refuses filters it does not
    support, and a client has to fall back to a plainer query."""
    clause = FILTER_RE.match(text)
    if clause is None:
        raise bad_request(
            f"Invalid filter clause: {text!r} is not supported on chats (supported: one "
            "clause, chatType eq '...' or topic eq '...')."
        )
    return {clause.group(1): clause.group(2).replace("''", "'")}


def _skiptoken(after: int) -> str:
    return base64.urlsafe_b64encode(f"after:{after}".encode()).decode().rstrip("=")


def _after(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, number = text.partition(":")
        if kind == "after" and number.isdigit():
            return int(number)
    except ValueError:
        pass
    raise bad_request("Invalid $skiptoken.")


def list_chats(api: Context, req: Request, m: Match) -> Response:
    """``chat-list.md``: ``$top`` (1..50), ``$filter``, ``$expand=members``, and an
    ``@odata.nextLink`` while more pages remain."""
    user = _listable_user(api, req, m)
    top_text = req.query.get("$top")
    top = DEFAULT_PAGE
    if top_text is not None:
        if not top_text.isdigit() or not 1 <= int(top_text) <= MAX_PAGE:
            raise bad_request(f"Invalid $top {top_text!r}: the page size must be 1 to {MAX_PAGE}.")
        top = int(top_text)
    filters = parse_filter(req.query["$filter"]) if "$filter" in req.query else {}
    if set(filters) - api.tenant.chat_filters:  # undocumented: a Graph may refuse it (issue 20)
        raise bad_request(
            f"Invalid filter clause: filtering on {set(filters).pop()} is not supported."
        )
    members = expand_members(req)
    after = _after(req.query["$skiptoken"]) if "$skiptoken" in req.query else 0
    page, next_after = api.tenant.chats_of(
        user.id,
        after_seq=after,
        limit=top,
        chat_type=filters.get("chatType"),
        topic=filters.get("topic"),
    )
    now = api.tenant.now()
    value = [
        c.to_graph(
            members=members,
            max_members=MAX_EXPANDED_MEMBERS,
            now=now,
            sparse=api.tenant.sparse_members,
        )
        for c in page
    ]
    context = "chats(members())" if members else "chats"
    body: dict[str, object] = {
        "@odata.context": f"{req.base_url}/$metadata#{context}",
        "@odata.count": len(value),
        "value": value,
    }
    if next_after is not None:
        params = {k: v for k, v in req.query.items() if k != "$skiptoken"}
        params["$skiptoken"] = _skiptoken(next_after)
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        body["@odata.nextLink"] = f"{req.base_url}{req.path}?{query}"
    return json_ok(200, body)


Handler = Callable[[Context, Request, Match], Response]
HANDLERS: dict[str, Handler] = {
    "POST /chats": post_chat,
    "GET /chats": list_chats,
    "GET /me/chats": list_chats,
    "GET /users/{user-id}/chats": list_chats,
    "GET /chats/{chat-id}": get_chat,
    "GET /me/chats/{chat-id}": get_chat,
    "GET /users/{user-id}/chats/{chat-id}": get_chat,
    "PATCH /chats/{chat-id}": patch_chat,
    "DELETE /chats/{chat-id}": delete_chat,
    "GET /chats/{chat-id}/members": list_members,
    "GET /me/chats/{chat-id}/members": list_members,
    "GET /users/{user-id}/chats/{chat-id}/members": list_members,
    "POST /chats/{chat-id}/members": add_member,
    "GET /chats/{chat-id}/members/{membership-id}": get_member,
    "DELETE /chats/{chat-id}/members/{membership-id}": remove_member,
    "GET /teamwork/deletedChats/{deletedChat-id}": get_deleted_chat,
    "POST /teamwork/deletedChats/{deletedChat-id}/undoDelete": undo_delete,
    "GET /me": get_user,
    "GET /users/{user-id}": get_user,
    "GET /organization": list_organization,
}


HANDLERS.update(group_handlers)


def run(api: Context, req: Request, m: Match) -> Response:
    handler = HANDLERS.get(m.key)
    if handler is None:  # pragma: no cover - routes.METHODS and HANDLERS are kept in step
        raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed.")
    return handler(api, req, m)
