"""The group reads of the emulator (see ``groups.py`` for what the docs say they do)."""

from __future__ import annotations

import base64
from urllib.parse import quote

from provisioner.emulator.errors import GraphError, bad_request, not_found
from provisioner.emulator.groups import Group
from provisioner.emulator.messages import JSON_TYPE, Request, Response
from provisioner.emulator.protocol import Context
from provisioner.emulator.routes import Match
from provisioner.emulator.users import GUID_RE, User

DEFAULT_PAGE = 100  # group-list-transitivemembers.md: default page size of directory lists
MAX_PAGE = 999


def _check_readable(api: Context) -> None:
    if not api.tenant.groups.readable:
        raise GraphError(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )


def _group(api: Context, m: Match) -> Group:
    _check_readable(api)
    ref = m.params["group-id"]
    group = api.tenant.groups.get(ref) if GUID_RE.match(ref) else None
    if group is None:
        raise not_found(
            f"Resource '{ref}' does not exist or one of its queried reference-property objects "
            "are not present.",
            code="Request_ResourceNotFound",
        )
    return group


def _selected(req: Request, full: dict[str, object]) -> dict[str, object]:
    select = req.query.get("$select")
    if not select:
        return full
    wanted = {s.strip() for s in select.split(",")} | {"id"}
    return {k: v for k, v in full.items() if k in wanted or k.startswith("@")}


def _group_json(group: Group) -> dict[str, object]:
    return {"id": group.id, "displayName": group.display_name, "mail": group.mail}


def get_group(api: Context, req: Request, m: Match) -> Response:
    body = _selected(req, _group_json(_group(api, m)))
    return Response(
        200,
        {"@odata.context": f"{req.base_url}/$metadata#groups/$entity", **body},
        {"Content-Type": JSON_TYPE},
    )


def list_groups(api: Context, req: Request, m: Match) -> Response:
    _check_readable(api)
    text = req.query.get("$filter", "").strip()
    prefix = "mail eq '"
    if not (text.startswith(prefix) and text.endswith("'")):
        raise bad_request(f"Invalid filter clause: {text!r} (supported here: mail eq '...').")
    mail = text[len(prefix) : -1].replace("''", "'")
    value = [_selected(req, _group_json(g)) for g in api.tenant.groups.by_mail(mail)]
    body = {"@odata.context": f"{req.base_url}/$metadata#groups", "value": value}
    return Response(200, body, {"Content-Type": JSON_TYPE})


def transitive_users(api: Context, req: Request, m: Match) -> Response:
    group = _group(api, m)
    top = _top(req.query.get("$top"))
    start = _after(req.query.get("$skiptoken"))
    ids = api.tenant.groups.transitive_user_ids(group.id)
    users = [u for u in (api.tenant.directory.resolve(i) for i in ids) if u is not None]
    page = users[start : start + top]
    body: dict[str, object] = {
        "@odata.context": f"{req.base_url}/$metadata#users",
        "value": [_selected(req, _user_json(u)) for u in page],
    }
    if start + top < len(users):
        params = {k: v for k, v in req.query.items() if k != "$skiptoken"}
        params["$skiptoken"] = base64.urlsafe_b64encode(str(start + top).encode()).decode()
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        body["@odata.nextLink"] = f"{req.base_url}{req.path}?{query}"
    return Response(200, body, {"Content-Type": JSON_TYPE})


def _user_json(user: User) -> dict[str, object]:
    return {
        "@odata.type": "#microsoft.graph.user",
        "id": user.id,
        "displayName": user.display_name,
        "mail": user.mail,
        "userPrincipalName": user.user_principal_name,
        "userType": user.user_type,
    }


def _top(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise bad_request(f"Invalid page size {text!r}: $top must be 1 to {MAX_PAGE}.")
    return int(text)


def _after(token: str | None) -> int:
    if token is None:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        raise bad_request("Invalid $skiptoken.") from None


HANDLERS = {
    "GET /groups": list_groups,
    "GET /groups/{group-id}": get_group,
    "GET /groups/{group-id}/transitiveMembers/microsoft.graph.user": transitive_users,
}
