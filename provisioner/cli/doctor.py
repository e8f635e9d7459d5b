"""``provision doctor``: the read-only pre-flight check (operations/doctor.py), one screen."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from provisioner.cli.options import (
    connection_for,
    connection_options,
    lock_timeout,
    lock_timeout_option,
    state_endpoint,
    state_option,
)

if TYPE_CHECKING:
    from provisioner.graph.client import GraphClient


@click.command("doctor")
@click.argument("paths", nargs=-1, metavar="[PATH...]")
@state_option
@lock_timeout_option
@click.option(
    "--prune", is_flag=True, help="Check as for `plan --prune` (deletion needs its permission)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts.",
)
@connection_options
@click.option("--emulator", is_flag=True, help="Check against the built-in Graph emulator.")
def doctor_command(
    paths: tuple[str, ...],
    state_path: str,
    prune: bool,
    fmt: str,
    graph_url: str | None,
    cloud: str,
    auth: str,
    emulator: bool,
) -> int:
    """Check, without changing anything, what a plan and an apply need.

    With the real credentials: which tenant and identity the run would use, which Graph
    permissions the token carries (from its claims) against what the manifests at PATH need,
    whether every user they name is in the directory, and whether the state is reachable and
    its lock can be taken. Exit code 1 when something would fail, 0 otherwise. The first
    command to run against a real tenant.
    """
    from provisioner.cli.doctor_view import render_json, render_text
    from provisioner.operations.doctor import run_doctor
    from provisioner.signin.chooser import graph_url_for, validate_graph_url

    if emulator:
        from provisioner.cli.emulator import emulator_session

        graph_url = click.get_current_context().with_resource(emulator_session())
    url = validate_graph_url(graph_url) if graph_url else graph_url_for(cloud)

    def connect() -> GraphClient:
        if emulator:
            from provisioner.operations.clients import emulator_client

            return emulator_client(url)
        from provisioner.operations.clients import read_client

        connection = connection_for(url, cloud, auth)
        return read_client(connection.graph_url, connection.credential)

    report = run_doctor(
        paths,
        state_path,
        state_endpoint(),
        graph_url=url,
        connect=connect,
        prune=prune,
        lock_timeout=lock_timeout(),
    )
    click.echo(render_json(report) if fmt == "json" else render_text(report), nl=False)
    return 1 if report.failed else 0
