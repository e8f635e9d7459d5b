"""Membership changes provision made that Graph's member lists may not show yet.

Graph's lists lag behind its writes: members added to a conversation were reported missing
from its member list for about 15 minutes (microsoft-graph-docs-contrib#5343). apply records
each member it adds or removes with the end of the consistency window; until then, refresh
trusts the record over a list that disagrees (``plans.live.LiveChat.as_record``), so a lagging
list is not reported as drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How long Graph may take to list a chat it made or a membership change, unless told
#: otherwise (seconds): apply's lookups of an unknown creation and the settling records share
#: it. Graph documents no bound; users report member lists minutes behind (contrib#5343) and
#: slow list calls (msteams-docs#8959). 60 s is the least issue 14 allows; raise it with
#: ``--consistency-window`` where the tenant is slower.
DEFAULT_CONSISTENCY_WINDOW_S = 60.0

#: ``Settling.change`` values.
ADDED, REMOVED = "added", "removed"


@dataclass(frozen=True, slots=True)
class Settling:
    """A membership change provision made that Graph's member lists may not show yet (they
    lag behind writes, microsoft-graph-docs-contrib#5343): the member's object id, ``added``
    or ``removed``, and until when (ISO 8601, UTC: the change plus the consistency window)
    a list that disagrees is lag, not drift."""

    object_id: str
    change: str
    until: str

    def to_dict(self) -> dict[str, str]:
        return {"object_id": self.object_id, "change": self.change, "until": self.until}


def settling_from(raw: Any, where: str) -> tuple[Settling, ...]:
    """The ``settling`` list of a chat record in the state file; ValueError names a problem."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("expected a list")
    out = []
    for n, item in enumerate(raw):
        fields = (item.get(k) if isinstance(item, dict) else None for k in _FIELDS)
        object_id, change, until = fields
        if not (isinstance(object_id, str) and isinstance(until, str)):
            raise ValueError(f"[{n}]: expected an object with object_id, change and until")
        if change not in (ADDED, REMOVED):
            raise ValueError(f"[{n}]: change must be {ADDED!r} or {REMOVED!r}")
        out.append(Settling(object_id, change, until))
    return tuple(out)


_FIELDS = ("object_id", "change", "until")
