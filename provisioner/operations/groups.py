"""Reading the Entra ID groups of ``group:`` member entries, for a refreshing plan (issue 22).

Per group, once per plan: its users, nested groups followed,
``GET /groups/{id}/transitiveMembers/microsoft.graph.user?$select=id,userPrincipalName,userType``
(group-list-transitivemembers.md; 999 a page). The group's id and name are read once
(``GET /groups/{id}`` or, for a mail address, ``GET /groups?$filter=mail eq '...'``) and then
taken from the state, so refreshing an unchanged group of up to 999 users costs one request.
Each needs ``GroupMember.Read.All`` (its least privileged application permission); Graph's 403
becomes an error naming it (``graph.routes``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from provisioner.errors import InputError
from provisioner.graph.errors import GraphNotFound
from provisioner.models import GUID_RE, DesiredState, GroupRef
from provisioner.states.records import GroupRecord, GroupUser


@runtime_checkable
class GroupReader(Protocol):
    """The part of ``GraphClient`` that reads groups."""

    def get_group(self, group_id: str) -> dict[str, Any]: ...

    def find_groups_by_mail(self, mail: str) -> list[dict[str, Any]]: ...

    def group_users(self, group_id: str) -> list[dict[str, Any]]: ...


def group_refs(desired: DesiredState) -> dict[str, GroupRef]:
    """Every group the manifests name, once (the first entry naming it), by identity: in
    ``group:`` member entries and as the source of generators (issue 23)."""
    found: dict[str, GroupRef] = {}
    for chat in desired.chats:
        for ref in chat.groups:
            found.setdefault(ref.identity, ref)
    for generator in desired.deferred:
        found.setdefault(generator.identity, GroupRef(generator.group, None, generator.source))
    return found


def read_groups(
    client: GroupReader,
    desired: DesiredState,
    known: Mapping[str, GroupRecord],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> dict[str, GroupRecord]:
    """The groups of ``desired`` as Graph has them now (``known``: the state's, for ids and
    names already read). A group Graph does not find is an ``InputError`` at its entry."""
    out: dict[str, GroupRecord] = {}
    for identity, ref in sorted(group_refs(desired).items()):
        before = known.get(identity)
        group_id, name = (before.group_id, before.name) if before else _find(client, ref)
        try:
            users = client.group_users(group_id)
        except GraphNotFound:
            raise _missing(ref) from None
        read_at = now().isoformat(timespec="seconds").replace("+00:00", "Z")
        out[identity] = GroupRecord(group_id, name, read_at, tuple(_users(users)))
    return out


def taught_users(groups: Mapping[str, GroupRecord]) -> dict[str, str]:
    """UPN (lower case) -> object id of every user of ``groups`` that has a UPN."""
    return {
        u.upn.lower(): u.object_id for g in groups.values() for u in g.users if u.upn is not None
    }


def _find(client: GroupReader, ref: GroupRef) -> tuple[str, str]:
    if GUID_RE.match(ref.group):
        try:
            group = client.get_group(ref.group)
        except GraphNotFound:
            raise _missing(ref) from None
        found = [group]
    else:
        found = client.find_groups_by_mail(ref.group)
    if len(found) != 1 or not found[0].get("id"):
        if not found:
            raise _missing(ref)
        raise InputError(
            f"{_where(ref)}group mail {ref.group} matches {len(found)} groups",
            hint="name the group by its object id",
        )
    group = found[0]
    return str(group["id"]), str(group.get("displayName") or group["id"])


def _users(items: list[dict[str, Any]]) -> list[GroupUser]:
    users = []
    for item in items:
        if not item.get("id"):
            continue
        upn = item.get("userPrincipalName")
        guest = str(item.get("userType") or "").lower() == "guest"
        name, mail = item.get("displayName"), item.get("mail")
        users.append(
            GroupUser(
                str(item["id"]),
                str(upn) if upn else None,
                guest,
                str(name) if name else None,
                str(mail) if mail else None,
            )
        )
    return users


def _missing(ref: GroupRef) -> InputError:
    return InputError(
        f"{_where(ref)}group {ref.group} was not found in the directory",
        hint="check the group's object id or mail address (and that the app can read it)",
    )


def _where(ref: GroupRef) -> str:
    return f"{ref.source}: " if ref.source else ""
