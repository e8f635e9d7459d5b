"""Many GETs through ``$batch``, a few batches in flight, paced by the client's pacer.

``concepts/json-batching.md``: a batch holds at most 20 requests and "each individual request
is evaluated against the applicable throttling limits", so batching saves round trips and
connections, not quota: 1,000 chat reads still cost 1,000 of the 30 reads per second of
``includes/throttling-teams.md``. The client's pacer counts each item against its scopes
(``GraphClient.batch``), so a 20-item batch waits for 20 read slots; with several batches in
flight the round-trip time of one does not leave the read rate unused (Little's law: at 30
rps and 20 per batch a batch leaves every 0.67 s, so round trips up to ~2 s need 4 in flight).
Throttled items are retried one by one by the client, after their own ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from provisioner.graph.batch import BATCH_LIMIT

#: Batches in flight at once (see the module docstring).
READ_CONCURRENCY = 4

T = TypeVar("T")


class BatchClient(Protocol):
    """The part of `provisioner.graph.client.GraphClient` the batched reads use."""

    def batch(self, requests_: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    def get_chat(self, chat_id: str, *, expand_members: bool = True) -> dict[str, Any]: ...

    def get_user(
        self, id_or_upn: str, *, select: Sequence[str] = ("id", "userPrincipalName", "displayName")
    ) -> dict[str, Any]: ...


def batched_gets(
    client: BatchClient,
    urls: Sequence[str],
    handle: Callable[[int, dict[str, Any]], T],
    *,
    concurrency: int = READ_CONCURRENCY,
    batch_size: int = BATCH_LIMIT,
) -> list[T]:
    """``GET`` every URL (relative to the Graph version root) in batches of 20, and return
    ``handle(index, answer)`` for each, in URL order. ``answer`` is the batch item's
    ``{"status", "headers", "body"}`` after the client's retries of throttled items; errors
    raised by ``handle`` (or by the client) stop the reads and propagate."""
    size = max(1, min(batch_size, BATCH_LIMIT))
    chunks = [range(i, min(i + size, len(urls))) for i in range(0, len(urls), size)]
    if not chunks:
        return []

    def run(chunk: range) -> list[T]:
        requests_ = [{"id": str(i), "method": "GET", "url": urls[i]} for i in chunk]
        answers = client.batch(requests_)
        return [handle(i, answer) for i, answer in zip(chunk, answers, strict=True)]

    if len(chunks) == 1 or concurrency <= 1:
        return [item for chunk in chunks for item in run(chunk)]
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(chunks)), thread_name_prefix="read")
    try:
        futures = [pool.submit(run, chunk) for chunk in chunks]
        return [item for future in futures for item in future.result()]
    finally:
        # On an error the batches not started yet are dropped; running ones finish.
        pool.shutdown(wait=True, cancel_futures=True)
