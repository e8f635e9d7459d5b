"""`provision doctor` (issue 25, item 7): read-only, one screen, exit 1 when a plan or apply
would fail. Tokens are unsigned JWTs with the claims Entra puts in an app-only token (tid,
appid, roles): the doctor reads them without calling Graph; the users are looked up in a
local emulator."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.states.lock import FileLock

TENANT = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"
ALL = ["Chat.Create", "Chat.ReadBasic.All", "ChatMember.ReadWrite.All", "User.Read.All"]
GROUP = """version: 1
chats:
  - key: launch
    chatType: group
    members:
      - user: megan.bowen@contoso.com
      - user: alex.wilber@contoso.com
"""


def token(roles: list[str], **claims: Any) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    body: dict[str, Any] = {
        "tid": TENANT,
        "appid": "11111111-2222-3333-4444-555555555555",
        "roles": roles,
    }
    body["exp"] = int(time.time()) + 3600
    return f"{part({'alg': 'none'})}.{part({**body, **claims})}.sig"


@pytest.fixture
def tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("PROVISION_", "AZURE_")):
            monkeypatch.delenv(name)
    (tmp_path / "chats.yaml").write_text(GROUP, encoding="utf-8")
    with EmulatorServer(limits="off", list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        yield tmp_path


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["doctor", *args])
    out, err = capsys.readouterr()
    return code, out + err


def test_everything_in_place_exits_0(
    capsys: pytest.CaptureFixture[str], tenant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", token(ALL))
    code, out = doctor(capsys, "chats.yaml")
    assert code == 0, out
    assert f"in tenant {TENANT}" in out and "app 11111111-2222-3333-4444-555555555555" in out
    assert "all 2 users found (2 by UPN)" in out and "the lock can be taken" in out
    assert "Ready" in out
    # Nothing was written: no state, no lock left behind.
    assert sorted(p.name for p in tenant.iterdir()) == ["chats.yaml"]


def test_a_token_without_chatmember_readwrite_says_so_and_exits_1(
    capsys: pytest.CaptureFixture[str], tenant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roles = [r for r in ALL if r != "ChatMember.ReadWrite.All"]
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", token(roles))
    code, out = doctor(capsys, "chats.yaml")
    assert code == 1, out
    assert "missing ChatMember.ReadWrite.All: keep the members of 1 group chat(s)" in out
    assert "FAIL  permissions" in out
    # A more privileged permission that Graph's page lists covers it.
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", token([*roles, "Chat.ReadWrite.All"]))
    assert doctor(capsys, "chats.yaml")[0] == 0


def test_every_problem_at_once(
    capsys: pytest.CaptureFixture[str], tenant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tenant / "chats.yaml").write_text(GROUP.replace("alex.wilber", "alex.wilbur"), "utf-8")
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", token(["Chat.Create"]))
    held = FileLock(str(tenant / "provision.state.json"))
    info = held.acquire("apply")
    try:
        code, out = doctor(capsys, "chats.yaml", "--format", "json")
    finally:
        held.release(info.id)
    assert code == 1
    report = json.loads(out[: out.rindex("}") + 1])
    main(["schema", "doctor"])
    jsonschema.validate(report, json.loads(capsys.readouterr().out))
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status == {
        "manifests": "ok",
        "state": "fail",
        "plan": "ok",
        "sign-in": "ok",
        "permissions": "fail",
        "users": "fail",
    }
    users = next(c for c in report["checks"] if c["name"] == "users")
    assert users["details"] == [
        "chats.yaml:7:9: user 'alex.wilbur@contoso.com' was not found in the directory"
    ]


def test_no_credentials_is_one_failed_check(
    capsys: pytest.CaptureFixture[str], tenant: Path
) -> None:
    code, out = doctor(capsys, "chats.yaml")
    assert code == 1
    assert "FAIL  sign-in" in out and "Traceback" not in out
