"""The request pipeline: authenticate, route, throttle, inject faults, run the handler.

It works on ``Request``/``Response`` values, independent of HTTP, so ``$batch`` items go
through exactly the same steps as plain requests (``json-batching.md``: items "are evaluated
individually against the applicable throttling limits").
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import threading
from dataclasses import dataclass

from provisioner.emulator import workspace
from provisioner.emulator.batch import handle_batch
from provisioner.emulator.chats import run as run_handler
from provisioner.emulator.clock import Clock, SystemClock
from provisioner.emulator.errors import GraphError, bad_request
from provisioner.emulator.faults import AFTER_KINDS, BEFORE_KINDS, FaultInjector
from provisioner.emulator.messages import Request, Response, error_response
from provisioner.emulator.routes import Match, demands, match
from provisioner.emulator.tenant import Tenant
from provisioner.emulator.throttle import Throttler


@dataclass
class ApiOptions:
    me: str  # the signed-in user of /me (the emulator has no real sign-in)
    whole_second_retry_after: bool = True
    fault_retry_after_s: float = 1.0
    token_lifetime_s: float | None = None
    shuffle_batch: bool = True
    # "application" (app-only) or "delegated": whether calls act for a signed-in user (``me``).
    # A JWT bearer token decides for itself: ``scp`` makes it delegated for its ``oid``.
    sign_in: str = "application"


def token_claims(authorization: str | None) -> dict[str, object]:
    """The claims of a JWT bearer token, read without checking its signature (the emulator
    accepts any token); {} for anything else. Entra access tokens carry ``oid``, ``tid`` and
    ``scp`` (delegated) or ``roles`` (app-only) (graph-facts, "Tokens")."""
    token = (authorization or "").partition(" ")[2].strip()
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class Api:
    def __init__(
        self,
        tenant: Tenant,
        throttler: Throttler,
        faults: FaultInjector,
        options: ApiOptions,
        rng: random.Random,
        clock: Clock | None = None,
    ) -> None:
        self.tenant = tenant
        self.clock: Clock = clock or SystemClock()
        self.throttler = throttler
        self.faults = faults
        self.options = options
        self.rng = rng
        self._rng_lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # sha256(token) -> first seen (monotonic)
        self._tokens_lock = threading.Lock()

    @property
    def me(self) -> str:
        return self.options.me

    def signed_in(self, req: Request) -> str | None:
        """The object id of the user a delegated call acts for, None for an app-only call."""
        claims = token_claims(req.headers.get("authorization"))
        if claims.get("scp") and isinstance(claims.get("oid"), str):
            return str(claims["oid"]).lower()
        if claims.get("roles") or self.options.sign_in != "delegated":
            return None
        user = self.tenant.directory.resolve(self.options.me)
        return user.id if user else self.options.me.lower()

    # -- authentication ------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> GraphError | None:
        """Any non-empty bearer token is accepted, until ``token_lifetime_s`` after it was
        first seen (to let tests expire a token mid-run). Tokens are kept only as hashes."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if not authorization or not authorization.strip():
            return GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if scheme.lower() != "bearer" or not token:
            return GraphError(
                401,
                "InvalidAuthenticationToken",
                "CompactToken parsing failed with error code: 80049217",
            )
        lifetime = self.options.token_lifetime_s
        if lifetime is not None:
            digest = hashlib.sha256(token.encode()).hexdigest()
            now = self.clock.monotonic()
            with self._tokens_lock:
                first = self._tokens.setdefault(digest, now)
            if now - first >= lifetime:
                return GraphError(
                    401,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                )
        return None

    # -- pipeline ------------------------------------------------------------------------
    def retry_after(self, seconds: float) -> str:
        """``Retry-After`` in seconds. Under documented limits whole seconds (like Graph's
        usual ``Retry-After: 10``); under scaled limits milliseconds, since Graph's own
        throttling sample shows a fractional value (``Retry-After: 2.128``, throttling.md)."""
        if self.options.whole_second_retry_after:
            return str(max(1, math.ceil(seconds)))
        value = max(0.001, math.ceil(seconds * 1000) / 1000)
        return f"{value:.3f}".rstrip("0").rstrip(".")

    def handle_top(self, req: Request) -> Response:
        """One HTTP request (a ``$batch`` envelope or a plain request)."""
        if req.method == "POST" and req.path.strip("/") == "$batch":
            self.tenant.count_in("by_route", "POST /$batch")
            return handle_batch(self, req)
        return self.handle(req)

    def handle(self, req: Request) -> Response:
        """One operation: route, throttle, faults before, handler, faults after."""
        self.tenant.count("requests_total")
        if req.in_batch:
            self.tenant.count("batch_items_total")
        response = self._handle(req)
        self.tenant.count_in("by_status", response.status)
        return response

    def _handle(self, req: Request) -> Response:
        try:
            m = match(req.method, req.path)
        except GraphError as err:
            return error_response(req, err)
        self.tenant.count_in("by_route", m.key)
        if m.template == "/$batch":
            return error_response(req, bad_request("Nested batch requests are not supported."))
        chat_type = None
        if m.key == "POST /chats" and isinstance(req.body, dict):
            value = req.body.get("chatType")
            chat_type = value if isinstance(value, str) else None

        delay = self.faults.latency_ms(req.method, m.template, chat_type)
        if delay:
            self.tenant.count_in("faults", "latency")
            self.clock.sleep(delay / 1000)

        wait = self.throttler.acquire(demands(m, self.tenant.tenant_id, self._user_key(m)))
        if wait is not None:
            self.tenant.count("throttled_total")
            return error_response(req, self._too_many(wait))

        rule = self.faults.pick(BEFORE_KINDS, req.method, m.template, chat_type)
        if rule is not None:
            self.tenant.count_in("faults", rule.kind)
            if rule.kind == "429":
                return error_response(req, self._too_many(self.options.fault_retry_after_s))
            return error_response(
                req,
                GraphError(
                    503,
                    "serviceNotAvailable",
                    "The service is temporarily unavailable. Retry after the delay given in "
                    "the Retry-After header.",
                    {"Retry-After": self.retry_after(self.options.fault_retry_after_s)},
                ),
            )

        try:
            ws = workspace.HANDLERS.get(m.key)
            response = ws(self, req, m) if ws is not None else run_handler(self, req, m)
        except GraphError as err:
            response = error_response(req, err)

        rule = self.faults.pick(AFTER_KINDS, req.method, m.template, chat_type)
        if rule is not None:
            self.tenant.count_in("faults", rule.kind)
            if rule.kind == "drop":
                return Response(0, drop=True)
            return error_response(
                req, GraphError(504, "GatewayTimeout", "The operation timed out.")
            )
        return response

    def _too_many(self, seconds: float) -> GraphError:
        # Body and header as in the sample of concepts/throttling.md.
        return GraphError(
            429,
            "TooManyRequests",
            "Please retry again later.",
            {"Retry-After": self.retry_after(seconds)},
        )

    def _user_key(self, m: Match) -> str | None:
        if not m.template.endswith("/chats"):
            return None
        ref = m.params.get("user-id", self.options.me)
        user = self.tenant.directory.resolve(ref)
        return user.id if user else ref.lower()

    def shuffle(self, items: list[dict[str, object]]) -> None:
        """``json-batching.md``: "Individual responses might appear in a different order than
        the requests" -- so they do here (seeded), to keep clients honest."""
        if self.options.shuffle_batch:
            with self._rng_lock:
                self.rng.shuffle(items)
