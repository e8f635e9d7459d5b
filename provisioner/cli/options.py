"""Click options shared by the commands that talk to Graph (``plan``, ``apply``, ``import``).

Only parsing lives here; `connection_from_options` turns the parsed values into a checked
Graph URL and credential through the core (`provisioner.auth`), raising `ProvisionError`
subclasses like every other core call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from provisioner.graph.auth import (
    AUTH_MODES,
    CLOUDS,
    DEFAULT_CLOUD,
    Credential,
    credential_from_env,
    graph_url_for,
    validate_graph_url,
)

F = TypeVar("F", bound=Callable[..., Any])


class FiniteRange(click.FloatRange):
    """A float flag in ``(min, max]``: NaN and infinity are refused (click's FloatRange lets
    them through: every comparison with NaN is false), as is anything past ``max``, so a value
    like ``--timeout 1e308`` is a usage error, not an overflow after a request was sent."""

    def __init__(self, min: float, max: float, *, min_open: bool = True) -> None:
        super().__init__(min=min, max=max, min_open=min_open)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


#: Seconds for one Graph answer, at most (a day would only hide a hung server).
MAX_TIMEOUT = 3600.0
#: Requests per second, at most: far above any limit Graph documents (30/s per tenant).
MAX_RPS = 10_000.0


def connection_options(func: F) -> F:
    """Add ``--graph-url``, ``--cloud`` and ``--auth`` to a click command.

    The command receives ``graph_url: str | None``, ``cloud: str`` and ``auth: str``.
    """
    func = click.option(
        "--auth",
        type=click.Choice(AUTH_MODES),
        default="env",
        show_default=True,
        help="How to sign in: from environment variables (PROVISION_ACCESS_TOKEN or "
        "AZURE_TENANT_ID/AZURE_CLIENT_ID with a secret, certificate or federated token), "
        "an Azure managed identity, or a device code for a person.",
    )(func)
    func = click.option(
        "--cloud",
        type=click.Choice(list(CLOUDS)),
        default=DEFAULT_CLOUD,
        show_default=True,
        help="National cloud: picks the Graph and login hosts (usgov = GCC High, dod = DoD).",
    )(func)
    func = click.option(
        "--graph-url",
        metavar="URL",
        envvar="PROVISION_GRAPH_URL",
        default=None,
        help="Graph base URL [env PROVISION_GRAPH_URL; default: the cloud's, e.g. "
        "https://graph.microsoft.com/v1.0]. http:// only for loopback hosts.",
    )(func)
    return func


@dataclass(frozen=True)
class Connection:
    graph_url: str
    cloud: str
    credential: Credential


def connection_from_options(
    graph_url: str | None,
    cloud: str,
    auth: str,
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], None] | None = None,
) -> Connection:
    """Check the URL and the credential configuration (no network): call it before planning."""
    url = validate_graph_url(graph_url) if graph_url else graph_url_for(cloud)
    credential = credential_from_env(
        auth, cloud, os.environ if environ is None else environ, prompt=prompt
    )
    return Connection(url, cloud, credential)
