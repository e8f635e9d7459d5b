"""``apply --log-format json`` and ``apply --report FILE`` (issue 25, item 5): the run's Graph
requests as JSON lines on stderr for log pipelines, and a markdown report with a chart for
``$GITHUB_STEP_SUMMARY``. Options keep their values in ``ctx.meta`` (as --lock-timeout does),
so the apply command's signature stays what it is."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from provisioner.cli.options import F

if TYPE_CHECKING:
    from provisioner.apply.runlog import RunLog
    from provisioner.operations.apply import ApplyOutcome

_LOG_FORMAT = "provision.log_format"
_REPORT = "provision.report"


def _keep(name: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        ctx.meta[name] = value

    return callback


def log_format_option(fn: F) -> F:
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        envvar="PROVISION_LOG_FORMAT",
        expose_value=False,
        callback=_keep(_LOG_FORMAT),
        help="json: one JSON line on stderr per Graph request and retry decision (method, "
        "route template, status, time, wait, retry reason; no ids of people), for log "
        "pipelines [env PROVISION_LOG_FORMAT].",
    )(fn)


def run_log_options(fn: F) -> F:
    """``--log-format`` and ``--report`` (apply)."""
    fn = log_format_option(fn)
    return click.option(
        "--report",
        metavar="FILE",
        default=None,
        envvar="PROVISION_REPORT",
        expose_value=False,
        callback=_keep(_REPORT),
        help="Append a markdown run report to FILE: outcomes, failures with request-ids, "
        "and a chart of requests per second against the limit and of throttled requests; "
        'e.g. --report "$GITHUB_STEP_SUMMARY" [env PROVISION_REPORT].',
    )(fn)


def start_run_log() -> RunLog:
    """The run's `RunLog`, writing JSON lines to stderr under ``--log-format json``. A
    ``--report FILE`` that cannot be written is refused here, before anything changes."""
    from provisioner.apply.runlog import RunLog

    meta = click.get_current_context().meta
    if meta.get(_REPORT):
        _append(meta[_REPORT], "")
    if meta.get(_LOG_FORMAT) == "json":
        return RunLog(sink=lambda record: click.echo(json.dumps(record), err=True))
    return RunLog()


def write_run_report(outcome: ApplyOutcome, log: RunLog, max_rps: float | None) -> None:
    """Append the report to ``--report FILE``, when given and something ran."""
    path = click.get_current_context().meta.get(_REPORT)
    if not path or outcome.result is None:
        return
    from provisioner.graph.pacing import DOCUMENTED_LIMITS, TENANT_WRITE
    from provisioner.views.runreport import render_run_report

    limit = max_rps or DOCUMENTED_LIMITS[TENANT_WRITE].rate
    _append(path, render_run_report(outcome.result, log.series(), limit_rps=limit))


def _append(path: str, text: str) -> None:
    from provisioner.errors import InputError

    try:
        with open(path, "a", encoding="utf-8") as report:
            report.write(text)
    except OSError as exc:
        raise InputError(f"--report {path}: cannot write it: {exc.strerror}") from exc
