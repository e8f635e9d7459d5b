"""Operations on the state alone: the lock every command that changes (or refreshes) the state
takes, and ``provision state rm``.

`locked` is the one place the state's lock is taken: ``plan`` (while it refreshes), ``apply``,
``import``, ``export --import-to-state`` and ``state rm``. It reads the state once the lock is
held, so every command works on what the last run left, and reports a stale lock it took over
to the caller (the core never prints; the CLI says so on stderr).
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from provisioner.errors import InputError, ProvisionError, StateError
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
        # Collection off while a big state is decoded; freezing it is the CLI's call.
        with gc_paused(freeze=False):
            state = store.read()
        yield state


#: How long a command that reads the state without its lock (``state list``, ``state show``, an
#: offline plan) keeps reading while another run holds the lock and writes the state, before it
#: gives up (seconds; each try is a few milliseconds: a compaction replaces the state and its
#: journal in two steps, and a read between them is simply made again).
CONSISTENT_READ_S = 10.0


def read_unlocked(
    store: StateStore,
    *,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> State:
    """The state for a command that does not take the lock: a consistent view, even while a
    run (holding the lock) writes it.

    A read between the two steps of a compaction (the state written, the journal not yet
    restarted) sees a journal that continues a newer serial than the state it read: not
    corruption, just a moving target. So while a live run holds the lock, a refused read is
    made again; it fails only when no consistent view came within ``CONSISTENT_READ_S``, and
    then without the advice meant for a journal left by a dead run (issue 20). Without a
    live lock, the error is the state's own and stands."""
    deadline: float | None = None
    while True:
        try:
            return store.read()
        except StateError:
            holder = _live_lock(store)
            if holder is None:
                raise
            now = clock()
            deadline = now + CONSISTENT_READ_S if deadline is None else deadline
            if now >= deadline:
                raise StateError(
                    f"the state {store.location} is being written by a running "
                    f"{holder.operation} ({holder.who}, lock {holder.id}), and no consistent "
                    f"view of it could be read within {CONSISTENT_READ_S:.0f}s",
                    hint="run the command again, or once that run has finished",
                ) from None
            pause(0.02)


def _live_lock(store: StateStore) -> LockInfo | None:
    try:
        return store.current_lock()
    except ProvisionError:
        return None


def check_client_home(state: State, location: str, client: object) -> str | None:
    """Before any change: ``state`` belongs to the tenant and cloud ``client`` talks to
    (`provisioner.states.home`); a state that records none takes them (written with the
    caller's next write). Returns the run's tenant, or None when it cannot be established.

    The tenant is the token's ``tid``. A token without one (opaque, issue 20) is no evidence:
    when the state knows its tenant, Graph is asked (``GET /organization``, organization-list.md)
    rather than let every chat of another tenant read as "deleted"; a refusal leaves the tenant
    unknown, and ``states.home.check_not_found`` then keeps "not found" from counting."""
    from provisioner.states.home import settle_home

    url = getattr(client, "base_url", None)
    tenant_of = getattr(client, "signed_in_tenant", None)
    tenant = tenant_of() if callable(tenant_of) else None
    if tenant is None and state.tenant_id is not None:
        tenant = _organization_tenant(client)
    settle_home(state, location, graph_url=url if isinstance(url, str) else None, tenant=tenant)
    return tenant


def _organization_tenant(client: object) -> str | None:
    from provisioner.graph.errors import GraphError

    ask = getattr(client, "organization_tenant", None)
    if not callable(ask):
        return None
    try:
        tenant = ask()
    except GraphError:  # no permission (403), an older Graph, a proxy: the tenant stays unknown
        return None
    return tenant if isinstance(tenant, str) else None


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


def check_key(key: str) -> None:
    """InputError unless ``key`` is a valid manifest key (the schema's pattern)."""
    if not _key_re().search(key):
        raise InputError(
            f"{key!r} is not a valid key",
            hint="lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, "
            "at most 128 characters",
        )


@functools.cache
def _key_re() -> re.Pattern[str]:
    # The schema module needs yaml: imported when a key is checked, not when the CLI starts.
    from provisioner.manifest.schema import load_schema, regex

    return regex(load_schema()["$defs"]["key"]["pattern"])
