from __future__ import annotations

from provisioner import __version__
from provisioner.cli.main import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_is_usage_error_exit_1(capsys):
    assert main(["no-such-command"]) == 1
    assert "No such command" in capsys.readouterr().err
