"""Users by object id or UPN, as Graph's directory knows them.

``GET /users/{id | userPrincipalName}?$select=id,userPrincipalName``
(api-reference/v1.0/api/user-get.md), batched 20 per ``$batch``. Which users to look up, and
what a missing one means, is decided above this layer (``operations.users`` for the
manifest's UPNs, ``operations.adopt`` for import and export, ``apply.reconcile``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from provisioner.graph.errors import GraphNotFound
from provisioner.graph.reads import READ_CONCURRENCY, BatchClient, batched_gets
from provisioner.graph.routes import user_path
from provisioner.models import GUID_RE

SELECT = ("id", "userPrincipalName")


def is_guid(user: str) -> bool:
    return bool(GUID_RE.match(user))


def lookup_users(
    client: BatchClient, refs: Iterable[str], *, concurrency: int = READ_CONCURRENCY
) -> dict[str, dict[str, Any] | None]:
    """Each user (object id or UPN, keyed in lower case) as Graph returns it with ``id`` and
    ``userPrincipalName``, or None when Graph answers 404."""
    unique = list(dict.fromkeys(r.lower() for r in refs))
    select = quote(",".join(SELECT), safe=",")
    urls = [f"{user_path(ref)}?$select={select}" for ref in unique]

    def handle(index: int, answer: dict[str, Any]) -> dict[str, Any] | None:
        status = int(answer.get("status", 0))
        body = answer.get("body")
        if status == 200 and isinstance(body, dict) and body.get("id"):
            return body
        if status == 404:
            return None
        try:  # on its own: the client's retries and typed errors (e.g. 403) apply
            return client.get_user(unique[index], select=SELECT)
        except GraphNotFound:
            return None

    users = batched_gets(client, urls, handle, concurrency=concurrency)
    return dict(zip(unique, users, strict=True))


def upn_map(users: Mapping[str, dict[str, Any] | None]) -> dict[str, str]:
    """Object id (lower case) -> UPN, from `lookup_users` answers (for export and import)."""
    out = {}
    for user in users.values():
        if user and user.get("id") and user.get("userPrincipalName"):
            out[str(user["id"]).lower()] = str(user["userPrincipalName"])
    return out
