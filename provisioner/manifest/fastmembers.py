"""The fast path's reading of member entries beyond ``user:`` and of the file's defaults
(issue 22): ``defaults:`` (role, membership), ``memberSets:``, ``set:``/``group:`` entries and
``history:`` (``none``, ``all`` or ``{since: ...}``). Like ``fastpath``, it only says what is
plainly valid under the schema (``None`` for anything else: the error path then reports it),
with the enums and patterns read from the schema itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from provisioner.manifest.schema import load_schema, regex
from provisioner.manifest.yamlload import MAP_TAG, SEQ_TAG, STR_TAG, TIMESTAMP_TAG
from provisioner.models import (
    DEFAULT_MEMBERSHIP,
    GroupRef,
    Member,
    MemberSet,
    SetRef,
    Source,
    since_time,
)

_DEFS = load_schema()["$defs"]
_CHAT = _DEFS["chat"]["properties"]
_MEMBER = _DEFS["member"]["properties"]
ROLES = frozenset(_DEFS["role"]["enum"])
MEMBERSHIPS = frozenset(_DEFS["membership"]["enum"])
_HISTORIES = frozenset(_CHAT["history"]["oneOf"][0]["enum"])
_SINCE_RE = regex(_CHAT["history"]["oneOf"][1]["properties"]["since"]["pattern"])
_SET_RE = regex(_DEFS["setName"]["pattern"])
_GROUP_RE = regex(_MEMBER["group"]["pattern"])
_USER_RE = regex(_MEMBER["user"]["pattern"])
_GUID_RE = regex(_DEFS["guid"]["pattern"])


def _is_str(node: Node) -> bool:
    return node.__class__ is ScalarNode and node.tag == STR_TAG


@dataclass(frozen=True)
class Defaults:
    """A file's ``defaults:``: what a chat or member that does not say takes."""

    role: str = "owner"
    membership: str = DEFAULT_MEMBERSHIP


def build_defaults(node: Node | None) -> Defaults | None:
    """The ``defaults:`` mapping if it is plainly valid (None: absent), else ``None``."""
    if node is None:
        return Defaults()
    if node.__class__ is not MappingNode or node.tag != MAP_TAG:
        return None
    found: dict[str, str] = {}
    for k, v in node.value:
        if k.__class__ is not ScalarNode or k.tag != STR_TAG or k.value in found:
            return None
        if not _is_str(v):
            return None
        if k.value == "role" and v.value in ROLES:
            found["role"] = v.value
        elif k.value == "membership" and v.value in MEMBERSHIPS:
            found["membership"] = v.value
        else:
            return None
    return Defaults(**found)


def build_member_sets(root: Node, file: str) -> list[MemberSet] | None:
    """The top-level ``memberSets:`` of a document (``[]`` without), or ``None`` when it is
    not plainly valid under the schema (the error path then reports why). Members without a
    role take the file's ``defaults.role``. Only called on plain mapping documents."""
    if root.__class__ is not MappingNode:
        return None
    found = [v for k, v in root.value if k.__class__ is ScalarNode and k.value == "memberSets"]
    if not found:
        return []
    given = [v for k, v in root.value if k.__class__ is ScalarNode and k.value == "defaults"]
    defaults = build_defaults(given[0] if len(given) == 1 else None)
    node = found[0]
    if len(found) > 1 or defaults is None:
        return None
    if node.__class__ is not MappingNode or node.tag != MAP_TAG:
        return None
    out: list[MemberSet] = []
    names: set[str] = set()
    for k, v in node.value:
        if not _is_str(k) or k.value in names or not _SET_RE.search(k.value):
            return None
        if v.__class__ is not SequenceNode or v.tag != SEQ_TAG or not v.value:
            return None
        entries = [_entry(m, file, defaults.role) for m in v.value]
        if any(e is None for e in entries):
            return None
        names.add(k.value)
        mark = k.start_mark
        out.append(
            MemberSet(
                k.value,
                tuple(e for e in entries if e is not None),
                Source(file, mark.line + 1, mark.column + 1),
            )
        )
    return out


def _entry(m: Node, file: str, default_role: str) -> Member | SetRef | GroupRef | None:
    """One member entry of a set (the rules of ``build_chat``'s member loop)."""
    if m.__class__ is not MappingNode or m.tag != MAP_TAG:
        return None
    fields: dict[str, str] = {}
    for k, v in m.value:
        if not _is_str(k) or not _is_str(v) or k.value in fields:
            return None
        if k.value not in ("user", "role", "tenantId", "set", "group"):
            return None
        fields[k.value] = v.value
    user, role, tenant, name, group = (
        fields.get(f) for f in ("user", "role", "tenantId", "set", "group")
    )
    mark = m.start_mark
    where = Source(file, mark.line + 1, mark.column + 1)
    if role is not None and role not in ROLES:
        return None
    if name is not None or group is not None:
        if user is not None or tenant is not None:
            return None
        return ref_entry(name, group, role, where)
    if user is None or not _USER_RE.search(user):
        return None
    if tenant is not None and not _GUID_RE.search(tenant):
        return None
    return Member(user, role or default_role, tenant, where)


def ref_entry(
    set_name: str | None, group: str | None, role: str | None, where: Source
) -> SetRef | GroupRef | None:
    """A ``set:`` or a ``group:`` entry (exactly one of them), if valid."""
    if set_name is not None and group is None and _SET_RE.search(set_name):
        return SetRef(set_name, role, where)
    if group is not None and set_name is None and _GROUP_RE.search(group):
        return GroupRef(group, role, where)
    return None


def history_value(node: Node) -> str | None:
    """``none``, ``all``, or ``{since: ...}`` as its UTC time (``models.since_time``; the text
    as written when it is no real date, for the rules to report), else None."""
    if _is_str(node):
        return node.value if node.value in _HISTORIES else None
    if node.__class__ is not MappingNode or node.tag != MAP_TAG or len(node.value) != 1:
        return None
    ((k, v),) = node.value
    if not (_is_str(k) and k.value == "since" and v.__class__ is ScalarNode):
        return None
    # An unquoted date (``since: 2025-03-01``) is YAML's timestamp: read as the text written.
    if v.tag not in (STR_TAG, TIMESTAMP_TAG) or not _SINCE_RE.search(v.value):
        return None
    return since_time(v.value) or v.value
