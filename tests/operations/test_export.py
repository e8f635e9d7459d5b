"""``provision export``: keys, YAML quoting, and the round trip export -> import -> no changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from lib.cli import run
from lib.lifecycle_support import A, L, M, N, client_for, create, group

from provisioner.emulator import EmulatorServer, User
from provisioner.errors import StateError
from provisioner.manifest.load import validate_paths
from provisioner.models import Chat, Member
from provisioner.operations.export import chat_key, slug, yaml_scalar
from provisioner.states.local import LocalStateStore
from provisioner.states.records import ChatRecord, MemberRecord, State

GUEST = "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com"
OUTSIDER = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"
OTHER_TENANT = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"
USERS = [
    User("8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca", A, "Adele Vance"),
    User("3626a173-f2bc-4883-bcf7-01514c3bfb82", M, "Megan Bowen"),
    User("5f5b4f0e-3c1e-4c1f-8d7a-1b2c3d4e5f60", L, "Lee Gu"),
    User("6a6b6c6d-1111-4222-8333-944455566677", N, "Nestor Wilke"),
    User("7a7b7c7d-1111-4222-8333-944455566677", GUEST, "Ann (Fabrikam)", user_type="Guest"),
]


@given(st.text())
def test_yaml_scalar_reads_back_exactly(text: str) -> None:
    assert yaml.safe_load(yaml_scalar(text)) == text
    assert yaml.load(yaml_scalar(text), Loader=yaml.SafeLoader) == text


@pytest.mark.parametrize("text", ["adele@contoso.com", "project-x-1a2b3c", "ok"])
def test_yaml_scalar_keeps_plain_words_plain(text: str) -> None:
    assert yaml_scalar(text) == text


@pytest.mark.parametrize("text", ["yes", "null", "123", "2024-01-02", "a: b", "#x", ""])
def test_yaml_scalar_quotes_what_yaml_would_read_otherwise(text: str) -> None:
    assert yaml_scalar(text).startswith('"')


def test_keys_are_readable_stable_and_valid() -> None:
    assert slug("  Project X: Q3 (EMEA) ") == "project-x-q3-emea"
    assert slug("Équipe Zürich 🎉") == "equipe-zurich"
    record = ChatRecord("19:abc@thread.v2", "group", (MemberRecord(A), MemberRecord(M)), "Q3!")
    key = chat_key(record)
    assert key.startswith("q3-") and len(key) == len("q3-") + 6
    assert key == chat_key(record)  # stable
    dm = ChatRecord("19:a_b@unq.gbl.spaces", "oneOnOne", (MemberRecord(M), MemberRecord(A)))
    assert chat_key(dm).startswith("dm-adele-megan-")
    untitled = ChatRecord("19:u@thread.v2", "group", (MemberRecord(A), MemberRecord(M)))
    assert chat_key(untitled).startswith("group-")


@pytest.fixture
def tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    with EmulatorServer(limits="off", users=USERS, seed=2, list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
        client = client_for(server)
        create(client, group("a", "Project X", A, M, L))
        create(client, group("b", "Project X", A, N))  # the same topic: keys still differ
        create(client, group("c", None, A, M))
        create(client, group("d", 'Quotes "and" émojis 🎉 # not a comment', A, GUEST,
                             roles={GUEST: "guest"}))  # fmt: skip
        create(client, Chat("e", "oneOnOne", (Member(A), Member(M))))
        outside = Member(OUTSIDER, "owner", OTHER_TENANT)
        create(client, Chat("f", "group", (Member(A), Member(L), outside), "Federated"))
        create(client, group("g", "Not Adele's", M, L))  # adele is not in it
        gone = create(client, group("h", "Deleted", A, M))
        client.delete_chat(gone)
        # A chat left with one member cannot be written as a manifest chat.
        lonely = create(client, group("i", "Lonely", A, N))
        client.remove_member(lonely, next(
            m["id"] for m in client.list_members(lonely) if m["userId"] == USERS[3].id
        ))  # fmt: skip
        yield server


def test_export_import_to_state_then_plan_shows_no_changes(tenant, capsys) -> None:
    code, out, err = run(capsys, "export", "--user", A, "--out", "adele.yaml", "--import-to-state")
    assert code == 0, err
    assert out == "" and "Exported 6 chats of adele@contoso.com to adele.yaml; skipped 1" in err
    assert "Recorded 6 chats in provision.state.json." in err
    result = validate_paths(["adele.yaml"])
    assert result.ok, result.diagnostics
    assert result.desired is not None and len(result.desired.chats) == 6
    text = Path("adele.yaml").read_text()
    assert "a group chat with 1 user member(s)" in text  # the skipped chat, with its reason
    assert "role: guest" in text and f"tenantId: {OTHER_TENANT}" in text
    code, out, err = run(capsys, "plan", "adele.yaml", "--detailed-exitcode")
    assert code == 0, out + err
    assert "No changes." in out and "outside provision" not in out
    # Exporting again gives the same manifest (stable keys), and importing again is a no-op.
    code, _, err = run(capsys, "export", "--user", A, "--out", "adele.yaml", "--force",
                       "--import-to-state")  # fmt: skip
    assert code == 0 and "(6 were managed already)" in err
    assert Path("adele.yaml").read_text() == text


def test_export_then_the_import_commands_then_no_changes(tenant, capsys) -> None:
    code, out, err = run(capsys, "export", "--user", A, "--type", "group")
    assert code == 0, err
    Path("groups.yaml").write_text(out)
    commands = [line.split()[3:] for line in out.splitlines() if "# provision import" in line]
    assert len(commands) == 5  # the oneOnOne chat is not a group chat
    for key, chat_id in commands:
        assert run(capsys, "import", key, chat_id)[0] == 0
    code, out, err = run(capsys, "plan", "groups.yaml", "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out + err


def test_export_by_object_id_and_one_on_one_only(tenant, capsys) -> None:
    code, out, _ = run(capsys, "export", "--user", USERS[1].id, "--type", "oneOnOne")
    assert code == 0
    assert out.count("chatType: oneOnOne") == 1 and "chatType: group" not in out
    assert "key: dm-adele-megan-" in out


def test_export_errors(tenant, capsys) -> None:
    code, _, err = run(capsys, "export", "--user", "nobody@contoso.com")
    assert code == 1 and "was not found in the directory" in err
    Path("x.yaml").write_text("keep me")
    code, _, err = run(capsys, "export", "--user", A, "--out", "x.yaml")
    assert code == 1 and "--force" in err and Path("x.yaml").read_text() == "keep me"


def test_generated_keys_avoid_keys_the_state_uses_for_other_chats(tenant, capsys) -> None:
    code, out, _ = run(capsys, "export", "--user", A)
    first_key = next(line.split()[3] for line in out.splitlines() if "# provision import" in line)
    store = LocalStateStore("provision.state.json")
    state = store.read()
    state.put_chat(first_key, ChatRecord("19:someother@thread.v2", "group", ()))
    store.write(state)
    code, out, err = run(capsys, "export", "--user", A, "--import-to-state")
    assert code == 0, err
    assert f"key: {first_key}\n" not in out  # a longer hash instead
    assert len(store.read().chats) == 7


def test_import_export_refuses_conflicts_and_records_nothing() -> None:
    from provisioner.operations.export import Export, ExportedChat, import_export

    state = State()
    state.put_chat("a", ChatRecord("19:one", "group", ()))
    record = ChatRecord("19:two", "group", (MemberRecord(A), MemberRecord(M)))
    clash = ChatRecord("19:one", "group", (MemberRecord(A), MemberRecord(M)))
    export = Export(A, "id", None, (ExportedChat("a", record), ExportedChat("b", clash)))
    with pytest.raises(StateError) as err:
        import_export(export, state)
    assert "a is already managed (chat 19:one)" in str(err.value)
    assert "chat 19:one is already managed as a" in str(err.value)
    assert list(state.chats) == ["a"]


def test_import_to_state_keeps_the_keys_of_chats_managed_already(tenant, capsys) -> None:
    client = client_for(tenant)
    chat_id = next(c.id for c in tenant.tenant.find_chats(topic="Federated"))
    assert run(capsys, "import", "northwind", chat_id)[0] == 0
    code, out, err = run(capsys, "export", "--user", A, "--import-to-state")
    assert code == 0, err
    assert "key: northwind\n" in out and "(1 were managed already)" in err
    Path("adele.yaml").write_text(out)
    assert run(capsys, "plan", "adele.yaml", "--detailed-exitcode")[0] == 0
    assert client.base_url == tenant.url


@pytest.mark.parametrize("kind", ["group", "oneOnOne"])
def test_export_by_type_falls_back_when_graph_refuses_the_filter(tenant, capsys, kind) -> None:
    # chat-list.md documents $filter but no expression: `chatType eq` is an assumption.
    code, expected, _ = run(capsys, "export", "--user", A, "--type", kind)
    assert code == 0 and f"chatType: {kind}" in expected
    tenant.tenant.chat_filters = frozenset()  # this Graph answers every $filter with a 400
    code, out, err = run(capsys, "export", "--user", A, "--type", kind)
    assert code == 0, err
    assert out == expected


def test_export_by_type_checks_the_type_when_graph_ignores_the_filter(
    tenant, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.emulator import chats as emulated

    code, expected, _ = run(capsys, "export", "--user", A, "--type", "oneOnOne")
    monkeypatch.setattr(emulated, "parse_filter", lambda text: {})  # accepted, not applied
    code, out, err = run(capsys, "export", "--user", A, "--type", "oneOnOne")
    assert code == 0, err
    assert out == expected and "chatType: group" not in out
