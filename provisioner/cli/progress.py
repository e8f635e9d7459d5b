"""What `provision apply` shows while it runs, and how it reacts to signals.

A progress bar on a terminal (done/total, rate, ETA, throttled requests), a plain line every
few seconds elsewhere (CI logs), ``--quiet`` and ``--verbose``; the Graph client's retry log
with ``--verbose``; SIGINT/SIGTERM handling (first: stop cleanly, second: stop at once).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import click

from provisioner.apply.control import ApplyListener, Progress
from provisioner.apply.results import Outcome
from provisioner.operations.apply import StopNow
from provisioner.redact import RedactingFilter

LINE_EVERY_S = 5.0  # progress line interval when stderr is not a terminal


class CliProgress(ApplyListener):
    """``bar``: a click progress bar on a terminal; ``lines``: a plain line every few seconds
    (CI logs); ``none``. ``verbose`` adds one line per finished key. All output goes to
    stderr, from the thread that runs the executor.

    Both measure the work in Graph requests (`provisioner.apply.work`), not in finished chats:
    a chat gaining members takes a minute per four of them, a creation one request."""

    def __init__(self, mode: str, *, verbose: bool = False, every_s: float = LINE_EVERY_S) -> None:
        self.mode = mode
        self.verbose = verbose
        self.every_s = every_s
        self._finished: deque[Outcome] = deque()
        self._bar: Any = None
        self._last_line = 0.0
        self._total = 0

    def started(self, total: int) -> None:
        self._total = total

    def finished(self, outcome: Outcome) -> None:
        self._finished.append(outcome)  # deque.append is thread-safe

    def tick(self, p: Progress) -> None:
        from provisioner.views.result import outcome_line

        while self._finished:
            outcome = self._finished.popleft()
            if self.verbose:
                click.echo(outcome_line(outcome), err=True)
        if self.mode == "bar" and p.total:
            self._draw_bar(p)
        elif self.mode == "lines" and (
            p.elapsed - self._last_line >= self.every_s or p.done == p.total
        ):
            if p.done == p.total and self._last_line < 0:
                return
            self._last_line = p.elapsed if p.done < p.total else -1.0
            click.echo(progress_line(p), err=True)

    def _draw_bar(self, p: Progress) -> None:
        if self._bar is None:
            self._bar = click.progressbar(
                length=max(1, p.work_total),
                label="Applying",
                file=sys.stderr,
                show_eta=False,  # ours below: click's assumes every step takes as long
                show_pos=True,
                show_percent=False,
                item_show_func=lambda text: text,
            )
            self._bar.__enter__()
        self._bar.update(p.work_done - self._bar.pos, status_text(p))

    def stopping(self, reason: str, in_flight: int, grace_s: float) -> None:
        self.close()
        if self.mode == "none" or not reason.startswith("SIG"):
            return  # a stop on an error is explained by the final report
        text = f"\n{reason}: stopping. No new changes start"
        if in_flight:
            text += (
                f"; waiting up to {grace_s:.0f}s for {in_flight} change(s) in flight. Press "
                "Ctrl+C again to stop at once (the next run picks up safely)"
            )
        click.echo(text + ".", err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def status_text(p: Progress, *, waiting: bool = True) -> str:
    """Chats, rate, ETA, throttling and failures: what the bar shows beside the requests;
    ``waiting``: how many chats wait for Graph to list a chat an unknown creation made."""
    eta = f", ETA {_duration(p.eta_s)}" if p.eta_s is not None and p.done < p.total else ""
    text = f"{p.done}/{p.total} chats, {p.work_rate:.1f} requests/s{eta}, {p.throttled} throttled"
    if p.retries:
        text += f", {p.retries} retried after errors"
    if p.failed:
        text += f", {p.failed} failed"
    if waiting and p.waiting:
        text += f", {len(p.waiting)} waiting for Graph to list a new chat"
    return text


def progress_line(p: Progress) -> str:
    """One line for a log: the requests done of the plan's total first, then which chats wait
    for what (the consistency window, issue 14)."""
    status = status_text(p, waiting=False)
    return f"apply: {p.work_done}/{p.work_total} requests, {status}{_waiting(p)}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_mode(quiet: bool | None) -> tuple[str, bool]:
    """``--quiet``: none; ``--verbose``: plain lines plus one line per key; default: a bar on
    a terminal, plain lines elsewhere."""
    if quiet is True:
        return "none", False
    if quiet is False:
        return "lines", True
    return ("bar" if sys.stderr.isatty() else "lines"), False


# --- signals -----------------------------------------------------------------------------------


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[None]:
    """First SIGINT/SIGTERM: ``request_stop(name)`` (finish what is in flight, save, exit).
    A second one raises `StopNow` at once; the journal keeps the next run safe."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[str] = []

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if seen:
            raise StopNow(name)
        seen.append(name)
        request_stop(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def graph_log(verbose: bool) -> Iterator[None]:
    """The Graph client logs every retry (``provision.graph``): shown with ``--verbose``
    (each line carries the client-request-id), kept out of the progress display otherwise
    (the final report counts retries and throttling)."""
    logger = logging.getLogger("provision")
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # no log line shows a known secret
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _waiting(p: Progress) -> str:
    """What chats put aside wait for, e.g. ``; 2 waiting for Graph to list the chat an
    unknown creation may have made (...): falcon-launch, falcon-design``."""
    if not p.waiting:
        return ""
    by_what: dict[str, list[str]] = {}
    for key, what in p.waiting:
        by_what.setdefault(what, []).append(key)
    parts = []
    for what, keys in by_what.items():
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        parts.append(f"{len(keys)} waiting for {what}: {shown}")
    return "; " + "; ".join(parts)
