"""What an access token says about who calls Graph, read without its signing key.

Entra access tokens are JWTs whose payload carries ``tid`` (the tenant), ``oid`` (the signed-in
user, delegated tokens) and ``scp`` (delegated scopes) or ``roles`` (application permissions)
(graph-facts, "Tokens"; learn.microsoft.com "Access token claims reference"). provision only
reads them to know whether it acts for a person, and which one: Graph checks the signature.
A token that is not a JWT (an opaque test token) says nothing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

MAX_TOKEN_CHARS = 64 * 1024  # far above any Entra token; bounds the decoding


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, or {} for anything else."""
    parts = token.strip().split(".")
    if len(token) > MAX_TOKEN_CHARS or len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def signed_in_user(token: str) -> str | None:
    """The object id of the person a delegated token acts for (``scp`` and ``oid``); None
    for an application token or an opaque one."""
    claims = token_claims(token)
    oid = claims.get("oid")
    if claims.get("scp") and isinstance(oid, str) and oid:
        return oid.lower()
    return None
