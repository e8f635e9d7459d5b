"""Issue 23, item 1: ``generators:`` expand rows (CSV, YAML, JSON, inline) into chats, checked
like hand-written ones, with errors at the row and the template; driven through
``manifest.load`` and, for the issue's scenario, ``cli.main`` against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.manifest.load import validate_paths
from provisioner.states.local import LocalStateStore

ONBOARDING = """\
version: 1
chats: []
generators:
  - name: onboarding
    source: {csv: hires.csv}
    chats:
      - key: onboarding-{upn|slug}
        chatType: group
        topic: Welcome {name} ({start})
        members:
          - user: "{upn}"
          - user: "{manager}"
          - user: "{buddy}"
      - key: buddy-{upn|slug}
        chatType: oneOnOne
        members: [{user: "{upn}"}, {user: "{buddy}"}]
"""


def hires(n: int, first: int = 0) -> list[str]:
    return [
        f"Hire {i},hire{i}@contoso.com,lead{i % 4}@contoso.com,buddy{i}@contoso.com,"
        f"2027-01-{1 + i % 28:02d}"
        for i in range(first, first + n)
    ]


def write_csv(root: Path, rows: list[str]) -> None:
    (root / "hires.csv").write_text("name,upn,manager,buddy,start\n" + "\n".join(rows) + "\n")


def messages(root: Path, name: str = "m.yaml") -> list[str]:
    result = validate_paths([name])  # relative to root, the working directory
    return [str(d) for d in result.diagnostics]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # diagnostics name files relative to it, as users write them
    (tmp_path / "m.yaml").write_text(ONBOARDING)
    return tmp_path


def test_a_generator_makes_the_same_chats_as_written_by_hand(root: Path) -> None:
    write_csv(root, hires(2))
    generated = validate_paths(["m.yaml"]).desired
    assert generated is not None
    (root / "hand.yaml").write_text(
        "version: 1\nchats:\n"
        + "".join(
            f"  - key: onboarding-hire{i}-contoso.com\n    chatType: group\n"
            f"    topic: Welcome Hire {i} (2027-01-{1 + i:02d})\n"
            f"    members: [{{user: hire{i}@contoso.com}}, {{user: lead{i}@contoso.com}},"
            f" {{user: buddy{i}@contoso.com}}]\n"
            f"  - key: buddy-hire{i}-contoso.com\n    chatType: oneOnOne\n"
            f"    members: [{{user: hire{i}@contoso.com}}, {{user: buddy{i}@contoso.com}}]\n"
            for i in range(2)
        )
    )
    by_hand = validate_paths(["hand.yaml"]).desired
    assert by_hand is not None and generated.chats == by_hand.chats
    chat = generated.by_key()["onboarding-hire1-contoso.com"]
    assert chat.origin == "generator onboarding, hires.csv:3"
    assert str(chat.source) == "hires.csv:3:1"


def test_rows_that_cannot_make_a_chat_are_reported_at_the_row(root: Path) -> None:
    rows = hires(20)
    rows[15] = "Hire 15,hire15 at contoso,lead0@contoso.com,buddy15@contoso.com,2027-01-16"
    rows[3] = rows[2]  # the same hire twice: duplicate keys
    rows[5] = "Hire 5,hire5@contoso.com,lead1@contoso.com,,2027-01-06"
    write_csv(root, rows)
    found = messages(root)
    template = "generator onboarding, template at m.yaml:7:9"
    assert any(
        m.startswith("hires.csv:17:1: error: user 'hire15 at contoso' is neither") and template in m
        for m in found
    ), found
    assert any(
        m.startswith(
            "hires.csv:5:1: error: duplicate key 'onboarding-hire2-contoso.com': "
            "already used at hires.csv:4:1"
        )
        for m in found
    ), found
    assert any(
        m.startswith("hires.csv:7:1: error: the field 'buddy' is empty in this row") for m in found
    ), found


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("{buddy}", "{bdy}"),
            "m.yaml:13:19: error: 'bdy' is not a field of the source (its fields: name, upn, "
            "manager, buddy, start)",
        ),
        (("{upn|slug}", "{upn|kebab}"), "m.yaml:7:14: error: unknown filter 'kebab'"),
        (
            ("Welcome {name}", "Welcome {name"),
            "m.yaml:9:16: error: a lone '{' in 'Welcome {name ({start})'",
        ),
        (
            ("csv: hires.csv", "csv: missing.csv"),
            "m.yaml:5:19: error: csv source missing.csv: cannot read file",
        ),
    ],
)
def test_template_and_source_mistakes_are_reported_once_at_the_manifest(
    root: Path, change: tuple[str, str], expected: str
) -> None:
    write_csv(root, hires(3))
    (root / "m.yaml").write_text(ONBOARDING.replace(*change, 1))
    found = messages(root)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_csv_shape_problems_name_the_line(root: Path) -> None:
    (root / "hires.csv").write_text("name,upn,upn\nA,a@contoso.com,b@contoso.com\n")
    assert messages(root)[0].startswith(
        "hires.csv:1:1: error: the header has the field name 'upn' twice"
    )
    (root / "hires.csv").write_text("name,upn,manager,buddy,start\n\nA,a@contoso.com\n")
    assert messages(root)[0].startswith("hires.csv:3:1: error: the row has 2 fields, the header 5")


def test_yaml_json_and_inline_sources(root: Path) -> None:
    (root / "rows.json").write_text(json.dumps([{"id": "inc-1", "lead": "a@contoso.com"}]))
    (root / "rows.yaml").write_text("- {id: inc-2, lead: b@contoso.com}\n- {id: inc-3, lead: 7}\n")
    template = """
    chats:
      - key: "{id}"
        chatType: group
        topic: "Incident {id|upper} {{live}}"
        expires: 2027-01-01
        members: [{user: "{lead}"}, {user: c@contoso.com}]
"""
    (root / "m.yaml").write_text(
        "version: 1\nchats: []\ngenerators:\n"
        + "  - name: from-json\n    source: {json: rows.json}"
        + template
        + "  - name: from-yaml\n    source: {yaml: rows.yaml}"
        + template
        + "  - name: inline\n    source:\n      rows:\n        - {id: inc-4, lead: d@contoso.com}"
        + template
    )
    found = messages(root)
    assert len(found) == 1 and found[0].startswith("rows.yaml:2:3: error: user '7' is neither"), (
        found
    )
    (root / "rows.yaml").write_text("- {id: inc-2, lead: b@contoso.com}\n")
    desired = validate_paths(["m.yaml"]).desired
    assert desired is not None
    chats = desired.by_key()
    assert sorted(chats) == ["inc-1", "inc-2", "inc-4"]
    assert chats["inc-1"].topic == "Incident INC-1 {live}"
    origin = chats["inc-4"].origin
    assert origin is not None and origin.startswith("generator inline, m.yaml:")
    assert chats["inc-2"].expires == "2027-01-01"


@pytest.fixture
def emulated(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    with EmulatorServer(limits="off", seed=11, invent_users=True, list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
        yield server


def test_forty_new_hires_then_three_more_and_one_gone(root: Path, emulated, capsys) -> None:
    write_csv(root, hires(40))
    assert main(["validate", "m.yaml"]) == 0
    assert "1 file, 80 chats, 0 errors" in capsys.readouterr().out
    assert main(["apply", "m.yaml", "--auto-approve"]) == 0
    out = capsys.readouterr().out
    assert "Apply complete: 80 created" in out or "80 created" in out, out
    state = LocalStateStore(root / "provision.state.json").read()
    assert sum(r.chat_type == "group" for r in state.chats.values()) == 40
    assert sum(r.chat_type == "oneOnOne" for r in state.chats.values()) == 40

    write_csv(root, hires(39, first=1) + hires(3, first=40))  # hire 0 leaves, 40-42 join
    assert main(["plan", "m.yaml", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["summary"]["create"] == 6
    assert plan["summary"]["forget"] == 2  # the default policy: stop managing, keep the chats
    origins = {c["key"]: c.get("origin") for c in plan["changes"] if c["action"] == "create"}
    assert origins["onboarding-hire41-contoso.com"] == "generator onboarding, hires.csv:42"
    assert main(["plan", "m.yaml", "--prune"]) == 0
    assert (
        "Plan: 6 to create, 0 to update, 2 to delete, "
        "0 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes."
    ) in capsys.readouterr().out


def test_templates_take_what_chats_take_membership_sets_and_history(root: Path) -> None:
    # Issue 22's fields in issue 23's templates: a member set, the membership policy and a
    # history date taken from the row.
    write_csv(root, hires(1))
    (root / "m.yaml").write_text(
        ONBOARDING.replace(
            "chats: []\n", "memberSets:\n  team: [{user: lead9@contoso.com}]\nchats: []\n"
        )
        .replace(
            "        topic: Welcome {name} ({start})\n",
            "        topic: Welcome {name} ({start})\n        membership: additive\n"
            '        history: {since: "{start}"}\n',
        )
        .replace(
            '          - user: "{buddy}"\n',
            '          - user: "{buddy}"\n          - set: team\n',
            1,
        )
    )
    desired = validate_paths(["m.yaml"]).desired
    assert desired is not None, messages(root)
    chat = desired.by_key()["onboarding-hire0-contoso.com"]
    assert chat.membership == "additive"
    assert chat.history == "2027-01-01T00:00:00Z"
    assert [m.user for m in chat.members][-1] == "lead9@contoso.com"
