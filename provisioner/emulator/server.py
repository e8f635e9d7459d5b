"""``EmulatorServer``: the emulator's lifecycle and options, and ``embedded()``.

It runs in a background thread of the calling process (tests need no subprocess) and is a
context manager::

    with EmulatorServer(limits="x10", faults=["504=0.1"], seed=1) as server:
        requests.get(f"{server.url}/me/chats", headers={"Authorization": "Bearer x"})
        assert server.tenant.counters.throttled_total == 0

The HTTP handling itself is in ``transport.py``, the request pipeline in ``api.py``.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from provisioner.emulator.api import Api, ApiOptions
from provisioner.emulator.clock import Clock, SystemClock
from provisioner.emulator.errors import EmulatorError
from provisioner.emulator.faults import FaultInjector, FaultsArg, normalize_faults
from provisioner.emulator.store import Loaded, Store
from provisioner.emulator.tenant import Tenant
from provisioner.emulator.throttle import Throttler, parse_limits
from provisioner.emulator.transport import HTTPServer
from provisioner.emulator.users import Directory, User, default_users

DEFAULT_TENANT_ID = "6e5147da-6a35-4275-b3f3-fc069456b6eb"  # a made-up tenant
DEFAULT_ME = "admin@emulator.invalid"
MAX_BODY_BYTES = 4 * 1024 * 1024  # Graph refuses request bodies over 4 MB with 413
LatencyArg = float | tuple[float, float]
DelayArg = float | tuple[float, float]
#: How long a new chat or membership takes to show in list calls, drawn per write (seconds).
#: Graph documents no figure; users report list calls of 5-12 s (MicrosoftDocs/msteams-docs
#: #8959) and added members missing from member lists for about 15 minutes
#: (microsoft-graph-docs-contrib#5343). The default is a few seconds, so that a client that
#: trusts a list right after a write is caught in every run; soaks use up to 30 s.
DEFAULT_LIST_DELAY = (1.0, 4.0)
MAX_LIST_DELAY_S = 3600.0
#: The longest latency added to a request (ms): a minute, past any client's patience.
MAX_LATENCY_MS = 60_000.0
SIGN_INS = ("application", "delegated")


class EmulatorServer:
    """A local Microsoft Graph chat API. See the package docstring for every option."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_path: str | os.PathLike[str] | None = None,
        limits: str | float | None = "documented",
        latency_ms: LatencyArg = 0,
        faults: FaultsArg = None,
        seed: int | None = None,
        *,
        users: str | os.PathLike[str] | Sequence[User] | None = None,
        me: str | None = None,
        token_lifetime_s: float | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        max_body_bytes: int = MAX_BODY_BYTES,
        fault_retry_after_s: float | None = None,
        shuffle_batch: bool = True,
        list_delay_s: DelayArg = DEFAULT_LIST_DELAY,
        invent_users: bool = False,
        sign_in: str = "application",
        clock: Clock | None = None,
        clock_offset_s: float = 0.0,
        chat_filters: Sequence[str] = ("chatType", "topic"),
        sparse_members: bool = False,
        group_read: bool = True,
    ) -> None:
        self.host = host
        # Every reading of time and every wait of the emulator (tests pass a ManualClock).
        self.clock: Clock = clock or SystemClock()
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.latency = _parse_latency(latency_ms)
        self.last_internal_error: BaseException | None = None
        scale = parse_limits(limits)
        rules = normalize_faults(faults)

        # One stream per purpose, so e.g. the faults a request sequence meets do not depend
        # on how many group chat ids were drawn meanwhile.
        def stream(purpose: str) -> random.Random:
            return random.Random(None if seed is None else f"{seed}:{purpose}")

        self._rng = stream("latency")
        self._rng_lock = threading.Lock()
        _check_sign_in(sign_in)
        directory = _directory(users, invent_users)
        self._store = Store(data_path) if data_path is not None else None
        self.tenant = self._open_tenant(directory, tenant_id, stream("ids"))
        self.tenant.list_delay = _delay_range(list_delay_s)
        self.tenant.clock_offset_s = _clock_offset(clock_offset_s)
        self.tenant.chat_filters = frozenset(chat_filters)
        self.tenant.sparse_members = sparse_members
        self.tenant.groups.readable = group_read
        if me is None:
            first = None if directory.made_up else directory.first()
            me = first.id if first else DEFAULT_ME
        options = ApiOptions(
            me=me,
            whole_second_retry_after=scale == 1.0,
            fault_retry_after_s=_fault_retry_after(fault_retry_after_s, scale),
            token_lifetime_s=token_lifetime_s,
            shuffle_batch=shuffle_batch,
            sign_in=sign_in,
        )
        injector = FaultInjector(rules, stream("faults"))
        throttler = Throttler(scale, self.clock.monotonic)
        self.api = Api(self.tenant, throttler, injector, options, stream("batch"), self.clock)
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def _open_tenant(self, directory: Directory, tenant_id: str, rng: random.Random) -> Tenant:
        """The tenant, with the chats (and made-up users) of the data file, if any."""
        loaded = self._store.open() if self._store is not None else Loaded()
        try:
            tenant = Tenant(
                loaded.tenant_id or tenant_id.lower(),
                directory,
                rng=rng,
                store=self._store,
                clock=self.clock.time,
            )
            self._load(tenant, loaded, directory)
        except BaseException:
            if self._store is not None:
                self._store.close()
            raise
        return tenant

    def _load(self, tenant: Tenant, loaded: Loaded, directory: Directory) -> None:
        try:
            if directory.made_up:
                for rec in loaded.users:
                    directory.remember(User.from_record(rec, "emulator data: users"))
            tenant.load(list(loaded.chats.values()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            assert self._store is not None
            raise EmulatorError(
                f"emulator data {self._store.path} is corrupt (a chat or user record is "
                f"malformed: {exc!r})",
                hint=f"move {self._store.path} aside to start an empty tenant",
            ) from None
        directory.on_new_user = tenant.persist_user
        if self._store is not None and self._store.has_pending:
            tenant.compact()  # fold the journal of the last run into the snapshot

    def set_faults(self, faults: FaultsArg) -> None:
        """Replace the fault rules of a running emulator (e.g. to end a fault phase)."""
        self.api.faults.rules = normalize_faults(faults)

    def latency_sample(self, lo: float, hi: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(lo, hi)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        if self._httpd is not None or self._stopped.is_set():
            raise EmulatorError("this emulator was already started; make a new EmulatorServer")
        try:
            self._httpd = HTTPServer((self.host, self.port), self)
        except OSError as exc:
            self.close()
            raise EmulatorError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # how soon stop() is noticed
            name=f"provision-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The Graph base URL, e.g. ``http://127.0.0.1:8765/v1.0``."""
        if self._httpd is None:
            raise EmulatorError("the emulator is not started")
        return f"http://{self.host}:{self.port}/v1.0"

    def stop(self) -> None:
        """Stop serving, hang up open connections, and write the final snapshot."""
        if self._httpd is not None and not self._stopped.is_set():
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        self.close()

    def close(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._store is not None:
            try:
                self.tenant.compact()
            finally:
                self._store.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``stop()`` (from another thread); True if stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _directory(users: str | os.PathLike[str] | Sequence[User] | None, invent: bool) -> Directory:
    """The users file or list given, else the default directory; ``invent`` adds any user
    named (for load tests), and without users given starts from an empty directory."""
    if isinstance(users, (str, os.PathLike)):
        listed = Directory.from_file(users).users()
    elif users is not None:
        listed = list(users)
    else:
        listed = [] if invent else default_users()
    return Directory(listed, invent=invent)


def _fault_retry_after(given: float | None, scale: float | None) -> float:
    """The ``Retry-After`` of injected 503/429s: as given, else 1 s over the limits' scale."""
    return given if given is not None else 1.0 / (scale or 1.0)


#: How far the emulated Graph's clock may be set off the host's (a year).
MAX_CLOCK_OFFSET_S = 366 * 86400.0


def _clock_offset(value: float) -> float:
    if not isinstance(value, (int, float)) or not abs(value) <= MAX_CLOCK_OFFSET_S:
        raise EmulatorError(
            f"invalid clock offset {value!r}: expected seconds within +-{MAX_CLOCK_OFFSET_S:.0f}"
        )
    return float(value)


def _check_sign_in(sign_in: str) -> None:
    if sign_in not in SIGN_INS:
        raise EmulatorError(f"invalid sign-in {sign_in!r}: expected one of {SIGN_INS}")


def parse_delay(text: str) -> DelayArg:
    """``N``, ``Ns``, ``LO-HI`` or ``LO-HIs`` seconds (the ``--list-delay`` option)."""
    body = text.strip().lower().removesuffix("s")
    lo, sep, hi = body.partition("-")
    try:
        value: DelayArg = (float(lo), float(hi)) if sep else float(lo)
        _delay_range(value)
    except (ValueError, EmulatorError):
        raise EmulatorError(
            f"invalid list delay {text!r}: expected N or LO-HI seconds, e.g. 2-30s"
        ) from None
    return value


def _delay_range(value: DelayArg) -> tuple[float, float]:
    lo, hi = (value, value) if isinstance(value, (int, float)) else value
    if not (0 <= lo <= hi <= MAX_LIST_DELAY_S):
        raise EmulatorError(
            f"invalid list delay {value!r}: expected 0 <= LO <= HI <= {MAX_LIST_DELAY_S:g} s"
        )
    return (float(lo), float(hi))


def parse_latency(text: str) -> LatencyArg:
    """``N`` or ``LO-HI`` milliseconds (the ``--latency-ms`` option)."""
    lo, sep, hi = text.partition("-")
    try:
        value: LatencyArg = (float(lo), float(hi)) if sep else float(lo)
        _parse_latency(value)
    except (ValueError, EmulatorError):
        raise EmulatorError(
            f"invalid latency {text!r}: expected N or LO-HI milliseconds, "
            f"0 <= LO <= HI <= {MAX_LATENCY_MS:g}"
        ) from None
    return value


def _parse_latency(value: LatencyArg) -> tuple[float, float] | None:
    lo, hi = (value, value) if isinstance(value, (int, float)) else value
    # Bounded: an infinite latency is a server that never answers (faults do that on purpose).
    if not (0 <= lo <= hi <= MAX_LATENCY_MS):
        raise EmulatorError(f"invalid latency {value!r}: expected N or (LO, HI) milliseconds")
    return None if hi == 0 else (float(lo), float(hi))


@contextlib.contextmanager
def embedded(
    data_path: str | os.PathLike[str] = ".provision-emulator.json", **kw: Any
) -> Iterator[str]:
    """Run an emulator in this process for the duration of a block; yields its base URL.

    This is what ``plan``/``apply --emulator`` use: a free loopback port, the tenant kept in
    ``./.provision-emulator.json`` so consecutive runs see the same chats."""
    with EmulatorServer(data_path=Path(data_path), **kw) as server:
        yield server.url
