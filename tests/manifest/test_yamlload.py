from __future__ import annotations

import pytest
from yaml.nodes import MappingNode

from provisioner.manifest.yamlload import (
    BadFile,
    compose,
    decode,
    format_path,
    locate,
    position,
)


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
