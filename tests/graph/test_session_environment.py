"""What the Graph client's HTTP session takes from the environment (graph/transport.py,
``_GraphSession``): the proxies and the CA bundle, as ``requests`` reads them but once per host,
and never ``~/.netrc``, whose entry would replace the bearer token."""

from __future__ import annotations

from pathlib import Path

import pytest
from lib.fs_helpers import NETRC_PASSWORD, netrc_with_default
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from provisioner.graph import transport
from provisioner.graph.client import GraphClient
from provisioner.graph.errors import GraphConnectionError
from provisioner.operations.clients import EmulatorToken

GRAPH = "https://graph.microsoft.com/v1.0/chats"


def settings(url: str = GRAPH) -> dict[str, object]:
    return dict(transport.new_session(4).merge_environment_settings(url, {}, None, None, None))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE", "NETRC"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_proxies_and_the_ca_bundle_come_from_the_environment(clean_env, tmp_path: Path) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    clean_env.setenv("HTTPS_PROXY", "http://proxy.contoso.com:3128")
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    got = settings()
    assert got["proxies"] == {"https": "http://proxy.contoso.com:3128"}  # as requests has it
    assert got["verify"] == str(bundle)
    clean_env.delenv("REQUESTS_CA_BUNDLE")
    clean_env.setenv("CURL_CA_BUNDLE", str(bundle))
    assert settings()["verify"] == str(bundle)


def test_no_proxy_is_honoured_per_host(clean_env) -> None:
    clean_env.setenv("HTTPS_PROXY", "http://proxy.contoso.com:3128")
    clean_env.setenv("NO_PROXY", "graph.microsoft.com,.contoso.com")
    assert "https" not in settings()["proxies"]  # type: ignore[operator]
    us = settings("https://graph.microsoft.us/v1.0/chats")["proxies"]
    assert us["https"] == "http://proxy.contoso.com:3128"  # type: ignore[index]


def test_the_environment_is_read_once_per_host(
    clean_env, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests scans every variable twice per request for proxies otherwise.
    calls: list[str] = []
    real = transport.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        calls.append(url)
        return real(url, no_proxy)

    monkeypatch.setattr(transport, "get_environ_proxies", counted)
    httpserver.expect_request("/v1.0/chats").respond_with_json({"value": []})
    client = GraphClient(httpserver.url_for("/v1.0"), EmulatorToken(), max_retries=0)
    for _ in range(20):
        client.request("GET", "/chats")
    assert len(calls) == 1


def test_a_netrc_entry_never_replaces_the_token(
    clean_env, httpserver: HTTPServer, tmp_path: Path
) -> None:
    # psf/requests#3929: with trust_env, a .netrc entry for the host (or its `default` entry)
    # replaces the Authorization header; the password went to Graph instead of the token.
    netrc_with_default(tmp_path, clean_env)
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("Authorization", ""))
        return Response('{"value": []}', status=200, content_type="application/json")

    httpserver.expect_request("/v1.0/chats").respond_with_handler(handler)
    client = GraphClient(httpserver.url_for("/v1.0"), EmulatorToken(), max_retries=0)
    client.request("GET", "/chats")
    assert seen and seen[0].startswith("Bearer ")
    assert not any(NETRC_PASSWORD in h or h.startswith("Basic ") for h in seen)


def test_requests_go_through_the_proxy_the_environment_names(clean_env) -> None:
    # A plain-http forward proxy on loopback: it is sent the absolute URI. With NO_PROXY
    # naming the host, the next client connects directly (nothing listens there).
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    seen: list[str] = []

    def proxy() -> None:
        conn, _ = listener.accept()
        with conn:
            seen.append(conn.recv(65536).decode("latin-1").split("\r\n")[0])
            body = b'{"value": []}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    graph = "http://127.0.0.1:9/v1.0"  # the discard port: nothing answers there directly

    def client() -> GraphClient:
        return GraphClient(graph, EmulatorToken(), max_retries=0, max_connect_retries=0)

    try:
        assert client().request("GET", "/chats").status == 200
        assert seen == ["GET http://127.0.0.1:9/v1.0/chats HTTP/1.1"]
        clean_env.setenv("NO_PROXY", "127.0.0.1")
        with pytest.raises(GraphConnectionError, match=r"cannot connect to 127\.0\.0\.1:9"):
            client().request("GET", "/chats")
        assert len(seen) == 1
    finally:
        listener.close()
        thread.join(timeout=5)
