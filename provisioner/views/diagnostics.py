"""Views of diagnostics: text for people, JSON for machines, GitHub workflow commands for PRs.

Pure functions returning strings; the CLI decides where they go.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from provisioner.errors import Diagnostic, ProvisionError, ValidationFailed


def render_text(diagnostics: Iterable[Diagnostic], summary: str) -> str:
    """One ``file:line:col: error: message; hint ($.path)`` line each, then the summary."""
    lines = [str(d) for d in diagnostics]
    lines.append(summary)
    return "\n".join(lines)


def diagnostic_dict(d: Diagnostic) -> dict[str, object]:
    return {
        "file": d.file,
        "line": d.line,
        "col": d.col,
        "severity": d.severity,
        "message": d.message,
        "hint": d.hint,
        "path": d.path,
    }


def render_json(
    diagnostics: Iterable[Diagnostic], counts: Mapping[str, int], files: Iterable[str] = ()
) -> str:
    """One JSON object: ``{"valid", "summary": {"files", "chats", "errors"}, "files",
    "diagnostics": [{"file", "line", "col", "severity", "message", "hint", "path"}]}``.
    ``line``/``col`` are 1-based, 0 when not known."""
    items = [diagnostic_dict(d) for d in diagnostics]
    doc = {
        "valid": not items,
        "summary": dict(counts),
        "files": list(files),
        "diagnostics": items,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _escape_data(value: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts (escapeData)
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    # ... and escapeProperty: also ':' and ',' which separate properties.
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Iterable[Diagnostic], title: str = "provision validate") -> str:
    """``::error file=...,line=...,col=...,title=...::message`` lines, which GitHub Actions
    turns into annotations on the pull request diff."""
    lines = []
    for d in diagnostics:
        props = [f"file={_escape_property(d.file)}"]
        if d.line:
            props += [f"line={d.line}", f"col={d.col}"]
        props.append(f"title={_escape_property(title)}")
        message = d.message
        if d.hint:
            message += f"; {d.hint}"
        if d.path and d.path != "$":
            message += f" ({d.path})"
        command = "warning" if d.severity == "warning" else "error"
        lines.append(f"::{command} {','.join(props)}::{_escape_data(message)}")
    return "\n".join(lines)


def render_error_json(
    kind: str, message: str, hint: str | None = None, diagnostics: Iterable[Diagnostic] = ()
) -> str:
    """The JSON form of an error (``provision schema error``): what a command asked for JSON
    prints on standard output when it fails before it has a result of its own."""
    error = {
        "kind": kind,
        "message": message,
        "hint": hint,
        "diagnostics": [diagnostic_dict(d) for d in diagnostics],
    }
    return json.dumps({"format_version": 1, "error": error}, indent=2, ensure_ascii=False)


def render_provision_error_json(exc: ProvisionError) -> str:
    if isinstance(exc, ValidationFailed):
        count = len(exc.diagnostics)
        message = exc.summary or f"the manifests are not valid: {count} errors"
        return render_error_json(exc.kind, message, exc.hint, exc.diagnostics)
    return render_error_json(exc.kind, exc.message, exc.hint)
