"""Graph's time, as its answers tell it (issue 20, item 3).

A creation whose outcome is unknown is matched by ``createdDateTime``, which Graph stamps with
its own clock; the host's clock may be minutes off, or jump (NTP, a VM resumed, a laptop
woken) between a killed run and its rerun. So provision never compares Graph's times with the
host's: every answer's ``Date`` header (RFC 9110 section 6.6.1: when the origin server made
the answer; Graph sends it on every response, error answers included) is noted with the
monotonic time it arrived, and Graph's "now" is the last ``Date`` carried forward on the
monotonic clock. ``Date`` has whole seconds and leaves the server before it arrives here, so
the estimate runs up to a second or a round trip behind: the safe side for a lower bound on
``createdDateTime``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

#: A ``Date`` outside these years is no clock at all (a broken proxy): ignored.
_YEAR_RANGE = (1970, 9999)


def parse_http_date(text: str | None) -> datetime | None:
    """An HTTP ``Date`` (IMF-fixdate, ``Sun, 06 Nov 1994 08:49:37 GMT``, or the obsolete
    forms ``email.utils`` reads) as an aware UTC datetime; None when absent or unreadable."""
    if not text or len(text) > 64:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if not _YEAR_RANGE[0] <= when.year <= _YEAR_RANGE[1]:
        return None
    return when.astimezone(timezone.utc)


class GraphClock:
    """Graph's time from the ``Date`` of its answers, carried forward on ``monotonic``.
    Thread-safe; ``now()`` is None until an answer with a readable ``Date`` arrived."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._asking = threading.Lock()
        self._asked = False
        self._seen: tuple[datetime, float] | None = None

    def observe(self, date_header: str | None) -> None:
        when = parse_http_date(date_header)
        if when is not None:
            at = self._monotonic()
            with self._lock:
                self._seen = (when, at)

    def now(self, ask: Callable[[], object] | None = None) -> datetime | None:
        """Graph's time now; None when no answer told it. ``ask`` (e.g. a cheap request
        whose answer ``observe`` sees) is called first when none has: once in the clock's
        life, however many threads want the time (a server that sends no ``Date`` is not
        asked again and again)."""
        if ask is not None and self._seen is None:
            with self._asking:  # others wait here for the answer to the one question
                if self._seen is None and not self._asked:
                    self._asked = True
                    ask()
        with self._lock:
            seen = self._seen
        if seen is None:
            return None
        when, at = seen
        return when + timedelta(seconds=max(0.0, self._monotonic() - at))
