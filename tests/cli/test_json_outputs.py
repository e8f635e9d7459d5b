"""Every JSON document the CLI prints validates against the schema `provision schema NAME`
prints for it (issue 25, item 4): scripts can trust `--format json`.

One walk through a chat's life on a local emulator: validate (valid and not), plan, apply, a
member added (the plan then carries the change still settling in Graph's lists), refresh-only,
a saved plan shown again, state list and show, and errors under `--format json` (usage, bad
manifests, state). `doctor --format json` is checked in test_doctor.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"
GROUP = (
    "version: 1\nchats:\n  - key: launch\n    chatType: group\n    topic: Launch\n    members:\n"
)


def members(*users: str) -> str:
    return "".join(f"      - user: {u}\n" for u in users)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("PROVISION_", "AZURE_")):
            monkeypatch.delenv(name)
    with EmulatorServer(limits="off", invent_users=True, list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-1")
        yield tmp_path


def schema(capsys: pytest.CaptureFixture[str], name: str) -> dict[str, Any]:
    assert main(["schema", name]) == 0
    return dict(json.loads(capsys.readouterr().out))


def checked(
    capsys: pytest.CaptureFixture[str], name: str, *args: str, code: int = 0
) -> dict[str, Any]:
    """Run the command; its standard output must be one JSON document valid against the
    schema NAME."""
    got = main(list(args))
    out, err = capsys.readouterr()
    assert got == code, out + err
    document = json.loads(out)
    validator = jsonschema.Draft202012Validator(schema(capsys, name))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == [], errors
    return dict(document)


def test_every_json_output_validates(capsys: pytest.CaptureFixture[str], world: Path) -> None:
    chats = world / "chats.yaml"
    chats.write_text(GROUP + members(A, B), encoding="utf-8")
    checked(capsys, "validate", "validate", str(chats), "--format", "json")
    plan = checked(capsys, "plan", "plan", str(chats), "--format", "json")
    assert plan["summary"]["create"] == 1
    checked(capsys, "apply-result", "apply", str(chats), "--auto-approve", "--format", "json")
    # A member added: the state records it as settling (Graph's lists lag behind), and the
    # plan made right after shows the record with it.
    chats.write_text(GROUP + members(A, B, C), encoding="utf-8")
    checked(capsys, "apply-result", "apply", str(chats), "--auto-approve", "--format", "json")
    plan = checked(capsys, "plan", "plan", str(chats), "--format", "json", "--refresh")
    assert '"settling"' in json.dumps(plan["changes"]), plan["changes"]
    checked(capsys, "plan", "plan", str(chats), "--refresh-only", "--format", "json")
    assert main(["plan", str(chats), "--out", "saved.plan"]) == 0
    capsys.readouterr()
    checked(capsys, "plan", "show", "saved.plan", "--format", "json")
    listed = checked(capsys, "state-list", "state", "list", "--format", "json")
    assert [c["key"] for c in listed["chats"]] == ["launch"]
    shown = checked(capsys, "state-show", "state", "show", "launch", "--format", "json")
    assert shown["chat"]["settling"]


def test_errors_under_format_json_are_json(capsys: pytest.CaptureFixture[str], world: Path) -> None:
    bad = world / "bad.yaml"
    bad.write_text("version: 1\nchats:\n  - key: X\n", encoding="utf-8")
    invalid = checked(capsys, "validate", "validate", str(bad), "--format", "json", code=1)
    assert not invalid["valid"] and invalid["summary"]["errors"] == 3
    failed = checked(capsys, "error", "plan", str(bad), "--format", "json", code=1)
    assert failed["error"]["kind"] == "validation"
    assert [d["line"] for d in failed["error"]["diagnostics"]] == [3, 3, 3]
    usage = checked(capsys, "error", "plan", str(bad), "--format", "json", "--bogus", code=1)
    assert usage["error"]["kind"] == "usage" and "--bogus" in usage["error"]["message"]
    missing = checked(capsys, "error", "state", "show", "nope", "--format", "json", code=1)
    assert "nope" in missing["error"]["message"]
    # Text stays text.
    assert main(["plan", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "bad.yaml:3:5: error" in err


def test_a_json_error_is_redacted_as_the_text_one(
    capsys: pytest.CaptureFixture[str], world: Path
) -> None:
    from provisioner.errors import StateError
    from provisioner.redact import MARK, remember

    secret = "s3cr3t-token-value-0123456789"
    remember(secret)
    bad = world / "bad.yaml"
    bad.write_text("version: 1\nchats: []\n", encoding="utf-8")
    (world / "provision.state.json").write_text("{", encoding="utf-8")

    def leaky(*args: object, **kwargs: object) -> None:
        error = StateError("the store refused")
        error.hint = f"it said {secret}"  # added after construction, as locked() adds hints
        raise error

    import provisioner.states.store as store

    original = store.open_store
    store.open_store = leaky  # type: ignore[assignment]
    try:
        code = main(["plan", str(bad), "--format", "json"])
    finally:
        store.open_store = original
    out, err = capsys.readouterr()
    assert code == 1
    assert secret not in out and secret not in err
    assert MARK in json.loads(out)["error"]["hint"]
