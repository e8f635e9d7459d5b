"""Operations on the state alone: the lock every command that changes (or refreshes) the state
takes, and ``provision state rm``.

`locked` is the one place the state's lock is taken: ``plan`` (while it refreshes), ``apply``,
``import``, ``export --import-to-state`` and ``state rm``. It reads the state once the lock is
held, so every command works on what the last run left, and reports a stale lock it took over
to the caller (the core never prints; the CLI says so on stderr).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from provisioner.errors import ProvisionError, StateError
from provisioner.manifest.gcpause import gc_paused

if TYPE_CHECKING:
    from provisioner.states.lock import LockInfo
    from provisioner.states.records import State
    from provisioner.states.store import StateStore

#: Told the stale lock a run took over (its holder died on this host).
OnTakeover = Callable[["LockInfo"], None]


@contextlib.contextmanager
def locked(
    store: StateStore,
    operation: str,
    *,
    on_takeover: OnTakeover | None = None,
    hint: str | None = None,
) -> Iterator[State]:
    """Hold the state's lock for ``operation`` and yield the state read under it. ``hint`` is
    added to the error's hint when the lock cannot be taken (e.g. how to do without it)."""
    with contextlib.ExitStack() as stack:
        try:
            info = stack.enter_context(store.lock(operation))
        except ProvisionError as exc:
            if hint:
                exc.hint = (exc.hint + "; " if exc.hint else "") + hint
            raise
        if info.took_over is not None and on_takeover is not None:
            on_takeover(info.took_over)
        with gc_paused():  # a big state's records are then frozen out of collections
            state = store.read()
        yield state


def check_client_home(state: State, location: str, client: object) -> None:
    """Before any change: ``state`` belongs to the tenant and cloud ``client`` talks to
    (`provisioner.states.home`); a state that records none takes them (written with the
    caller's next write). The tenant is the token's ``tid``, when the token says."""
    from provisioner.states.home import settle_home

    url = getattr(client, "base_url", None)
    tenant_of = getattr(client, "signed_in_tenant", None)
    tenant = tenant_of() if callable(tenant_of) else None
    settle_home(state, location, graph_url=url if isinstance(url, str) else None, tenant=tenant)


def unbind(
    store: StateStore, *, on_takeover: OnTakeover | None = None
) -> tuple[str | None, str | None]:
    """``provision state unbind``: forget the state's tenant and cloud (moving it on purpose).
    Returns what it recorded."""
    with locked(store, "state unbind", on_takeover=on_takeover) as state:
        if not state.exists:
            raise StateError(f"no state at {store.location}: nothing to unbind")
        was = (state.tenant_id, state.cloud)
        state.tenant_id = state.cloud = None
        store.write(state)
    return was


def remove_keys(
    store: StateStore, keys: Sequence[str], *, on_takeover: OnTakeover | None = None
) -> list[tuple[str, str | None]]:
    """``provision state rm``: stop managing ``keys`` (the chats stay in Teams). Every key must
    be in the state (a managed chat or a pending creation), else StateError and nothing is
    removed. Returns each removed key with its chat id (None for a pending creation)."""
    with locked(store, "state rm", on_takeover=on_takeover) as state:
        missing = [k for k in keys if k not in state.chats and k not in state.intents]
        if missing:
            raise StateError(
                f"not in the state {store.location}: {', '.join(missing)}; nothing was removed",
                hint="see the keys with: provision state list",
            )
        removed = []
        for key in dict.fromkeys(keys):
            record = state.remove_chat(key)
            state.clear_intent(key)
            removed.append((key, record.chat_id if record else None))
        store.write(state)
    return removed


def move_key(
    store: StateStore, old: str, new: str, *, on_takeover: OnTakeover | None = None
) -> str:
    """``provision state mv OLD NEW``: record the chat managed as ``old`` under ``new`` (its
    protection and members with it); the chat in Teams is not touched. The reviewed way is a
    ``moved:`` entry in the manifest; this is for a state repair by hand. Refused, with nothing
    changed, when ``old`` is not a managed chat (a pending creation must be settled by apply
    first), ``new`` is not a valid key, or ``new`` is taken. Returns the chat id."""
    from provisioner.operations.adopt import check_key

    check_key(new)
    with locked(store, "state mv", on_takeover=on_takeover) as state:
        if old in state.intents:
            raise StateError(
                f"{old} has a creation whose outcome is not known yet; nothing was moved",
                hint="run apply first: it looks the chat up and settles the key",
            )
        record = state.chats.get(old)
        if record is None:
            raise StateError(
                f"not in the state {store.location}: {old}; nothing was moved",
                hint="see the keys with: provision state list",
            )
        if new in state.chats or new in state.intents:
            raise StateError(
                f"{new} is already in the state {store.location}; nothing was moved",
                hint=f"remove it first (provision state rm {new}) if it is stale",
            )
        if old != new:
            state.rename_chat(old, new)
            store.write(state)
    return record.chat_id
