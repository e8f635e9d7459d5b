from __future__ import annotations

import json

from provisioner.errors import Diagnostic
from provisioner.views.diagnostics import render_github, render_json, render_text

TYPO = Diagnostic(
    "chats.yaml", 12, 9, "'chatTyp' is not a known field", "$.chats[2]", "did you mean 'chatType'?"
)
EMPTY = Diagnostic("empty.yaml", 0, 0, "file is empty")


def test_text_is_one_line_per_diagnostic_then_the_summary() -> None:
    assert render_text([TYPO, EMPTY], "2 files, 14 chats, 2 errors").splitlines() == [
        "chats.yaml:12:9: error: 'chatTyp' is not a known field; "
        "did you mean 'chatType'? ($.chats[2])",
        "empty.yaml: error: file is empty",
        "2 files, 14 chats, 2 errors",
    ]


def test_json_has_summary_and_structured_diagnostics() -> None:
    doc = json.loads(render_json([TYPO], {"files": 1, "chats": 3, "errors": 1}))
    assert doc["valid"] is False
    assert doc["summary"] == {"files": 1, "chats": 3, "errors": 1}
    assert doc["diagnostics"] == [
        {
            "file": "chats.yaml",
            "line": 12,
            "col": 9,
            "severity": "error",
            "message": "'chatTyp' is not a known field",
            "hint": "did you mean 'chatType'?",
            "path": "$.chats[2]",
        }
    ]
    assert json.loads(render_json([], {"files": 1}, ["a.yaml"]))["valid"] is True


def test_github_annotations_point_at_file_line_and_column() -> None:
    assert render_github([TYPO, EMPTY]).splitlines() == [
        "::error file=chats.yaml,line=12,col=9,title=provision validate::"
        "'chatTyp' is not a known field; did you mean 'chatType'? ($.chats[2])",
        "::error file=empty.yaml,title=provision validate::file is empty",
    ]


def test_github_annotations_escape_workflow_command_syntax() -> None:
    nasty = Diagnostic("dir,x/a:b.yaml", 1, 2, "50% done\nnext line")
    (line,) = render_github([nasty]).splitlines()
    assert line == (
        "::error file=dir%2Cx/a%3Ab.yaml,line=1,col=2,title=provision validate::"
        "50%25 done%0Anext line"
    )
