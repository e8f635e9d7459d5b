"""How fast the emulator serves, against the bare stdlib HTTP stack measured in the same run.

    python benchmarks/bench_emulator.py [--seconds 3] [--threads 4] [--json FILE]

Clients are threads with one keep-alive ``requests.Session`` each (the way provision talks to
Graph). Scenarios, all with ``limits="off"`` unless said otherwise:

* baseline   a ``ThreadingHTTPServer`` that answers a constant JSON body: the floor cost of
             http.server + requests on this machine;
* GET /me, GET /chats/{id}, POST /chats (group; in memory, and persisted with the fsync'ed
  journal);
* documented limits: POST /chats as fast as possible, to show the share answered 429.

The issue asks for >= 500 simple requests/s with limits off on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from provisioner.emulator import EmulatorServer

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

AUTH = {"Authorization": "Bearer bench"}
MEMBER = "#microsoft.graph.aadUserConversationMember"
USERS = [
    "8b081ef6-4792-4def-b2c9-c363a1bf41d5",
    "82af01c5-f7cc-4a2e-a728-3a5df21afd9d",
    "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca",
]
GROUP = {
    "chatType": "group",
    "topic": "bench",
    "members": [
        {
            "@odata.type": MEMBER,
            "roles": ["owner"],
            "user@odata.bind": f"https://g/v1.0/users('{u}')",
        }
        for u in USERS
    ],
}

Call = Callable[[requests.Session], int]


class _Constant(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    body = json.dumps({"id": "x", "displayName": "Baseline"}).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        return


def drive(call: Call, seconds: float, threads: int) -> tuple[float, dict[int, int]]:
    """Run ``call`` from ``threads`` sessions for ``seconds``; requests/s and status counts."""
    stop = time.monotonic() + seconds
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def worker() -> None:
        local: dict[int, int] = {}
        with requests.Session() as session:
            session.headers.update(AUTH)
            while time.monotonic() < stop:
                status = call(session)
                local[status] = local.get(status, 0) + 1
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    began = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts.values()) / (time.monotonic() - began), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    secs, threads = args.seconds, args.threads

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Constant)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1.0/me"
    baseline, _ = drive(lambda s: s.get(base_url).status_code, secs, threads)
    httpd.shutdown()
    httpd.server_close()

    rows: list[tuple[str, float, dict[int, int]]] = []
    with EmulatorServer(limits="off", invent_users=True) as server:
        url = server.url
        chat = requests.post(f"{url}/chats", json=GROUP, headers=AUTH).json()["id"]
        for name, call in (
            ("GET /me", lambda s: s.get(f"{url}/me").status_code),
            ("GET /chats/{id}", lambda s: s.get(f"{url}/chats/{chat}").status_code),
            ("POST /chats (memory)", lambda s: s.post(f"{url}/chats", json=GROUP).status_code),
        ):
            rate, counts = drive(call, secs, threads)
            rows.append((name, rate, counts))
    with tempfile.TemporaryDirectory() as tmp:
        with EmulatorServer(
            limits="off", data_path=Path(tmp) / "t.json", invent_users=True
        ) as server:
            url = server.url
            rate, counts = drive(
                lambda s: s.post(f"{url}/chats", json=GROUP).status_code, secs, threads
            )
            rows.append(("POST /chats (persisted)", rate, counts))
        with EmulatorServer(limits="documented", invent_users=True) as server:
            url = server.url
            rate, counts = drive(
                lambda s: s.post(f"{url}/chats", json=GROUP).status_code, secs, threads
            )
            rows.append(("POST /chats documented", rate, counts))
            share = server.tenant.counters.throttled_share

    print(f"{threads} client threads, {secs:.0f} s per scenario, keep-alive sessions")
    print(f"{'scenario':<26}{'req/s':>9}{'vs baseline':>13}  statuses")
    print(f"{'baseline (bare stdlib)':<26}{baseline:>9.0f}{1.0:>12.2f}x")
    for name, rate, counts in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        print(f"{name:<26}{rate:>9.0f}{rate / baseline:>12.2f}x  {statuses}")
    print(f"documented limits: {share:.1%} of POST /chats answered 429 (30 rps allowed)")
    simple = rows[0][1]
    verdict = "meets" if simple >= 500 else "MISSES"
    print(f"GET /me with limits off: {simple:.0f} req/s, {verdict} the 500 req/s target")
    figures = []
    for name, rate, _ in rows:
        figure = Figure.compared(
            f"emulator {name}", rate, "req/s", baseline, "bare stdlib HTTP server, same clients"
        )
        if name == "GET /me":
            figure.target, figure.ok = "value >= 500 req/s", rate >= 500
        figures.append(figure)
    write_figures(args.json, "emulator", figures)


if __name__ == "__main__":
    main()
