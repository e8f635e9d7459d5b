"""YAML with positions, loaded safely.

Manifests are *composed* (``yaml.compose`` with libyaml's ``CSafeLoader``), never constructed
by PyYAML: the result is a tree of nodes that keeps every value's line and column and runs no
constructor at all, so a ``!!python/object`` tag is just an unknown tag we report. The manifest
builder reads valid documents straight from the nodes (fast path); only when something is off
does ``plaindata.to_data`` turn the tree into plain data for JSON Schema, reporting on the way
what plain PyYAML would hide or choke on (duplicate keys, tags other than the YAML core types,
non-scalar keys, alias expansion beyond a budget, nesting beyond a fixed depth).

Size limits: libyaml itself refuses nesting deeper than 1000 levels with a ScannerError; we
stop at ``MAX_DEPTH`` (a manifest needs 5), read at most ``MAX_FILE_BYTES``, and let aliases
expand to at most ``alias_budget(text)`` nodes.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32

TAG_PREFIX = "tag:yaml.org,2002:"
STR_TAG = TAG_PREFIX + "str"
INT_TAG = TAG_PREFIX + "int"
MAP_TAG = TAG_PREFIX + "map"
SEQ_TAG = TAG_PREFIX + "seq"
TIMESTAMP_TAG = TAG_PREFIX + "timestamp"
MERGE_TAG = TAG_PREFIX + "merge"
# Core scalar tags we read; everything else (python/*, binary, set, omap, custom !tags) is
# reported, never constructed.
SCALAR_TAGS = frozenset(
    TAG_PREFIX + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)

# libyaml when available (it is in PyYAML's wheels); the pure-Python loader otherwise.
Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathPart = str | int
JsonPath = tuple[PathPart, ...]


class BadFile(Exception):
    """The file cannot be used at all; ``line``/``col`` are 1-based, 0 when unknown."""

    def __init__(self, message: str, hint: str | None = None, line: int = 0, col: int = 0):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.line = line
        self.col = col


@dataclass(frozen=True)
class Problem:
    """A problem at a JSON path; ``node`` is where it is in the source."""

    path: JsonPath
    node: Node
    message: str
    hint: str | None = None


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or ``BadFile`` for anything the OS or the size limit refuses."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise BadFile("is a directory, not a manifest file") from None
    except PermissionError:
        raise BadFile("cannot read file: permission denied") from None
    except OSError as exc:
        raise BadFile(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise BadFile(
            f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
            hint="split the chats over several manifest files",
        )
    return data


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode(data: bytes) -> str:
    """Text of a manifest: UTF-8 (BOM optional) or UTF-16 with a BOM, as YAML allows."""
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise BadFile("is not valid UTF-16 text") from None
    if b"\x00" in data:
        raise BadFile("looks like a binary file (it contains NUL bytes), not a YAML manifest")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        raise BadFile(
            f"is not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="save the manifest as UTF-8",
            line=before.count(b"\n") + 1,
            col=len(before) - (before.rfind(b"\n") + 1) + 1,
        ) from None


_ALIAS = re.compile(r"\*([^\s,\[\]{}]+)")


def compose(text: str, name: str) -> Node | None:
    """The document's node tree (``None`` for an empty document), or ``BadFile`` pointing at
    the syntax error."""
    try:
        return yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if problem == "found undefined alias" and mark is not None:
            # libyaml's message leaves out the name; it is right at the mark.
            alias = _ALIAS.match(text, mark.index)
            if alias:
                problem = f"found undefined alias '{alias.group(1)}'"
        if "expected a single document" in str(exc.context):
            raise BadFile(
                "a manifest file holds one YAML document, but this one has more ('---')",
                line=mark.line + 1 if mark else 0,
                col=mark.column + 1 if mark else 0,
            ) from None
        message = f"invalid YAML: {problem}"
        if exc.context and exc.problem and exc.context_mark and mark is not exc.context_mark:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise BadFile(
            message, line=mark.line + 1 if mark else 0, col=mark.column + 1 if mark else 0
        ) from None
    except yaml.reader.ReaderError as exc:
        # libyaml reports a byte offset into the UTF-8 encoding (and the code point as an
        # int); the pure-Python reader a character offset (and the character).
        before = text[: exc.position]
        if Loader is not yaml.SafeLoader:
            before = text.encode("utf-8")[: exc.position].decode("utf-8", "ignore")
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise BadFile(
            f"invalid YAML: the control character U+{ord(char):04X} is not allowed",
            hint="remove it, or write it as an escape inside double quotes",
            line=before.count("\n") + 1,
            col=len(before) - (before.rfind("\n") + 1) + 1,
        ) from None
    except yaml.YAMLError as exc:
        raise BadFile(f"invalid YAML: {exc}") from None
    except RecursionError:
        # Only the pure-Python composer recurses; libyaml stops at 1000 levels itself.
        raise BadFile("the document is nested too deeply") from None


def position(node: Node) -> tuple[int, int]:
    """1-based (line, column) of a node's start."""
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def alias_budget(text: str) -> int:
    """How many nodes a document may expand to through aliases. A manifest without aliases
    has about one node per 10 characters, so this leaves room for legitimate reuse
    (``members: *team``), while a "billion laughs" document is stopped after ~100,000 nodes
    and quadratic reuse (a huge list aliased in every chat) after a few times the file's
    own size."""
    return 100_000 + len(text) // 2


def key_name(node: Node) -> str:
    """A mapping key as the schema sees it: the text of a scalar (``yes:`` is the field
    ``'yes'``, not ``True``), a placeholder for collections."""
    if isinstance(node, ScalarNode):
        return str(node.value)
    return "<mapping>" if isinstance(node, MappingNode) else "<list>"


def locate(root: Node, path: JsonPath) -> tuple[Node | None, Node]:
    """``(key node, value node)`` at a JSON path. When the path does not exist in full, the
    value node is the deepest one that does and the key node is ``None`` (it is also ``None``
    for list items and the root). The first of duplicate keys wins, as in ``plaindata.to_data``."""
    node: Node = root
    key_node: Node | None = None
    for part in path:
        if isinstance(node, MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != MERGE_TAG and key_name(key) == part:
                    key_node, node = key, value
                    break
            else:
                return None, node
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            key_node, node = None, node.value[part]
        else:
            return None, node
    return key_node, node


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_path(path: JsonPath) -> str:
    """``('chats', 2, 'members')`` -> ``$.chats[2].members``."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.fullmatch(part):
            out.append(f".{part}")
        else:
            out.append("[" + repr(part) + "]")
    return "".join(out)
