from __future__ import annotations

from dataclasses import replace

from provisioner.manifest import fastpath
from provisioner.manifest.rules import Entry, check
from provisioner.manifest.yamlload import compose
from provisioner.models import Member

DOC = """\
version: 1
chats:
  - key: a
    chatType: group
    members: [{user: x@c.com}, {user: y@c.com}]
  - chatType: oneOnOne
    members: [{user: x@c.com}, {user: Y@C.COM}]
  - key: a
    chatType: oneOnOne
    members: [{user: y@c.com}, {user: x@c.com}]
  - key: a
    chatType: group
    members:
      - {user: 82af01c5-f7cc-4a2e-a728-3a5df21afd9d, tenantId: 4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1}
      - {user: 82AF01C5-F7CC-4A2E-A728-3A5DF21AFD9D}
"""


def entries(text: str, file: str = "m.yaml", partial: bool = False) -> list[Entry]:
    root = compose(text, file)
    assert root is not None
    chats = fastpath.build_document(root, file, 10**6)
    assert chats is not None
    return [Entry(c, file, i, root, partial=partial) for i, c in enumerate(chats)]


def test_first_occurrence_wins_and_later_ones_are_reported() -> None:
    found = [(d.line, d.path, d.message.split(":")[0]) for d in check(entries(DOC))]
    assert found == [
        (
            10,
            "$.chats[2].members",
            "a oneOnOne chat between 'y@c.com' and 'x@c.com' is already defined at m.yaml",
        ),
        (
            15,
            "$.chats[3].members[1].user",
            "user '82AF01C5-F7CC-4A2E-A728-3A5DF21AFD9D' is already a member of this chat "
            "(members[0])",
        ),
        (11, "$.chats[3].key", "duplicate key 'a'"),
    ]


def test_roles_of_out_of_tenant_members() -> None:
    doc = DOC.replace("tenantId:", "role: guest, tenantId:")
    messages = [d.message for d in check(entries(doc))]
    assert "an out-of-tenant member (tenantId set) must be an owner, not a guest" in messages
    doc = "version: 1\ndefaults: {role: guest}\n" + DOC.split("\n", 1)[1]
    messages = [d.message for d in check(entries(doc))]
    assert any(m.endswith("(from defaults.role)") for m in messages)


def test_partial_entries_take_part_with_what_is_readable() -> None:
    # Issue 25: a broken chat's valid key and readable pair are checked with its other
    # errors, not only once they are fixed.
    found = [d.path for d in check(entries(DOC, partial=True))]
    assert found == ["$.chats[2].members", "$.chats[3].members[1].user", "$.chats[3].key"]
    # ... but an invalid key (rebuilt as "") or an unreadable member (user "") takes no part.
    unreadable = [
        replace(e, chat=replace(e.chat, key="", members=(e.chat.members[0], Member(""))))
        for e in entries(DOC, partial=True)
    ]
    assert [d.path for d in check(unreadable)] == []


def test_out_of_tenant_members_are_named_by_object_id() -> None:
    # Graph reports other tenants' members by userId only (null email, msteams-docs#2190).
    doc = DOC.replace(
        "{user: 82af01c5-f7cc-4a2e-a728-3a5df21afd9d, tenantId:", "{user: p@fabrikam.com, tenantId:"
    )
    found = [(d.path, d.message) for d in check(entries(doc))]
    assert any(
        path == "$.chats[3].members[0].user" and "must be named by object id" in message
        for path, message in found
    )


def test_group_chats_hold_at_most_250_members() -> None:
    def doc(n: int) -> str:
        users = ", ".join(f"{{user: u{i}@c.com}}" for i in range(n))
        return f"version: 1\nchats:\n  - {{key: big, chatType: group, members: [{users}]}}\n"

    assert check(entries(doc(250))) == []
    (diag,) = check(entries(doc(251)))
    assert diag.path == "$.chats[0].members" and "at most 250 members" in diag.message
