"""Credentials: each flow's selection and error path, MSAL with an injected HTTP client."""

from __future__ import annotations

import base64
import datetime
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import click
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lib.tokens import b64

from provisioner.cli.options import connection_from_options, connection_options
from provisioner.errors import AuthError, InputError
from provisioner.signin.chooser import (
    CLOUDS,
    ConfidentialClientCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    StaticToken,
    credential_from_env,
    graph_url_for,
    token_cache_path,
    validate_graph_url,
)

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
SECRET = "s3cr3t~value-that-must-not-leak"
BASE = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT}


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.text = json.dumps(body)
        self.headers: dict[str, str] = {"Content-Type": "application/json"}

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


class FakeLogin:
    """Stands in for the Microsoft Entra endpoints MSAL talks to (no network)."""

    def __init__(self, host: str = "https://login.microsoftonline.com", tenant: str = TENANT):
        self.host = host
        self.tenant = tenant
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.token_answers: list[tuple[int, dict[str, Any]]] = []
        self.issued = 0

    def _config(self) -> dict[str, Any]:
        root = f"{self.host}/{self.tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "issuer": f"{self.host}/{self.tenant}/v2.0",
        }

    def get(self, url: str, params: Any = None, headers: Any = None, **kw: Any) -> FakeResponse:
        self.calls.append(("GET", url, dict(params or {})))
        if url.endswith("/.well-known/openid-configuration"):
            if f"/{self.tenant}/" not in url or not url.startswith(self.host):
                return FakeResponse(400, {"error": "invalid_tenant"})
            return FakeResponse(200, self._config())
        if url.endswith("/metadata/identity/oauth2/token"):
            self.issued += 1
            return FakeResponse(
                200,
                {
                    "access_token": f"mi-token-{self.issued}",
                    "expires_in": "3599",
                    "resource": (params or {}).get("resource"),
                    "token_type": "Bearer",
                },
            )
        return FakeResponse(404, {"error": "not_found"})

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kw: Any
    ) -> FakeResponse:
        form = data if isinstance(data, dict) else {k: v[0] for k, v in parse_qs(data).items()}
        self.calls.append(("POST", url, dict(form)))
        if url.endswith("/devicecode"):
            return FakeResponse(
                200,
                {
                    "device_code": "dc",
                    "user_code": "ABCD-EFGH",
                    "verification_uri": "https://microsoft.com/devicelogin",
                    "expires_in": 900,
                    "interval": 1,
                    "message": "To sign in, open https://microsoft.com/devicelogin and enter "
                    "ABCD-EFGH",
                },
            )
        if url.endswith("/token"):
            if self.token_answers:
                status, body = self.token_answers.pop(0)
                return FakeResponse(status, body)
            self.issued += 1
            body = {
                "access_token": f"token-{self.issued}",
                "expires_in": 3600,
                "token_type": "Bearer",
            }
            if form.get("grant_type") != "client_credentials":
                body.update(user_tokens(self.host, self.tenant))
            return FakeResponse(200, body)
        return FakeResponse(404, {"error": "not_found"})

    def token_posts(self) -> list[dict[str, Any]]:
        return [
            form for method, url, form in self.calls if method == "POST" and url.endswith("/token")
        ]


def user_tokens(host: str, tenant: str) -> dict[str, Any]:
    """The id_token and client_info MSAL needs to remember a signed-in account."""
    uid = "5f3c1e2a-0000-4000-8000-000000000001"
    claims = {
        "iss": f"{host}/{tenant}/v2.0",
        "sub": "subject",
        "aud": CLIENT,
        "tid": tenant,
        "oid": uid,
        "preferred_username": "adele@contoso.com",
        "iat": int(time.time()),
        "exp": int(time.time()) + 3600,
    }
    return {
        "refresh_token": "refresh-token-value",
        "id_token": f"{b64({'alg': 'none'})}.{b64(claims)}.",
        "client_info": b64({"uid": uid, "utid": tenant}),
        "scope": "https://graph.microsoft.com/.default",
    }


def env_with(**extra: str) -> dict[str, str]:
    return {**BASE, **extra}


# -- choosing a flow --------------------------------------------------------------------------


def test_no_credentials_names_every_option() -> None:
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", {})
    text = str(err.value)
    for name in (
        "PROVISION_ACCESS_TOKEN",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
        "id-token: write",
        "--auth azure-cli",
        "managed-identity",
        "device-code",
        "azure-pipelines",
    ):
        assert name in text


SECRET_ENV = {**BASE, "AZURE_CLIENT_SECRET": SECRET}


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_SECRET": SECRET}, "AZURE_CLIENT_ID is not set"),
        ({"AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": SECRET}, "AZURE_TENANT_ID is not set"),
        ({**BASE}, "AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or"),
        ({**SECRET_ENV, "AZURE_CLIENT_ID": "my-app"}, "AZURE_CLIENT_ID is not a GUID"),
        ({**SECRET_ENV, "AZURE_TENANT_ID": "contoso/x"}, "AZURE_TENANT_ID"),
        (
            {**BASE, "AZURE_CLIENT_CERTIFICATE_PATH": "/no/cert.pem"},
            "AZURE_CLIENT_CERTIFICATE_PATH",
        ),
        ({**BASE, "AZURE_FEDERATED_TOKEN_FILE": "/no/token"}, "AZURE_FEDERATED_TOKEN_FILE"),
        ({**SECRET_ENV, "AZURE_AUTHORITY_HOST": "http://login.example"}, "AZURE_AUTHORITY_HOST"),
    ],
)
def test_a_missing_or_invalid_variable_is_named(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", environ)
    assert variable in str(err.value)
    assert SECRET not in str(err.value)


def test_unknown_auth_mode_and_cloud() -> None:
    with pytest.raises(AuthError):
        credential_from_env("kerberos", "global", {})
    with pytest.raises(InputError):
        credential_from_env(None, "mars", {"PROVISION_ACCESS_TOKEN": "x"})


def test_tenant_may_be_a_domain_name() -> None:
    cred = credential_from_env(
        None,
        "global",
        env_with(AZURE_TENANT_ID="contoso.onmicrosoft.com", AZURE_CLIENT_SECRET=SECRET),
    )
    assert isinstance(cred, ConfidentialClientCredential)


# -- static token -----------------------------------------------------------------------------


def test_static_token_is_used_as_it_is() -> None:
    cred = credential_from_env(None, "global", {"PROVISION_ACCESS_TOKEN": "Bearer abc.def", **BASE})
    assert isinstance(cred, StaticToken)
    assert cred.get_token() == "abc.def"
    assert "abc.def" not in repr(cred)


def test_rejected_static_token_says_which_variable() -> None:
    cred = StaticToken("abc")
    cred.invalidate()
    with pytest.raises(AuthError) as err:
        cred.get_token()
    assert "PROVISION_ACCESS_TOKEN" in str(err.value) and "abc" not in str(err.value)


@pytest.mark.parametrize("value", ["", "  ", "two words", "tab\there"])
def test_unusable_static_token(value: str) -> None:
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", {"PROVISION_ACCESS_TOKEN": value})
    assert "PROVISION_ACCESS_TOKEN" in str(err.value)


def test_expired_jwt_is_refused_before_any_request() -> None:
    expired = f"{b64({'alg': 'RS256'})}.{b64({'exp': int(time.time()) - 60})}.sig"
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", {"PROVISION_ACCESS_TOKEN": expired})
    assert "expired" in str(err.value) and expired not in str(err.value)


# -- client secret ------------------------------------------------------------------------------


def secret_credential(login: FakeLogin, cloud: str = "global", **extra: str) -> Any:
    return credential_from_env(
        None, cloud, env_with(AZURE_CLIENT_SECRET=SECRET, **extra), http_client=login
    )


def test_client_secret_flow_and_caching() -> None:
    login = FakeLogin()
    cred = secret_credential(login)
    assert login.calls == []  # nothing happens before the first token is needed
    assert cred.get_token() == "token-1"
    assert cred.get_token() == "token-1"
    posts = login.token_posts()
    assert len(posts) == 1
    assert posts[0]["grant_type"] == "client_credentials"
    assert posts[0]["client_secret"] == SECRET
    assert posts[0]["scope"] == "https://graph.microsoft.com/.default"
    assert SECRET not in repr(cred) and SECRET not in cred.description


def test_token_is_refreshed_before_it_expires() -> None:
    login = FakeLogin()
    login.token_answers = [
        (200, {"access_token": "short", "expires_in": 200, "token_type": "Bearer"})
    ]
    cred = secret_credential(login)
    assert cred.get_token() == "short"
    # Less than the 5-minute margin left: the next call fetches a new one.
    assert cred.get_token() == "token-1"
    assert len(login.token_posts()) == 2


def test_refresh_is_driven_by_the_clock() -> None:
    login = FakeLogin()
    now = [1000.0]
    cred = credential_from_env(
        None,
        "global",
        env_with(AZURE_CLIENT_SECRET=SECRET),
        http_client=login,
        clock=lambda: now[0],
    )
    cred.get_token()
    now[0] += 3600 - 400
    cred.get_token()
    assert len(login.token_posts()) == 1
    now[0] += 200  # inside the margin: ask MSAL again
    cred.invalidate()  # and make MSAL forget its own cached copy
    assert cred.get_token() == "token-2"


def test_invalidate_forces_a_new_token() -> None:
    login = FakeLogin()
    cred = secret_credential(login)
    assert cred.get_token() == "token-1"
    cred.invalidate()
    assert cred.get_token() == "token-2"


def test_rejected_secret_names_the_variable_without_the_value() -> None:
    login = FakeLogin()
    login.token_answers = [
        (
            401,
            {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided. Ensure "
                "the secret being sent in the request is the client secret value.\r\nTrace ID: x",
            },
        )
    ]
    cred = secret_credential(login)
    with pytest.raises(AuthError) as err:
        cred.get_token()
    text = str(err.value)
    assert "AZURE_CLIENT_SECRET" in text and "AADSTS7000215" in text
    assert SECRET not in text and "Trace ID" not in text


def test_unknown_tenant_is_an_auth_error() -> None:
    login = FakeLogin(tenant="someone-else")
    cred = secret_credential(login)
    with pytest.raises(AuthError) as err:
        cred.get_token()
    assert "could not get a token" in str(err.value)


@pytest.mark.parametrize(
    ("cloud", "login_host", "graph"),
    [
        ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
        ("dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        ("china", "https://login.partner.microsoftonline.cn", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)  # fmt: skip
def test_national_clouds_pick_login_host_and_scope(cloud: str, login_host: str, graph: str) -> None:
    login = FakeLogin(host=login_host)
    cred = secret_credential(login, cloud)
    assert cred.get_token() == "token-1"
    assert login.calls[0][1].startswith(f"{login_host}/{TENANT}/")
    assert login.token_posts()[0]["scope"] == f"{graph}/.default"
    assert graph_url_for(cloud) == f"{graph}/v1.0"


def test_authority_host_override() -> None:
    login = FakeLogin(host="https://login.example.net")
    cred = secret_credential(login, AZURE_AUTHORITY_HOST="login.example.net")
    assert cred.get_token() == "token-1"


# -- certificates -------------------------------------------------------------------------------


def make_certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provision-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return make_certificate()


def pem(key: rsa.RSAPrivateKey, cert: x509.Certificate, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ) + cert.public_bytes(serialization.Encoding.PEM)


def assertion_header(form: dict[str, Any]) -> dict[str, Any]:
    assertion = form["client_assertion"]
    if isinstance(assertion, bytes):
        assertion = assertion.decode()
    header = assertion.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(header + "==")))


@pytest.mark.parametrize("password", [None, "pem-pass"])
def test_pem_certificate(tmp_path: Path, certificate: Any, password: str | None) -> None:
    path = tmp_path / "cert.pem"
    key, cert = certificate
    path.write_bytes(pem(key, cert, password.encode() if password else None))
    environ = env_with(AZURE_CLIENT_CERTIFICATE_PATH=str(path))
    if password:
        environ["AZURE_CLIENT_CERTIFICATE_PASSWORD"] = password
    login = FakeLogin()
    cred = credential_from_env(None, "global", environ, http_client=login)
    assert cred.get_token() == "token-1"
    form = login.token_posts()[0]
    assert "client_secret" not in form
    assert form["client_assertion_type"].endswith("jwt-bearer")
    assert "x5t#S256" in assertion_header(form) or "x5t" in assertion_header(form)


def test_pfx_certificate_with_password(tmp_path: Path, certificate: Any) -> None:
    key, cert = certificate
    path = tmp_path / "cert.pfx"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"provision", key, cert, None, serialization.BestAvailableEncryption(b"pfx-pass")
        )
    )
    login = FakeLogin()
    environ = env_with(
        AZURE_CLIENT_CERTIFICATE_PATH=str(path), AZURE_CLIENT_CERTIFICATE_PASSWORD="pfx-pass"
    )
    cred = credential_from_env(None, "global", environ, http_client=login)
    assert cred.get_token() == "token-1"
    assert "client_assertion" in login.token_posts()[0]
    assert "pfx-pass" not in repr(cred)


@pytest.mark.parametrize(
    ("kind", "password", "message"),
    [
        ("pem", None, "AZURE_CLIENT_CERTIFICATE_PASSWORD is not set"),
        ("pem", "wrong", "AZURE_CLIENT_CERTIFICATE_PASSWORD does not decrypt"),
        ("pfx", "wrong", "AZURE_CLIENT_CERTIFICATE_PASSWORD does not decrypt"),
        ("pfx", None, "AZURE_CLIENT_CERTIFICATE_PASSWORD is not set"),
        ("key-only", None, "without a certificate"),
        ("junk", None, "not a readable PEM or PFX"),
    ],
)
def test_certificate_problems_are_reported_up_front(
    tmp_path: Path, certificate: Any, kind: str, password: str | None, message: str
) -> None:
    key, cert = certificate
    path = tmp_path / "cert"
    if kind == "pem":
        path.write_bytes(pem(key, cert, b"right"))
    elif kind == "pfx":
        path.write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"p", key, cert, None, serialization.BestAvailableEncryption(b"right")
            )
        )
    elif kind == "key-only":
        path.write_bytes(pem(key, cert).split(b"-----BEGIN CERTIFICATE")[0])
    else:
        path.write_bytes(b"\x00\x01 not a certificate")
    environ = env_with(AZURE_CLIENT_CERTIFICATE_PATH=str(path))
    if password:
        environ["AZURE_CLIENT_CERTIFICATE_PASSWORD"] = password
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", environ)
    assert message in str(err.value)
    assert "right" not in str(err.value)


# -- workload identity federation -----------------------------------------------------------------


def test_federated_token_file_is_re_read_for_each_token(tmp_path: Path) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("oidc-token-1\n")
    login = FakeLogin()
    cred = credential_from_env(
        None, "global", env_with(AZURE_FEDERATED_TOKEN_FILE=str(token_file)), http_client=login
    )
    assert cred.get_token() == "token-1"
    token_file.write_text("oidc-token-2")  # the platform rotated it
    cred.invalidate()
    assert cred.get_token() == "token-2"
    assertions = [str(form["client_assertion"]) for form in login.token_posts()]
    assert assertions == ["oidc-token-1", "oidc-token-2"]


def test_empty_federated_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("")
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", env_with(AZURE_FEDERATED_TOKEN_FILE=str(token_file)))
    assert "AZURE_FEDERATED_TOKEN_FILE" in str(err.value)


def test_secret_wins_over_other_credentials(tmp_path: Path) -> None:
    login = FakeLogin()
    environ = env_with(AZURE_CLIENT_SECRET=SECRET, AZURE_FEDERATED_TOKEN_FILE="/nonexistent")
    cred = credential_from_env(None, "global", environ, http_client=login)
    assert "client secret" in cred.description


# -- managed identity ---------------------------------------------------------------------------


@pytest.fixture
def on_a_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
                 "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                 "MY_MANAGED_IDENTITY_CONFIG"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("on_a_vm")
@pytest.mark.parametrize("client_id", [None, CLIENT])
def test_managed_identity(client_id: str | None) -> None:
    login = FakeLogin()
    environ = {"AZURE_CLIENT_ID": client_id} if client_id else {}
    cred = credential_from_env("managed-identity", "usgov", environ, http_client=login)
    assert isinstance(cred, ManagedIdentityCredential)
    assert cred.get_token() == "mi-token-1"
    assert cred.get_token() == "mi-token-1"
    cred.invalidate()
    assert cred.get_token() == "mi-token-2"
    _, url, params = login.calls[0]
    assert url == "http://169.254.169.254/metadata/identity/oauth2/token"
    assert params["resource"] == "https://graph.microsoft.us"
    assert params.get("client_id") == client_id


def test_managed_identity_client_id_must_be_a_guid() -> None:
    with pytest.raises(AuthError) as err:
        credential_from_env("managed-identity", "global", {"AZURE_CLIENT_ID": "x"})
    assert "AZURE_CLIENT_ID" in str(err.value)


# -- device code ----------------------------------------------------------------------------------


def device_code(
    login: FakeLogin, tmp_path: Path, prompt: Callable[[str], None] | None
) -> DeviceCodeCredential:
    environ = {
        "AZURE_CLIENT_ID": CLIENT,
        "AZURE_TENANT_ID": TENANT,
        "XDG_CACHE_HOME": str(tmp_path),
    }
    cred = credential_from_env("device-code", "global", environ, http_client=login, prompt=prompt)
    assert isinstance(cred, DeviceCodeCredential)
    return cred


def test_device_code_prompts_through_the_callback_and_caches(tmp_path: Path) -> None:
    login = FakeLogin()
    shown: list[str] = []
    assert device_code(login, tmp_path, shown.append).get_token() == "token-1"
    # (Where the platform cannot encrypt the cache, a warning comes first: test_token_cache.)
    assert shown and "ABCD-EFGH" in shown[-1]
    cache = token_cache_path({"XDG_CACHE_HOME": str(tmp_path)})
    assert cache == tmp_path / "provision" / "msal_token_cache.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert "refresh-token-value" in cache.read_text()

    # A later run signs in silently from the cache: no prompt.
    later = FakeLogin()
    again = device_code(later, tmp_path, prompt=None)
    assert again.get_token() == "token-1"  # still valid in MSAL's cache
    assert not any(url.endswith("/devicecode") for _, url, _ in later.calls)


def test_device_code_without_a_prompt_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuthError) as err:
        device_code(FakeLogin(), tmp_path, prompt=None).get_token()
    assert "device code" in str(err.value)


def test_device_code_needs_a_client_id() -> None:
    with pytest.raises(AuthError) as err:
        credential_from_env("device-code", "global", {})
    assert "AZURE_CLIENT_ID" in str(err.value)


# -- Graph URLs and CLI options -------------------------------------------------------------------


def test_every_cloud_has_https_hosts() -> None:
    for name, cloud in CLOUDS.items():
        assert validate_graph_url(graph_url_for(name)).startswith("https://")
        assert cloud.login.startswith("https://")


@click.command()
@connection_options
def show(graph_url: str | None, cloud: str, auth: str) -> None:
    connection = connection_from_options(graph_url, cloud, auth)
    click.echo(f"{connection.graph_url} {connection.credential.description}")


def test_connection_options(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    env = {"PROVISION_ACCESS_TOKEN": "t", "PROVISION_GRAPH_URL": None}
    result = runner.invoke(show, ["--cloud", "usgov"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip()
        == "https://graph.microsoft.us/v1.0 access token from PROVISION_ACCESS_TOKEN"
    )
    result = runner.invoke(
        show, [], env={**env, "PROVISION_GRAPH_URL": "http://127.0.0.1:8080/v1.0"}
    )
    assert result.output.startswith("http://127.0.0.1:8080/v1.0 ")
    result = runner.invoke(show, ["--graph-url", "http://graph.example/v1.0"], env=env)
    assert isinstance(result.exception, InputError)
    result = runner.invoke(show, ["--auth", "device-code"], env=env)
    assert isinstance(result.exception, AuthError)
    result = runner.invoke(show, ["--auth", "password"], env=env)
    assert result.exit_code != 0 and "password" in result.output


# -- CI sign-ins: GitHub's OIDC token, Azure CLI, Azure Pipelines (issue 17) -------------------

GITHUB_JWT_CLAIMS = {"iss": "https://token.actions.githubusercontent.com", "aud": "api://x"}


def _github_jwt(exp: float) -> str:
    return f"{b64({'alg': 'RS256'})}.{b64({**GITHUB_JWT_CLAIMS, 'exp': int(exp)})}.c2ln"


@pytest.fixture
def github(httpserver: Any) -> dict[str, Any]:
    """A loopback stand-in for GitHub's OIDC token service: answers a fresh JWT per request
    (or what ``answers`` says) and records the requests."""
    from werkzeug import Request, Response

    world: dict[str, Any] = {"requests": [], "answers": [], "exp": time.time() + 600}

    def answer(request: Request) -> Response:
        world["requests"].append(request)
        if world["answers"]:
            status, body = world["answers"].pop(0)
            return Response(json.dumps(body), status=status, content_type="application/json")
        jwt = _github_jwt(world["exp"])
        world["last"] = jwt
        return Response(json.dumps({"value": jwt}), content_type="application/json")

    httpserver.expect_request("/idtoken").respond_with_handler(answer)
    world["env"] = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": httpserver.url_for("/idtoken") + "?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "gh-request-token",
    }
    return world


def test_github_oidc_token_is_fetched_by_provision_for_each_sign_in(
    github: dict[str, Any],
) -> None:
    login = FakeLogin()
    cred = credential_from_env(None, "global", env_with(**github["env"]), http_client=login)
    assert cred.description == f"GitHub OIDC token for app {CLIENT}"
    assert cred.get_token() == "token-1"
    (request,) = github["requests"]
    assert request.args["audience"] == "api://AzureADTokenExchange"
    assert request.args["api-version"] == "2.0"
    assert request.headers["Authorization"] == "bearer gh-request-token"
    assert [f["client_assertion"] for f in login.token_posts()] == [github["last"]]
    # A later sign-in (expired access token, a 401) reuses GitHub's token while it is valid.
    for _ in range(2):
        cred.invalidate()
        cred.get_token()
    assert len(github["requests"]) == 1


def test_github_oidc_token_about_to_expire_is_fetched_again(github: dict[str, Any]) -> None:
    github["exp"] = time.time() + 30  # less than the margin Entra needs: fetched every time
    login = FakeLogin()
    cred = credential_from_env(None, "global", env_with(**github["env"]), http_client=login)
    assertions = []
    for _ in range(3):
        cred.invalidate()
        cred.get_token()
        assertions.append(github["last"])
    assert len(github["requests"]) == 3
    assert [f["client_assertion"] for f in login.token_posts()] == assertions


def test_a_token_file_or_secret_wins_over_githubs_token(
    github: dict[str, Any], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token")
    environ = env_with(AZURE_FEDERATED_TOKEN_FILE=str(token_file), **github["env"])
    assert credential_from_env(None, "global", environ).description.startswith("federated")


def test_github_refusing_the_token_is_one_line_with_the_permission_hint(
    github: dict[str, Any],
) -> None:
    github["answers"].append((403, {"message": "no id-token permission"}))
    cred = credential_from_env(None, "global", env_with(**github["env"]), http_client=FakeLogin())
    with pytest.raises(AuthError) as err:
        cred.get_token()
    text = str(err.value)
    assert text.splitlines()[0] == "GitHub's OIDC token service refused the request (HTTP 403)"
    assert "id-token: write" in text
    assert "gh-request-token" not in text


def test_github_job_without_the_app_ids_says_which_to_set(github: dict[str, Any]) -> None:
    with pytest.raises(AuthError) as err:
        credential_from_env(None, "global", dict(github["env"]))
    assert "AZURE_TENANT_ID and AZURE_CLIENT_ID are not set" in str(err.value)


def _fake_az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """An `az` first on PATH (Azure Identity runs `az account get-access-token`)."""
    az = tmp_path / "bin/az"
    az.parent.mkdir(exist_ok=True)
    az.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    az.chmod(0o755)
    monkeypatch.setenv("PATH", f"{az.parent}:/usr/bin:/bin")


def test_azure_cli_sign_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("azure.identity")
    expires = int(time.time()) + 3600
    answer = {"accessToken": "cli-token", "expires_on": expires, "tokenType": "Bearer",
              "expiresOn": "2099-01-01 00:00:00.000000", "tenant": TENANT}  # fmt: skip
    _fake_az(tmp_path, monkeypatch, f"echo '{json.dumps(answer)}'\n")
    cred = credential_from_env("azure-cli", "usgov", {"AZURE_TENANT_ID": TENANT})
    assert cred.get_token() == "cli-token"
    assert cred.description == f"Azure CLI, tenant {TENANT}"


def test_azure_cli_not_signed_in_is_one_line_and_the_rest_is_detail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.identity")
    _fake_az(
        tmp_path,
        monkeypatch,
        "echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
    )
    cred = credential_from_env("azure-cli", "global", {})
    with pytest.raises(AuthError) as err:
        cred.get_token()
    assert err.value.message.startswith("could not sign in (Azure CLI): ")
    assert "az login" in err.value.message and "\n" not in err.value.message
    assert "az login" in (err.value.hint or "")
    assert err.value.detail  # Azure Identity's own text, for --debug


def test_azure_pipelines_names_what_is_missing() -> None:
    pytest.importorskip("azure.identity")
    environ = env_with(SYSTEM_OIDCREQUESTURI="https://dev.azure.com/org/")
    with pytest.raises(AuthError) as err:
        credential_from_env("azure-pipelines", "global", environ)
    assert "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID" in str(err.value)
    environ["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"] = "0d9f3a57-4a0c-4b5e-9a7d-1b2c3d4e5f60"
    with pytest.raises(AuthError) as err:
        credential_from_env("azure-pipelines", "global", environ)
    assert "SYSTEM_ACCESSTOKEN" in str(err.value) and "$(System.AccessToken)" in str(err.value)
    environ["SYSTEM_ACCESSTOKEN"] = "ado-token"
    cred = credential_from_env("azure-pipelines", "global", environ)
    assert "service connection 0d9f3a57" in cred.description
    assert "ado-token" not in repr(cred)


def test_azure_identity_failures_become_one_line() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from provisioner.signin.azure_identity import AzureIdentityCredential

    chain = (
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n"
        "\tEnvironmentCredential: EnvironmentCredential authentication unavailable.\n"
        "\tAzureCliCredential: AADSTS700024: Client assertion is not within its valid time "
        "range. Visit https://aka.ms/x to troubleshoot.\n"
        "To mitigate this issue, please refer to the troubleshooting guidelines here."
    )

    class Refusing:
        def get_token(self, *scopes: str) -> Any:
            raise ClientAuthenticationError(message=chain)

    cred = AzureIdentityCredential(Refusing(), "s/.default", "Azure CLI", "run az login")
    with pytest.raises(AuthError) as err:
        cred.get_token()
    assert str(err.value) == (
        "could not sign in (Azure CLI): AzureCli: AADSTS700024: Client assertion is not "
        "within its valid time range.\nhint: run az login"
    )
    assert "Attempted credentials" in (err.value.detail or "")


# --- --auth default: Azure Identity's DefaultAzureCredential (issue 25, item 3) ---------------


def test_default_chain_signs_in_with_its_first_source_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.identity")
    expires = int(time.time()) + 3600
    answer = {"accessToken": "chain-token", "expires_on": expires, "tokenType": "Bearer",
              "expiresOn": "2099-01-01 00:00:00.000000", "tenant": TENANT}  # fmt: skip
    _fake_az(tmp_path, monkeypatch, f"echo '{json.dumps(answer)}'\n")
    # Azure Identity's own narrowing of the chain (no managed identity probe in a test).
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")
    cred = credential_from_env("default", "global", {})
    assert cred.get_token() == "chain-token"
    assert cred.description == "Azure Identity's default chain"


def test_default_chain_failure_is_one_line_with_the_chain_as_detail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.identity")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "dev")  # developer sources only: offline
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    cred = credential_from_env("default", "global", {})
    with pytest.raises(AuthError) as err:
        cred.get_token()
    assert err.value.message.startswith("could not sign in (Azure Identity's default chain)")
    assert "\n" not in err.value.message
    assert "AZURE_TOKEN_CREDENTIALS" in (err.value.hint or "")
    assert "AzureCliCredential" in (err.value.detail or "")  # the whole chain, for --debug


def test_default_is_an_auth_mode_of_the_commands() -> None:
    from provisioner.cli.main import cli

    (auth,) = [p for p in cli.commands["plan"].params if p.name == "auth"]
    assert "default" in auth.type.choices  # type: ignore[attr-defined]
