"""Issue 22: memberSets, expanded into chats, with their problems at file:line:col."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.manifest.load import load_desired, validate_paths

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"
D = "82fe7758-5bb3-4f0d-a43f-e555fd399c6f"

SETS = f"""\
version: 1
memberSets:
  staff:
    - user: {A}
    - set: leads
  leads:
    - user: {B}
    - user: {C}
      role: guest
chats: []
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def problems(tmp_path: Path, *texts: str) -> list[str]:
    paths = [write(tmp_path, f"m{i}.yaml", t) for i, t in enumerate(texts)]
    result = validate_paths(paths)
    return [
        f"{Path(d.file).name}:{d.line}:{d.col}: {d.message}" + (f" [{d.hint}]" if d.hint else "")
        for d in result.diagnostics
    ]


def test_sets_expand_in_place_across_files_with_roles_and_routes(tmp_path: Path) -> None:
    chats = f"""\
version: 1
chats:
  - key: all-hands
    chatType: group
    members:
      - user: {D}
      - set: staff
  - key: leads
    chatType: group
    members:
      - set: leads
        role: owner
"""
    desired = load_desired([write(tmp_path, "a.yaml", SETS), write(tmp_path, "b.yaml", chats)])
    hands, leads = desired.chats
    assert [(m.user, m.role, m.via) for m in hands.members] == [
        (D, "owner", None),
        (A, "owner", "set staff"),
        (B, "owner", "set staff"),
        (C, "guest", "set staff"),
    ]
    # The POST /chats body lists the expanded members in that order.
    body: dict[str, Any] = hands.request_body()
    assert [m["roles"] for m in body["members"]] == [["owner"], ["owner"], ["owner"], ["guest"]]
    assert [(m.user, m.role) for m in leads.members] == [(B, "owner"), (C, "owner")]
    # A set's source is where its member is written, in the file of the sets.
    assert str(hands.members[1].source).endswith("a.yaml:4:7")


def test_unknown_set_cycle_and_duplicate_definition(tmp_path: Path) -> None:
    one = f"""\
version: 1
memberSets:
  a:
    - user: {A}
    - set: b
  b:
    - user: {B}
    - set: a
  staf:
    - user: {C}
chats:
  - key: g
    chatType: group
    members:
      - user: {D}
      - set: staff
"""
    two = f"version: 1\nmemberSets:\n  a:\n    - user: {C}\nchats: []\n"
    found = problems(tmp_path, one, two)
    assert "m0.yaml:16:9: unknown member set 'staff' [did you mean 'staf'?]" in found
    assert any(
        p.startswith("m0.yaml:8:7: member set 'a' includes itself: a -> b -> a") for p in found
    )
    assert any(
        p.startswith("m1.yaml:3:3: member set 'a' is already defined at ") and "m0.yaml:3:3" in p
        for p in found
    )


def test_a_person_reached_through_two_routes(tmp_path: Path) -> None:
    text = SETS.replace(
        "chats: []",
        f"""chats:
  - key: g
    chatType: group
    members:
      - set: staff
      - user: {B}
  - key: h
    chatType: group
    members:
      - set: leads
      - set: staff
""",
    )
    found = problems(tmp_path, text)
    assert any(
        p.startswith(f"m0.yaml:15:9: user '{B}' is reached twice in chat 'g': through set 'staff'")
        and "(which includes set 'leads')" in p
        and "and through a user entry" in p
        for p in found
    ), found
    assert any(
        p.startswith(f"m0.yaml:20:9: user '{B}' is reached twice in chat 'h': through set 'leads'")
        and "and through set 'staff' (which includes set 'leads')" in p
        for p in found
    ), found


@pytest.mark.parametrize(
    ("entry", "where", "message"),
    [
        (
            f"- set: staff\n        user: {A}",
            "m0.yaml:14:9",
            "needs exactly one of 'user', 'set' or 'group'",
        ),
        (
            f"- set: staff\n        tenantId: {A}",
            "m0.yaml:15:19",
            "tenantId is only allowed on a 'user' entry",
        ),
        ("- set: 'bad name'", "m0.yaml:14:14", "is not a valid set name"),
    ],
)
def test_bad_set_entries_are_located(tmp_path: Path, entry: str, where: str, message: str) -> None:
    text = SETS.replace(
        "chats: []",
        "chats:\n  - key: g\n    chatType: group\n    members:\n"
        f"      {entry}\n      - user: {D}\n",
    )
    found = problems(tmp_path, text)
    assert any(p.startswith(where) and message in p for p in found), found


def test_sets_are_for_group_chats_and_must_bring_two_people(tmp_path: Path) -> None:
    one_on_one = SETS.replace(
        "chats: []",
        f"chats:\n  - chatType: oneOnOne\n    members:\n      - set: leads\n      - user: {D}\n",
    )
    assert any("only allowed in group chats" in p for p in problems(tmp_path, one_on_one))
    lonely = (
        f"version: 1\nmemberSets:\n  me:\n    - user: {A}\n"
        "chats:\n  - key: g\n    chatType: group\n    members:\n      - set: me\n"
    )
    found = problems(tmp_path, lonely)
    assert any(
        p.startswith("m0.yaml:9:7: a group chat needs at least two distinct members") for p in found
    ), found


def test_rules_point_at_the_member_in_its_set(tmp_path: Path) -> None:
    text = (
        f"version: 1\nmemberSets:\n  ext:\n    - user: {A}\n      tenantId: {B}\n"
        "      role: guest\nchats:\n  - key: g\n    chatType: group\n    members:\n"
        f"      - set: ext\n      - user: {D}\n"
    )
    found = problems(tmp_path, text)
    assert any(
        p.startswith("m0.yaml:4:7: an out-of-tenant member (tenantId set) must be an owner")
        and "(from set ext)" in p
        for p in found
    ), found


def test_the_plan_says_which_set_brought_a_member(tmp_path: Path) -> None:
    from provisioner.plans.planner import make_plan
    from provisioner.states.records import State
    from provisioner.views.plan import render_text

    text = SETS.replace(
        "chats: []",
        f"chats:\n  - key: g\n    chatType: group\n    members:\n      - user: {D}\n"
        "      - set: leads\n",
    )
    plan = make_plan(load_desired([write(tmp_path, "m.yaml", text)]), State())
    shown = render_text(plan)
    assert f"+ member {D}  owner\n" in shown
    assert f"+ member {B}  owner  (from set leads)" in shown
    assert f"+ member {C}  guest  (from set leads)" in shown
    assert plan.changes[0].body is not None  # the body itself names users only
    assert all("via" not in m for m in plan.changes[0].body["members"])
