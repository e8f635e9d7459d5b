"""`apply --log-format json` and `apply --report FILE` (issue 25, item 5), against a local
emulator that throttles some member additions."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer

USERS = ["8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca", "3626a173-f2bc-4883-bcf7-01514c3bfb82"]


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("PROVISION_", "AZURE_")):
            monkeypatch.delenv(name)
    faults = ["429=0.3,method=POST,path=/chats"]
    with EmulatorServer(
        limits="off", faults=faults, seed=11, invent_users=True, list_delay_s=0,
        fault_retry_after_s=0.01,
    ) as server:  # fmt: skip
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-1")
        yield server


@pytest.mark.documented_pace  # the report draws Graph's documented 30 writes per second
def test_json_log_lines_and_the_report(
    capsys: pytest.CaptureFixture[str], graph: EmulatorServer, tmp_path: Path
) -> None:
    lines = ["version: 1", "chats:"]
    for n in range(8):
        lines += [f"  - key: team-{n}", "    chatType: group", f"    topic: Team {n}"]
        lines += ["    members:", *(f"      - user: {u}" for u in USERS)]
        lines.append(f"      - user: person{n}@contoso.com")
    (tmp_path / "chats.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier steps' summary\n", encoding="utf-8")
    code = main(
        ["apply", "chats.yaml", "--auto-approve", "--quiet", "--log-format", "json",
         "--report", str(summary)]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, out + err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {r["event"] for r in records} >= {"response", "throttled"}
    # The tenant check (GET /organization) and the creations.
    assert {r["route"] for r in records} <= {"/chats", "/organization"}
    assert {r["route"] for r in records if r["event"] == "throttled"} == {"/chats"}
    for person in (*USERS, "person0@contoso.com", "19:"):
        assert person not in err  # no ids of people, no chat ids
    throttled = [r for r in records if r["event"] == "throttled"]
    assert all(r["status"] == 429 and r["wait_s"] >= 0 for r in throttled)
    report = summary.read_text(encoding="utf-8")
    assert report.startswith("earlier steps' summary\n### provision apply")  # appended
    assert "| created | 8 |" in report
    assert f"{len(throttled)} throttled and retried" in report
    assert "```mermaid\nxychart-beta\n" in report and "line [30.0" in report


def test_the_report_file_must_be_writable(
    capsys: pytest.CaptureFixture[str], graph: EmulatorServer, tmp_path: Path
) -> None:
    (tmp_path / "chats.yaml").write_text(
        "version: 1\nchats:\n  - chatType: oneOnOne\n    members:\n"
        + "".join(f"      - user: {u}\n" for u in USERS),
        encoding="utf-8",
    )
    code = main(
        ["apply", "chats.yaml", "--auto-approve", "--quiet", "--report", "/nonexistent/r.md"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "--report /nonexistent/r.md: cannot write it" in err
    # Refused before anything was sent: nothing was created.
    assert graph.tenant.chats() == [] and not (tmp_path / "provision.state.json").exists()


def test_plan_logs_its_reads_as_json_lines(
    capsys: pytest.CaptureFixture[str], graph: EmulatorServer, tmp_path: Path
) -> None:
    (tmp_path / "chats.yaml").write_text(
        "version: 1\nchats:\n  - chatType: oneOnOne\n    members:\n"
        + "".join(f"      - user: {u}\n" for u in USERS),
        encoding="utf-8",
    )
    assert main(["apply", "chats.yaml", "--auto-approve", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["plan", "chats.yaml", "--log-format", "json"]) == 0
    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    routes = {r["route"] for r in records}
    assert "/$batch" in routes and routes <= {"/$batch", "/chats/{chat-id}", "/organization"}
    assert not any(u in err for u in USERS)
