"""Limits against a hostile or broken server, and absurd inputs (issue 15): each is cut off
or refused with a clear error, quickly and in little memory, never an internal error.

`hostile_server` answers on loopback what Graph never should: a trickle, a loop of
``@odata.nextLink``, a gzip bomb, 40 MB answers, ``$batch`` items that are not objects.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from lib import cli
from lib.hostile_server import HostileServer, gzip_bomb, hostile, huge, send_json, trickle
from lib.tokens import tenant_token

from provisioner.graph.client import GraphClient
from provisioner.graph.errors import AmbiguousOutcome, GraphError
from provisioner.signin.chooser import StaticToken
from provisioner.states.lock import new_lock_info

TENANT = "aaaaaaaa-0000-4000-8000-00000000000a"
USER = "00000000-0000-0000-0000-000000002000"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "PROVISION_")):
            monkeypatch.delenv(name)
    # The built-in emulator with made-up users (these tests are about limits, not directories).
    monkeypatch.setenv("PROVISION_EMULATOR_USERS", "invent")
    (tmp_path / "chats.yaml").write_text(
        f"version: 1\nchats:\n  - chatType: oneOnOne\n    members:\n      - user: {USER}\n"
        "      - user: 00000000-0000-0000-0000-000000002001\n"
    )
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code, out, err = cli.run(capsys, *args)
    assert "Traceback" not in err and "internal error" not in err, err
    return code, out, err


def client(server: HostileServer, **kw: Any) -> GraphClient:
    kw.setdefault("timeout", (1.0, 1.0))
    kw.setdefault("max_retries", 0)
    return GraphClient(server.url, StaticToken(tenant_token(TENANT)), sleep=lambda s: None, **kw)


def test_a_trickling_server_is_cut_off_at_the_total_deadline() -> None:
    with hostile() as server:
        server.on("GET", "/v1.0/chats/", trickle(every=0.2))
        started = time.monotonic()
        with pytest.raises(GraphError, match="no complete answer within 1s"):
            client(server).get_chat("19:a@thread.v2")
        assert time.monotonic() - started < 5  # was: forever (each byte reset the timeout)


def test_a_trickled_creation_is_ambiguous_not_lost() -> None:
    with hostile() as server:
        server.on("POST", "/v1.0/chats", trickle(every=0.2))
        with pytest.raises(AmbiguousOutcome, match="no complete answer"):
            client(server).create_chat({"chatType": "group"}, idempotent=False)


def test_a_next_link_to_itself_stops_paging() -> None:
    with hostile() as server:

        def loop(h: Any) -> None:
            send_json(
                h, 200, {"value": [{"id": "19:a"}], "@odata.nextLink": server.origin + h.path}
            )

        server.on("GET", "/v1.0/users/", loop)
        with pytest.raises(GraphError, match="repeats an earlier page"):
            list(client(server).list_user_chats(USER))
        assert len(server.requests) == 2


def test_a_next_link_to_another_host_is_refused() -> None:
    with hostile() as server:
        server.on("GET", "/v1.0/users/", lambda h: send_json(
            h, 200, {"value": [], "@odata.nextLink": "https://evil.example/v1.0/users/x/chats"}
        ))  # fmt: skip
        with pytest.raises(GraphError, match="another host"):
            list(client(server).list_user_chats(USER))


def test_a_gzip_bomb_is_cut_off() -> None:
    with hostile() as server:
        server.on("GET", "/v1.0/chats/", gzip_bomb(100 * 1024 * 1024))
        with pytest.raises(GraphError, match="answer larger than"):
            client(server).get_chat("19:a@thread.v2")


@pytest.mark.parametrize("declare", [True, False])
def test_a_huge_answer_never_reaches_the_state(declare: bool) -> None:
    with hostile() as server:
        server.on("POST", "/v1.0/chats", huge(40 * 1024 * 1024, declare))
        with pytest.raises(AmbiguousOutcome, match="answer larger than"):
            client(server, timeout=(5.0, 20.0)).create_chat({}, idempotent=False)


def test_batch_answers_with_non_object_items_are_errors_not_crashes() -> None:
    with hostile() as server:
        server.on("POST", "/v1.0/$batch", lambda h: send_json(
            h, 200, {"responses": [1, "x", None, {"id": "2", "status": "abc"}]}
        ))  # fmt: skip
        items = [{"id": str(n), "method": "GET", "url": f"/chats/19:{n}"} for n in range(3)]
        with pytest.raises(GraphError, match="no answer for request"):
            client(server).batch(items)


@pytest.mark.parametrize(
    "args",
    [
        ("--max-rps", "nan"),
        ("--max-rps", "inf"),
        ("--max-rps", "-1"),
        ("--timeout", "1e308"),
        ("--concurrency", "9" * 5000),
    ],
)
def test_absurd_flags_are_usage_errors(workdir: Path, args: tuple[str, str], capsys) -> None:
    code, _, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve", *args)
    assert code == 1 and args[0] in err
    assert not Path("provision.state.json").exists()


@pytest.mark.parametrize(
    "serial", ["7" * 5000, "NaN", "1e999", "-5", '1, "x": ' + "[" * 100_000 + "]" * 100_000]
)
def test_a_state_with_absurd_numbers_or_nesting_is_a_clear_error(
    workdir: Path, serial: str, capsys
) -> None:
    Path("provision.state.json").write_text(
        '{"format_version": 1, "lineage": "l", "chats": {}, "serial": ' + serial + "}"
    )
    for args in (("plan", "chats.yaml", "--no-refresh"), ("state", "list")):
        code, _, err = run(capsys, *args)
        assert code == 1 and "is corrupt" in err


def test_a_lock_with_a_huge_pid_left_behind_is_taken_over(workdir: Path, capsys) -> None:
    info = new_lock_info("apply", "provision.state.json")
    text = info.to_json().replace(f'"pid": {info.pid}', '"pid": ' + "9" * 400)
    Path("provision.state.json.lock").write_text(text)
    code, _, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")
    assert code == 0, err
