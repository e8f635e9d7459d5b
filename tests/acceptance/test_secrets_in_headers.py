"""Secrets echoed in headers and answers (issue 20, item 7).

A server that quotes the request back in its response headers (``request-id``, any other) or
in an error put the bearer token into the default error output, ``--format json`` and log
lines; the managed identity's ``IDENTITY_HEADER`` was printed when echoed and sent on to
another host after a redirect; a federated assertion was only cut at 300 characters. Every
output form is checked here against a server that echoes everything.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from lib import cli
from lib.fs_helpers import netrc_with_default
from lib.tokens import b64
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from provisioner.errors import AuthError
from provisioner.signin.chooser import credential_from_env
from provisioner.states.local import LocalStateStore
from provisioner.states.records import ChatRecord, MemberRecord

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"


SIGNATURE = f"sig{uuid.uuid4().hex}{uuid.uuid4().hex}MUSTNOTLEAK"
TOKEN = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'tid': TENANT})}.{SIGNATURE}"
IDENTITY_HEADER = f"idh-{uuid.uuid4().hex}-MUSTNOTLEAK"

MANIFEST = f"""\
version: 1
chats:
  - key: team
    chatType: group
    topic: Team
    members:
      - user: {A}
      - user: {B}
"""


def assert_clean(where: str, text: str, *secrets: str) -> None:
    for secret in secrets or (TOKEN,):
        # The secret, and a long piece of its middle: a cut echo is a leak too.
        for piece in (secret, secret[len(secret) // 4 : -len(secret) // 4]):
            assert piece not in text, f"a secret leaked into {where}"


def echo_headers(request: Request) -> dict[str, str]:
    auth = request.headers.get("Authorization", "")
    return {"request-id": auth, "x-debug-echo": f"you sent {auth}", "Date": auth}


def echoing_graph(request: Request) -> Response:
    """Every answer echoes the Authorization header in three response headers; errors are
    403 (nothing is retried) with a clean body, so only the headers carry the token."""
    headers = echo_headers(request)
    error = {"error": {"code": "Forbidden", "message": "no", "innerError": {}}}
    if request.path.endswith("/$batch"):
        items = request.get_json()["requests"]
        answers = [{"id": i["id"], "status": 403, "headers": headers, "body": error} for i in items]
        return Response(json.dumps({"responses": answers}), 200, headers,
                        content_type="application/json")  # fmt: skip
    if request.method == "GET" and "/users/" in request.path and "/chats" not in request.path:
        user = request.path.rsplit("/", 1)[-1]
        body = {"id": user, "userPrincipalName": f"{user}@contoso.com"}
        return Response(json.dumps(body), 200, headers, content_type="application/json")
    if request.method == "GET" and request.path.endswith("/chats"):
        return Response('{"value": []}', 200, headers, content_type="application/json")
    return Response(json.dumps(error), 403, headers, content_type="application/json")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "PROVISION_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVISION_GRAPH_URL", httpserver.url_for("/v1.0"))
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", TOKEN)
    httpserver.expect_request(re.compile(".*")).respond_with_handler(echoing_graph)
    (tmp_path / "chats.yaml").write_text(MANIFEST)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code, out, err = cli.run(capsys, *args)
    return code, out + err


def files_text(directory: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in directory.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(
    "extra",
    [(), ("--format", "json"), ("--verbose",), ("--format", "json", "--verbose"), ("--debug",)],
    ids=["text", "json", "verbose-log", "json-verbose", "debug"],
)
def test_apply_against_a_server_echoing_the_token_in_headers_shows_it_nowhere(
    workdir: Path, extra: tuple[str, ...], capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="provision")
    debug = ["--debug"] if "--debug" in extra else []
    flags = [f for f in extra if f != "--debug"]
    code, output = run(capsys, *debug, "apply", "chats.yaml", "--auto-approve", *flags)
    assert code == 1, output
    assert "403" in output and "[redacted]" in output  # the request-id is shown, redacted
    assert_clean(f"apply {' '.join(extra)}", output + caplog.text + files_text(workdir))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_plan_refreshing_through_batch_against_an_echoing_server_shows_it_nowhere(
    workdir: Path, fmt: str, capsys: pytest.CaptureFixture[str], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="provision")
    store = LocalStateStore("provision.state.json")
    state = store.read()
    members = (MemberRecord(A, object_id=A), MemberRecord(B, object_id=B))
    state.put_chat("team", ChatRecord("19:team@thread.v2", "group", members, topic="Team"))
    store.write(state)
    code, output = run(capsys, "plan", "chats.yaml", "--format", fmt, "--out", "tfplan")
    assert code == 1 and "403" in output, output
    assert_clean(f"plan --format {fmt}", output + caplog.text + files_text(workdir))


# -- the managed identity's IDENTITY_HEADER -----------------------------------------------------


@pytest.fixture
def identity_env(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(name)
    # App Service's variables: MSAL reads them from the environment (os.environ).
    monkeypatch.setenv("IDENTITY_ENDPOINT", httpserver.url_for("/msi/token"))
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    return dict(os.environ)


def test_the_identity_header_is_never_sent_to_another_host_after_a_redirect(
    identity_env: dict[str, str], httpserver: HTTPServer
) -> None:
    other = HTTPServer(host="localhost", port=0)
    other.start()
    try:
        seen: list[dict[str, str]] = []

        def record(request: Request) -> Response:
            seen.append(dict(request.headers))
            body = {"access_token": "x" * 40, "expires_on": "9999999999", "token_type": "Bearer"}
            return Response(json.dumps(body), content_type="application/json")

        other.expect_request("/stolen").respond_with_handler(record)
        httpserver.expect_request("/msi/token").respond_with_data(
            "", status=307, headers={"Location": other.url_for("/stolen")}
        )
        credential = credential_from_env("managed-identity", "global", identity_env)
        with pytest.raises(AuthError) as err:
            credential.get_token()
        assert seen == [], "the request (and its X-IDENTITY-HEADER) reached the other host"
        assert_clean("a failed managed identity sign-in", str(err.value), IDENTITY_HEADER)
    finally:
        other.stop()


def test_an_echoed_identity_header_is_redacted(
    identity_env: dict[str, str], httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def echo(request: Request) -> Response:
        header = request.headers.get("X-IDENTITY-HEADER", "")
        # App Service's error shape (MSAL turns it into error_description).
        body = {"statusCode": 400, "message": f"bad X-IDENTITY-HEADER {header}"}
        return Response(json.dumps(body), status=400, content_type="application/json")

    httpserver.expect_request("/msi/token").respond_with_handler(echo)
    credential = credential_from_env("managed-identity", "global", identity_env)
    with pytest.raises(AuthError) as err:
        credential.get_token()
    assert "bad X-IDENTITY-HEADER" in str(err.value)  # the message is still shown...
    assert_clean("an echoed identity header", f"{err.value}\n{err.value!r}", IDENTITY_HEADER)


# -- a federated assertion, whole --------------------------------------------------------------


class EchoingLogin:
    """A login endpoint whose error quotes the client assertion it was sent."""

    host = "https://login.microsoftonline.com"

    def get(self, url: str, **kw: Any) -> Any:
        root = f"{self.host}/{TENANT}"
        doc = {"token_endpoint": f"{root}/oauth2/v2.0/token", "issuer": f"{root}/v2.0",
               "authorization_endpoint": f"{root}/oauth2/v2.0/authorize"}  # fmt: skip
        return Fake(200, json.dumps(doc))

    def post(self, url: str, data: Any = None, **kw: Any) -> Any:
        assertion = data.get("client_assertion", "") if isinstance(data, dict) else ""
        body = {"error": "invalid_client", "error_description": f"{assertion} rejected"}
        return Fake(401, json.dumps(body))


class Fake:
    def __init__(self, status: int, text: str) -> None:
        self.status_code, self.text = status, text
        self.headers: dict[str, str] = {}

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        pass


def test_an_echoed_federated_assertion_is_redacted_whole_and_the_hint_names_it(
    tmp_path: Path,
) -> None:
    assertion = f"{b64({'alg': 'RS256'})}.{b64({'sub': 'repo:x' * 60})}.{SIGNATURE}"
    assert len(assertion) > 400
    token_file = tmp_path / "token"
    token_file.write_text(assertion)
    environ = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT,
               "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}  # fmt: skip
    credential = credential_from_env(None, "global", environ, http_client=EchoingLogin())
    with pytest.raises(AuthError) as err:
        credential.get_token()
    text = f"{err.value}\n{err.value!r}"
    assert "[redacted]" in text
    assert_clean("an echoed assertion", text, assertion, assertion[:300], assertion[-120:])
    assert "AZURE_CLIENT_SECRET" not in text


# -- storage keys and SAS tokens -------------------------------------------------------------


def test_storage_keys_and_sas_signatures_are_redacted_wherever_they_appear() -> None:
    from provisioner.redact import redact
    from provisioner.states.azblob.conn import BlobLocation, connection_for

    sig = f"Sig{uuid.uuid4().hex}%2BMUSTNOTLEAK%3D"
    sas = f"sv=2022-11-02&ss=b&srt=o&sp=rw&sig={sig}"
    key = base64.b64encode(uuid.uuid4().bytes * 4).decode()
    location = BlobLocation("acct", "states", "prod.json")
    connection_for(location, None, {"AZURE_STORAGE_SAS_TOKEN": sas})
    connection_for(location, None, {"AZURE_STORAGE_KEY": key})
    echoed = f"403 for ?{sas} (signature {sig.replace('%2B', '+').replace('%3D', '=')}), key {key}"
    clean = redact(echoed)
    assert_clean("a storage error", clean, sas, key, "MUSTNOTLEAK")
    assert redact("a short word like emulator stays") == "a short word like emulator stays"


def test_a_success_that_echoes_the_token_in_its_body_stores_it_nowhere(
    workdir: Path, httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``import`` records what Graph answered (the topic): a topic quoting the request must
    not carry the token into the state file."""

    def chat(request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        body = {"id": "19:team@thread.v2", "chatType": "group", "topic": f"T {auth}",
                "tenantId": TENANT, "members": [
                    {"userId": A, "roles": ["owner"], "id": "m1"},
                    {"userId": B, "roles": ["owner"], "id": "m2"}]}  # fmt: skip
        return Response(json.dumps(body), 200, echo_headers(request),
                        content_type="application/json")  # fmt: skip

    httpserver.clear()
    httpserver.expect_request(re.compile("/v1.0/chats/.*")).respond_with_handler(chat)
    httpserver.expect_request(re.compile(".*")).respond_with_handler(echoing_graph)
    code, output = run(capsys, "import", "team", "19:team@thread.v2")
    assert code == 0, output
    assert_clean("import", output + files_text(workdir))


def test_sign_in_sessions_never_send_a_netrc_password(
    httpserver: HTTPServer, tmp_path, monkeypatch
) -> None:
    # psf/requests#3929: a session that trusts the environment adds the .netrc entry of the
    # host (or its `default` entry) as Basic credentials to every request it sends.
    from provisioner.signin.sessions import SameOriginSession

    netrc_with_default(tmp_path, monkeypatch)
    seen: list[str | None] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("Authorization"))
        return Response('{"access_token": "t"}', status=200, content_type="application/json")

    httpserver.expect_request("/token").respond_with_handler(handler)
    SameOriginSession().post(httpserver.url_for("/token"), data={"grant_type": "x"})
    assert seen == [None]


def test_sign_in_sessions_follow_redirects_within_their_origin_only(httpserver: HTTPServer) -> None:
    from provisioner.signin.sessions import SameOriginSession

    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("here")
    session = SameOriginSession()
    answer = session.get(httpserver.url_for("/a"), headers={"X-IDENTITY-HEADER": "h"})
    assert answer.status_code == 200 and answer.text == "here"
