from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from provisioner.manifest.schema import load_schema, regex, schema_path

ROOT = Path(__file__).resolve().parents[2]


def test_schema_is_valid_json_schema_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schema_ships_inside_the_package() -> None:
    path = schema_path()
    assert path.is_file()
    assert path.parent.parent.name == "provisioner"


def test_top_level_schemas_copy_is_identical() -> None:
    # schemas/ at the top is what the examples' `yaml-language-server: $schema=` comments and
    # editors point at; the package copy is what an installed provision uses.
    top = ROOT / "schemas" / "manifest.schema.json"
    assert top.read_bytes() == schema_path().read_bytes()


def test_every_field_has_a_description_for_editors() -> None:
    schema = load_schema()
    defs = schema["$defs"]
    objects = {
        "manifest": schema,
        "defaults": schema["properties"]["defaults"],
        "chat": defs["chat"],
        "member": defs["member"],
    }
    undocumented = []
    for where, obj in objects.items():
        for name, sub in obj["properties"].items():
            target = sub
            if "$ref" in sub and "description" not in sub:
                target = defs[sub["$ref"].rsplit("/", 1)[1]]
            if not target.get("description"):
                undocumented.append(f"{where}.{name}")
    assert undocumented == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [("abc", True), ("abc\n", False), ("a$", False), ("", False)],
)
def test_pattern_end_anchor_has_ecma_semantics(value: str, ok: bool) -> None:
    # Python's `$` also matches before a final newline; JSON Schema's (ECMA-262) does not.
    assert bool(regex("^[a-z]+$").search(value)) is ok


def test_key_with_trailing_newline_is_rejected_by_both_paths(tmp_path: Path) -> None:
    from provisioner.manifest.load import validate_paths

    path = tmp_path / "m.yaml"
    path.write_text(
        'version: 1\nchats:\n  - key: "team\\n"\n    chatType: group\n'
        "    members: [{user: a@c.com}, {user: b@c.com}]\n"
    )
    (diag,) = validate_paths([str(path)]).diagnostics
    assert diag.path == "$.chats[0].key"


def test_schema_file_is_plain_json_without_duplicates() -> None:
    def no_dupes(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), keys
        return dict(pairs)

    json.loads(schema_path().read_text(encoding="utf-8"), object_pairs_hook=no_dupes)


def test_schema_enums_match_the_models() -> None:
    from provisioner import models

    defs = load_schema()["$defs"]
    assert tuple(defs["chat"]["properties"]["chatType"]["enum"]) == models.CHAT_TYPES
    assert tuple(defs["role"]["enum"]) == models.ROLES
