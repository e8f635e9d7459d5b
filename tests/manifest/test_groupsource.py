"""Issue 23, item 1: generators whose rows are the users of an Entra ID group. Offline the
templates are checked against the group's fields and the generator is deferred; with the
users given (as a plan read them) they expand like file rows, errors at the generator's line
naming the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import PlanError, ValidationFailed
from provisioner.manifest.groupsource import GROUP_FIELDS
from provisioner.manifest.load import validate_paths
from provisioner.models import GroupGenerator
from provisioner.operations.generated import expand_deferred
from provisioner.states.records import GroupRecord, GroupUser

MANIFEST = """\
version: 1
chats:
  - key: kickoff
    chatType: group
    topic: Kickoff
    members: [{user: hr@contoso.com}, {user: ana@contoso.com}]
generators:
  - name: welcome
    source: {group: New-Hires@contoso.com}
    chats:
      - key: welcome-{upn|slug}
        chatType: group
        topic: Welcome {name} ({userType|lower})
        members: [{user: "{upn}"}, {user: hr@contoso.com}]
"""


def user(upn: str, name: str = "Someone", oid: str = "") -> dict[str, str]:
    oid = oid or f"00000000-0000-0000-0000-{len(upn):012d}"
    return {"id": oid, "upn": upn, "name": name, "mail": upn, "userType": "Member"}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(MANIFEST)
    return tmp_path


def test_offline_the_generator_is_deferred_and_its_templates_checked(root: Path) -> None:
    result = validate_paths(["m.yaml"])
    assert result.ok and result.desired is not None
    assert [c.key for c in result.desired.chats] == ["kickoff"]
    assert result.deferred == (GroupGenerator("welcome", "New-Hires@contoso.com"),)
    assert result.desired.deferred == result.deferred
    assert str(result.deferred[0].source) == "m.yaml:8:5"
    (root / "m.yaml").write_text(MANIFEST.replace("{name}", "{name|title}"))
    found = [str(d) for d in validate_paths(["m.yaml"]).diagnostics]
    assert found == [
        "m.yaml:13:16: error: unknown filter 'title'; filters: slug, lower, upper "
        "($.generators[0].chats[0].topic)"
    ]
    (root / "m.yaml").write_text(MANIFEST.replace("Welcome {name}", "Welcome {name"))
    found = [str(d) for d in validate_paths(["m.yaml"]).diagnostics]
    assert len(found) == 1 and found[0].startswith("m.yaml:13:16: error: a lone '{'")


def test_the_users_expand_like_rows(root: Path) -> None:
    users = [user("ana@contoso.com", "Ana Silva"), user("ben@contoso.com", "Ben Okafor")]
    result = validate_paths(["m.yaml"], {"new-hires@contoso.com": users})
    assert result.ok and result.desired is not None and result.deferred == ()
    chats = result.desired.by_key()
    assert sorted(chats) == ["kickoff", "welcome-ana-contoso.com", "welcome-ben-contoso.com"]
    ana = chats["welcome-ana-contoso.com"]
    assert ana.topic == "Welcome Ana Silva (member)"
    assert [m.user for m in ana.members] == ["ana@contoso.com", "hr@contoso.com"]
    assert ana.origin == "generator welcome, group New-Hires@contoso.com: ana@contoso.com"
    assert str(ana.source) == "m.yaml:8:5"  # the generator's line
    assert result.chats == 3


def test_a_users_problems_point_at_the_generator_and_name_the_user(root: Path) -> None:
    users = [
        user("ana@contoso.com", "Ana"),
        user("Ana@Contoso.com", "Ana again"),  # the same key once slugged: a duplicate
        user("eve@contoso.com", ""),  # no display name: an empty field
        user("ann at contoso", "Ann"),  # neither a GUID nor a UPN
    ]
    found = [
        str(d) for d in validate_paths(["m.yaml"], {"new-hires@contoso.com": users}).diagnostics
    ]
    assert len(found) == 3, found
    expected = [
        "m.yaml:8:5: error: user Ana@Contoso.com: duplicate key 'welcome-ana-contoso.com': "
        "already used at m.yaml:8:5 (user ana@contoso.com)",
        "m.yaml:8:5: error: user eve@contoso.com: the field 'name' is empty in this row; "
        "generator welcome, template at m.yaml:11:9",
        "m.yaml:8:5: error: user ann at contoso: user 'ann at contoso' is neither a user "
        "object id (GUID) nor a user principal name",
    ]
    assert all(any(f.startswith(e) for f in found) for e in expected), found


def test_a_plan_expands_from_the_groups_read_or_says_it_needs_them(root: Path) -> None:
    desired = validate_paths(["m.yaml"]).desired
    assert desired is not None
    with pytest.raises(PlanError, match="this plan needs a refresh") as exc:
        expand_deferred(desired, {})
    assert exc.value.message.startswith(
        "m.yaml:8:5: generator welcome reads group New-Hires@contoso.com"
    )
    group = GroupRecord(
        "g1",
        "New hires",
        "2027-01-01T00:00:00Z",
        (GroupUser("u1", "ana@contoso.com", False, "Ana", "ana@contoso.com"),),
    )
    expanded = expand_deferred(desired, {"new-hires@contoso.com": group})
    assert sorted(expanded.by_key()) == ["kickoff", "welcome-ana-contoso.com"]
    assert expanded.digest == desired.digest and expanded.deferred == ()
    guest = GroupUser("u2", "ana@contoso.com", True, "", None)  # no name: refused, at the user
    with pytest.raises(ValidationFailed) as failed:
        expand_deferred(desired, {"new-hires@contoso.com": GroupRecord("g1", "G", "t", (guest,))})
    assert "user ana@contoso.com: the field 'name' is empty" in str(failed.value.diagnostics[0])


def test_a_move_to_a_generated_key_is_checked_once_the_group_is_read(root: Path) -> None:
    (root / "m.yaml").write_text(
        MANIFEST + "moved:\n  - {from: hello-ana, to: welcome-ana-contoso.com}\n"
    )
    assert validate_paths(["m.yaml"]).ok  # offline the generated keys are not known yet
    users = [user("ana@contoso.com", "Ana")]
    assert validate_paths(["m.yaml"], {"new-hires@contoso.com": users}).ok
    found = validate_paths(["m.yaml"], {"new-hires@contoso.com": [user("ben@contoso.com")]})
    assert "welcome-ana-contoso.com" in str(found.diagnostics[0])


def test_a_manifest_edited_meanwhile_is_refused(root: Path) -> None:
    desired = validate_paths(["m.yaml"]).desired
    assert desired is not None
    (root / "m.yaml").write_text(MANIFEST.replace("Kickoff", "Kick-off"))
    group = GroupRecord("g1", "G", "t", (GroupUser("u1", "ana@contoso.com", False, "Ana"),))
    with pytest.raises(Exception, match="the manifests changed while planning"):
        expand_deferred(desired, {"new-hires@contoso.com": group})


def test_the_fields_are_documented_in_the_schema() -> None:
    from provisioner.manifest.schema import load_schema

    text = load_schema()["$defs"]["generator"]["properties"]["source"]["properties"]["group"][
        "description"
    ]
    assert all(f in text for f in GROUP_FIELDS)
