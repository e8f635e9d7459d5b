"""A chat member in a request body (``aadUserConversationMember``), as Graph validates it."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import unquote

from provisioner.emulator.errors import GraphError, bad_request, not_found
from provisioner.emulator.model import MEMBER_TYPE
from provisioner.emulator.protocol import Context
from provisioner.emulator.tenant import NewMember
from provisioner.emulator.users import GUID_RE, UPN_RE, made_up_user

BIND_RE = re.compile(
    r"^https?://[^/]+/(?:v1\.0|beta)/users(?:\('(?P<quoted>(?:[^']|'')+)'\)|/(?P<plain>[^/?#()']+))$"
)


def parse_member(api: Context, obj: object) -> NewMember:
    """One ``aadUserConversationMember`` (``chat-post.md``): a role of owner or guest; in-tenant
    guests must be guest, out-of-tenant (``tenantId`` set to another tenant) must be owner."""
    if not isinstance(obj, dict):
        raise bad_request("Each member must be a JSON object.")
    odata_type = obj.get("@odata.type")
    if not isinstance(odata_type, str) or odata_type.lstrip("#").lower() != MEMBER_TYPE[1:].lower():
        raise bad_request(
            f"The provided '{odata_type}' for 'odata.type' is not valid for this operation; "
            f"expected '{MEMBER_TYPE}'."
        )
    roles = obj.get("roles")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise bad_request('Each member must have roles: ["owner"] or ["guest"].')
    for role in roles:
        if role.lower() not in ("owner", "guest"):
            raise bad_request(f"The passed-in role '{role}' is not supported.")
    if len({r.lower() for r in roles}) != 1:
        raise bad_request("A member must have exactly one role: owner or guest.")
    role = roles[0].lower()
    bind = obj.get("user@odata.bind")
    found = BIND_RE.match(bind) if isinstance(bind, str) else None
    if found is None:
        raise bad_request(
            f"Invalid value for 'user@odata.bind': {bind!r}; expected "
            "'https://graph.microsoft.com/v1.0/users('<id or userPrincipalName>')'."
        )
    # OData string literals double a single quote; '#' (as in guest UPNs with #EXT#) arrives
    # percent-encoded because it would otherwise start a URL fragment.
    ref = unquote((found.group("quoted") or "").replace("''", "'") or found.group("plain"))
    if not (GUID_RE.match(ref) or UPN_RE.match(ref)):
        raise bad_request(f"'{ref}' is neither a user id nor a userPrincipalName.")
    tenant_id = obj.get("tenantId")
    if tenant_id is not None and not (isinstance(tenant_id, str) and GUID_RE.match(tenant_id)):
        raise bad_request(f"Invalid tenantId {tenant_id!r}: expected a GUID.")
    home = api.tenant.tenant_id
    if tenant_id is not None and tenant_id.lower() != home:
        if role != "owner":
            raise bad_request("Out-of-tenant external users must be assigned the owner role.")
        user = made_up_user(ref)  # federated: not in this tenant's directory
    else:
        found_user = api.tenant.directory.resolve(ref)
        if found_user is None:
            raise unknown_user(ref)
        user = found_user
        if user.user_type == "Guest" and role != "guest":
            raise bad_request("In-tenant guest users must be assigned the guest role.")
        if user.user_type != "Guest" and role == "guest":
            # chat-post.md: the guest role is for in-tenant guest users; a member account is
            # an owner (the only other role). Graph's wording of this refusal is not quoted
            # in the docs.
            raise bad_request(f"The passed-in role 'guest' is not valid for member '{ref}'.")
    history = obj.get("visibleHistoryStartDateTime")
    if history is not None and not (isinstance(history, str) and _is_time(history)):
        raise bad_request(
            f"Invalid visibleHistoryStartDateTime {history!r}: expected a DateTimeOffset."
        )
    extra = {"visible_history_start": history} if isinstance(history, str) else {}
    return NewMember(user, role, (tenant_id or home).lower(), **extra)


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def unknown_user(ref: str) -> GraphError:
    # user-get.md: 404 when the user does not exist, with the directory's error code
    # (graph-facts: "unknown users are 404 Request_ResourceNotFound").
    return not_found(
        f"Resource '{ref}' does not exist or one of its queried reference-property "
        "objects are not present.",
        code="Request_ResourceNotFound",
    )
