"""``provision apply``: plan (or load a saved plan), confirm, run it, report.

Thin like the rest of the CLI: the work is in ``operations.apply``; this module parses the
options, checks the credentials, shows the plan and asks for confirmation, draws the
progress, turns signals into a stop, and chooses the exit code: 0 every change made (or
nothing to do), 1 anything failed or was refused, 130/143 stopped by SIGINT/SIGTERM (the
state is saved; running the same command again continues).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from provisioner.cli.emulator import EMULATOR_DATA
from provisioner.cli.options import (
    MAX_CONSISTENCY_WINDOW,
    MAX_RPS,
    MAX_TIMEOUT,
    MIN_RPS,
    MIN_TIMEOUT,
    Connection,
    Number,
    connection_for,
    connection_options,
    lock_timeout,
    lock_timeout_option,
    no_color_option,
    note,
    note_takeover,
    note_targeting,
    sign_in,
    stacked,
    state_endpoint,
    state_option,
    target_option,
    use_color,
)
from provisioner.cli.runlog import run_log_options, start_run_log, write_run_report
from provisioner.errors import InputError

# Light (the defaults); the operation, the executor, the progress display and the state are
# imported when an apply runs: registering the command (every `provision` start, `--help`
# included) must not pay for them.
from provisioner.graph.pacing import DEFAULT_CONCURRENCY
from provisioner.operations.clients import DEFAULT_TIMEOUT
from provisioner.states.settling import DEFAULT_CONSISTENCY_WINDOW_S

if TYPE_CHECKING:
    from provisioner.apply.control import ApplyListener
    from provisioner.operations.apply import ApplyOutcome
    from provisioner.plans.types import Plan
    from provisioner.signin.chooser import Credential
    from provisioner.states.lock import LockInfo

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}

apply_options = stacked(
    [
        click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation."),
        click.option(
            "--concurrency",
            type=Number(1, 128, integer=True),
            default=DEFAULT_CONCURRENCY,
            show_default=True,
            envvar="PROVISION_CONCURRENCY",
            help="Requests in flight at once, 1 to 128 (enough to keep Graph's rate limit busy) "
            "[env PROVISION_CONCURRENCY].",
        ),
        click.option(
            "--max-rps",
            type=Number(MIN_RPS, MAX_RPS),
            default=None,
            envvar="PROVISION_MAX_RPS",
            help=f"Requests per second per tenant, {MIN_RPS:g} to {MAX_RPS:g} (default: "
            "Graph's documented 30 for writes and for reads; lower it when other apps share "
            "the tenant's limits) [env PROVISION_MAX_RPS].",
        ),
        click.option(
            "--timeout",
            type=Number(MIN_TIMEOUT, MAX_TIMEOUT, metavar="SECONDS"),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            envvar="PROVISION_TIMEOUT",
            help=f"Seconds to wait for each Graph answer, {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} "
            "[env PROVISION_TIMEOUT].",
        ),
        click.option(
            "--consistency-window",
            type=Number(0, MAX_CONSISTENCY_WINDOW, metavar="SECONDS"),
            default=DEFAULT_CONSISTENCY_WINDOW_S,
            show_default=True,
            envvar="PROVISION_CONSISTENCY_WINDOW",
            help="How long Graph may take to list a new chat: a group chat whose creation "
            "got no clear answer is looked up over this window (other chats go on) and "
            f"created again only if no lookup found it. 0 to {MAX_CONSISTENCY_WINDOW:g}. "
            "Env: PROVISION_CONSISTENCY_WINDOW.",
        ),
        click.option(
            "--refresh/--no-refresh",
            default=None,
            help="Read the managed chats back from Graph before planning (drift, UPNs), as "
            "plan does. Default: when the state holds chats. Not with a PLANFILE.",
        ),
        click.option(
            "--prune",
            is_flag=True,
            help="Delete (soft delete in Teams) the chats removed from the manifests, "
            "instead of forgetting them. Not with a PLANFILE (the plan says).",
        ),
        click.option(
            "--emulator",
            is_flag=True,
            help=f"Apply to the built-in Graph emulator (tenant in ./{EMULATOR_DATA}); "
            "no credentials needed.",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="The final report: text for people, json for scripts (one object on stdout).",
        ),
        click.option(
            "--quiet/--verbose",
            "quiet",
            default=None,
            help="--quiet: no progress, only the final report. --verbose: a line per chat.",
        ),
    ]
)


@click.command("apply")
@click.argument("targets", nargs=-1, required=True, metavar="PATH... | PLANFILE")
@state_option
@lock_timeout_option
@target_option
@apply_options
@connection_options
@no_color_option
@run_log_options
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
    return _apply(targets, state_path, **options)


def _apply(
    targets: tuple[str, ...],
    state_path: str,
    *,
    auto_approve: bool,
    concurrency: int,
    max_rps: float | None,
    timeout: float,
    consistency_window: float,
    refresh: bool | None,
    prune: bool,
    emulator: bool,
    fmt: str,
    quiet: bool | None,
    graph_url: str | None,
    cloud: str,
    auth: str,
    target_keys: tuple[str, ...] = (),
) -> int:
    from provisioner.cli.progress import graph_log
    from provisioner.manifest.gcpause import gc_paused
    from provisioner.operations.apply import ApplySettings, load_target, plan_file_of, run_apply
    from provisioner.plans.types import Plan

    plan_file = plan_file_of(targets)
    _check_usage(plan_file, fmt=fmt, auto_approve=auto_approve, prune=prune, refresh=refresh)
    if plan_file is not None and target_keys:
        raise click.UsageError(
            "a saved plan is applied as it is: --target is for planning (provision plan "
            "--target KEY ... --out FILE)"
        )
    # Credentials are checked before anything is planned (no network yet).
    connection = None if emulator else connection_for(graph_url, cloud, auth)
    with gc_paused():  # as plan does: a big manifest's chats are then frozen (issue 16)
        target = load_target(targets, plan_file)
    saved = target if isinstance(target, Plan) else None
    # A saved plan is continued from its manifests, reviewed again (no --auto-approve).
    resume = resume_command(
        click.get_current_context(),
        targets if saved is None else saved.manifest_files,
        leave_out=("--auto-approve",) if saved is not None else (),
    )
    settings = ApplySettings(
        concurrency,
        max_rps,
        timeout,
        refresh,
        prune,
        fmt != "text",
        consistency_window,
        targets=target_keys,
    )
    shown_targets = target_keys or (saved.targets if saved is not None else ())
    if shown_targets:
        note_targeting(shown_targets)
    hooks = _CommandLine(fmt=fmt, auto_approve=auto_approve, quiet=quiet)
    hooks.graph_events = run_log = start_run_log()
    with _graph(connection, saved) as (url, credential), graph_log(hooks.verbose):
        # The Graph log covers refresh and apply alike.
        outcome = run_apply(
            target, state_path, state_endpoint(), graph_url=url, credential=credential,
            settings=settings, hooks=hooks, lock_timeout=lock_timeout(), sign_in=sign_in(),
        )  # fmt: skip
    write_run_report(outcome, run_log, max_rps)
    return _report(outcome, fmt, resume=resume, saved=saved is not None)


@contextlib.contextmanager
def _graph(connection: Connection | None, saved: Plan | None) -> Iterator[tuple[str, Credential]]:
    """The Graph URL and credential to apply with: the connection's, or (None) the built-in
    emulator's, on the port a saved plan names."""
    if connection is not None:
        yield connection.graph_url, connection.credential
        return
    from provisioner.cli.emulator import emulator_session
    from provisioner.operations.clients import EmulatorToken, emulator_port

    port = emulator_port(saved.graph_url) if saved is not None else 0
    with emulator_session(port) as url:
        yield url, EmulatorToken()


def _check_usage(
    plan_file: str | None, *, fmt: str, auto_approve: bool, prune: bool, refresh: bool | None
) -> None:
    if fmt == "json" and plan_file is None and not auto_approve:
        raise click.UsageError("--format json needs --auto-approve (or a saved plan file)")
    if plan_file is not None and (prune or refresh is not None):
        raise click.UsageError(
            "a saved plan is applied as it is: --prune and --refresh are for "
            "planning (provision plan ... --out FILE)"
        )


def resume_command(
    ctx: click.Context, targets: Sequence[str], *, leave_out: Sequence[str] = ()
) -> str:
    """The command that continues an interrupted run: the same targets and every option given
    on this command line, read back from click (what came from the environment or a default
    comes from there again; a hand-kept list dropped --cloud, --auth, --lock-timeout and
    --state-endpoint)."""
    words = ["provision", "apply", *targets]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        flag = param.opts[0]
        if flag in leave_out:
            continue
        words += _given(param, ctx.params.get(param.name))
    return shlex.join(words)


def _given(param: click.Option, value: Any) -> list[str]:
    """``param`` as it was given, from its parsed value."""
    if param.name == "lock_timeout":  # not passed to the command: kept as seconds
        return [param.opts[0], f"{lock_timeout():g}s"]
    if param.name == "state_endpoint":
        return [param.opts[0], state_endpoint() or ""]
    if param.is_flag and param.secondary_opts:  # --refresh/--no-refresh
        return [param.opts[0] if value else param.secondary_opts[0]]
    if param.is_flag:
        return [param.opts[0]] if value else []
    if param.multiple:  # --target KEY, repeated
        return [word for item in value or () for word in _given_one(param.opts[0], item)]
    return _given_one(param.opts[0], value)


def _given_one(flag: str, value: Any) -> list[str]:
    return [flag, f"{value:g}" if isinstance(value, float) else str(value)]


class _CommandLine:
    """The `ApplyHooks` of an apply run from the command line: the plan on stdout and a
    confirmation on the terminal, the progress display on stderr, SIGINT/SIGTERM as a clean
    stop (a second one stops at once)."""

    listener: ApplyListener | None
    #: Told of every Graph request and retry decision (`apply.runlog.RunLog`).
    graph_events: Callable[[str, Mapping[str, Any]], None] | None = None

    def __init__(self, *, fmt: str, auto_approve: bool, quiet: bool | None) -> None:
        from provisioner.cli.progress import CliProgress, progress_mode

        mode, self.verbose = progress_mode(quiet)
        self.fmt = fmt
        self.auto_approve = auto_approve
        self.progress = CliProgress(mode, verbose=self.verbose)
        self.listener = self.progress

    def took_over(self, stale: LockInfo) -> None:
        note_takeover(stale)

    def review(self, plan: Plan) -> None:
        from provisioner.views.plan import render_plan

        if self.fmt == "text":
            colored = use_color()
            click.echo(render_plan(plan, "text", color=colored), nl=False, color=colored)
        if plan.has_changes and not self.auto_approve:
            _confirm()

    @contextlib.contextmanager
    def running(self, request_stop: Callable[[str], None]) -> Iterator[None]:
        import gc

        from provisioner.cli.progress import stop_on_signals

        # The state and the plan live as long as the run: frozen out of the collections the
        # executor's threads trigger (manifest/gcpause.py; the command edge decides this).
        gc.freeze()
        try:
            with stop_on_signals(request_stop):
                yield
        finally:
            self.progress.close()


def _confirm() -> None:
    if not sys.stdin.isatty():
        raise InputError(
            "refusing to apply without confirmation: standard input is not a terminal",
            hint="review the plan above, then run again with --auto-approve; or save it with "
            "provision plan --out FILE and apply that file",
        )
    click.echo("\nDo you want to perform these actions?")
    answer = click.prompt(
        "  Only 'yes' will be accepted to approve", default="", show_default=False
    )
    if answer.strip() != "yes":
        raise InputError("apply cancelled: nothing was changed")


def _report(outcome: ApplyOutcome, fmt: str, *, resume: str, saved: bool) -> int:
    """Print the final report; returns the exit code."""
    from provisioner.views.result import render_json, render_text, run_status

    if outcome.stopped_at_once is not None:
        name = outcome.stopped_at_once
        note(
            f"\n{name}: stopped at once. Changes Graph made are in the state or in its "
            f"journal; to continue, run: {resume}"
        )
        return SIGNAL_EXIT.get(name, 130)
    result = outcome.result
    if result is None and outcome.unsaved is not None:
        raise outcome.unsaved
    if result is None:  # the plan had no changes (text output)
        if saved:
            click.echo("No changes. The chats match the plan.")
        return 0
    status = run_status(result)
    shown_resume = resume if status != "ok" or outcome.unsaved is not None else None
    if fmt == "json":
        click.echo(render_json(result, resume=shown_resume), nl=False)
    else:
        click.echo(render_text(result, resume=shown_resume), nl=False)
    if outcome.unsaved is not None:  # the report above stands; the records are in the journal
        # One JSON object per run on stdout: the report carries the failure (status and
        # "unsaved"), so the error edge adds no second object (cli.main._json_error).
        outcome.unsaved.in_report = fmt == "json"
        raise outcome.unsaved
    if status == "interrupted":
        return SIGNAL_EXIT.get(result.stopped or "", 130)
    return 0 if status == "ok" else 1
