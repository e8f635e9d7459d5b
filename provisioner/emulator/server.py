"""The HTTP side: a stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive.

``EmulatorServer`` runs in a background thread of the calling process (tests need no
subprocess) and is a context manager::

    with EmulatorServer(limits="x10", faults=["504=0.1"], seed=1) as server:
        requests.get(f"{server.url}/me/chats", headers={"Authorization": "Bearer x"})
        assert server.tenant.counters.throttled_total == 0

Bad input never stops the server: oversize bodies (413), bodies without a length (411),
wrong content types (415), malformed JSON (400) and unknown routes (400) get Graph-shaped
answers; an unexpected exception becomes a Graph-shaped 500 and is counted in
``counters.internal_errors_total``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from provisioner.emulator.api import Api, ApiOptions
from provisioner.emulator.errors import EmulatorError, GraphError, bad_request
from provisioner.emulator.faults import FaultInjector, FaultsArg, normalize_faults
from provisioner.emulator.messages import Request, Response, error_response
from provisioner.emulator.store import Loaded, Store
from provisioner.emulator.tenant import Tenant
from provisioner.emulator.throttle import Throttler, parse_limits
from provisioner.emulator.users import Directory, User

DEFAULT_TENANT_ID = "6e5147da-6a35-4275-b3f3-fc069456b6eb"  # a made-up tenant
DEFAULT_ME = "admin@emulator.invalid"
MAX_BODY_BYTES = 4 * 1024 * 1024  # Graph refuses request bodies over 4 MB with 413
VERSIONS = ("/v1.0", "/beta")
BODY_METHODS = ("POST", "PATCH", "PUT")

LatencyArg = float | tuple[float, float]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: EmulatorServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (e.g. a killed provision run) is not an error of
        # the emulator, and the core never prints; bugs are caught and counted in _dispatch.
        return

    def close_connections(self) -> None:
        """Hang up idle keep-alive connections so no handler thread outlives ``stop()``."""
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body go out in two writes
    timeout = 120  # idle keep-alive connections are closed after this
    server: _HTTPServer

    def version_string(self) -> str:
        return "provision-emulator"

    def setup(self) -> None:
        super().setup()
        self.server.owner.tenant.count("connections_total")
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        return  # the core never prints

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed request lines and oversize headers (found by http.server itself) get a
        # Graph-shaped body too; the connection is closed since the stream is unusable.
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable line: answer with a status line
            self.request_version = "HTTP/1.1"
        req = Request(self.command or "GET", "/", {}, {}, base_url="")
        error = GraphError(code, "BadRequest", message or "Bad request.")
        self._write(error_response(req, error), req)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        owner = self.server.owner
        api = owner.api
        api.tenant.count("http_requests_total")
        headers = {k.lower(): v for k, v in self.headers.items()}
        split = urlsplit(self.path)
        version = next(
            (v for v in VERSIONS if split.path == v or split.path.startswith(v + "/")), None
        )
        host = headers.get("host") or f"{owner.host}:{owner.port}"
        req = Request(
            method=self.command,
            path=split.path[len(version) :] if version else split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            base_url=f"http://{host}{version or '/v1.0'}",
        )
        try:
            response = self._respond(owner, req, version)
        except Exception as exc:  # a bug in the emulator: answer 500 and keep serving
            owner.last_internal_error = exc
            api.tenant.count("internal_errors_total")
            response = error_response(
                req, GraphError(500, "InternalServerError", "The emulator failed (a bug).")
            )
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(response, req)

    def _respond(self, owner: EmulatorServer, req: Request, version: str | None) -> Response:
        api = owner.api
        if "chunked" in req.headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            return error_response(
                req, GraphError(411, "LengthRequired", "A Content-Length header is required.")
            )
        try:
            length = int(req.headers.get("content-length", "0"))
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            return error_response(req, bad_request("Invalid Content-Length header."))
        if length > owner.max_body_bytes:
            self.close_connection = True  # the body is not read
            return error_response(
                req,
                GraphError(
                    413,
                    "RequestEntityTooLarge",
                    f"The request body exceeds the maximum of {owner.max_body_bytes} bytes.",
                ),
            )
        try:
            raw = self.rfile.read(length) if length else b""
        except OSError:  # the client went away (or stalled) mid-body: nobody to answer
            raw = b""
        if len(raw) < length:
            self.close_connection = True
            return Response(0, drop=True)
        if version is None:
            return error_response(
                req, GraphError(404, "NotFound", "Unknown API version; use /v1.0 (or /beta).")
            )
        auth_error = api.authenticate(req.headers.get("authorization"))
        if auth_error is not None:
            api.tenant.count("unauthorized_total")
            return error_response(req, auth_error)
        if req.method in BODY_METHODS and raw:
            ctype = req.headers.get("content-type")
            if ctype is None:
                req.body_error = bad_request(
                    "Unable to read JSON request payload. Please ensure Content-Type header is "
                    "set and payload is of valid JSON format."
                )
            elif "json" not in ctype.lower():
                req.body_error = GraphError(
                    415,
                    "UnsupportedMediaType",
                    f"Content-Type '{ctype}' is not supported; use application/json.",
                )
            else:
                try:
                    req.body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    req.body_error = bad_request(
                        "Unable to read JSON request payload. Please ensure Content-Type header "
                        "is set and payload is of valid JSON format."
                    )
        if owner.latency is not None:
            lo, hi = owner.latency
            time.sleep((lo if lo == hi else owner.api_random(lo, hi)) / 1000)
        return api.handle_top(req)

    def _write(self, response: Response, req: Request) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("request-id", req.request_id)
        self.send_header("client-request-id", req.client_request_id)
        payload = b""
        if response.body is not None and response.status != 204:
            payload = json.dumps(response.body, separators=(",", ":")).encode("utf-8")
        if response.status != 204:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)


class EmulatorServer:
    """A local Microsoft Graph chat API. See the package docstring for every option."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_path: str | os.PathLike[str] | None = None,
        limits: str | float | None = "documented",
        latency_ms: LatencyArg = 0,
        faults: FaultsArg = None,
        seed: int | None = None,
        *,
        users: str | os.PathLike[str] | Sequence[User] | None = None,
        me: str | None = None,
        token_lifetime_s: float | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        max_body_bytes: int = MAX_BODY_BYTES,
        fault_retry_after_s: float | None = None,
        shuffle_batch: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.latency = _parse_latency(latency_ms)
        self.last_internal_error: BaseException | None = None
        scale = parse_limits(limits)
        rules = normalize_faults(faults)

        # One stream per purpose, so e.g. the faults a request sequence meets do not depend
        # on how many group chat ids were drawn meanwhile.
        def stream(purpose: str) -> random.Random:
            return random.Random(None if seed is None else f"{seed}:{purpose}")

        self._rng = stream("latency")
        self._rng_lock = threading.Lock()
        if users is None:
            directory = Directory()
        elif isinstance(users, (str, os.PathLike)):
            directory = Directory.from_file(users)
        else:
            directory = Directory(users)
        self._store = Store(data_path) if data_path is not None else None
        loaded = self._store.open() if self._store is not None else Loaded()
        try:
            self.tenant = Tenant(
                loaded.tenant_id or tenant_id.lower(),
                directory,
                rng=stream("ids"),
                store=self._store,
            )
            self._load(loaded, directory)
        except BaseException:
            if self._store is not None:
                self._store.close()
            raise
        if me is None:
            first = None if directory.made_up else directory.first()
            me = first.id if first else DEFAULT_ME
        self.api = Api(
            self.tenant,
            Throttler(scale),
            FaultInjector(rules, stream("faults")),
            ApiOptions(
                me=me,
                whole_second_retry_after=scale == 1.0,
                fault_retry_after_s=(
                    fault_retry_after_s if fault_retry_after_s is not None else 1.0 / (scale or 1.0)
                ),
                token_lifetime_s=token_lifetime_s,
                shuffle_batch=shuffle_batch,
            ),
            stream("batch"),
        )
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def _load(self, loaded: Loaded, directory: Directory) -> None:
        try:
            if directory.made_up:
                for rec in loaded.users:
                    directory.remember(User.from_record(rec, "emulator data: users"))
            self.tenant.load(list(loaded.chats.values()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            assert self._store is not None
            raise EmulatorError(
                f"emulator data {self._store.path} is corrupt (a chat or user record is "
                f"malformed: {exc!r})",
                hint=f"move {self._store.path} aside to start an empty tenant",
            ) from None
        directory.on_new_user = self.tenant.persist_user
        if self._store is not None and self._store.has_pending:
            self.tenant.compact()  # fold the journal of the last run into the snapshot

    def set_faults(self, faults: FaultsArg) -> None:
        """Replace the fault rules of a running emulator (e.g. to end a fault phase)."""
        self.api.faults.rules = normalize_faults(faults)

    def api_random(self, lo: float, hi: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(lo, hi)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        if self._httpd is not None or self._stopped.is_set():
            raise EmulatorError("this emulator was already started; make a new EmulatorServer")
        try:
            self._httpd = _HTTPServer((self.host, self.port), self)
        except OSError as exc:
            self.close()
            raise EmulatorError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # how soon stop() is noticed
            name=f"provision-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The Graph base URL, e.g. ``http://127.0.0.1:8765/v1.0``."""
        if self._httpd is None:
            raise EmulatorError("the emulator is not started")
        return f"http://{self.host}:{self.port}/v1.0"

    def stop(self) -> None:
        """Stop serving, hang up open connections, and write the final snapshot."""
        if self._httpd is not None and not self._stopped.is_set():
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        self.close()

    def close(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._store is not None:
            try:
                self.tenant.compact()
            finally:
                self._store.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``stop()`` (from another thread); True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def parse_latency(text: str) -> LatencyArg:
    """``N`` or ``LO-HI`` milliseconds (the ``--latency-ms`` option)."""
    lo, sep, hi = text.partition("-")
    try:
        return (float(lo), float(hi)) if sep else float(lo)
    except ValueError:
        raise EmulatorError(f"invalid latency {text!r}: expected N or LO-HI milliseconds") from None


def _parse_latency(value: LatencyArg) -> tuple[float, float] | None:
    lo, hi = (value, value) if isinstance(value, (int, float)) else value
    if not (0 <= lo <= hi):
        raise EmulatorError(f"invalid latency {value!r}: expected N or (LO, HI) milliseconds")
    return None if hi == 0 else (float(lo), float(hi))


@contextlib.contextmanager
def embedded(
    data_path: str | os.PathLike[str] = ".provision-emulator.json", **kw: Any
) -> Iterator[str]:
    """Run an emulator in this process for the duration of a block; yields its base URL.

    This is what ``plan``/``apply --emulator`` use: a free loopback port, the tenant kept in
    ``./.provision-emulator.json`` so consecutive runs see the same chats."""
    with EmulatorServer(data_path=Path(data_path), **kw) as server:
        yield server.url
