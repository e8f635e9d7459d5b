"""The HTTP side of the emulator: stdlib ``http.server`` speaking HTTP/1.1 with keep-alive.

Bad input never stops the server: oversize bodies (413), bodies without a length (411),
wrong content types (415), malformed JSON (400), unparsable request lines (400) get
Graph-shaped answers; a client hanging up mid-request gets nothing and is not an error; an
unexpected exception becomes a Graph-shaped 500, counted in
``counters.internal_errors_total``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from provisioner.emulator.errors import GraphError, bad_request
from provisioner.emulator.messages import Request, Response, error_response
from provisioner.emulator.protocol import Host

VERSIONS = ("/v1.0", "/beta")
BODY_METHODS = ("POST", "PATCH", "PUT")


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: Host) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body go out in two writes
    timeout = 120  # idle keep-alive connections are closed after this
    server: HTTPServer

    def version_string(self) -> str:
        return "provision-emulator"

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header on the tenant's clock, as createdDateTime is (the client reads
        # Graph's time from it: graph/clock.py).
        now = self.server.owner.api.tenant.now() if timestamp is None else timestamp
        return super().date_time_string(now)

    def setup(self) -> None:
        super().setup()
        self.server.owner.api.tenant.count("connections_total")
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

    def _respond(self, owner: Host, req: Request, version: str | None) -> Response:
        api = owner.api
        raw = self._read_body(owner, req)
        if isinstance(raw, Response):
            return raw
        if version is None:
            return error_response(
                req, GraphError(404, "NotFound", "Unknown API version; use /v1.0 (or /beta).")
            )
        auth_error = api.authenticate(req.headers.get("authorization"))
        if auth_error is not None:
            api.tenant.count("unauthorized_total")
            return error_response(req, auth_error)
        if req.method in BODY_METHODS and raw:
            _parse_body(req, raw)
        if owner.latency is not None:
            lo, hi = owner.latency
            owner.clock.sleep((lo if lo == hi else owner.latency_sample(lo, hi)) / 1000)
        return api.handle_top(req)

    def _read_body(self, owner: Host, req: Request) -> bytes | Response:
        """The request body, or the answer to a body that cannot be read."""
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
        return raw

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


UNREADABLE = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and "
    "payload is of valid JSON format."
)


def _parse_body(req: Request, raw: bytes) -> None:
    """Set ``req.body`` from a JSON body, or ``req.body_error`` to the answer Graph gives."""
    ctype = req.headers.get("content-type")
    if ctype is None:
        req.body_error = bad_request(UNREADABLE)
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
            req.body_error = bad_request(UNREADABLE)
