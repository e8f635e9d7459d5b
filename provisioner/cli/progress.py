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

LINE_EVERY_S = 5.0  # progress line interval when stderr is not a terminal


class CliProgress(ApplyListener):
    """``bar``: a click progress bar on a terminal; ``lines``: a plain line every few seconds
    (CI logs); ``none``. ``verbose`` adds one line per finished key. All output goes to
    stderr, from the thread that runs the executor."""

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
        if self.mode == "bar" and total:
            self._bar = click.progressbar(
                length=total,
                label="Applying",
                file=sys.stderr,
                show_eta=True,
                show_pos=True,
                show_percent=False,
                item_show_func=lambda text: text,
            )
            self._bar.__enter__()

    def finished(self, outcome: Outcome) -> None:
        self._finished.append(outcome)  # deque.append is thread-safe

    def tick(self, p: Progress) -> None:
        from provisioner.views.result import outcome_line

        while self._finished:
            outcome = self._finished.popleft()
            if self.verbose:
                click.echo(outcome_line(outcome), err=True)
        if self._bar is not None:
            status = f"{p.rate:.1f} chats/s, {p.throttled} throttled"
            if p.failed:
                status += f", {p.failed} failed"
            if p.waiting:
                status += f", {len(p.waiting)} waiting for Graph to list a new chat"
            self._bar.update(p.done - self._bar.pos, status)
        elif self.mode == "lines" and (
            p.elapsed - self._last_line >= self.every_s or p.done == p.total
        ):
            if p.done == p.total and self._last_line < 0:
                return
            self._last_line = p.elapsed if p.done < p.total else -1.0
            eta = (
                f", ETA {(p.total - p.done) / p.rate:.0f}s"
                if p.rate > 0 and 0 < p.done < p.total
                else ""
            )
            click.echo(
                f"apply: {p.done}/{p.total} done, {p.failed} failed, {p.rate:.1f} chats/s, "
                f"{p.throttled} throttled{eta}{_waiting(p)}",
                err=True,
            )

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
