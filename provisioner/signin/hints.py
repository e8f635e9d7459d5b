"""Hints for a refused app sign-in, naming the variable to fix: Entra's AADSTS codes
(Microsoft Entra authentication and authorization error codes) and the kind of credential
the run used, so a refused certificate is never blamed on ``AZURE_CLIENT_SECRET``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# AADSTS codes that point at one variable (Microsoft Entra authentication error codes).
AADSTS_HINTS = {
    "AADSTS7000215": "AZURE_CLIENT_SECRET was rejected: check its value (not its secret ID) "
    "and that it has not expired",
    "AADSTS7000222": "AZURE_CLIENT_SECRET has expired: create a new client secret",
    "AADSTS700016": "AZURE_CLIENT_ID is not an application registered in AZURE_TENANT_ID",
    "AADSTS90002": "AZURE_TENANT_ID does not name an existing tenant (or the wrong --cloud)",
    "AADSTS900023": "AZURE_TENANT_ID is not a valid tenant ID or domain",
    "AADSTS700027": "the certificate in AZURE_CLIENT_CERTIFICATE_PATH is not registered "
    "for the application AZURE_CLIENT_ID",
    "AADSTS700211": "the federated token in AZURE_FEDERATED_TOKEN_FILE has no matching "
    "federated credential on the application (issuer)",
    "AADSTS700213": "the federated token in AZURE_FEDERATED_TOKEN_FILE has no matching "
    "federated credential on the application (subject)",
    "AADSTS700024": "the federated token in AZURE_FEDERATED_TOKEN_FILE has expired",
}


#: Which kind of credential each credential-specific AADSTS hint is about.
AADSTS_KIND = {
    "AADSTS7000215": "secret",
    "AADSTS7000222": "secret",
    "AADSTS700027": "certificate",
    "AADSTS700211": "assertion",
    "AADSTS700213": "assertion",
    "AADSTS700024": "assertion",
}
CREDENTIAL_NAMES = {
    "secret": "the client secret in AZURE_CLIENT_SECRET",
    "certificate": "the certificate in AZURE_CLIENT_CERTIFICATE_PATH",
    "assertion": "the federated token (AZURE_FEDERATED_TOKEN_FILE or the CI's OIDC token)",
}
REJECTED = {
    "secret": AADSTS_HINTS["AADSTS7000215"],
    "certificate": "the certificate in AZURE_CLIENT_CERTIFICATE_PATH was rejected: check that "
    "it is the one uploaded to the application AZURE_CLIENT_ID and has not expired",
    "assertion": "the federated token was rejected: check the application's federated "
    "credential (issuer, subject, audience)",
}


def credential_kind(client_credential: str | Mapping[str, Any]) -> str:
    """``secret``, ``certificate`` or ``assertion``: what MSAL's ``client_credential`` is."""
    if isinstance(client_credential, str):
        return "secret"
    return "assertion" if "client_assertion" in client_credential else "certificate"
