"""``provision plan``: parse the options, run the plan operation, render it, choose the exit
code (2 with ``--detailed-exitcode`` when there are changes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from provisioner.cli.options import (
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
from provisioner.cli.runlog import log_format_option, start_run_log

if TYPE_CHECKING:
    from provisioner.graph.client import GraphClient

plan_options = stacked(
    [
        state_option,
        lock_timeout_option,
        target_option,
        click.option(
            "--out", "out", metavar="PLANFILE", help="Save the plan for `provision apply PLANFILE`."
        ),
        click.option(
            "--force",
            is_flag=True,
            help="With --out: overwrite a file that is not a saved plan (never the state file).",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["text", "json", "markdown"]),
            default="text",
            show_default=True,
            help="text for people, json for scripts, markdown for pull-request comments.",
        ),
        click.option(
            "--refresh/--no-refresh",
            default=None,
            help="Read the managed chats back from Graph first, to show drift, and resolve "
            "UPNs. Default: when the state holds chats. --refresh also resolves UPNs for a "
            "first plan.",
        ),
        click.option(
            "--check-users",
            is_flag=True,
            envvar="PROVISION_CHECK_USERS",
            help="Look up every user the manifests name in the directory first (no chat is "
            "read, no lock taken): with --no-refresh, a mistyped user fails the plan under "
            "review, not the apply after the merge. Needs User.Read.All. "
            "[env PROVISION_CHECK_USERS]",
        ),
        click.option(
            "--refresh-only",
            is_flag=True,
            help="Only report what changed outside provision since the last apply (drift); "
            "with --detailed-exitcode exit 2 when there is drift. For a scheduled drift check.",
        ),
        click.option(
            "--prune",
            is_flag=True,
            help="Plan chats removed from the manifests as delete (a soft delete in Teams) "
            "instead of forget. Chats with protect: true are never deleted.",
        ),
        click.option(
            "--detailed-exitcode",
            is_flag=True,
            help="Exit 0 when there are no changes, 2 when there are, 1 on errors.",
        ),
        connection_options,
        no_color_option,
        log_format_option,
        click.option(
            "--emulator",
            is_flag=True,
            help="Plan against the built-in Graph emulator (tenant in ./.provision-emulator.json).",
        ),
    ]
)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@plan_options
def plan(
    paths: tuple[str, ...],
    state_path: str,
    out: str | None,
    force: bool,
    fmt: str,
    refresh: bool | None,
    refresh_only: bool,
    check_users: bool,
    prune: bool,
    detailed_exitcode: bool,
    graph_url: str | None,
    cloud: str,
    auth: str,
    emulator: bool,
    target_keys: tuple[str, ...] = (),
) -> int:
    """Show what apply would change: manifests compared with the state and with Graph.

    Refresh first reads every managed chat back from Graph (credentials needed, as for
    apply; `--no-refresh` plans from the state alone): what changed in Teams since the last
    apply is listed as "changes outside provision", and the plan repairs it. The plan lists
    each chat key to create (+), update in place (~), delete (-), forget (.) or reconcile (?),
    then a summary. `--out` saves it; `provision apply PLANFILE` then does exactly that, and
    refuses it once the state has moved on.
    """
    from provisioner.manifest.gcpause import gc_paused
    from provisioner.operations.plan import run_plan
    from provisioner.plans.files import check_plan_out, save_plan
    from provisioner.views.plan import render_plan

    if refresh_only and refresh is False:
        raise click.UsageError("--refresh-only reads the chats from Graph: drop --no-refresh")
    if refresh_only and prune:
        raise click.UsageError("--refresh-only plans no changes: --prune does not apply")
    if out:  # before any work: never a manifest or the state overwritten by a plan
        check_plan_out(out, force=force, state_path=state_path)
    url, connect = _graph(graph_url, cloud, auth, emulator)
    with gc_paused():  # tens of thousands of chats: see provisioner/manifest/gcpause.py
        result = run_plan(
            paths,
            state_path,
            state_endpoint(),
            refresh=True if refresh_only else refresh,
            graph_url=url,
            connect=connect,
            prune=prune,
            refresh_only=refresh_only,
            on_takeover=note_takeover,
            on_refresh=_note_refresh,
            lock_timeout=lock_timeout(),
            sign_in=sign_in(),
            targets=target_keys,
            check_users=check_users,
        )
    if target_keys:
        note_targeting(target_keys)
    if out:
        save_plan(result, out)
    colored = fmt == "text" and use_color()
    # color=: click strips escapes into a pipe unless told (FORCE_COLOR's case).
    click.echo(render_plan(result, fmt, color=colored), nl=False, color=colored)
    if out:
        note(f"Saved the plan to {out}. Apply exactly this with: provision apply {out}")
    return 2 if detailed_exitcode and result.has_changes else 0


def _graph(
    graph_url: str | None, cloud: str, auth: str, emulator: bool
) -> tuple[str, Callable[[], GraphClient]]:
    """The Graph URL the plan is made for, and how to connect when the plan reads from Graph.
    Credentials are checked only then (in ``connect``); the URL goes into the plan."""
    from provisioner.signin.chooser import graph_url_for, validate_graph_url

    if emulator:  # runs until the command ends (click closes the context's resources)
        from provisioner.cli.emulator import emulator_session

        graph_url = click.get_current_context().with_resource(emulator_session())
    url = validate_graph_url(graph_url) if graph_url else graph_url_for(cloud)
    events = start_run_log()  # --log-format json: a line per request and retry decision

    def connect() -> GraphClient:
        if emulator:
            from provisioner.operations.clients import emulator_client

            return emulator_client(url, on_event=events)
        from provisioner.operations.clients import read_client

        connection = connection_for(url, cloud, auth)
        return read_client(connection.graph_url, connection.credential, on_event=events)

    return url, connect


def _note_refresh(chats: int, base_url: str) -> None:
    note(f"Refreshing {chats} managed chat{'s' if chats != 1 else ''} from {base_url}...")


@click.command("show")
@click.argument("plan_file", metavar="PLANFILE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts (the `plan --format json` object), markdown for "
    "pull-request comments.",
)
def show(plan_file: str, fmt: str) -> int:
    """Print a plan saved with `provision plan --out PLANFILE`, as `plan` printed it.

    Reads the file only (no state, no Graph, no lock), after checking that it is a provision
    plan that nobody edited; `provision apply PLANFILE` applies exactly what this shows.
    """
    from provisioner.plans.files import load_plan
    from provisioner.views.plan import render_plan

    saved = load_plan(plan_file)
    click.echo(render_plan(saved, fmt, color=fmt == "text" and use_color()), nl=False)
    if saved.targets:
        note_targeting(saved.targets)
    return 0
