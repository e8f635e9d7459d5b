"""``import:`` entries: adopting an existing chat by pull request (Terraform's import blocks).

``import: [{key: project-x, id: "19:...@thread.v2"}]`` says that the chat ``id`` already exists
in Teams and is the manifest's chat ``key``. The plan reads it from Graph and shows the
adoption (and any update that brings it to the manifest); apply records it under the key,
without ``POST /chats``. The CLI's ``provision import KEY CHAT_ID`` does the same at once,
unreviewed.

Checked here, across all manifest files (each problem with ``file:line:col``):

* ``key`` must be the key of a chat in the manifests (the chat's desired form);
* one entry per key, and one key per chat id (a chat cannot be two keys).

Like Terraform, an entry whose key the state already holds with the same chat is done and
does nothing, so entries can stay in the manifests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from yaml.nodes import Node

from provisioner.errors import Diagnostic
from provisioner.manifest.yamlload import format_path, locate, position
from provisioner.models import Chat, Import, Source


@dataclass(frozen=True)
class ImportEntry:
    """An ``import:`` entry with where it came from (file, index, the file's document node)."""

    imp: Import
    file: str
    index: int
    root: Node


def check(
    entries: Sequence[ImportEntry], chats: Mapping[str, Chat], *, keys_complete: bool = True
) -> list[Diagnostic]:
    """Every problem among the ``import:`` entries of all files, given the manifests' chats by
    key (``keys_complete`` False: some chats had errors, so "no such key" is not reported)."""
    out: list[Diagnostic] = []
    by_key: dict[str, ImportEntry] = {}
    by_id: dict[str, ImportEntry] = {}
    for entry in entries:
        imp = entry.imp
        earlier = by_key.get(imp.key)
        if earlier is not None:
            out.append(
                _diag(
                    entry,
                    "key",
                    f"'{imp.key}' is already imported at {_where(earlier)}",
                    "one chat per key: keep one entry",
                )
            )
            continue
        earlier = by_id.get(imp.chat_id.lower())
        if earlier is not None:
            out.append(
                _diag(
                    entry,
                    "id",
                    f"chat {imp.chat_id} is already imported as '{earlier.imp.key}' at "
                    f"{_where(earlier)}",
                    "a chat can be managed under one key only",
                )
            )
            continue
        by_key[imp.key] = entry
        by_id[imp.chat_id.lower()] = entry
        if keys_complete and imp.key not in chats:
            out.append(
                _diag(
                    entry,
                    "key",
                    f"'{imp.key}' is not the key of any chat in the manifests",
                    "add the chat's entry (chatType, topic, members) with this key: the "
                    "imported chat is brought to match it",
                )
            )
    return out


def _where(entry: ImportEntry) -> str:
    return str(entry.imp.source or Source(entry.file, 0, 0))


def _diag(entry: ImportEntry, field: str, message: str, hint: str | None) -> Diagnostic:
    path = ("import", entry.index, field)
    _, node = locate(entry.root, path)
    line, col = position(node)
    return Diagnostic(entry.file, line, col, message, format_path(path), hint)
