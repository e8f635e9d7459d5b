"""Properties of the retry policy (issue 21): over any sequence of answers and failures,
`decide` ends every call within its limits, never repeats a non-idempotent call that Graph
may have carried out, and returns only a success."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.graph.errors import AmbiguousOutcome
from provisioner.graph.retry import (
    Answer,
    Call,
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

answers = st.builds(
    Answer,
    status=st.sampled_from(
        (200, 201, 204, 301, 307, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504, 509)
    )
    | st.integers(100, 599),
    retry_after=st.none() | st.floats(0, 1000, allow_nan=False),
    token=st.sampled_from(("t1", "t2", "t3")),
)
failures = st.builds(TransportFailure, sent=st.booleans(), reason=st.just("cut"))
outcomes = st.lists(answers | failures, min_size=1, max_size=60)
calls = st.builds(
    Call.of,
    st.sampled_from(("GET", "POST", "PATCH", "DELETE")),
    idempotent=st.none() | st.booleans(),
)
limits = st.builds(
    Limits,
    max_retries=st.integers(0, 5),
    max_connect_retries=st.integers(0, 3),
    max_retry_after=st.floats(0, 700),
    max_token_refreshes=st.integers(0, 3),
)
SETTINGS = settings(max_examples=300, deadline=None)


def _maybe_done(call: Call, outcome: Answer | TransportFailure) -> bool:
    """Graph may have carried the request out (and said nothing clear)."""
    if isinstance(outcome, TransportFailure):
        return outcome.sent
    return outcome.status in (500, 502, 503, 504) and not is_throttled(
        outcome.status, outcome.retry_after
    )


@SETTINGS
@given(calls, outcomes, limits)
def test_every_call_ends_within_its_limits(
    call: Call, sequence: list[Answer | TransportFailure], lim: Limits
) -> None:
    state = RetryState()
    bound = (lim.max_retries + lim.max_connect_retries + 2) * (lim.max_token_refreshes + 1)
    for again, outcome in enumerate(sequence):  # again: Retry/RefreshToken decisions so far
        decision, next_state = decide(call, state, outcome, lim)
        assert next_state.retries >= state.retries  # spent attempts are never given back
        assert next_state.connect_failures >= state.connect_failures
        if isinstance(decision, Return):
            ok = isinstance(outcome, Answer) and outcome.status < 300
            deleted = (
                isinstance(outcome, Answer)
                and outcome.status == 404
                and call.method == "DELETE"
                and state.maybe_done
            )
            assert ok or (deleted and decision.deleted), (outcome, decision)
            return
        if isinstance(decision, Raise):
            if not call.idempotent and _maybe_done(call, outcome):
                assert decision.error is AmbiguousOutcome
            return
        assert again + 1 <= bound, "the call never ends"
        if isinstance(decision, Retry):
            # A non-idempotent call is never sent again once Graph may have done it.
            assert call.idempotent or not _maybe_done(call, outcome), (call, outcome)
            assert decision.delay(lambda: 0.999) >= 0
            if decision.retry_after is not None:
                assert decision.retry_after <= lim.max_retry_after
        else:
            assert isinstance(decision, RefreshToken)
            assert isinstance(outcome, Answer) and outcome.status == 401
        state = next_state
