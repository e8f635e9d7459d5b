"""The Graph client's retry policy, as a pure function of each answer.

`decide` takes what is known about one call (`Call`), what its earlier attempts spent
(`RetryState`) and the outcome of the latest attempt (an `Answer` from Graph or a
`TransportFailure`), and returns what to do next (`Return`, `Retry`, `RefreshToken` or `Raise`)
with the state for the next attempt. It does no I/O, reads no clock and draws no random
number: the send loop in `provisioner.graph.client` does those, so every rule below can be
tested by calling `decide` (``concepts/throttling.md``, ``concepts/errors.md``):

* 429, 509, and 503 with ``Retry-After``: Graph did not do the work, so any request is
  retried, after ``Retry-After`` (no low cap, up to ``Limits.max_retry_after``), or without
  one after exponential backoff with full jitter. The send loop tells the pacer, so the whole
  scope slows down, not just this request.
* A timeout, a dropped connection, a 504, or another 5xx without ``Retry-After``: Graph may
  or may not have done the work. Retried only for idempotent calls (reads, oneOnOne
  creations, which return the existing chat per ``api/chat-post.md``, PATCH of a topic,
  member changes and deletes); a group ``POST /chats`` raises `AmbiguousOutcome` instead,
  because repeating it creates a second chat.
* A connection that could not be opened (DNS, refused, connect timeout): nothing was sent,
  retried a few times for any call, then `GraphConnectionError`.
* 401: the token is refreshed and the call repeated, once per refused token and at most
  ``Limits.max_token_refreshes`` times in a row (an answer other than 401 starts the count
  again: the token was accepted, a later 401 is a new expiry); 403 names the permission needed.
* 404 to a DELETE after an attempt that may have reached Graph: that attempt did the delete.
* A redirect (3xx) is a failure, never followed and never a success (issue 15: a ``POST
  /chats`` redirected to another host was recorded as created from that host's answer).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from provisioner.graph.errors import (
    AmbiguousOutcome,
    GraphAuthError,
    GraphConnectionError,
    GraphError,
    GraphNotFound,
    GraphPermissionError,
    ThrottledError,
)
from provisioner.graph.pacing import backoff_delay

__all__ = [
    "MAX_TOKEN_REFRESHES",
    "Answer",
    "Call",
    "Decision",
    "Limits",
    "Raise",
    "RefreshToken",
    "Retry",
    "RetryState",
    "Return",
    "TransportFailure",
    "decide",
    "is_throttled",
    "parse_retry_after",
    "wait_too_long",
]

MAX_TOKEN_REFRESHES = 3  # new tokens tried in a row after 401s (each refused token once)
IDEMPOTENT_METHODS = ("GET", "HEAD", "PUT", "PATCH", "DELETE")
_NOT_RETRIED = "not retried, because repeating this request could do it twice"
_REDIRECT = (
    "provision follows no redirect; check the Graph URL (--graph-url, --cloud) and any proxy "
    "in between"
)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: integer or fractional seconds, or an
    HTTP-date (RFC 9110). None when absent or unparseable; never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def wait_too_long(wait: float, allowed: float) -> str:
    """The hint of a request Graph told to wait longer than a request waits (it fails; the
    run's other requests go on, see ``pacing.MAX_PAUSE``)."""
    return (
        f"Graph asked to wait {wait:.0f}s before retrying, more than the {allowed:.0f}s allowed "
        "for one request; only this request failed. Try again later"
    )


def is_throttled(status: int, retry_after: float | None) -> bool:
    """Graph refused the work for now and did not do it (concepts/errors.md): 429, 509, or a
    503 that says when to come back."""
    return status in (429, 509) or (status == 503 and retry_after is not None)


# -- the facts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """What the policy needs to know about the request itself."""

    method: str
    idempotent: bool
    host: str = ""  # the Graph host, for "cannot connect to ..."
    permission: str = ""  # the Graph permission the route needs, for a 403's hint

    @classmethod
    def of(cls, method: str, *, idempotent: bool | None = None, **facts: str) -> Call:
        """``idempotent`` defaults to True for GET, HEAD, PUT, PATCH and DELETE."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        return cls(method, idempotent, **facts)


@dataclass(frozen=True)
class Limits:
    max_retries: int = 8  # retries after throttling, 5xx and dropped connections
    max_connect_retries: int = 3  # retries after a connection that could not be opened
    max_retry_after: float = 600.0  # a longer Retry-After is not waited for
    max_token_refreshes: int = MAX_TOKEN_REFRESHES


@dataclass(frozen=True)
class RetryState:
    """What the earlier attempts of one call spent. Starts empty for every call."""

    retries: int = 0  # throttling, 5xx, dropped connections
    connect_failures: int = 0
    refused: frozenset[str] = field(default=frozenset(), repr=False)  # tokens Graph refused
    maybe_done: bool = False  # an earlier attempt may have reached Graph

    @property
    def attempts(self) -> int:
        """Attempts counted on a `Response` (connection failures and refreshes aside)."""
        return self.retries + 1


@dataclass(frozen=True)
class Answer:
    """Graph answered: the status, its ``Retry-After`` in seconds, and the token sent."""

    status: int
    retry_after: float | None = None
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class TransportFailure:
    """No answer: ``sent`` is False when the connection could not even be opened (Graph saw
    nothing), True when the request may have reached Graph (timeout, dropped connection)."""

    sent: bool
    reason: str


# -- the decisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Return:
    """The answer is the result. ``deleted``: answer 204 instead of this 404, because an
    earlier attempt that timed out did the delete."""

    deleted: bool = False


@dataclass(frozen=True)
class Retry:
    """Send again after `delay`. ``throttled``: Graph asked to slow down (event "throttled",
    and the pacer is told); otherwise a failure is retried (event "retry")."""

    reason: str
    throttled: bool = False
    status: int = 0  # the answer's status (0 after a transport failure)
    retry_after: float | None = None  # Graph's wait, used as it is
    backoff_step: int = 0  # without one: exponential backoff with full jitter, this step

    def delay(self, rand: Callable[[], float]) -> float:
        """Seconds to wait; ``rand`` is the jitter's source (uniform in [0, 1))."""
        if self.retry_after is not None:
            return self.retry_after
        return backoff_delay(self.backoff_step, rand=rand)


@dataclass(frozen=True)
class RefreshToken:
    """Graph refused the token (401): invalidate it and send again at once."""


@dataclass(frozen=True)
class Raise:
    """The call failed: raise ``error``. ``message`` is given for a transport failure; for an
    answer the message comes from Graph's error body."""

    error: type[GraphError]
    hint: str | None = None
    message: str | None = None
    permission: str = ""


Decision = Return | Retry | RefreshToken | Raise


def decide(
    call: Call,
    state: RetryState,
    outcome: Answer | TransportFailure,
    limits: Limits = Limits(),
) -> tuple[Decision, RetryState]:
    """What to do after one attempt, and the state for the next attempt."""
    if isinstance(outcome, TransportFailure):
        return _after_failure(call, state, outcome, limits)
    return _after_answer(call, state, outcome, limits)


def _after_failure(
    call: Call, state: RetryState, failure: TransportFailure, limits: Limits
) -> tuple[Decision, RetryState]:
    reason = failure.reason
    if not failure.sent:
        state = replace(state, connect_failures=state.connect_failures + 1)
        if state.connect_failures > limits.max_connect_retries:
            hint = "check the Graph URL, DNS and network access (proxy, firewall)"
            message = f"cannot connect to {call.host}: {reason}"
            return Raise(GraphConnectionError, hint, message), state
        return Retry(reason, backoff_step=state.connect_failures - 1), state
    state = replace(state, maybe_done=True)
    if not call.idempotent:
        message = f"{reason}; Graph may or may not have done it"
        return Raise(AmbiguousOutcome, _NOT_RETRIED, message), state
    state = replace(state, retries=state.retries + 1)
    if state.retries > limits.max_retries:
        return Raise(GraphError, message=f"{reason}, {state.retries} times"), state
    return Retry(reason, backoff_step=state.retries - 1), state


def _after_answer(
    call: Call, state: RetryState, answer: Answer, limits: Limits
) -> tuple[Decision, RetryState]:
    status = answer.status
    if status != 401 and state.refused:
        state = replace(state, refused=frozenset())  # the token was accepted: a new expiry
    if 300 <= status < 400:
        # Never followed (graph.transport): the token and a write go to the Graph URL alone,
        # and an answer from elsewhere is not Graph's. Graph's own calls here never redirect.
        return Raise(GraphError, _REDIRECT, f"Graph answered with a redirect ({status})"), state
    if status < 400:
        return Return(), state
    if is_throttled(status, answer.retry_after):
        return _throttled(state, answer, limits)
    if (
        status == 401
        and answer.token not in state.refused
        and len(state.refused) < limits.max_token_refreshes
    ):
        # A call can meet more than one expired token: throttled or paced for longer than
        # the refreshed token lives (or revoked again), it is refused anew. Each token gets
        # one refresh; the same token refused twice, or a credential whose every new token
        # is refused, ends the call.
        return RefreshToken(), replace(state, refused=state.refused | {answer.token})
    if status in (500, 502, 503, 504):
        # Without Retry-After, Graph may have done the work before failing.
        state = replace(state, maybe_done=True)
        if not call.idempotent:
            return Raise(AmbiguousOutcome, _NOT_RETRIED), state
        state = replace(state, retries=state.retries + 1)
        if state.retries > limits.max_retries:
            return Raise(GraphError), state
        return Retry(f"{status}", status=status, backoff_step=state.retries - 1), state
    if status == 404 and call.method == "DELETE" and state.maybe_done:
        return Return(deleted=True), state  # an earlier attempt that timed out did the delete
    return _final(call, status), state


def _throttled(state: RetryState, answer: Answer, limits: Limits) -> tuple[Decision, RetryState]:
    # Graph did not do the work (concepts/errors.md): any request may be repeated.
    state = replace(state, retries=state.retries + 1)
    wait = answer.retry_after
    if wait is not None and wait > limits.max_retry_after:
        return Raise(ThrottledError, wait_too_long(wait, limits.max_retry_after)), state
    if state.retries > limits.max_retries:
        hint = (
            f"still throttled after {limits.max_retries} retries; another app may be using "
            "this tenant's limits, try again later or lower --max-rps"
        )
        return Raise(ThrottledError, hint), state
    retry = Retry(
        f"throttled ({answer.status})",
        throttled=True,
        status=answer.status,
        retry_after=wait,
        backoff_step=state.retries - 1,
    )
    return retry, state


def _final(call: Call, status: int) -> Raise:
    """The error for an answer that is not retried."""
    if status == 401:
        return Raise(
            GraphAuthError,
            "the access token was rejected even after a refresh: check the tenant, the app "
            "registration and --cloud",
        )
    if status == 403:
        needed = call.permission
        hint = (
            f"this call needs the Microsoft Graph permission {needed} granted to the app "
            "(application permission, with admin consent) or the user (delegated)"
            if needed
            else "the app or user lacks a permission for this call"
        )
        return Raise(GraphPermissionError, hint, permission=needed)
    if status == 404:
        return Raise(GraphNotFound)
    return Raise(GraphError)
