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

from provisioner.models import GUID_RE

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


def tenant_of_token(token: str) -> str | None:
    """The ``tid`` claim (the tenant signed in to), if the token is a JWT; the signature is not
    checked: this only tells which tenant a run is about to change (Entra access tokens carry
    ``tid``: identity-platform access-token claims reference)."""
    tid = token_claims(token).get("tid")
    return tid.lower() if isinstance(tid, str) and GUID_RE.match(tid) else None


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim, if the token is a JWT (the signature is not checked)."""
    exp = token_claims(token).get("exp")
    # A claim is seconds since 1970: anything beyond year 9999 (or NaN) is not one.
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and 0 <= exp < 253402300800:
        return float(exp)
    return None
