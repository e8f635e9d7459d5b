"""What the emulator's layers need from each other, as protocols, so imports point one way.

``server`` builds an ``Api`` (``api``) and an HTTP server (``transport``); ``api`` runs the
handlers (``chats``) and ``$batch`` (``batch``). The lower modules name their callers only
through these protocols: ``batch`` sends items back through a `Pipeline`, the handlers read the
tenant and the signed-in user from a `Context`, and the HTTP handler reaches the emulator
through a `Host`.
"""

from __future__ import annotations

from typing import Protocol

from provisioner.emulator.clock import Clock
from provisioner.emulator.errors import GraphError
from provisioner.emulator.messages import Request, Response
from provisioner.emulator.tenant import Tenant


class Context(Protocol):
    """What a request handler sees: the tenant and who is signed in."""

    @property
    def tenant(self) -> Tenant: ...

    @property
    def me(self) -> str: ...

    def signed_in(self, req: Request) -> str | None:
        """The object id of the signed-in user of a delegated call; None for app-only."""
        ...


class Pipeline(Context, Protocol):
    """The request pipeline as ``$batch`` uses it: each item goes through ``handle``."""

    def handle(self, req: Request) -> Response: ...

    def shuffle(self, items: list[dict[str, object]]) -> None: ...


class Frontend(Protocol):
    """The pipeline as the HTTP layer uses it."""

    @property
    def tenant(self) -> Tenant: ...

    def authenticate(self, authorization: str | None) -> GraphError | None: ...

    def handle_top(self, req: Request) -> Response: ...


class Host(Protocol):
    """The emulator as its HTTP handler sees it."""

    host: str
    port: int
    max_body_bytes: int
    latency: tuple[float, float] | None
    clock: Clock
    last_internal_error: BaseException | None

    @property
    def api(self) -> Frontend: ...

    def latency_sample(self, lo: float, hi: float) -> float: ...
