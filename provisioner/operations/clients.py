"""The Graph clients the operations use, their settings, and the emulator's credential.

``apply`` writes with `apply_client` (its pacer obeys the stop signal; retries, timeout and
pool size as configured); ``plan``, ``import`` and ``export`` read with `read_client`. This
module is light: the CLI reads its defaults at start-up, and the Graph client (and so
requests) is imported only when a client is built.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from provisioner.graph.pacing import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from provisioner.apply.control import RequestStats
    from provisioner.graph.client import EventHook, GraphClient
    from provisioner.graph.pacing import Pacer
    from provisioner.signin.chooser import Credential

#: Graph client retries per request (throttling, 5xx, dropped connections).
MAX_RETRIES = 8
DEFAULT_TIMEOUT = 60.0


#: The roles of the emulator's token: every application permission provision's features use.
EMULATOR_ROLES = [
    "Chat.Create",
    "Chat.ReadBasic.All",
    "Chat.ReadWrite.All",
    "ChatMember.ReadWrite.All",
    "Chat.ManageDeletion.All",
    "User.Read.All",
]


def _b64(data: dict[str, object]) -> str:
    import base64
    import json

    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class EmulatorToken:
    """The credential for ``--emulator``: any bearer token works there. A rejected token is
    replaced by a new one, the way a real credential refreshes."""

    description = "the built-in emulator (no sign-in)"

    def __init__(self) -> None:
        self._generation = 0
        self._lock = threading.Lock()

    def get_token(self) -> str:
        # An unsigned JWT with the claims of an app-only Entra token (appid, roles: every
        # permission provision uses), so `doctor --emulator` reads the identity and the
        # permissions as it does from a real token; the emulator accepts any token.
        with self._lock:
            claims = {
                "appid": "provision-emulator",
                "roles": EMULATOR_ROLES,
                "gen": self._generation,
            }
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1


def apply_client(
    graph_url: str,
    credential: Credential,
    pacer: Pacer,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    pool: int = DEFAULT_CONCURRENCY,
    stats: RequestStats | None = None,
) -> GraphClient:
    """The client of an apply: ``pool`` workers' connections, ``timeout`` seconds per answer
    (at most 10 to connect), `MAX_RETRIES` retries, every request counted by ``stats``."""
    from provisioner.graph.client import GraphClient

    return GraphClient(
        graph_url,
        credential,
        pacer=pacer,
        timeout=(min(10.0, timeout), timeout),
        max_retries=MAX_RETRIES,
        pool_size=pool + 4,
        on_event=stats,
    )


def read_client(
    graph_url: str, credential: Credential, on_event: EventHook | None = None
) -> GraphClient:
    """A paced Graph client for reads (documented limits), sized for batched reads;
    ``on_event`` is told of every request and retry decision (``--log-format json``)."""
    from provisioner.graph.client import GraphClient
    from provisioner.graph.pacing import Pacer
    from provisioner.graph.reads import READ_CONCURRENCY

    return GraphClient(
        graph_url,
        credential,
        pacer=Pacer(),
        pool_size=READ_CONCURRENCY + 2,
        on_event=on_event,
    )


def emulator_client(graph_url: str, on_event: EventHook | None = None) -> GraphClient:
    """A paced Graph client for the built-in emulator (``plan --emulator`` refreshes with it)."""
    from provisioner.graph.client import GraphClient
    from provisioner.graph.pacing import Pacer

    return GraphClient(graph_url, EmulatorToken(), pacer=Pacer(), on_event=on_event)


def emulator_port(graph_url: str) -> int:
    """A saved plan made with ``--emulator`` names the port its emulator had: use it again so
    the plan's Graph URL matches (``check_applicable``); 0 (any free port) otherwise."""
    from provisioner.fsutil import is_loopback_host

    parts = urlsplit(graph_url)
    if parts.scheme == "http" and is_loopback_host(parts.hostname or "") and parts.port:
        return parts.port
    return 0
