"""Where a state belongs: the tenant and the Graph cloud its chats live in (issue 15).

A state's chat ids mean something in one tenant of one cloud only. Used while signed in to
another tenant, every managed chat would read as "deleted outside provision" and be created
again there, and back in the first tenant the state would no longer match. So the state records
its home the first time it is used against Graph (the tenant from the access token's ``tid``
claim, or from the ``tenantId`` Graph returns on chats; the cloud from the Graph URL), and every
command that reads or changes chats refuses another home before any change, naming both.

Moving a state on purpose (a tenant migration, a state made against the emulator) is explicit:
``provision state unbind`` forgets the recorded home, and the next run records its own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from provisioner.errors import StateError
from provisioner.fsutil import is_loopback_host
from provisioner.states.records import State

# concepts/deployments.md (microsoft-graph-docs-contrib): the Graph service root of each
# national cloud (the same table as signin.chooser.CLOUDS, by host, without importing the Graph
# client's dependencies).
_CLOUD_HOSTS = {
    "graph.microsoft.com": "global",
    "graph.microsoft.us": "usgov",
    "dod-graph.microsoft.us": "dod",
    "microsoftgraph.chinacloudapi.cn": "china",
}
UNBIND_HINT = "to move this state on purpose, run: provision state unbind{state} (then run again)"


def cloud_of(graph_url: str) -> str:
    """The cloud a Graph URL belongs to: ``global``, ``usgov``, ``dod``, ``china``; ``local``
    for a loopback emulator (any port); otherwise the host itself."""
    host = (urlsplit(graph_url).hostname or "").lower()
    if host in _CLOUD_HOSTS:
        return _CLOUD_HOSTS[host]
    if is_loopback_host(host):
        return "local"
    return host


def check_home(
    state: State,
    location: str,
    *,
    graph_url: str | None = None,
    tenant: str | None = None,
    state_option: str = "",
) -> None:
    """StateError when ``state`` belongs to another cloud or tenant than the run's. Unknown
    values (a state that records none, a token without a ``tid``) are not compared."""
    hint = UNBIND_HINT.format(state=state_option)
    if graph_url is not None and state.cloud is not None:
        cloud = cloud_of(graph_url)
        if cloud != state.cloud:
            raise StateError(
                f"the state {location} belongs to the {state.cloud} cloud, but this run talks "
                f"to the {cloud} cloud ({graph_url}): nothing was changed",
                hint="check --cloud / --graph-url (or PROVISION_GRAPH_URL); " + hint,
            )
    known = state.tenant_id
    if tenant is not None and known is not None and tenant.lower() != known.lower():
        raise StateError(
            f"the state {location} belongs to tenant {known}, but this run is signed in to "
            f"tenant {tenant}: nothing was changed",
            hint="check the credentials (AZURE_TENANT_ID, PROVISION_ACCESS_TOKEN...) and "
            "--state; " + hint,
        )


def claim_home(state: State, *, graph_url: str | None = None, tenant: str | None = None) -> bool:
    """Record what ``state`` does not know yet about its home; True when something changed
    (the caller persists it with its next write). Call ``check_home`` first."""
    changed = False
    if graph_url is not None and state.cloud is None:
        state.cloud = cloud_of(graph_url)
        changed = True
    if tenant is not None and state.tenant_id is None:
        state.tenant_id = tenant.lower()
        changed = True
    return changed


def settle_home(
    state: State, location: str, *, graph_url: str | None = None, tenant: str | None = None
) -> bool:
    """``check_home`` then ``claim_home``: what every command that talks to Graph calls right
    after reading the state, before any change."""
    check_home(state, location, graph_url=graph_url, tenant=tenant)
    return claim_home(state, graph_url=graph_url, tenant=tenant)


def tenants_seen(bodies: list[object]) -> set[str]:
    """The ``tenantId`` of each chat Graph returned (chat resource: "the identifier of the
    tenant in which the chat was created", api-reference/v1.0/resources/chat.md)."""
    found = set()
    for body in bodies:
        if isinstance(body, dict):
            tenant = body.get("tenantId")
            if isinstance(tenant, str) and 0 < len(tenant) <= 64:
                found.add(tenant.lower())
    return found


#: All of at least this many managed chats reading as "not found" at once is taken as another
#: tenant or cloud, not as chats deleted one by one (issue 20): a chat id means nothing outside
#: its tenant, so a wrong tenant reads every chat as 404, while deletions in Teams come a few at
#: a time. Below 3 chats a state is too small to tell the two apart, and the tenant checks
#: (``check_home``, ``check_not_found``) are what protects it.
WRONG_TENANT_MIN_GONE = 3


def check_not_found(
    state: State,
    location: str,
    *,
    gone: list[str],
    tenant: str | None,
    graph_url: str,
) -> None:
    """StateError before a run turns "not found" into "deleted" (and creates the chats again)
    without evidence that it looks in the state's own tenant.

    ``gone``: the keys of the managed chats Graph answered 404 for; ``tenant``: the run's
    tenant as established (the token's ``tid``, ``GET /organization``, or a chat read back);
    None when it could not be. Refused: a state that knows its tenant, a run that cannot
    establish its own, and anything to act on (a chat not found, or a creation to look up:
    an empty lookup would create it again); and every managed chat not found at once, when
    there are at least ``WRONG_TENANT_MIN_GONE``.
    """
    pending = sorted(state.intents)
    if state.tenant_id is not None and tenant is None and (gone or pending):
        what = f"{len(gone)} managed chat(s) read as not found" if gone else ""
        if pending:
            what += (" and " if what else "") + f"{len(pending)} creation(s) must be looked up"
        raise StateError(
            f"{what}, but the tenant of this run cannot be established (the token names no "
            f"tenant and GET /organization did not answer one); the state {location} belongs "
            f"to tenant {state.tenant_id}, so 'not found' is no evidence of a deletion: "
            "nothing was changed",
            hint="use a token that carries its tenant (tid), or grant the app "
            "Directory.Read.All so Graph can say which tenant it acts in; check --graph-url "
            "and --state",
        )
    total = len(state.chats)
    if len(gone) >= WRONG_TENANT_MIN_GONE and len(gone) >= total:
        raise StateError(
            f"all {total} managed chats of the state {location} read as not found from "
            f"{graph_url}: that is what another tenant or cloud looks like (the state "
            f"belongs to tenant {state.tenant_id or 'unknown'}), not chats deleted one by "
            "one: nothing was changed",
            hint="check the credentials (AZURE_TENANT_ID, PROVISION_ACCESS_TOKEN...), "
            "--graph-url / --cloud and --state; if these chats really were deleted, stop "
            "managing them with `provision state rm KEY...` and plan again (the chats are "
            "then created anew)",
        )
