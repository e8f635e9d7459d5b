from __future__ import annotations

import pytest
import yaml
from yaml.nodes import MappingNode

from provisioner.manifest.yamlload import (
    BadFile,
    compose,
    decode,
    flatten_merges,
    format_path,
    locate,
    position,
    to_data,
)


def data_of(text: str) -> tuple[object, list[str]]:
    root = compose(text, "t.yaml")
    assert root is not None
    problems = [p.message for p in flatten_merges(root)]
    converted = to_data(root, 10_000)
    return converted.data, problems + [p.message for p in converted.problems]


def test_plain_documents_read_like_safe_load() -> None:
    text = "a: [1, 2.5, true, null, x, '1', 2001-12-14]\nb: {c: d}\n"
    assert data_of(text) == (yaml.safe_load(text), [])


def test_duplicate_keys_are_reported_and_the_first_is_kept() -> None:
    data, problems = data_of("a: 1\nb: 2\na: 3\n")
    assert data == {"a": 1, "b": 2}
    assert problems == ["duplicate key 'a' (first set on line 1)"]


def test_merge_keys_follow_yaml_merge_semantics() -> None:
    text = "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 0\n"
    data, problems = data_of(text)
    assert problems == []
    assert data == yaml.safe_load(text)
    assert data["m"] == {"x": 0, "y": 2, "z": 4}  # type: ignore[index]


def test_merged_values_keep_their_source_position() -> None:
    root = compose("base: &b {x: 1}\nm:\n  <<: *b\n", "t.yaml")
    assert root is not None
    flatten_merges(root)
    key, value = locate(root, ("m", "x"))
    assert key is not None and position(value) == (1, 14)


def test_unknown_tags_and_bad_explicit_scalars_are_problems() -> None:
    data, problems = data_of("a: !!python/tuple [1]\nb: !!int abc\nc: !foo x\nd: !!set {x}\n")
    assert data == {"a": None, "b": None, "c": None, "d": None}
    assert problems == [
        "the tag '!!python/tuple' is not allowed here",
        "'abc' cannot be read as !!int",
        "the tag '!foo' is not allowed here",
        "the tag '!!set' is not allowed here",
    ]


def test_alias_expansion_is_bounded() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    root = compose("\n".join(lines), "t.yaml")
    assert root is not None
    converted = to_data(root, 10_000)
    assert converted.data is None
    assert "through aliases" in converted.problems[0].message


def test_locate_and_format_path() -> None:
    root = compose("chats:\n  - key: a\n    members:\n      - user: u\n", "t.yaml")
    assert root is not None
    key, value = locate(root, ("chats", 0, "members", 0, "user"))
    assert key is not None and position(key) == (4, 9) and position(value) == (4, 15)
    key, value = locate(root, ("chats", 0, "missing"))
    assert key is None and isinstance(value, MappingNode) and position(value) == (2, 5)
    assert format_path(("chats", 0, "members", 1, "user")) == "$.chats[0].members[1].user"
    assert format_path(("odd key", "x-y")) == "$['odd key']['x-y']"


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("a: [1\n", 2, 1, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", 2, 1, "one YAML document"),
        ("a: *nope\n", 1, 4, "undefined alias 'nope'"),
        ("a: 'x\n", 2, 1, "invalid YAML"),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(BadFile) as info:
        compose(text, "t.yaml")
    assert message in info.value.message
    assert (info.value.line, info.value.col) == (line, col)


def test_decode_refuses_binary_and_reads_boms() -> None:
    with pytest.raises(BadFile, match="binary"):
        decode(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert decode(b"\xef\xbb\xbfa: 1") == "a: 1"
    assert decode("a: é".encode("utf-16")) == "a: é"
