"""``generators:``: chats made from data, one chat per row and template (issue 23).

A generator reads rows from a CSV, YAML or JSON file next to the manifest, from an inline
``rows:`` list, or from an Entra ID group's users (``groupsource``: read when planning), and
expands each of its ``chats:`` templates once per row::

    generators:
      - name: onboarding
        source: {csv: hires.csv}          # name,upn,manager,buddy
        chats:
          - key: onboarding-{upn|slug}
            chatType: group
            topic: Welcome {name}
            members: [{user: "{upn}"}, {user: "{manager}"}, {user: "{buddy}"}]
          - key: buddy-{upn|slug}
            chatType: oneOnOne
            members: [{user: "{upn}"}, {user: "{buddy}"}]

The substitution is deliberately small (no template engine, nothing runs): ``{field}`` is the
row's value, ``{field|slug}`` the value in lower case with every run of characters a key may
not hold turned into ``-`` (``Ana.Silva@contoso.com`` -> ``ana.silva-contoso.com``),
``{field|lower}`` and ``{field|upper}`` change case, ``{{`` and ``}}`` are braces.

Each expanded chat is a YAML node tree whose every node is marked with the row's position, and
goes through exactly what a hand-written chat goes through: the fast path
(``fastpath.build_chat``), JSON Schema for the error messages when it is not plainly valid, and
Graph's rules across all chats (``rules``: duplicate keys, pairs, members). So an error in a
generated chat points at the row (``hires.csv:17:1``) and names the template's position in its
hint. A field missing from the source or an unknown filter is reported once, at the template.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from provisioner.errors import Diagnostic
from provisioner.manifest import fastmembers, fastpath, groupsource
from provisioner.manifest.plaindata import to_data
from provisioner.manifest.rules import Entry
from provisioner.manifest.yamlload import (
    MAP_TAG,
    SEQ_TAG,
    STR_TAG,
    BadFile,
    JsonPath,
    compose,
    decode,
    format_path,
    locate,
    position,
    read_bytes,
)
from provisioner.models import GroupGenerator, Source

#: Rows one generator may expand (every input is bounded); 100,000 chats is ten times the
#: largest manifest the benchmarks plan.
MAX_ROWS = 100_000
FILTERS: dict[str, Callable[[str], str]] = {
    "slug": lambda v: re.sub(r"[^a-z0-9._-]+", "-", v.lower()).strip("-._"),
    "lower": str.lower,
    "upper": str.upper,
}
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}|]*)(?:\|([^{}]*))?\}|[{}]")
_CHATS_KEY = ScalarNode(STR_TAG, "chats")

Part = str | tuple[str, str | None]  # literal text, or (field, filter)


@dataclass(frozen=True)
class Row:
    """One row of a source: its values by field, and where it is (1-based)."""

    values: dict[str, str]
    file: str
    line: int
    col: int = 1
    label: str | None = None  # put before its errors (a group's user: ``user ana@...``)
    origin: str | None = None  # what the plan shows it came from, if not file:line


@dataclass
class Expanded:
    """What the generators of one manifest file made: rule entries (one per chat), the
    diagnostics of the rows and templates, how many chats were read, and the generators
    whose group was not read (``groupsource``)."""

    entries: list[Entry] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    chats: int = 0
    deferred: list[GroupGenerator] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def expand(
    root: Node,
    file: str,
    defaults: fastmembers.Defaults,
    digest: Callable[[bytes], object],
    groups: groupsource.GroupRows | None = None,
) -> Expanded:
    """Expand every generator of a document whose ``generators`` passed the schema;
    ``groups``: the users of the groups read for ``source: {group: ...}`` (None: offline)."""
    out = Expanded()
    _, seq = locate(root, ("generators",))
    if not isinstance(seq, SequenceNode):
        return out
    for g, gen in enumerate(seq.value):
        try:
            _expand_one(gen, g, file, defaults, digest, out, groups)
        except _Refused as exc:
            out.diagnostics.append(exc.diagnostic)
    return out


def _expand_one(
    gen: Node,
    g: int,
    file: str,
    defaults: fastmembers.Defaults,
    digest: Callable[[bytes], object],
    out: Expanded,
    groups: groupsource.GroupRows | None,
) -> None:
    name = _scalar(gen, "name")
    rows, fields = _rows(gen, g, file, digest, groups)
    _, templates = locate(gen, ("chats",))
    assert isinstance(templates, SequenceNode)
    compiled = [
        _compile(t, fields, file, ("generators", g, "chats", i))
        for i, t in enumerate(templates.value)
    ]
    if rows is None:  # a group not read yet (offline): the templates are checked, no more
        _, group = locate(gen, ("source", "group"))
        assert isinstance(group, ScalarNode)
        out.deferred.append(groupsource.deferred(gen, file, name, str(group.value)))
        return
    wheres = [f"generator {name}, template at {_at(file, tpl)}" for tpl in templates.value]
    for row in rows:
        mark = Mark(row.file, 0, row.line - 1, row.col - 1, None, 0)
        at = Source(row.file, row.line, row.col)
        origin = row.origin or f"generator {name}, {row.file}:{row.line}"
        for t, (template, parts) in enumerate(zip(templates.value, compiled, strict=True)):
            out.chats += 1
            try:
                node = _instantiate(template, parts, row, mark)
            except _Refused as exc:
                message = _labelled(row, exc.diagnostic.message)
                out.diagnostics.append(replace(exc.diagnostic, message=message, hint=wheres[t]))
                continue
            display = ("generators", g, "chats", t)
            chat = fastpath.build_chat(node, row.file, defaults, at, origin)
            doc = MappingNode(MAP_TAG, [(_CHATS_KEY, SequenceNode(SEQ_TAG, [node]))])
            if chat is None:
                out.diagnostics.extend(_problems(doc, row, display, wheres[t]))
                continue
            entry = Entry(chat, row.file, 0, doc, display=display, origin=wheres[t])
            out.entries.append(replace(entry, label=row.label) if row.label else entry)


def _rows(
    gen: Node,
    g: int,
    file: str,
    digest: Callable[[bytes], object],
    groups: groupsource.GroupRows | None,
) -> tuple[list[Row] | None, list[str]]:
    _, source = locate(gen, ("source",))
    assert isinstance(source, MappingNode) and len(source.value) == 1
    key, value = source.value[0]
    kind = key.value
    if kind == "group":  # the users of an Entra ID group, at the generator's line
        assert isinstance(value, ScalarNode)
        found = groupsource.user_rows(_scalar(gen, "name"), str(value.value), groups)
        line, col = position(gen)
        rows = None if found is None else [Row(v, file, line, col, *more) for v, *more in found]
        return rows, list(groupsource.GROUP_FIELDS)
    if kind == "rows":
        assert isinstance(value, SequenceNode)
        return _node_rows(value, file, ("generators", g, "source", "rows"))
    assert isinstance(value, ScalarNode)
    path = Path(file).parent / value.value
    shown = str(path)
    try:
        data = read_bytes(path)
        digest(len(data).to_bytes(8, "big"))
        digest(data)
        text = decode(data)
    except BadFile as exc:
        raise _Refused(
            _diag(
                file,
                value,
                f"{kind} source {shown}: {exc.message}",
                ("generators", g, "source", kind),
                exc.hint,
            )
        ) from None
    if not path.is_file():
        raise _Refused(
            _diag(
                file,
                value,
                f"{kind} source {shown} is not a regular file",
                ("generators", g, "source", kind),
            )
        )
    if kind == "csv":
        return _csv_rows(text, shown)
    try:
        doc = compose(text, shown)
    except BadFile as exc:
        raise _Refused(Diagnostic(shown, exc.line, exc.col, exc.message, "$", exc.hint)) from None
    if not isinstance(doc, SequenceNode):
        raise _Refused(
            Diagnostic(
                shown,
                *(position(doc) if doc is not None else (0, 0)),
                f"a {kind} source holds a list of rows (mappings)",
            )
        )
    return _node_rows(doc, shown, ())


def _csv_rows(text: str, file: str) -> tuple[list[Row], list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise _Refused(
            Diagnostic(file, 1, 1, "the CSV file is empty: its first line names the fields")
        ) from None
    except csv.Error as exc:
        raise _Refused(Diagnostic(file, 1, 1, f"not a CSV file: {exc}")) from None
    fields = [h.strip() for h in header]
    seen: set[str] = set()
    for i, name in enumerate(fields):
        if not name or name in seen:
            what = "an empty field name" if not name else f"the field name '{name}' twice"
            raise _Refused(Diagnostic(file, 1, 1, f"the header has {what} (column {i + 1})"))
        seen.add(name)
    rows: list[Row] = []
    start = reader.line_num + 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            if len(record) != len(fields):
                raise _Refused(
                    Diagnostic(
                        file, line, 1, f"the row has {len(record)} fields, the header {len(fields)}"
                    )
                )
            rows.append(
                Row(dict(zip(fields, (v.strip() for v in record), strict=True)), file, line)
            )
            if len(rows) > MAX_ROWS:
                raise _Refused(
                    Diagnostic(
                        file, line, 1, f"more than {MAX_ROWS:,} rows", hint="split the source"
                    )
                )
    except csv.Error as exc:
        raise _Refused(Diagnostic(file, start, 1, f"not a CSV row: {exc}")) from None
    return rows, fields


def _node_rows(seq: SequenceNode, file: str, path: JsonPath) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    fields: dict[str, None] = {}
    for i, item in enumerate(seq.value):
        line, col = position(item)
        if not isinstance(item, MappingNode):
            raise _Refused(
                Diagnostic(
                    file,
                    line,
                    col,
                    "a row is a mapping of field names to values",
                    format_path((*path, i)),
                )
            )
        values: dict[str, str] = {}
        for k, v in item.value:
            if not isinstance(k, ScalarNode) or not isinstance(v, ScalarNode):
                raise _Refused(
                    Diagnostic(
                        file,
                        line,
                        col,
                        "a row's fields are plain names and values",
                        format_path((*path, i)),
                    )
                )
            values[str(k.value)] = str(v.value).strip()
            fields.setdefault(str(k.value))
        rows.append(Row(values, file, line, col))
        if len(rows) > MAX_ROWS:
            raise _Refused(
                Diagnostic(file, line, col, f"more than {MAX_ROWS:,} rows", hint="split the source")
            )
    return rows, list(fields)


def _compile(
    template: Node, fields: Sequence[str], file: str, path: JsonPath
) -> dict[int, list[Part]]:
    """The placeholders of every string in ``template``, by node id; a field the source does
    not have, an unknown filter or a lone brace is refused here, once, at the template."""
    out: dict[int, list[Part]] = {}
    known = set(fields)
    for node, here in _strings(template, path):
        parts: list[Part] = []
        pos = 0
        for m in _TOKEN.finditer(node.value):
            if m.start() > pos:
                parts.append(node.value[pos : m.start()])
            pos = m.end()
            text = m.group(0)
            if text in ("{{", "}}"):
                parts.append(text[0])
                continue
            if text in ("{", "}"):
                raise _Refused(
                    _diag(
                        file,
                        node,
                        f"a lone '{text}' in {node.value!r}",
                        here,
                        "write {{ or }} for a brace",
                    )
                )
            name, flt = m.group(1).strip(), m.group(2)
            if name not in known:
                listed = ", ".join(fields) or "none"
                raise _Refused(
                    _diag(
                        file,
                        node,
                        f"'{name}' is not a field of the source (its fields: {listed})",
                        here,
                    )
                )
            if flt is not None and flt.strip() not in FILTERS:
                raise _Refused(
                    _diag(
                        file,
                        node,
                        f"unknown filter '{flt}'",
                        here,
                        "filters: " + ", ".join(FILTERS),
                    )
                )
            parts.append((name, flt.strip() if flt is not None else None))
        if pos < len(node.value):
            parts.append(node.value[pos:])
        if any(isinstance(p, tuple) for p in parts) or "{" in node.value or "}" in node.value:
            out[id(node)] = parts
    _mark_containers(template, out)
    return out


def _mark_containers(node: Node, parts: dict[int, list[Part]]) -> bool:
    """Add every mapping and list that holds a string with placeholders to ``parts`` (with no
    parts of its own), so `_instantiate` copies exactly those. True when ``node`` is marked."""
    if isinstance(node, ScalarNode):
        return id(node) in parts
    children = [v for _, v in node.value] if isinstance(node, MappingNode) else node.value
    found = [_mark_containers(child, parts) for child in children]
    if any(found):
        parts[id(node)] = []
    return any(found)


def _strings(node: Node, path: JsonPath) -> Iterator[tuple[ScalarNode, JsonPath]]:
    if isinstance(node, ScalarNode):
        if node.tag == STR_TAG:
            yield node, path
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            yield from _strings(v, (*path, str(k.value)))
    elif isinstance(node, SequenceNode):
        for i, v in enumerate(node.value):
            yield from _strings(v, (*path, i))


def _instantiate(node: Node, parts: dict[int, list[Part]], row: Row, mark: Mark) -> Node:
    """The template ``node`` for ``row``: the strings with placeholders filled in, and the
    mappings and lists that hold them, are new nodes marked with the row; everything else
    (keys, literal values) is the template's own node, shared by every row. Diagnostics of a
    generated chat point at its row whatever node they name (``rules.Entry.display``)."""
    if id(node) not in parts:
        return node
    if isinstance(node, ScalarNode):
        value = "".join([p if p.__class__ is str else _fill(p, row) for p in parts[id(node)]])
        return ScalarNode(node.tag, value, mark, mark)
    if isinstance(node, MappingNode):
        pairs = [(k, _instantiate(v, parts, row, mark)) for k, v in node.value]
        return MappingNode(node.tag, pairs, mark, mark)
    assert isinstance(node, SequenceNode)
    items = [_instantiate(v, parts, row, mark) for v in node.value]
    return SequenceNode(node.tag, items, mark, mark)


def _fill(part: Part, row: Row) -> str:
    if isinstance(part, str):
        return part
    name, flt = part
    value = row.values.get(name, "")
    if not value:
        raise _Refused(
            Diagnostic(row.file, row.line, row.col, f"the field '{name}' is empty in this row")
        )
    return FILTERS[flt](value) if flt is not None else value


def _problems(doc: MappingNode, row: Row, display: JsonPath, where: str) -> list[Diagnostic]:
    """Why an expanded chat is not valid, in JSON Schema's words, at the row."""
    from provisioner.manifest.schema import schema_problems

    data = to_data(doc, 10_000).data
    assert isinstance(data, dict)
    problems = schema_problems({"version": 1, **data}, doc, [])
    out = []
    for p in problems:
        shown = format_path((*display, *p.path[2:]))
        message = _labelled(row, p.message)
        out.append(Diagnostic(row.file, row.line, row.col, message, shown, where))
    return out or [
        Diagnostic(
            row.file,
            row.line,
            row.col,
            _labelled(row, "this row makes a chat that is not valid"),
            format_path(display),
            where,
        )
    ]


def _labelled(row: Row, message: str) -> str:
    return f"{row.label}: {message}" if row.label else message


def _scalar(node: Node, name: str) -> str:
    _, value = locate(node, (name,))
    assert isinstance(value, ScalarNode)
    return str(value.value)


def _at(file: str, node: Node) -> str:
    line, col = position(node)
    return f"{file}:{line}:{col}"


def _diag(
    file: str, node: Node, message: str, path: JsonPath, hint: str | None = None
) -> Diagnostic:
    line, col = position(node)
    return Diagnostic(file, line, col, message, format_path(path), hint)
