"""Where an ``azblob://`` state lives and how to authenticate to it.

Kept apart from the store (``states/azblob/store.py``) so that parsing and credential selection are
plain functions, testable without the Azure SDK installed. The SDK itself is an optional extra
(``pip install 'teams-provision[azure]'``) and is imported only by :func:`import_azure`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from provisioner.errors import ProvisionError, StateError
from provisioner.fsutil import is_loopback_host
from provisioner.redact import remember
from provisioner.signin.azure_identity import STORAGE_HINT
from provisioner.signin.chooser import Credential, SignIn, blob_credential
from provisioner.signin.ci import failure
from provisioner.signin.claims import jwt_expiry

SCHEME = "azblob://"
ENDPOINT_ENV = "PROVISION_STATE_ENDPOINT"
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_KEY_ENV = "AZURE_STORAGE_KEY"
SAS_TOKEN_ENV = "AZURE_STORAGE_SAS_TOKEN"
INSTALL_HINT = "install the Azure extra: pip install 'teams-provision[azure]'"

# Azure naming rules (Azure Storage "Naming and referencing containers, blobs, and metadata"):
# accounts 3-24 lowercase letters/digits; containers 3-63 lowercase letters/digits/single
# hyphens, starting and ending with a letter or digit; blob names 1-1024 characters.
_ACCOUNT_RE = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER_RE = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")

# Azurite's documented, public development account (not a secret: it is the same for everyone
# and only works against the emulator). Used for ``UseDevelopmentStorage=true``.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


@dataclass(frozen=True)
class BlobLocation:
    """``azblob://ACCOUNT/CONTAINER/PATH``: one state blob."""

    account: str
    container: str
    blob: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.account}/{self.container}/{self.blob}"

    def sibling(self, suffix: str) -> BlobLocation:
        return BlobLocation(self.account, self.container, self.blob + suffix)


@dataclass(frozen=True)
class Connection:
    """The account URL and credential to use. ``how`` names the kind of credential for
    messages (never the credential itself); ``credential`` is never printed or logged."""

    account_url: str
    credential: Any
    how: str

    def __repr__(self) -> str:  # keep secrets out of tracebacks and debug output
        return f"Connection(account_url={self.account_url!r}, how={self.how!r})"


def is_azblob(spec: str) -> bool:
    return spec.lower().startswith(SCHEME)


def parse_azblob_url(spec: str) -> BlobLocation:
    """Parse ``azblob://ACCOUNT/CONTAINER/PATH``; a StateError says what is wrong."""
    usage = "expected azblob://ACCOUNT/CONTAINER/PATH, e.g. azblob://contoso/tfstate/teams.json"
    if not is_azblob(spec):
        raise StateError(f"not an azblob:// state location: {spec!r}", hint=usage)
    rest = spec[len(SCHEME) :]
    if "?" in rest or "#" in rest:
        # A SAS pasted into the URL would end up in messages and plan files: refuse it.
        raise StateError(
            "the azblob:// state location must not carry a query string (a SAS token?)",
            hint=f"put a SAS token in {SAS_TOKEN_ENV} instead; {usage}",
        )
    parts = rest.split("/", 2)
    if len(parts) < 3 or not parts[2] or parts[2].endswith("/"):
        raise StateError(f"incomplete state location {spec!r}", hint=usage)
    account, container, blob = parts
    if not _ACCOUNT_RE.fullmatch(account):
        raise StateError(
            f"invalid storage account name {account!r} in {spec!r}",
            hint="account names are 3-24 lowercase letters and digits",
        )
    if not _CONTAINER_RE.fullmatch(container):
        raise StateError(
            f"invalid container name {container!r} in {spec!r}",
            hint="container names are 3-63 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit",
        )
    if len(blob) > 1024:
        raise StateError(f"the blob path in {spec!r} is longer than 1024 characters")
    return BlobLocation(account, container, blob)


def check_endpoint(endpoint: str) -> str:
    """An account endpoint URL: https, or plain http only on loopback (as for --graph-url)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise StateError(
            f"invalid --state-endpoint {endpoint!r}",
            hint="give the storage account's blob endpoint, e.g. "
            "https://contoso.blob.core.usgovcloudapi.net or, for Azurite, "
            f"{DEV_BLOB_ENDPOINT}",
        )
    if parts.scheme == "http" and not is_loopback_host(host):
        raise StateError(
            f"refusing plain http:// for the state endpoint {host}",
            hint="plain http is accepted only for loopback hosts (Azurite); use https",
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise StateError(
            "the state endpoint must not carry credentials or a query string",
            hint=f"put a SAS token in {SAS_TOKEN_ENV} instead",
        )
    return endpoint.rstrip("/")


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` with case-insensitive keys (values may contain ``=``, e.g. keys)."""
    fields: dict[str, str] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            # Do not echo the item: it may be part of a secret.
            raise StateError(
                f"{CONNECTION_STRING_ENV} is not a storage connection string "
                "(expected Key=Value pairs separated by ';')"
            )
        fields[name.strip().lower()] = value.strip()
    return fields


def _from_connection_string(text: str, location: BlobLocation, endpoint: str | None) -> Connection:
    fields = parse_connection_string(text)
    remember_storage_secrets(fields.get("accountkey"), fields.get("sharedaccesssignature"))
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        fields = {
            "accountname": DEV_ACCOUNT,
            "accountkey": DEV_KEY,
            "blobendpoint": DEV_BLOB_ENDPOINT,
        }
    account = fields.get("accountname")
    if account is not None and account != location.account:
        raise StateError(
            f"{CONNECTION_STRING_ENV} is for storage account {account!r}, but the state "
            f"location names account {location.account!r}",
            hint="use the same account in both, or unset the connection string",
        )
    if endpoint is None and "blobendpoint" in fields:
        endpoint = check_endpoint(fields["blobendpoint"])
    if endpoint is None:
        protocol = fields.get("defaultendpointsprotocol", "https")
        suffix = fields.get("endpointsuffix", "core.windows.net")
        endpoint = check_endpoint(f"{protocol}://{location.account}.blob.{suffix}")
    if "accountkey" in fields:
        credential: Any = {"account_name": location.account, "account_key": fields["accountkey"]}
        return Connection(endpoint, credential, f"account key from {CONNECTION_STRING_ENV}")
    if "sharedaccesssignature" in fields:
        sas = fields["sharedaccesssignature"].lstrip("?")
        return Connection(endpoint, sas, f"SAS token from {CONNECTION_STRING_ENV}")
    raise StateError(
        f"{CONNECTION_STRING_ENV} has neither AccountKey nor SharedAccessSignature",
        hint="or unset it to sign in with Azure AD (DefaultAzureCredential)",
    )


def remember_storage_secrets(*values: str | None) -> None:
    """Keys, SAS tokens and connection strings are secrets wherever they are echoed; a SAS's
    signature alone too (``sig=``: it is what grants the access)."""
    remember(*values)
    for value in values:
        remember(*parse_qs((value or "").lstrip("?")).get("sig", ()))


def connection_for(
    location: BlobLocation,
    endpoint: str | None,
    env: Mapping[str, str],
    sign_in: SignIn | None = None,
) -> Connection:
    """Pick the endpoint and credential, in this order: a connection string, an account key,
    a SAS token (all from the environment, as the Azure CLI and Terraform's azurerm backend
    read them), else Azure AD with the run's own sign-in (``--auth``: the chooser of
    `provisioner.signin.chooser`, for Azure Storage instead of Graph; see ``blob_credential``
    for ``--auth env`` without an app)."""
    remember_storage_secrets(
        env.get(CONNECTION_STRING_ENV), env.get(ACCOUNT_KEY_ENV), env.get(SAS_TOKEN_ENV)
    )
    explicit = endpoint or env.get(ENDPOINT_ENV) or None
    account_url = check_endpoint(explicit) if explicit else None
    conn_str = env.get(CONNECTION_STRING_ENV)
    if conn_str:
        return _from_connection_string(conn_str, location, account_url)
    default_url = account_url or f"https://{location.account}.blob.core.windows.net"
    key = env.get(ACCOUNT_KEY_ENV)
    if key:
        credential = {"account_name": location.account, "account_key": key}
        return Connection(default_url, credential, f"account key from {ACCOUNT_KEY_ENV}")
    sas = env.get(SAS_TOKEN_ENV)
    if sas:
        return Connection(default_url, sas.lstrip("?"), f"SAS token from {SAS_TOKEN_ENV}")
    if default_url.lower().startswith("http://"):
        # The SDK sends bearer tokens over https only (it would raise ValueError).
        raise StateError(
            f"signing in to the state at {default_url} with Azure AD needs an https:// endpoint",
            hint=f"for Azurite, set {ACCOUNT_KEY_ENV} (its development key) or "
            f"{CONNECTION_STRING_ENV}=UseDevelopmentStorage=true",
        )
    chosen = blob_credential(sign_in or SignIn.from_env(env), env)
    return Connection(default_url, BlobCredential(chosen, str(location)), chosen.description)


class BlobCredential:
    """The chosen `Credential` as the Azure SDK's token credential. A failed sign-in is one
    `AuthError` line naming the state (Azure Identity's chain only as its ``detail``, for
    ``--debug``), raised at once: the SDK's retry policy would otherwise retry it with backoff
    (four failures and 40 s before any message)."""

    def __init__(self, credential: Credential, location: str) -> None:
        self.inner = credential
        self._location = location

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        try:
            token = self.inner.get_token()
        except ProvisionError as exc:  # one line already (e.g. GitHub refused its OIDC token)
            exc.message = f"no access to the state {self._location}: {exc.message}"
            raise
        except Exception as exc:  # anything a sign-in library raised
            error = failure(exc, self.inner.description, STORAGE_HINT)
            error.message = f"no access to the state {self._location}: {error.message}"
            raise error from None
        # The chosen credential refreshes ahead of expiry itself; the SDK asks again then.
        expires = jwt_expiry(token) or time.time() + 300
        return AccessToken(token, int(expires))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"BlobCredential({self.inner.description})"


def import_azure(module: str) -> ModuleType:
    """Import an optional Azure SDK module, or say how to install the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ProvisionError(
            f"azblob:// state needs the Azure SDK ({module} is not installed)",
            hint=INSTALL_HINT,
        ) from exc
