"""Generators whose rows are the users of an Entra ID group (issue 23)::

    generators:
      - name: welcome
        source: {group: new-hires@contoso.com}     # the group's object id or mail
        chats:
          - key: welcome-{upn|slug}
            chatType: oneOnOne
            members: [{user: "{upn}"}, {user: hr@contoso.com}]

Each user of the group, nested groups followed (users only), is one row with the fields of
``GROUP_FIELDS``. Only Graph knows them, so offline (``validate``) the templates are checked
against those fields and the generator is *deferred*: ``DesiredState.deferred`` names it and
its chats are made when a plan has read the group (``operations.generated``), which loads the
manifests again with the users as rows. Then every user's chats go through exactly what a
file row's go through, at the generator's line, the user's UPN named in every message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from yaml.nodes import Node

from provisioner.manifest.yamlload import position
from provisioner.models import GroupGenerator, Source

#: A group user's fields: object id, userPrincipalName, displayName, mail, userType
#: (``Member`` or ``Guest``), as ``GET /groups/{id}/transitiveMembers/microsoft.graph.user``
#: gives them (group-list-transitivemembers.md, with ``$select``).
GROUP_FIELDS = ("id", "upn", "name", "mail", "userType")

#: The users of the groups a plan read, by group identity (``GroupGenerator.identity``):
#: each a mapping of ``GROUP_FIELDS`` to values ("" when Graph gave none).
GroupRows = Mapping[str, Sequence[Mapping[str, str]]]

#: One user as a row: its values, the label put before its errors, the plan's origin.
UserRow = tuple[dict[str, str], str, str]


def user_rows(name: str, group: str, groups: GroupRows | None) -> list[UserRow] | None:
    """The rows of generator ``name`` reading ``group``; None when the group was not read."""
    users = None if groups is None else groups.get(group.lower())
    if users is None:
        return None
    out: list[UserRow] = []
    for user in users:
        values = {f: str(user.get(f) or "") for f in GROUP_FIELDS}
        who = values["upn"] or values["id"]
        out.append((values, f"user {who}", f"generator {name}, group {group}: {who}"))
    return out


def deferred(gen: Node, file: str, name: str, group: str) -> GroupGenerator:
    line, col = position(gen)
    return GroupGenerator(name, group, Source(file, line, col))


def note(generator: GroupGenerator) -> str:
    """What ``validate`` says of a deferred generator (a note, not an error)."""
    return (
        f"generator {generator.name} reads group {generator.group} when planning "
        "(not expanded offline)"
    )
