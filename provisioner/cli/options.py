"""What the commands share: the state option, the connection options, colour, notes on stderr.

Only parsing lives here; `connection_from_options` turns the parsed values into a checked
Graph URL and credential through the core (`provisioner.signin.chooser`), raising `ProvisionError`
subclasses like every other core call. The command modules import from here (never from
``cli.main``, which imports them to register them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

# Re-exported: the commands and their tests take every option helper from here.
from provisioner.cli.numbers import MAX_LOCK_TIMEOUT as MAX_LOCK_TIMEOUT
from provisioner.cli.numbers import Duration as Duration
from provisioner.cli.numbers import Number as Number
from provisioner.cli.numbers import parse_duration as parse_duration
from provisioner.signin.chooser import (
    AUTH_MODES,
    CLOUDS,
    DEFAULT_CLOUD,
    Credential,
    SignIn,
    credential_from_env,
    graph_url_for,
    validate_graph_url,
)

if TYPE_CHECKING:
    from provisioner.states.lock import LockInfo
    from provisioner.states.store import StateStore

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STATE_PATH = "provision.state.json"  # = states.records.DEFAULT_STATE_PATH (tested)
STATE_HELP = "The state file, or azblob://ACCOUNT/CONTAINER/PATH (env PROVISION_STATE)."
_ENDPOINT_META = "provision.state_endpoint"


def stacked(decorators: Sequence[Callable[[Any], Any]]) -> Callable[[F], F]:
    """One decorator made of ``decorators``, applied as if written top to bottom (the first
    one is the first option in ``--help``)."""

    def decorate(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def _keep_state_endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta[_ENDPOINT_META] = value


def state_endpoint() -> str | None:
    """The ``--state-endpoint`` of the running command (None: the account's own endpoint)."""
    value = click.get_current_context().meta.get(_ENDPOINT_META)
    return str(value) if value else None


def state_option(fn: F) -> F:
    """Add ``--state`` (the command receives ``state_path``) and ``--state-endpoint`` (read it
    with `state_endpoint`)."""
    fn = click.option(
        "--state-endpoint",
        envvar="PROVISION_STATE_ENDPOINT",
        metavar="URL",
        expose_value=False,
        callback=_keep_state_endpoint,
        help="Blob endpoint for an azblob:// state: Azurite, a national cloud or a private "
        "endpoint (env PROVISION_STATE_ENDPOINT).",
    )(fn)
    return click.option(
        "--state",
        "state_path",
        envvar="PROVISION_STATE",
        default=DEFAULT_STATE_PATH,
        show_default=True,
        metavar="FILE",
        help=STATE_HELP,
    )(fn)


# -- --lock-timeout ------------------------------------------------------------------------------

_LOCK_TIMEOUT_META = "provision.lock_timeout"


def _keep_lock_timeout(ctx: click.Context, param: click.Parameter, value: float) -> None:
    ctx.meta[_LOCK_TIMEOUT_META] = value


def lock_timeout_option(fn: F) -> F:
    """Add ``--lock-timeout DURATION`` to a command that takes the state's lock (read it with
    `lock_timeout`)."""
    return click.option(
        "--lock-timeout",
        type=Duration(),
        default="0s",
        show_default=True,
        expose_value=False,
        callback=_keep_lock_timeout,
        envvar="PROVISION_LOCK_TIMEOUT",
        help="How long to wait for another run's lock on the state (e.g. 30s, 5m; 0s to "
        "24h); 0s fails at once, naming the holder [env PROVISION_LOCK_TIMEOUT].",
    )(fn)


def lock_timeout() -> float:
    """The ``--lock-timeout`` of the running command in seconds (0 when it has none)."""
    return float(click.get_current_context().meta.get(_LOCK_TIMEOUT_META) or 0.0)


def sign_in() -> SignIn:
    """How the running command signs in (its ``--auth`` and ``--cloud``; a command without
    them: ``PROVISION_AUTH``): Graph and an azblob:// state use the same."""
    params = click.get_current_context().params
    if "auth" not in params:
        return SignIn.from_env(os.environ)
    return SignIn(params["auth"] or "env", params.get("cloud") or DEFAULT_CLOUD)


def open_state(state_path: str) -> StateStore:
    """The store for ``--state``, with the command's ``--state-endpoint``, ``--lock-timeout``
    and sign-in."""
    from provisioner.states.store import open_store

    return open_store(state_path, state_endpoint(), lock_timeout=lock_timeout(), sign_in=sign_in())


_NO_COLOR_META = "provision.no_color"


def _keep_no_color(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # ctx.meta is shared by the whole command chain: group or command alike
        ctx.meta[_NO_COLOR_META] = True


def no_color_option(fn: F) -> F:
    """``--no-color`` (env PROVISION_NO_COLOR), on the group and on the commands that colour,
    so both `provision --no-color plan` and `provision plan --no-color` work."""
    return click.option(
        "--no-color",
        is_flag=True,
        envvar="PROVISION_NO_COLOR",
        expose_value=False,
        callback=_keep_no_color,
        help="No colour in the output [env PROVISION_NO_COLOR; also NO_COLOR, TERM=dumb; "
        "FORCE_COLOR turns it on without a terminal].",
    )(fn)


def use_color(environ: Mapping[str, str] | None = None, isatty: bool | None = None) -> bool:
    """Colour as other command-line tools decide it, first rule that applies: `--no-color`
    (env PROVISION_NO_COLOR) off; NO_COLOR set and not empty off (https://no-color.org);
    FORCE_COLOR set, not empty and not 0 on, even into a pipe or a CI log
    (https://force-color.org); TERM=dumb off; otherwise on a terminal only."""
    env = os.environ if environ is None else environ
    context = click.get_current_context(silent=True)
    if context is not None and context.meta.get(_NO_COLOR_META):
        return False
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    if env.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty() if isatty is None else isatty


def note(text: str) -> None:
    """A line for the person running the command, on stderr (stdout stays the result)."""
    click.echo(text, err=True)


def note_takeover(stale: LockInfo) -> None:
    """Say that a run took over ``stale``, a lock whose run is gone."""
    note(
        f"note: took over a stale lock: {stale.operation} by {stale.who} (pid {stale.pid}, "
        f"created {stale.created}) is no longer running."
    )


#: Seconds for one Graph answer, at most (a day would only hide a hung server).
MAX_TIMEOUT = 3600.0
#: Seconds for one Graph answer, at least: less fails every call before Graph can answer.
MIN_TIMEOUT = 0.1
#: Requests per second, at most: far above any limit Graph documents (30/s per tenant).
MAX_RPS = 10_000.0
#: Requests per second, at least: one every 10 s. Below it a run is a hang, not a pace.
MIN_RPS = 0.1
#: Seconds of --consistency-window, at most: a day (Graph's lists lag minutes, not days).
MAX_CONSISTENCY_WINDOW = 86_400.0


def connection_options(func: F) -> F:
    """Add ``--graph-url``, ``--cloud`` and ``--auth`` to a click command.

    The command receives ``graph_url: str | None``, ``cloud: str`` and ``auth: str``.
    """
    func = click.option(
        "--auth",
        type=click.Choice(AUTH_MODES),
        envvar="PROVISION_AUTH",
        default="env",
        show_default=True,
        help="How to sign in (env PROVISION_AUTH). env: PROVISION_ACCESS_TOKEN, or "
        "AZURE_TENANT_ID/AZURE_CLIENT_ID with a secret, certificate or federated token "
        "file, or (GitHub Actions with id-token: write) the job's OIDC token; "
        "default: Azure Identity's DefaultAzureCredential chain (environment, workload "
        "identity, managed identity, az login, ...); "
        "azure-cli: the az login account; azure-pipelines: an Azure DevOps service "
        "connection (AZURESUBSCRIPTION_SERVICE_CONNECTION_ID, SYSTEM_ACCESSTOKEN); "
        "managed-identity; device-code for a person. default, azure-cli and azure-pipelines "
        "need the azure extra.",
    )(func)
    func = click.option(
        "--cloud",
        type=click.Choice(list(CLOUDS)),
        default=DEFAULT_CLOUD,
        show_default=True,
        envvar="PROVISION_CLOUD",
        help="National cloud: picks the Graph and login hosts (usgov = GCC High, dod = DoD) "
        "[env PROVISION_CLOUD].",
    )(func)
    func = click.option(
        "--graph-url",
        metavar="URL",
        envvar="PROVISION_GRAPH_URL",
        default=None,
        help="Graph base URL [env PROVISION_GRAPH_URL; default: the cloud's, e.g. "
        "https://graph.microsoft.com/v1.0]. http:// only for loopback hosts.",
    )(func)
    return func


@dataclass(frozen=True)
class Connection:
    graph_url: str
    cloud: str
    credential: Credential


def connection_from_options(
    graph_url: str | None,
    cloud: str,
    auth: str,
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], None] | None = None,
) -> Connection:
    """Check the URL and the credential configuration (no network): call it before planning."""
    url = validate_graph_url(graph_url) if graph_url else graph_url_for(cloud)
    credential = credential_from_env(
        auth, cloud, os.environ if environ is None else environ, prompt=prompt
    )
    return Connection(url, cloud, credential)


def connection_for(graph_url: str | None, cloud: str, auth: str) -> Connection:
    """`connection_from_options` for a command: a device code prompt goes to stderr."""
    return connection_from_options(graph_url, cloud, auth, prompt=note)


#: ``--target KEY`` on plan and apply (issue 23): a key or a glob, repeatable.
target_option = click.option(
    "--target",
    "target_keys",
    multiple=True,
    metavar="KEY",
    help="Plan (and apply) only this chat key; a glob such as 'incident-*' matches several. "
    "Repeatable. The other chats are not read or changed, so the plan may be incomplete: "
    "for exceptional repairs, as Terraform's -target.",
)


def note_targeting(patterns: tuple[str, ...]) -> None:
    """The warning every targeted plan carries (`provisioner.plans.targets`)."""
    from provisioner.plans.targets import TARGET_WARNING

    note("Warning: " + TARGET_WARNING.format(patterns=", ".join(repr(p) for p in patterns)))
