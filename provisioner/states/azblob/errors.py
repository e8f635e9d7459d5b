"""How the ``azblob://`` store turns Azure SDK errors into provision's own, without secrets.

Messages name the account, container and blob, never a key, SAS or URL query (transport errors
are described by their type only). Imported by ``states.azblob.store`` once it has checked that the
Azure SDK (the ``azure`` extra) is installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from provisioner.errors import AuthError, ProvisionError, StateError
from provisioner.states.azblob.conn import BlobLocation
from provisioner.states.azblob.lease import error_code

AUTH_HINT = (
    "check AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN, or "
    "that the Azure AD identity has the Storage Blob Data Contributor role on the container"
)
RERUN_PLAN = "another run may have taken over the state; re-run plan"


class StateConflictError(StateError):
    """The state blob changed since this store read it: the write was refused, nothing changed."""


def raise_if_no_container(where: BlobLocation, exc: HttpResponseError) -> None:
    """A 404 for the container (not the blob) is the user's to fix: say so."""
    if error_code(exc) == "ContainerNotFound":
        raise StateError(
            f"the container {where.container!r} does not exist in storage account "
            f"{where.account!r} (state {where})",
            hint="create it first (e.g. az storage container create); provision does not "
            "create containers",
        ) from exc


def conflict(location: str, etag: str | None, exc: HttpResponseError) -> StateConflictError:
    error = StateConflictError(
        f"the state {location} was changed by someone else since this run read it "
        f"(ETag {etag or 'none: it did not exist'}); nothing was written",
        hint="another run or person wrote it; run plan again to see the current state",
    )
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def sdk_errors(location: str, endpoint: str, action: str) -> Iterator[None]:
    """Turn SDK errors that are not handled elsewhere into ProvisionErrors without secrets."""
    try:
        yield
    except ProvisionError:
        raise
    except ClientAuthenticationError as exc:
        raise AuthError(
            f"access to {location} was refused "
            f"({error_code(exc) or exc.status_code or type(exc).__name__})",
            hint=AUTH_HINT,
        ) from exc
    except HttpResponseError as exc:
        if exc.status_code in (401, 403):
            raise AuthError(
                f"access to {location} was refused (HTTP {exc.status_code} "
                f"{error_code(exc)})".replace(" )", ")"),
                hint=AUTH_HINT,
            ) from exc
        raise StateError(
            f"could not {action} the state {location}: HTTP {exc.status_code} "
            f"{error_code(exc)}".rstrip()
        ) from exc
    except AzureError as exc:  # transport: no response (DNS, refused, TLS, timeout)
        where = f" at {endpoint}" if endpoint else ""
        raise StateError(
            f"could not {action} the state {location}: the storage service{where} "
            f"did not answer ({type(exc).__name__})",
            hint="check the account name, --state-endpoint and the network",
        ) from exc
