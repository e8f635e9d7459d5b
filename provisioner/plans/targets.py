"""``--target KEY`` (issue 23): plan and apply only some chat keys, as Terraform's ``-target``.

A pattern is a chat key or a shell-style glob (``incident-*``, ``onboarding-202?-*``), matched
against the whole key (`fnmatch.fnmatchcase`: keys are lower case, so the match is exact).
Narrowing happens before planning and before refresh: a chat outside the targets is neither
read from Graph nor planned, so it is neither created, updated, deleted nor forgotten, and the
plan cannot tell whether it drifted. That is the point (a quick fix to one chat in a 10,000-chat
state) and the risk (the plan is incomplete), which is why every targeted plan says so.

The narrowed state is a view for planning only: apply records what the plan learned, and runs
its changes, against the whole state it holds under the lock, so the other chats' records are
kept as they are.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import replace

from provisioner.errors import InputError
from provisioner.models import DesiredState
from provisioner.states.records import State

#: Said with every targeted plan (Terraform says much the same).
TARGET_WARNING = (
    "targeting is in effect: only chats whose key matches {patterns} were read and planned; "
    "the rest were not looked at, so this plan may be incomplete. Use --target for "
    "exceptional repairs, not as the routine way to apply."
)


def matches(key: str, patterns: Sequence[str]) -> bool:
    """True when ``key`` matches one of ``patterns`` (a key or a glob); every key matches no
    patterns at all (no ``--target``)."""
    return not patterns or any(fnmatch.fnmatchcase(key, p) for p in patterns)


def check_patterns(patterns: Sequence[str], keys: Iterable[str]) -> None:
    """Refuse a pattern that matches none of ``keys`` (the manifests' and the state's): a
    mistyped key would otherwise give an empty plan that looks like "nothing to do"."""
    known = set(keys)
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for k in known)]
    if unmatched:
        raise InputError(
            "--target matches no chat key in the manifests or the state: "
            + ", ".join(repr(p) for p in unmatched),
            hint="see the keys with: provision state list (a pattern is a key or a glob "
            "such as 'incident-*', matched against the whole key)",
        )


def narrow_desired(desired: DesiredState, patterns: Sequence[str]) -> DesiredState:
    """The chats of ``desired`` whose key matches; ``moved:`` entries touching such a key."""
    if not patterns:
        return desired
    chats = tuple(c for c in desired.chats if matches(c.key, patterns))
    moves = tuple(
        m for m in desired.moves if matches(m.to_key, patterns) or matches(m.from_key, patterns)
    )
    imports = tuple(i for i in desired.imports if matches(i.key, patterns))
    return replace(desired, chats=chats, moves=moves, imports=imports)


def narrow_state(state: State, patterns: Sequence[str]) -> State:
    """A view of ``state`` holding only the matching keys' chats, pending creations and
    protection; users, lineage, serial and home are shared. For planning only: it is never
    written (no journal log, no encoding cache)."""
    if not patterns:
        return state
    return replace(
        state,
        chats={k: r for k, r in state.chats.items() if matches(k, patterns)},
        intents={k: i for k, i in state.intents.items() if matches(k, patterns)},
        protected={k for k in state.protected if matches(k, patterns)},
        _encoded={},
        _source={},
        _log=None,
    )


def narrow(
    desired: DesiredState, state: State, patterns: Sequence[str]
) -> tuple[DesiredState, State]:
    """Both sides narrowed to ``patterns``, after checking that each pattern matches a key."""
    if not patterns:
        return desired, state
    check_patterns(
        patterns,
        [c.key for c in desired.chats]
        + [m.from_key for m in desired.moves]
        + list(state.chats)
        + list(state.intents),
    )
    return narrow_desired(desired, patterns), narrow_state(state, patterns)
