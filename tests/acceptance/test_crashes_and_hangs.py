"""Crashes and hangs of issue 20, item 8: each was an internal error, a hang or a wrong result
on main, and is now a clear error or the right answer.

(``--max-rps 1e-300`` is in ``tests/cli/test_cli_numbers.py``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lib.lifecycle_support import A, M, client_for, create, group

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer, User
from provisioner.errors import AuthError
from provisioner.graph.client import GraphClient
from provisioner.manifest.load import validate_paths
from provisioner.operations.export import export_chats
from provisioner.operations.refresh import refresh
from provisioner.signin.chooser import credential_from_env
from provisioner.signin.msal_flows import ConfidentialClientCredential
from provisioner.states.records import ChatRecord, MemberRecord, State

OID_A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
OID_B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
MANIFEST = f"""\
version: 1
chats:
  - key: team
    chatType: group
    topic: Team
    members:
      - user: {OID_A}
      - user: {OID_B}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "PROVISION_")):
            monkeypatch.delenv(name)
    (tmp_path / "chats.yaml").write_text(MANIFEST)
    return tmp_path


# -- a chat answered under a differently cased id ----------------------------------------------


class CasedBatch:
    """A Graph whose chat answers spell the chat id in upper case."""

    def batch(self, requests_: Any) -> list[dict[str, Any]]:
        answers = []
        for r in requests_:
            chat_id = r["url"].split("/chats/", 1)[1].split("?", 1)[0]
            body = {"id": chat_id.upper(), "chatType": "group", "topic": "Team", "tenantId": "",
                    "members": [{"userId": OID_A, "roles": ["owner"]},
                                {"userId": OID_B, "roles": ["owner"]}]}  # fmt: skip
            answers.append({"id": r["id"], "status": 200, "headers": {}, "body": body})
        return answers

    def get_chat(self, chat_id: str, *, expand_members: bool = True) -> dict[str, Any]:
        raise AssertionError("not needed")

    def get_user(self, id_or_upn: str, *, select: Any = ()) -> dict[str, Any]:
        raise AssertionError("not needed")


def test_a_chat_answered_under_a_differently_cased_id_is_the_same_chat() -> None:
    state = State()
    members = (MemberRecord(OID_A, object_id=OID_A), MemberRecord(OID_B, object_id=OID_B))
    state.put_chat("team", ChatRecord("19:abcDEF@thread.v2", "group", members, topic="Team"))
    live = refresh(CasedBatch(), state)  # KeyError on main
    assert live["team"].chat_id == "19:abcDEF@thread.v2"  # the id as recorded
    assert not live["team"].gone and len(live["team"].members) == 2


# -- a token that cannot be an HTTP header -----------------------------------------------------


@pytest.mark.parametrize("char", ["\u2019", "\u2014", "\u00e9", "\u4e2d"])
def test_a_non_ascii_access_token_is_a_clear_error(
    workdir: Path, char: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVISION_GRAPH_URL", "http://127.0.0.1:9/v1.0")
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", f"eyJ0eXAiOiJKV1Qi{char}abc.def.ghi")
    Path("provision.state.json").write_text(
        '{"format_version": 1, "lineage": "l", "serial": 1, "chats": {"team": {"chat_id": '
        '"19:t@thread.v2", "chat_type": "group", "topic": "Team", "members": []}}}'
    )
    code, output = run(capsys, "plan", "chats.yaml")
    assert code == 1
    assert "PROVISION_ACCESS_TOKEN" in output and "ASCII" in output
    assert "internal error" not in output and "Traceback" not in output
    with pytest.raises(AuthError, match="not ASCII"):
        credential_from_env(None, "global", {"PROVISION_ACCESS_TOKEN": f"abc{char}def"})


# -- export with repeating pages ---------------------------------------------------------------


def test_export_writes_each_chat_once_when_the_list_pages_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = [User(OID_A, A, "Adele Vance"), User(OID_B, M, "Megan Bowen")]
    with EmulatorServer(limits="off", users=users, seed=3, list_delay_s=0) as server:
        client = client_for(server)
        for n in range(3):
            create(client, group(f"g{n}", f"Group {n}", A, M))
        real = GraphClient.list_user_chats

        def repeating(self: GraphClient, *args: Any, **kwargs: Any) -> Any:
            chats = list(real(self, *args, **kwargs))
            # The second page repeats the first (a chat moved while the list was paged), and
            # one repeat comes back with its id in upper case.
            return [*chats, *chats, {**chats[0], "id": chats[0]["id"].upper()}]

        monkeypatch.setattr(GraphClient, "list_user_chats", repeating)
        exported = export_chats(client, A)
    ids = [e.record.chat_id.casefold() for e in exported.chats]
    assert len(ids) == 3 and len(set(ids)) == 3


# -- FIFOs and devices as state or journal -----------------------------------------------------


def provision(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process: a hang shows as a timeout, not a stuck test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "PROVISION_"))}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from provisioner.cli.main import main; "
         "sys.exit(main(sys.argv[1:]))", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("fifo", ["provision.state.json", "provision.state.json.journal"])
def test_a_fifo_as_state_or_journal_is_refused_at_once(workdir: Path, fifo: str) -> None:
    if fifo.endswith(".journal"):
        assert main(["state", "list"]) == 0  # no state: nothing to list
        Path("provision.state.json").write_text(
            '{"format_version": 1, "lineage": "l", "serial": 1, "chats": {}}'
        )
    os.mkfifo(fifo)
    for args in (("state", "list"), ("plan", "chats.yaml", "--emulator")):
        done = provision(*args, cwd=workdir)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "FIFO" in done.stderr and fifo in done.stderr and "Traceback" not in done.stderr


def test_a_device_as_state_is_refused_without_reading_it(workdir: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    done = provision("state", "list", "--state", "/dev/zero", cwd=workdir)
    assert done.returncode == 1 and "a device" in done.stderr, done.stderr


# -- a whitespace-only topic -------------------------------------------------------------------


@pytest.mark.parametrize("topic", ['" "', '"   "', '"\\t"', '"\\u3000"'])
def test_a_whitespace_only_topic_is_a_validation_error_with_its_position(
    workdir: Path, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("chats.yaml").write_text(MANIFEST.replace("topic: Team", f"topic: {topic}"))
    result = validate_paths(["chats.yaml"])
    [diagnostic] = result.diagnostics
    assert (diagnostic.line, diagnostic.col) == (5, 12) and "white space" in diagnostic.message
    code, output = run(capsys, "validate", "chats.yaml")
    assert code == 1 and "chats.yaml:5:12" in output


# -- the certificate sign-in hint --------------------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "named", "not_named"),
    [
        ({"private_key": "k", "thumbprint": "t"}, "AZURE_CLIENT_CERTIFICATE_PATH",
         "AZURE_CLIENT_SECRET"),
        ({"client_assertion": lambda: "a"}, "federated", "AZURE_CLIENT_SECRET"),
        ("s3cret-value-of-some-length", "AZURE_CLIENT_SECRET", "CERTIFICATE"),
    ],
)  # fmt: skip
def test_a_refused_app_sign_in_hint_names_the_credential_used(
    credential: Any, named: str, not_named: str
) -> None:
    flow = ConfidentialClientCredential(
        tenant_id=OID_A, client_id=OID_B, client_credential=credential,
        authority_host="https://login.microsoftonline.com", scope="s", description="app",
    )  # fmt: skip
    for error, detail in (
        ("invalid_client", "AADSTS7000215: Invalid client secret provided."),
        ("invalid_client", "AADSTS7000222: The provided client secret keys are expired."),
        ("invalid_client", "something else"),
    ):
        hint = flow._hint(error, detail) or ""
        assert named in hint and not_named not in hint, (detail, hint)


def test_import_refuses_a_managed_chat_spelled_in_another_case() -> None:
    from provisioner.errors import StateError
    from provisioner.operations.adopt import check_free

    state = State()
    members = (MemberRecord(OID_A, object_id=OID_A),)
    state.put_chat("team", ChatRecord("19:abcDEF@thread.v2", "group", members, topic="Team"))
    with pytest.raises(StateError, match="already managed as team"):
        check_free(state, "other", "19:ABCdef@thread.v2")
