"""``provision apply``: plan (or load a saved plan), confirm, run it, report.

Thin like the rest of the CLI: the work is in ``provisioner.apply``; this module wires the
Graph client, the state lock, signals, the progress display and the exit code:
0 every change made (or nothing to do), 1 anything failed or was refused, 130/143 stopped by
SIGINT/SIGTERM (the state is saved; running the same command again continues).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from provisioner.errors import InputError

# The executor, the progress display and the state are imported inside run_apply: registering
# the command (every `provision` start, `--help` included) must not pay for them.

EMULATOR_DATA = ".provision-emulator.json"
#: Graph client retries per request (throttling, 5xx, dropped connections).
MAX_RETRIES = 8
DEFAULT_CONCURRENCY = 16  # pacing.suggested_concurrency(30 rps, ~0.3 s round trips) = 14
DEFAULT_TIMEOUT = 60.0
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}

F = TypeVar("F", bound=Callable[..., Any])


class EmulatorToken:
    """The credential for ``--emulator``: any bearer token works there. A rejected token is
    replaced by a new one, the way a real credential refreshes."""

    description = "the built-in emulator (no sign-in)"

    def __init__(self) -> None:
        self._generation = 0
        self._lock = threading.Lock()

    def get_token(self) -> str:
        with self._lock:
            return f"emulator-token-{self._generation}"

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1


@contextlib.contextmanager
def emulator_session(port: int = 0) -> Iterator[str]:
    """Run the built-in emulator (tenant kept in ``./.provision-emulator.json``) for a block;
    yields its Graph URL."""
    from provisioner.emulator import embedded

    with embedded(EMULATOR_DATA, port=port, **emulator_settings()) as url:
        click.echo(
            f"Using the built-in Graph emulator at {url} (tenant kept in ./{EMULATOR_DATA}).",
            err=True,
        )
        yield url


def emulator_settings() -> dict[str, Any]:
    """The built-in emulator's settings from the environment, as ``provision emulator``
    takes them as options: ``PROVISION_EMULATOR_USERS`` (a users file, or ``invent`` to make
    up any user named) and ``PROVISION_EMULATOR_LIST_DELAY`` (``N`` or ``LO-HI`` seconds)."""
    from provisioner.emulator.server import parse_delay

    settings: dict[str, Any] = {}
    users = os.environ.get("PROVISION_EMULATOR_USERS", "").strip()
    if users == "invent":
        settings["invent_users"] = True
    elif users:
        settings["users"] = users
    delay = os.environ.get("PROVISION_EMULATOR_LIST_DELAY", "").strip()
    if delay:
        settings["list_delay_s"] = parse_delay(delay)
    return settings


def emulator_client(graph_url: str) -> Any:
    """A paced Graph client for the built-in emulator (``plan --emulator`` refreshes with it)."""
    from provisioner.graph.client import GraphClient
    from provisioner.graph.pacing import Pacer

    return GraphClient(graph_url, EmulatorToken(), pacer=Pacer())


def _emulator_port(graph_url: str) -> int:
    """A saved plan made with ``--emulator`` names the port its emulator had: use it again so
    the plan's Graph URL matches (``check_applicable``)."""
    from provisioner.graph.auth import is_loopback_host

    parts = urlsplit(graph_url)
    if parts.scheme == "http" and is_loopback_host(parts.hostname or "") and parts.port:
        return parts.port
    return 0


def is_plan_file(path: str) -> bool:
    """True for a file saved by ``provision plan --out`` (JSON with ``kind: provision-plan``)."""
    from provisioner.plans.types import PLAN_FILE_KIND

    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(1)
            if head != b"{":
                return False
            document = json.loads(head + f.read())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("kind") == PLAN_FILE_KIND


def resume_command(targets: tuple[str, ...], options: dict[str, Any]) -> str:
    """The command that continues an interrupted run."""
    words = ["provision", "apply", *targets]
    for flag, value in options.items():
        if value is True:
            words.append(flag)
        elif value:
            words += [flag, str(value)]
    return shlex.join(words)


# --- the command -------------------------------------------------------------------------------


def apply_options(func: F) -> F:
    """The options of ``provision apply`` beyond ``--state`` and the connection options."""
    for option in reversed(
        [
            click.option(
                "--auto-approve", is_flag=True, help="Apply without asking for confirmation."
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(1, 128),
                default=DEFAULT_CONCURRENCY,
                show_default=True,
                help="Requests in flight at once (enough to keep Graph's rate limit busy).",
            ),
            click.option(
                "--max-rps",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                help="Requests per second per tenant (default: Graph's documented 30 for "
                "writes and for reads; lower it when other apps share the tenant's limits).",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=DEFAULT_TIMEOUT,
                show_default=True,
                help="Seconds to wait for each Graph answer.",
            ),
            click.option(
                "--consistency-window",
                type=click.FloatRange(min=0, max=86400),
                default=60.0,
                show_default=True,
                envvar="PROVISION_CONSISTENCY_WINDOW",
                metavar="SECONDS",
                help="How long Graph may take to list a new chat: a group chat whose creation "
                "got no clear answer is looked up over this window (other chats go on) and "
                "created again only if no lookup found it. Env: PROVISION_CONSISTENCY_WINDOW.",
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
    ):
        func = option(func)
    return func


def run_apply(
    targets: tuple[str, ...],
    state_path: str,
    state_endpoint: str | None,
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
) -> int:
    """``provision apply``; returns the exit code (see the module docstring)."""
    from provisioner.apply.executor import ApplyOptions, Executor, RequestStats, StopSignal
    from provisioner.cli.main import _note_takeover, _use_color
    from provisioner.cli.options import connection_from_options
    from provisioner.cli.progress import (
        Abort,
        CliProgress,
        graph_log,
        progress_mode,
        stop_on_signals,
    )
    from provisioner.graph.client import GraphClient
    from provisioner.graph.pacing import Pacer
    from provisioner.operations.refresh import read_from_graph, record_plan_facts
    from provisioner.plans.files import check_applicable, load_plan
    from provisioner.plans.planner import make_plan
    from provisioner.states.records import DEFAULT_STATE_PATH
    from provisioner.states.store import open_store
    from provisioner.states.writer import StateWriter
    from provisioner.views.plan import render_plan
    from provisioner.views.result import render_json, render_text, run_status

    plan_file = targets[0] if len(targets) == 1 and is_plan_file(targets[0]) else None
    if fmt == "json" and plan_file is None and not auto_approve:
        raise click.UsageError("--format json needs --auto-approve (or a saved plan file)")
    if plan_file is not None and (prune or refresh is not None):
        raise click.UsageError(
            "a saved plan is applied as it is: --prune and --refresh are for "
            "planning (provision plan ... --out FILE)"
        )
    # Credentials are checked before anything is planned (no network yet).
    credential: Any
    if emulator:
        credential = EmulatorToken()
    else:
        connection = connection_from_options(
            graph_url, cloud, auth, prompt=lambda text: click.echo(text, err=True)
        )
        credential = connection.credential
    saved = load_plan(plan_file) if plan_file is not None else None
    desired = None
    if saved is None:
        from provisioner.manifest.load import load_desired

        desired = load_desired(targets)

    resume_targets = targets if saved is None else saved.manifest_files
    resume = resume_command(
        resume_targets,
        {
            "--state": state_path if state_path != DEFAULT_STATE_PATH else None,
            "--emulator": emulator,
            "--graph-url": graph_url if not emulator else None,
            "--auto-approve": auto_approve and saved is None,
            "--prune": prune,
            "--no-refresh": refresh is False,
            "--concurrency": concurrency if concurrency != DEFAULT_CONCURRENCY else None,
            "--max-rps": max_rps,
            "--timeout": timeout if timeout != DEFAULT_TIMEOUT else None,
            "--consistency-window": consistency_window if consistency_window != 60.0 else None,
        },
    )
    with contextlib.ExitStack() as stack:
        if emulator:
            port = _emulator_port(saved.graph_url) if saved is not None else 0
            url = stack.enter_context(emulator_session(port))
        else:
            url = connection.graph_url
        mode, verbose = progress_mode(quiet)
        stack.enter_context(graph_log(verbose))  # refresh and apply alike
        stop = StopSignal()
        stats = RequestStats()
        pacer = Pacer(max_rps=max_rps, sleep=stop.sleep)
        client = GraphClient(
            url,
            credential,
            pacer=pacer,
            timeout=(min(10.0, timeout), timeout),
            max_retries=MAX_RETRIES,
            pool_size=concurrency + 4,
            on_event=stats,
        )
        stack.callback(client.close)
        store = open_store(state_path, state_endpoint)
        with store.lock("apply") as info:
            _note_takeover(info)
            state = store.read()
            if saved is not None:
                check_applicable(saved, state, url)
                plan = saved
            else:
                assert desired is not None
                if refresh or (refresh is None and bool(state.chats)):
                    # As plan does: drift, the refreshed view, UPNs resolved (issue 7).
                    plan = read_from_graph(client, desired, state, graph_url=url, prune=prune)
                else:
                    plan = make_plan(desired, state, prune=prune, graph_url=url)
                if fmt == "text":
                    color = _use_color()
                    click.echo(render_plan(plan, "text", color=color), nl=False)
                if plan.has_changes and not auto_approve:
                    _confirm()
            if not plan.has_changes and fmt == "text":
                if saved is not None:
                    click.echo("No changes. The chats match the plan.")
                return 0
            writer = StateWriter(store, state)
            # What the plan learned (refreshed chats, renamed keys, resolved users, protection)
            # is recorded before any change, as Terraform's apply persists its refresh.
            if record_plan_facts(plan, state):
                state.last_plan_id = plan.plan_id
                writer.flush()

            listener = CliProgress(mode, verbose=verbose)
            executor = Executor(
                plan,
                client,
                writer,
                options=ApplyOptions(
                    concurrency=concurrency, consistency_window_s=consistency_window
                ),
                listener=listener,
                stats=stats,
                stop=stop,
                pacer=pacer,
            )
            try:
                with stop_on_signals(executor.request_stop):
                    result = executor.run()
            except (Abort, KeyboardInterrupt) as exc:
                listener.close()
                name = exc.name if isinstance(exc, Abort) else "SIGINT"
                click.echo(
                    f"\n{name}: stopped at once. Changes Graph made are in the state or in its "
                    f"journal; to continue, run: {resume}",
                    err=True,
                )
                return SIGNAL_EXIT.get(name, 130)
            finally:
                listener.close()
    status = run_status(result)
    shown_resume = resume if status != "ok" else None
    if fmt == "json":
        click.echo(render_json(result, resume=shown_resume), nl=False)
    else:
        click.echo(render_text(result, resume=shown_resume), nl=False)
    if status == "interrupted":
        return SIGNAL_EXIT.get(result.stopped or "", 130)
    return 0 if status == "ok" else 1


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
