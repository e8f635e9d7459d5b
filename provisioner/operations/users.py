"""Which users a plan must resolve: the manifest's user principal names, to Entra object ids.

Graph reports chat members by object id (``userId``), while a manifest may name a user by UPN
or by object id. Resolving each UPN once (``graph.users.lookup_users``) makes membership
comparisons exact whatever form the manifest uses. Results are cached in ``state.users`` (UPN in
lower case -> object id; UPNs are case-insensitive in Entra ID) by apply, so a steady-state plan
resolves only new UPNs.

A UPN Graph does not know (404) is a manifest error naming the file and line of every member
that uses it, so the plan already says "user not found" instead of apply failing half-way.
Members of other tenants (``tenantId`` set) are not looked up: they are not in this tenant's
directory.
"""

from __future__ import annotations

from provisioner.errors import Diagnostic, ValidationFailed
from provisioner.graph.reads import READ_CONCURRENCY, BatchClient
from provisioner.graph.users import is_guid, lookup_users
from provisioner.models import DesiredState, Member
from provisioner.states.records import State


def known_users(state: State) -> dict[str, str]:
    """UPN (lower case) -> object id, from the cache and from the members state recorded
    with an object id."""
    known = {}
    for record in state.chats.values():
        for m in record.members:
            if m.object_id and not is_guid(m.user):
                known[m.user.lower()] = m.object_id
    known.update(state.users)
    return known


def resolve_users(
    client: BatchClient,
    state: State,
    desired: DesiredState | None = None,
    *,
    concurrency: int = READ_CONCURRENCY,
) -> dict[str, str]:
    """Resolve the in-tenant UPN members of ``desired`` and of the state's chats that are not
    known yet (see `known_users`); returns the new UPN (lower case) -> object id entries.

    Raises ``ValidationFailed`` with a diagnostic at every manifest member whose user Graph
    does not find. A UPN only the state has (a user deleted since) stays unresolved: refresh
    then reports that member as removed, which it is."""
    known = known_users(state)
    wanted: dict[str, list[Member]] = {}
    for chat in desired.chats if desired is not None else ():
        for m in chat.members:
            if m.tenant_id or is_guid(m.user) or m.user.lower() in known:
                continue
            wanted.setdefault(m.user.lower(), []).append(m)
    for record in state.chats.values():
        for r in record.members:
            upn = r.user.lower()
            if not (r.object_id or r.tenant_id or is_guid(r.user) or upn in known):
                wanted.setdefault(upn, [])
    found = lookup_users(client, list(wanted), concurrency=concurrency)
    missing = [m for upn, members in wanted.items() if found.get(upn) is None for m in members]
    if missing:
        raise ValidationFailed(
            [_not_found(m) for m in missing],
            f"{len({m.user.lower() for m in missing})} user(s) not found in the directory",
        )
    return {upn: str(user["id"]) for upn, user in found.items() if user is not None}


def check_users(
    client: BatchClient, desired: DesiredState, *, concurrency: int = READ_CONCURRENCY
) -> dict[str, str]:
    """Look up every in-tenant user the manifests name, object ids and UPNs alike (batched
    ``GET /users/{id | upn}``: user-get.md), without reading any chat or taking the state's
    lock: the cheap check that a mistyped user fails the plan under review rather than the
    apply after the merge. Returns UPN (lower case) -> object id for the UPNs; raises
    ``ValidationFailed`` with a diagnostic at every member Graph does not find."""
    members = [m for chat in desired.chats for m in chat.members if not m.tenant_id]
    found = lookup_users(client, [m.user for m in members], concurrency=concurrency)
    missing = [m for m in members if found.get(m.user.lower()) is None]
    if missing:
        raise ValidationFailed(
            [_not_found(m) for m in missing],
            f"{len({m.user.lower() for m in missing})} user(s) not found in the directory",
        )
    return {
        ref: str(user["id"]) for ref, user in found.items() if user is not None and not is_guid(ref)
    }


def _not_found(member: Member) -> Diagnostic:
    source = member.source
    return Diagnostic(
        source.file if source else "(manifest)",
        source.line if source else 0,
        source.col if source else 0,
        f"user '{member.user}' was not found in the directory (Graph: 404 for "
        f"GET /users/{member.user})",
        hint="check the spelling; a user of another tenant needs tenantId",
    )
