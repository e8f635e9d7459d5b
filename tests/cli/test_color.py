"""Colour as other CLIs decide it (issue 25, item 4): --no-color (group or command, env
PROVISION_NO_COLOR), NO_COLOR, FORCE_COLOR, TERM=dumb, else a terminal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.cli.options import use_color

ANSI = re.compile(r"\x1b\[")
MANIFEST = """version: 1
chats:
  - key: launch
    chatType: group
    topic: Launch
    members:
      - user: 8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca
      - user: 3626a173-f2bc-4883-bcf7-01514c3bfb82
"""


@pytest.mark.parametrize(
    ("env", "tty", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # set but empty: not a request (no-color.org)
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "0"}, True, True),
        ({"FORCE_COLOR": "0"}, False, False),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),
        ({"TERM": "dumb"}, True, False),
        ({"TERM": "dumb", "FORCE_COLOR": "3"}, False, True),
    ],
)
def test_the_rules(env: dict[str, str], tty: bool, expected: bool) -> None:
    assert use_color(env, isatty=tty) is expected


@pytest.mark.parametrize(
    "args",
    [["--no-color", "plan"], ["plan", "--no-color"], ["plan"]],
)
def test_no_color_beats_force_color_on_the_group_or_the_command(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chats.yaml").write_text(MANIFEST, encoding="utf-8")
    for name in ("NO_COLOR", "PROVISION_NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    if args == ["plan"]:
        monkeypatch.setenv("PROVISION_NO_COLOR", "1")
    assert main([*args, "chats.yaml", "--no-refresh"]) == 0
    assert not ANSI.search(capsys.readouterr().out)
    monkeypatch.delenv("PROVISION_NO_COLOR", raising=False)
    assert main(["plan", "chats.yaml", "--no-refresh"]) == 0
    assert ANSI.search(capsys.readouterr().out)  # FORCE_COLOR alone: colour into a pipe
