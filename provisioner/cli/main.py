"""The command line: the ``provision`` group, its commands, and the error edge.

Each command family lives in its own module (``validate``, ``plan``, ``apply``, ``state``,
``lifecycle``, ``emulator``) and imports what it shares from ``cli.options``; this module
imports them and adds them to the group, so no command module imports this one. Nothing
below the CLI prints, prompts or exits; `main` maps errors to exit codes (contract):
0 success / no changes, 1 any error (usage errors included), 2 only for
``plan --detailed-exitcode`` when changes are present, 130/143 when stopped by a signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence

import click

from provisioner import __version__
from provisioner.cli.apply import apply
from provisioner.cli.doctor import doctor_command
from provisioner.cli.emulator import emulator_command
from provisioner.cli.lifecycle import export_command, import_command, restore_command
from provisioner.cli.options import no_color_option
from provisioner.cli.plan import plan, show
from provisioner.cli.state import force_unlock_cmd, state_cmd
from provisioner.cli.validate import schema_command, validate
from provisioner.errors import ProvisionError
from provisioner.redact import redact

# Start-up time: `provision --help` imports only click and this package's light modules; each
# command imports what it needs (msal, requests, jsonschema, the state store, the planner) when
# it runs. tests/cli/test_startup.py holds the line; benchmarks/run measures it.

BUG_REPORT = (
    "provision: internal error (a bug in provision {version}): {error}. "
    "Please report it with the output of the same command run with --debug."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provision")
@click.option(
    "--debug",
    is_flag=True,
    envvar="PROVISION_DEBUG",
    help="Show tracebacks for internal errors, and the whole story of a failed sign-in "
    "[env PROVISION_DEBUG].",
)
@no_color_option
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Declarative provisioning of Microsoft Teams chats through Microsoft Graph.

    Describe chats in YAML manifests, check them with `validate`, review the changes with
    `plan`, and make them with `apply`. Try it without a tenant: `--emulator` runs everything
    against a built-in local Graph emulator.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _command in (
    validate,
    schema_command,
    plan,
    show,
    apply,
    state_cmd,
    force_unlock_cmd,
    import_command,
    export_command,
    restore_command,
    emulator_command,
    doctor_command,
):
    cli.add_command(_command)


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


def _env_flag(name: str) -> bool:
    # As click reads a boolean flag's environment variable.
    return os.environ.get(name, "").strip().lower() in ("1", "true", "t", "yes", "y", "on")


def wants_json(args: Sequence[str]) -> bool:
    """``--format json`` (or ``--format=json``) among the arguments: errors then also come as
    one JSON document on standard output (`provision schema error`), so a script reading it
    never gets an empty or half answer. Read from the raw arguments since a usage error
    happens before click has parsed them."""
    for n, arg in enumerate(args):
        if arg == "--format=json" or (arg == "--format" and args[n + 1 : n + 2] == ["json"]):
            return True
    return False


def _json_error(args: Sequence[str], exc: ProvisionError | click.ClickException) -> None:
    if not wants_json(args) or getattr(exc, "in_report", False):
        return
    from provisioner.views.diagnostics import render_error_json, render_provision_error_json

    # Redacted as the text form is: the error edge is the last place a secret can be taken out.
    if isinstance(exc, ProvisionError):
        click.echo(redact(render_provision_error_json(exc)))
    else:
        click.echo(redact(render_error_json("usage", exc.format_message())))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``provision`` console script. Returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or _env_flag("PROVISION_DEBUG")
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
        _json_error(args, exc)
        return 1
    except ProvisionError as exc:
        # The error edge: the last place a secret can be taken out of what is printed.
        click.echo(redact(f"Error: {exc}"), err=True)
        _json_error(args, exc)
        if debug and exc.detail:  # e.g. Azure Identity's chain of attempted sign-ins
            click.echo(redact(exc.detail), err=True)
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
