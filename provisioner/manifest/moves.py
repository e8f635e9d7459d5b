"""``moved:`` entries: renaming a chat key without recreating the chat (Terraform's ``moved``).

A chat's key is its identity in state, so renaming it in a manifest alone would plan a
``forget`` of the old key and a ``create`` of the new one: a second chat in Teams. A
``moved: [{from: old, to: new}]`` entry says they are the same chat; the planner renames the
state record instead (``plans.planner``), and apply records the new key.

Checked here, across all manifest files (each problem with ``file:line:col``):

* ``to`` must be the key of a chat in the manifests, or the ``from`` of another entry (a chain
  of renames: ``a -> b`` then ``b -> c`` moves ``a`` to ``c``);
* ``from`` must not be a key still used by a chat (the old key would name two things);
* one entry per ``from``, one ``from`` per ``to`` (two chats cannot both become one key), no
  entry from a key to itself, no cycles.

Like Terraform, an entry whose ``from`` is not in the state does nothing, so entries can stay
in the manifests after they were applied (a fresh state, another environment, an older copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from yaml.nodes import Node

from provisioner.errors import Diagnostic
from provisioner.manifest.yamlload import JsonPath, format_path, locate, position
from provisioner.models import Chat, Move, Source


@dataclass(frozen=True)
class MoveEntry:
    """A ``moved:`` entry with where it came from (file, index, the file's document node)."""

    move: Move
    file: str
    index: int
    root: Node


def check(
    entries: Sequence[MoveEntry], chats: Mapping[str, Chat], *, keys_complete: bool = True
) -> list[Diagnostic]:
    """Every problem among the ``moved:`` entries of all files, given the manifests' chats by
    key. ``keys_complete`` False (some chats had errors, so their keys are unknown) skips the
    "no chat has this key" check rather than report it falsely."""
    out: list[Diagnostic] = []
    by_from: dict[str, MoveEntry] = {}
    by_to: dict[str, MoveEntry] = {}
    for entry in entries:
        conflict = _conflict(entry, by_from, by_to)
        if conflict is not None:
            out.append(conflict)
            continue
        by_from[entry.move.from_key] = entry
        by_to[entry.move.to_key] = entry
        still_used = _from_still_used(entry, chats)
        if still_used is not None:
            out.append(still_used)
    if keys_complete:
        out.extend(_unknown_targets(by_from, chats))
    out.extend(_cycles(by_from))
    return out


def _conflict(
    entry: MoveEntry, by_from: Mapping[str, MoveEntry], by_to: Mapping[str, MoveEntry]
) -> Diagnostic | None:
    """A move to itself, or one that clashes with an earlier entry (same from, same to)."""
    move = entry.move
    if move.from_key == move.to_key:
        return _diag(entry, "to", f"moves '{move.from_key}' to itself", None)
    earlier = by_from.get(move.from_key)
    if earlier is not None:
        return _diag(
            entry,
            "from",
            f"'{move.from_key}' is already moved to '{earlier.move.to_key}' at {_where(earlier)}",
            "a key can be moved only once; for a chain of renames write a -> b, b -> c",
        )
    earlier = by_to.get(move.to_key)
    if earlier is not None:
        return _diag(
            entry,
            "to",
            f"'{move.from_key}' and '{earlier.move.from_key}' (at {_where(earlier)}) are "
            f"both moved to '{move.to_key}'",
            "two chats in the state cannot become one; keep the entry of the chat that "
            "is now this key",
        )
    return None


def _from_still_used(entry: MoveEntry, chats: Mapping[str, Chat]) -> Diagnostic | None:
    chat = chats.get(entry.move.from_key)
    if chat is None:
        return None
    where = f" ({chat.source})" if chat.source else ""
    return _diag(
        entry,
        "from",
        f"'{entry.move.from_key}' is still the key of a chat{where}; a moved key must no "
        f"longer be used",
        "remove this entry, or give that chat another key",
    )


def _unknown_targets(
    by_from: Mapping[str, MoveEntry], chats: Mapping[str, Chat]
) -> list[Diagnostic]:
    """Entries whose ``to`` is neither a chat's key nor the ``from`` of another entry."""
    return [
        _diag(
            entry,
            "to",
            f"'{entry.move.to_key}' is not the key of any chat in the manifests",
            "'to' is the chat's new key; 'from' the key the state knows it by",
        )
        for entry in by_from.values()
        if entry.move.to_key not in chats and entry.move.to_key not in by_from
    ]


def _cycles(by_from: Mapping[str, MoveEntry]) -> list[Diagnostic]:
    out = []
    reported: set[str] = set()
    for start in by_from:
        seen = [start]
        key = by_from[start].move.to_key
        while key in by_from and key not in seen:
            seen.append(key)
            key = by_from[key].move.to_key
        if key == start and start not in reported:
            reported.update(seen)
            chain = " -> ".join([*seen, start])
            out.append(
                _diag(by_from[start], "to", f"moves form a cycle: {chain}", "remove one entry")
            )
    return out


def resolve(moves: Iterable[Move]) -> dict[str, str]:
    """``from`` -> the final key, following chains (``a -> b``, ``b -> c``: ``a`` and ``b``
    both end at ``c``). The entries must have passed ``check``."""
    step = {m.from_key: m.to_key for m in moves}
    out = {}
    for start in step:
        key = step[start]
        hops = 0
        while key in step and hops <= len(step):
            key = step[key]
            hops += 1
        out[start] = key
    return out


def _where(entry: MoveEntry) -> str:
    return str(entry.move.source or Source(entry.file, 0, 0))


def _diag(entry: MoveEntry, field: str, message: str, hint: str | None) -> Diagnostic:
    path: JsonPath = ("moved", entry.index, field)
    _, node = locate(entry.root, path)
    line, col = position(node)
    return Diagnostic(entry.file, line, col, message, format_path(path), hint)
