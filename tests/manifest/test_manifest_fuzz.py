"""Property tests: arbitrary input never crashes the loader, and the fast path agrees with
the JSON Schema path on manifest-shaped documents."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from provisioner.manifest import fastpath
from provisioner.manifest import load as manifest
from provisioner.manifest.load import validate_paths
from provisioner.manifest.yamlload import alias_budget, compose

# PROVISION_FUZZ_EXAMPLES=5000 for a longer hunt than the default run's.
EXAMPLES = int(os.environ.get("PROVISION_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def validate_text(data: bytes) -> manifest.ValidationResult:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_bytes(data)
        result = validate_paths([str(path)])
    for d in result.diagnostics:
        assert d.message and d.line >= 0 and d.col >= 0
    assert result.ok == (result.desired is not None)
    return result


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=25,
)


@SETTINGS
@given(documents)
def test_any_yaml_document_is_validated_without_crashing(doc: object) -> None:
    validate_text(yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`, \n\t?<=~1.x\\")), max_size=80))
def test_any_yaml_like_text_is_validated_without_crashing(text: str) -> None:
    validate_text(text.encode("utf-8"))


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_are_validated_without_crashing(data: bytes) -> None:
    validate_text(data)


# --- manifest-shaped documents: fast path == schema path ------------------------------------
# Valid manifests, then up to two mutations (a value replaced by an odd one, a field removed or
# added). Rules (duplicate users, keys...) are checked after both paths, so they are not part
# of this comparison.

GUID = "8b081ef6-4792-4def-b2c9-c363a1bf41d5"
good_users = st.sampled_from([GUID, GUID.upper(), "a@contoso.com", "o'b@x.io", "g_x.com#EXT#@t.io"])
member = st.fixed_dictionaries(
    {"user": good_users},
    optional={"role": st.sampled_from(["owner", "guest"]), "tenantId": st.just(GUID)},
)
keys = st.sampled_from(["team", "a.b_c-1", "0", "x" * 128])
one_on_one = st.fixed_dictionaries(
    {"chatType": st.just("oneOnOne"), "members": st.lists(member, min_size=2, max_size=2)},
    optional={"key": keys},
)
group = st.fixed_dictionaries(
    {
        "key": keys,
        "chatType": st.just("group"),
        "members": st.lists(member, min_size=2, max_size=4),
    },
    optional={"topic": st.sampled_from(["Topic", "x" * 250, "é 🎉", "a/b"])},
)
manifests = st.fixed_dictionaries(
    {"version": st.just(1), "chats": st.lists(one_on_one | group, max_size=3)},
    optional={"defaults": st.sampled_from([{}, {"role": "guest"}, {"role": "owner"}])},
)
odd_values = st.sampled_from(
    [
        None,
        True,
        0,
        1,
        2,
        1.5,
        "",
        "x",
        "a:b",
        "Team",
        "t\n",
        "oneonone",
        "group",
        "oneOnOne",
        "guest",
        "admin",
        "x" * 251,
        "x" * 129,
        "8ba98gf6-7fc2-4eb2-c7f2-aef9f21fd98g",
        "a@b",
        GUID,
        [],
        {},
        ["a@contoso.com"],
        {"user": "a@contoso.com"},
    ]
).map(copy.deepcopy)  # mutate() changes drawn containers; never the strategy's own
field_names = st.sampled_from(
    [
        "version",
        "chats",
        "defaults",
        "key",
        "chatType",
        "topic",
        "members",
        "user",
        "role",
        "tenantId",
        "chatTyp",
        "extra",
    ]
)


def containers(node: object) -> list[object]:
    found: list[object] = [node] if isinstance(node, (dict, list)) else []
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        found.extend(containers(child))
    return found


def mutate(doc: dict[str, object], data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(0, 2))):
        target = data.draw(st.sampled_from(containers(doc)))
        if isinstance(target, dict):
            name = data.draw(
                st.sampled_from(sorted(target)) | field_names if target else field_names
            )
            if data.draw(st.booleans()) and name in target:
                del target[name]
            else:
                target[name] = data.draw(odd_values)
        elif isinstance(target, list):
            if len(target) > 0 and data.draw(st.booleans()):
                target.pop(data.draw(st.integers(0, len(target) - 1)))
            else:
                target.append(data.draw(odd_values | member))


@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests, st.booleans(), st.data())
def test_fast_path_agrees_with_the_schema_path(
    doc: dict[str, object], flow: bool, data: st.DataObject
) -> None:
    doc = copy.deepcopy(doc)  # strategies may hand out shared objects; never mutate those
    mutate(doc, data)
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    budget = alias_budget(text)
    root = compose(text, "m.yaml")
    assert root is not None
    fast = fastpath.build_document(root, "m.yaml", budget)
    slow = manifest._slow_file(compose(text, "m.yaml"), "m.yaml", budget)  # type: ignore[arg-type]
    event("valid" if fast is not None else "invalid")
    if fast is None:
        assert slow.diagnostics, f"fast path refused a valid document:\n{text}"
        return
    assert slow.diagnostics == [], f"fast path accepted an invalid document:\n{text}"
    assert [e.chat for e in slow.entries] == fast
    assert [e.chat.source for e in slow.entries] == [c.source for c in fast]


def test_fast_path_refuses_what_it_does_not_know_and_the_schema_decides() -> None:
    # Documented divergence: forms of `version: 1` other than the plain `1` (here 1.0, which
    # JSON Schema counts as the integer 1) go through the schema path and are accepted there.
    result = validate_text(b"version: 1.0\nchats: []\n")
    assert result.ok
