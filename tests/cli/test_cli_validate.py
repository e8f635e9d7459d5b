"""Acceptance tests of `provision validate`, through click's test runner and cli.main."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INVALID = Path(__file__).resolve().parents[1] / "data" / "manifests" / "invalid"


def run(args: list[str], env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """Run ``provision ARGS`` as the console script does; (exit code, stdout, stderr)."""
    runner = CliRunner()
    env = {"GITHUB_ACTIONS": None, **(env or {})}
    with runner.isolation(env=env) as streams:
        code = main(args)
        sys.stdout.flush()  # traceback.print_exc writes to sys.stderr without flushing
        sys.stderr.flush()
    out = streams[0].getvalue().decode()
    err_stream = streams[1] if len(streams) > 1 and streams[1] is not None else None
    err = err_stream.getvalue().decode() if err_stream is not None else ""
    return code, out, err


def test_examples_validate() -> None:
    code, out, err = run(["validate", str(EXAMPLES)])
    assert (code, out, err) == (0, "1 file, 6 chats, 0 errors\n", "")


def test_errors_exit_1_with_locations_and_summary(monkeypatch) -> None:
    monkeypatch.chdir(INVALID)
    code, out, _ = run(["validate", "unknown-field.yaml", "version-2.yaml"])
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (
        "unknown-field.yaml:14:5: error: 'chatTyp' is not a known field; "
        "did you mean 'chatType'? ($.chats[2])"
    )
    assert lines[-1] == "2 files, 3 chats, 5 errors"
    assert not any(line.startswith("::") for line in lines)


def test_json_format(monkeypatch) -> None:
    monkeypatch.chdir(INVALID)
    code, out, _ = run(
        ["validate", "--format", "json", "version-2.yaml"], {"GITHUB_ACTIONS": "true"}
    )
    assert code == 1
    doc = json.loads(out)  # nothing but JSON on stdout, even under GitHub Actions
    assert doc["summary"] == {"files": 1, "chats": 0, "errors": 1}
    assert doc["diagnostics"][0]["line"] == 1 and doc["diagnostics"][0]["path"] == "$.version"
    code, out, _ = run(["validate", "--format", "json", str(EXAMPLES)])
    assert code == 0 and json.loads(out)["valid"] is True


def test_github_actions_annotations(monkeypatch) -> None:
    monkeypatch.chdir(INVALID)
    code, out, _ = run(["validate", "version-2.yaml"], {"GITHUB_ACTIONS": "true"})
    assert code == 1
    assert out.splitlines()[0] == (
        "::error file=version-2.yaml,line=1,col=10,title=provision validate::"
        "version must be 1, not 2; this provision reads manifest version 1 ($.version)"
    )
    code, out, _ = run(["validate", str(EXAMPLES)], {"GITHUB_ACTIONS": "true"})
    assert code == 0 and "::" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "no/such/file.yaml"], "no/such/file.yaml: no such file or directory"),
        (["validate", str(INVALID.parent.parent)], "directory has no manifest files"),
        (["validate"], "Missing argument"),
        (["validate", "--format", "xml", "x.yaml"], "Invalid value for '--format'"),
    ],
)
def test_unusable_input_exits_1_with_a_message(args: list[str], message: str) -> None:
    code, out, err = run(args)
    assert code == 1
    assert message in err
    assert "Traceback" not in out + err


def test_internal_error_is_reported_as_a_bug_with_traceback_only_under_debug(monkeypatch) -> None:
    def boom(paths: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr("provisioner.manifest.load.validate_paths", boom)
    code, _, err = run(["validate", str(EXAMPLES)])
    assert code == 1
    assert "internal error" in err and "Traceback" not in err
    code, _, err = run(["--debug", "validate", str(EXAMPLES)])
    assert code == 1 and "Traceback" in err


def test_every_invalid_golden_case_exits_1_without_traceback(monkeypatch) -> None:
    monkeypatch.chdir(INVALID)
    for case in sorted(INVALID.iterdir()):
        if case.suffix == ".expected":
            continue
        code, out, err = run(["validate", case.name])
        assert code == 1, case
        assert "Traceback" not in out + err and "internal error" not in err, case
