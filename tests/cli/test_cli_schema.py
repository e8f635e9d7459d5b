"""`provision schema`: the shipped JSON Schema, usable by other validators (check-jsonschema)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.manifest.schema import schema_path, shipped_schemas

ROOT = Path(__file__).resolve().parents[2]
# lifecycle.yaml spells a boolean `no`: YAML 1.1 (PyYAML, provision) reads false, YAML 1.2
# (check-jsonschema's ruamel.yaml, and editors by default) reads the string "no".
YAML11_BOOLEANS = ROOT / "tests/data/manifests/valid/lifecycle.yaml"
VALID = sorted(set((ROOT / "tests/data/manifests/valid").glob("*.yaml")) - {YAML11_BOOLEANS})
EXAMPLES = [
    ROOT / "examples/chats.yaml",
    ROOT / "examples/incident-response/incidents.yaml",
    *sorted((ROOT / "examples/graph-docs").glob("*.yaml")),
]


def test_prints_the_manifest_schema_byte_for_byte(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert out == schema_path().read_text(encoding="utf-8")
    assert json.loads(out)["$id"] == "urn:provision:manifest:v1"


def test_named_schema_and_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert "manifest" in shipped_schemas()
    for name, path in shipped_schemas().items():
        assert main(["schema", name]) == 0
        assert capsys.readouterr().out == path.read_text(encoding="utf-8")


def test_unknown_schema_is_a_usage_error_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "nope"]) == 1
    err = capsys.readouterr().err
    assert "'nope' is not a shipped schema" in err
    assert "manifest" in err


def _check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    # check-jsonschema reads the schema from stdin with `--schemafile -`. (Bash's
    # `--schemafile <(provision schema)` does not work with check-jsonschema 0.39: it resolves
    # the /dev/fd/N symlink to an unreadable pipe:[...] path.)
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", "-", *map(str, files)],
        input=schema,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def printed_schema() -> str:
    # The real console entry point in a subprocess, as a pipeline would run it.
    done = subprocess.run(
        [sys.executable, "-m", "provisioner", "schema"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_check_jsonschema_accepts_the_examples(printed_schema: str) -> None:
    done = _check_jsonschema(printed_schema, *EXAMPLES, *VALID)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_yaml_1_1_booleans_are_the_one_difference(printed_schema: str) -> None:
    done = _check_jsonschema(printed_schema, YAML11_BOOLEANS)
    assert done.returncode == 1
    errors = [line.strip() for line in done.stdout.splitlines() if "::$" in line]
    assert errors == [f"{YAML11_BOOLEANS}::$.chats[1].protect: 'no' is not of type 'boolean'"]


def test_check_jsonschema_rejects_what_the_schema_forbids(
    printed_schema: str, tmp_path: Path
) -> None:
    bad = tmp_path / "chats.yaml"
    bad.write_text(
        "version: 1\n"
        "chats:\n"
        "  - chatTyp: group\n"  # misspelt field
        "    key: x\n"
        "    members: [{user: megan}, {user: alex@contoso.com}]\n",
        encoding="utf-8",
    )
    done = _check_jsonschema(printed_schema, bad)
    assert done.returncode == 1
    assert "chatTyp" in done.stdout
    assert "'megan' does not match" in done.stdout
