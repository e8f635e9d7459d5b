"""Entra ID groups in the emulated tenant (the reads provision makes: ``group_reads.py``).

Documented behaviour followed (microsoft-graph-docs-contrib, api-reference/v1.0/api/):

* ``GET /groups/{id}`` (group-get.md): the group; ``$select`` picks properties.
* ``GET /groups?$filter=mail eq '...'`` (group-list.md): groups by mail.
* ``GET /groups/{id}/transitiveMembers/microsoft.graph.user``
  (group-list-transitivemembers.md): "a flat list of all nested members", users only through
  the OData cast; ``$select``; 100 a page unless ``$top`` (at most 999), with
  ``@odata.nextLink``. Nested groups are followed, cycles too (a user reached twice is listed
  once).
* Without ``GroupMember.Read.All`` Graph answers 403 ``Authorization_RequestDenied``
  ("Insufficient privileges to complete the operation."): ``EmulatorServer(group_read=False)``.

Tests make and change groups from the emulator's side (``server.tenant.groups``); they live
in memory only (not in the emulator's data file).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field


@dataclass
class Group:
    id: str
    display_name: str
    mail: str | None = None
    members: list[str] = field(default_factory=list)  # user or group object ids, in order


class Groups:
    """The tenant's groups; thread-safe. ``readable`` False: every group read is 403."""

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}
        self._lock = threading.Lock()
        self.readable = True

    def add(
        self,
        name: str,
        members: list[str] | tuple[str, ...] = (),
        *,
        mail: str | None = None,
        group_id: str | None = None,
    ) -> Group:
        group = Group(
            (group_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"group:{name}"))).lower(),
            name,
            mail,
            [m.lower() for m in members],
        )
        with self._lock:
            self._groups[group.id] = group
        return group

    def add_members(self, group_id: str, *ids: str) -> None:
        with self._lock:
            self._groups[group_id.lower()].members.extend(i.lower() for i in ids)

    def remove_members(self, group_id: str, *ids: str) -> None:
        gone = {i.lower() for i in ids}
        with self._lock:
            group = self._groups[group_id.lower()]
            group.members = [m for m in group.members if m not in gone]

    def get(self, group_id: str) -> Group | None:
        with self._lock:
            return self._groups.get(group_id.lower())

    def by_mail(self, mail: str) -> list[Group]:
        with self._lock:
            return [g for g in self._groups.values() if (g.mail or "").lower() == mail.lower()]

    def transitive_user_ids(self, group_id: str) -> list[str]:
        """Every user id reached from the group through nested groups, once, in order."""
        out: list[str] = []
        seen: set[str] = set()
        with self._lock:
            stack = [group_id.lower()]
            visited: set[str] = set()
            while stack:
                gid = stack.pop(0)
                if gid in visited:
                    continue
                visited.add(gid)
                for member in self._groups[gid].members:
                    if member in self._groups:
                        stack.append(member)
                    elif member not in seen:
                        seen.add(member)
                        out.append(member)
        return out
