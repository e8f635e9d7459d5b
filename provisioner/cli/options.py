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
