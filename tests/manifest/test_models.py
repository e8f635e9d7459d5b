from __future__ import annotations

import requests

from provisioner.emulator import EmulatorServer
from provisioner.models import Chat, Member, odata_key, one_on_one_key


def test_one_on_one_key_is_order_and_case_independent() -> None:
    a, b = "Jacob@Contoso.com", "8b081ef6-4792-4def-b2c9-c363a1bf41d5"
    assert one_on_one_key(a, b) == one_on_one_key(b.upper(), a.lower())
    assert one_on_one_key(a, b) != one_on_one_key(a, "alex@contoso.com")


def test_plain_users_are_bound_exactly_as_the_contract_shows() -> None:
    body = Member("jacob@contoso.com", "guest").request_body("https://g.example/v1.0/")
    assert body == {
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "roles": ["guest"],
        "user@odata.bind": "https://g.example/v1.0/users('jacob@contoso.com')",
    }


def test_odata_key_escapes_quotes_and_fragment_characters() -> None:
    assert odata_key("o'brien@contoso.com") == "o''brien@contoso.com"
    assert odata_key("a_b.com#EXT#@c.onmicrosoft.com") == "a_b.com%23EXT%23@c.onmicrosoft.com"


def test_escaped_users_reach_graph_as_the_same_users() -> None:
    # The emulator parses binds as Graph does; the chat must hold exactly these two users.
    users = ("o'brien@contoso.com", "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com")
    chat = Chat("k", "group", (*(Member(u) for u in users), Member("x@contoso.com")), "T")
    with EmulatorServer(invent_users=True) as server:
        resp = requests.post(
            f"{server.url}/chats",
            json=chat.request_body(server.url),
            headers={"Authorization": "Bearer t"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        (view,) = server.tenant.find_chats(chat_type="group", topic="T")
        for user in users:
            assert server.tenant.user_id(user) in view.member_user_ids


def test_member_body_history_only_when_all() -> None:
    from provisioner.models import ALL_HISTORY_START, Member

    member = Member("adele@contoso.com", "owner")
    plain = member.request_body()
    assert "visibleHistoryStartDateTime" not in plain
    assert member.request_body(history="none") == plain
    # chat-post-members.md example 3: the whole history.
    assert member.request_body(history="all") == {
        **plain,
        "visibleHistoryStartDateTime": ALL_HISTORY_START,
    }
