"""A small hostile (or broken) HTTP server on loopback, for the accident suite (issue 15).

Routes are ``(method, path prefix) -> handler``; a handler gets the request handler object and
writes whatever answer it likes (a trickle, a gzip bomb, a redirect, a 201 without an id...).
Every request is recorded (method, path, body) so a test can say what reached the server.
"""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class HostileServer:
    def __init__(self) -> None:
        self.routes: list[tuple[str, str, Handler]] = []
        self.requests: list[tuple[str, str, bytes]] = []
        server = self

        class _H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, body))
                for method, prefix, handler in server.routes:
                    if method == self.command and self.path.startswith(prefix):
                        handler(self)
                        return
                send_json(self, 404, {"error": {"code": "NotFound", "message": "no route"}})

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        # shutdown() waits for serve_forever's next poll: 20 ms, not the default 0.5 s per server
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/v1.0"

    def on(self, method: str, prefix: str, handler: Handler) -> None:
        self.routes.append((method, prefix, handler))

    def posts(self, prefix: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == "POST" and p.startswith(prefix))

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def hostile() -> Iterator[HostileServer]:
    server = HostileServer().start()
    try:
        yield server
    finally:
        server.stop()


def send_json(
    h: http.server.BaseHTTPRequestHandler, status: int, body: object, **headers: str
) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    h.end_headers()
    h.wfile.write(data)


def trickle(every: float, total: int = 10_000) -> Handler:
    """Headers at once, then one byte of body every ``every`` seconds."""

    def handler(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(total))
        h.end_headers()
        try:
            for _ in range(total):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(every)
        except OSError:
            pass

    return handler


def gzip_bomb(decompressed: int) -> Handler:
    """A small gzip body that expands to ``decompressed`` bytes."""
    blob = gzip.compress(b"0" * decompressed, compresslevel=9)

    def handler(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(blob)))
        h.end_headers()
        with suppress(OSError):
            h.wfile.write(blob)

    return handler


def huge(size: int, declare: bool) -> Handler:
    """A ``size``-byte JSON answer (a giant chat id), with or without Content-Length."""

    def handler(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(201)
        h.send_header("Content-Type", "application/json")
        if declare:
            h.send_header("Content-Length", str(size))
        else:
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        head, tail = b'{"id": "19:', b'@thread.v2"}'
        filler = size - len(head) - len(tail)
        parts = [head] + [b"x" * 65536] * (filler // 65536) + [b"x" * (filler % 65536), tail]
        try:
            for part in parts:
                if declare:
                    h.wfile.write(part)
                else:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            if not declare:
                h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

    return handler
