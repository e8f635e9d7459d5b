"""The azblob:// state store: what is specific to Blob Storage (the shared StateStore contract
runs in test_state_contract.py). Tests that need a storage service use Azurite on loopback."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lib.azurite_support import ACCOUNT, KEY, Azurite
from lib.fs_helpers import netrc_with_default
from lib.state_contract import pending_intent, sample_state

from provisioner.errors import AuthError, LockError, ProvisionError, StateError
from provisioner.states.azblob.conn import (
    DEV_BLOB_ENDPOINT,
    BlobLocation,
    check_endpoint,
    connection_for,
    parse_azblob_url,
)
from provisioner.states.records import State
from provisioner.states.store import open_store

INSTALL = "pip install 'teams-provision[azure]'"

# --- locations, endpoints, credentials (no service needed) ---------------------------------


def test_parse_azblob_url() -> None:
    loc = parse_azblob_url("azblob://contoso/tfstate/teams/prod/provision.state.json")
    assert loc == BlobLocation("contoso", "tfstate", "teams/prod/provision.state.json")
    assert str(loc) == "azblob://contoso/tfstate/teams/prod/provision.state.json"
    assert str(loc.sibling(".backup")).endswith("provision.state.json.backup")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("azblob://contoso/tfstate", "incomplete"),
        ("azblob://contoso/tfstate/", "incomplete"),
        ("azblob://contoso/tfstate/dir/", "incomplete"),
        ("azblob://Contoso/tfstate/s.json", "account name"),
        ("azblob://ab/tfstate/s.json", "account name"),
        ("azblob://contoso/tf_state/s.json", "container name"),
        ("azblob://contoso/tf--state/s.json", "container name"),
        ("azblob://contoso/x/s.json", "container name"),
        ("azblob://contoso/tfstate/s.json?sv=2024&sig=SECRETSIG", "query string"),
    ],
)
def test_parse_azblob_url_rejects(spec: str, says: str) -> None:
    with pytest.raises(StateError, match=says) as err:
        parse_azblob_url(spec)
    assert "SECRETSIG" not in str(err.value)
    assert "azblob://ACCOUNT/CONTAINER/PATH" in str(err.value) or err.value.hint


def test_endpoint_rules() -> None:
    assert check_endpoint("https://contoso.blob.core.usgovcloudapi.net/") == (
        "https://contoso.blob.core.usgovcloudapi.net"
    )
    assert check_endpoint("http://127.0.0.1:10000/devstoreaccount1").startswith("http://127.")
    assert check_endpoint("http://localhost:10000/devstoreaccount1")
    with pytest.raises(StateError, match="plain http"):
        check_endpoint("http://contoso.blob.core.windows.net")
    with pytest.raises(StateError, match="query string"):
        check_endpoint("https://contoso.blob.core.windows.net/?sig=SECRETSIG")
    with pytest.raises(StateError, match="invalid --state-endpoint"):
        check_endpoint("contoso.blob.core.windows.net")


LOC = BlobLocation("contoso", "tfstate", "s.json")


def test_credentials_come_from_the_environment_in_order() -> None:
    conn_str = (
        "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=SECRETKEY==;"
        "EndpointSuffix=core.chinacloudapi.cn"
    )
    conn = connection_for(LOC, None, {"AZURE_STORAGE_CONNECTION_STRING": conn_str})
    assert conn.account_url == "https://contoso.blob.core.chinacloudapi.cn"
    assert conn.credential == {"account_name": "contoso", "account_key": "SECRETKEY=="}
    assert "SECRETKEY" not in repr(conn) and "SECRETKEY" not in conn.how

    sas = connection_for(
        LOC,
        "https://contoso.privatelink.blob.core.windows.net",
        {"AZURE_STORAGE_SAS_TOKEN": "?sv=2024&sig=SECRETSIG", "AZURE_STORAGE_KEY": "KEY"},
    )
    assert sas.credential == {"account_name": "contoso", "account_key": "KEY"}  # key before SAS
    assert sas.account_url == "https://contoso.privatelink.blob.core.windows.net"

    only_sas = connection_for(LOC, None, {"AZURE_STORAGE_SAS_TOKEN": "?sv=2024&sig=SECRETSIG"})
    assert only_sas.credential == "sv=2024&sig=SECRETSIG"
    assert only_sas.account_url == "https://contoso.blob.core.windows.net"
    assert "SECRETSIG" not in repr(only_sas)

    env_endpoint = connection_for(
        LOC, None, {"AZURE_STORAGE_KEY": "K", "PROVISION_STATE_ENDPOINT": DEV_BLOB_ENDPOINT}
    )
    assert env_endpoint.account_url == DEV_BLOB_ENDPOINT

    from azure.identity import DefaultAzureCredential

    aad = connection_for(LOC, None, {})  # no app named: DefaultAzureCredential, as documented
    chain = aad.credential.inner._credential
    assert isinstance(chain, DefaultAzureCredential) and "Azure AD" in aad.how


def test_connection_string_variants() -> None:
    dev = connection_for(
        BlobLocation(ACCOUNT, "tfstate", "s.json"),
        None,
        {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"},
    )
    assert dev.account_url == DEV_BLOB_ENDPOINT
    with pytest.raises(StateError, match="for storage account 'other'"):
        connection_for(
            LOC, None, {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=other;AccountKey=SECRET"}
        )
    with pytest.raises(StateError, match="neither AccountKey") as err:
        connection_for(LOC, None, {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=contoso"})
    with pytest.raises(StateError, match="not a storage connection string") as err:
        connection_for(LOC, None, {"AZURE_STORAGE_CONNECTION_STRING": "SECRETGARBAGE"})
    assert "SECRETGARBAGE" not in str(err.value)
    sas = connection_for(
        LOC,
        None,
        {
            "AZURE_STORAGE_CONNECTION_STRING": (
                "BlobEndpoint=https://contoso.blob.core.windows.net/;"
                "SharedAccessSignature=sv=2024&sig=SECRETSIG"
            )
        },
    )
    assert sas.credential == "sv=2024&sig=SECRETSIG"
    assert sas.account_url == "https://contoso.blob.core.windows.net"


def test_missing_azure_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if `pip install provision` without the extra: the SDK cannot be imported.
    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)
    monkeypatch.delitem(sys.modules, "provisioner.states.azblob.store", raising=False)
    with pytest.raises(ProvisionError) as err:
        open_store("azblob://contoso/tfstate/s.json")
    assert INSTALL in str(err.value)


def test_missing_azure_identity_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    with pytest.raises(ProvisionError) as err:
        connection_for(LOC, None, {})
    assert INSTALL in str(err.value)


def test_lease_duration_must_be_finite_and_valid() -> None:
    from provisioner.states.azblob.store import open_azblob_store

    env = {"AZURE_STORAGE_KEY": KEY, "PROVISION_STATE_ENDPOINT": DEV_BLOB_ENDPOINT}
    for seconds in (10, 61, -1):
        with pytest.raises(ProvisionError, match="15-60"):
            open_azblob_store(
                "azblob://devstoreaccount1/c0n/s.json", env=env, lease_seconds=seconds
            )


# --- against Azurite -----------------------------------------------------------------------


@pytest.fixture
def spec(azurite: Azurite) -> str:
    return f"azblob://{ACCOUNT}/{azurite.new_container()}/teams/provision.state.json"


@pytest.fixture
def open_(azurite: Azurite, spec: str) -> Iterator[object]:
    from provisioner.states.azblob.store import open_azblob_store

    def make(**kwargs: object) -> object:
        return open_azblob_store(spec, env=azurite.env, **kwargs)  # type: ignore[arg-type]

    yield make


def _blob(azurite: Azurite, spec: str) -> object:
    from azure.storage.blob import BlobClient

    loc = parse_azblob_url(spec)
    return BlobClient(
        azurite.endpoint,
        loc.container,
        loc.blob,
        credential={"account_name": ACCOUNT, "account_key": KEY},
    )


def test_open_store_picks_the_blob_backend(
    azurite: Azurite, spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.states.azblob.store import AzureBlobStateStore

    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    store = open_store(spec, azurite.endpoint)
    assert isinstance(store.inner, AzureBlobStateStore) and store.location == spec
    store.write(sample_state())
    monkeypatch.setenv("PROVISION_STATE_ENDPOINT", azurite.endpoint)
    assert open_store(spec).read().serial == 1  # endpoint from the environment


def test_a_netrc_entry_does_not_replace_the_storage_signature(
    open_, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # psf/requests#3929: the SDK's requests session took a ~/.netrc `default` entry and sent
    # its password as Basic credentials instead of the shared-key signature: 403 on every
    # request ("access ... was refused (HTTP 403 AuthorizationFailure)").
    netrc_with_default(tmp_path, monkeypatch)
    store = open_()
    store.write(sample_state())
    with store.lock("apply"):
        assert store.read().serial == 1


def test_etag_conflict_refuses_and_overwrites_nothing(open_, azurite: Azurite, spec: str) -> None:
    from provisioner.states.azblob.store import StateConflictError

    first = open_()
    state = first.read()
    state.users["first@contoso.com"] = "1"
    first.write(state)  # serial 1
    a, b = open_(), open_()
    state_a, state_b = a.read(), b.read()
    state_a.users["a@contoso.com"] = "a"
    a.write(state_a)  # serial 2; backup = serial 1
    state_b.users["b@contoso.com"] = "b"
    with pytest.raises(StateConflictError) as err:
        b.write(state_b)  # read serial 1, the blob moved on: refused
    assert "changed by someone else" in str(err.value) and spec in str(err.value)
    assert state_b.serial == 1  # not bumped: nothing was written
    current = open_().read()
    assert current.serial == 2 and "a@contoso.com" in current.users
    assert "b@contoso.com" not in current.users
    from provisioner.states.azblob.store import open_azblob_store

    backup = open_azblob_store(spec + ".backup", env=azurite.env).read()
    assert backup.serial == 1 and "a@contoso.com" not in backup.users  # untouched by b


def test_two_first_writes_only_one_creates(open_) -> None:
    from provisioner.states.azblob.store import StateConflictError

    a, b = open_(), open_()
    state_a, state_b = a.read(), b.read()
    assert not state_a.exists and not state_b.exists
    a.write(state_a)
    with pytest.raises(StateConflictError, match="did not exist"):
        b.write(state_b)  # If-None-Match: * refuses to create over a's state
    assert open_().read().lineage == state_a.lineage


def test_write_while_another_run_holds_the_lock(open_) -> None:
    holder, other = open_(), open_()
    other_state = other.read()
    with holder.lock("apply") as info:
        other_state.users["x@contoso.com"] = "x"
        with pytest.raises(LockError) as err:
            other.write(other_state)
        assert info.id in str(err.value) and "nothing was written" in str(err.value)
    assert not open_().read().exists


def test_lock_details_live_in_metadata_and_are_cleared(open_, azurite: Azurite, spec: str) -> None:
    store = open_()
    store.read()  # nothing there yet: locking creates an empty placeholder blob
    blob = _blob(azurite, spec)
    with store.lock("apply") as info:
        props = blob.get_blob_properties()  # type: ignore[attr-defined]
        assert props.lease.state == "leased" and props.lease.duration == "fixed"
        details = json.loads(base64.b64decode(props.metadata["provisionlock"]))
        assert details["id"] == info.id and details["operation"] == "apply"
        assert details["pid"] == os.getpid() and details["who"] == info.who
        assert not open_().read().exists  # the placeholder reads as "no state yet"
        state = store.read()
        store.write(state)  # writes keep the lock details (Put Blob replaces metadata)
        assert "provisionlock" in blob.get_blob_properties().metadata  # type: ignore[attr-defined]
    props = blob.get_blob_properties()  # type: ignore[attr-defined]
    assert props.lease.state == "available" and "provisionlock" not in props.metadata


def test_read_before_lock_then_write_follows_our_own_metadata_change(open_) -> None:
    open_().write(sample_state())
    store = open_()
    state = store.read()  # read, then lock (which changes the ETag by setting metadata)
    with store.lock("apply"):
        state.put_intent(pending_intent())
        store.write(state)  # not a conflict: the only change since the read was ours
    assert open_().read().intents == {"team-y": pending_intent()}


def test_lost_lock_refuses_to_write(open_) -> None:
    holder = open_()
    state = holder.read()
    with holder.lock("apply") as info:
        holder.write(state)
        rescuer = open_()
        rescuer.force_unlock(info.id)  # someone decided this run was gone
        with rescuer.lock("apply") as taken:
            state.users["late@contoso.com"] = "x"
            with pytest.raises(LockError, match="lost its lock"):
                holder.write(state)
            current = open_().current_lock()
            assert current is not None and current.id == taken.id
    assert "late@contoso.com" not in open_().read().users


def test_waiting_for_the_lock(open_) -> None:
    holder = open_()
    acquired: list[float] = []
    with holder.lock("apply"):
        waiter = open_(lock_timeout=20.0)

        def wait() -> None:
            with waiter.lock("plan"):
                acquired.append(time.monotonic())

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(1.0)
        assert not acquired  # still waiting while the holder runs
        released = time.monotonic()
    thread.join(timeout=20)
    assert acquired and acquired[0] >= released


HOLDER = """
import sys, time
from provisioner.states.azblob.store import open_azblob_store
store = open_azblob_store(sys.argv[1], lease_seconds=15)
with store.lock("apply") as info:
    print(info.id, flush=True)
    time.sleep(600)
"""


def test_renewed_lease_outlives_its_duration_and_a_killed_holders_lease_expires(
    open_, azurite: Azurite, spec: str
) -> None:
    # A run that was killed (SIGKILL: no cleanup at all) stops renewing; its 15 s lease
    # expires and the next run proceeds by itself. Meanwhile a live run's lease, renewed every
    # 5 s, holds far past 15 s. Both are checked in one ~17 s window.
    env = {**os.environ, **azurite.env}
    victim = subprocess.Popen(
        [sys.executable, "-c", HOLDER, spec], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None
        victim_lock = victim.stdout.readline().strip()
        assert victim_lock, "the holder process did not take the lock"
        with pytest.raises(LockError) as err, open_().lock("apply"):
            pass
        assert victim_lock in str(err.value) and str(victim.pid) in str(err.value)
        live_spec = spec + ".live"
        from provisioner.states.azblob.store import open_azblob_store

        live = open_azblob_store(live_spec, env=azurite.env, lease_seconds=15)
        with live.lock("apply") as live_info:
            started = time.monotonic()
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            with open_(lock_timeout=45.0).lock("apply") as next_run:
                expired_after = time.monotonic() - started
                assert next_run.id != victim_lock
            assert 5.0 < expired_after < 40.0  # held until the lease ran out, not forever
            time.sleep(max(0.0, 16.5 - (time.monotonic() - started)))
            # 16.5 s after locking, the live lease (15 s) is still held: it was renewed.
            with pytest.raises(LockError) as live_err:
                open_azblob_store(live_spec, env=azurite.env).lock("plan").__enter__()
            assert live_info.id in str(live_err.value)
            assert live._keeper is not None and live._keeper.renewals >= 2
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=10)


def test_sas_token_auth_works_and_never_leaks(azurite: Azurite) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from provisioner.states.azblob.store import open_azblob_store

    container = azurite.new_container()
    sas = generate_container_sas(
        ACCOUNT,
        container,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True, write=True, create=True, delete=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    env = {"AZURE_STORAGE_SAS_TOKEN": "?" + sas, "PROVISION_STATE_ENDPOINT": azurite.endpoint}
    spec = f"azblob://{ACCOUNT}/{container}/s.json"
    store = open_azblob_store(spec, env=env)
    with store.lock("apply"):
        state = store.read()
        store.write(state)
        store.write(state)  # the backup copy authorises its source with the same SAS
    assert open_azblob_store(spec + ".backup", env=env).read().serial == 1
    signature = sas.split("sig=")[1].split("&")[0]
    missing = open_azblob_store(f"azblob://{ACCOUNT}/no-such-container/s.json", env=env)
    with pytest.raises(ProvisionError) as err:
        missing.read()
    assert signature not in str(err.value) and "sig=" not in str(err.value)


def test_connection_string_auth(azurite: Azurite, spec: str) -> None:
    from provisioner.states.azblob.store import open_azblob_store

    conn_str = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={azurite.endpoint};"
    )
    env = {"AZURE_STORAGE_CONNECTION_STRING": conn_str}
    open_azblob_store(spec, env=env).write(State())
    assert open_azblob_store(spec, env=env).read().serial == 1


def test_wrong_key_is_an_auth_error_without_the_key(azurite: Azurite, spec: str) -> None:
    from provisioner.states.azblob.store import open_azblob_store

    wrong = base64.b64encode(b"not the key of this account, 64 bytes long........").decode()
    env = {"AZURE_STORAGE_KEY": wrong, "PROVISION_STATE_ENDPOINT": azurite.endpoint}
    with pytest.raises(AuthError) as err:
        open_azblob_store(spec, env=env).read()
    assert wrong not in str(err.value) and spec in str(err.value)


def test_missing_container_is_a_clear_error(azurite: Azurite) -> None:
    from provisioner.states.azblob.store import open_azblob_store

    store = open_azblob_store(f"azblob://{ACCOUNT}/no-such-container/s.json", env=azurite.env)
    for action in (store.read, lambda: store.lock("apply").__enter__()):
        with pytest.raises(StateError, match="container 'no-such-container' does not exist"):
            action()


def test_unreachable_endpoint_is_a_clear_error() -> None:
    from provisioner.states.azblob.store import open_azblob_store

    env = {"AZURE_STORAGE_KEY": KEY, "PROVISION_STATE_ENDPOINT": "http://127.0.0.1:9/acct"}
    store = open_azblob_store(f"azblob://{ACCOUNT}/tfstate/s.json", env=env, retry_total=0)
    with pytest.raises(StateError, match="did not answer") as err:
        store.read()
    assert KEY not in str(err.value)


# --- through the CLI -----------------------------------------------------------------------


def test_cli_state_commands_on_a_blob_state(
    azurite: Azurite, spec: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner.cli.main import main
    from provisioner.states.azblob.store import open_azblob_store

    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "PROVISION_STATE_ENDPOINT", "PROVISION_STATE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["state", "list", "--state", spec, "--state-endpoint", azurite.endpoint]) == 0
    assert f"No state at {spec} yet." in capsys.readouterr().err

    open_azblob_store(spec, env=azurite.env).write(sample_state())
    monkeypatch.setenv("PROVISION_STATE", spec)
    monkeypatch.setenv("PROVISION_STATE_ENDPOINT", azurite.endpoint)
    assert main(["state", "list"]) == 0
    assert "project-x" in capsys.readouterr().out

    holder = open_azblob_store(spec, env=azurite.env)
    with holder.lock("apply") as info:
        assert main(["force-unlock", info.id]) == 0
        assert f"Removed the lock {info.id}" in capsys.readouterr().out
        assert open_azblob_store(spec, env=azurite.env).current_lock() is None


def test_cli_without_the_azure_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner.cli.main import main

    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)
    monkeypatch.delitem(sys.modules, "provisioner.states.azblob.store", raising=False)
    assert main(["state", "list", "--state", "azblob://contoso/tfstate/s.json"]) == 1
    err = capsys.readouterr().err
    assert INSTALL in err and "Traceback" not in err


def test_the_journal_is_an_append_blob_no_second_writer_can_interleave(
    azurite: Azurite, spec: str, open_: Callable[..., Any]
) -> None:
    from azure.storage.blob import BlobClient

    from provisioner.errors import LockError
    from provisioner.states.journal_writer import JournalWriter
    from provisioner.states.records import ChatRecord, MemberRecord
    from provisioner.states.store import JournaledStore

    inner = open_()
    store = JournaledStore(inner, inner.journal_file())
    record = ChatRecord("19:a@thread.v2", "group", (MemberRecord("a@x.com"),), "A")
    with store.lock("apply"):
        writer = JournalWriter(store, store.read())
        writer.start()
        writer.update(lambda s: s.put_chat("a", record))
        loc = parse_azblob_url(spec)
        journal = BlobClient(
            azurite.endpoint,
            loc.container,
            loc.blob + ".journal",
            credential={"account_name": ACCOUNT, "account_key": KEY},
        )
        assert journal.get_blob_properties().blob_type == "AppendBlob"
        journal.append_block(b"someone else")  # not this run's append position any more
        with pytest.raises(LockError, match="changed by another writer"):
            writer.update(lambda s: s.put_chat("b", record))
        writer.abandon()
    # What this run made durable before is still read back; the foreign bytes are a torn tail.
    again = open_()
    assert set(JournaledStore(again, again.journal_file()).read().chats) == {"a"}
