"""``memberSets``: named lists of members, expanded into the chats that name them (issue 22).

A chat's ``members`` (and a set) may hold ``set: NAME`` entries next to ``user:`` entries.
Sets are shared by every manifest file of a run, so a ``staff.yaml`` of sets can serve every
file of chats. Expansion happens after all files are read and before Graph's rules
(``manifest.rules``) run on the chats, so those rules see every member, wherever it came from.

Problems, each at the ``file:line:col`` of the entry that causes it:

* a set defined twice (in one run);
* a ``set:`` naming no set (with the closest name as a hint);
* a set that includes itself, directly or through others (the cycle is named);
* one person reached through two routes in one chat (two sets, or a set and a ``user:``
  entry; two ``user:`` entries are the rules' "already a member" error), or listed twice in
  one set: Graph refuses a chat that names a user twice, and the two routes could give the
  person two different roles.

A ``role`` on a ``set:`` entry is the role of everyone the set brings (the outermost entry that
gives one wins); without it each member keeps the role its set gives (or ``defaults.role`` of
the file that defines the set). Each member brought by a set records it (``Member.via``), so
plans can say where a person came from.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from provisioner.errors import Diagnostic
from provisioner.manifest.rules import Entry
from provisioner.models import GroupRef, Member, MemberSet, SetRef, Source

_UNKNOWN_WHERE = Source("", 0, 0)


@dataclass
class _Expander:
    """One run's sets, and the problems found while expanding them (each reported once)."""

    sets: dict[str, MemberSet]
    problems: dict[tuple[str, int, int, str], Diagnostic] = field(default_factory=dict)
    done: dict[str, tuple[tuple[Member, str], ...]] = field(default_factory=dict)

    def report(self, where: Source | None, message: str, hint: str | None = None) -> None:
        at = where or _UNKNOWN_WHERE
        self.problems.setdefault(
            (at.file, at.line, at.col, message),
            Diagnostic(at.file, at.line, at.col, message, hint=hint),
        )

    def members_of(self, ref: SetRef, stack: tuple[str, ...]) -> tuple[tuple[Member, str], ...]:
        """The members ``ref`` brings, each with the route it came by (``set NAME``), the
        reference's role applied."""
        found = self.sets.get(ref.name)
        if found is None:
            close = difflib.get_close_matches(ref.name, list(self.sets), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else _known(self.sets)
            self.report(ref.source, f"unknown member set '{ref.name}'", hint)
            return ()
        if ref.name in stack:
            cycle = " -> ".join((*stack[stack.index(ref.name) :], ref.name))
            self.report(
                ref.source,
                f"member set '{ref.name}' includes itself: {cycle}",
                "a set can include other sets, but never itself",
            )
            return ()
        members = self.done.get(ref.name)
        if members is None:
            members = self._expand(found, (*stack, ref.name))
            self.done[ref.name] = members
        if ref.role is None:
            return members
        return tuple((replace(m, role=ref.role), route) for m, route in members)

    def _expand(
        self, member_set: MemberSet, stack: tuple[str, ...]
    ) -> tuple[tuple[Member, str], ...]:
        out: list[tuple[Member, str]] = []
        seen: dict[str, str] = {}
        for item in member_set.entries:
            if isinstance(item, GroupRef):
                self.report(
                    item.source,
                    f"a group: entry belongs in a chat's members, not in member set "
                    f"'{member_set.name}'",
                    "name the group in each chat that needs it",
                )
                continue
            if isinstance(item, SetRef):
                brought = self.members_of(item, stack)
            else:
                brought = ((item, f"set '{member_set.name}'"),)
            for member, route in brought:
                if member.identity in seen:
                    self.report(
                        member.source,
                        f"user '{member.user}' is reached twice in member set "
                        f"'{member_set.name}': {seen[member.identity]} and {route}",
                        "list each person once",
                    )
                    continue
                seen[member.identity] = route
                out.append((member, route))
        return tuple(out)


def _known(sets: dict[str, MemberSet]) -> str:
    return "defined sets: " + ", ".join(sorted(sets)) if sets else "no memberSets are defined"


def expand(
    entries: Sequence[Entry], sets: Sequence[MemberSet]
) -> tuple[list[Entry], list[Diagnostic]]:
    """``entries`` with every chat's ``set:`` entries replaced by the sets' members (in
    place, in order), and every problem of the sets and their use."""
    expander = _Expander({})
    for member_set in sets:
        first = expander.sets.get(member_set.name)
        if first is not None:
            expander.report(
                member_set.source,
                f"member set '{member_set.name}' is already defined at {first.source}",
                "set names are shared by all manifest files of a run; rename one",
            )
        else:
            expander.sets[member_set.name] = member_set
    for member_set in expander.sets.values():  # problems of sets no chat uses are shown too
        expander.members_of(SetRef(member_set.name, None, member_set.source), ())
    out = [_expanded(expander, e) if e.chat.entries else e for e in entries]
    return out, list(expander.problems.values())


def _expanded(expander: _Expander, entry: Entry) -> Entry:
    groups: dict[str, GroupRef] = {}
    for item in entry.chat.entries:
        if not isinstance(item, GroupRef):
            continue
        if item.identity in groups:
            expander.report(
                item.source,
                f"group '{item.group}' is already a member entry of this chat "
                f"({groups[item.identity].source})",
                "name each group once",
            )
        elif item.role == "guest":
            expander.report(
                item.source,
                f"role guest on group '{item.group}': a group's member accounts cannot be "
                "guests in a chat (Graph gives the guest role to guest accounts only)",
                "leave the role out (or owner): the group's guests get guest anyway",
            )
        else:
            groups[item.identity] = item
    chat = replace(
        entry.chat, members=_chat_members(expander, entry), groups=tuple(groups.values())
    )
    return replace(entry, chat=chat)


def _chat_members(expander: _Expander, entry: Entry) -> tuple[Member, ...]:
    members: list[Member] = []
    seen: dict[str, tuple[str, Source | None]] = {}
    for item in entry.chat.entries:
        if isinstance(item, GroupRef):
            continue  # its users join at plan time (plans.groups)
        if isinstance(item, SetRef):
            via, mine = f"set {item.name}", f"set '{item.name}'"
            brought = [
                (replace(m, via=via), mine if r == mine else f"{mine} (which includes {r})")
                for m, r in expander.members_of(item, ())
            ]
            where = item.source
        else:
            brought = [(item, "a user entry")]
            where = item.source
        for member, route in brought:
            first = seen.get(member.identity)
            if first is None:
                seen[member.identity] = (route, where)
                members.append(member)
                continue
            if member.via is None and first[0] == "a user entry":
                members.append(member)  # two user: entries: the rules' own error
                continue
            expander.report(
                where,
                f"user '{member.user}' is reached twice in chat '{entry.chat.key}': through "
                f"{first[0]} ({first[1] or '?'}) and through {route}",
                "list each person once: take them out of one set, or drop the user entry",
            )
    return tuple(members)
