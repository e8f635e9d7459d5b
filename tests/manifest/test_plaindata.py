from __future__ import annotations

import yaml

from provisioner.manifest.plaindata import flatten_merges, to_data
from provisioner.manifest.yamlload import compose, locate, position


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
