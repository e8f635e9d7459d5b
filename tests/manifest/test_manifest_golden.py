"""Golden cases: every file (or directory) under tests/data/manifests/{valid,invalid} is
validated and its output compared with the ``.expected`` file next to it.

Invalid cases compare the exact text `provision validate` prints. Valid cases compare every
chat's key, source position and Graph request body. After an intended change, regenerate with
``PROVISION_UPDATE_GOLDEN=1 python -m pytest tests/manifest/test_manifest_golden.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provisioner.manifest import fastpath
from provisioner.manifest import load as manifest
from provisioner.manifest.load import validate_paths
from provisioner.views.diagnostics import render_text

DATA = Path(__file__).resolve().parents[1] / "data" / "manifests"
UPDATE = os.environ.get("PROVISION_UPDATE_GOLDEN") == "1"


def cases(kind: str) -> list[Path]:
    return sorted(
        p for p in (DATA / kind).iterdir() if p.is_dir() or p.suffix in manifest.MANIFEST_SUFFIXES
    )


def expected_file(case: Path, suffix: str) -> Path:
    stem = case.name if case.is_dir() else case.stem
    return case.parent / f"{stem}{suffix}"


def check_golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing golden file {path} (run with PROVISION_UPDATE_GOLDEN=1)"
    assert actual == path.read_text(encoding="utf-8")


def chats_view(result: manifest.ValidationResult) -> str:
    assert result.desired is not None
    chats = []
    for c in result.desired.chats:
        view: dict[str, object] = {
            "key": c.key,
            "source": str(c.source),
            "members": [str(m.source) for m in c.members],
            "body": c.request_body(),
        }
        # Settings that are not part of the creation body, shown only when set.
        if c.history != "none":
            view["history"] = c.history
        if c.protect:
            view["protect"] = True
        chats.append(view)
    doc: dict[str, object] = {
        "summary": result.summary,
        "files": list(result.desired.files),
        "chats": chats,
    }
    if result.desired.moves:
        doc["moved"] = [
            {"from": m.from_key, "to": m.to_key, "source": str(m.source)}
            for m in result.desired.moves
        ]
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("case", cases("invalid"), ids=lambda p: p.name)
def test_invalid_manifest_reports_expected_errors(case: Path, monkeypatch) -> None:
    monkeypatch.chdir(case.parent)
    result = validate_paths([case.name])
    assert not result.ok
    assert result.desired is None
    check_golden(
        expected_file(case, ".expected"), render_text(result.diagnostics, result.summary) + "\n"
    )


@pytest.mark.parametrize("case", cases("valid"), ids=lambda p: p.name)
def test_valid_manifest_builds_expected_chats(case: Path, monkeypatch) -> None:
    monkeypatch.chdir(case.parent)
    result = validate_paths([case.name])
    assert result.diagnostics == ()
    check_golden(expected_file(case, ".expected.json"), chats_view(result))


@pytest.mark.parametrize("case", cases("valid") + cases("invalid"), ids=lambda p: p.name)
def test_fast_and_error_paths_agree(case: Path, monkeypatch) -> None:
    """The fast path must accept only what the schema accepts, and build the same chats."""
    monkeypatch.chdir(case.parent)
    fast = validate_paths([case.name])
    monkeypatch.setattr(fastpath, "build_document", lambda *args: None)
    slow = validate_paths([case.name])
    assert fast.diagnostics == slow.diagnostics
    assert (fast.files, fast.chats) == (slow.files, slow.chats)
    if fast.desired is None:
        assert slow.desired is None
        return
    assert slow.desired == fast.desired
    assert [c.source for c in slow.desired.chats] == [c.source for c in fast.desired.chats]
    assert [m.source for c in slow.desired.chats for m in c.members] == [
        m.source for c in fast.desired.chats for m in c.members
    ]
