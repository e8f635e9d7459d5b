"""The command line: parse, call the core, render, choose the exit code.

Nothing below this module prints, prompts or exits; everything here stays thin.
Exit codes (contract): 0 success / no changes, 1 any error (usage errors included),
2 only for ``plan --detailed-exitcode`` when changes are present.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from provisioner import __version__
from provisioner.errors import ProvisionError

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
    from provisioner.manifest import validate_paths
    from provisioner.render_diagnostics import render_github, render_json, render_text

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``provision`` console script. Returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="provision", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
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
    help="Users directory (JSON); unknown users are then 404. "
    "Default: any GUID or UPN is a user, made up consistently.",
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
    from provisioner.emulator.server import parse_latency

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
