"""Accidents and hostile servers (issue 15): each row of the issue's table, replayed as a new
user would, with the exit code and message expected now (the limits: ``test_limits.py``).

The emulator stands in for a tenant (two emulators for two tenants, tokens carrying ``tid``
as Entra's do); `hostile_server` answers what Graph never should (no chat id, redirects,
trickles, bombs, loops). Nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lib.hostile_server import HostileServer, hostile, send_json
from lib.tokens import tenant_token

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import FileLock

TENANT_A = "aaaaaaaa-0000-4000-8000-00000000000a"
TENANT_B = "bbbbbbbb-0000-4000-8000-00000000000b"
USERS = [str(uuid.UUID(int=0x2000 + n)) for n in range(6)]


def manifest(groups: int = 2) -> str:
    lines = ["version: 1", "chats:"]
    for n in range(groups):
        lines += [f"  - key: team-{n}", "    chatType: group", f"    topic: Team {n}"]
        lines += ["    members:", *(f"      - user: {u}" for u in USERS[n : n + 3])]
    return "\n".join(lines) + "\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "PROVISION_")):
            monkeypatch.delenv(name)
    (tmp_path / "chats.yaml").write_text(manifest())
    return tmp_path


@pytest.fixture
def tenants() -> Iterator[dict[str, EmulatorServer]]:
    # Made-up users, lists at once: these tests are about accidents, not Graph's directory or
    # listing lag (issue 14 tests those).
    servers = {
        t: EmulatorServer(limits="off", tenant_id=t, invent_users=True, list_delay_s=0).start()
        for t in (TENANT_A, TENANT_B)
    }
    yield servers
    for server in servers.values():
        server.stop()


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err and "internal error" not in err, err
        return code, out, err


def sign_in(
    monkeypatch: pytest.MonkeyPatch, server: EmulatorServer | HostileServer, tid: str
) -> None:
    monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", tenant_token(tid))


def chats_in(server: EmulatorServer) -> int:
    return len(server.tenant.chats(include_deleted=False))


# -- the table ----------------------------------------------------------------------------------


def test_a_state_of_tenant_a_used_in_tenant_b_stops_before_any_change(
    workdir: Path, tenants: dict[str, EmulatorServer], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = Run(capsys)
    a, b = tenants[TENANT_A], tenants[TENANT_B]
    sign_in(monkeypatch, a, TENANT_A)
    assert run("apply", "chats.yaml", "--auto-approve")[0] == 0
    state = LocalStateStore("provision.state.json").read()
    assert (state.tenant_id, state.cloud) == (TENANT_A, "local")
    before = Path("provision.state.json").read_bytes()

    sign_in(monkeypatch, b, TENANT_B)  # the same shell, signed in to another tenant
    for args in (
        ("plan", "chats.yaml"),
        ("apply", "chats.yaml", "--auto-approve"),
        ("import", "other", "19:another@thread.v2"),
        ("export", "--user", USERS[0], "--import-to-state", "--out", "x.yaml"),
    ):
        code, _, err = run(*args)
        assert code == 1, args
        assert TENANT_A in err and TENANT_B in err and "provision state unbind" in err, err
    assert chats_in(b) == 0 and chats_in(a) == 2
    assert Path("provision.state.json").read_bytes() == before

    # Another cloud, even offline: the plan's bodies would name the other cloud's Graph.
    code, _, err = run(
        "plan", "chats.yaml", "--no-refresh", "--graph-url", "https://graph.microsoft.us/v1.0"
    )
    assert code == 1 and "local cloud" in err and "usgov cloud" in err

    # Moving it on purpose: unbind, and the next run records the new tenant.
    assert run("state", "unbind")[0] == 0
    assert run("apply", "chats.yaml", "--auto-approve")[0] == 0
    assert LocalStateStore("provision.state.json").read().tenant_id == TENANT_B


def test_a_missing_state_with_its_backup_present_is_refused(
    workdir: Path, tenants: dict[str, EmulatorServer], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = Run(capsys)
    a = tenants[TENANT_A]
    sign_in(monkeypatch, a, TENANT_A)
    assert run("apply", "chats.yaml", "--auto-approve")[0] == 0
    assert run("state", "rm", "team-1")[0] == 0  # a second write: the backup exists
    backup = Path("provision.state.json.backup").read_bytes()
    os.unlink("provision.state.json")
    for args in (("plan", "chats.yaml"), ("apply", "chats.yaml", "--auto-approve")):
        code, _, err = run(*args)
        assert code == 1 and "is missing, but" in err, err
        assert "cp provision.state.json.backup provision.state.json" in err
    assert chats_in(a) == 2
    assert Path("provision.state.json.backup").read_bytes() == backup


def test_a_symlinked_state_is_written_through_and_locked_as_one(
    workdir: Path, tenants: dict[str, EmulatorServer], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = Run(capsys)
    sign_in(monkeypatch, tenants[TENANT_A], TENANT_A)
    Path("shared").mkdir()
    os.symlink("shared/team.state.json", "provision.state.json")
    lock = FileLock(os.path.realpath("shared/team.state.json"))
    held = lock.acquire("apply")  # a run through the real path
    code, _, err = run("apply", "chats.yaml", "--auto-approve")
    assert code == 1 and "locked by another run" in err and held.id in err
    lock.release(held.id)
    assert run("apply", "chats.yaml", "--auto-approve")[0] == 0
    assert Path("provision.state.json").is_symlink()
    assert len(LocalStateStore("shared/team.state.json").read().chats) == 2
    assert chats_in(tenants[TENANT_A]) == 2


HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from provisioner.states.lock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire("apply")
    # What a run in a container shows to the host: a pid from another namespace.
    with open(sys.argv[1] + ".lock", "r+") as f:
        info = json.load(f)
        info["pid"] = 4194303
        f.seek(0); f.truncate(); f.write(json.dumps(info))
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_a_live_lock_from_another_pid_namespace_is_never_taken_over(
    workdir: Path, tenants: dict[str, EmulatorServer], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = Run(capsys)
    sign_in(monkeypatch, tenants[TENANT_A], TENANT_A)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir / "provision.state.json")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, err = run("apply", "chats.yaml", "--auto-approve")
        assert code == 1 and "locked by another run" in err and "4194303" in err
        assert chats_in(tenants[TENANT_A]) == 0
    finally:
        holder.kill()
        holder.wait()
    assert run("apply", "chats.yaml", "--auto-approve")[0] == 0  # the kernel released it


def test_timeout_inf_is_refused_and_an_unexpected_error_after_a_post_keeps_the_intent(
    workdir: Path, tenants: dict[str, EmulatorServer], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = Run(capsys)
    a = tenants[TENANT_A]
    sign_in(monkeypatch, a, TENANT_A)
    for value in ("inf", "1e308", "nan"):
        code, _, err = run("apply", "chats.yaml", "--auto-approve", "--timeout", value)
        assert code == 1 and "--timeout" in err
    assert not Path("provision.state.json").exists() and chats_in(a) == 0

    real = GraphClient.create_chat

    def made_then_broke(self: GraphClient, body: Any, *, idempotent: bool) -> Any:
        real(self, body, idempotent=idempotent)  # Graph made the chat...
        raise OverflowError("int too large to convert to float")  # ...and then a bug

    monkeypatch.setattr(GraphClient, "create_chat", made_then_broke)
    code, out, err = run("apply", "chats.yaml", "--auto-approve")
    # The intent stayed and the chat was looked up: adopted, not cleared and made again.
    assert code == 0 and "0 created, 2 adopted" in out, out + err
    assert chats_in(a) == 2
    assert len(LocalStateStore("provision.state.json").read().chats) == 2
    monkeypatch.setattr(GraphClient, "create_chat", real)
    code, out, _ = run("plan", "chats.yaml", "--detailed-exitcode")
    assert code == 0 and chats_in(a) == 2


@pytest.mark.parametrize("target", ["chats.yaml", "provision.state.json"])
def test_plan_out_never_overwrites_a_manifest_or_the_state(
    workdir: Path, target: str, tenants: dict[str, EmulatorServer], monkeypatch, capsys
) -> None:
    run = Run(capsys)
    sign_in(monkeypatch, tenants[TENANT_A], TENANT_A)
    assert run("apply", "chats.yaml", "--auto-approve")[0] == 0
    before = {p: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
    code, _, err = run("plan", "chats.yaml", "--out", target)
    assert code == 1 and target in err
    assert {p: p.read_bytes() for p in workdir.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("answer", [{"id": None}, {"id": ""}, {"id": 42}, {}, ["x"]])
def test_a_201_without_a_usable_chat_id_is_never_recorded_as_created(
    workdir: Path, answer: object, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = Run(capsys)
    # This server never lists the chat: a short consistency window (same code path) keeps the
    # look-up from waiting the default 60 s.
    monkeypatch.setenv("PROVISION_CONSISTENCY_WINDOW", "0.3")
    with hostile() as server:
        server.on("POST", "/v1.0/chats", lambda h: send_json(h, 201, answer))
        server.on("GET", "/v1.0/users/", lambda h: send_json(h, 200, {"value": []}))
        sign_in(monkeypatch, server, TENANT_A)
        Path("chats.yaml").write_text(manifest(groups=1))
        code, out, err = run("apply", "chats.yaml", "--auto-approve")
        posts = server.posts("/v1.0/chats")
    assert code == 1, out + err
    state = LocalStateStore("provision.state.json").read()
    assert state.chats == {} and set(state.intents) == {"team-0"}  # settled by lookup later
    assert posts == 2  # looked up once, created once more, then stopped: no loop


def test_a_redirected_post_is_a_failure_and_nothing_goes_to_the_other_host(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run = Run(capsys)
    with hostile() as server, hostile() as elsewhere:
        elsewhere.on("POST", "/", lambda h: send_json(h, 201, {"id": "19:theirs@thread.v2"}))
        location = f"{elsewhere.origin}/v1.0/chats"
        server.on("POST", "/v1.0/chats", lambda h: send_json(h, 307, {}, Location=location))
        server.on("GET", "/v1.0/users/", lambda h: send_json(h, 200, {"value": []}))
        sign_in(monkeypatch, server, TENANT_A)
        Path("chats.yaml").write_text(manifest(groups=1))
        code, out, err = run("apply", "chats.yaml", "--auto-approve")
        assert elsewhere.requests == []
    assert code == 1 and "redirect" in out + err
    state = LocalStateStore("provision.state.json").read()
    assert state.chats == {}


class NotJsonLogin:
    """A token endpoint (or a proxy in its place) answering 200 with a page quoting the form."""

    def __init__(self) -> None:
        self.posts = 0

    def get(self, url: str, **kw: Any) -> Any:
        root = "https://login.microsoftonline.com/" + TENANT_A
        return _Fake(200, json.dumps({
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "issuer": f"{root}/v2.0",
        }))  # fmt: skip

    def post(self, url: str, data: Any = None, **kw: Any) -> Any:
        self.posts += 1
        return _Fake(200, f"<html>Signed in! You sent: {json.dumps(data)}</html>")


class _Fake:
    def __init__(self, status: int, text: str) -> None:
        self.status_code, self.text = status, text
        self.headers = {"Content-Type": "text/html"}

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        pass


def test_a_sign_in_answered_200_with_a_page_is_one_clear_line(
    workdir: Path, tenants: dict[str, EmulatorServer], monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    from provisioner.cli import options as cli_options

    secret = f"sec~{uuid.uuid4().hex}~DONOTSHOW"
    login = NotJsonLogin()
    real = cli_options.credential_from_env
    monkeypatch.setattr(
        cli_options, "credential_from_env", lambda *a, **k: real(*a, **{**k, "http_client": login})
    )
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT_A)
    monkeypatch.setenv("AZURE_CLIENT_ID", str(uuid.uuid4()))
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    monkeypatch.setenv("PROVISION_GRAPH_URL", tenants[TENANT_A].url)
    code = main(["apply", "chats.yaml", "--auto-approve"])
    out, err = capfd.readouterr()
    assert code == 1 and login.posts
    assert secret not in out + err and "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "could not get a token" in errors[0]
    assert chats_in(tenants[TENANT_A]) == 0
