"""``provision import``, ``provision export`` and ``provision restore``: bring existing (or
recently deleted) chats under management.

Thin like the rest of the CLI: the work is in ``operations.adopt`` and ``operations.export``.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import click

from provisioner.cli.emulator import EMULATOR_DATA
from provisioner.cli.options import (
    connection_for,
    connection_options,
    lock_timeout_option,
    note,
    note_takeover,
    open_state,
    stacked,
    state_option,
)
from provisioner.errors import InputError

if TYPE_CHECKING:
    from provisioner.graph.client import GraphClient


def open_client(graph_url: str | None, cloud: str, auth: str, emulator: bool) -> GraphClient:
    """A paced Graph client for reads (documented limits), with checked credentials; or one
    for the built-in emulator (running until the command ends), as plan and apply use it."""
    # Imported here: requests and the Graph client are not needed for `provision --help`.
    if emulator:
        from provisioner.cli.emulator import emulator_session
        from provisioner.operations.clients import emulator_client

        url = click.get_current_context().with_resource(emulator_session())
        return emulator_client(url)
    from provisioner.operations.clients import read_client

    connection = connection_for(graph_url, cloud, auth)
    return read_client(connection.graph_url, connection.credential)


emulator_option = click.option(
    "--emulator",
    is_flag=True,
    help=f"Read from the built-in Graph emulator (tenant in ./{EMULATOR_DATA}), as plan "
    "and apply --emulator do; no credentials needed.",
)


@click.command("import")
@click.argument("key")
@click.argument("chat_id", metavar="CHAT_ID")
@state_option
@lock_timeout_option
@connection_options
@emulator_option
def import_command(
    key: str,
    chat_id: str,
    state_path: str,
    graph_url: str | None,
    cloud: str,
    auth: str,
    emulator: bool,
) -> int:
    """Start managing an existing chat: read CHAT_ID from Graph and record it as KEY.

    Nothing changes in Teams. The next `provision plan` compares the chat with the manifest's
    chat KEY and shows any difference. CHAT_ID is Graph's chat id (19:...@thread.v2).
    """
    from provisioner.operations.adopt import adopt, check_free
    from provisioner.operations.state import check_key, read_unlocked

    check_key(key)
    store = open_state(state_path)
    check_free(read_unlocked(store), key, chat_id)  # fail before asking for credentials
    with contextlib.closing(open_client(graph_url, cloud, auth, emulator)) as client:
        record = adopt(store, client, key, chat_id, on_takeover=note_takeover)
    what = f'group chat "{record.topic}"' if record.topic else f"{record.chat_type} chat"
    click.echo(
        f"Imported {what} {record.chat_id} as {key} ({len(record.members)} members) into "
        f"{store.location}."
    )
    note(f"Compare it with the manifests: provision plan PATH... (key {key})")
    return 0


export_options = stacked(
    [
        click.option(
            "--user", "user", required=True, metavar="UPN|ID", help="Whose chats to export."
        ),
        click.option(
            "--type",
            "chat_type",
            type=click.Choice(["group", "oneOnOne"]),
            default=None,
            help="Only chats of this type (default: both).",
        ),
        click.option(
            "--out",
            "out",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="Write the manifest to FILE (default: standard output).",
        ),
        click.option("--force", is_flag=True, help="Overwrite FILE if it exists."),
        click.option(
            "--import-to-state",
            is_flag=True,
            help="Also record every exported chat in the state (as provision import does).",
        ),
    ]
)


@click.command("export")
@export_options
@state_option
@lock_timeout_option
@connection_options
@emulator_option
def export_command(
    user: str,
    chat_type: str | None,
    out: str | None,
    force: bool,
    import_to_state: bool,
    state_path: str,
    graph_url: str | None,
    cloud: str,
    auth: str,
    emulator: bool,
) -> int:
    """Write a manifest of the chats USER is in, to bring them under management.

    Keys are generated from topics and user names plus a short hash of the chat id, stable
    across exports. Review the manifest, then import the chats (the commands are in its
    comments, or use --import-to-state): `provision plan` on it then shows no changes.
    """
    from provisioner.operations.export import export_chats, record_export, render_manifest
    from provisioner.operations.state import read_unlocked

    if out and os.path.exists(out) and not force:
        raise InputError(f"{out} exists", hint="pass --force to overwrite it, or another --out")
    store = open_state(state_path) if import_to_state else None
    # Chats the state manages already keep their key in the export.
    managed = {k: r.chat_id for k, r in read_unlocked(store).chats.items()} if store else {}
    with contextlib.closing(open_client(graph_url, cloud, auth, emulator)) as client:
        result = export_chats(client, user, chat_type, managed=managed)
    text = render_manifest(result, graph_url=client.base_url)
    if out:
        _write_text(out, text)
    else:
        click.echo(text, nl=False)
    where = out or "standard output"
    skipped = f"; skipped {len(result.skipped)}, see its comments" if result.skipped else ""
    note(f"Exported {len(result.chats)} chats of {user} to {where}{skipped}.")
    if store is not None:
        added = record_export(store, result, on_takeover=note_takeover, client=client)
        already = len(result.chats) - len(added)
        extra = f" ({already} were managed already)" if already else ""
        note(f"Recorded {len(added)} chats in {store.location}{extra}.")
    return 0


def _write_text(path: str, text: str) -> None:
    from provisioner.fsutil import write_atomic

    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc


@click.command("restore")
@click.argument("key", metavar="KEY")
@state_option
@lock_timeout_option
@connection_options
@emulator_option
def restore_command(
    key: str, state_path: str, graph_url: str | None, cloud: str, auth: str, emulator: bool
) -> int:
    """Bring back the chat provision deleted as KEY (expired, or pruned), and manage it again.

    Graph soft-deletes chats and can restore them for 7 days (a tenant admin's right:
    Chat.ManageDeletion.All); provision keeps a deleted chat's key in the state for that long.
    If the manifest still says the chat has expired, the next apply deletes it again: move
    its `expires` first.
    """
    from provisioner.operations.restore import restore

    store = open_state(state_path)
    with contextlib.closing(open_client(graph_url, cloud, auth, emulator)) as client:
        record = restore(store, client, key, on_takeover=note_takeover)
    what = f'group chat "{record.topic}"' if record.topic else f"{record.chat_type} chat"
    click.echo(f"Restored {what} {record.chat_id} as {key} ({len(record.members)} members).")
    note(
        f"If its manifest entry has an expires date in the past, move it, or the next apply "
        f"deletes {key} again."
    )
    return 0
