"""`provision apply` driven through ``cli.main`` against the in-process emulator (and HTTP
doubles for what the emulator does not do: 401/403 for everything, a server that never
answers)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from lib.cli import run
from pytest_httpserver import HTTPServer

from provisioner.cli import options as cli_options
from provisioner.emulator import EmulatorServer
from provisioner.operations import clients as operation_clients
from provisioner.operations.clients import EmulatorToken
from provisioner.states.local import LocalStateStore

USERS = [str(uuid.UUID(int=0x1000 + n)) for n in range(12)]


def manifest(groups: int = 2, pairs: int = 2, *, topic: str = "Team") -> str:
    lines = ["version: 1", "chats:"]
    for n in range(groups):
        members = [USERS[n % 12], USERS[(n + 1) % 12], USERS[(n + 2) % 12]]
        lines += [f"  - key: group-{n:03d}", "    chatType: group", f"    topic: {topic} {n}"]
        lines += ["    members:", *(f"      - user: {u}" for u in members)]
    made = 0
    for a in range(12):
        for b in range(a + 1, 12):
            if made == pairs:
                break
            lines += ["  - chatType: oneOnOne", "    members:"]
            lines += [f"      - user: {USERS[a]}", f"      - user: {USERS[b]}"]
            made += 1
    return "\n".join(lines) + "\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("PROVISION_STATE", "PROVISION_GRAPH_URL", "PROVISION_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # The built-in emulator (--emulator) with made-up users that lists at once: these tests
    # are about the CLI; the directory and the listing lag (issue 14) are tested apart.
    monkeypatch.setenv("PROVISION_EMULATOR_USERS", "invent")
    monkeypatch.setenv("PROVISION_EMULATOR_LIST_DELAY", "0")
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    (tmp_path / "chats.yaml").write_text(manifest())
    return tmp_path


SCHEMA = json.loads(
    resources.files("provisioner").joinpath("schemas/apply-result.schema.json").read_text()
)


def result_of(out: str) -> dict[str, Any]:
    doc = json.loads(out)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return doc


def emulator_chats() -> list[dict[str, Any]]:
    """The chats in ./.provision-emulator.json, from the emulator's side."""
    with EmulatorServer(
        data_path=".provision-emulator.json", limits="off", invent_users=True, list_delay_s=0
    ) as server:
        assert server.tenant.duplicate_group_chats() == []
        return [
            {"id": c.id, "topic": c.topic, "members": sorted(c.member_user_ids)}
            for c in server.tenant.chats(include_deleted=False)
        ]


def test_apply_then_apply_again_has_nothing_to_do(capsys, workdir: Path) -> None:
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")
    assert code == 0, err
    assert "Plan: 4 to create" in out
    assert "Apply complete: 4 created, 0 adopted" in out
    state = LocalStateStore("provision.state.json").read()
    assert len(state.chats) == 4 and state.intents == {}
    assert (os.stat("provision.state.json").st_mode & 0o777) == 0o600
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")
    assert code == 0, err
    assert out.strip() == "No changes. The chats match the manifest."
    assert LocalStateStore("provision.state.json").read().serial == state.serial
    chats = emulator_chats()
    assert len(chats) == 4
    assert {c["id"] for c in chats} == {r.chat_id for r in state.chats.values()}
    assert not os.path.exists("provision.state.json.lock")


def test_json_result_validates_against_the_shipped_schema(capsys, workdir: Path) -> None:
    args = ("apply", "chats.yaml", "--emulator", "--auto-approve", "--format", "json")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    doc = result_of(out)
    assert doc["status"] == "ok" and doc["summary"]["created"] == 4
    assert {o["action"] for o in doc["outcomes"]} == {"create"}
    assert all(o["chat_id"] and o["error"] is None for o in doc["outcomes"])
    assert doc["stats"]["requests"] >= 4 and doc["resume"] is None
    # Nothing to do is one object too.
    code, out, _ = run(capsys, *args)
    assert code == 0 and result_of(out)["outcomes"] == []
    top = Path(__file__).resolve().parents[2] / "schemas" / "apply-result.schema.json"
    assert json.loads(top.read_text()) == SCHEMA  # the mirror at the top level is the same


def test_saved_plan_is_applied_exactly_then_refused(capsys, workdir: Path) -> None:
    assert run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")[0] == 0
    Path("chats.yaml").write_text(manifest(groups=5))
    code, _, err = run(capsys, "plan", "chats.yaml", "--emulator", "--out", "p.plan")
    assert code == 0, err
    Path("chats.yaml").write_text(manifest(groups=9))  # changes after the plan do not count
    code, out, err = run(capsys, "apply", "p.plan", "--emulator")
    assert code == 0, err
    assert "Apply complete: 3 created" in out
    assert len(emulator_chats()) == 7
    code, _, err = run(capsys, "apply", "p.plan", "--emulator")
    assert code == 1 and "this plan was already applied" in err


def test_stale_plan_is_refused(capsys, workdir: Path) -> None:
    assert run(capsys, "plan", "chats.yaml", "--emulator", "--out", "p.plan")[0] == 0
    assert run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")[0] == 0
    code, _, err = run(capsys, "apply", "p.plan", "--emulator")
    assert code == 1
    assert "no state existed, but the state now exists" in err
    assert "plan again" in err


def test_without_a_terminal_apply_refuses_to_ask(
    capsys, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator")
    assert code == 1
    assert "Plan: 4 to create" in out  # shown, so a CI log says what was not applied
    assert "standard input is not a terminal" in err and "--auto-approve" in err
    assert not os.path.exists("provision.state.json")
    code, _, err = run(capsys, "apply", "chats.yaml", "--emulator", "--format", "json")
    assert code == 1 and "--auto-approve" in err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_only_yes_approves(
    capsys, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", FakeTerminal("no\n"))
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator")
    assert code == 1 and "cancelled" in err and "Only 'yes'" in out
    monkeypatch.setattr("sys.stdin", FakeTerminal("yes\n"))
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator")
    assert code == 0, err
    assert "Apply complete: 4 created" in out


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point apply at an emulator started here, with a static token."""
    servers: list[EmulatorServer] = []

    def start(**kw: Any) -> EmulatorServer:
        kw.setdefault("limits", "off")
        # These tests are about the CLI: made-up users, lists at once (the directory and the
        # listing lag of issue 14 have tests of their own).
        kw.setdefault("invent_users", True)
        kw.setdefault("list_delay_s", 0)
        server = EmulatorServer(**kw).start()
        servers.append(server)
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-1")
        return server

    yield start
    for server in servers:
        server.stop()
        assert server.tenant.counters.internal_errors_total == 0


def test_one_chats_400_fails_alone(capsys, workdir: Path, graph: Any) -> None:
    users = [{"id": u, "userPrincipalName": f"u{n}@contoso.com"} for n, u in enumerate(USERS)]
    users[3]["userType"] = "Guest"  # group-001 makes USERS[3] an owner: 400
    Path("users.json").write_text(json.dumps(users))
    server = graph(users="users.json")
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve", "--format", "json")
    assert code == 1, err
    doc = result_of(out)
    failed = {o["key"]: o for o in doc["outcomes"] if o["status"] == "failed"}
    assert set(failed) == {"group-001"}
    error = failed["group-001"]["error"]
    assert error["status"] == 400 and error["code"] == "BadRequest"
    assert "guest" in error["message"] and error["request_id"] and error["client_request_id"]
    assert doc["summary"]["created"] == 3 and doc["status"] == "failed"
    assert len(server.tenant.chats()) == 3
    code, out, _ = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 1 and "Failed:" in out and "group-001 (create): Graph 400 BadRequest" in out


def test_the_continue_hint_repeats_every_option_given(
    capsys, workdir: Path, graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 21: the hint was a hand-kept list that dropped --cloud, --auth, --lock-timeout and
    # --state-endpoint, so "run this to continue" ran against another cloud or sign-in.
    users = [{"id": u, "userPrincipalName": f"u{n}@contoso.com"} for n, u in enumerate(USERS)]
    users[3]["userType"] = "Guest"  # group-001 makes USERS[3] an owner: 400, the run fails
    Path("users.json").write_text(json.dumps(users))
    graph(users="users.json")
    monkeypatch.setenv("PROVISION_CONSISTENCY_WINDOW", "5")  # from the environment: not repeated
    given = [
        "--state", "my state.json", "--lock-timeout", "1m30s", "--cloud", "global",
        "--auth", "env", "--state-endpoint", "https://blobs.example.net", "--concurrency", "3",
        "--timeout", "45", "--no-refresh", "--format", "json", "--quiet", "--auto-approve",
        "--target", "group-*", "--target", "oneonone-*",
    ]  # fmt: skip
    code, out, err = run(capsys, "apply", "chats.yaml", *given)
    assert code == 1, err
    resume = result_of(out)["resume"]
    assert resume == (
        "provision apply chats.yaml --state 'my state.json' --state-endpoint "
        "https://blobs.example.net --lock-timeout 90s --target 'group-*' --target 'oneonone-*' "
        "--auto-approve --concurrency 3 "
        "--timeout 45 --no-refresh --format json --quiet --cloud global --auth env"
    )
    # What the hint says runs as it is.
    import shlex

    code, out, _ = run(capsys, *shlex.split(resume)[1:])
    assert result_of(out)["resume"] == resume


def graph_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "rid-1"}}}


# At Graph's 30 writes per second the first 403 is back before most creations are sent, which
# is what "stops early" means; at the suite's raised rates all 20 could be in flight by then.
@pytest.mark.documented_pace
def test_403_stops_early_and_names_the_permission(
    capsys, workdir: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("chats.yaml").write_text(manifest(groups=20, pairs=0))
    httpserver.expect_request("/v1.0/chats", method="POST").respond_with_json(
        graph_error(403, "Forbidden", "Missing role permissions on the request."), status=403
    )
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token")
    url = httpserver.url_for("/v1.0")
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve", "--graph-url", url)
    assert code == 1, err
    assert "Stopped early" in out and "Chat.Create" in out
    assert "not started" in out
    posts = [r for r, _ in httpserver.log if r.method == "POST"]
    assert 1 <= len(posts) <= 16  # the requests already in flight, not all 20
    assert LocalStateStore("provision.state.json").read().intents == {}


def test_401_stops_early(
    capsys, workdir: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/v1.0/chats", method="POST").respond_with_json(
        graph_error(401, "InvalidAuthenticationToken", "Access token is empty."), status=401
    )
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token")
    Path("chats.yaml").write_text(manifest(groups=20, pairs=0))
    url = httpserver.url_for("/v1.0")
    code, out, err = run(
        capsys, "apply", "chats.yaml", "--auto-approve", "--graph-url", url, "--format", "json",
        "--concurrency", "2",
    )  # fmt: skip
    assert code == 1, err
    doc = result_of(out)
    assert doc["stopped"]["reason"] in ("AuthError", "GraphAuthError")
    assert "PROVISION_ACCESS_TOKEN" in json.dumps(doc["stopped"])
    assert doc["summary"]["skipped"] >= 17
    assert len(httpserver.log) <= 4  # one 401, the retry with a "fresh" token, no more


def test_credentials_are_checked_before_planning(capsys, workdir: Path) -> None:
    Path("chats.yaml").write_text("version: 1\nchats: [oops\n")  # would be a validation error
    code, _, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 1
    assert "no Graph credentials found" in err and "PROVISION_ACCESS_TOKEN" in err


def test_a_plain_http_graph_url_is_refused(capsys, workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token")
    code, _, err = run(
        capsys, "apply", "chats.yaml", "--auto-approve", "--graph-url", "http://graph.example.com"
    )
    assert code == 1 and "https://" in err


def test_token_expiring_mid_run_is_refreshed(
    capsys, workdir: Path, graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("chats.yaml").write_text(manifest(groups=10, pairs=30))
    server = graph(token_lifetime_s=1.0, limits="documented")
    # A credential that can refresh (as MSAL does) gets a new token after the 401.
    monkeypatch.setattr(
        cli_options,
        "connection_from_options",
        lambda *a, **k: cli_options.Connection(server.url, "global", EmulatorToken()),
    )
    # 40 creations at 10 requests/s take ~4 s, so the 1 s token expires mid-run whatever the
    # pacer's start-of-run burst does (issue 26 made a free run finish within the second).
    args = ("apply", "chats.yaml", "--auto-approve", "--format", "json", "--max-rps", "10")
    code, out, _ = run(capsys, *args)
    assert code == 0, out
    doc = result_of(out)
    assert doc["summary"]["created"] == 40
    assert doc["stats"]["token_refreshes"] >= 1
    assert server.tenant.counters.unauthorized_total >= 1


def test_static_token_expiring_mid_run_stops_then_a_fresh_one_continues(
    capsys, workdir: Path, graph: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("chats.yaml").write_text(manifest(groups=10, pairs=30))
    server = graph(token_lifetime_s=1.5, limits="documented")
    args = ("apply", "chats.yaml", "--auto-approve", "--format", "json")
    code, out, err = run(capsys, *args, "--max-rps", "10")  # ~4 s: the token expires first
    assert code == 1, err
    doc = result_of(out)
    assert "PROVISION_ACCESS_TOKEN" in doc["stopped"]["error"]["message"]
    done = doc["summary"]["created"]
    assert 0 < done < 40
    assert len(LocalStateStore("provision.state.json").read().chats) == done
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-2")
    code, out, err = run(capsys, *args)  # the rest, at 30/s, within the new token's life
    assert code == 0, err
    assert len(server.tenant.chats()) == 40 and server.tenant.duplicate_group_chats() == []


def test_a_server_that_never_answers_times_out(
    capsys, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("chats.yaml").write_text(manifest(groups=1, pairs=1))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections are accepted by the kernel, never answered
    monkeypatch.setattr(operation_clients, "MAX_RETRIES", 1)
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token")
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1.0"
    started = time.monotonic()
    try:
        code, out, err = run(
            capsys, "apply", "chats.yaml", "--auto-approve", "--graph-url", url,
            "--timeout", "0.3", "--format", "json",
        )  # fmt: skip
    finally:
        silent.close()
    assert time.monotonic() - started < 30
    assert code == 1, err
    doc = result_of(out)
    assert doc["summary"]["failed"] == 2
    # The read timeout and the total deadline (issue 15) are the same 0.3 s here.
    assert all(
        "read timeout" in o["error"]["message"] or "no complete answer" in o["error"]["message"]
        for o in doc["outcomes"]
    )
    # The group creation may have reached Graph: its journal entry stays for the next run.
    assert set(LocalStateStore("provision.state.json").read().intents) == {"group-000"}


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_and_the_same_command_continues(
    capsys, workdir: Path, signame: str
) -> None:
    Path("chats.yaml").write_text(manifest(groups=10, pairs=30))
    args = ("apply", "chats.yaml", "--emulator", "--auto-approve", "--max-rps", "10")
    sig = getattr(signal, signame)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), sig))
    timer.start()
    try:
        code, out, err = run(capsys, *args)
    finally:
        timer.cancel()
    assert code == {"SIGINT": 130, "SIGTERM": 143}[signame], err
    assert f"Apply interrupted ({signame})" in out
    resume = "provision apply chats.yaml --auto-approve --max-rps 10 --emulator"
    assert f"To continue, run: {resume}" in out
    assert f"{signame}: stopping" in err
    state = LocalStateStore("provision.state.json").read()
    assert 0 < len(state.chats) < 40
    assert not os.path.exists("provision.state.json.lock")
    code, out, err = run(capsys, *args[:-2])  # the rest at full speed
    assert code == 0, err
    assert len(emulator_chats()) == 40


def test_manifest_changes_are_applied_in_place(capsys, workdir: Path) -> None:
    assert run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")[0] == 0
    chat_id = LocalStateStore("provision.state.json").read().chats["group-000"].chat_id
    text = Path("chats.yaml").read_text()
    # group-000: a new topic and USERS[5] joins. (One member change: Graph allows 4 per minute
    # per chat, so more would take minutes here; test_apply.py covers removals and roles.)
    text = text.replace("topic: Team 0", "topic: Renamed 0")
    old_members = "\n".join(f"      - user: {USERS[n]}" for n in (0, 1, 2))
    assert old_members in text
    Path("chats.yaml").write_text(
        text.replace(old_members, f"{old_members}\n      - user: {USERS[5]}", 1)
    )
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve", "--verbose")
    assert code == 0, err
    assert (
        "Plan: 0 to create, 1 to update, 0 to delete, "
        "0 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes."
    ) in out
    assert "Apply complete: 0 created, 0 adopted, 1 updated" in out
    assert f"  ~ group-000 updated ({chat_id})" in err  # --verbose: a line per chat
    with EmulatorServer(
        data_path=".provision-emulator.json", limits="off", invent_users=True, list_delay_s=0
    ) as server:
        chat = server.tenant.chat(chat_id)
        assert chat is not None and chat.topic == "Renamed 0"
        roles = {m.user_id: m.roles[0] for m in chat.members}
    assert roles == dict.fromkeys((USERS[0], USERS[1], USERS[2], USERS[5]), "owner")
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve", "--quiet")
    assert code == 0 and "No changes." in out
    assert "apply:" not in err  # --quiet: no progress lines


def test_progress_lines_when_not_on_a_terminal(capsys, workdir: Path) -> None:
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("apply: ")]
    # Four creations: four requests; the last line is the whole run, as the report says.
    assert lines and lines[-1].startswith("apply: 4/4 requests, 4/4 chats, ")
    assert lines[-1].endswith(" 0 throttled")
    assert "4/4 planned requests done;" in out
    assert "0 throttled and retried" in out


def test_an_unreachable_graph_stops_the_run_early(
    capsys, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("chats.yaml").write_text(manifest(groups=10, pairs=10))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connections are refused
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token")
    url = f"http://127.0.0.1:{port}/v1.0"
    code, out, err = run(
        capsys, "apply", "chats.yaml", "--auto-approve", "--graph-url", url, "--concurrency", "2"
    )
    assert code == 1, err
    assert f"Stopped early: Graph request on POST /chats: cannot connect to 127.0.0.1:{port}" in out
    assert "check the Graph URL, DNS and network access" in out
    assert "Left undone: 19 not started." in out or "Left undone: 18 not started." in out
    assert LocalStateStore("provision.state.json").read().intents == {}  # nothing was sent


def test_progress_lines_say_what_chats_wait_for() -> None:
    from provisioner.apply.control import Progress
    from provisioner.cli.progress import _waiting

    what = "Graph to list the chat an unknown creation may have made"
    p = Progress(5, 1, 0, 2, 3.0, 10, 0, waiting=tuple((k, what) for k in "abcde"))
    assert _waiting(p) == f"; 5 waiting for {what}: a, b, c and 2 more"
    assert _waiting(Progress(5, 5, 0, 0, 3.0, 10, 0)) == ""
