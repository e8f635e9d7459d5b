"""Every flag a pipeline sets has a PROVISION_* variable (issue 25, item 4), read as the flag
is: a bad value is the same one-line usage error naming it."""

from __future__ import annotations

import click
import pytest

from provisioner.cli.main import cli, main

# flag -> its variable, on the commands that take the flag
PIPELINE_FLAGS = {
    ("plan", "--lock-timeout"): "PROVISION_LOCK_TIMEOUT",
    ("apply", "--lock-timeout"): "PROVISION_LOCK_TIMEOUT",
    ("plan", "--cloud"): "PROVISION_CLOUD",
    ("apply", "--cloud"): "PROVISION_CLOUD",
    ("apply", "--max-rps"): "PROVISION_MAX_RPS",
    ("apply", "--concurrency"): "PROVISION_CONCURRENCY",
    ("apply", "--timeout"): "PROVISION_TIMEOUT",
    ("plan", "--check-users"): "PROVISION_CHECK_USERS",
    ("plan", "--no-color"): "PROVISION_NO_COLOR",
    ("plan", "--state"): "PROVISION_STATE",
    ("plan", "--auth"): "PROVISION_AUTH",
    ("plan", "--graph-url"): "PROVISION_GRAPH_URL",
    ("apply", "--consistency-window"): "PROVISION_CONSISTENCY_WINDOW",
    ("plan", "--log-format"): "PROVISION_LOG_FORMAT",
    ("apply", "--log-format"): "PROVISION_LOG_FORMAT",
    ("apply", "--report"): "PROVISION_REPORT",
    ("apply", "--no-color"): "PROVISION_NO_COLOR",
}


@pytest.mark.parametrize(("where", "variable"), sorted(PIPELINE_FLAGS.items()))
def test_each_pipeline_flag_has_its_variable(where: tuple[str, str], variable: str) -> None:
    command, flag = where
    sub = cli.commands[command]
    (param,) = [p for p in sub.params if flag in getattr(p, "opts", ())]
    assert param.envvar == variable
    assert variable in (param.help or "")  # said in --help


def test_debug_has_its_variable() -> None:
    (param,) = [p for p in cli.params if "--debug" in getattr(p, "opts", ())]
    assert isinstance(param, click.Option) and param.envvar == "PROVISION_DEBUG"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("PROVISION_MAX_RPS", "fast", "--max-rps"),
        ("PROVISION_LOCK_TIMEOUT", "soon", "--lock-timeout"),
        ("PROVISION_CLOUD", "mars", "--cloud"),
    ],
)
def test_a_bad_value_in_a_variable_is_a_usage_error_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    named: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["apply", "nothing.yaml"]) == 1
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
