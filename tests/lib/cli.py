"""Run the CLI in-process, as the console script would, and capture what it wrote."""

from __future__ import annotations

import pytest

from provisioner.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``provision ARGS`` in this process: (exit code, stdout, stderr) of this call only."""
    capsys.readouterr()  # what earlier calls wrote is not this call's output
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
