"""``provision state list|show|rm|mv|unbind|repair`` and ``provision force-unlock``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from provisioner.cli.options import (
    lock_timeout_option,
    note,
    note_takeover,
    open_state,
    sign_in,
    state_endpoint,
    state_option,
)

if TYPE_CHECKING:
    from provisioner.states.records import MemberRecord


@click.group("state")
def state_cmd() -> None:
    """Inspect the state, or stop managing chats (the chats stay in Teams)."""


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts (one object on stdout).",
)


@state_cmd.command("list")
@state_option
@format_option
def state_list(state_path: str, fmt: str) -> int:
    """List the managed chat keys: key, chat type and chat id."""
    from provisioner.operations.state import read_unlocked
    from provisioner.states.records import iter_keys
    from provisioner.states.store import open_store

    store = open_store(state_path, state_endpoint(), sign_in=sign_in())
    state = read_unlocked(store)  # a consistent view, even while an apply writes it
    if fmt == "json":
        from provisioner.views.state import state_list_json

        click.echo(state_list_json(state, store.location), nl=False)
        return 0
    if not state.exists:
        note(f"No state at {store.location} yet.")
        return 0
    rows = []
    for key in iter_keys(state):
        record = state.chats.get(key)
        if record is not None:
            rows.append((key, record.chat_type, record.chat_id))
        else:
            rows.append((key, state.intents[key].chat_type, "(creation pending: reconcile)"))
    width = max((len(r[0]) for r in rows), default=0)
    for key, chat_type, chat_id in rows:
        click.echo(f"{key:<{width}}  {chat_type:<8}  {chat_id}")
    return 0


@state_cmd.command("show")
@click.argument("key")
@state_option
@format_option
def state_show(key: str, state_path: str, fmt: str) -> int:
    """Show what the state records for KEY."""
    import json

    from provisioner.errors import StateError
    from provisioner.operations.state import read_unlocked
    from provisioner.states.store import open_store

    store = open_store(state_path, state_endpoint(), sign_in=sign_in())
    state = read_unlocked(store)
    record = state.chats.get(key)
    intent = state.intents.get(key)
    if record is None and intent is None:
        raise StateError(f"no chat with key {key!r} in the state {store.location}")
    if fmt == "json":
        from provisioner.views.state import state_show_json

        click.echo(state_show_json(state, store.location, key), nl=False)
        return 0
    click.echo(f"# {key}")
    if record is not None:
        click.echo(f"chat_id:    {record.chat_id}")
        click.echo(f"chat_type:  {record.chat_type}")
        if record.topic is not None:
            click.echo(f"topic:      {json.dumps(record.topic, ensure_ascii=False)}")
        if record.created_at:
            click.echo(f"created_at: {record.created_at}")
        if key in state.protected:
            click.echo("protected:  yes (plan --prune refuses to delete it)")
        members = record.members
    else:
        assert intent is not None
        click.echo(f"chat_type:  {intent.chat_type}")
        if intent.topic is not None:
            click.echo(f"topic:      {json.dumps(intent.topic, ensure_ascii=False)}")
        members = intent.members
    click.echo("members:")
    for m in members:
        click.echo(_member_line(m))
    if intent is not None:
        click.echo(
            f"pending:    a creation started {intent.started_at} (attempt {intent.attempt_id});"
            f" the next apply looks it up before creating anything"
        )
    return 0


def _member_line(m: MemberRecord) -> str:
    extra = [
        f"{name} {value}"
        for name, value in (
            ("object id", m.object_id),
            ("tenant", m.tenant_id),
            ("membership", m.membership_id),
        )
        if value
    ]
    return f"  - {m.user}  {m.role}" + (f"  ({', '.join(extra)})" if extra else "")


@state_cmd.command("rm")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@state_option
@lock_timeout_option
def state_rm(keys: tuple[str, ...], state_path: str) -> int:
    """Stop managing KEY: remove it from the state. The chat stays in Teams.

    A key still in the manifests is planned as a create again (for a oneOnOne chat that adopts
    the existing chat); `provision import KEY CHAT_ID` takes a chat back under management.
    """
    from provisioner.operations.state import remove_keys

    store = open_state(state_path)
    for key, chat_id in remove_keys(store, keys, on_takeover=note_takeover):
        where = f"chat {chat_id}" if chat_id else "any chat created for it"
        click.echo(f"Removed {key} from the state ({where} stays in Teams).")
    return 0


@state_cmd.command("mv")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@state_option
@lock_timeout_option
def state_mv(old: str, new: str, state_path: str) -> int:
    """Rename the key OLD to NEW in the state. The chat in Teams is not touched.

    For a repair by hand, like `terraform state mv`; the reviewed way is a `moved:` entry in
    the manifest (`moved: [{from: OLD, to: NEW}]`), which a pull request shows. After the
    move, change the manifest's key to NEW too, or the next plan creates OLD again.
    """
    from provisioner.operations.state import move_key

    store = open_state(state_path)
    chat_id = move_key(store, old, new, on_takeover=note_takeover)
    click.echo(f"Moved {old} to {new} in the state (chat {chat_id}).")
    return 0


@state_cmd.command("repair")
@state_option
@lock_timeout_option
def state_repair(state_path: str) -> int:
    """Write every readable record of a damaged journal into the state.

    Commands refuse a journal with damage in its middle (a good record after bytes that fail
    their checksum), one that does not continue the state, or a state file cut short while a
    journal exists, and say to run this. It keeps every record it can read (a record with one
    flipped bit is restored exactly), keeps a copy of the damaged bytes beside the state, and
    says what, if anything, it could not read.
    """
    from provisioner.cli.options import lock_timeout
    from provisioner.operations.repair import repair
    from provisioner.states.store import open_store
    from provisioner.views.state import repair_text

    store = open_store(state_path, state_endpoint(), lock_timeout=lock_timeout())
    click.echo(repair_text(repair(store), store.location))
    return 0


@state_cmd.command("unbind")
@state_option
@lock_timeout_option
def state_unbind(state_path: str) -> int:
    """Forget the tenant and cloud this state belongs to, to move it on purpose.

    A state records the tenant and Graph cloud it was used with, and every command refuses
    another (its chat ids mean nothing elsewhere). After a tenant migration, or to take a
    state made against the emulator to a real tenant, unbind it: the next plan, apply, import
    or export records the tenant and cloud it runs against.
    """
    from provisioner.operations.state import unbind

    store = open_state(state_path)
    tenant, cloud = unbind(store, on_takeover=note_takeover)
    click.echo(
        f"Unbound {store.location} from tenant {tenant or '(none)'}, cloud {cloud or '(none)'}; "
        f"the next run records its own."
    )
    return 0


@click.command("force-unlock")
@click.argument("lock_id", metavar="LOCK_ID")
@state_option
def force_unlock_cmd(lock_id: str, state_path: str) -> int:
    """Remove the state's lock, left by a run that is gone.

    A local lock is released by the operating system when its run ends, and a lock file left
    by a killed run is taken over automatically; a lock still held by a running process is
    never removed (stop that process instead). For an azblob:// state this breaks the lease.
    LOCK_ID is the ID shown by the run that found it locked.
    """
    from provisioner.states.store import force_unlock, open_store

    info = force_unlock(open_store(state_path, state_endpoint(), sign_in=sign_in()), lock_id)
    click.echo(
        f"Removed the lock {info.id} ({info.operation} by {info.who}, pid {info.pid} on "
        f"{info.host}, created {info.created})."
    )
    return 0
