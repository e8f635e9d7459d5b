"""``provision doctor``'s report: one screen of text, or one JSON object
(`provision schema doctor`). In ``cli/`` rather than ``views/``: it renders the report of
``operations.doctor``, and ``views/`` sits beside ``operations/`` (neither imports the other)."""

from __future__ import annotations

import json

from provisioner.operations.doctor import Report

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def render_text(report: Report) -> str:
    width = max((len(c.name) for c in report.checks), default=0)
    lines = [f"provision doctor: pre-flight against {report.graph_url} (read-only)", ""]
    for check in report.checks:
        lines.append(f"  {_MARK[check.status]}  {check.name.ljust(width)}  {check.summary}")
        lines += [f"  {'':4}  {'':{width}}    {d}" for d in check.details]
    failed = len(report.failed)
    lines.append("")
    if failed:
        lines.append(
            f"{failed} problem{'s' * (failed != 1)}: a plan or apply would fail. "
            "Fix, then run provision doctor again."
        )
    else:
        lines.append("Ready: nothing found that would make a plan or apply fail.")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    document = {
        "format_version": 1,
        "ok": not report.failed,
        "graph_url": report.graph_url,
        "checks": [
            {"name": c.name, "status": c.status, "summary": c.summary, "details": list(c.details)}
            for c in report.checks
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
