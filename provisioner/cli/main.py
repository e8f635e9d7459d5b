"""The command line: parse, call the core, render, choose the exit code.

Nothing below this module prints, prompts or exits; everything here stays thin.
Exit codes (contract): 0 success / no changes, 1 any error (usage errors included),
2 only for ``plan --detailed-exitcode`` when changes are present.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from provisioner import __version__
from provisioner.cli.apply import apply_options
from provisioner.cli.options import connection_options
from provisioner.errors import ProvisionError

if TYPE_CHECKING:
    from provisioner.graph.client import GraphClient
    from provisioner.plans.types import Plan
    from provisioner.states.lock import LockInfo
    from provisioner.states.store import StateStore

# Start-up time: `provision --help` imports only click and this package's light modules; each
# command imports what it needs (msal, requests, jsonschema, the state store, the planner) when
# it runs. tests/cli/test_startup.py holds the line; benchmarks/run measures it.
DEFAULT_STATE_PATH = "provision.state.json"  # = provisioner.state.DEFAULT_STATE_PATH (tested)

BUG_REPORT = (
    "provision: internal error (a bug in provision {version}): {error}. "
    "Please report it with the output of the same command run with --debug."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provision")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Declarative provisioning of Microsoft Teams chats through Microsoft Graph.

    Describe chats in YAML manifests, check them with `validate`, review the changes with
    `plan`, and make them with `apply`. Try it without a tenant: `--emulator` runs everything
    against a built-in local Graph emulator.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for machines.",
)
def validate(paths: tuple[str, ...], fmt: str) -> int:
    """Check manifests offline: YAML, the manifest schema and Graph's rules.

    PATH is a manifest file or a directory (its *.yaml and *.yml files). All manifests
    together form one desired state. Every problem is reported, each with file:line:col;
    under GitHub Actions they also become annotations on the pull request. Exit code 0 when
    everything is valid, 1 otherwise.
    """
    # Imported here so that commands which never read manifests do not pay for it.
    from provisioner.manifest.load import validate_paths
    from provisioner.views.diagnostics import render_github, render_json, render_text

    result = validate_paths(paths)
    if fmt == "json":
        counts = {"files": result.files, "chats": result.chats, "errors": len(result.diagnostics)}
        files = result.desired.files if result.desired else ()
        click.echo(render_json(result.diagnostics, counts, files))
    else:
        if result.diagnostics and os.environ.get("GITHUB_ACTIONS") == "true":
            click.echo(render_github(result.diagnostics))
        click.echo(render_text(result.diagnostics, result.summary))
    return 0 if result.ok else 1


@cli.command("schema")
@click.argument("name", required=False, default="manifest", metavar="[NAME]")
def schema_command(name: str) -> int:
    """Print a JSON Schema shipped with provision (default: the manifest's).

    For editors and other validators, e.g. `provision schema | check-jsonschema
    --schemafile - chats.yaml`. NAME is `manifest`, or another shipped schema such as
    `apply-result` (the output of `apply --format json`); an unknown NAME lists them.
    """
    from provisioner.manifest.schema import shipped_schemas

    schemas = shipped_schemas()
    path = schemas.get(name)
    if path is None:
        raise click.BadParameter(
            f"{name!r} is not a shipped schema; choose from: {', '.join(schemas)}",
            param_hint="NAME",
        )
    # Printed byte for byte, so the output equals the file editors reference by path.
    click.echo(path.read_text(encoding="utf-8"), nl=False)
    return 0


# --- plan, state, force-unlock -------------------------------------------------------------

STATE_HELP = "The state file, or azblob://ACCOUNT/CONTAINER/PATH (env PROVISION_STATE)."
_ENDPOINT_META = "provision.state_endpoint"


def _keep_state_endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta[_ENDPOINT_META] = value


def _state_endpoint() -> str | None:
    """The ``--state-endpoint`` of the running command (None: the account's own endpoint)."""
    value = click.get_current_context().meta.get(_ENDPOINT_META)
    return str(value) if value else None


def _state_option(fn: Any) -> Any:
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


def _use_color() -> bool:
    # Colour on a terminal only, and never with NO_COLOR set (https://no-color.org).
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _note_takeover(info: LockInfo) -> None:
    stale = info.took_over
    if stale is not None:
        click.echo(
            f"note: took over a stale lock: {stale.operation} by {stale.who} (pid {stale.pid}, "
            f"created {stale.created}) is no longer running.",
            err=True,
        )


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@_state_option
@click.option(
    "--out", "out", metavar="PLANFILE", help="Save the plan for `provision apply PLANFILE`."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts, markdown for pull-request comments.",
)
@click.option(
    "--refresh/--no-refresh",
    default=None,
    help="Read the managed chats back from Graph first, to show drift, and resolve UPNs. "
    "Default: when the state holds chats. --refresh also resolves UPNs for a first plan.",
)
@click.option(
    "--refresh-only",
    is_flag=True,
    help="Only report what changed outside provision since the last apply (drift); with "
    "--detailed-exitcode exit 2 when there is drift. For a scheduled drift check.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Plan chats removed from the manifests as delete (a soft delete in Teams) instead "
    "of forget. Chats with protect: true are never deleted.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there are no changes, 2 when there are, 1 on errors.",
)
@connection_options
@click.option(
    "--emulator",
    is_flag=True,
    help="Plan against the built-in Graph emulator (tenant in ./.provision-emulator.json).",
)
def plan(
    paths: tuple[str, ...],
    state_path: str,
    out: str | None,
    fmt: str,
    refresh: bool | None,
    refresh_only: bool,
    prune: bool,
    detailed_exitcode: bool,
    graph_url: str | None,
    cloud: str,
    auth: str,
    emulator: bool,
) -> int:
    """Show what apply would change: manifests compared with the state and with Graph.

    Refresh first reads every managed chat back from Graph (credentials needed, as for
    apply; `--no-refresh` plans from the state alone): what changed in Teams since the last
    apply is listed as "changes outside provision", and the plan repairs it. The plan lists
    each chat key to create (+), update in place (~), delete (-), forget (.) or reconcile (?),
    then a summary. `--out` saves it; `provision apply PLANFILE` then does exactly that, and
    refuses it once the state has moved on.
    """
    from provisioner.graph.auth import graph_url_for, validate_graph_url
    from provisioner.manifest.gcpause import gc_paused
    from provisioner.plans.files import save_plan
    from provisioner.views.plan import render_plan

    if refresh_only and refresh is False:
        raise click.UsageError("--refresh-only reads the chats from Graph: drop --no-refresh")
    if refresh_only and prune:
        raise click.UsageError("--refresh-only plans no changes: --prune does not apply")
    if emulator:  # runs until the command ends (click closes the context's resources)
        from provisioner.cli.apply import emulator_session

        graph_url = click.get_current_context().with_resource(emulator_session())
    # The URL goes into every request body of the plan. Credentials are checked only when
    # the plan reads from Graph (connection_from_options, in connect).
    graph_url = validate_graph_url(graph_url) if graph_url else graph_url_for(cloud)

    def connect() -> GraphClient:
        if emulator:
            from provisioner.cli.apply import emulator_client

            return emulator_client(graph_url)
        from provisioner.cli.lifecycle import open_client

        return open_client(graph_url, cloud, auth)

    with gc_paused():  # tens of thousands of chats: see provisioner/gcpause.py
        result = _plan(
            paths,
            state_path,
            True if refresh_only else refresh,
            graph_url,
            connect=connect,
            prune=prune,
            refresh_only=refresh_only,
        )
    if out:
        save_plan(result, out)
    click.echo(render_plan(result, fmt, color=fmt == "text" and _use_color()), nl=False)
    if out:
        click.echo(
            f"Saved the plan to {out}. Apply exactly this with: provision apply {out}", err=True
        )
    return 2 if detailed_exitcode and result.has_changes else 0


def _plan(
    paths: Sequence[str],
    state_path: str,
    refresh: bool | None,
    graph_url: str,
    *,
    connect: Callable[[], GraphClient] | None = None,
    prune: bool = False,
    refresh_only: bool = False,
) -> Plan:
    """``refresh``: True always reads from Graph, None when the state holds chats, False
    never. Reading means refreshing the managed chats and resolving UPNs (issue 7)."""
    from provisioner.manifest.load import load_desired
    from provisioner.plans.planner import make_plan
    from provisioner.states.store import open_store

    desired = load_desired(paths)
    store = open_store(state_path, _state_endpoint())
    state = store.read()
    if refresh is False or (refresh is None and not state.chats) or connect is None:
        return make_plan(desired, state, prune=prune, graph_url=graph_url)
    from provisioner.operations.refresh import read_from_graph

    client = connect()
    try:
        # Refresh holds the lock so no apply changes the chats while they are read.
        with _lock_for_refresh(store) as info:
            _note_takeover(info)
            state = store.read()
            if state.chats:
                n = len(state.chats)
                click.echo(
                    f"Refreshing {n} managed chat{'s' if n != 1 else ''} from {client.base_url}...",
                    err=True,
                )
            return read_from_graph(
                client, desired, state, graph_url=graph_url, prune=prune, refresh_only=refresh_only
            )
    finally:
        client.close()


@contextlib.contextmanager
def _lock_for_refresh(store: StateStore) -> Iterator[LockInfo]:
    with contextlib.ExitStack() as stack:
        try:
            info = stack.enter_context(store.lock("plan"))
        except ProvisionError as exc:
            exc.hint = (exc.hint + "; " if exc.hint else "") + (
                "`plan --no-refresh` plans from the state alone, without taking the lock"
            )
            raise
        yield info


@cli.group("state")
def state_cmd() -> None:
    """Inspect the state, or stop managing chats (the chats stay in Teams)."""


@state_cmd.command("list")
@_state_option
def state_list(state_path: str) -> int:
    """List the managed chat keys: key, chat type and chat id."""
    from provisioner.states.records import iter_keys
    from provisioner.states.store import open_store

    store = open_store(state_path, _state_endpoint())
    state = store.read()
    if not state.exists:
        click.echo(f"No state at {store.location} yet.", err=True)
        return 0
    rows = []
    for key in iter_keys(state):
        record = state.chats.get(key)
        if record is not None:
            rows.append((key, record.chat_type, record.chat_id))
        else:
            rows.append((key, state.intents[key].chat_type, "(creation pending: reconcile)"))
    width = max((len(r[0]) for r in rows), default=0)
    for key, chat_type, chat_id in rows:
        click.echo(f"{key:<{width}}  {chat_type:<8}  {chat_id}")
    return 0


@state_cmd.command("show")
@click.argument("key")
@_state_option
def state_show(key: str, state_path: str) -> int:
    """Show what the state records for KEY."""
    import json

    from provisioner.errors import StateError
    from provisioner.states.store import open_store

    store = open_store(state_path, _state_endpoint())
    state = store.read()
    record = state.chats.get(key)
    intent = state.intents.get(key)
    if record is None and intent is None:
        raise StateError(f"no chat with key {key!r} in the state {store.location}")
    click.echo(f"# {key}")
    if record is not None:
        click.echo(f"chat_id:    {record.chat_id}")
        click.echo(f"chat_type:  {record.chat_type}")
        if record.topic is not None:
            click.echo(f"topic:      {json.dumps(record.topic, ensure_ascii=False)}")
        if record.created_at:
            click.echo(f"created_at: {record.created_at}")
        if key in state.protected:
            click.echo("protected:  yes (plan --prune refuses to delete it)")
        members = record.members
    else:
        assert intent is not None
        click.echo(f"chat_type:  {intent.chat_type}")
        if intent.topic is not None:
            click.echo(f"topic:      {json.dumps(intent.topic, ensure_ascii=False)}")
        members = intent.members
    click.echo("members:")
    for m in members:
        extra = [
            f"{name} {value}"
            for name, value in (
                ("object id", m.object_id),
                ("tenant", m.tenant_id),
                ("membership", m.membership_id),
            )
            if value
        ]
        click.echo(f"  - {m.user}  {m.role}" + (f"  ({', '.join(extra)})" if extra else ""))
    if intent is not None:
        click.echo(
            f"pending:    a creation started {intent.started_at} (attempt {intent.attempt_id});"
            f" the next apply looks it up before creating anything"
        )
    return 0


@state_cmd.command("rm")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@_state_option
def state_rm(keys: tuple[str, ...], state_path: str) -> int:
    """Stop managing KEY: remove it from the state. The chat stays in Teams.

    A key still in the manifests is planned as a create again (for a oneOnOne chat that adopts
    the existing chat); `provision import KEY CHAT_ID` takes a chat back under management.
    """
    from provisioner.errors import StateError
    from provisioner.states.store import open_store

    store = open_store(state_path, _state_endpoint())
    with store.lock("state rm") as info:
        _note_takeover(info)
        state = store.read()
        missing = [k for k in keys if k not in state.chats and k not in state.intents]
        if missing:
            raise StateError(
                f"not in the state {store.location}: {', '.join(missing)}; nothing was removed",
                hint="see the keys with: provision state list",
            )
        removed = []
        for key in dict.fromkeys(keys):
            record = state.remove_chat(key)
            state.clear_intent(key)
            removed.append((key, record.chat_id if record else None))
        store.write(state)
    for key, chat_id in removed:
        where = f"chat {chat_id}" if chat_id else "any chat created for it"
        click.echo(f"Removed {key} from the state ({where} stays in Teams).")
    return 0


@cli.command("force-unlock")
@click.argument("lock_id", metavar="LOCK_ID")
@_state_option
def force_unlock_cmd(lock_id: str, state_path: str) -> int:
    """Remove the state's lock, left by a run on another host or one that hangs.

    A lock whose run died on this host is taken over automatically; use this only when no run
    is using the state any more. LOCK_ID is the ID shown by the run that found it locked.
    """
    from provisioner.states.store import force_unlock, open_store

    info = force_unlock(open_store(state_path, _state_endpoint()), lock_id)
    click.echo(
        f"Removed the lock {info.id} ({info.operation} by {info.who}, pid {info.pid} on "
        f"{info.host}, created {info.created})."
    )
    return 0


@cli.command("apply")
@click.argument("targets", nargs=-1, required=True, metavar="PATH... | PLANFILE")
@_state_option
@apply_options
@connection_options
def apply(targets: tuple[str, ...], state_path: str, **options: Any) -> int:
    """Make the chats match the manifests (or do exactly what a saved plan says).

    With manifest PATHs, the plan is shown first and applied after you confirm (on a
    terminal; elsewhere --auto-approve is required). With a PLANFILE from `provision plan
    --out`, exactly that plan is applied, and refused if the state changed since.

    Every change is saved to the state as soon as Graph made it. Ctrl+C (or SIGTERM) stops
    cleanly: nothing new starts, changes in flight finish, the state is saved; run the same
    command again to continue. Group chat creations are journaled first, so even a killed
    run never leads to a duplicate chat. Exit 0 when every change was made, 1 otherwise,
    130/143 when stopped by SIGINT/SIGTERM.
    """
    from provisioner.cli.apply import run_apply

    return run_apply(targets, state_path, _state_endpoint(), **options)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so ``with`` blocks unwind (locks are released)."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``provision`` console script. Returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with _sigterm_unwinds():
            result = cli.main(args=args, prog_name="provision", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns ^C into Abort
            click.echo("Interrupted.", err=True)
            return 130
        click.echo("Aborted.", err=True)
        return 1
    except Terminated:
        click.echo("Terminated.", err=True)
        return 143
    except click.ClickException as exc:
        # Usage errors are exit 1 by contract (click's default would be 2, which the
        # contract reserves for `plan --detailed-exitcode`).
        exc.show()
        return 1
    except ProvisionError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # the one place that reports bugs
        click.echo(BUG_REPORT.format(version=__version__, error=type(exc).__name__), err=True)
        if debug:
            traceback.print_exc()
        return 1
    return int(result or 0)


# -- provision emulator ----------------------------------------------------------------------
EMULATOR_FAULT_HELP = (
    "Inject a fault (repeatable): KIND=RATE[,method=M][,path=GLOB][,chat-type=T][,ms=N]. "
    "KIND: 503 (Retry-After, nothing done), 504 (answered after the change was made), drop "
    "(connection closed without an answer, after the change), 429 (throttled for no reason), "
    "latency (ms=N, default 1000). RATE: probability 0..1 per matching request. path: glob "
    "over the route, e.g. /chats or /chats/{chat-id}/members. chat-type: oneOnOne|group "
    '(POST /chats only). Example: --fault 503=0.05 --fault "504=0.2,method=POST,path=/chats,'
    'chat-type=group" --fault drop=0.05'
)


@cli.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--data",
    "data_path",
    default=".provision-emulator.json",
    show_default=True,
    envvar="PROVISION_EMULATOR_DATA",
    type=click.Path(dir_okay=False),
    help="File the emulated tenant is kept in, across runs.",
)
@click.option("--ephemeral", is_flag=True, help="Keep the tenant in memory only (no --data).")
@click.option(
    "--limits",
    default="documented",
    show_default=True,
    help="Throttling: 'documented' (Graph's Teams limits), 'off', or xN to make every "
    "limit N times faster (x10).",
)
@click.option(
    "--latency-ms",
    default="0",
    show_default=True,
    help="Latency added to every request: N or LO-HI milliseconds.",
)
@click.option(
    "--fault", "--fault-rate", "faults", multiple=True, metavar="SPEC", help=EMULATOR_FAULT_HELP
)
@click.option("--seed", type=int, default=None, help="Seed for faults, latency and ids.")
@click.option(
    "--users",
    "users_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Users directory (JSON) replacing the default one (the users the README and "
    "examples/ name). Anyone else is 404 Request_ResourceNotFound, as on a real tenant.",
)
@click.option(
    "--invent-users",
    is_flag=True,
    help="Make up any GUID or UPN as a user the first time it is named (load tests).",
)
@click.option(
    "--list-delay",
    default="1-4s",
    show_default=True,
    envvar="PROVISION_EMULATOR_LIST_DELAY",
    help="How long a new chat or membership takes to show in list calls: N or LO-HI "
    "seconds, drawn per write (Graph's lists lag behind its writes; 0: at once).",
)
@click.option(
    "--sign-in",
    type=click.Choice(["application", "delegated"]),
    default="application",
    show_default=True,
    help="Calls act as the app, or (delegated) as --me: a new chat must include that user, "
    "and only that user's chats can be listed. JWT tokens with scp/oid decide for themselves.",
)
@click.option("--me", default=None, help="The signed-in user of /me (GUID or UPN).")
@click.option(
    "--token-lifetime",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Reject a bearer token with 401 this long after first use.",
)
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
    token_lifetime: float | None,
) -> int:
    """Serve a local Microsoft Graph chat API at http://HOST:PORT/v1.0 until interrupted.

    It keeps chats, members and users like a tenant would, answers Graph's errors, throttles
    as Graph documents for Teams, and injects faults on demand. Any bearer token is accepted,
    so point provision at it with PROVISION_GRAPH_URL=<url> PROVISION_ACCESS_TOKEN=emulator.
    The URL is printed alone on the first line of standard output.
    """
    import signal
    import threading

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
    ).start()
    click.echo(server.url)
    where = "memory only" if ephemeral else data_path
    click.echo(
        f"provision emulator: limits {limits}, data in {where}, "
        f"{len(faults)} fault rule(s). Any bearer token is accepted.",
        err=True,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            "warning: the emulator listens beyond this machine; it has no real authentication.",
            err=True,
        )
    click.echo("Press Ctrl+C to stop.", err=True)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        while not server.wait(0.5):
            pass
    except KeyboardInterrupt:
        click.echo("provision emulator: stopping.", err=True)
    finally:
        server.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return 0


# `provision import` and `provision export` live in their own module; importing it registers
# them (it imports this module's helpers, so it comes last).
from provisioner.cli import lifecycle  # noqa: E402, F401  (registers import/export)
