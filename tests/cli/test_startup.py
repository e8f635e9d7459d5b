"""Start-up cost: `provision --help` must stay close to a bare click application.

msal, requests, jsonschema, the Azure SDK (and what they pull in: urllib3, cryptography) are
imported by the commands that use them, never by ``import provisioner.cli.main``; the figure itself
(`provision --help` vs `python -c 'import click'`, target <= 2x) is in BENCHMARKS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from provisioner.cli import options as cli_options
from provisioner.states import records as state

HEAVY = ("msal", "requests", "jsonschema", "azure", "urllib3", "cryptography", "yaml")


def loaded_after(code: str) -> tuple[str, list[str]]:
    """Run ``code`` in a fresh interpreter; its output and the heavy modules it loaded."""
    script = (
        f"import sys\n{code}\n"
        "print('\\nMODULES:' + '|'.join(sorted(m for m in sys.modules "
        f"if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    text, _, modules = out.rpartition("\nMODULES:")
    return text, [m for m in modules.strip().split("|") if m]


def test_importing_the_cli_imports_no_heavy_dependency() -> None:
    _, heavy = loaded_after("import provisioner.cli.main")
    assert heavy == []


def test_help_lists_every_command_without_heavy_imports() -> None:
    text, heavy = loaded_after(
        "from provisioner.cli.main import main\nmain(['--help'])\nmain(['apply', '--help'])"
    )
    for command in ("validate", "plan", "apply", "import", "export", "state", "emulator"):
        assert f"\n  {command} " in text
    assert "--auto-approve" in text
    assert heavy == []


def test_validate_needs_yaml_but_not_the_network_stack(tmp_path: Path) -> None:
    manifest = tmp_path / "chats.yaml"
    manifest.write_text("version: 1\nchats: []\n")
    _, heavy = loaded_after(
        f"from provisioner.cli.main import main\nassert main(['validate', {str(manifest)!r}]) == 0"
    )
    assert "yaml" in heavy
    assert not any(m.split(".")[0] in ("msal", "requests", "urllib3", "azure") for m in heavy)


def test_the_cli_default_state_path_is_the_state_store_default() -> None:
    assert cli_options.DEFAULT_STATE_PATH == state.DEFAULT_STATE_PATH
