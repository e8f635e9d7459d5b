"""Azure AD sign-in for an azblob:// state: one chooser for Graph and the blob (issue 21): the
blob signs in as the run does (``--auth``, the same variables) for Azure Storage; with
``--auth env`` and no app named, an Azure Pipelines service connection, else
DefaultAzureCredential (as documented before). A failed sign-in is one line at once, not Azure
Identity's chain once per SDK retry (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("azure.identity")

from azure.core.exceptions import ClientAuthenticationError
from azure.identity import AzureCliCredential, AzurePipelinesCredential, DefaultAzureCredential

from provisioner.errors import AuthError, StateError
from provisioner.signin.azure_identity import STORAGE_HINT, AzureIdentityCredential
from provisioner.signin.chooser import STORAGE_SCOPE, SignIn
from provisioner.signin.msal_flows import ConfidentialClientCredential, ManagedIdentityCredential
from provisioner.states.azblob.conn import BlobCredential, BlobLocation, connection_for

LOC = BlobLocation("contoso", "tfstate", "teams.json")
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
GITHUB = {
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://pipelines.example.invalid/idtoken?api-version=2.0",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "gh-request-token",
}
CHAIN = (
    "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
    "Attempted credentials:\n"
    "\tEnvironmentCredential: EnvironmentCredential authentication unavailable.\n"
    "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable.\n"
    "\tAzureCliCredential: Azure CLI not found on path\n"
    "To mitigate this issue, please refer to the troubleshooting guidelines here at https://x."
)


def test_github_actions_job_signs_in_with_its_oidc_token() -> None:
    conn = connection_for(
        LOC, None, {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT, **GITHUB}
    )
    assert isinstance(conn.credential, BlobCredential)
    assert isinstance(conn.credential.inner, ConfidentialClientCredential)  # Graph's flow
    assert conn.how == f"GitHub OIDC token for app {CLIENT}"
    assert "gh-request-token" not in repr(conn)


def test_the_blob_signs_in_as_graph_does_for_storage(tmp_path: Path) -> None:
    env = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT, **GITHUB}
    (tmp_path / "token").write_text("federated-token")
    token_file = str(tmp_path / "token")
    conn = connection_for(LOC, None, {**env, "AZURE_FEDERATED_TOKEN_FILE": token_file})
    assert conn.how == f"federated token for app {CLIENT}"  # the same app as for Graph
    assert conn.credential.inner._scope == STORAGE_SCOPE
    # --auth names the sign-in for both: the state blob no longer ignores it.
    mi = connection_for(LOC, None, {}, SignIn("managed-identity"))
    assert isinstance(mi.credential.inner, ManagedIdentityCredential)
    assert mi.credential.inner._resource == "https://storage.azure.com"
    cli = connection_for(LOC, None, {}, SignIn("azure-cli", "usgov"))
    assert isinstance(cli.credential.inner, AzureIdentityCredential)
    assert isinstance(cli.credential.inner._credential, AzureCliCredential)
    assert SignIn.from_env({"PROVISION_AUTH": "azure-cli"}) == SignIn("azure-cli")


def test_a_graph_token_alone_leaves_the_blob_to_default_azure_credential() -> None:
    # PROVISION_ACCESS_TOKEN is a Graph token (another audience): as documented, the blob
    # then signs in with DefaultAzureCredential (managed identity, az login).
    conn = connection_for(LOC, None, {"PROVISION_ACCESS_TOKEN": "graph-token"})
    assert isinstance(conn.credential.inner, AzureIdentityCredential)
    assert isinstance(conn.credential.inner._credential, DefaultAzureCredential)
    assert conn.how == "Azure AD (DefaultAzureCredential)"
    # A half-named app is an error naming the variable, not a silent other identity.
    with pytest.raises(AuthError, match="AZURE_TENANT_ID is not set"):
        connection_for(LOC, None, {"AZURE_CLIENT_SECRET": "s", "AZURE_CLIENT_ID": CLIENT})


def test_azure_pipelines_service_connection() -> None:
    env = {
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT,
        "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "conn-1",
        "SYSTEM_ACCESSTOKEN": "ado-token",
        "SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/org/",
    }
    conn = connection_for(LOC, None, env)
    inner = conn.credential.inner
    assert isinstance(inner._credential, AzurePipelinesCredential)
    assert "ado-token" not in repr(conn) and "conn-1" in conn.how


def test_plain_http_endpoint_with_azure_ad_is_a_clear_error() -> None:
    with pytest.raises(StateError) as err:
        connection_for(LOC, "http://127.0.0.1:10000/devstoreaccount1", {})
    assert "needs an https:// endpoint" in str(err.value)
    assert "AZURE_STORAGE_KEY" in str(err.value)


def test_a_failed_sign_in_is_one_line_with_the_chain_as_detail() -> None:
    calls = []

    class Refusing:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            calls.append(scopes)
            raise ClientAuthenticationError(message=CHAIN)

    chain = AzureIdentityCredential(
        Refusing(), STORAGE_SCOPE, "Azure AD (DefaultAzureCredential)", STORAGE_HINT
    )
    checked = BlobCredential(chain, str(LOC))
    with pytest.raises(AuthError) as err:
        checked.get_token("https://storage.azure.com/.default")
    assert err.value.message == (
        f"no access to the state {LOC}: could not sign in (Azure AD (DefaultAzureCredential)): "
        "no sign-in is set up (tried Environment, ManagedIdentity, AzureCli)"
    )
    assert "AZURE_STORAGE_KEY" in (err.value.hint or "")
    assert "Attempted credentials" in (err.value.detail or "")
    assert len(calls) == 1


def test_the_cli_prints_one_line_at_once(tmp_path: Path, httpserver: Any) -> None:
    """End to end: a GitHub job whose OIDC token is refused, with an azblob:// state. Nothing
    leaves loopback (GitHub's token service is a local stand-in; the storage endpoint is never
    reached because sign-in fails first)."""
    httpserver.expect_request("/idtoken").respond_with_json({"message": "no"}, status=403)
    (tmp_path / "chats.yaml").write_text("version: 1\nchats: []\n", encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "PROVISION_", "ACTIONS_"))
    }
    env.update(
        AZURE_TENANT_ID=TENANT,
        AZURE_CLIENT_ID=CLIENT,
        ACTIONS_ID_TOKEN_REQUEST_URL=httpserver.url_for("/idtoken"),
        ACTIONS_ID_TOKEN_REQUEST_TOKEN="gh-request-token",
    )
    started = time.monotonic()
    state = ["--state", "azblob://contoso/tfstate/teams.json"]
    endpoint = ["--state-endpoint", "https://127.0.0.1:9/contoso"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "provision"), "plan", "chats.yaml", *state, *endpoint],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr  # the error and its hint
    assert lines[0].startswith("Error: no access to the state azblob://contoso/tfstate/teams.json")
    assert "HTTP 403" in lines[0] and lines[1].startswith("hint: ")
    assert "id-token: write" in lines[1]
    assert "gh-request-token" not in done.stderr
    assert elapsed < 15, f"{elapsed:.1f}s: the sign-in was retried"
    assert json.dumps(done.stdout) == '""'


def test_each_command_hands_its_sign_in_to_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.cli.apply import apply
    from provisioner.cli.options import sign_in
    from provisioner.cli.state import state_list

    monkeypatch.setenv("PROVISION_AUTH", "managed-identity")
    args = ["chats.yaml", "--auth", "azure-cli", "--cloud", "usgov"]
    with apply.make_context("apply", args) as ctx, ctx.scope():
        assert sign_in() == SignIn("azure-cli", "usgov")  # the command line wins
    with state_list.make_context("list", []) as ctx, ctx.scope():
        assert sign_in() == SignIn("managed-identity")  # no --auth here: the environment
