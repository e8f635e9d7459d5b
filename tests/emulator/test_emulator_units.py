"""The pure parts of the emulator: token buckets (with a fake clock), option parsing, routing,
``$filter`` parsing, user derivation, time format."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lib.clock import FakeClock

from provisioner.emulator import EmulatorError, FaultRule, made_up_user, parse_fault, parse_limits
from provisioner.emulator.api import Api, ApiOptions
from provisioner.emulator.chats import parse_filter
from provisioner.emulator.errors import GraphError
from provisioner.emulator.faults import FaultInjector
from provisioner.emulator.model import graph_time
from provisioner.emulator.routes import match
from provisioner.emulator.tenant import Tenant
from provisioner.emulator.throttle import CHAT_DELETE, PER_CHAT, TEAMS_WRITE, Rule, Throttler
from provisioner.emulator.users import Directory, User


# -- throttling -------------------------------------------------------------------------------
def test_bucket_allows_its_capacity_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    throttler = Throttler(1.0, clock)
    demand = [(TEAMS_WRITE, "tenant")]
    assert all(throttler.acquire(demand) is None for _ in range(30))  # 30 rps, burst 30
    wait = throttler.acquire(demand)
    # empty bucket, and the throttled request is charged too: 2 tokens at 30/s
    assert wait == pytest.approx(2 / 30)
    clock.now += wait  # type: ignore[operator]
    assert throttler.acquire(demand) is None


def test_debt_is_bounded_by_one_capacity() -> None:
    clock = FakeClock()
    throttler = Throttler(1.0, clock)
    demand = [(PER_CHAT, "chat")]
    assert throttler.acquire(demand) is None
    waits = [throttler.acquire(demand) for _ in range(10)]
    assert waits[-1] == pytest.approx(2.0)  # floor at -1 token, 1 token/s
    clock.now += 2.0
    assert throttler.acquire(demand) is None


def test_every_bucket_must_have_a_token_and_only_short_ones_are_charged() -> None:
    clock = FakeClock()
    throttler = Throttler(1.0, clock)
    assert throttler.acquire([(TEAMS_WRITE, "t"), (CHAT_DELETE, "t")]) is None
    wait = throttler.acquire([(TEAMS_WRITE, "t"), (CHAT_DELETE, "t")])
    assert wait == pytest.approx(2.0)  # the per-tenant delete bucket decides
    # the write bucket was not charged for the throttled request: 29 left of 30
    assert all(throttler.acquire([(TEAMS_WRITE, "t")]) is None for _ in range(29))
    assert throttler.acquire([(TEAMS_WRITE, "t")]) is not None


def test_scale_speeds_up_refill_but_keeps_bursts() -> None:
    clock = FakeClock()
    rule = Rule("four-per-minute", 4, 60.0)
    throttler = Throttler(60.0, clock)
    assert all(throttler.acquire([(rule, "c")]) is None for _ in range(4))
    assert throttler.acquire([(rule, "c")]) == pytest.approx(2 / 4)  # 4/s at x60


def test_off_never_throttles() -> None:
    throttler = Throttler(None)
    assert not throttler.enabled
    assert all(throttler.acquire([(PER_CHAT, "c")]) is None for _ in range(100))


@pytest.mark.parametrize(
    ("text", "scale"),
    [("documented", 1.0), ("off", None), ("x10", 10.0), ("X2.5", 2.5), ("100x", 100.0), (3, 3.0)],
)
def test_parse_limits(text: str | float, scale: float | None) -> None:
    assert parse_limits(text) == scale


@pytest.mark.parametrize("text", ["fast", "x0", "x-1", "xinf", ""])
def test_parse_limits_rejects(text: str) -> None:
    with pytest.raises(EmulatorError):
        parse_limits(text)


# -- faults -----------------------------------------------------------------------------------
def test_parse_fault_full_spec() -> None:
    rule = parse_fault("504=0.2, method=post, path=/chats, chat-type=group")
    assert rule == FaultRule("504", 0.2, "POST", "/chats", "group")
    assert rule.matches("POST", "/chats", "group")
    assert not rule.matches("POST", "/chats", "oneOnOne")
    assert not rule.matches("GET", "/chats", None)
    assert parse_fault("latency=1,ms=250") == FaultRule("latency", 1.0, ms=250)
    assert parse_fault("drop=0.1,path=/chats/*").matches("DELETE", "/chats/{chat-id}", None)


@pytest.mark.parametrize(
    "spec",
    [
        "500=0.1",
        "503",
        "503=2",
        "503=x",
        "503=0.1,color=red",
        "503=0.1,ms=5",
        "drop=1,method=FETCH",
    ],
)
def test_parse_fault_rejects(spec: str) -> None:
    with pytest.raises(EmulatorError):
        parse_fault(spec)


def test_fault_rates_are_honoured_roughly_and_repeatably() -> None:
    rules = [parse_fault("503=0.25")]

    def picks(seed: int) -> list[bool]:
        faults = FaultInjector(rules, random.Random(seed))
        return [faults.pick(("503",), "GET", "/me", None) is not None for _ in range(4000)]

    first = picks(5)
    assert first == picks(5)
    assert 0.22 < sum(first) / len(first) < 0.28


# -- routing ----------------------------------------------------------------------------------
def test_routes_decode_ids_and_key_syntax() -> None:
    m = match("GET", "/chats/19%3Aabc%40thread.v2/members/bWVt")
    assert m.template == "/chats/{chat-id}/members/{membership-id}"
    assert m.params == {"chat-id": "19:abc@thread.v2", "membership-id": "bWVt"}
    assert match("GET", "/users('o''neil@contoso.com')").params == {"user-id": "o'neil@contoso.com"}
    assert match("GET", "/me/chats/").template == "/me/chats"


def test_routes_unknown_segment_and_method() -> None:
    with pytest.raises(GraphError) as info:
        match("GET", "/chats/x/messagez")
    assert info.value.status == 400 and "'messagez'" in info.value.message
    with pytest.raises(GraphError) as info:
        match("PUT", "/chats/x")
    assert info.value.status == 405 and info.value.headers["Allow"] == "GET, PATCH, DELETE"


# -- $filter ----------------------------------------------------------------------------------
def test_parse_filter() -> None:
    assert parse_filter("topic eq 'It''s done'") == {"topic": "It's done"}
    assert parse_filter(" chatType eq 'group' ") == {"chatType": "group"}
    # Graph documents no filter joining properties with `and` (issue 14): refused, like any
    # other form the emulator does not know.
    for bad in (
        "chatType eq 'group' and topic eq 'x'",
        "chatType ne 'group'",
        "topic eq 'x' or chatType eq 'group'",
        "id eq 'x'",
    ):
        with pytest.raises(GraphError):
            parse_filter(bad)


@given(st.text(min_size=0, max_size=60))
def test_any_topic_round_trips_through_a_filter(topic: str) -> None:
    quoted = topic.replace("'", "''")
    assert parse_filter(f"topic eq '{quoted}'")["topic"] == topic


# -- users, time, Retry-After -----------------------------------------------------------------
def test_made_up_users_are_deterministic() -> None:
    upn_user = made_up_user("Jacob.Smith@contoso.com")
    assert upn_user == made_up_user("Jacob.Smith@contoso.com")
    assert uuid.UUID(upn_user.id).version == 5
    assert upn_user.display_name == "Jacob Smith"
    assert made_up_user("jacob.smith@contoso.com").id == upn_user.id  # UPNs are case-insensitive
    guid = "8B081EF6-4792-4DEF-B2C9-C363A1BF41D5"
    assert made_up_user(guid).id == guid.lower()


def test_directory_reports_new_users_once() -> None:
    seen: list[User] = []
    directory = Directory(invent=True, on_new_user=seen.append)
    first = directory.resolve("jacob@contoso.com")
    assert first is not None and directory.resolve(first.id) == first
    assert directory.resolve("not a user") is None
    assert seen == [first]


def test_graph_time_trims_milliseconds_like_graph() -> None:
    assert graph_time(1607123428.51) == "2020-12-04T23:10:28.51Z"
    assert graph_time(1607123428.0) == "2020-12-04T23:10:28Z"
    assert graph_time(1607123428.175) == "2020-12-04T23:10:28.175Z"


def _api(whole_seconds: bool) -> Api:
    tenant = Tenant("t", Directory(), rng=random.Random(0))
    options = ApiOptions(me="me@x.org", whole_second_retry_after=whole_seconds)
    return Api(
        tenant, Throttler(None), FaultInjector([], random.Random(0)), options, random.Random(0)
    )


def test_retry_after_format() -> None:
    assert _api(True).retry_after(0.03) == "1"
    assert _api(True).retry_after(2.01) == "3"
    assert _api(False).retry_after(0.0301) == "0.031"
    assert _api(False).retry_after(0.2) == "0.2"
    assert _api(False).retry_after(0.0) == "0.001"


def test_authenticate() -> None:
    api = _api(True)
    assert api.authenticate("Bearer abc") is None
    assert api.authenticate("bearer   abc ") is None
    for bad in (None, "", "Bearer", "Bearer  ", "Token abc"):
        error = api.authenticate(bad)
        assert error is not None and error.status == 401


def test_manual_clock_moves_only_when_advanced_and_wakes_its_sleepers() -> None:
    import threading

    from provisioner.emulator.clock import ManualClock

    clock = ManualClock(start=100.0)
    assert (clock.time(), clock.monotonic()) == (100.0, 0.0)
    woke = threading.Event()
    sleeper = threading.Thread(target=lambda: (clock.sleep(2.0), woke.set()))
    sleeper.start()
    assert clock.wait_for_sleepers(1) and clock.wait_for_sleeps(1)
    clock.advance(1.5)
    assert not woke.wait(0.05)  # still 0.5 s to go on this clock
    clock.advance(0.5)
    assert woke.wait(10)
    sleeper.join(10)
    assert (clock.time(), clock.monotonic()) == (102.0, 2.0)
    with pytest.raises(ValueError):
        clock.advance(-1)
