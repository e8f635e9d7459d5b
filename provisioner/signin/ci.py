"""Sign-in pieces shared by Graph (`provisioner.graph`) and the state blob
(`provisioner.states.azblob.conn`): GitHub Actions' OIDC token, fetched by provision itself
whenever a sign-in needs one, and what Azure Identity (the optional extra) needs around it:
an Azure Pipelines service connection's settings, one-line failures, quiet logs.

**GitHub Actions' OIDC token.**
A job with ``permissions: id-token: write`` gets ``ACTIONS_ID_TOKEN_REQUEST_URL`` and
``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; a GET of that URL with ``audience=api://AzureADTokenExchange``
and the request token as bearer answers ``{"value": "<JWT>"}`` (GitHub's docs, "Configuring
OpenID Connect in cloud providers" and "About security hardening with OpenID Connect"). Entra
exchanges that JWT for an access token (workload identity federation). GitHub's tokens live
minutes, so they are fetched when needed, not once: MSAL (Graph) and Azure Identity (the state
blob) call `github_assertion`'s callable for every new access token, and a run of hours needs
no refresh script.

Neither the request token nor the JWT ever reaches a message or a log line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from provisioner.errors import AuthError
from provisioner.signin.claims import jwt_expiry

log = logging.getLogger("provision.auth")

SERVICE_CONNECTION = "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"
SYSTEM_ACCESS_TOKEN = "SYSTEM_ACCESSTOKEN"
OIDC_REQUEST_URI = "SYSTEM_OIDCREQUESTURI"
REQUEST_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
#: The audience Entra expects of a federated credential's token (the default in Entra's
#: federated identity credential form and in azure/login).
AUDIENCE = "api://AzureADTokenExchange"
#: Fetch a new token when the cached one has less than this left: Entra must still accept it.
MARGIN = 60.0
_HINT = (
    "give the job `permissions: id-token: write` (GitHub sets ACTIONS_ID_TOKEN_REQUEST_URL "
    "and ACTIONS_ID_TOKEN_REQUEST_TOKEN only then), or set AZURE_FEDERATED_TOKEN_FILE"
)


def github_oidc_available(environ: Mapping[str, str]) -> bool:
    """True in a GitHub Actions job that may request an OIDC token."""
    return bool(environ.get(REQUEST_URL, "").strip() and environ.get(REQUEST_TOKEN, "").strip())


def pipelines_available(environ: Mapping[str, str]) -> bool:
    """True in an Azure Pipelines job that names a service connection to sign in with."""
    return bool(
        environ.get(SERVICE_CONNECTION, "").strip() and environ.get(OIDC_REQUEST_URI, "").strip()
    )


def github_assertion(
    environ: Mapping[str, str],
    *,
    session: Any = None,
    clock: Callable[[], float] = time.time,
    timeout: float = 30.0,
) -> Callable[[], str]:
    """A callable returning a valid GitHub OIDC token for Entra, fetched when the last one is
    about to expire. Raises `AuthError` (one line, with a hint) when GitHub gives none."""
    url = environ.get(REQUEST_URL, "").strip()
    request_token = environ.get(REQUEST_TOKEN, "").strip()
    if not (url and request_token):
        raise AuthError(f"{REQUEST_URL} and {REQUEST_TOKEN} are not set", hint=_HINT)
    target = _with_audience(url)
    lock = threading.Lock()
    cached: list[tuple[str, float]] = []

    def fetch() -> str:
        with lock:
            if cached and clock() < cached[0][1] - MARGIN:
                return cached[0][0]
            token = _request(session, target, request_token, timeout)
            cached[:] = [(token, jwt_expiry(token) or clock() + 300.0)]
            log.debug("got a GitHub OIDC token for %s", AUDIENCE)
            return token

    return fetch


def _with_audience(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "audience"]
    query.append(("audience", AUDIENCE))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _request(session: Any, url: str, request_token: str, timeout: float) -> str:
    import requests  # a runtime dependency; imported here to keep `provision --help` fast

    http = session if session is not None else requests
    try:
        response = http.get(
            url,
            headers={"Authorization": f"bearer {request_token}", "Accept": "application/json"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise AuthError(
            f"could not reach GitHub's OIDC token service ({type(exc).__name__})",
            hint="check the runner's network; the token service is GitHub's own",
        ) from None
    if response.status_code != 200:
        raise AuthError(
            f"GitHub's OIDC token service refused the request (HTTP {response.status_code})",
            hint=_HINT,
        )
    try:
        token = response.json().get("value")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token.strip():
        raise AuthError("GitHub's OIDC token service answered without a token", hint=_HINT)
    return token.strip()


# -- Azure Identity ---------------------------------------------------------------------------


def quiet_azure_logs() -> None:
    """Azure Identity logs every failed attempt at WARNING; with no logging configured, Python
    prints those to stderr (the "DefaultAzureCredential failed ..." chains, once per retry).
    provision reports a failure itself, once: a handler here keeps Python's last-resort
    printing away. The records still propagate to handlers a caller configures."""
    logger = logging.getLogger("azure")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def failure(exc: BaseException, what: str, hint: str) -> AuthError:
    """One line naming the sign-in and Azure Identity's first specific statement; the full
    text as ``detail`` (``--debug``)."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return AuthError(
        f"could not sign in ({what}): {summarize(text)}",
        hint=hint,
        detail=f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
    )


_ATTEMPT = re.compile(r"^\s*(\w+?)Credential: (.*)$")
_UNAVAILABLE = ("unavailable", "not found", "not installed", "could not be found", "requires")


def summarize(text: str) -> str:
    """What an Azure Identity message says is wrong, in one line without links.

    ``DefaultAzureCredential`` lists every credential it tried: when one of them failed for
    real (an expired ``az login``, a refused federated token), that one is the news; when none
    was set up, the list of what was tried is."""
    attempts = [m.groups() for m in map(_ATTEMPT.match, text.splitlines()) if m]
    if attempts:
        failed = [(n, why) for n, why in attempts if not any(u in why for u in _UNAVAILABLE)]
        if failed:
            name, why = failed[-1]
            return f"{name}: {_first_sentence(why)}"
        return (
            "no sign-in is set up (tried " + ", ".join(dict.fromkeys(n for n, _ in attempts)) + ")"
        )
    for line in text.splitlines():
        line = line.strip()
        if line and not line.lower().startswith(("visit ", "to mitigate", "see ")):
            return _first_sentence(line)
    return "no reason given"


def _first_sentence(line: str) -> str:
    for cut in (" Visit https://", " See https://", " Please refer to", ". See "):
        line = line.split(cut, 1)[0]
    return line.strip()[:300]


def pipelines_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The four values ``AzurePipelinesCredential`` needs, or an `AuthError` naming the first
    one missing. The tenant and client come from ``AZURE_TENANT_ID``/``AZURE_CLIENT_ID``, or
    the ``AZURESUBSCRIPTION_*`` names the AzureCLI@2 task uses."""

    def first(*names: str) -> str:
        return next((environ[n].strip() for n in names if environ.get(n, "").strip()), "")

    values = {
        "tenant": first("AZURE_TENANT_ID", "AZURESUBSCRIPTION_TENANT_ID"),
        "client": first("AZURE_CLIENT_ID", "AZURESUBSCRIPTION_CLIENT_ID"),
        "connection": first(SERVICE_CONNECTION),
        "access_token": first(SYSTEM_ACCESS_TOKEN),
    }
    needs = {
        "tenant": ("AZURE_TENANT_ID", "the service connection's directory (tenant) id"),
        "client": ("AZURE_CLIENT_ID", "the service connection's application (client) id"),
        "connection": (SERVICE_CONNECTION, "the service connection's id"),
        "access_token": (
            SYSTEM_ACCESS_TOKEN,
            "map it in the step: env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)",
        ),
    }
    for key, (name, what) in needs.items():
        if not values[key]:
            raise AuthError(f"--auth azure-pipelines needs {name}", hint=f"set {name}: {what}")
    if not environ.get(OIDC_REQUEST_URI, "").strip():
        raise AuthError(
            f"--auth azure-pipelines: {OIDC_REQUEST_URI} is not set (not an Azure Pipelines job?)",
            hint="Azure DevOps sets it in pipeline jobs; elsewhere use another --auth",
        )
    return values
