"""Run the shared StateStore contract (``state_contract.py``) against every backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from lib.state_contract import Backend, StateStoreContract

from provisioner.states.local import LocalStateStore
from provisioner.states.store import JournaledStore, local_store


def _local(tmp_path: Path) -> Backend:
    path = tmp_path / "provision.state.json"

    def put_raw(data: bytes) -> None:
        path.write_bytes(data)

    return Backend(
        name="local",
        new_store=lambda: local_store(str(path)),
        put_raw=put_raw,
        read_backup=lambda: LocalStateStore(str(path) + ".backup").read(),
        delete=path.unlink,
        force_unlock_breaks_a_live_lock=False,
    )


def _azblob(request: pytest.FixtureRequest) -> Backend:
    azurite = request.getfixturevalue("azurite")  # skips when Azurite is not installed
    from provisioner.states.azblob.store import open_azblob_store

    spec = f"azblob://devstoreaccount1/{azurite.new_container()}/teams/provision.state.json"

    def new_store() -> JournaledStore:
        store = open_azblob_store(spec, env=azurite.env)
        return JournaledStore(store, store.journal_file())

    def put_raw(data: bytes) -> None:
        store = open_azblob_store(spec, env=azurite.env)
        store._blob.upload_blob(data, overwrite=True)

    def delete() -> None:
        open_azblob_store(spec, env=azurite.env)._blob.delete_blob()

    return Backend(
        name="azblob",
        new_store=new_store,
        put_raw=put_raw,
        read_backup=lambda: open_azblob_store(spec + ".backup", env=azurite.env).read(),
        delete=delete,
    )


class TestStateStoreContract(StateStoreContract):
    @pytest.fixture(params=["local", "azblob"])
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        if request.param == "local":
            return _local(tmp_path)
        return _azblob(request)
