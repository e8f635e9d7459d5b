"""The shipped examples against the emulator as it starts by default (issue 14): its directory
holds the README's and examples/' users, and its lists lag behind writes by a few seconds;
apply makes every chat and a refreshing plan right after finds nothing to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "files",
    [
        ("chats.yaml",),
        ("graph-docs/2-group.yaml", "graph-docs/3-one-on-one-upn.yaml"),
        ("graph-docs/4-group-with-guest.yaml", "graph-docs/5-one-on-one-federated.yaml"),
    ],
)
def test_examples_apply_to_the_default_emulator(
    files: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("PROVISION_STATE", "PROVISION_EMULATOR_USERS", "PROVISION_EMULATOR_LIST_DELAY"):
        monkeypatch.delenv(name, raising=False)
    names = []
    for n, name in enumerate(files):
        target = tmp_path / f"{n}-{Path(name).name}"
        shutil.copy(EXAMPLES / name, target)
        names.append(target.name)
    with EmulatorServer(seed=4) as server:  # the defaults: documented limits, lagging lists
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "t")
        assert main(["apply", *names, "--auto-approve"]) == 0, capsys.readouterr().err
        capsys.readouterr()
        code = main(["plan", *names, "--refresh", "--detailed-exitcode"])
        assert code == 0, capsys.readouterr().out
        assert server.tenant.duplicate_group_chats() == []
        assert server.tenant.counters.internal_errors_total == 0
