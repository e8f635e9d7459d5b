"""Manifests -> desired state: find the files, load them safely, check them, build the models.

Pipeline per file: bytes -> text -> YAML node tree (``yamlload``) -> chats. Two ways to chats:

* **Fast path** (``fastpath.build_document``): walks the node tree once, checks exactly what
  the JSON Schema checks (with the enums and patterns taken from the schema itself) and builds
  the ``Chat``/``Member`` models directly. It gives up (returns ``None``) at the first thing
  that is not plainly valid; it never reports anything itself.
* **Error path** (``_slow_file``): converts the nodes to plain data, collects every YAML-level
  problem and every JSON Schema error (``schema``), and builds the chats that have none so that
  Graph's rules can be checked on them too. All problems of all files are reported at once.

Graph's cross-field and cross-file rules (``rules``) then run on the chats of both paths.
The fast path exists because ``jsonschema``'s ``iter_errors`` over a 10,000-chat document
costs about as much as parsing it (see ``benchmarks/bench_validate.py``); tests check that
both paths agree on every golden file and on generated documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import Node, SequenceNode

from provisioner.errors import Diagnostic, InputError, ValidationFailed
from provisioner.manifest import (
    fastmembers,
    fastpath,
    generators,
    groupsource,
    imports,
    membersets,
    moves,
    rules,
)
from provisioner.manifest.gcpause import gc_paused
from provisioner.manifest.plaindata import flatten_merges, to_data
from provisioner.manifest.schema import load_schema, schema_path
from provisioner.manifest.yamlload import (
    BadFile,
    Problem,
    alias_budget,
    compose,
    decode,
    format_path,
    locate,
    position,
    read_bytes,
)
from provisioner.models import (
    MEMBERSHIPS,
    Chat,
    DesiredState,
    GroupGenerator,
    Import,
    Member,
    MemberSet,
    Move,
)

__all__ = [
    "ValidationResult",
    "load_desired",
    "load_schema",
    "manifest_files",
    "schema_path",
    "validate_paths",
]

MANIFEST_SUFFIXES = (".yaml", ".yml")
#: Problems listed per file; the rest are counted in one last line (issue 15: 400,000 broken
#: entries must not mean 800,000 lines and a minute of work).
MAX_DIAGNOSTICS_PER_FILE = 100


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of checking manifests: every diagnostic (sorted), how many files and chat
    entries were read, the desired state when there were no errors, and the generators whose
    group only a plan reads (``groupsource``: their chats are not counted)."""

    diagnostics: tuple[Diagnostic, ...]
    files: int
    chats: int
    desired: DesiredState | None
    deferred: tuple[GroupGenerator, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    @property
    def summary(self) -> str:
        """``2 files, 14 chats, 3 errors``."""
        return ", ".join(
            (
                _plural(self.files, "file"),
                _plural(self.chats, "chat"),
                _plural(len(self.diagnostics), "error"),
            )
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def manifest_files(paths: Sequence[str]) -> list[Path]:
    """The manifest files named by ``paths``: a file as it is, a directory as its
    ``*.yaml``/``*.yml`` files (not recursive, sorted; names starting with '.' are skipped, as
    a shell glob would). A file reached twice is read once. ``InputError`` for a missing path,
    a directory without manifests, or something that is neither file nor directory."""
    if not paths:
        raise InputError("no manifest given", hint="pass manifest files or directories")
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix in MANIFEST_SUFFIXES and not p.name.startswith(".") and p.is_file()
            )
            if not found:
                raise InputError(f"{raw}: directory has no manifest files (*.yaml, *.yml)")
        elif path.is_file():
            found = [path]
        elif path.exists():
            raise InputError(f"{raw}: not a regular file or directory")
        else:
            raise InputError(f"{raw}: no such file or directory")
        for p in found:
            real = p.resolve()
            if real not in seen:
                seen.add(real)
                files.append(p)
    return files


def validate_paths(
    paths: Sequence[str], groups: groupsource.GroupRows | None = None
) -> ValidationResult:
    """Check the manifests named by ``paths`` as one desired state and report every problem.
    ``groups``: the users of the groups that generators read, as a plan read them (None:
    offline, those generators are deferred). Raises only ``InputError`` (for paths that
    cannot be used at all)."""
    files = manifest_files(paths)
    with gc_paused(freeze=False):
        # The node trees die with _validate_files' locals, before the collector is back.
        return _validate_files(files, groups)


def _validate_files(files: list[Path], groups: groupsource.GroupRows | None) -> ValidationResult:
    digest = hashlib.sha256()
    diagnostics: list[Diagnostic] = []
    entries: list[rules.Entry] = []
    move_entries: list[moves.MoveEntry] = []
    member_sets: list[MemberSet] = []
    import_entries: list[imports.ImportEntry] = []
    deferred: list[GroupGenerator] = []
    chat_count = 0
    for path in files:
        name = str(path)
        checked = _check_file(path, name, digest.update, groups)
        deferred.extend(checked.deferred)
        diagnostics.extend(checked.diagnostics)
        entries.extend(checked.entries)
        move_entries.extend(checked.moves)
        member_sets.extend(checked.sets)
        import_entries.extend(checked.imports)
        chat_count += checked.chats
    if member_sets or any(e.chat.entries for e in entries):
        entries, problems = membersets.expand(entries, member_sets)
        diagnostics.extend(problems)
    diagnostics.extend(rules.check(entries))
    # Only chats without errors are known by key: with errors elsewhere, a move to a key of a
    # broken chat would be reported as unknown, wrongly; so would one to a key a generator
    # reading a group makes, before a plan has read it.
    complete = not diagnostics and not deferred
    if import_entries:
        known = {e.chat.key: e.chat for e in entries if not e.partial}
        diagnostics.extend(imports.check(import_entries, known, keys_complete=complete))
    if move_entries:
        by_key = {e.chat.key: e.chat for e in entries if not e.partial}
        diagnostics.extend(moves.check(move_entries, by_key, keys_complete=complete))
    diagnostics = _capped(diagnostics)
    desired = None
    if not diagnostics:
        chats = sorted((e.chat for e in entries), key=lambda c: c.key)
        desired = DesiredState(
            chats=tuple(chats),
            files=tuple(str(p) for p in files),
            digest=digest.hexdigest(),
            moves=tuple(e.move for e in move_entries),
            imports=tuple(e.imp for e in import_entries),
            deferred=tuple(deferred),
        )
    return ValidationResult(tuple(diagnostics), len(files), chat_count, desired, tuple(deferred))


def load_desired(paths: Sequence[str]) -> DesiredState:
    """The desired state from the manifests named by ``paths``.

    Chats are ordered by key; a oneOnOne chat without a key gets
    ``models.one_on_one_key(a, b)``; a member's role defaults to ``defaults.role``, then
    ``owner``; ``Chat.source``/``Member.source`` say where each was written. ``digest`` is the
    sha256 over, for each file in order, its size as 8 big-endian bytes and then its bytes.

    Raises ``ValidationFailed`` with every diagnostic (sorted) or ``InputError``.
    """
    result = validate_paths(paths)
    if result.desired is None:
        raise ValidationFailed(list(result.diagnostics), result.summary)
    return result.desired


@dataclass
class _Checked:
    diagnostics: list[Diagnostic]
    entries: list[rules.Entry]
    chats: int
    moves: list[moves.MoveEntry] = field(default_factory=list)
    imports: list[imports.ImportEntry] = field(default_factory=list)
    sets: list[MemberSet] = field(default_factory=list)
    deferred: list[GroupGenerator] = field(default_factory=list)


def _check_file(
    path: Path,
    name: str,
    digest: Callable[[bytes], object],
    groups: groupsource.GroupRows | None = None,
) -> _Checked:
    try:
        data = read_bytes(path)
        digest(len(data).to_bytes(8, "big"))
        digest(data)
        text = decode(data)
        root = compose(text, name)
    except BadFile as exc:
        return _Checked([Diagnostic(name, exc.line, exc.col, exc.message, hint=exc.hint)], [], 0)
    if root is None:
        return _Checked(
            [
                Diagnostic(
                    name, 0, 0, "file is empty", hint="a manifest needs 'version: 1' and 'chats:'"
                )
            ],
            [],
            0,
        )
    budget = alias_budget(text)
    fast = fastpath.build_document(root, name, budget)
    fast_moves = fastpath.build_moves(root, name) if fast is not None else None
    fast_imports = fastpath.build_imports(root, name) if fast is not None else None
    fast_sets = fastmembers.build_member_sets(root, name) if fast_moves is not None else None
    if (
        fast is not None
        and fast_moves is not None
        and fast_imports is not None
        and fast_sets is not None
    ):
        return _Checked(
            [],
            [rules.Entry(c, name, i, root) for i, c in enumerate(fast)],
            len(fast),
            _move_entries(fast_moves, name, root),
            _import_entries(fast_imports, name, root),
            fast_sets,
        )
    return _slow_file(root, name, budget, digest, groups)


def _move_entries(found: list[Move], name: str, root: Node) -> list[moves.MoveEntry]:
    return [moves.MoveEntry(m, name, i, root) for i, m in enumerate(found)]


def _import_entries(found: list[Import], name: str, root: Node) -> list[imports.ImportEntry]:
    return [imports.ImportEntry(m, name, i, root) for i, m in enumerate(found)]


def _slow_file(
    root: Node,
    name: str,
    budget: int,
    digest: Callable[[bytes], object] = lambda _: None,
    groups: groupsource.GroupRows | None = None,
) -> _Checked:
    problems: list[Problem] = flatten_merges(root)
    converted = to_data(root, budget)
    problems.extend(converted.problems)
    skip = list(converted.bad_paths)
    if () not in skip:  # () is skipped when the document could not be converted at all
        from provisioner.manifest.schema import schema_problems

        problems.extend(schema_problems(converted.data, root, skip, limit=MAX_DIAGNOSTICS_PER_FILE))

    diagnostics = [_diagnostic(name, p) for p in problems]
    if len(problems) > MAX_DIAGNOSTICS_PER_FILE:
        diagnostics.append(_uncounted(root, name, converted.data))
    data = converted.data
    move_entries: list[moves.MoveEntry] = []
    if isinstance(data, dict) and not any(p.path[:1] in ((), ("moved",)) for p in problems):
        found = fastpath.build_moves(root, name)
        if found is None:
            # The schema found nothing wrong with 'moved' but the fast path refused it.
            line, col = position(root)
            raise RuntimeError(f"fast path and schema disagree on 'moved' in {name}:{line}:{col}")
        move_entries = _move_entries(found, name, root)
    member_sets = _member_sets(root, name, data, problems)
    import_entries: list[imports.ImportEntry] = []
    if isinstance(data, dict) and not any(p.path[:1] in ((), ("import",)) for p in problems):
        found_imports = fastpath.build_imports(root, name)
        if found_imports is None:
            line, col = position(root)
            raise RuntimeError(f"fast path and schema disagree on 'import' in {name}:{line}:{col}")
        import_entries = _import_entries(found_imports, name, root)
    chats = data.get("chats") if isinstance(data, dict) else None
    if not isinstance(chats, list):
        return _Checked(diagnostics, [], 0, move_entries, import_entries, member_sets)
    defaults = _defaults(data.get("defaults") if isinstance(data, dict) else None)
    made = generators.Expanded()
    if isinstance(data, dict) and "generators" in data:
        if not any(p.path[:1] in ((), ("generators",), ("defaults",)) for p in problems):
            made = generators.expand(root, name, defaults, digest, groups)
        diagnostics.extend(made.diagnostics)

    _, chats_node = locate(root, ("chats",))
    assert isinstance(chats_node, SequenceNode)
    broken = {p.path[1] for p in problems if len(p.path) > 1 and p.path[0] == "chats"}
    entries: list[rules.Entry] = []
    for i, node in enumerate(chats_node.value):
        if i in broken:
            partial = _lenient_chat(chats[i], defaults.role)
            if partial is not None:
                entries.append(rules.Entry(partial, name, i, root, partial=True))
            continue
        chat = fastpath.build_chat(node, name, defaults)
        if chat is not None:
            entries.append(rules.Entry(chat, name, i, root))
        elif not problems:
            # The schema found nothing wrong but the fast path refused this chat: the two
            # disagree, which is a bug in provision, not in the manifest.
            line, col = position(node)
            raise RuntimeError(f"fast path and schema disagree on {name}:{line}:{col}")
    entries.extend(made.entries)
    count = len(chats) + made.chats
    return _Checked(
        diagnostics, entries, count, move_entries, import_entries, member_sets, made.deferred
    )


def _member_sets(root: Node, name: str, data: object, problems: list[Problem]) -> list[MemberSet]:
    """The file's member sets when the schema found nothing wrong with them or the defaults
    (else none: their problems are reported, and the chats naming them are not expanded)."""
    if not isinstance(data, dict) or any(
        p.path[:1] in ((), ("memberSets",), ("defaults",)) for p in problems
    ):
        return []
    found = fastmembers.build_member_sets(root, name)
    if found is None:
        line, col = position(root)
        raise RuntimeError(f"fast path and schema disagree on 'memberSets' in {name}:{line}:{col}")
    return found


_NO_DEFAULTS = fastmembers.Defaults()


def _defaults(data: object) -> fastmembers.Defaults:
    """The ``defaults:`` of a file on the error path: each value that is valid (a wrong one
    is reported by the schema; the chats are still checked with the built-in default)."""
    if not isinstance(data, dict):
        return _NO_DEFAULTS
    role, membership = data.get("role"), data.get("membership")
    return fastmembers.Defaults(
        role if isinstance(role, str) and role in fastmembers.ROLES else _NO_DEFAULTS.role,
        membership
        if isinstance(membership, str) and membership in MEMBERSHIPS
        else _NO_DEFAULTS.membership,
    )


def _lenient_chat(data: object, default_role: str) -> Chat | None:
    """Whatever members (and valid key) of a broken chat can be read, for the member rules
    and the cross-chat ones (duplicate keys and pairs)."""
    if not isinstance(data, dict) or not isinstance(data.get("members"), list):
        return None
    members = []
    for item in data["members"]:
        item = item if isinstance(item, dict) else {}
        user, role, tenant = item.get("user"), item.get("role"), item.get("tenantId")
        if role is None:
            role = default_role
        members.append(
            Member(
                user if isinstance(user, str) else "",
                role if isinstance(role, str) and role in fastmembers.ROLES else "owner",
                tenant if isinstance(tenant, str) and tenant else None,
            )
        )
    chat_type = data.get("chatType")
    # A key that is itself valid still takes part in the duplicate-key rule, so a broken chat
    # reusing another's key is reported with its other problems, not on the next run.
    key = data.get("key")
    key = key if isinstance(key, str) and fastpath.valid_key(key) else ""
    return Chat(key, chat_type if isinstance(chat_type, str) else "", tuple(members))


_MORE = "more problems not listed"


def _uncounted(root: Node, name: str, data: object) -> Diagnostic:
    """The line that stands for the problems not looked for: how many chats are broken,
    counted with the fast path (no schema errors built)."""
    chats = data.get("chats") if isinstance(data, dict) else None
    _, node = locate(root, ("chats",)) if isinstance(chats, list) else (None, None)
    if isinstance(node, SequenceNode):
        broken = sum(
            1 for item in node.value if fastpath.build_chat(item, name, _NO_DEFAULTS) is None
        )
        counted = f"{broken} of its {len(node.value)} chats have errors"
    else:
        counted = "it has more errors"
    hint = f"only {MAX_DIAGNOSTICS_PER_FILE} are listed per file"
    return Diagnostic(name, 0, 0, f"{_MORE}: {counted}", hint=hint, last=True)


def _capped(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """At most ``MAX_DIAGNOSTICS_PER_FILE`` per file, sorted, then one line with the rest."""
    by_file: dict[str, list[Diagnostic]] = {}
    for d in diagnostics:
        by_file.setdefault(d.file, []).append(d)
    out: list[Diagnostic] = []
    for name, found in sorted(by_file.items()):
        notes = [d for d in found if d.last]
        found = sorted((d for d in found if not d.last), key=Diagnostic.sort_key)
        rest = len(found) - MAX_DIAGNOSTICS_PER_FILE
        out.extend(found[:MAX_DIAGNOSTICS_PER_FILE])
        if notes:
            out.extend(notes[:1])
        elif rest > 0:
            out.append(
                Diagnostic(
                    name,
                    0,
                    0,
                    f"{_MORE}: {rest} more in this file",
                    hint=f"only {MAX_DIAGNOSTICS_PER_FILE} are listed per file",
                    last=True,
                )
            )
    return out  # sorted by file, then position; each file's count of the rest comes last


def _diagnostic(name: str, problem: Problem) -> Diagnostic:
    line, col = position(problem.node)
    return Diagnostic(name, line, col, problem.message, format_path(problem.path), problem.hint)
