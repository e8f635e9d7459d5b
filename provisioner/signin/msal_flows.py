"""The MSAL flows behind `provisioner.signin.chooser.Credential`: confidential client (secret,
certificate, federated assertion), managed identity and device code.

Each caches its token and refreshes it ahead of expiry under a lock, so many worker threads
share one token; `invalidate` (after a 401) makes the next call fetch a new one. Errors become
`AuthError` with a hint naming the variable at fault; secrets never reach a message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from provisioner.errors import AuthError
from provisioner.redact import redact, remember
from provisioner.signin.hints import (
    AADSTS_HINTS,
    AADSTS_KIND,
    CREDENTIAL_NAMES,
    REJECTED,
    credential_kind,
)

log = logging.getLogger("provision.auth")

#: An access token is a JWT of a few kilobytes; anything longer or with whitespace or control
#: characters is not one (and must never become an Authorization header).
MAX_TOKEN_CHARS = 32 * 1024
#: Seconds a token is trusted for at most, whatever ``expires_in`` says (Entra's are 60-90 min).
MAX_TOKEN_LIFETIME = 24 * 3600.0


def _quiet_msal() -> None:
    """Keep MSAL's own log records away from every handler: MSAL logs a token endpoint's raw
    answer (with ``logging.exception``) when it cannot parse it, and an endpoint or proxy that
    echoes the request puts the client secret in that answer (issue 15). Without a handler
    on the way, Python's last-resort handler would print it, traceback and all, to stderr."""
    msal_log = logging.getLogger("msal")
    if msal_log.propagate:
        msal_log.addHandler(logging.NullHandler())
        msal_log.propagate = False
    # Not even made: a handler someone attaches to "msal" itself would still see the record.
    msal_log.setLevel(logging.CRITICAL + 1)


def checked_token(result: Mapping[str, Any]) -> tuple[str, float] | None:
    """The access token and its lifetime in seconds from a token answer, or None when the
    answer has no usable token. ValueError for an answer that is not a token answer."""
    token = result.get("access_token")
    if token is None or token == "":
        return None
    if (
        not isinstance(token, str)
        or len(token) > MAX_TOKEN_CHARS
        or not token.isprintable()
        or not token.isascii()  # an Authorization header cannot carry it (RFC 6750: b64token)
    ):
        raise ValueError("the token answer's access_token is not a token")
    if any(c.isspace() for c in token):
        raise ValueError("the token answer's access_token is not a token")
    raw = result.get("expires_in", 3600)
    try:
        lifetime = float(raw if raw not in (None, "") else 3600)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("the token answer's expires_in is not a number") from None
    if not lifetime > 0:  # NaN too
        raise ValueError("the token answer's expires_in is not a positive number")
    return token, min(lifetime, MAX_TOKEN_LIFETIME)


class _MsalCredential:
    """Token caching and refresh shared by the MSAL flows; subclasses implement `_acquire`.

    MSAL already caches tokens, but a shared cache in front of it keeps the hot path (30
    requests a second from many threads) to one lock and a clock read.
    """

    #: Refresh this long before expiry, so a token never expires between fetch and use.
    refresh_margin = 300.0

    def __init__(self, description: str, *, clock: Callable[[], float] = time.time) -> None:
        self.description = description
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._force = False
        #: Values that must never reach a message: a login endpoint or proxy that quotes the
        #: request back (error_description, an HTML error page, a transport error) would
        #: otherwise carry the client secret into an AuthError.
        self._secrets: tuple[str, ...] = ()

    def _keep_secret(self, *values: str | None) -> None:
        """Never show ``values`` in a message of this flow, nor anywhere else (`remember`)."""
        kept = tuple(v for v in values if v)
        self._secrets = tuple(dict.fromkeys((*self._secrets, *kept)))
        remember(*kept)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            # Also as it travels in a form body (quoted), the way a proxy would echo it.
            for form in {secret, quote_plus(secret)}:
                text = text.replace(form, "[redacted]")
        # The whole of each secret, not its first 300 characters: messages are cut to 300
        # below, and a cut assertion or token is still a secret (issue 20).
        return redact(text)

    def get_token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._expires - self.refresh_margin:
                return self._token
            _quiet_msal()
            try:
                result = self._acquire(self._force)
                got = checked_token(result) if isinstance(result, Mapping) else None
            except AuthError:
                raise
            except Exception as exc:  # network failure, malformed answer, MSAL's own errors
                # One line, never the answer itself: it may quote the request (the secret).
                raise AuthError(
                    f"could not get a token ({self.description}): {type(exc).__name__}: "
                    f"{first_line(self._scrub(str(exc)))}",
                    hint="check network access to the login host (a proxy answering in its "
                    "place?) and the AZURE_* variables",
                ) from None
            if got is None:
                raise self._failure(result if isinstance(result, Mapping) else {})
            self._token, lifetime = got
            self._expires = now + lifetime
            self._force = False
            log.debug("got a token (%s), valid for %.0fs", self.description, lifetime)
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._force = True

    def _acquire(self, force: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _failure(self, result: Mapping[str, Any]) -> AuthError:
        error = self._scrub(str(result.get("error") or "no access token in the response"))
        detail = first_line(self._scrub(str(result.get("error_description") or "")))
        return AuthError(
            f"sign-in failed ({self.description}): {error}" + (f": {detail}" if detail else ""),
            hint=self._hint(error, detail),
        )

    def _hint(self, error: str, detail: str) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


class ConfidentialClientCredential(_MsalCredential):
    """App-only tokens (client credentials flow) with a secret, certificate or assertion."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_credential: str | dict[str, Any],
        authority_host: str,
        scope: str,
        description: str,
        http_client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(description, clock=clock)
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._client_credential = client_credential
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._scope = scope
        self._http_client = http_client
        self._app: Any = None
        if isinstance(client_credential, str):
            self._keep_secret(client_credential)
        else:
            self._keep_secret(
                *(str(client_credential[k]) for k in ("private_key", "passphrase")
                  if client_credential.get(k))
            )  # fmt: skip
            self._client_credential = self._remembering_assertion(client_credential)
        #: What signs the app in, for hints that name the right variable.
        self._kind = credential_kind(client_credential)

    def _remembering_assertion(self, credential: dict[str, Any]) -> dict[str, Any]:
        """A federated assertion is read (or fetched) when MSAL needs one: each is a secret
        from then on, whole, wherever an endpoint echoes it."""
        assertion = credential.get("client_assertion")
        if isinstance(assertion, str):
            self._keep_secret(assertion)
        if not callable(assertion):
            return credential

        def read() -> Any:
            value = assertion()
            self._keep_secret(value if isinstance(value, str) else None)
            return value

        return {**credential, "client_assertion": read}

    def _application(self) -> Any:
        # Built lazily: MSAL fetches the tenant's OpenID configuration when constructed.
        if self._app is None:
            import msal

            self._app = msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._client_credential,
                authority=self._authority,
                http_client=self._http_client or same_origin_session(),
                # The authority is a known cloud's login host or the user's explicit
                # AZURE_AUTHORITY_HOST: no instance discovery round trip is needed.
                instance_discovery=False,
            )
        return self._app

    def _acquire(self, force: bool) -> dict[str, Any]:
        assertion = (
            self._client_credential.get("client_assertion")
            if isinstance(self._client_credential, dict)
            else None
        )
        if callable(assertion) and self._app is None:
            # GitHub's OIDC token or the token file first, handed to MSAL's first call: a
            # refusal there is said at once, before Entra is asked anything.
            fetched = [assertion()]

            def first_then_fresh() -> Any:
                return fetched.pop() if fetched else assertion()

            self._client_credential = {
                **self._client_credential,  # type: ignore[dict-item]
                "client_assertion": first_then_fresh,
            }
        app = self._application()
        if force:
            app.remove_tokens_for_client()
        result: dict[str, Any] = app.acquire_token_for_client(scopes=[self._scope])
        return result

    def _hint(self, error: str, detail: str) -> str | None:
        code = detail.split(":", 1)[0].strip()
        if code in AADSTS_HINTS:
            if AADSTS_KIND.get(code, self._kind) == self._kind:
                return AADSTS_HINTS[code]
            # Entra named another kind of credential than the one used (a certificate
            # refused as an "invalid client secret"): name the one this run used.
            return REJECTED[self._kind]
        if error in ("invalid_client", "unauthorized_client"):
            return f"check AZURE_CLIENT_ID and {CREDENTIAL_NAMES[self._kind]}"
        if error == "invalid_scope":
            return "the token scope does not match --cloud"
        return None


def same_origin_session() -> Any:
    from provisioner.signin.sessions import SameOriginSession  # imports requests

    return SameOriginSession()


class ManagedIdentityCredential(_MsalCredential):
    """``--auth managed-identity``: Azure VM, App Service, Functions, Arc, Cloud Shell.

    A user-assigned identity is chosen by ``AZURE_CLIENT_ID``; without it, the system-assigned
    one is used.
    """

    def __init__(
        self,
        *,
        resource: str,
        client_id: str | None = None,
        http_client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        kind = f"user-assigned managed identity {client_id}" if client_id else "managed identity"
        super().__init__(kind, clock=clock)
        self._resource = resource
        self._client_id = client_id
        self._http_client = http_client
        self._client: Any = None
        # MSAL reads these from the environment and sends them to the identity endpoint;
        # one echoed in an error must not be printed (issue 20).
        self._keep_secret(*(os.environ.get(n) for n in ("IDENTITY_HEADER", "MSI_SECRET")))

    def _acquire(self, force: bool) -> dict[str, Any]:
        import msal

        if self._client is None or force:
            # A new client has an empty token cache: the way to refresh a rejected token.
            identity = (
                msal.UserAssignedManagedIdentity(client_id=self._client_id)
                if self._client_id
                else msal.SystemAssignedManagedIdentity()
            )
            if self._http_client is None:
                # Never the identity header to another host after a redirect (sessions.py).
                self._http_client = same_origin_session()
            self._client = msal.ManagedIdentityClient(identity, http_client=self._http_client)
        result: dict[str, Any] = self._client.acquire_token_for_client(resource=self._resource)
        return result

    def _hint(self, error: str, detail: str) -> str | None:
        return (
            "is a managed identity assigned to this machine and allowed the Graph application "
            "permissions? For a user-assigned identity set AZURE_CLIENT_ID to its client ID"
        )


class DeviceCodeCredential(_MsalCredential):
    """``--auth device-code``: a person signs in in a browser; delegated permissions.

    Tokens (and the refresh token) are kept in an MSAL cache, encrypted at rest where the
    platform allows, else in a file readable only by the user with a warning
    (`provisioner.signin.token_cache`), so the next run signs in silently.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        authority_host: str,
        scope: str,
        cache_path: Path,
        prompt: Callable[[str], None] | None,
        http_client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(f"device code sign-in for app {client_id}", clock=clock)
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._scope = scope
        self._cache_path = cache_path
        self._prompt = prompt
        self._http_client = http_client
        self._app: Any = None
        self._cache: Any = None

    def _application(self) -> Any:
        if self._app is None:
            import msal

            from provisioner.signin.token_cache import open_token_cache

            self._cache = open_token_cache(self._cache_path, warn=self._prompt)
            self._app = msal.PublicClientApplication(
                self._client_id,
                authority=self._authority,
                token_cache=self._cache.cache,
                http_client=self._http_client or same_origin_session(),
                instance_discovery=False,
            )
        return self._app

    def _acquire(self, force: bool) -> dict[str, Any]:
        app = self._application()
        result: dict[str, Any] | None = None
        for account in app.get_accounts():
            result = app.acquire_token_silent([self._scope], account=account, force_refresh=force)
            if result and "access_token" in result:
                break
        if not result or "access_token" not in result:
            if self._prompt is None:
                raise AuthError(
                    "device code sign-in needs someone to open a browser, and nobody can be "
                    "asked here",
                    hint="run once from a terminal to sign in (the token is cached), or use "
                    "the AZURE_* variables for an app registration",
                )
            flow = app.initiate_device_flow(scopes=[self._scope])
            if "user_code" not in flow:
                return dict(flow)
            self._prompt(str(flow["message"]))
            result = app.acquire_token_by_device_flow(flow)
        self._save_cache()
        return result

    def _save_cache(self) -> None:
        if self._cache is not None:
            self._cache.save()

    def _hint(self, error: str, detail: str) -> str | None:
        if error == "authorization_pending" or "expired" in error:
            return "the sign-in was not completed in time; run again and sign in promptly"
        return "check AZURE_CLIENT_ID (an app allowing public client flows) and AZURE_TENANT_ID"


def token_cache_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/provision/msal_token_cache.json`` (default ``~/.cache``)."""
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or "~") / ".cache")
    return Path(base).expanduser() / "provision" / "msal_token_cache.json"
