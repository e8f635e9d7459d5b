"""Access tokens as Graph and Entra ID hand them out: three base64url parts. Nothing verifies
a signature here (the code under test only reads the claims), so the signature is a stand-in."""

from __future__ import annotations

import base64
import json


def b64(data: object) -> str:
    """JSON, base64url-encoded without padding, as in a JWT's header and payload."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def jwt(claims: object, *, alg: str = "RS256") -> str:
    """An unsigned JWT carrying ``claims``."""
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims)}.c2ln"


def tenant_token(tid: str) -> str:
    """A token of tenant ``tid`` (the ``tid`` claim is what names a token's tenant)."""
    return jwt({"tid": tid})
