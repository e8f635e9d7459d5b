"""Security pass (issue 10): secrets never leak, our files are private, http only to loopback,
YAML tags never constructed.

Each test uses distinctive secrets and greps *everything* the run produced for them: stdout,
stderr, every log record at DEBUG (all loggers, not only ``provision.*``), every file written
in the working directory (state, its backup, plans, lock) and the text and repr of any error.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode

import pytest
import requests
from lib.tokens import b64
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.emulator.clock import ManualClock
from provisioner.errors import AuthError, InputError, ProvisionError
from provisioner.graph.client import GraphClient
from provisioner.graph.errors import GraphError
from provisioner.signin.chooser import StaticToken, credential_from_env, validate_graph_url
from provisioner.states.local import LocalStateStore

# Distinctive values: nothing else in a run could contain them by accident.
TOKEN = f"tok-{uuid.uuid4().hex}-MUSTNOTLEAK"
SECRET = f"sec~{uuid.uuid4().hex}~MUSTNOTLEAK"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
USERS = [str(uuid.UUID(int=0x5EC0 + n)) for n in range(6)]


def fragments(secret: str) -> list[str]:
    """The secret and a long piece of its middle, so a truncated echo is caught too."""
    return [secret, secret[4:-8]]


def assert_clean(where: str, text: str, *secrets: str) -> None:
    for secret in secrets or (TOKEN, SECRET):
        for piece in fragments(secret):
            assert piece not in text, f"a secret leaked into {where}"


def assert_files_clean(directory: Path, *secrets: str) -> list[Path]:
    files = [p for p in directory.rglob("*") if p.is_file()]
    for path in files:
        assert_clean(str(path), path.read_bytes().decode("utf-8", "replace"), *secrets)
    return files


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "PROVISION_")):
            monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG (provision.*, urllib3, msal, ...)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="provision")
    yield caplog


def manifest_text(groups: int = 2) -> str:
    lines = ["version: 1", "chats:"]
    for n in range(groups):
        lines += [f"  - key: team-{n}", "    chatType: group", f"    topic: Team {n}"]
        lines += ["    members:", *(f"      - user: {u}" for u in USERS[n : n + 3])]
    lines += ["  - chatType: oneOnOne", "    members:"]
    lines += [f"      - user: {USERS[0]}", f"      - user: {USERS[5]}"]
    return "\n".join(lines) + "\n"


# -- the Graph client: tokens in logs and errors -------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    # Its own clock: a token outlives its lifetime when the test says, not after a sleep.
    server = EmulatorServer(
        host="127.0.0.1",
        port=0,
        limits="off",
        invent_users=True,
        list_delay_s=0,
        faults=["429=0.2,method=GET", "503=0.2,method=GET", "504=0.2,method=GET"],
        seed=7,
        token_lifetime_s=0.3,
        fault_retry_after_s=0.01,
        clock=ManualClock(),
    ).start()
    try:
        yield server
    finally:
        server.stop()


class RotatingToken:
    """A refreshable credential (like the MSAL ones) handing out distinctive tokens."""

    description = "test tokens"

    def __init__(self) -> None:
        self.issued: list[str] = []

    def get_token(self) -> str:
        if not self.issued:
            self.issued.append(f"{TOKEN}-{len(self.issued)}")
        return self.issued[-1]

    def invalidate(self) -> None:
        self.issued.append(f"{TOKEN}-{len(self.issued)}")


def test_graph_client_never_logs_or_raises_a_token(
    emulator: EmulatorServer, all_logs: pytest.LogCaptureFixture
) -> None:
    """Throttling, 503/504 retries, token expiry (401 then refresh), 404 and 400: at DEBUG."""
    assert isinstance(emulator.clock, ManualClock)
    credential = RotatingToken()
    # rand=0: retries without Retry-After (504s) back off by 0 s, so the test stays quick
    client = GraphClient(emulator.url, credential, max_retries=20, rand=lambda: 0.0)
    errors: list[BaseException] = []
    for n in range(12):
        if n % 4 == 3:
            emulator.clock.advance(0.35)  # outlive the token's lifetime: 401, refresh, retry
        client.get_user(USERS[n % len(USERS)])
        for bad in (lambda: client.get_chat("19:nope@thread.v2"), lambda: client.get_user("")):
            try:
                bad()
            except ProvisionError as exc:
                errors.append(exc)
    assert len(credential.issued) >= 2, "the token lifetime should have forced a refresh"
    assert errors
    assert any(r.levelno == logging.DEBUG for r in all_logs.records)
    text = all_logs.text + "\n".join(f"{e}\n{e!r}" for e in errors)
    assert_clean("Graph client logs and errors", text)


def test_graph_error_that_echoes_the_authorization_header_is_redacted(
    httpserver: HTTPServer, all_logs: pytest.LogCaptureFixture
) -> None:
    """A proxy or gateway that quotes the request back must not put the token in our error."""

    def echo(request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        body = {"error": {"code": "BadRequest", "message": f"bad header {auth!r} rejected"}}
        return Response(json.dumps(body), status=400, content_type="application/json")

    httpserver.expect_request("/v1.0/users/x").respond_with_handler(echo)
    client = GraphClient(httpserver.url_for("/v1.0"), StaticToken(TOKEN))
    with pytest.raises(GraphError) as err:
        client.get_user("x")
    assert "rejected" in str(err.value)  # Graph's message is still shown...
    assert_clean("a Graph error", f"{err.value}\n{err.value!r}\n{all_logs.text}", TOKEN)


def test_graph_error_from_a_text_body_that_echoes_the_token_is_redacted(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/v1.0/users/x").respond_with_data(
        f"502 upstream: Authorization: Bearer {TOKEN}", status=418, content_type="text/plain"
    )
    client = GraphClient(httpserver.url_for("/v1.0"), StaticToken(TOKEN))
    with pytest.raises(GraphError) as err:
        client.get_user("x")
    assert_clean("a Graph error", f"{err.value}\n{err.value!r}", TOKEN)


def test_the_token_is_only_sent_to_the_graph_host(httpserver: HTTPServer) -> None:
    """A nextLink to another host is refused; a redirect elsewhere loses the header."""
    other = HTTPServer(host="localhost", port=0)
    other.start()
    try:
        seen: list[str] = []

        def record(request: Request) -> Response:
            seen.append(request.headers.get("Authorization", ""))
            return Response(json.dumps({"id": "x"}), content_type="application/json")

        other.expect_request("/v1.0/users/x").respond_with_handler(record)
        httpserver.expect_request("/v1.0/users/x").respond_with_data(
            "", status=302, headers={"Location": other.url_for("/v1.0/users/x")}
        )
        client = GraphClient(httpserver.url_for("/v1.0"), StaticToken(TOKEN))
        with pytest.raises(GraphError, match="redirect"):
            client.get_user("x")
        assert seen == []  # no redirect is followed (issue 15): nothing reaches the other host

        httpserver.expect_request("/v1.0/chats/a/members").respond_with_json(
            {"value": [], "@odata.nextLink": other.url_for("/v1.0/chats/a/members")}
        )
        with pytest.raises(GraphError) as err:
            client.list_members("a")
        assert "another host" in str(err.value)
        assert all(TOKEN not in header for header in seen)
    finally:
        other.stop()


# -- MSAL flows that fail and echo the secret ---------------------------------------------------


class EchoingLogin:
    """A login endpoint whose token answers quote the request (a broken proxy, a debug page).

    ``mode``: ``json`` (an OAuth error whose description contains the form), ``html`` (a 500
    page with the form in it, which MSAL cannot parse) or ``raise`` (a transport error whose
    text contains the form).
    """

    host = "https://login.microsoftonline.com"

    def __init__(self, mode: str) -> None:
        self.mode = mode  # json, html, raise, or form (the url-encoded body, quoted)
        self.posts: list[dict[str, str]] = []

    def get(self, url: str, params: Any = None, headers: Any = None, **kw: Any) -> FakeHTTP:
        root = f"{self.host}/{TENANT}"
        return FakeHTTP(
            200,
            json.dumps(
                {
                    "token_endpoint": f"{root}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                    "issuer": f"{root}/v2.0",
                }
            ),
        )

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kw: Any
    ) -> FakeHTTP:
        form = data if isinstance(data, dict) else {k: v[0] for k, v in parse_qs(data).items()}
        self.posts.append(form)
        quoted = urlencode(form) if self.mode == "form" else json.dumps(form)
        if self.mode == "raise":
            raise requests.ConnectionError(f"connection reset while sending {quoted}")
        if self.mode == "html":
            return FakeHTTP(500, f"<html><body>Internal error for {quoted}</body></html>")
        # 200 answers that are not token answers (a proxy's page, broken fields): issue 15.
        if self.mode == "html200":
            return FakeHTTP(200, f"<html><body>Welcome {quoted}</body></html>")
        if self.mode == "list200":
            return FakeHTTP(200, json.dumps([quoted]))
        if self.mode == "token-not-text":
            return FakeHTTP(200, json.dumps({"access_token": [quoted], "expires_in": 3600}))
        if self.mode == "huge-lifetime":
            return FakeHTTP(200, json.dumps({"access_token": "a.b.c", "expires_in": 10**400}))
        if self.mode == "nan-lifetime":
            return FakeHTTP(200, '{"access_token": "a.b.c", "expires_in": NaN}')
        return FakeHTTP(
            401,
            json.dumps(
                {
                    "error": "invalid_client",
                    "error_description": f"AADSTS7000215: Invalid client secret provided: "
                    f"{form.get('client_secret')}. Request: {quoted}",
                    "error_codes": [7000215],
                }
            ),
        )


class FakeHTTP:
    def __init__(self, status: int, text: str) -> None:
        self.status_code = status
        self.text = text
        self.headers = {"Content-Type": "application/json"}

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code} for {self.text}")


SECRET_ENV = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": SECRET}


@pytest.mark.parametrize(
    ("mode", "secret"),
    [
        ("json", SECRET),
        ("html", SECRET),
        ("raise", SECRET),
        ("form", SECRET),
        ("form", f"a+b/{uuid.uuid4().hex}=&c"),  # changes when url-encoded
        ("html200", SECRET),
        ("list200", SECRET),
        ("token-not-text", SECRET),
        ("huge-lifetime", SECRET),
        ("nan-lifetime", SECRET),
    ],
    # ids without the secret, which is random: the same ids in every run and every process
    ids=lambda value: "secret" if value == SECRET else "url-special" if "+" in value else value,
)
def test_failing_msal_flow_never_echoes_the_secret(
    mode: str,
    secret: str,
    all_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    login = EchoingLogin(mode)
    environ = {**SECRET_ENV, "AZURE_CLIENT_SECRET": secret}
    credential = credential_from_env(None, "global", environ, http_client=login)
    with pytest.raises(AuthError) as err:
        credential.get_token()
    assert login.posts and login.posts[0].get("client_secret") == secret  # it was really sent
    out, printed = capfd.readouterr()  # MSAL's own log records never reach a handler
    text = f"{err.value}\n{err.value!r}\n{credential!r}\n{all_logs.text}\n{out}{printed}"
    assert "Traceback" not in text
    assert len(str(err.value).splitlines()) <= 2  # one line, and its hint
    assert_clean(f"a failed sign-in ({mode})", text, secret)
    assert_clean(f"a failed sign-in ({mode})", text, quote_plus(secret))
    assert "could not get a token" in str(err.value) or "sign-in failed" in str(err.value)


def write_manifest(directory: Path, groups: int = 2) -> Path:
    path = directory / "chats.yaml"
    path.write_text(manifest_text(groups))
    return path


# -- errors never echo a secret from the environment --------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"PROVISION_ACCESS_TOKEN": f"Bearer {TOKEN} trailing"},  # spaces: unusable
        {"PROVISION_ACCESS_TOKEN": f"{TOKEN}\x07"},  # a control character
        # Values put in the wrong variable (a common paste mistake) are not echoed either.
        {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": SECRET, "AZURE_CLIENT_SECRET": SECRET},
        {"AZURE_TENANT_ID": f"{SECRET}/x", "AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": "s"},
        {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_SECRET": SECRET},
    ],
)
def test_credential_errors_do_not_echo_secrets(environ: dict[str, str]) -> None:
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", environ)
    assert_clean("a credential error", f"{err.value}\n{err.value!r}")


def test_expired_jwt_token_message_does_not_echo_it() -> None:

    token = f"{b64({'alg': 'RS256'})}.{b64({'exp': 1000, 'n': TOKEN})}.{SECRET}"
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", {"PROVISION_ACCESS_TOKEN": token})
    assert "expired" in str(err.value)
    assert_clean("an expired-token error", str(err.value), token, SECRET)


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{SECRET}@graph.microsoft.com/v1.0",
        f"http://user:{SECRET}@graph.example.com/v1.0",
        f"https://graph.microsoft.com/v1.0?access_token={TOKEN}",
        f"https://graph.microsoft.com/v1.0#{TOKEN}",
        f"ftp://user:{SECRET}@graph.example.com/",
    ],
    ids=["https-userinfo", "http-userinfo", "query-token", "fragment-token", "ftp-userinfo"],
)
def test_a_graph_url_with_credentials_is_refused_without_echoing_them(
    url: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InputError) as err:
        validate_graph_url(url)
    assert_clean("a Graph URL error", str(err.value))
    code = main(["plan", "--no-refresh", "--graph-url", url, str(write_manifest(workdir))])
    out, err_text = capsys.readouterr()
    assert code == 1 and "Graph URL" in err_text
    assert_clean("plan's output", out + err_text)


# -- http only for loopback ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://graph.microsoft.com/v1.0",
        "http://localhost.example.com/v1.0",  # not localhost
        "http://127.0.0.1.nip.io/v1.0",
        "http://2130706433/v1.0",  # 127.0.0.1 as an integer: resolvers differ, refuse
        "http://0x7f.1/v1.0",
        "http://10.0.0.1/v1.0",
        "http://[::ffff:8.8.8.8]/v1.0",
        "file:///etc/passwd",
        "http://[::1/v1.0",  # malformed: an input error, not a crash
        "http://127.0.0.1:99999/v1.0",
        "http://127.0.0.1:port/v1.0",
        "https://graph microsoft.com/v1.0",
        "graph.microsoft.com/v1.0",
    ],
)
def test_non_https_graph_urls_are_refused_except_loopback(url: str) -> None:
    with pytest.raises(InputError):
        validate_graph_url(url)
    with pytest.raises(InputError):
        GraphClient(url, StaticToken(TOKEN))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/v1.0",
        "http://127.5.6.7/v1.0",
        "http://[::1]:8765/v1.0",
        "http://localhost:8765/v1.0/",
        "HTTP://LOCALHOST/v1.0",
        "https://graph.microsoft.com/v1.0",
        "https://graph.microsoft.us/v1.0",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert validate_graph_url(url).rstrip("/") == validate_graph_url(url)


def test_plan_refuses_plain_http_to_a_remote_host(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISION_GRAPH_URL", "http://graph.microsoft.com/v1.0")
    code = main(["plan", "--no-refresh", str(write_manifest(workdir))])
    _, err = capsys.readouterr()
    assert code == 1 and "loopback" in err


# -- files we write are private ------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: whatever mode a file gets comes from provision, not from the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_plan_files_are_0600_and_hold_no_secret(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    open_umask: None,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", TOKEN)
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    manifest = write_manifest(workdir)
    plan_file = workdir / "out.plan"
    plan_file.write_text("old")
    plan_file.chmod(0o644)  # an existing world-readable file is replaced, not reused
    for debug in ([], ["--debug"]):
        code = main(
            [*debug, "plan", str(manifest), "--out", str(plan_file), "--format", "json", "--force"]
        )
        assert code == 0
        assert mode_of(plan_file) == 0o600
    out, err = capsys.readouterr()
    assert "create" in out
    assert_clean("plan output and logs", out + err + all_logs.text)
    assert_files_clean(workdir)


def test_state_backup_and_lock_files_are_0600(
    workdir: Path, capsys: pytest.CaptureFixture[str], open_umask: None
) -> None:
    from provisioner.states.records import ChatRecord, MemberRecord, State

    store = LocalStateStore(workdir / "s.json")
    state = State()
    for n in range(3):
        members = tuple(MemberRecord(user=u, role="owner") for u in USERS[n : n + 2])
        state.put_chat(f"k{n}", ChatRecord(chat_id=f"19:{n}@thread.v2", chat_type="group",
                                           topic=f"T{n}", members=members))  # fmt: skip
    store.write(state)
    assert mode_of(workdir / "s.json") == 0o600
    modes: list[int] = []
    with store.lock("test"):
        modes += [mode_of(p) for p in workdir.iterdir() if "lock" in p.name]
    assert modes and all(m == 0o600 for m in modes)
    code = main(["state", "rm", "k1", "--state", str(workdir / "s.json")])
    capsys.readouterr()
    assert code == 0
    files = sorted(p.name for p in workdir.iterdir())
    assert "s.json.backup" in files
    for name in files:
        assert mode_of(workdir / name) == 0o600, name


# -- YAML tags are never constructed ------------------------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch pwned']",
        "!!python/object/new:builtins.open ['pwned', 'w']",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!binary cHduZWQ=",
        "!!set {a, b}",
        "!custom pwned",
        "!<tag:example.com,2000:app/foo> pwned",
    ],
)
def test_yaml_tags_are_reported_never_constructed(
    tagged: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "tags.yaml"
    path.write_text(
        "version: 1\nchats:\n  - key: k\n    chatType: group\n"
        f"    topic: {tagged}\n    members:\n"
        f"      - user: {USERS[0]}\n      - user: {USERS[1]}\n"
    )
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "tags.yaml:5:" in out + err
    assert not (workdir / "pwned").exists()


def test_yaml_tag_on_the_document_and_in_keys(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "tags.yaml"
    path.write_text(
        "--- !!python/object/apply:os.system ['touch pwned']\n"
        "? !!python/object/apply:os.system ['touch pwned2']\n: 1\n"
    )
    code = main(["validate", str(path)])
    capsys.readouterr()
    assert code == 1
    assert not (workdir / "pwned").exists() and not (workdir / "pwned2").exists()


def test_alias_bomb_is_refused_quickly(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ "Billion laughs": nine levels of nine aliases would expand to 10^9 nodes."""
    import time

    lines = ["version: 1", 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for n in range(1, 10):
        lines.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    lines.append("chats: *a9")
    path = workdir / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    code = main(["validate", str(path)])
    capsys.readouterr()
    assert code == 1
    assert time.monotonic() - started < 10


# -- real commands against the emulator ----------------------------------------------------------


class Run:
    """Runs ``provision`` commands in-process, keeping everything they printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.output: list[str] = []

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        self.output += [out, err]
        return code, out, err

    @property
    def text(self) -> str:
        return "\n".join(self.output)


def setup_chats(url: str, count: int = 3) -> list[str]:
    """Chats made outside provision (with another token), to import and refresh."""
    client = GraphClient(url, StaticToken("setup-token"))
    ids = []
    for n in range(count):
        body = {
            "chatType": "group",
            "topic": f"Team {n}",
            "members": [
                {
                    "@odata.type": "#microsoft.graph.aadUserConversationMember",
                    "roles": ["owner"],
                    "user@odata.bind": f"{client.base_url}/users('{u}')",
                }
                for u in USERS[n : n + 3]
            ],
        }
        ids.append(str(client.create_chat(body, idempotent=False)["id"]))
    return ids


@pytest.fixture
def faulty_emulator(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """Throttling and 5xx on reads, so every retry path logs; the secrets in the environment."""
    server = EmulatorServer(
        host="127.0.0.1",
        port=0,
        limits="off",
        invent_users=True,
        list_delay_s=0,
        faults=["429=0.15,method=GET", "503=0.15,method=GET", "429=0.1,path=/$batch"],
        seed=3,
        fault_retry_after_s=0.01,
    ).start()
    monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", TOKEN)
    # A client secret in the environment too (the static token wins): it must not leak either.
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        server.stop()


def test_commands_never_show_the_token_or_secret(
    faulty_emulator: EmulatorServer,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    all_logs: pytest.LogCaptureFixture,
    open_umask: None,
) -> None:
    """import, plan (refresh, saved, every format), export, state: with and without --debug."""
    ids = setup_chats(faulty_emulator.url)
    write_manifest(workdir, groups=3)
    run = Run(capsys)
    for n, chat_id in enumerate(ids):
        debug = ["--debug"] if n % 2 else []
        code, _, err = run(*debug, "import", f"team-{n}", chat_id)
        assert code == 0, err
    for fmt in ("text", "json", "markdown"):
        code, _, err = run("--debug", "plan", "chats.yaml", "--format", fmt, "--out", "p.plan")
        assert code == 0, err
    code, out, err = run("plan", "chats.yaml", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["refreshed"] is True
    code, _, err = run("export", "--user", USERS[2], "--out", "export.yaml")
    assert code == 0, err
    for args in (["state", "list"], ["state", "show", "team-1"]):
        code, _, err = run(*args)
        assert code == 0, err
    files = assert_files_clean(workdir)
    assert {"provision.state.json", "p.plan", "export.yaml"} <= {p.name for p in files}
    for name in ("provision.state.json", "provision.state.json.backup", "p.plan"):
        assert mode_of(workdir / name) == 0o600, name
    assert any(r.name.startswith("provision.") for r in all_logs.records)
    assert_clean("command output and logs", run.text + all_logs.text)


def test_an_expired_static_token_is_reported_without_it(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    server = EmulatorServer(
        host="127.0.0.1", port=0, limits="off", token_lifetime_s=0.05, invent_users=True,
        clock=clock,
    )  # fmt: skip
    server.start()
    try:
        ids = setup_chats(server.url, 1)
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", TOKEN)
        run = Run(capsys)
        code, _, err = run("import", "team-0", ids[0])
        assert code == 0, err
        clock.advance(0.1)  # the token expires
        write_manifest(workdir, groups=1)
        code, _, err = run("--debug", "plan", "chats.yaml")
        assert code == 1 and "PROVISION_ACCESS_TOKEN" in err
        assert "internal error" not in err
        assert_clean("an expired-token run", run.text + all_logs.text)
        assert_files_clean(workdir)
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["json", "html", "raise", "form"])
def test_a_failing_sign_in_through_the_cli(
    mode: str,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    """`provision import`/`plan` with AZURE_CLIENT_SECRET, against a login that echoes it."""
    from provisioner.cli import options as cli_options

    real = cli_options.credential_from_env
    login = EchoingLogin(mode)

    def with_echoing_login(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **{**kwargs, "http_client": login})

    monkeypatch.setattr(cli_options, "credential_from_env", with_echoing_login)
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROVISION_GRAPH_URL", "http://127.0.0.1:9/v1.0")  # never reached
    run = Run(capsys)
    code, _, err = run("--debug", "import", "team-0", "19:abc@thread.v2")
    assert code == 1
    assert "sign-in failed (client secret" in err or "could not get a token (client secret" in err
    assert "internal error" not in err
    assert login.posts, "the sign-in was attempted"
    code, _, err = run("export", "--user", USERS[0])
    assert code == 1 and "internal error" not in err
    assert_clean("a failed sign-in", run.text + all_logs.text, SECRET)
    assert_files_clean(workdir, SECRET)


def test_apply_never_shows_the_token_or_secret(
    faulty_emulator: EmulatorServer,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    all_logs: pytest.LogCaptureFixture,
    open_umask: None,
) -> None:
    """apply from manifests (--verbose, --debug, JSON), then a saved plan, through throttling,
    503s and ambiguous 504s; the state, its backup and the plan stay 0600 and clean."""
    faulty_emulator.set_faults(
        ["429=0.1", "503=0.1", "504=0.2,method=POST,path=/chats,chat-type=group"]
    )
    write_manifest(workdir, groups=3)
    run = Run(capsys)
    code, out, err = run("--debug", "apply", "chats.yaml", "--auto-approve", "--verbose")
    assert code == 0, out + err
    (workdir / "chats.yaml").write_text(manifest_text(3).replace("Team 0", "Renamed 0"))
    code, _, err = run("plan", "chats.yaml", "--out", "p.plan")
    assert code == 0, err
    assert mode_of(workdir / "p.plan") == 0o600
    code, out, err = run("apply", "p.plan", "--format", "json")
    assert code == 0, out + err
    code, _, err = run("--debug", "plan", "chats.yaml", "--detailed-exitcode")
    assert code == 0, err
    for name in ("provision.state.json", "provision.state.json.backup", "p.plan"):
        assert mode_of(workdir / name) == 0o600, name
    assert any(
        r.levelno <= logging.INFO and r.name.startswith("provision.") for r in all_logs.records
    )
    assert_files_clean(workdir)
    assert_clean("apply output and logs", run.text + all_logs.text)


def test_apply_with_a_failing_sign_in(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    from provisioner.cli import options as cli_options

    real = cli_options.credential_from_env
    login = EchoingLogin("json")
    monkeypatch.setattr(
        cli_options,
        "credential_from_env",
        lambda *a, **k: real(*a, **{**k, "http_client": login}),
    )
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    server = EmulatorServer(host="127.0.0.1", port=0, limits="off", invent_users=True).start()
    try:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        write_manifest(workdir)
        run = Run(capsys)
        code, _, err = run("--debug", "apply", "chats.yaml", "--auto-approve", "--verbose")
        assert code == 1 and "internal error" not in err
        assert login.posts
        code, out, _ = run("apply", "chats.yaml", "--auto-approve", "--format", "json")
        assert code == 1
        assert "sign-in failed" in out or "sign-in failed" in run.text
    finally:
        server.stop()
    assert_clean("apply with a failed sign-in", run.text + all_logs.text, SECRET)
    assert_files_clean(workdir, SECRET)
