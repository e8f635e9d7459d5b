"""The apply run report (``apply --report FILE``, e.g. ``$GITHUB_STEP_SUMMARY``): markdown
with the outcome per status, the failures with Graph's request-id, and a chart of requests
per second against the limit and of throttled requests over time, in Mermaid, which GitHub
renders in markdown (docs.github.com, "Creating diagrams": mermaid code blocks)."""

from __future__ import annotations

from provisioner.apply.results import ApplyResult
from provisioner.apply.runlog import Series
from provisioner.views.result import run_status

#: Failures listed by name at most (the JSON result has them all).
MAX_FAILURES_LISTED = 50


def render_run_report(result: ApplyResult, series: Series, *, limit_rps: float) -> str:
    counts = {k: v for k, v in result.counts.items() if v}
    lines = [
        f"### provision apply: {run_status(result)}",
        "",
        f"{result.requests} Graph requests in {result.duration_s:.1f} s, "
        f"{result.throttled} throttled and retried, {result.retries} retried after errors.",
        "",
        "| Outcome | Chats |",
        "| --- | ---: |",
        *(f"| {status} | {n} |" for status, n in counts.items()),
    ]
    failed = [o for o in result.outcomes if o.status == "failed"]
    if failed:
        lines += ["", "Failed:", ""]
        for o in failed[:MAX_FAILURES_LISTED]:
            error = o.error
            rid = f" (request-id `{error.request_id}`)" if error and error.request_id else ""
            lines.append(f"- `{o.key}`: {error.message if error else 'failed'}{rid}")
        if len(failed) > MAX_FAILURES_LISTED:
            lines.append(f"- ... and {len(failed) - MAX_FAILURES_LISTED} more (see the JSON)")
    lines += ["", *_chart(series, limit_rps)]
    return "\n".join(lines) + "\n"


def _chart(series: Series, limit_rps: float) -> list[str]:
    """Requests per second (bars), the limit (a line), throttled requests per second (a
    line), one point per ``step_s`` seconds."""
    step = series.step_s
    labels = ", ".join(f'"{i * step}s"' for i in range(len(series.requests)))
    rates = ", ".join(str(r) for r in series.rates)
    throttled = ", ".join(str(round(n / step, 1)) for n in series.throttled)
    limit = ", ".join(str(limit_rps) for _ in series.requests)
    top = max([limit_rps, *series.rates, 1.0]) * 1.2
    return [
        "```mermaid",
        "xychart-beta",
        f'    title "Requests per second (bars), the limit {limit_rps:g}/s and throttled/s '
        '(lines)"',
        f"    x-axis [{labels}]",
        f'    y-axis "requests per second" 0 --> {top:.0f}',
        f"    bar [{rates}]",
        f"    line [{limit}]",
        f"    line [{throttled}]",
        "```",
    ]
