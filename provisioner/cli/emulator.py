"""``provision emulator``, and the built-in emulator of ``plan --emulator``/``apply --emulator``."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from provisioner.cli.numbers import Parsed
from provisioner.cli.options import Number, note, stacked
from provisioner.errors import InputError

if TYPE_CHECKING:
    from provisioner.emulator import EmulatorServer

#: Where ``--emulator`` keeps its tenant, so consecutive runs see the same chats.
EMULATOR_DATA = ".provision-emulator.json"

EMULATOR_FAULT_HELP = (
    "Inject a fault (repeatable): KIND=RATE[,method=M][,path=GLOB][,chat-type=T][,ms=N]. "
    "KIND: 503 (Retry-After, nothing done), 504 (answered after the change was made), drop "
    "(connection closed without an answer, after the change), 429 (throttled for no reason), "
    "latency (ms=N, default 1000). RATE: probability 0..1 per matching request. path: glob "
    "over the route, e.g. /chats or /chats/{chat-id}/members. chat-type: oneOnOne|group "
    '(POST /chats only). Example: --fault 503=0.05 --fault "504=0.2,method=POST,path=/chats,'
    'chat-type=group" --fault drop=0.05'
)


@contextlib.contextmanager
def emulator_session(port: int = 0) -> Iterator[str]:
    """Run the built-in emulator (tenant kept in ``./.provision-emulator.json``) for a block;
    yields its Graph URL."""
    from provisioner.emulator import embedded

    with embedded(EMULATOR_DATA, port=port, **emulator_settings()) as url:
        note(f"Using the built-in Graph emulator at {url} (tenant kept in ./{EMULATOR_DATA}).")
        yield url


def emulator_settings() -> dict[str, Any]:
    """The built-in emulator's settings from the environment, as ``provision emulator``
    takes them as options: ``PROVISION_EMULATOR_USERS`` (a users file, or ``invent`` to make
    up any user named), ``PROVISION_EMULATOR_LIST_DELAY`` (``N`` or ``LO-HI`` seconds) and
    ``PROVISION_EMULATOR_SPARSE_MEMBERS`` (``1``: member answers without tenantId/email)."""
    from provisioner.emulator.server import parse_delay
    from provisioner.errors import ProvisionError

    settings: dict[str, Any] = {}
    users = os.environ.get("PROVISION_EMULATOR_USERS", "").strip()
    if users == "invent":
        settings["invent_users"] = True
    elif users:
        settings["users"] = users
    delay = os.environ.get("PROVISION_EMULATOR_LIST_DELAY", "").strip()
    if delay:
        try:
            settings["list_delay_s"] = parse_delay(delay)
        except ProvisionError as exc:
            raise InputError(f"PROVISION_EMULATOR_LIST_DELAY: {exc.message}") from None
    if os.environ.get("PROVISION_EMULATOR_SPARSE_MEMBERS", "").strip().lower() in _YES:
        settings["sparse_members"] = True
    return settings


_YES = ("1", "true", "yes", "on")


def _check_limits(text: str) -> object:
    from provisioner.emulator.throttle import parse_limits  # imported when a command runs

    return parse_limits(text)


def _check_fault(text: str) -> object:
    from provisioner.emulator.faults import parse_fault

    return parse_fault(text)


def _check_latency(text: str) -> object:
    from provisioner.emulator.server import parse_latency

    return parse_latency(text)


def _check_delay(text: str) -> object:
    from provisioner.emulator.server import parse_delay

    return parse_delay(text)


emulator_options = stacked(
    [
        click.option(
            "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
        ),
        click.option(
            "--port",
            default=8765,
            show_default=True,
            type=Number(0, 65535, integer=True),
            help="Port to listen on (0: any free port).",
        ),
        click.option(
            "--data",
            "data_path",
            default=EMULATOR_DATA,
            show_default=True,
            envvar="PROVISION_EMULATOR_DATA",
            type=click.Path(dir_okay=False),
            help="File the emulated tenant is kept in, across runs.",
        ),
        click.option(
            "--ephemeral", is_flag=True, help="Keep the tenant in memory only (no --data)."
        ),
        click.option(
            "--limits",
            type=Parsed(_check_limits, "documented|off|xN"),
            default="documented",
            show_default=True,
            help="Throttling: 'documented' (Graph's Teams limits), 'off', or xN to make every "
            "limit N times faster (x10).",
        ),
        click.option(
            "--latency-ms",
            type=Parsed(_check_latency, "N|LO-HI"),
            default="0",
            show_default=True,
            help="Latency added to every request: N or LO-HI milliseconds.",
        ),
        click.option(
            "--fault",
            "--fault-rate",
            "faults",
            multiple=True,
            type=Parsed(_check_fault, "SPEC"),
            metavar="SPEC",
            help=EMULATOR_FAULT_HELP,
        ),
        click.option(
            "--seed",
            type=Number(0, 2**63 - 1, integer=True),
            default=None,
            help="Seed for faults, latency and ids (0 to 2**63-1).",
        ),
        click.option(
            "--users",
            "users_path",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            help="Users directory (JSON) replacing the default one (the users the README and "
            "examples/ name). Anyone else is 404 Request_ResourceNotFound, as on a tenant.",
        ),
        click.option(
            "--invent-users",
            is_flag=True,
            help="Make up any GUID or UPN as a user the first time it is named (load tests).",
        ),
        click.option(
            "--list-delay",
            type=Parsed(_check_delay, "N|LO-HI"),
            default="1-4s",
            show_default=True,
            envvar="PROVISION_EMULATOR_LIST_DELAY",
            help="How long a new chat or membership takes to show in list calls: N or LO-HI "
            "seconds, drawn per write (Graph's lists lag behind its writes; 0: at once).",
        ),
        click.option(
            "--sign-in",
            type=click.Choice(["application", "delegated"]),
            default="application",
            show_default=True,
            help="Calls act as the app, or (delegated) as --me: a new chat must include that "
            "user, and only that user's chats can be listed. A JWT token with scp and oid "
            "claims is delegated whatever this says.",
        ),
        click.option("--me", default=None, help="The signed-in user of /me (GUID or UPN)."),
        click.option(
            "--sparse-members",
            is_flag=True,
            envvar="PROVISION_EMULATOR_SPARSE_MEMBERS",
            help="Member answers leave out tenantId, email and displayName, as Graph's known "
            "issue says they may ('some properties for chat members might be missing').",
        ),
        click.option(
            "--token-lifetime",
            type=Number(0, 10 * 365 * 86400, low_open=True, metavar="SECONDS"),
            default=None,
            help="Reject a bearer token with 401 this long after first use (up to 10 years).",
        ),
    ]
)


@click.command("emulator")
@emulator_options
def emulator_command(
    host: str,
    port: int,
    data_path: str,
    ephemeral: bool,
    limits: str,
    latency_ms: str,
    faults: tuple[str, ...],
    seed: int | None,
    users_path: str | None,
    invent_users: bool,
    list_delay: str,
    sign_in: str,
    me: str | None,
    sparse_members: bool,
    token_lifetime: float | None,
) -> int:
    """Serve a local Microsoft Graph chat API at http://HOST:PORT/v1.0 until interrupted.

    It keeps chats, members and users like a tenant would, answers Graph's errors, throttles
    as Graph documents for Teams, and injects faults on demand. Any bearer token is accepted,
    so point provision at it with PROVISION_GRAPH_URL=<url> PROVISION_ACCESS_TOKEN=emulator.
    The URL is printed alone on the first line of standard output.
    """
    from provisioner.emulator import EmulatorServer
    from provisioner.emulator.server import parse_delay, parse_latency

    server = EmulatorServer(
        host=host,
        port=port,
        data_path=None if ephemeral else data_path,
        limits=limits,
        latency_ms=parse_latency(latency_ms),
        faults=list(faults),
        seed=seed,
        users=users_path,
        me=me,
        token_lifetime_s=token_lifetime,
        list_delay_s=parse_delay(list_delay),
        invent_users=invent_users,
        sign_in=sign_in,
        sparse_members=sparse_members,
    ).start()
    click.echo(server.url)
    where = "memory only" if ephemeral else data_path
    note(
        f"provision emulator: limits {limits}, data in {where}, "
        f"{len(faults)} fault rule(s). Any bearer token is accepted."
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        note("warning: the emulator listens beyond this machine; it has no real authentication.")
    note("Press Ctrl+C to stop.")
    _serve_until_stopped(server)
    return 0


def _serve_until_stopped(server: EmulatorServer) -> None:
    """Serve until Ctrl+C or SIGTERM, then stop the server (it saves the tenant)."""

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        while not server.wait(0.5):
            pass
    except KeyboardInterrupt:
        note("provision emulator: stopping.")
    finally:
        server.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
