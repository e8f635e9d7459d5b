from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provisioner.errors import InputError, ValidationFailed
from provisioner.manifest import fastpath
from provisioner.manifest import load as manifest
from provisioner.manifest.load import load_desired, manifest_files, validate_paths
from provisioner.manifest.yamlload import alias_budget, compose
from provisioner.models import Source, one_on_one_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VALID = Path(__file__).resolve().parents[1] / "data" / "manifests" / "valid"

GROUP = """\
version: 1
chats:
  - key: {key}
    chatType: group
    members:
      - user: megan@contoso.com
      - user: alex@contoso.com
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- manifest_files -------------------------------------------------------------------------


def test_directory_yields_its_yaml_and_yml_files_sorted(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "c.txt", ".hidden.yaml", "d.YAML"):
        write(tmp_path, name, "")
    (tmp_path / "sub.yaml").mkdir()
    (tmp_path / "sub.yaml" / "e.yaml").write_text("")
    assert [p.name for p in manifest_files([str(tmp_path)])] == ["a.yaml", "b.yml"]


def test_a_named_file_is_used_whatever_its_suffix_and_only_once(tmp_path: Path) -> None:
    other = write(tmp_path, "chats.txt", "")
    yaml_file = write(tmp_path, "a.yaml", "")
    files = manifest_files([str(other), str(tmp_path), str(yaml_file)])
    assert files == [other, yaml_file]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.yaml"), "no such file or directory"),
        (lambda d: str(d), "directory has no manifest files"),
    ],
)
def test_unusable_paths_are_input_errors(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError, match=message) as info:
        manifest_files([path])
    assert path in str(info.value)


def test_a_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    try:
        import os

        os.mkfifo(fifo)
    except (AttributeError, OSError):
        pytest.skip("no FIFOs here")
    with pytest.raises(InputError, match="not a regular file"):
        manifest_files([str(fifo)])


def test_no_paths_is_an_input_error() -> None:
    with pytest.raises(InputError):
        manifest_files([])


# --- load_desired ---------------------------------------------------------------------------


def test_examples_form_one_valid_desired_state() -> None:
    desired = load_desired([str(EXAMPLES)])
    assert desired.files == (str(EXAMPLES / "chats.yaml"),)
    assert [c.key for c in desired.chats] == sorted(c.key for c in desired.chats)
    assert len(desired.chats) == 6


@pytest.mark.parametrize("path", sorted((EXAMPLES / "graph-docs").glob("*.yaml")), ids=str)
def test_each_graph_doc_example_is_valid_on_its_own(path: Path) -> None:
    assert len(load_desired([str(path)]).chats) == 1


def test_graph_doc_example_bodies_match_the_documentation() -> None:
    # The request bodies of api-reference/v1.0/api/chat-post.md, examples 1 and 5.
    one = load_desired([str(EXAMPLES / "graph-docs" / "1-one-on-one.yaml")]).chats[0]
    five = load_desired([str(EXAMPLES / "graph-docs" / "5-one-on-one-federated.yaml")]).chats[0]
    url = "https://graph.microsoft.com/v1.0/users('{}')"
    member = {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"]}
    assert one.request_body() == {
        "chatType": "oneOnOne",
        "members": [
            {**member, "user@odata.bind": url.format("8b081ef6-4792-4def-b2c9-c363a1bf41d5")},
            {**member, "user@odata.bind": url.format("82af01c5-f7cc-4a2e-a728-3a5df21afd9d")},
        ],
    }
    members = five.request_body()["members"]
    assert isinstance(members, list)
    assert members[1] == {
        **member,
        "user@odata.bind": url.format("82af01c5-f7cc-4a2e-a728-3a5df21afd9d"),
        "tenantId": "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1",
    }


def test_models_carry_keys_roles_and_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        """\
version: 1
defaults: {role: guest}
chats:
  - chatType: oneOnOne
    members:
      - user: B@contoso.com
        role: owner
      - user: a@contoso.com
  - key: zz
    chatType: group
    topic: T
    members:
      - user: c@contoso.com
      - {user: d@contoso.com, role: owner}
""",
    )
    desired = load_desired([str(path)])
    derived = one_on_one_key("a@contoso.com", "b@contoso.com")
    assert [c.key for c in desired.chats] == sorted([derived, "zz"])
    one = desired.by_key()[derived]
    assert one.chat_type == "oneOnOne" and one.topic is None
    assert [(m.user, m.role) for m in one.members] == [
        ("B@contoso.com", "owner"),
        ("a@contoso.com", "guest"),
    ]
    assert one.source == Source(str(path), 4, 5)
    assert [m.source for m in one.members] == [Source(str(path), 6, 9), Source(str(path), 8, 9)]
    group = desired.by_key()["zz"]
    assert group.topic == "T"
    assert [m.role for m in group.members] == ["guest", "owner"]


def test_role_defaults_to_owner_without_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", GROUP.format(key="k"))
    assert {m.role for m in load_desired([str(path)]).chats[0].members} == {"owner"}


def test_derived_key_does_not_depend_on_member_order_or_case(tmp_path: Path) -> None:
    one = "version: 1\nchats:\n  - chatType: oneOnOne\n    members: [{{user: {}}}, {{user: {}}}]\n"
    a = write(tmp_path, "a.yaml", one.format("X@c.com", "y@c.com"))
    b = write(tmp_path, "b.yaml", one.format("Y@c.com", "x@c.com"))
    assert load_desired([str(a)]).chats[0].key == load_desired([str(b)]).chats[0].key


def test_digest_covers_every_file_in_order(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", GROUP.format(key="a"))
    b = write(tmp_path, "b.yaml", GROUP.format(key="b").replace("megan", "diego"))
    desired = load_desired([str(tmp_path)])
    expected = hashlib.sha256()
    for p in (a, b):
        data = p.read_bytes()
        expected.update(len(data).to_bytes(8, "big") + data)
    assert desired.digest == expected.hexdigest()
    assert desired.files == (str(a), str(b))
    b.write_text(b.read_text() + "# a comment changes the digest\n")
    assert load_desired([str(tmp_path)]).digest != desired.digest


def test_load_desired_raises_with_every_diagnostic_sorted(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", "version: 2\nchats: []\n")
    write(tmp_path, "a.yaml", GROUP.format(key="Bad Key") + "extra: 1\n")
    with pytest.raises(ValidationFailed) as info:
        load_desired([str(tmp_path)])
    diags = info.value.diagnostics
    assert [(Path(d.file).name, d.line) for d in diags] == [
        ("a.yaml", 3),
        ("a.yaml", 8),
        ("b.yaml", 1),
    ]
    assert str(info.value).splitlines()[-1] == "2 files, 1 chat, 3 errors"


def test_summary_counts() -> None:
    result = validate_paths([str(VALID / "two-files")])
    assert result.ok and result.summary == "2 files, 4 chats, 0 errors"


# --- bad input: never a traceback -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"version: 1\x00\x01\x02chats: []", "binary file"),
        (
            b"version: 1\nchats: []\n# caf\xe9\n",
            "is not UTF-8 text (invalid byte 0xe9 at offset 26)",
        ),
        (b"", "file is empty"),
        (b"   \n# nothing\n", "file is empty"),
        (b"version: 1\nchats: []\n\x07", "control character U+0007 is not allowed"),
    ],
)
def test_unreadable_content_is_a_diagnostic(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(data)
    result = validate_paths([str(path)])
    assert len(result.diagnostics) == 1
    assert message in result.diagnostics[0].message
    assert result.diagnostics[0].file == str(path)


def test_bad_bytes_and_characters_are_located(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b"version: 1\nchats: []\n# caf\xe9\n")
    (diag,) = validate_paths([str(path)]).diagnostics
    assert (diag.line, diag.col) == (3, 6)
    path.write_bytes("version: 1\nchats: []\n# café \x07".encode())
    (diag,) = validate_paths([str(path)]).diagnostics
    assert (diag.line, diag.col) == (3, 8)


def test_utf8_bom_crlf_and_utf16_are_read(tmp_path: Path) -> None:
    text = GROUP.format(key="k").replace("\n", "\r\n")
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "utf16.yaml").write_bytes(GROUP.format(key="k2").encode("utf-16"))
    desired = load_desired([str(tmp_path)])
    assert [c.key for c in desired.chats] == ["k", "k2"]
    assert desired.chats[0].members[1].source.line == 7  # type: ignore[union-attr]


def test_permission_denied_is_a_diagnostic(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, "m.yaml", GROUP.format(key="k"))

    def deny(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", deny)
    result = validate_paths([str(path)])
    assert [d.message for d in result.diagnostics] == ["cannot read file: permission denied"]


def test_file_over_the_size_limit_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("provisioner.manifest.yamlload.MAX_FILE_BYTES", 64)
    path = write(tmp_path, "m.yaml", GROUP.format(key="k"))
    (diag,) = validate_paths([str(path)]).diagnostics
    assert "larger than" in diag.message


def test_python_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        "m.yaml",
        f'version: !!python/object/apply:os.system ["touch {marker}"]\nchats: []\n',
    )
    (diag,) = validate_paths([str(path)]).diagnostics
    assert "!!python/object/apply:os.system" in diag.message
    assert not marker.exists()


def test_deep_nesting_is_a_clear_error_not_a_recursion_error(tmp_path: Path) -> None:
    for depth in (200, 999, 5000):
        path = write(tmp_path, "m.yaml", "version: 1\nchats: " + "[" * depth + "]" * depth + "\n")
        diags = validate_paths([str(path)]).diagnostics
        assert diags and any("nest" in d.message for d in diags), (depth, diags)


def test_quadratic_alias_reuse_is_stopped(tmp_path: Path) -> None:
    users = "\n".join(f"      - user: u{i}@contoso.com" for i in range(2000))
    chats = "\n".join(f"  - {{key: c{i}, chatType: group, members: *m}}" for i in range(1, 500))
    text = (
        f"version: 1\nchats:\n  - key: c0\n    chatType: group\n    members: &m\n{users}\n{chats}\n"
    )
    assert alias_budget(text) < 500 * 2000 * 3
    path = write(tmp_path, "m.yaml", text)
    (diag,) = validate_paths([str(path)]).diagnostics
    assert "through aliases" in diag.message


def test_fast_path_takes_plain_valid_manifests() -> None:
    # Everything in valid/ but merge keys (which go through the error path) is read by the
    # fast path; if it silently gave up, validate would only be slower, so check it here.
    for path in [
        *VALID.glob("*.yaml"),
        *(EXAMPLES / "graph-docs").glob("*.yaml"),
        EXAMPLES / "chats.yaml",
    ]:
        if path.name == "merge-keys.yaml":
            continue
        text = path.read_text(encoding="utf-8")
        root = compose(text, path.name)
        assert root is not None
        assert fastpath.build_document(root, path.name, alias_budget(text)) is not None, path


def test_schema_is_reachable_from_the_manifest_module() -> None:
    assert manifest.schema_path().is_file()
    assert manifest.load_schema()["$schema"].endswith("2020-12/schema")


def test_a_huge_invalid_manifest_lists_the_first_problems_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    import time

    from provisioner.manifest.load import MAX_DIAGNOSTICS_PER_FILE, validate_paths

    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nchats:\n" + "- {}\n" * 100_000)
    started = time.perf_counter()
    result = validate_paths([str(path)])
    took = time.perf_counter() - started
    assert len(result.diagnostics) == MAX_DIAGNOSTICS_PER_FILE + 1
    last = result.diagnostics[-1]
    assert "100000 of its 100000 chats have errors" in str(last)
    assert all(d.line > 0 for d in result.diagnostics[:-1])
    assert took < 20  # was minutes (every error built); now the fast path counts the rest


def test_many_rule_errors_are_capped_with_an_exact_count(tmp_path: Path) -> None:
    from provisioner.manifest.load import MAX_DIAGNOSTICS_PER_FILE, validate_paths

    chat = "- {key: same, chatType: group, members: [{user: a@x.com}, {user: b@x.com}]}\n"
    path = tmp_path / "dup.yaml"
    path.write_text("version: 1\nchats:\n" + chat * 300)
    result = validate_paths([str(path)])
    assert len(result.diagnostics) == MAX_DIAGNOSTICS_PER_FILE + 1
    assert "199 more in this file" in str(result.diagnostics[-1])
