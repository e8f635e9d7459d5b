"""`plan --no-refresh --check-users` (issue 25, item 2): a pull request's plan that reads no
chat and takes no lock still fails on a user the directory does not know, at file:line:col,
instead of the apply after the merge failing half-way."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer

MANIFEST = """version: 1
chats:
  - key: launch
    chatType: group
    members:
      - user: megan.bowen@contoso.com
      - user: {second}
"""


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("PROVISION_", "AZURE_")):
            monkeypatch.delenv(name)
    with EmulatorServer(limits="off", list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-1")
        yield server


@pytest.mark.parametrize("flag", [["--check-users"], []])
def test_a_mistyped_user_fails_the_plan_without_refresh(
    capsys: pytest.CaptureFixture[str],
    graph: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: list[str],
) -> None:
    (tmp_path / "chats.yaml").write_text(MANIFEST.format(second="alex.wilbur@contoso.com"))
    if not flag:
        monkeypatch.setenv("PROVISION_CHECK_USERS", "1")
    code = main(["plan", "chats.yaml", "--no-refresh", "--format", "json", *flag])
    out, err = capsys.readouterr()
    assert code == 1
    assert "chats.yaml:7:9: error: user 'alex.wilbur@contoso.com' was not found" in err
    assert json.loads(out)["error"]["diagnostics"][0]["line"] == 7
    assert not (tmp_path / "provision.state.json.lock").exists()


def test_known_users_plan_as_before(
    capsys: pytest.CaptureFixture[str], graph: EmulatorServer, tmp_path: Path
) -> None:
    (tmp_path / "chats.yaml").write_text(MANIFEST.format(second="alex.wilber@contoso.com"))
    code = main(["plan", "chats.yaml", "--no-refresh", "--check-users", "--detailed-exitcode"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Plan: 1 to create" in out
    # Without the flag a plan without refresh sends nothing (the behaviour before).
    before = graph.tenant.counters.requests_total
    assert main(["plan", "chats.yaml", "--no-refresh"]) == 0
    capsys.readouterr()
    assert graph.tenant.counters.requests_total == before
