"""The run log (issue 25, item 5): records name route templates, never ids; per-second
counts, folded into at most N points for the report's chart."""

from __future__ import annotations

import pytest

from provisioner.apply.runlog import RunLog, record_of
from provisioner.graph.routes import route_template

CHAT = "19:8b081ef6@thread.v2"
USER = "megan.bowen@contoso.com"


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/chats", "/chats"),
        (f"/chats/{CHAT}", "/chats/{chat-id}"),
        (f"/chats/{CHAT}/members", "/chats/{chat-id}/members"),
        (f"/chats/{CHAT}/members/MCMjMjQz==", "/chats/{chat-id}/members/{membership-id}"),
        (f"/users/{USER}?$select=id", "/users/{user}"),
        (f"/users/{USER}/chats?$filter=x", "/users/{user}/chats"),
        ("/$batch", "/$batch"),
    ],
)
def test_route_templates_carry_no_ids(path: str, template: str) -> None:
    assert route_template(path) == template


def test_a_record_says_what_happened_and_names_no_one() -> None:
    info = {"method": "POST", "path": f"/chats/{CHAT}/members", "status": 429, "delay": 2.5}
    record = record_of("throttled", info, 1.23456)
    assert record == {
        "t": 1.235,
        "event": "throttled",
        "method": "POST",
        "route": "/chats/{chat-id}/members",
        "status": 429,
        "wait_s": 2.5,
    }
    retry = record_of("retry", {"method": "GET", "path": f"/users/{USER}", "reason": "503"}, 0)
    assert retry["reason"] == "503" and USER not in str(retry)


def test_counts_per_second_and_folds_into_points() -> None:
    now = [100.0]
    sunk: list[dict[str, object]] = []
    log = RunLog(sink=sunk.append, clock=lambda: now[0])
    for second in range(120):
        now[0] = 100.0 + second + 0.5
        for _ in range(3):
            log("response", {"method": "POST", "path": "/chats", "status": 201, "elapsed": 0.01})
        if second % 10 == 0:
            log("throttled", {"method": "POST", "path": "/chats", "status": 429, "delay": 1.0})
    assert len(sunk) == 120 * 3 + 12
    series = log.series(points=60)
    assert series.step_s == 2 and len(series.requests) == 60
    assert set(series.rates) == {3.0}  # 6 requests per 2-second step
    assert sum(series.throttled) == 12


def test_an_empty_run_has_one_point() -> None:
    series = RunLog(clock=lambda: 0.0).series()
    assert (series.step_s, series.requests, series.throttled) == (1, (0,), (0,))
