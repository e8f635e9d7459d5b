"""Generators whose rows are the users of an Entra ID group, expanded once a plan knows the
users (issue 23; ``manifest.groupsource`` says what validate checks offline).

A refreshing plan reads each group once (``operations.groups.read_groups``, the same read as
for ``group:`` member entries), then loads the manifests again with the users as rows, so their
chats are checked with every other chat of the run (duplicate keys, pairs, members) and errors
point at the generator's line, naming the user. A plan without refresh uses the group as the
state recorded it at the last apply, or stops: only Graph knows who is in a group.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.errors import InputError, PlanError, ValidationFailed
from provisioner.models import DesiredState
from provisioner.states.records import GroupRecord, GroupUser


def expand_deferred(desired: DesiredState, groups: Mapping[str, GroupRecord]) -> DesiredState:
    """``desired`` with the chats of its deferred generators, made from ``groups`` (read by
    this plan, or the state's). ``PlanError`` for a group not there; ``ValidationFailed``
    with every problem of the chats made."""
    if not desired.deferred:
        return desired
    from provisioner.manifest.load import validate_paths

    for generator in desired.deferred:
        if generator.identity not in groups:
            where = f"{generator.source}: " if generator.source else ""
            raise PlanError(
                f"{where}generator {generator.name} reads group {generator.group}, which the "
                "state has not recorded: this plan needs a refresh to read it from Graph",
                hint="plan with refresh (drop --no-refresh)",
            )
    rows = {g.identity: [_fields(u) for u in groups[g.identity].users] for g in desired.deferred}
    result = validate_paths(desired.files, rows)
    if result.desired is None:
        raise ValidationFailed(list(result.diagnostics), result.summary)
    if result.desired.digest != desired.digest:
        # Loaded twice: a manifest edited in between would make chats of two versions.
        raise InputError(
            "the manifests changed while planning", hint="plan again once they are saved"
        )
    return result.desired


def _fields(user: GroupUser) -> dict[str, str]:
    """A user as a generator's row (``manifest.groupsource.GROUP_FIELDS``)."""
    return {
        "id": user.object_id,
        "upn": user.upn or "",
        "name": user.name or "",
        "mail": user.mail or "",
        "userType": "Guest" if user.guest else "Member",
    }
