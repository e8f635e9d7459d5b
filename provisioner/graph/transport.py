"""What the Graph client's send loop makes of ``requests``: answers as `Response` (headers
looked up case-insensitively, any echoed token taken out of error bodies) and exceptions as
`TransportFailure` facts for the retry policy (was anything sent, and a reason a user can read).

Every answer is bounded (issue 15): `fetch` gives it a total deadline, not a per-read timeout
(a server trickling a byte every few seconds would otherwise hold a call forever), cuts it off
past ``MAX_ANSWER_BYTES`` on the wire and again after decompression (a gzip bomb), and never
follows a redirect (a write must not be sent, or reported as done, anywhere else).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from provisioner.fsutil import loads_json
from provisioner.graph.errors import GraphError, GraphPermissionError, parse_error_body
from provisioner.graph.retry import Raise, TransportFailure
from provisioner.redact import MARK, mentions, redact, redact_data

#: The largest answer read, on the wire and decompressed. Graph's largest answers here are
#: $batch envelopes of 15-20 chats with up to 250 members each: a few MB.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024

__all__ = [
    "MAX_ANSWER_BYTES",
    "Fetched",
    "Response",
    "error_for",
    "fetch",
    "new_session",
    "request_headers",
    "response_from",
    "transport_failure",
]


@dataclass
class Response:
    """One Graph answer: status, headers (a plain dict) and the parsed JSON body."""

    status: int
    headers: Mapping[str, str]
    body: Any
    client_request_id: str = ""
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class _GraphSession(requests.Session):
    """A session that reads the environment once per origin, and never ``.netrc``.

    ``requests`` consults the environment on every request: it scans every variable for
    proxies twice (a third of the CPU of a run against a Graph on loopback, in a shell with
    ~90 variables), reads ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, and looks the host up in
    ``~/.netrc``, whose entry for the host (or ``default`` entry) *replaces* the request's
    ``Authorization`` header (psf/requests#3929): the netrc password would be sent to Graph in
    place of the token. Here the proxies (``HTTPS_PROXY``, ``NO_PROXY`` ...) and the CA bundle
    are read as ``requests`` reads them, once per scheme and host, and ``.netrc`` never."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self._environment: dict[tuple[str, str], tuple[dict[str, str], str | None]] = {}
        self._environment_lock = threading.Lock()

    def _environment_for(self, url: str) -> tuple[dict[str, str], str | None]:
        parts = urlsplit(url)
        key = (parts.scheme.lower(), parts.netloc.lower())
        with self._environment_lock:
            found = self._environment.get(key)
            if found is None:
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                found = self._environment[key] = (get_environ_proxies(url), bundle or None)
            return found

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        text = url.decode() if isinstance(url, bytes) else str(url or "")
        env_proxies, bundle = self._environment_for(text)
        merged = {**env_proxies, **(proxies or {})}
        if (verify is True or verify is None) and bundle:
            verify = bundle
        return super().merge_environment_settings(url, merged, stream, verify, cert)


def new_session(pool_size: int) -> requests.Session:
    """A session whose pool holds ``pool_size`` connections and which never retries by itself
    (the client's retry policy does), nor follows redirects (`fetch` asks for none); it reads
    proxies and the CA bundle from the environment once per host and ignores ``.netrc``
    (`_GraphSession`)."""
    session = _GraphSession()
    adapter = _WatchedAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# -- the total deadline -------------------------------------------------------------------------

_current = threading.local()


class _Watch:
    """The connection one call uses, so a timer can cut it off at the call's deadline."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.expired = False
        self._lock = threading.Lock()

    def cut(self) -> None:
        with self._lock:
            self.expired = True
            sock = getattr(self.conn, "sock", None)
        if sock is not None:
            # The blocked read returns at once; the connection is not reused (it errors).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Tracked:
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.conn = conn
        return conn


class _TrackedHTTPPool(_Tracked, HTTPConnectionPool):
    pass


class _TrackedHTTPSPool(_Tracked, HTTPSConnectionPool):
    pass


_POOLS = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """Pools that tell the running call's `_Watch` which connection it got."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[_Watch]:
    watch = _Watch()
    _current.watch = watch
    timer = threading.Timer(seconds, watch.cut)
    timer.daemon = True
    timer.start()
    try:
        yield watch
    finally:
        timer.cancel()
        _current.watch = None


class AnswerTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    """A complete answer, read within its deadline and size limits."""

    status: int
    headers: Mapping[str, str]
    content: bytes


def fetch(
    session: requests.Session,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None,
    json: Any,
    headers: Mapping[str, str],
    timeout: tuple[float, float],
    deadline: float,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> Fetched | TransportFailure:
    """One request and its whole answer, or the failure (as the retry policy sees it)."""
    watch: _Watch | None = None
    try:
        with _deadline(deadline) as watch:
            raw = session.request(
                method, url, params=params, json=json, headers=dict(headers), timeout=timeout,
                stream=True, allow_redirects=False,
            )  # fmt: skip
            try:
                content = _read(raw, max_bytes)
            except BaseException:
                raw.close()  # the connection is in an unknown state: never reused
                raise
            raw.raw.release_conn()  # read to the end: back to the pool (keep-alive)
    except AnswerTooLarge:
        return TransportFailure(sent=True, reason=f"answer larger than {max_bytes} bytes")
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if watch is not None and watch.expired:
            return TransportFailure(sent=True, reason=f"no complete answer within {deadline:g}s")
        if isinstance(exc, requests.RequestException):
            return transport_failure(exc)
        return TransportFailure(sent=True, reason="connection dropped mid-response")
    if watch.expired:  # the cut raced with the last read
        return TransportFailure(sent=True, reason=f"no complete answer within {deadline:g}s")
    return Fetched(raw.status_code, {k: v for k, v in raw.headers.items()}, content)


def _read(raw: requests.Response, max_bytes: int) -> bytes:
    """The body, decompressed, refusing more than ``max_bytes`` on the wire or after."""
    declared = raw.headers.get("Content-Length", "")
    if declared.isdigit() and len(declared) < 20 and int(declared) > max_bytes:
        raise AnswerTooLarge
    chunks = []
    size = 0
    stream = raw.raw
    while True:
        # Small reads: one compressed chunk cannot expand past a few MB before it is counted.
        chunk = stream.read(_CHUNK, decode_content=True)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes or stream.tell() > max_bytes:
            raise AnswerTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def request_headers(token: str, client_request_id: str, user_agent: str) -> dict[str, str]:
    """Headers of every Graph request; ``client-request-id`` lets support trace the call."""
    return {
        "Authorization": f"Bearer {token}",
        "client-request-id": client_request_id,
        "return-client-request-id": "true",
        "User-Agent": user_agent,
        "Accept": "application/json",
    }


def response_from(raw: Fetched, client_request_id: str, attempts: int, *, token: str) -> Response:
    body: Any = None
    if raw.content:
        try:
            body = loads_json(raw.content)  # NaN, 5,000-digit numbers, deep nesting: text
        except (ValueError, UnicodeDecodeError):
            body = raw.content[:1000].decode("utf-8", "replace")
    if raw.status >= 300 or mentions(raw.content):
        # A gateway or proxy that quotes the request back would put the token into our
        # error message (or, in a success, into a topic the state records): take it out of
        # the body everything is built from. A clean success is not walked (a byte search).
        body = redact_data(_without(body, token))
    # Headers too, whatever the status: a request-id that echoes the Authorization header
    # ends up in log lines, errors and JSON reports (issue 20).
    headers = {k: redact(v.replace(token, MARK) if token else v) for k, v in raw.headers.items()}
    return Response(raw.status, _Caseless(headers), body, client_request_id, attempts)


def error_for(
    decision: Raise,
    method: str,
    path: str,
    response: Response | None,
    client_request_id: str,
) -> GraphError:
    """The error the retry policy decided on, with what support needs to trace the call:
    Graph's ``error.code``, message, request ids and date from the answer, when there is one
    (``concepts/errors.md``)."""
    if response is None:
        return decision.error(
            decision.message or "",
            method=method,
            path=path,
            client_request_id=client_request_id,
            hint=decision.hint,
        )
    code, message, inner = parse_error_body(response.body)
    if not message:
        message = {
            429: "Too Many Requests",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(response.status, f"HTTP {response.status}")
    extra = {"permission": decision.permission} if decision.error is GraphPermissionError else {}
    return decision.error(
        message,
        status=response.status,
        code=code,
        method=method,
        path=path,
        request_id=response.headers.get("request-id") or inner.get("request-id", ""),
        client_request_id=response.client_request_id,
        date=inner.get("date") or response.headers.get("Date", ""),
        hint=decision.hint,
        **extra,
    )


class _Caseless(dict[str, str]):
    """Response headers looked up case-insensitively (HTTP header names are)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in headers.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def _without(body: Any, secret: str) -> Any:
    """``body`` (parsed JSON or text) with every occurrence of ``secret`` replaced."""
    if not secret:
        return body
    if isinstance(body, str):
        return body.replace(secret, MARK)
    if isinstance(body, dict):
        return {_without(k, secret): _without(v, secret) for k, v in body.items()}
    if isinstance(body, list):
        return [_without(v, secret) for v in body]
    return body


def transport_failure(exc: requests.RequestException) -> TransportFailure:
    return TransportFailure(sent=not _never_sent(exc), reason=_reason(exc))


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection could not even be opened, so Graph saw nothing."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)  # includes DNS (NameResolutionError)
    return False


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no response before the read timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if reason is not None and "NameResolution" in type(reason).__name__:
            return "DNS lookup failed"
        if isinstance(reason, NewConnectionError):
            return "connection refused or unreachable"
        return "connection dropped"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection dropped mid-response"
    return type(exc).__name__
