"""Every number flag and ``PROVISION_*`` variable goes through one validator (issue 20, item 4):
NaN, infinity, absurdly small or large values are usage errors that name the flag (and the
variable when the value came from one), before anything is read, locked or written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.cli.numbers import Number, check_range

MANIFEST = """\
version: 1
chats:
  - key: team
    chatType: group
    topic: Team
    members:
      - user: 8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca
      - user: 3626a173-f2bc-4883-bcf7-01514c3bfb82
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AZURE_", "PROVISION_")):
            monkeypatch.delenv(name)
    (tmp_path / "chats.yaml").write_text(MANIFEST)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


APPLY = ("apply", "chats.yaml", "--emulator", "--auto-approve")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--consistency-window", "nan"),
        ("--consistency-window", "NaN"),
        ("--consistency-window", "inf"),
        ("--consistency-window", "-1"),
        ("--consistency-window", "86401"),
        ("--max-rps", "1e-300"),
        ("--max-rps", "0.01"),
        ("--max-rps", "nan"),
        ("--timeout", "1e-300"),
        ("--timeout", "-inf"),
        ("--concurrency", "0"),
        ("--concurrency", "1.5"),
        ("--concurrency", "nan"),
        ("--concurrency", "9" * 5000),
        ("--lock-timeout", "nan"),
        ("--lock-timeout", "inf"),
        ("--lock-timeout", "1e400"),
    ],
)
def test_absurd_numbers_in_flags_are_usage_errors_naming_the_flag(
    workdir: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *APPLY, f"{flag}={value}")
    assert code == 1, out + err
    [line] = [line for line in err.splitlines() if line.startswith("Error:")]
    assert flag in line and "Traceback" not in err
    assert sorted(p.name for p in workdir.iterdir()) == ["chats.yaml"]  # nothing started


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "1e999", "", "sixty"])
def test_an_absurd_consistency_window_variable_names_the_variable(
    workdir: Path, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVISION_CONSISTENCY_WINDOW", value)
    code, out, err = run(capsys, *APPLY)
    if value == "":
        # An empty variable is unset (click's rule for every variable): the default applies.
        assert code == 0, out + err
        return
    assert code == 1, out + err
    assert "PROVISION_CONSISTENCY_WINDOW" in err and "--consistency-window" in err
    assert sorted(p.name for p in workdir.iterdir()) == ["chats.yaml"]


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "70000"),
        ("--seed", "-1"),
        ("--token-lifetime", "nan"),
        ("--latency-ms", "inf"),
        ("--latency-ms", "5-nan"),
        ("--limits", "x1e-300"),
        ("--limits", "xnan"),
        ("--list-delay", "nan"),
        ("--fault", "latency=1,ms=99999999999999"),
        ("--fault", "503=nan"),
    ],
)
def test_absurd_numbers_in_emulator_flags_are_usage_errors(
    workdir: Path, args: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "emulator", "--ephemeral", *args)
    assert code == 1 and args[0] in err and out == "", out + err


def test_the_built_in_emulators_list_delay_variable_is_named(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVISION_EMULATOR_LIST_DELAY", "nan")
    code, _, err = run(capsys, "plan", "chats.yaml", "--emulator")
    assert code == 1 and "PROVISION_EMULATOR_LIST_DELAY" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [("--max-rps", "0.1", 0.1), ("--timeout", "0.3", 0.3), ("--consistency-window", "0", 0.0)],
)
def test_the_ends_of_the_documented_ranges_are_accepted(
    flag: str, value: str, expected: float
) -> None:
    from provisioner.cli.apply import apply

    ctx = apply.make_context("apply", ["chats.yaml", flag, value])
    assert ctx.params[flag.lstrip("-").replace("-", "_")] == expected


def test_check_range_refuses_nan_that_every_comparison_lets_through() -> None:
    with pytest.raises(ValueError, match="finite"):
        check_range(float("nan"), 0, 10)
    with pytest.raises(ValueError, match="more than 0"):
        check_range(0.0, 0, 10, low_open=True)
    assert check_range(10.0, 0, 10) == 10.0
    assert Number(1, 5, integer=True).convert("3", None, None) == 3
