"""The retry policy on its own: `decide` is a pure function, so each rule is one call."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from provisioner.graph.errors import (
    AmbiguousOutcome,
    GraphAuthError,
    GraphConnectionError,
    GraphError,
    GraphNotFound,
    GraphPermissionError,
    ThrottledError,
)
from provisioner.graph.retry import (
    MAX_TOKEN_REFRESHES,
    Answer,
    Call,
    Decision,
    Limits,
    Raise,
    RefreshToken,
    Retry,
    RetryState,
    Return,
    TransportFailure,
    decide,
    is_throttled,
)

GET = Call.of("GET", host="graph.example")
GROUP_POST = Call.of("POST", host="graph.example")  # a group POST /chats: not idempotent
DELETE = Call.of("DELETE", host="graph.example")
LIMITS = Limits(max_retries=3, max_connect_retries=2, max_retry_after=60.0)
DROPPED = TransportFailure(sent=True, reason="connection dropped")
REFUSED = TransportFailure(sent=False, reason="connection refused or unreachable")


def run(
    call: Call, outcomes: Sequence[Answer | TransportFailure], limits: Limits = LIMITS
) -> tuple[list[Decision], RetryState]:
    """Feed the outcomes of successive attempts; the decisions and the final state."""
    state = RetryState()
    decisions = []
    for outcome in outcomes:
        decision, state = decide(call, state, outcome, limits)
        decisions.append(decision)
    return decisions, state


def test_method_defaults_decide_idempotence() -> None:
    assert [Call.of(m).idempotent for m in ("get", "PUT", "PATCH", "DELETE", "HEAD")] == [True] * 5
    assert Call.of("POST").idempotent is False
    assert Call.of("post", idempotent=True) == Call("POST", True)


def test_success_returns() -> None:
    assert run(GET, [Answer(200)])[0] == [Return()]
    assert run(GROUP_POST, [Answer(201)])[0] == [Return()]


# -- throttling --------------------------------------------------------------------------------


def test_429_with_retry_after_waits_exactly_that_long() -> None:
    (decision,), state = run(GROUP_POST, [Answer(429, retry_after=7.5)])
    assert decision == Retry(
        "throttled (429)", throttled=True, status=429, retry_after=7.5, backoff_step=0
    )
    assert isinstance(decision, Retry)
    assert decision.delay(lambda: 0.99) == 7.5  # no jitter on Graph's own wait
    assert state.retries == 1 and state.attempts == 2
    assert state.maybe_done is False  # Graph did not do the work


def test_429_without_retry_after_backs_off_exponentially() -> None:
    decisions, _ = run(GET, [Answer(429)] * 3)
    assert [d.backoff_step for d in decisions if isinstance(d, Retry)] == [0, 1, 2]
    # full jitter: uniform in [0, 0.5 * 2**step)
    assert [d.delay(lambda: 0.5) for d in decisions if isinstance(d, Retry)] == [0.25, 0.5, 1.0]


def test_503_with_retry_after_is_throttling_even_for_a_group_post() -> None:
    (decision,), state = run(GROUP_POST, [Answer(503, retry_after=2.0)])
    assert isinstance(decision, Retry) and decision.throttled and decision.retry_after == 2.0
    assert state.maybe_done is False


def test_509_is_throttling() -> None:
    (decision,), _ = run(GET, [Answer(509)])
    assert isinstance(decision, Retry) and decision.throttled and decision.status == 509


def test_retry_after_longer_than_allowed_gives_up_at_once() -> None:
    (decision,), _ = run(GET, [Answer(429, retry_after=61.0)])
    assert isinstance(decision, Raise) and decision.error is ThrottledError
    assert decision.hint is not None and "61s" in decision.hint and "60s allowed" in decision.hint
    # exactly the limit is still waited for
    assert isinstance(run(GET, [Answer(429, retry_after=60.0)])[0][0], Retry)


def test_throttling_gives_up_after_max_retries() -> None:
    decisions, state = run(GET, [Answer(429, retry_after=1.0)] * 4)
    assert all(isinstance(d, Retry) for d in decisions[:3])
    last = decisions[3]
    assert isinstance(last, Raise) and last.error is ThrottledError
    assert last.hint is not None and "after 3 retries" in last.hint and "--max-rps" in last.hint
    assert state.retries == 4


def test_is_throttled() -> None:
    assert is_throttled(429, None) and is_throttled(509, None) and is_throttled(503, 0.0)
    assert not is_throttled(503, None) and not is_throttled(504, 5.0) and not is_throttled(200, 1)


# -- 5xx without Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_for_idempotent_calls(status: int) -> None:
    (decision,), state = run(GET, [Answer(status)])
    assert decision == Retry(str(status), status=status, backoff_step=0)
    assert state.maybe_done is True and state.retries == 1


@pytest.mark.parametrize("status", [503, 504])
def test_5xx_is_ambiguous_for_a_group_post(status: int) -> None:
    (decision,), state = run(GROUP_POST, [Answer(status)])
    assert isinstance(decision, Raise) and decision.error is AmbiguousOutcome
    assert decision.hint is not None and "could do it twice" in decision.hint
    assert state.retries == 0


def test_5xx_gives_up_after_max_retries() -> None:
    decisions, _ = run(GET, [Answer(504)] * 4)
    assert [type(d) for d in decisions] == [Retry, Retry, Retry, Raise]
    assert decisions[3] == Raise(GraphError)


def test_throttling_and_5xx_share_one_retry_budget() -> None:
    decisions, _ = run(GET, [Answer(429), Answer(504), Answer(429), Answer(504)])
    assert [type(d) for d in decisions] == [Retry, Retry, Retry, Raise]


# -- transport failures ------------------------------------------------------------------------


def test_dropped_connection_is_retried_for_reads() -> None:
    (decision,), state = run(GET, [DROPPED])
    assert decision == Retry("connection dropped", backoff_step=0)
    assert state.maybe_done is True and state.retries == 1


def test_dropped_connection_on_a_write_is_ambiguous() -> None:
    (decision,), state = run(GROUP_POST, [DROPPED])
    assert isinstance(decision, Raise) and decision.error is AmbiguousOutcome
    assert decision.message == "connection dropped; Graph may or may not have done it"
    assert state.maybe_done is True


def test_dropped_connection_gives_up_after_max_retries() -> None:
    decisions, _ = run(GET, [DROPPED] * 4)
    assert [type(d) for d in decisions] == [Retry, Retry, Retry, Raise]
    assert decisions[3] == Raise(GraphError, message="connection dropped, 4 times")


def test_connection_never_opened_is_retried_even_for_a_write() -> None:
    decisions, state = run(GROUP_POST, [REFUSED] * 3)
    assert decisions[:2] == [
        Retry("connection refused or unreachable", backoff_step=0),
        Retry("connection refused or unreachable", backoff_step=1),
    ]
    last = decisions[2]
    assert isinstance(last, Raise) and last.error is GraphConnectionError
    assert last.message == "cannot connect to graph.example: connection refused or unreachable"
    assert last.hint is not None and "DNS" in last.hint
    # nothing was sent: no retry budget spent, and no doubt about the outcome
    assert state.retries == 0 and state.maybe_done is False and state.connect_failures == 3


def test_connect_failures_have_their_own_budget() -> None:
    decisions, _ = run(GET, [REFUSED, REFUSED, Answer(429), Answer(429), Answer(200)])
    assert [type(d) for d in decisions] == [Retry, Retry, Retry, Retry, Return]


# -- 401 and the token -------------------------------------------------------------------------


def test_401_refreshes_once_per_refused_token() -> None:
    decisions, state = run(GET, [Answer(401, token="a"), Answer(401, token="a")])
    assert decisions[0] == RefreshToken()
    # the same token refused again: the credential could not give a new one
    assert isinstance(decisions[1], Raise) and decisions[1].error is GraphAuthError
    assert decisions[1].hint is not None and "even after a refresh" in decisions[1].hint
    assert state.refused == frozenset({"a"})


def test_401_gives_up_after_max_token_refreshes_in_a_row() -> None:
    tokens = [f"t{i}" for i in range(MAX_TOKEN_REFRESHES + 1)]
    decisions, _ = run(GET, [Answer(401, token=t) for t in tokens])
    assert decisions[:MAX_TOKEN_REFRESHES] == [RefreshToken()] * MAX_TOKEN_REFRESHES
    assert decisions[-1] == Raise(
        GraphAuthError,
        "the access token was rejected even after a refresh: check the tenant, the app "
        "registration and --cloud",
    )


def test_an_accepted_token_starts_the_refresh_count_again() -> None:
    outcomes = [
        Answer(401, token="a"),
        Answer(429, token="b"),  # b was accepted; only throttled
        Answer(401, token="b"),  # a later expiry
        Answer(401, token="c"),
        Answer(401, token="d"),
        Answer(200, token="e"),
    ]
    decisions, state = run(GET, outcomes, Limits(max_token_refreshes=3))
    assert [type(d) for d in decisions] == [
        RefreshToken,
        Retry,
        RefreshToken,
        RefreshToken,
        RefreshToken,
        Return,
    ]
    assert state.refused == frozenset()


def test_refreshes_do_not_spend_the_retry_budget() -> None:
    _, state = run(GET, [Answer(401, token="a"), Answer(401, token="b")])
    assert state.retries == 0 and state.attempts == 1


def test_the_state_does_not_show_refused_tokens() -> None:
    _, state = run(GET, [Answer(401, token="secret-token")])
    assert "secret-token" not in repr(state)
    assert "secret-token" not in repr(Answer(401, token="secret-token"))


# -- final answers -----------------------------------------------------------------------------


def test_403_names_the_permission() -> None:
    call = Call.of("POST", permission="Chat.Create")
    (decision,), _ = run(call, [Answer(403)])
    assert isinstance(decision, Raise) and decision.error is GraphPermissionError
    assert decision.permission == "Chat.Create"
    assert decision.hint is not None and "permission Chat.Create" in decision.hint
    (unknown,), _ = run(GET, [Answer(403)])
    assert unknown == Raise(
        GraphPermissionError, "the app or user lacks a permission for this call"
    )


def test_404_and_other_client_errors_are_not_retried() -> None:
    assert run(GET, [Answer(404)])[0] == [Raise(GraphNotFound)]
    assert run(GET, [Answer(400)])[0] == [Raise(GraphError)]
    assert run(GET, [Answer(409)])[0] == [Raise(GraphError)]


def test_404_after_a_delete_that_may_have_happened_is_success() -> None:
    decisions, _ = run(DELETE, [DROPPED, Answer(404)])
    assert decisions == [Retry("connection dropped", backoff_step=0), Return(deleted=True)]
    decisions, _ = run(DELETE, [Answer(504), Answer(404)])
    assert decisions[1] == Return(deleted=True)


def test_404_to_a_first_delete_is_not_found() -> None:
    assert run(DELETE, [Answer(404)])[0] == [Raise(GraphNotFound)]
    # throttling proves Graph did nothing, so a later 404 is a real one
    assert run(DELETE, [Answer(429), Answer(404)])[0][1] == Raise(GraphNotFound)
    # and a connection never opened sent nothing
    assert run(DELETE, [REFUSED, Answer(404)])[0][1] == Raise(GraphNotFound)


def test_decide_is_pure() -> None:
    state = RetryState(retries=1, refused=frozenset({"a"}))
    first = decide(GET, state, Answer(504), LIMITS)
    again = decide(GET, state, Answer(504), LIMITS)
    assert first == again
    assert state == RetryState(retries=1, refused=frozenset({"a"}))  # not changed in place
