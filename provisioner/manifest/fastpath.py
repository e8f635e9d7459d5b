"""Chats straight from YAML nodes, for plainly valid manifests (the fast path).

``build_document`` walks a composed node tree once, checks exactly what the manifest JSON
Schema checks and builds the ``Chat``/``Member`` models as it goes. At the first thing that is
not plainly valid it returns ``None`` and reports nothing: ``manifest`` then takes the error
path, where JSON Schema finds and words every problem. So this module only has to be right
about what it accepts: everything it accepts must be valid under the schema, which the golden
and property tests check (tests/manifest/test_manifest_golden.py,
tests/manifest/test_manifest_fuzz.py). Enums,
patterns and limits are read from the schema itself so the two cannot drift apart.

Adding a field (e.g. a per-chat option): add it to the schema, read it in ``build_chat`` (or
``build_document``) and carry it on the model. Until this module knows it, a manifest using
the field takes the error path and, being valid there, makes ``manifest`` raise its "fast path
and schema disagree" internal error, which the golden tests catch at once.

Why it exists: ``jsonschema``'s ``iter_errors`` over a 10,000-chat document costs about as much
as parsing it; this walk costs a fraction (benchmarks/bench_validate.py).
"""

from __future__ import annotations

import re

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from provisioner.manifest.fastmembers import (
    MEMBERSHIPS,
    ROLES,
    Defaults,
    build_defaults,
    history_value,
    ref_entry,
)
from provisioner.manifest.schema import load_schema, regex
from provisioner.manifest.yamlload import (
    INT_TAG,
    MAP_TAG,
    SEQ_TAG,
    STR_TAG,
    TAG_PREFIX,
    TIMESTAMP_TAG,  # an unquoted ``expires: 2026-12-31``: read as the text written
)
from provisioner.models import (
    GROUP,
    HISTORY_NONE,
    ONE_ON_ONE,
    App,
    Chat,
    GroupRef,
    Import,
    Member,
    Move,
    SetRef,
    Source,
    Tab,
    one_on_one_key,
)

BOOL_TAG = TAG_PREFIX + "bool"

_SCHEMA = load_schema()
_DEFS = _SCHEMA["$defs"]
_CHAT = _DEFS["chat"]["properties"]
_MEMBER = _DEFS["member"]["properties"]
_CHAT_TYPES = frozenset(_CHAT["chatType"]["enum"])
_KEY_RE = regex(_DEFS["key"]["pattern"])

_TOPIC_RE = regex(_CHAT["topic"]["pattern"])
_TOPIC_MIN = _CHAT["topic"]["minLength"]
_TOPIC_MAX = _CHAT["topic"]["maxLength"]
_MIN_DIRECT = _CHAT["members"]["then"]["minItems"]  # without set: entries
_USER_RE = regex(_MEMBER["user"]["pattern"])
_GUID_RE = regex(_DEFS["guid"]["pattern"])
_EXPIRES_RE = regex(_CHAT["expires"]["pattern"])
_CHAT_ID_RE = regex(_DEFS["import"]["properties"]["id"]["pattern"])
_APP = _DEFS["app"]["properties"]
_RSC = _APP["consent"]["items"]["properties"]
_RSC_TYPES = frozenset(_RSC["type"]["enum"])
_TAB = _DEFS["tab"]["properties"]
_TAB_NAME_RE = regex(_TAB["name"]["pattern"])
_URL_RE = regex(_DEFS["httpsUrl"]["pattern"])
_URL_MAX = _DEFS["httpsUrl"]["maxLength"]


def build_document(root: Node, file: str, budget: int) -> list[Chat] | None:
    """The chats of a plainly valid document, or ``None`` for anything else."""
    if root.__class__ is not MappingNode or root.tag != MAP_TAG:
        return None
    version = defaults = chats = None
    moved_seen = sets_seen = import_seen = False
    for k, v in root.value:
        if k.__class__ is not ScalarNode or k.tag != STR_TAG:
            return None
        name = k.value
        if name == "chats" and chats is None:
            chats = v
        elif name == "version" and version is None:
            version = v
        elif name == "defaults" and defaults is None:
            defaults = v
        elif name == "moved" and not moved_seen:
            moved_seen = True  # read by build_moves
        elif name == "memberSets" and not sets_seen:
            sets_seen = True  # read by build_member_sets
        elif name == "import" and not import_seen:
            import_seen = True  # read by build_imports
        else:
            return None
    if version is None or version.tag != INT_TAG or version.value != "1":
        return None
    if chats is None or chats.__class__ is not SequenceNode or chats.tag != SEQ_TAG:
        return None
    found_defaults = build_defaults(defaults)
    if found_defaults is None:
        return None
    out: list[Chat] = []
    expanded = 0
    for node in chats.value:
        # Aliases can make one long members list appear in every chat: count (roughly, at
        # least 3 nodes a member) before building, and leave it to the error path to report
        # a document that expands beyond the alias budget.
        expanded += 1
        if node.__class__ is MappingNode:
            for _, v in node.value:
                if v.__class__ is SequenceNode:
                    expanded += 3 * len(v.value)
        if expanded > budget:
            return None
        chat = build_chat(node, file, found_defaults)
        if chat is None:
            return None
        out.append(chat)
    return out


def _is_str(node: Node) -> bool:
    return node.__class__ is ScalarNode and node.tag == STR_TAG


# build_chat is one long function on purpose: it is the fast path's inner loop (once per chat
# and member; 100,000 chats in benchmarks/bench_plan.py) and reads as the schema's chat and
# member definitions, one rule per `return None`, top to bottom. A version with the member loop
# in its own function measured about 2% slower on 20,000 chats (noisy), for no gain in what a
# reader has to hold in mind: the rules stay in the schema's order either way.
def build_chat(
    node: Node,
    file: str,
    defaults: Defaults,
    at: Source | None = None,
    origin: str | None = None,
) -> Chat | None:
    """One chat from its node if it is plainly valid under the schema, else ``None``. A
    generated chat (``manifest.generators``) is placed ``at`` its row, members included, and
    says its ``origin``."""
    if node.__class__ is not MappingNode or node.tag != MAP_TAG:
        return None
    default_role = defaults.role
    key = chat_type = topic = history = membership = expires = None
    protect: bool | None = None
    apps: tuple[App, ...] | None = None
    tabs: tuple[Tab, ...] | None = None
    members: list[Node] | None = None
    for k, v in node.value:
        if k.__class__ is not ScalarNode or k.tag != STR_TAG:
            return None
        name = k.value
        if name == "members":
            if members is not None or v.__class__ is not SequenceNode or v.tag != SEQ_TAG:
                return None
            members = v.value
            continue
        if name == "history" and history is None:
            history = history_value(v)
            if history is None:
                return None
            continue
        if name == "protect" and protect is None:
            protect = _bool(v)
            if protect is None:
                return None
            continue
        if name == "apps" and apps is None:
            apps = build_apps(v, file, at)
            if apps is None:
                return None
            continue
        if name == "tabs" and tabs is None:
            tabs = build_tabs(v, file, at)
            if tabs is None:
                return None
            continue
        if name == "expires" and expires is None and v.__class__ is ScalarNode:
            if v.tag not in (STR_TAG, TIMESTAMP_TAG) or not _EXPIRES_RE.search(v.value):
                return None
            expires = v.value
            continue
        if v.__class__ is not ScalarNode or v.tag != STR_TAG:
            return None
        if name == "chatType" and chat_type is None:
            chat_type = v.value
        elif name == "key" and key is None:
            key = v.value
        elif name == "topic" and topic is None:
            topic = v.value
        elif name == "membership" and membership is None:
            membership = v.value
        else:
            return None
    if members is None or not members:
        return None
    if membership is not None and membership not in MEMBERSHIPS:
        return None
    if chat_type == ONE_ON_ONE:
        if topic is not None or history is not None or membership is not None:
            return None
        if len(members) != 2:
            return None
    elif chat_type != GROUP or key is None:
        return None
    if key is not None and not _KEY_RE.search(key):
        return None
    if topic is not None and not (
        _TOPIC_MIN <= len(topic) <= _TOPIC_MAX and _TOPIC_RE.search(topic)
    ):
        return None
    built: list[Member] = []
    refs: list[Member | SetRef | GroupRef] | None = None  # every entry, once a set/group is
    for m in members:
        if m.__class__ is not MappingNode or m.tag != MAP_TAG:
            return None
        user = role = tenant = set_name = group = None
        for k, v in m.value:
            if k.__class__ is not ScalarNode or k.tag != STR_TAG:
                return None
            if v.__class__ is not ScalarNode or v.tag != STR_TAG:
                return None
            name = k.value
            if name == "user" and user is None:
                user = v.value
            elif name == "role" and role is None:
                role = v.value
            elif name == "tenantId" and tenant is None:
                tenant = v.value
            elif name == "set" and set_name is None:
                set_name = v.value
            elif name == "group" and group is None:
                group = v.value
            else:
                return None
        if role is not None and role not in ROLES:
            return None
        mark = m.start_mark
        if set_name is not None or group is not None:
            ref = ref_entry(
                set_name, group, role, at or Source(file, mark.line + 1, mark.column + 1)
            )
            if ref is None or user is not None or tenant is not None or chat_type == ONE_ON_ONE:
                return None
            if refs is None:
                refs = list(built)
            refs.append(ref)
            continue
        if user is None or not _USER_RE.search(user):
            return None
        if tenant is not None and not _GUID_RE.search(tenant):
            return None
        member = Member(
            user, role or default_role, tenant, at or Source(file, mark.line + 1, mark.column + 1)
        )
        built.append(member)
        if refs is not None:
            refs.append(member)
    if refs is None and len(members) < _MIN_DIRECT:
        return None
    if key is None:
        key = one_on_one_key(built[0].user, built[1].user)
    mark = node.start_mark
    return Chat(
        key,
        chat_type,
        tuple(built),
        topic,
        at or Source(file, mark.line + 1, mark.column + 1),
        history=history or HISTORY_NONE,
        protect=bool(protect),
        membership=membership or defaults.membership,
        entries=tuple(refs) if refs is not None else (),
        expires=expires,
        origin=origin,
        apps=apps or (),
        tabs=tabs or (),
    )


def _bool(node: Node) -> bool | None:
    """A YAML boolean (``true``/``false``, and YAML 1.1's ``yes``/``no``/``on``/``off``, which
    the error path's constructor reads as booleans too), or None."""
    if node.__class__ is not ScalarNode or node.tag != BOOL_TAG:
        return None
    return SafeConstructor.bool_values.get(node.value.lower())


def build_moves(root: Node, file: str) -> list[Move] | None:
    """The top-level ``moved:`` entries of a document (``[]`` without any), or ``None`` when
    they are not plainly valid under the schema (the error path then reports why). Only
    called on documents whose top level is a plain mapping."""
    found = _entries(root, "moved", file, {"from": _KEY_RE, "to": _KEY_RE})
    return None if found is None else [Move(e["from"], e["to"], at) for e, at in found]


def build_imports(root: Node, file: str) -> list[Import] | None:
    """The top-level ``import:`` entries of a document (``[]`` without any), or ``None`` when
    they are not plainly valid under the schema (the error path then reports why)."""
    found = _entries(root, "import", file, {"key": _KEY_RE, "id": _CHAT_ID_RE})
    return None if found is None else [Import(e["key"], e["id"], at) for e, at in found]


def _entries(
    root: Node, name: str, file: str, fields: dict[str, re.Pattern[str]]
) -> list[tuple[dict[str, str], Source]] | None:
    """A top-level list of mappings whose string ``fields`` all match their pattern (and
    nothing else), each with where it starts; ``[]`` without the list, ``None`` when it is
    not plainly valid."""
    if root.__class__ is not MappingNode:
        return None
    found = [v for k, v in root.value if k.__class__ is ScalarNode and k.value == name]
    if not found:
        return []
    if len(found) > 1:
        return None
    seq = found[0]
    if seq.__class__ is not SequenceNode or seq.tag != SEQ_TAG:
        return None
    out: list[tuple[dict[str, str], Source]] = []
    for node in seq.value:
        if node.__class__ is not MappingNode or node.tag != MAP_TAG:
            return None
        got: dict[str, str] = {}
        for k, v in node.value:
            if k.__class__ is not ScalarNode or k.tag != STR_TAG or k.value in got:
                return None
            pattern = fields.get(k.value)
            if pattern is None or not _is_str(v) or not pattern.search(v.value):
                return None
            got[k.value] = v.value
        if len(got) != len(fields):
            return None
        mark = node.start_mark
        out.append((got, Source(file, mark.line + 1, mark.column + 1)))
    return out


def _text(node: Node, max_length: int, min_length: int = 1) -> str | None:
    if node.__class__ is not ScalarNode or node.tag != STR_TAG:
        return None
    value: str = node.value
    return value if min_length <= len(value) <= max_length else None


def _where(node: Node, file: str, at: Source | None) -> Source:
    return at or Source(file, node.start_mark.line + 1, node.start_mark.column + 1)


def build_apps(node: Node, file: str, at: Source | None = None) -> tuple[App, ...] | None:
    """A chat's ``apps:`` if plainly valid under the schema, else None. Naming none or several
    of id/externalId/name is schema-valid; ``App.by`` is then "" or "several" and
    ``rules`` reports it."""
    if node.__class__ is not SequenceNode or node.tag != SEQ_TAG:
        return None
    out = []
    for item in node.value:
        if item.__class__ is not MappingNode or item.tag != MAP_TAG:
            return None
        named: list[tuple[str, str]] = []
        consent: tuple[tuple[str, str], ...] = ()
        seen: set[str] = set()
        for k, v in item.value:
            if k.__class__ is not ScalarNode or k.tag != STR_TAG or k.value in seen:
                return None
            seen.add(k.value)
            if k.value in ("id", "externalId", "name"):
                text = _text(v, _APP[k.value]["maxLength"])
                if text is None:
                    return None
                named.append((k.value, text))
            elif k.value == "consent":
                found = _consent(v)
                if found is None:
                    return None
                consent = found
            else:
                return None
        by, value = named[0] if len(named) == 1 else ("several" if named else "", "")
        out.append(App(by, value, consent, _where(item, file, at)))
    return tuple(out)


def _consent(node: Node) -> tuple[tuple[str, str], ...] | None:
    if node.__class__ is not SequenceNode or node.tag != SEQ_TAG:
        return None
    out = []
    for item in node.value:
        if item.__class__ is not MappingNode or item.tag != MAP_TAG or len(item.value) != 2:
            return None
        fields = {k.value: v for k, v in item.value if k.__class__ is ScalarNode}
        if set(fields) != {"permission", "type"}:
            return None
        permission = _text(fields["permission"], _RSC["permission"]["maxLength"])
        kind = _text(fields["type"], 64)
        if permission is None or kind is None or kind not in _RSC_TYPES:
            return None
        out.append((permission, kind))
    return tuple(out)


def build_tabs(node: Node, file: str, at: Source | None = None) -> tuple[Tab, ...] | None:
    """A chat's ``tabs:`` if plainly valid under the schema, else None."""
    if node.__class__ is not SequenceNode or node.tag != SEQ_TAG:
        return None
    out = []
    for item in node.value:
        if item.__class__ is not MappingNode or item.tag != MAP_TAG:
            return None
        fields: dict[str, str] = {}
        for k, v in item.value:
            if k.__class__ is not ScalarNode or k.tag != STR_TAG or k.value in fields:
                return None
            name = k.value
            if name in ("contentUrl", "websiteUrl", "removeUrl"):
                text = _text(v, _URL_MAX)
                if text is None or not _URL_RE.search(text):
                    return None
            elif name in ("name", "app", "entityId"):
                text = _text(v, _TAB[name]["maxLength"], 0 if name == "entityId" else 1)
                if text is None:
                    return None
            else:
                return None
            fields[name] = text
        if "name" not in fields or "app" not in fields or not _TAB_NAME_RE.search(fields["name"]):
            return None
        out.append(
            Tab(
                fields["name"],
                fields["app"],
                fields.get("entityId"),
                fields.get("contentUrl"),
                fields.get("websiteUrl"),
                fields.get("removeUrl"),
                _where(item, file, at),
            )
        )
    return tuple(out)


def valid_key(key: str) -> bool:
    """A chat key the schema accepts (``validate`` checks duplicates of broken chats' keys)."""
    return bool(_KEY_RE.search(key))
