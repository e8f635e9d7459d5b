"""The secrets this process knows, and their removal from anything it prints, logs or stores.

A server (a gateway, a proxy, a hostile emulator) can echo a request back in any part of its
answer: the body, a ``request-id`` header, an error description. Anything built from such an
answer (an error, a log line, a JSON report, a state file) would then carry the bearer token
(issue 20: the token leaked through an echoed ``request-id``). So every secret is remembered
here when it is first known (each access token when it is sent, the client secret, a federated
assertion when it is read, the managed identity's ``IDENTITY_HEADER``, storage keys and SAS
tokens), and `redact` takes all of them out of a text. It is applied where diagnostics are
built (`provisioner.errors.ProvisionError`, Graph's answers in ``graph.transport``) and once
more at the error edge (``cli.main``), so a path that forgets is still covered.

Values shorter than `MIN_SECRET_CHARS` are not remembered: no real credential is that short,
and removing a short word (``PROVISION_ACCESS_TOKEN=emulator`` is a test idiom) would mangle
every message that contains it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "MARK",
    "MIN_SECRET_CHARS",
    "RedactingFilter",
    "mentions",
    "redact",
    "redact_data",
    "remember",
]

MARK = "[redacted]"
MIN_SECRET_CHARS = 16
#: Secrets kept at most: tokens are refreshed hourly, so a long run adds one an hour.
MAX_SECRETS = 1024

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # replaced whole (readers need no lock), longest first


def remember(*values: str | None) -> None:
    """Add ``values`` (and their URL-encoded forms, as a form body or query carries them) to
    the secrets `redact` removes."""
    global _secrets
    new = {form for v in values if v for form in _forms(v.strip()) if len(form) >= MIN_SECRET_CHARS}
    if not new or new.issubset(_secrets):
        return
    with _lock:
        merged = set(_secrets) | new
        # Longest first: a token whose prefix is another secret is removed whole.
        _secrets = tuple(sorted(merged, key=len, reverse=True))[:MAX_SECRETS]


def _forms(value: str) -> Iterable[str]:
    return {value, quote_plus(value), quote(value, safe="")}


def redact(text: str) -> str:
    """``text`` with every known secret replaced by `MARK`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MARK)
    return text


def mentions(raw: bytes) -> bool:
    """Whether ``raw`` (an answer's bytes) holds a known secret: a quick test (a byte search
    per secret) before parsed data is walked to redact it."""
    return any(secret.encode("utf-8", "replace") in raw for secret in _secrets)


def redact_data(data: Any) -> Any:
    """Parsed JSON (or any nest of dicts, lists and strings) with `redact` applied to every
    string, keys included."""
    if not _secrets:
        return data
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_data(v) for v in data]
    return data


class RedactingFilter(logging.Filter):
    """A log handler's filter: the formatted message and its exception text, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            try:
                message = record.getMessage()
            except Exception:  # a record whose args do not fit: logging reports it itself
                return True
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True
