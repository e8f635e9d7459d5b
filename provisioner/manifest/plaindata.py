"""The error path's view of a YAML node tree: merge keys resolved, then plain data for JSON
Schema, with every problem plain PyYAML would hide or choke on.

Only manifests that the fast path (``fastpath``) refuses get here. ``flatten_merges`` resolves
``<<`` in place; ``to_data`` converts the tree to dict/list/str/int/... and reports duplicate
keys (PyYAML keeps the last one silently), tags other than the YAML core types, non-scalar
keys, alias expansion beyond a budget ("billion laughs", see ``yamlload.alias_budget``) and
nesting beyond ``MAX_DEPTH``. Where a value was replaced by a placeholder after a problem, its
path goes to ``bad_paths`` so that JSON Schema does not report it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from provisioner.manifest.yamlload import (
    MAP_TAG,
    MAX_DEPTH,
    MERGE_TAG,
    SCALAR_TAGS,
    SEQ_TAG,
    STR_TAG,
    TAG_PREFIX,
    TIMESTAMP_TAG,
    JsonPath,
    Problem,
    key_name,
    position,
)


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


_constructor = SafeConstructor()


@dataclass
class Converted:
    data: object = None
    problems: list[Problem] = field(default_factory=list)
    # Paths whose value was replaced by a placeholder after a problem was reported there;
    # schema errors at or below them would only repeat it.
    bad_paths: list[JsonPath] = field(default_factory=list)


class _Expanded(Exception):
    pass


def to_data(root: Node, budget: int) -> Converted:
    """Plain data (dict/list/str/int/...) for JSON Schema, with every problem PyYAML itself
    would not report. Only used on the error path; valid manifests never get here."""
    converter = _Converter(budget)
    out = converter.out
    try:
        out.data = converter.value(root, (), 0)
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


class _Converter:
    """One conversion: its result and problems (``out``), and the values counted so far
    against the alias budget (``_Expanded`` once it is spent)."""

    def __init__(self, budget: int) -> None:
        self.out = Converted()
        self.budget = budget
        self.count = 0
        self.too_deep = False

    def value(self, node: Node, path: JsonPath, depth: int) -> object:
        self.count += 1
        if self.count > self.budget:
            raise _Expanded(node)
        if depth > MAX_DEPTH:
            return self.nested_too_deep(node, path)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != SEQ_TAG:
                return self.unsupported(node, path)
            return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != MAP_TAG:
                return self.unsupported(node, path)
            return self.mapping(node, path, depth)
        return self.unsupported(node, path)  # pragma: no cover - yaml has three node kinds

    def mapping(self, node: MappingNode, path: JsonPath, depth: int) -> dict[str, object]:
        result: dict[str, object] = {}
        first: dict[str, Node] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                self.out.problems.append(
                    Problem(path, key, "a mapping key must be a plain string, not a collection")
                )
                continue
            if key.tag == MERGE_TAG:
                continue  # reported by flatten_merges
            name = key_name(key)
            if name in first:
                line, _ = position(first[name])
                self.out.problems.append(
                    Problem(
                        path,
                        key,
                        f"duplicate key '{name}' (first set on line {line})",
                        hint="YAML keeps only one of them; remove the other",
                    )
                )
                continue
            first[name] = key
            result[name] = self.value(value, (*path, name), depth + 1)
        return result

    def scalar(self, node: ScalarNode, path: JsonPath) -> object:
        if node.tag == STR_TAG:
            return node.value
        if node.tag == TIMESTAMP_TAG and path[-1:] in (("expires",), ("since",)):
            return node.value  # an unquoted date is the text written (fastpath.TIMESTAMP_TAG)
        if node.tag not in SCALAR_TAGS:
            return self.unsupported(node, path)
        try:
            return _constructor.yaml_constructors[node.tag](_constructor, node)
        except Exception:  # e.g. `!!int abc`: a user mistake, never a crash
            self.out.problems.append(
                Problem(path, node, f"{node.value!r} cannot be read as {short_tag(node.tag)}")
            )
            self.out.bad_paths.append(path)
            return None

    def nested_too_deep(self, node: Node, path: JsonPath) -> object:
        if not self.too_deep:  # once is enough (a cycle through aliases hits this everywhere)
            self.too_deep = True
            self.out.problems.append(
                Problem(path, node, f"the document is nested more than {MAX_DEPTH} levels deep")
            )
        self.out.bad_paths.append(path)
        return None  # the placeholder

    def unsupported(self, node: Node, path: JsonPath) -> object:
        self.out.problems.append(
            Problem(
                path,
                node,
                f"the tag '{short_tag(node.tag)}' is not allowed here",
                hint="manifests hold plain YAML data: strings, numbers, lists and mappings",
            )
        )
        self.out.bad_paths.append(path)
        return None  # the placeholder


def short_tag(tag: str) -> str:
    return "!!" + tag[len(TAG_PREFIX) :] if tag.startswith(TAG_PREFIX) else tag
