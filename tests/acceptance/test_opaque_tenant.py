"""Issue 20, item 1: a state bound to tenant A used in tenant B with a token that is not a JWT
(no ``tid``). Every chat of A reads as 404 in B; that must never become "deleted outside
provision" and a second set of chats. Two emulators stand in for two tenants; the token is
opaque, as a proxy's or a test double's would be."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.states.local import LocalStateStore

TENANT_A = "aaaaaaaa-0000-4000-8000-00000000000a"
TENANT_B = "bbbbbbbb-0000-4000-8000-00000000000b"
USERS = [str(uuid.UUID(int=0x3000 + n)) for n in range(8)]
OPAQUE = "opaque-token-without-any-claims"


def manifest(groups: int) -> str:
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
    (tmp_path / "chats.yaml").write_text(manifest(5))
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", OPAQUE)
    return tmp_path


@pytest.fixture
def tenants() -> Iterator[dict[str, EmulatorServer]]:
    servers = {
        t: EmulatorServer(limits="off", tenant_id=t, invent_users=True, list_delay_s=0).start()
        for t in (TENANT_A, TENANT_B)
    }
    yield servers
    for server in servers.values():
        server.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return code, out + err


def chats_in(server: EmulatorServer) -> int:
    return len(server.tenant.chats(include_deleted=False))


def test_an_opaque_token_in_another_tenant_creates_nothing_and_says_why(
    workdir: Path,
    tenants: dict[str, EmulatorServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = tenants[TENANT_A], tenants[TENANT_B]
    monkeypatch.setenv("PROVISION_GRAPH_URL", a.url)
    assert run(capsys, "apply", "chats.yaml", "--auto-approve")[0] == 0
    assert LocalStateStore("provision.state.json").read().tenant_id == TENANT_A
    before = Path("provision.state.json").read_bytes()

    monkeypatch.setenv("PROVISION_GRAPH_URL", b.url)  # the same opaque token, tenant B
    for args in (("plan", "chats.yaml"), ("apply", "chats.yaml", "--auto-approve")):
        code, text = run(capsys, *args)
        assert code == 1, text
        assert TENANT_A in text and TENANT_B in text, text
    assert chats_in(b) == 0
    monkeypatch.setenv("PROVISION_GRAPH_URL", a.url)  # back home: nothing to do
    code, text = run(capsys, "plan", "chats.yaml", "--detailed-exitcode")
    assert code == 0, text
    assert chats_in(a) == 5 and Path("provision.state.json").read_bytes() == before


def test_a_run_whose_tenant_cannot_be_established_never_counts_not_found_as_deleted(
    workdir: Path,
    tenants: dict[str, EmulatorServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from provisioner.graph.client import GraphClient
    from provisioner.graph.errors import GraphPermissionError

    a, b = tenants[TENANT_A], tenants[TENANT_B]
    (workdir / "chats.yaml").write_text(manifest(2))  # below the many-404 threshold
    monkeypatch.setenv("PROVISION_GRAPH_URL", a.url)
    assert run(capsys, "apply", "chats.yaml", "--auto-approve")[0] == 0

    def refused(self: GraphClient) -> str | None:  # no Directory.Read.All: Graph says 403
        raise GraphPermissionError("Insufficient privileges", status=403)

    monkeypatch.setattr(GraphClient, "organization_tenant", refused)
    monkeypatch.setenv("PROVISION_GRAPH_URL", b.url)
    code, text = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 1 and "cannot be established" in text and TENANT_A in text, text
    assert chats_in(b) == 0
    # In its own tenant the chats read back and say where they are: the run goes on.
    monkeypatch.setenv("PROVISION_GRAPH_URL", a.url)
    assert run(capsys, "plan", "chats.yaml", "--detailed-exitcode")[0] == 0
    assert chats_in(a) == 2


def test_every_chat_not_found_at_once_stops_even_a_state_that_knows_no_tenant(
    workdir: Path,
    tenants: dict[str, EmulatorServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = tenants[TENANT_A], tenants[TENANT_B]
    monkeypatch.setenv("PROVISION_GRAPH_URL", a.url)
    assert run(capsys, "apply", "chats.yaml", "--auto-approve")[0] == 0
    assert run(capsys, "state", "unbind")[0] == 0  # a state from before issue 15

    monkeypatch.setenv("PROVISION_GRAPH_URL", b.url)
    code, text = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 1 and "all 5 managed chats" in text and "another tenant" in text, text
    assert "provision state rm" in text
    assert chats_in(b) == 0


def test_a_chat_deleted_in_teams_is_still_created_again(
    workdir: Path,
    tenants: dict[str, EmulatorServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = tenants[TENANT_A]
    monkeypatch.setenv("PROVISION_GRAPH_URL", a.url)
    assert run(capsys, "apply", "chats.yaml", "--auto-approve")[0] == 0
    state = LocalStateStore("provision.state.json").read()
    a.tenant.delete_chat(state.chats["team-0"].chat_id)  # one deletion, as a user makes it
    code, text = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0 and "1 created" in text, text
    assert chats_in(a) == 5
