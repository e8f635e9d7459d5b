"""The HTTP session the sign-in flows hand to MSAL: credentials never leave the host they
were meant for.

``requests`` follows redirects and drops only ``Authorization`` when the host changes: the
managed identity's ``X-IDENTITY-HEADER`` (App Service, Functions) and ``secret`` (older App
Service, Azure ML) went on to whatever host a redirect named, and a 307/308 re-sends a token
request's form body, client secret or assertion included (issue 20). No login or identity
endpoint redirects to another origin in its documented flows, so such a redirect is not
followed at all: MSAL gets the 3xx answer and reports a failed sign-in. Redirects within the
same origin (scheme, host and port) are still followed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.auth

#: Seconds for one answer of a login or identity endpoint (MSAL's own default is none).
DEFAULT_TIMEOUT = 30.0


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


class NoNetrc(requests.auth.AuthBase):
    """Leaves a request as it is. As the session's ``auth`` it keeps ``requests`` from
    looking the host up in ``~/.netrc`` (it does only for a session without one), whose entry
    for the host, or ``default`` entry, would add its password as a Basic ``Authorization``
    header to every login and identity request (psf/requests#3929). The proxies and the CA
    bundle of the environment are still read."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class SameOriginSession(requests.Session):
    """A session that follows a redirect only within the origin it was sent to, gives every
    request a timeout, and never sends a ``.netrc`` password (`NoNetrc`)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self._timeout = timeout
        self.auth = NoNetrc()

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        if _origin(urljoin(resp.url, target)) != _origin(resp.url):
            return None  # the 3xx is the answer: nothing is sent to the other host
        return target

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().request(method, url, *args, **kwargs)
