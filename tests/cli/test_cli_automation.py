"""The automation details of issue 17: `state list|show --format json`, `--lock-timeout` on
every command that takes the state's lock, `--emulator` on `import` and `export`, the plan
schema through `provision schema plan`, and Azure Identity's chain only with `--debug`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from lib.cli import run

from provisioner.cli.options import parse_duration
from provisioner.errors import AuthError
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import FileLock, LockInfo
from provisioner.states.records import ChatRecord, Intent, MemberRecord

ROOT = Path(__file__).resolve().parents[2]
A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    path = tmp_path / "provision.state.json"
    store = LocalStateStore(path)
    state = store.read()
    state.put_chat(
        "project-x",
        ChatRecord(
            "19:px@thread.v2",
            "group",
            (MemberRecord(A, object_id=A, membership_id="m1"), MemberRecord(B, role="guest")),
            topic="Project X",
        ),
    )
    state.protected.add("project-x")
    state.put_intent(
        Intent("pending", "group", (MemberRecord(A),), "att-1", "2024-05-01T10:00:00Z", "P")
    )
    store.write(state)
    return path


# --- state list / show --format json ---


def test_state_list_json(capsys: pytest.CaptureFixture[str], state_file: Path) -> None:
    code, out, _ = run(capsys, "state", "list", "--state", str(state_file), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["format_version"] == 1 and doc["exists"] is True and doc["serial"] == 1
    assert doc["chats"] == [
        {
            "key": "pending",
            "chat_type": "group",
            "chat_id": None,
            "pending": True,
            "protected": False,
        },
        {
            "key": "project-x",
            "chat_type": "group",
            "chat_id": "19:px@thread.v2",
            "pending": False,
            "protected": True,
        },
    ]


def test_state_list_json_without_a_state(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "state", "list", "--state", str(tmp_path / "none.json"), "--format", "json"
    )
    assert code == 0 and err == ""
    assert json.loads(out)["chats"] == [] and json.loads(out)["exists"] is False


def test_state_show_json(capsys: pytest.CaptureFixture[str], state_file: Path) -> None:
    code, out, _ = run(
        capsys, "state", "show", "project-x", "--state", str(state_file), "--format", "json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["key"] == "project-x" and doc["protected"] is True and doc["pending"] is None
    assert doc["chat"]["topic"] == "Project X"
    assert doc["chat"]["members"][1] == {"user": B, "role": "guest"}
    code, out, _ = run(
        capsys, "state", "show", "pending", "--state", str(state_file), "--format", "json"
    )
    assert json.loads(out)["pending"]["attempt_id"] == "att-1"
    code, out, err = run(
        capsys, "state", "show", "nope", "--state", str(state_file), "--format", "json"
    )
    # The error comes as text on stderr and, asked for JSON, as JSON on stdout (issue 25).
    assert code == 1 and "no chat with key 'nope'" in err
    assert json.loads(out)["error"]["kind"] == "state"


# --- --lock-timeout ---


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("0", 0), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1.5s", 1.5),
     ("500ms", 0.5), ("90", 90), ("24h", 86400)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-1s", "25h", "1h 30m", "s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "command",
    [["plan", "x"], ["apply", "x"], ["import", "k", "c"], ["export"], ["state", "rm"],
     ["state", "unbind"]],
)  # fmt: skip
def test_every_command_that_locks_takes_lock_timeout(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "--lock-timeout DURATION" in out


def test_a_bad_lock_timeout_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], state_file: Path
) -> None:
    code, _, err = run(capsys, "state", "rm", "pending", "--state", str(state_file),
                       "--lock-timeout", "soon")  # fmt: skip
    assert code == 1 and "'soon' is not a duration" in err


def test_state_rm_waits_for_the_lock(
    capsys: pytest.CaptureFixture[str], state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = LocalStateStore(state_file)
    held, refused, released = threading.Event(), threading.Event(), threading.Event()
    try_acquire = FileLock._try_acquire

    def observed(self: FileLock, info: LockInfo) -> LockInfo | None:
        got = try_acquire(self, info)
        if got is None:
            refused.set()  # `state rm` found the lock taken and waits
        return got

    monkeypatch.setattr(FileLock, "_try_acquire", observed)

    def hold() -> None:
        with holder.lock("apply"):
            held.set()
            refused.wait(10)
        released.set()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    code, out, err = run(capsys, "state", "rm", "pending", "--state", str(state_file),
                         "--lock-timeout", "30s")  # fmt: skip
    thread.join()
    assert released.is_set()
    assert code == 0, err
    assert "Removed pending" in out


def test_plan_refresh_gives_up_after_the_timeout_naming_the_holder(
    capsys: pytest.CaptureFixture[str], state_file: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "chats.yaml"
    manifest.write_text("version: 1\nchats: []\n")
    holder = LocalStateStore(state_file)
    started = time.monotonic()
    with holder.lock("apply"):
        code, _, err = run(capsys, "plan", str(manifest), "--state", str(state_file),
                           "--emulator", "--refresh", "--lock-timeout", "1s")  # fmt: skip
    assert code == 1
    assert "waited 1s (--lock-timeout), but the state" in err and "locked by another run" in err
    assert 1.0 <= time.monotonic() - started < 20


# --- --emulator on import and export ---


def test_import_and_export_against_the_emulator(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("PROVISION_STATE", "PROVISION_GRAPH_URL", "PROVISION_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # Export lists the user's chats right after apply made them: the built-in emulator lists
    # at once here (this test is about --emulator on import/export, not Graph's listing lag).
    monkeypatch.setenv("PROVISION_EMULATOR_LIST_DELAY", "0")
    manifest = ROOT / "examples/chats.yaml"
    code, _, err = run(capsys, "apply", str(manifest), "--emulator", "--auto-approve", "--quiet")
    assert code == 0, err
    code, out, _ = run(capsys, "state", "list", "--format", "json")
    launch = next(c for c in json.loads(out)["chats"] if c["key"] == "falcon-launch")
    # Export the chats of one member from the same emulator tenant, no credentials set.
    code, out, err = run(capsys, "export", "--emulator", "--user", "megan.bowen@contoso.com")
    assert code == 0, err
    assert launch["chat_id"] in out and "Using the built-in Graph emulator" in err
    # Import one of them under a second state.
    code, out, err = run(capsys, "import", "launch-copy", launch["chat_id"], "--emulator",
                         "--state", "other.json")  # fmt: skip
    assert code == 0, err
    assert f'Imported group chat "Project Falcon launch" {launch["chat_id"]}' in out


# --- the plan schema and --debug ---


def test_plan_json_validates_against_provision_schema_plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, schema, _ = run(capsys, "schema", "plan")
    assert code == 0
    code, out, _ = run(capsys, "plan", str(ROOT / "examples/chats.yaml"), "--state",
                       str(tmp_path / "s.json"), "--format", "json")  # fmt: skip
    assert code == 0
    jsonschema.validate(json.loads(out), json.loads(schema))


def test_the_sign_in_story_only_with_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AuthError("could not sign in (Azure CLI): not logged in", hint="run az login",
                        detail="CredentialUnavailableError: the whole chain")  # fmt: skip

    monkeypatch.setattr("provisioner.cli.plan.connection_for", refuse)
    monkeypatch.setattr("provisioner.cli.lifecycle.connection_for", refuse)
    code, _, err = run(capsys, "import", "k", "19:x@thread.v2", "--auth", "azure-cli")
    assert code == 1 and "the whole chain" not in err
    assert err.splitlines() == [
        "Error: could not sign in (Azure CLI): not logged in",
        "hint: run az login",
    ]
    code, _, err = run(capsys, "--debug", "import", "k", "19:x@thread.v2", "--auth", "azure-cli")
    assert code == 1 and err.splitlines()[-1] == "CredentialUnavailableError: the whole chain"
