"""Sign-ins through Azure Identity (the optional extra ``teams-provision[azure]``) where they
serve CI: ``--auth azure-cli`` (the account of ``az login`` or ``azure/login``), ``--auth
azure-pipelines`` (an Azure DevOps service connection with workload identity federation,
Azure Identity's ``AzurePipelinesCredential``) and ``--auth default`` (its
``DefaultAzureCredential`` chain, as other Azure tools sign in). MSAL stays the library of
the core flows (`provisioner.signin.msal_flows`).

Each Azure Identity credential is wrapped in provision's `Credential` interface: the token is
cached and refreshed ahead of expiry under a lock, and a failure becomes one `AuthError` line
with a hint; Azure Identity's whole explanation (a chain of attempts, troubleshooting links)
is kept as the error's ``detail``, printed only with ``--debug``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from provisioner.errors import AuthError
from provisioner.signin.ci import failure, pipelines_settings, quiet_azure_logs, summarize

log = logging.getLogger("provision.auth")

INSTALL_HINT = "install the Azure extra: pip install 'teams-provision[azure]'"


def import_identity(mode: str) -> Any:
    """``azure.identity``, or an `AuthError` saying how to install it."""
    quiet_azure_logs()
    try:
        import azure.identity as identity
    except ImportError:
        raise AuthError(f"--auth {mode} needs Azure Identity", hint=INSTALL_HINT) from None
    return identity


class AzureIdentityCredential:
    """An Azure Identity ``TokenCredential`` behind provision's `Credential` interface."""

    #: Refresh this long before expiry (as the MSAL credentials do).
    refresh_margin = 300.0

    def __init__(
        self,
        credential: Any,
        scope: str,
        description: str,
        hint: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.description = description
        self._credential = credential
        self._scope = scope
        self._hint = hint
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def get_token(self) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._expires - self.refresh_margin:
                return self._token
            try:
                access = self._credential.get_token(self._scope)
            except Exception as exc:  # CredentialUnavailableError, ClientAuthenticationError
                raise failure(exc, self.description, self._hint) from None
            self._token = str(access.token)
            self._expires = float(access.expires_on)
            log.debug("got a token (%s)", self.description)
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._expires = 0.0

    def __repr__(self) -> str:
        return f"AzureIdentityCredential({self.description})"


#: What a state blob's failed Azure AD sign-in suggests (the storage variables come first).
STORAGE_HINT = (
    "set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or sign "
    "in to Azure AD: AZURE_TENANT_ID and AZURE_CLIENT_ID with a secret, certificate or federated "
    "token (in GitHub Actions: `id-token: write`), a managed identity, or `az login`"
)


def blob_default_chain(
    scope: str, *, clock: Callable[[], float] = time.time
) -> AzureIdentityCredential:
    """Azure Identity's ``DefaultAzureCredential`` (managed identity, ``az login``...): what
    the state blob signs in with when the environment names no app (`chooser.blob_credential`)."""
    quiet_azure_logs()
    try:
        import azure.identity as identity
    except ImportError:
        raise AuthError(
            "signing in to an azblob:// state with Azure AD needs Azure Identity",
            hint=INSTALL_HINT,
        ) from None
    return AzureIdentityCredential(
        identity.DefaultAzureCredential(),
        scope,
        "Azure AD (DefaultAzureCredential)",
        STORAGE_HINT,
        clock=clock,
    )


def azure_cli(
    environ: Mapping[str, str], scope: str, *, clock: Callable[[], float] = time.time
) -> AzureIdentityCredential:
    """``--auth azure-cli``: the account ``az login`` (or GitHub's ``azure/login``) signed in;
    ``AZURE_TENANT_ID``, when set, picks the tenant."""
    identity = import_identity("azure-cli")
    tenant = environ.get("AZURE_TENANT_ID", "").strip()
    try:
        credential = identity.AzureCliCredential(tenant_id=tenant, process_timeout=30)
    except ValueError as exc:  # an invalid tenant id
        raise AuthError(f"--auth azure-cli: {exc}", hint="check AZURE_TENANT_ID") from None
    return AzureIdentityCredential(
        credential,
        scope,
        "Azure CLI" + (f", tenant {tenant}" if tenant else ""),
        "sign in first with `az login` (in GitHub Actions: the azure/login action), or use "
        "another --auth",
        clock=clock,
    )


def azure_pipelines(
    environ: Mapping[str, str],
    scope: str,
    authority_host: str,
    *,
    clock: Callable[[], float] = time.time,
) -> AzureIdentityCredential:
    """``--auth azure-pipelines``: an Azure Resource Manager service connection with workload
    identity federation. Azure DevOps sets ``SYSTEM_OIDCREQUESTURI``; the pipeline maps
    ``$(System.AccessToken)`` to ``SYSTEM_ACCESSTOKEN`` and names the connection."""
    values = pipelines_settings(environ)
    identity = import_identity("azure-pipelines")
    try:
        credential = identity.AzurePipelinesCredential(
            tenant_id=values["tenant"],
            client_id=values["client"],
            service_connection_id=values["connection"],
            system_access_token=values["access_token"],
            authority=authority_host,
        )
    except ValueError as exc:  # an invalid tenant id
        raise AuthError(f"--auth azure-pipelines: {summarize(str(exc))}") from None
    return AzureIdentityCredential(
        credential,
        scope,
        f"Azure Pipelines service connection {values['connection']}",
        "check that the service connection uses workload identity federation, that this "
        "pipeline may use it, and that its app registration has the Graph permissions",
        clock=clock,
    )


def default_chain(
    scope: str, authority_host: str, *, clock: Callable[[], float] = time.time
) -> AzureIdentityCredential:
    """``--auth default``: Azure Identity's ``DefaultAzureCredential``, the chain the Azure
    SDKs and tools use: the environment (a secret, a certificate, workload identity), managed
    identity, then the developer sign-ins (Azure CLI, Azure Developer CLI, PowerShell).
    ``AZURE_TOKEN_CREDENTIALS`` narrows the chain (``prod``, ``dev`` or one credential's
    name), as Azure Identity documents; the login host follows ``--cloud``."""
    identity = import_identity("default")
    credential = identity.DefaultAzureCredential(authority=authority_host)
    return AzureIdentityCredential(
        credential,
        scope,
        "Azure Identity's default chain",
        "set up one of its sources (AZURE_TENANT_ID, AZURE_CLIENT_ID and a secret or "
        "certificate; workload identity; a managed identity; az login), or choose one with "
        "AZURE_TOKEN_CREDENTIALS; --debug shows what each source said",
        clock=clock,
    )
