"""The work an apply measures its progress in (`provisioner.apply.work`): Graph requests per
planned change, and a rate and ETA that hold for member-heavy runs as for creations."""

from __future__ import annotations

import pytest

from provisioner.apply.work import WorkMeter, member_changes, planned_requests
from provisioner.plans.types import Action, Change, RoleChange
from provisioner.states.records import MemberRecord

A, B, C, D = (MemberRecord(u, object_id=u) for u in ("a", "b", "c", "d"))
KNOWN = MemberRecord("x", membership_id="m")


def change(action: Action, **kw: object) -> Change:
    return Change(key="k", action=action, chat_type="group", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("planned", "requests", "members"),
    [
        (change(Action.CREATE, members=(A, B, C)), 1, 0),
        (change(Action.RECONCILE), 1, 0),
        (change(Action.DELETE), 1, 0),
        (change(Action.FORGET), 0, 0),
        (change(Action.NOOP), 0, 0),
        (change(Action.UPDATE, topic="T", topic_change=("S", "T")), 1, 0),
        (change(Action.UPDATE, add=(A, B, C, D, A)), 5, 5),
        # Removals whose membership id is unknown need the member list first.
        (change(Action.UPDATE, remove=(A,)), 2, 1),
        (change(Action.UPDATE, remove=(MemberRecord("x", membership_id="m"),)), 1, 1),
        (change(Action.UPDATE, role_changes=(RoleChange(KNOWN, "guest"),)), 2, 2),
    ],
)  # fmt: skip
def test_planned_requests(planned: Change, requests: int, members: int) -> None:
    assert planned_requests(planned) == requests
    assert member_changes(planned) == members


def test_progress_counts_requests_not_chats() -> None:
    changes = [change(Action.UPDATE, add=(A, B, C, D, A)) for _ in range(3)]
    meter = WorkMeter(changes, lambda chat: 15.0)
    assert meter.total == 15
    for n in range(3):
        meter.advance(n, 2, 9.0)
    work = meter.snapshot(10.0)
    assert (work.total, work.done) == (15, 6)  # no chat is finished, the work is under way


def test_a_change_never_counts_more_than_it_planned_and_ends_whole() -> None:
    meter = WorkMeter([change(Action.CREATE), change(Action.UPDATE, add=(A, B))], lambda chat: 15.0)
    meter.advance(0, 5, 0.5)  # a lookup's reads on top of the creation
    assert meter.snapshot(1.0).done == 1
    meter.finish(1)  # failed after one member: nothing of it is left to do
    work = meter.snapshot(2.0)
    assert (work.done, work.eta_s) == (3, 0.0)


def test_eta_from_the_recent_rate() -> None:
    meter = WorkMeter([change(Action.CREATE) for _ in range(100)], lambda chat: 15.0, window_s=10)
    for second in range(21):
        for n in range(second * 2, second * 2 + 2):  # two per second
            if n < 100:
                meter.finish(n)
        work = meter.snapshot(float(second))
    assert work.done == 42
    assert work.rate == pytest.approx(2.0, rel=0.1)
    assert work.eta_s == pytest.approx(58 / 2.0, rel=0.1)


def test_eta_is_at_least_what_the_busiest_chat_needs_at_its_member_pace() -> None:
    many = change(Action.UPDATE, add=(A, B, C, D, A, B, C, D, A))  # nine member changes
    meter = WorkMeter([*(change(Action.CREATE) for _ in range(50)), many], lambda chat: 15.0)
    meter.snapshot(0.0)
    for n in range(50):
        meter.finish(n)
    meter.advance(50, 1, 4.0)
    work = meter.snapshot(5.0)
    # 8 member changes left on one chat, 15 s apart after the one made at 4 s: whatever the
    # rate, the last one is due at 4 + 8 * 15 s.
    assert work.eta_s == pytest.approx(4 + 8 * 15.0 - 5.0)


def test_pauses_between_member_bursts_do_not_stretch_the_eta() -> None:
    """Member-heavy: every 15 s each of 30 chats makes its next member change (a burst of 30
    requests in a second), then all wait for their chat's limit. The ETA in a pause is the
    remaining rounds, not the work left divided by an average that counts the pauses."""
    chats = [change(Action.UPDATE, add=(A, B, C, D, A)) for _ in range(30)]
    meter = WorkMeter(chats, lambda chat: 15.0)
    made = 0
    for tick in range(201):  # 0.2 s ticks up to 40 s; a round every 75 ticks
        busy = tick // 75 <= 2 and tick % 75 < 5  # six changes a tick for a second
        for _ in range(6 if busy else 0):
            meter.advance(made % 30, 1, tick * 0.2)
            made += 1
        work = meter.snapshot(tick * 0.2, busy=busy)
    assert work.done == 90
    # Two rounds left, due 15 s after the last ones (about 30 s): done at about 60 s.
    assert work.eta_s == pytest.approx(60.0 - 40.0, abs=1.5)
    # The last 20 s made 30 requests: 1.5/s, and 60 left at that rate would say 40 s.
    assert work.rate == pytest.approx(1.5, rel=0.05)
    assert work.eta_s is not None and 60 / work.rate > 1.8 * work.eta_s


def test_a_slower_tenant_is_seen_in_the_recent_rate() -> None:
    """Creation-heavy: 30/s for 5 s, then the tenant allows only 20/s. The ETA follows the
    recent rate, not the first burst."""
    meter = WorkMeter([change(Action.CREATE) for _ in range(1000)], lambda chat: 15.0)
    made = 0
    for tick in range(0, 151):  # 0.2 s ticks up to 30 s
        now = tick * 0.2
        target = int(30 * now) if now <= 5 else 150 + int(20 * (now - 5))
        while made < target:
            meter.finish(made)
            made += 1
        work = meter.snapshot(now)
    assert work.done == 650
    assert work.eta_s == pytest.approx(350 / 20.0, rel=0.05)


def test_no_rate_no_eta() -> None:
    meter = WorkMeter([change(Action.CREATE)], lambda chat: 15.0)
    assert meter.snapshot(0.0).eta_s is None


def test_the_member_pace_seen_wins_over_the_pacers_momentary_figure() -> None:
    """After a 429 the pacer's figure for a chat dips (here 30 s) and recovers; the gaps seen
    between member changes (15 s) are what the remaining ones will take."""
    chats = [change(Action.UPDATE, add=(A, B, C, D, A)) for _ in range(3)]
    meter = WorkMeter(chats, lambda chat: 30.0)
    for round_ in range(3):
        for n in range(3):
            meter.advance(n, 1, round_ * 15.0 + n)
            work = meter.snapshot(round_ * 15.0 + n)
    # Two changes left on chat 2 (its last at 32 s), 15 s apart: done at 62 s, not at 92.
    assert work.eta_s == pytest.approx(62.0 - 32.0)


def test_each_default_is_written_once() -> None:
    """Issue 21: the CLI, the operation, the executor and the steps share one default each
    (the 60 s consistency window, the 5 min clock skew, the workers of an apply)."""
    from provisioner.apply.context import StepContext
    from provisioner.apply.executor import ApplyOptions
    from provisioner.apply.reconcile import DEFAULT_CLOCK_SKEW
    from provisioner.cli.apply import apply
    from provisioner.graph.pacing import DEFAULT_CONCURRENCY
    from provisioner.operations.apply import ApplySettings
    from provisioner.states.settling import DEFAULT_CONSISTENCY_WINDOW_S

    cli = {p.name: p.default for p in apply.params}
    assert cli["consistency_window"] == ApplyOptions().consistency_window_s
    assert DEFAULT_CONSISTENCY_WINDOW_S == ApplyOptions().consistency_window_s == 60.0
    assert cli["concurrency"] == ApplySettings().concurrency == ApplyOptions().concurrency
    assert ApplyOptions().concurrency == DEFAULT_CONCURRENCY
    skew = StepContext.__dataclass_fields__["clock_skew"].default
    assert skew == ApplyOptions().clock_skew == DEFAULT_CLOCK_SKEW
