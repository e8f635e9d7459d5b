"""The Graph clients the operations read with, and the credential of the built-in emulator.

``apply`` builds its own client (its pacer obeys the stop signal, its retries and timeouts come
from the command line: `provisioner.operations.apply`); ``plan``, ``import`` and ``export``
read with `read_client`. The Graph client (and so requests) is imported when a client is
built: ``provision --help`` does not pay for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from provisioner.graph.auth import Credential
    from provisioner.graph.client import GraphClient


class EmulatorToken:
    """The credential for ``--emulator``: any bearer token works there. A rejected token is
    replaced by a new one, the way a real credential refreshes."""

    description = "the built-in emulator (no sign-in)"

    def __init__(self) -> None:
        self._generation = 0
        self._lock = threading.Lock()

    def get_token(self) -> str:
        with self._lock:
            return f"emulator-token-{self._generation}"

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1


def read_client(graph_url: str, credential: Credential) -> GraphClient:
    """A paced Graph client for reads (documented limits), sized for batched reads."""
    from provisioner.graph.client import GraphClient
    from provisioner.graph.pacing import Pacer
    from provisioner.graph.reads import READ_CONCURRENCY

    return GraphClient(graph_url, credential, pacer=Pacer(), pool_size=READ_CONCURRENCY + 2)


def emulator_client(graph_url: str) -> GraphClient:
    """A paced Graph client for the built-in emulator (``plan --emulator`` refreshes with it)."""
    from provisioner.graph.client import GraphClient
    from provisioner.graph.pacing import Pacer

    return GraphClient(graph_url, EmulatorToken(), pacer=Pacer())


def emulator_port(graph_url: str) -> int:
    """A saved plan made with ``--emulator`` names the port its emulator had: use it again so
    the plan's Graph URL matches (``check_applicable``); 0 (any free port) otherwise."""
    from provisioner.graph.auth import is_loopback_host

    parts = urlsplit(graph_url)
    if parts.scheme == "http" and is_loopback_host(parts.hostname or "") and parts.port:
        return parts.port
    return 0
