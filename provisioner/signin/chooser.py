"""Credentials for Microsoft Graph and the state blob: a static token, or MSAL flows chosen
from the environment, or Azure Identity's.

`credential_from_env` picks one flow from the contract's variables and checks everything it
can without the network (variables set, files readable, certificate and password valid), so
the CLI can call it before any plan is computed and fail with a message naming exactly the
variable to set. Tokens are fetched lazily, cached, and refreshed ahead of expiry, so a run
longer than a token's lifetime carries on. Nothing here prints or prompts: the device-code
flow hands its instructions to a ``prompt`` callback.

No secret or token ever appears in an exception, a log line or a ``repr``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from provisioner.errors import AuthError, InputError
from provisioner.fsutil import is_loopback_host
from provisioner.models import GUID_RE
from provisioner.redact import remember
from provisioner.signin.ci import github_assertion, github_oidc_available, pipelines_available
from provisioner.signin.claims import jwt_expiry
from provisioner.signin.credential_files import assertion_reader, certificate_credential
from provisioner.signin.msal_flows import (
    ConfidentialClientCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    token_cache_path,
)

# -- clouds and Graph URLs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Cloud:
    name: str
    graph: str  # Graph service root, no version
    login: str  # Microsoft Entra ID (token service) root


# concepts/deployments.md (microsoft-graph-docs-contrib): Graph and token service roots per
# national cloud. GCC (not High) stays on the global endpoints. For China the doc lists
# login.chinacloudapi.cn; Entra's instance discovery names login.partner.microsoftonline.cn as
# the preferred host with login.chinacloudapi.cn as its alias, and MSAL marks the latter
# deprecated, so the preferred one is used (AZURE_AUTHORITY_HOST overrides it).
CLOUDS: Mapping[str, Cloud] = {
    "global": Cloud("global", "https://graph.microsoft.com", "https://login.microsoftonline.com"),
    "usgov": Cloud("usgov", "https://graph.microsoft.us", "https://login.microsoftonline.us"),
    "dod": Cloud("dod", "https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
    "china": Cloud(
        "china",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://login.partner.microsoftonline.cn",
    ),
}
DEFAULT_CLOUD = "global"
AUTH_MODES = ("env", "default", "managed-identity", "device-code", "azure-cli", "azure-pipelines")
#: Azure Storage's audience, the same in every cloud: what a state blob's token is for.
STORAGE_SCOPE = "https://storage.azure.com/.default"


@dataclass(frozen=True)
class SignIn:
    """How a run signs in (``--auth``, ``--cloud``): Graph and the state blob alike."""

    auth: str = "env"
    cloud: str = DEFAULT_CLOUD

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SignIn:
        """For a command without ``--auth`` (``state list``...): ``PROVISION_AUTH``."""
        return cls(environ.get("PROVISION_AUTH", "").strip() or "env")


def cloud_named(name: str) -> Cloud:
    try:
        return CLOUDS[name]
    except KeyError:
        raise InputError(
            f"unknown cloud {name!r}", hint=f"use one of: {', '.join(CLOUDS)}"
        ) from None


def graph_url_for(cloud: str) -> str:
    """The Graph v1.0 base URL of a national cloud (``https://graph.microsoft.com/v1.0``)."""
    return f"{cloud_named(cloud).graph}/v1.0"


def graph_scope_for(cloud: str) -> str:
    """The ``.default`` scope that asks Entra for a token for that cloud's Graph."""
    return f"{cloud_named(cloud).graph}/.default"


def validate_graph_url(url: str) -> str:
    """Return ``url`` normalised (no trailing slash), or raise `InputError`.

    Only ``https://``; plain ``http://`` only for loopback hosts (a local emulator), because
    every request carries a bearer token (contract: Connection and credentials).
    """
    shown = _shown_url(url)
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError for a port that is not 0..65535)
    except ValueError:
        host = ""
        parts = urlsplit("")
    if parts.scheme not in ("https", "http") or not host or any(c.isspace() for c in host):
        raise InputError(
            f"Graph URL {shown!r} is not an http(s) URL",
            hint="use e.g. https://graph.microsoft.com/v1.0",
        )
    if parts.scheme == "http" and not is_loopback_host(host):
        raise InputError(
            f"Graph URL {shown!r} uses plain http:// for a host that is not loopback; "
            "the access token would travel unencrypted",
            hint="use https://, or http:// only for 127.0.0.1, ::1 or localhost (the emulator)",
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InputError(
            f"Graph URL {shown!r} must not contain credentials, a query or a fragment",
            hint="use e.g. https://graph.microsoft.com/v1.0",
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _shown_url(url: str) -> str:
    """``url`` fit for a message: a password, query or fragment (where a token pasted into the
    URL would be) replaced by ``***``."""
    try:
        parts = urlsplit(url.strip())
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
    except ValueError:  # malformed (e.g. an unclosed IPv6 bracket): show it only if harmless
        return "***" if any(c in url for c in "@?#") else url.strip()
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            parts.path,
            "***" if parts.query else "",
            "***" if parts.fragment else "",
        )
    )


# -- the credential interface ----------------------------------------------------------------


class Credential(Protocol):
    """What the Graph client needs: a bearer token, fresh, from any thread."""

    description: str

    def get_token(self) -> str:
        """A valid access token; refreshed before it expires. Raises `AuthError`."""
        ...

    def invalidate(self) -> None:
        """Graph rejected the last token (401): the next `get_token` must not return it."""
        ...


class StaticToken:
    """``PROVISION_ACCESS_TOKEN``: a bearer token used as it is (no refresh possible)."""

    def __init__(self, token: str, *, variable: str = "PROVISION_ACCESS_TOKEN") -> None:
        token = token.strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            raise AuthError(
                f"{variable} is not a usable bearer token (empty, or contains spaces or "
                "control characters)",
                hint=f"set {variable} to the access token alone, without 'Bearer '",
            )
        if not token.isascii():
            # An HTTP header carries Latin-1 at most and a bearer token is ASCII (RFC 6750's
            # b64token): sending it would fail inside http.client as an internal error.
            raise AuthError(
                f"{variable} is not a usable bearer token: it contains characters that are "
                "not ASCII (a typographic quote or dash from a copy and paste?)",
                hint=f"set {variable} to the access token exactly as issued",
            )
        remember(token)
        expires = jwt_expiry(token)
        if expires is not None and expires <= time.time():
            raise AuthError(
                f"{variable} holds a token that expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires))}",
                hint=f"get a fresh token into {variable}, or use the AZURE_* variables so "
                "provision can refresh tokens itself",
            )
        self._token = token
        self._variable = variable
        self._rejected = False
        self.description = f"access token from {variable}"

    def get_token(self) -> str:
        if self._rejected:
            raise AuthError(
                f"Graph rejected the token from {self._variable} (401 Unauthorized); it may "
                "have expired during the run",
                hint=f"get a fresh token into {self._variable}, or use the AZURE_* variables "
                "so provision can refresh tokens itself",
            )
        return self._token

    def invalidate(self) -> None:
        self._rejected = True

    def __repr__(self) -> str:
        return f"StaticToken(<{self._variable}>)"


# -- choosing a flow from the environment ----------------------------------------------------

_TENANT = re.compile(r"^(?:[0-9a-fA-F-]{36}|[A-Za-z0-9][A-Za-z0-9.-]{0,252}[A-Za-z0-9])$")

_NO_CREDENTIALS = (
    "no Graph credentials found",
    "set PROVISION_ACCESS_TOKEN to a bearer token, or AZURE_TENANT_ID and AZURE_CLIENT_ID "
    "with one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
    "AZURE_FEDERATED_TOKEN_FILE (in GitHub Actions, `permissions: id-token: write` does "
    "instead); or use --auth azure-cli, azure-pipelines, managed-identity or device-code",
)


def credential_from_env(
    auth: str | None,
    cloud: str,
    environ: Mapping[str, str],
    *,
    http_client: Any = None,
    prompt: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
    scope: str | None = None,
) -> Credential:
    """Choose and check the credential for ``--auth`` (None or "env" means: from variables),
    for Graph, or for ``scope`` (the state blob's `STORAGE_SCOPE`: the same sign-in, another
    audience; ``PROVISION_ACCESS_TOKEN`` is a Graph token and serves Graph only).

    Raises `AuthError` naming the variable to set when something is missing or unusable.
    No network access happens here; the first `get_token` signs in.
    """
    mode = auth or "env"
    if mode not in AUTH_MODES:
        raise AuthError(f"unknown --auth {auth!r}", hint=f"use one of: {', '.join(AUTH_MODES)}")
    target = cloud_named(cloud)
    env = _Env(environ, _authority_host(environ, target), scope or graph_scope_for(cloud))
    if mode == "managed-identity":
        client_id = env("AZURE_CLIENT_ID") or None
        if client_id is not None:
            _check_guid("AZURE_CLIENT_ID", client_id)
        resource = target.graph if scope is None else scope.removesuffix("/.default")
        return ManagedIdentityCredential(
            resource=resource, client_id=client_id, http_client=http_client, clock=clock
        )
    if mode == "device-code":
        return _device_code(env, prompt=prompt, http_client=http_client, clock=clock)
    if mode in ("azure-cli", "azure-pipelines", "default"):
        # Azure Identity, the optional extra: imported only for these modes.
        from provisioner.signin import azure_identity

        if mode == "azure-cli":
            return azure_identity.azure_cli(environ, env.scope, clock=clock)
        if mode == "default":
            return azure_identity.default_chain(env.scope, env.authority_host, clock=clock)
        return azure_identity.azure_pipelines(environ, env.scope, env.authority_host, clock=clock)
    if "PROVISION_ACCESS_TOKEN" in environ and scope is None:
        return StaticToken(environ["PROVISION_ACCESS_TOKEN"])
    return _app_credential(env, http_client=http_client, clock=clock)


def blob_credential(sign_in: SignIn, environ: Mapping[str, str]) -> Credential:
    """The state blob's Azure AD credential: Graph's sign-in (the same ``--auth`` and
    variables) for Azure Storage. With ``--auth env`` and no app in the variables (a static
    Graph token, or nothing), as documented before there was one chooser: an Azure Pipelines
    service connection when the job has one, else Azure Identity's ``DefaultAzureCredential``
    (managed identity, ``az login``)."""
    from provisioner.signin import azure_identity

    mode = sign_in.auth or "env"
    if mode == "env" and not _app_in_env(environ):
        if pipelines_available(environ):
            mode = "azure-pipelines"
        else:
            return azure_identity.blob_default_chain(STORAGE_SCOPE)
    return credential_from_env(mode, sign_in.cloud, environ, scope=STORAGE_SCOPE)


def _app_in_env(environ: Mapping[str, str]) -> bool:
    """``--auth env`` names an app: its own credential, or GitHub's OIDC token for it."""
    if any(environ.get(name, "").strip() for name in _APP_SECRETS):
        return True
    named = all(environ.get(n, "").strip() for n in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID"))
    return named and github_oidc_available(environ)


_APP_SECRETS = (
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
)


class _Env:
    """The environment's variables (values stripped), and what every flow derives from them."""

    def __init__(self, environ: Mapping[str, str], authority_host: str, scope: str) -> None:
        self.environ = environ
        self.authority_host = authority_host  # checked whichever flow is chosen
        self.scope = scope

    def __call__(self, name: str) -> str:
        return self.environ.get(name, "").strip()


def _device_code(
    env: _Env,
    *,
    prompt: Callable[[str], None] | None,
    http_client: Any,
    clock: Callable[[], float],
) -> Credential:
    """``--auth device-code``: a person signs in for a public client app."""
    client_id = env("AZURE_CLIENT_ID")
    if not client_id:
        raise AuthError(
            "--auth device-code needs AZURE_CLIENT_ID (an app registration that allows "
            "public client flows and lists the delegated Chat permissions)",
            hint="set AZURE_CLIENT_ID; AZURE_TENANT_ID is optional (default: organizations)",
        )
    _check_guid("AZURE_CLIENT_ID", client_id)
    tenant_id = env("AZURE_TENANT_ID") or "organizations"
    _check_tenant(tenant_id)
    return DeviceCodeCredential(
        tenant_id=tenant_id,
        client_id=client_id,
        authority_host=env.authority_host,
        scope=env.scope,
        cache_path=token_cache_path(env.environ),
        prompt=prompt,
        http_client=http_client,
        clock=clock,
    )


def _app_credential(env: _Env, *, http_client: Any, clock: Callable[[], float]) -> Credential:
    """An app registration's client credentials flow, from the AZURE_* variables."""
    tenant_id, client_id = env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID")
    secret = env.environ.get("AZURE_CLIENT_SECRET", "")  # used as it is, spaces included
    cert_path = env("AZURE_CLIENT_CERTIFICATE_PATH")
    token_file = env("AZURE_FEDERATED_TOKEN_FILE")
    if not (tenant_id or client_id or secret or cert_path or token_file):
        if github_oidc_available(env.environ):
            raise AuthError(
                "this GitHub Actions job can sign in with its OIDC token, but AZURE_TENANT_ID "
                "and AZURE_CLIENT_ID are not set",
                hint="set both (e.g. env: AZURE_CLIENT_ID: ${{ vars.AZURE_CLIENT_ID }}) to the "
                "app registration with a federated credential for this repository",
            )
        raise AuthError(_NO_CREDENTIALS[0], hint=_NO_CREDENTIALS[1])
    for name, value in (("AZURE_TENANT_ID", tenant_id), ("AZURE_CLIENT_ID", client_id)):
        if not value:
            raise AuthError(
                f"{name} is not set",
                hint=f"set {name} (needed with AZURE_CLIENT_SECRET, "
                "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE)",
            )
    _check_tenant(tenant_id)
    _check_guid("AZURE_CLIENT_ID", client_id)
    client_credential, what = _client_credential(env, secret, cert_path, token_file)
    return ConfidentialClientCredential(
        tenant_id=tenant_id,
        client_id=client_id,
        client_credential=client_credential,
        authority_host=env.authority_host,
        scope=env.scope,
        description=f"{what} for app {client_id}",
        http_client=http_client,
        clock=clock,
    )


def _client_credential(
    env: _Env, secret: str, cert_path: str, token_file: str
) -> tuple[str | dict[str, Any], str]:
    """MSAL's ``client_credential`` and what it is: the secret, else the certificate, else
    the federated token."""
    if secret:
        return secret, "client secret"
    if cert_path:
        password = env.environ.get("AZURE_CLIENT_CERTIFICATE_PASSWORD") or None
        return certificate_credential(cert_path, password), "client certificate"
    if token_file:
        return {"client_assertion": assertion_reader(token_file)}, "federated token"
    if github_oidc_available(env.environ):
        # GitHub Actions with `id-token: write`: the job's OIDC token, fetched whenever MSAL
        # needs a new access token (workload identity federation without a token file).
        return {"client_assertion": github_assertion(env.environ)}, "GitHub OIDC token"
    raise AuthError(
        "AZURE_TENANT_ID and AZURE_CLIENT_ID are set but no client credential is",
        hint="set one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
        "AZURE_FEDERATED_TOKEN_FILE, give a GitHub Actions job `permissions: id-token: write`, "
        "or use another --auth (azure-cli, azure-pipelines, managed-identity, device-code)",
    )


def _authority_host(environ: Mapping[str, str], cloud: Cloud) -> str:
    """``AZURE_AUTHORITY_HOST`` (Azure Identity's variable) overrides the cloud's login host."""
    override = environ.get("AZURE_AUTHORITY_HOST", "").strip()
    if not override:
        return cloud.login
    host = override if "://" in override else f"https://{override}"
    parts = urlsplit(host)
    if parts.scheme != "https" or not parts.hostname:
        raise AuthError(
            f"AZURE_AUTHORITY_HOST {override!r} is not an https:// host",
            hint=f"unset it, or set it like {cloud.login}",
        )
    return f"https://{parts.netloc}"


def _check_guid(name: str, value: str) -> None:
    if not GUID_RE.match(value):
        raise AuthError(f"{name} is not a GUID", hint=f"set {name} to the application (client) ID")


def _check_tenant(value: str) -> None:
    if not _TENANT.match(value):
        raise AuthError(
            "AZURE_TENANT_ID is neither a tenant GUID nor a domain name",
            hint="set AZURE_TENANT_ID to the directory (tenant) ID, e.g. from the app's "
            "overview page",
        )
