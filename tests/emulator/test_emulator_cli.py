"""``provision emulator``: serves until interrupted, prints its URL, reports bad options as
errors (exit 1, no traceback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer


def test_serves_until_terminated(tmp_path: Path) -> None:
    data = tmp_path / "tenant.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner",
            "emulator",
            "--port",
            "0",
            "--data",
            str(data),
            "--limits",
            "off",
            "--seed",
            "3",
            "--fault",
            "latency=0.5,ms=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1.0")
        resp = requests.get(f"{url}/me", headers={"Authorization": "Bearer x"}, timeout=10)
        assert resp.status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopping" in err
    assert data.exists()  # the final snapshot was written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limits", "fast"], "invalid limits"),
        (["--fault", "boom=1"], "invalid fault"),
        (["--latency-ms", "slow"], "invalid latency"),
    ],
)
def test_bad_options_exit_1(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["emulator", "--ephemeral", "--port", "0", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_corrupt_data_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "tenant.json"
    data.write_text("{")
    assert main(["emulator", "--port", "0", "--data", str(data)]) == 1
    assert "corrupt" in capsys.readouterr().err


def test_busy_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorServer(limits="off") as other:
        assert main(["emulator", "--ephemeral", "--port", str(other.port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_help_documents_the_fault_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--help"]) == 0
    out = capsys.readouterr().out
    assert "KIND=RATE" in out and "--limits" in out and "--fault" in out


def test_chats_survive_a_killed_emulator(tmp_path: Path) -> None:
    data = tmp_path / "tenant.json"

    def launch() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provisioner",
                "emulator",
                "--port",
                "0",
                "--data",
                str(data),
                "--limits",
                "off",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        return proc, proc.stdout.readline().strip()

    proc, url = launch()
    auth = {"Authorization": "Bearer x"}
    member = {
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "roles": ["owner"],
    }
    body = {
        "chatType": "group",
        "topic": "survivor",
        "members": [
            {**member, "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{u}')"}
            for u in ("adele@contoso.com", "jacob@contoso.com")  # in the default directory
        ],
    }
    try:
        chat = requests.post(f"{url}/chats", json=body, headers=auth, timeout=10).json()
    finally:
        proc.kill()  # no chance to write a snapshot: only the journal remains
        proc.wait(timeout=10)
    proc, url = launch()
    try:
        resp = requests.get(f"{url}/chats/{chat['id']}", headers=auth, timeout=10)
        assert resp.status_code == 200 and resp.json()["topic"] == "survivor"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
