"""YAML with positions, loaded safely.

Manifests are *composed* (``yaml.compose`` with libyaml's ``CSafeLoader``), never constructed
by PyYAML: the result is a tree of nodes that keeps every value's line and column and runs no
constructor at all, so a ``!!python/object`` tag is just an unknown tag we report. The manifest
builder reads valid documents straight from the nodes (fast path); only when something is off
does ``to_data`` turn the tree into plain data for JSON Schema, reporting on the way what plain
PyYAML would hide or choke on: duplicate keys (PyYAML keeps the last one silently), tags other
than the YAML core types, non-scalar keys, alias expansion beyond a budget ("billion laughs")
and nesting beyond a fixed depth.

Size limits: libyaml itself refuses nesting deeper than 1000 levels with a ScannerError; we
stop at ``MAX_DEPTH`` (a manifest needs 5), read at most ``MAX_FILE_BYTES``, and let aliases
expand to at most ``alias_budget(text)`` nodes.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32

TAG_PREFIX = "tag:yaml.org,2002:"
STR_TAG = TAG_PREFIX + "str"
INT_TAG = TAG_PREFIX + "int"
MAP_TAG = TAG_PREFIX + "map"
SEQ_TAG = TAG_PREFIX + "seq"
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


class _Expanded(Exception):
    pass


def flatten_merges(root: Node) -> list[Problem]:
    """Resolve ``<<`` merge keys in place, the way PyYAML's SafeConstructor would, except that
    explicit keys override merged ones without counting as duplicates. Each merged pair keeps
    its source position (the anchored mapping it came from)."""
    problems: list[Problem] = []
    done: set[int] = set()
    active: set[int] = set()

    def visit(node: Node, path: JsonPath, depth: int) -> bool:
        """False when ``node`` is being visited already (a cycle through aliases)."""
        if depth > MAX_DEPTH or id(node) in done:
            return True
        if id(node) in active:
            return False
        active.add(id(node))
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                visit(item, (*path, i), depth + 1)
        elif isinstance(node, MappingNode):
            own: list[tuple[Node, Node]] = []
            merged: list[tuple[Node, Node]] = []
            for key, value in node.value:
                if key.tag != MERGE_TAG:
                    visit(value, (*path, key_name(key)), depth + 1)
                    own.append((key, value))
                    continue
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        problems.append(
                            Problem(
                                path,
                                source,
                                "a merge key (<<) needs a mapping or a list of mappings",
                            )
                        )
                        continue
                    if visit(source, path, depth + 1):
                        merged.extend(source.value)
                    else:
                        problems.append(
                            Problem(path, key, "a merge key (<<) includes the mapping it is in")
                        )
            if merged:
                seen = {key_name(k) for k, _ in own}
                for key, value in merged:  # earlier sources win, per the YAML merge spec
                    name = key_name(key)
                    if name not in seen:
                        seen.add(name)
                        own.append((key, value))
                node.value = own
        active.discard(id(node))
        done.add(id(node))
        return True

    visit(root, (), 0)
    return problems


def key_name(node: Node) -> str:
    """A mapping key as the schema sees it: the text of a scalar (``yes:`` is the field
    ``'yes'``, not ``True``), a placeholder for collections."""
    if isinstance(node, ScalarNode):
        return str(node.value)
    return "<mapping>" if isinstance(node, MappingNode) else "<list>"


_constructor = SafeConstructor()


@dataclass
class Converted:
    data: object = None
    problems: list[Problem] = field(default_factory=list)
    # Paths whose value was replaced by a placeholder after a problem was reported there;
    # schema errors at or below them would only repeat it.
    bad_paths: list[JsonPath] = field(default_factory=list)


def to_data(root: Node, budget: int) -> Converted:
    """Plain data (dict/list/str/int/...) for JSON Schema, with every problem PyYAML itself
    would not report. Only used on the error path; valid manifests never get here."""
    out = Converted()
    count = 0
    too_deep: list[JsonPath] = []

    def conv(node: Node, path: JsonPath, depth: int) -> object:
        nonlocal count
        count += 1
        if count > budget:
            raise _Expanded(node)
        if depth > MAX_DEPTH:
            if not too_deep:  # once is enough (a cycle through aliases hits this everywhere)
                too_deep.append(path)
                out.problems.append(
                    Problem(path, node, f"the document is nested more than {MAX_DEPTH} levels deep")
                )
            out.bad_paths.append(path)
            return None
        if isinstance(node, ScalarNode):
            return scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != SEQ_TAG:
                return unsupported(node, path)
            return [conv(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != MAP_TAG:
                return unsupported(node, path)
            result: dict[str, object] = {}
            first: dict[str, Node] = {}
            for key, value in node.value:
                if not isinstance(key, ScalarNode):
                    out.problems.append(
                        Problem(path, key, "a mapping key must be a plain string, not a collection")
                    )
                    continue
                if key.tag == MERGE_TAG:
                    continue  # reported by flatten_merges
                name = key_name(key)
                if name in first:
                    line, _ = position(first[name])
                    out.problems.append(
                        Problem(
                            path,
                            key,
                            f"duplicate key '{name}' (first set on line {line})",
                            hint="YAML keeps only one of them; remove the other",
                        )
                    )
                    continue
                first[name] = key
                result[name] = conv(value, (*path, name), depth + 1)
            return result
        return unsupported(node, path)  # pragma: no cover - yaml has three node kinds

    def scalar(node: ScalarNode, path: JsonPath) -> object:
        if node.tag == STR_TAG:
            return node.value
        if node.tag not in SCALAR_TAGS:
            return unsupported(node, path)
        try:
            return _constructor.yaml_constructors[node.tag](_constructor, node)
        except Exception:  # e.g. `!!int abc`: a user mistake, never a crash
            out.problems.append(
                Problem(path, node, f"{node.value!r} cannot be read as {short_tag(node.tag)}")
            )
            out.bad_paths.append(path)
            return None

    def unsupported(node: Node, path: JsonPath) -> object:
        out.problems.append(
            Problem(
                path,
                node,
                f"the tag '{short_tag(node.tag)}' is not allowed here",
                hint="manifests hold plain YAML data: strings, numbers, lists and mappings",
            )
        )
        out.bad_paths.append(path)
        return None

    try:
        out.data = conv(root, (), 0)
    except _Expanded as exc:
        node = exc.args[0]
        out.problems.append(
            Problem(
                (),
                node,
                f"the document expands to more than {budget:,} values through aliases",
                hint="this looks like a 'billion laughs' document; use fewer nested aliases",
            )
        )
        out.bad_paths.append(())
        out.data = None
    return out


def short_tag(tag: str) -> str:
    return "!!" + tag[len(TAG_PREFIX) :] if tag.startswith(TAG_PREFIX) else tag


def locate(root: Node, path: JsonPath) -> tuple[Node | None, Node]:
    """``(key node, value node)`` at a JSON path. When the path does not exist in full, the
    value node is the deepest one that does and the key node is ``None`` (it is also ``None``
    for list items and the root). The first of duplicate keys wins, as in ``to_data``."""
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
