"""UPN resolution against the emulator's directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from lib.lifecycle_support import A, L, M, client_for

from provisioner.emulator import EmulatorServer, User
from provisioner.errors import ValidationFailed
from provisioner.manifest.load import load_desired
from provisioner.operations.users import known_users, resolve_users
from provisioner.states.records import ChatRecord, MemberRecord, State

A_ID = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
M_ID = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
DIRECTORY = [User(A_ID, A, "Adele"), User(M_ID, M, "Megan")]


def manifest(tmp_path: Path, *users: str) -> Path:
    lines = ["version: 1", "chats:", "  - key: g", "    chatType: group", "    members:"]
    lines += [f"      - user: {u}" for u in users]
    path = tmp_path / "m.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_resolves_new_upns_once_in_batches(tmp_path: Path) -> None:
    desired = load_desired([str(manifest(tmp_path, A.upper(), M, A_ID))])
    with EmulatorServer(limits="off", users=DIRECTORY, list_delay_s=0) as server:
        client = client_for(server)
        assert resolve_users(client, State(), desired) == {A: A_ID, M: M_ID}
        assert server.tenant.counters.by_route["POST /$batch"] == 1
        cached = State(users={A: A_ID, M: M_ID})
        server.tenant.reset_counters()
        assert resolve_users(client, cached, desired) == {}
        assert server.tenant.counters.requests_total == 0  # all known: no request


def test_unknown_manifest_user_names_the_line(tmp_path: Path) -> None:
    desired = load_desired([str(manifest(tmp_path, A, L))])
    with (
        EmulatorServer(limits="off", users=DIRECTORY, list_delay_s=0) as server,
        pytest.raises(ValidationFailed) as err,
    ):
        resolve_users(client_for(server), State(), desired)
    (diag,) = err.value.diagnostics
    assert (diag.line, diag.col) == (7, 9) and diag.file.endswith("m.yaml")
    assert f"user '{L}' was not found in the directory" in diag.message


def test_state_members_are_resolved_and_unknown_ones_tolerated() -> None:
    state = State()
    state.put_chat("g", ChatRecord("19:g", "group", (MemberRecord(M), MemberRecord(L))))
    with EmulatorServer(limits="off", users=DIRECTORY, list_delay_s=0) as server:
        # lee left the directory: not an error here (refresh shows the member as removed).
        assert resolve_users(client_for(server), state) == {M: M_ID}


def test_known_users_come_from_the_cache_and_recorded_object_ids() -> None:
    state = State(users={M: M_ID})
    state.put_chat("g", ChatRecord("19:g", "group", (MemberRecord(A, object_id=A_ID),)))
    assert known_users(state) == {A: A_ID, M: M_ID}
