"""A local stand-in for Microsoft Graph's chat API, throttling and faults included.

``EmulatorServer(host="127.0.0.1", port=0, data_path=None, limits="documented",
latency_ms=0, faults=None, seed=None, *, users=None, me=None, token_lifetime_s=None,
tenant_id=..., max_body_bytes=4 MiB, fault_retry_after_s=None, shuffle_batch=True,
list_delay_s=(1, 4), invent_users=False, sign_in="application", clock_offset_s=0,
chat_filters=("chatType", "topic"), sparse_members=False, group_read=True)``

* ``data_path``: where the tenant persists (snapshot + journal, see ``store.py``); None keeps
  it in memory only.
* ``limits``: ``"documented"`` (Graph's Teams limits, ``throttle.py``), ``"off"``, or
  ``"xN"`` to make every bucket refill N times faster (``"x10"``, ``"x100"``).
* ``latency_ms``: added to every request, N or a (LO, HI) uniform range.
* ``faults``: spec strings (``"503=0.05"``, ``"504=0.2,method=POST,path=/chats,
  chat-type=group"``, ``"drop=0.1"``, ``"latency=0.1,ms=500"``, ``"429=0.05"``), ``FaultRule``
  objects, or a ``{"503": 0.05}`` mapping (``faults.py``). ``seed`` makes them repeatable.
* ``users``: a users JSON file or ``User`` list; by default the users the README and
  ``examples/`` name (``emulator/users.py``). Anyone else is ``404 Request_ResourceNotFound``,
  unless ``invent_users`` (load tests): then any GUID or UPN is a user, made up consistently
  (``users.py``). ``me``: the user of ``/me`` (default: the directory's first user).
* ``list_delay_s``: N or (LO, HI) seconds before a new chat shows in List chats and a new
  (or removed) membership in member listings (``model.ChatView.listed_members``); 0 lists
  at once. Graph's lists lag behind its writes; the default is a few seconds.
* ``sign_in``: ``"application"`` or ``"delegated"`` (then a new chat must include ``me``,
  and only ``me``'s chats can be listed). A JWT bearer token with ``scp`` and ``oid`` claims
  is delegated for that ``oid`` whatever this says.
* ``clock_offset_s``: seconds the emulated Graph's clock is off the host's (``createdDateTime``
  and the ``Date`` header); ``server.tenant.clock_offset_s`` changes it while it runs (a clock
  that jumps), so tests of clock skew need no sleeps.
* ``chat_filters``: the properties List chats accepts a ``$filter`` on; the docs list no filter
  expression, so ``()`` makes every ``$filter`` a 400, as a Graph may answer.
* ``sparse_members``: member answers (List members, Get member, ``$expand=members``) carry
  null ``tenantId``, ``email`` and ``displayName``, as Graph's known issue "some properties
  for chat members might be missing" says they may
  (``concepts/includes/known-issues/teamwork-communications.md``).
* ``group_read``: False answers every group read with 403 ``Authorization_RequestDenied``
  (an app without ``GroupMember.Read.All``). Groups themselves: ``server.tenant.groups``
  (``groups.py``): ``add(name, [user or group ids], mail=...)``, ``add_members``,
  ``remove_members``; nested groups and guests are followed as Graph documents.
* ``token_lifetime_s``: a bearer token is rejected with 401 ``InvalidAuthenticationToken``
  that many seconds after the emulator first saw it (token expiry mid-run).
* ``fault_retry_after_s``: the ``Retry-After`` of injected 503/429 (default 1 s / scale).

Endpoints (base ``<url>`` = ``http://HOST:PORT/v1.0``): ``POST/GET /chats``,
``GET/PATCH/DELETE /chats/{id}``, ``GET/POST /chats/{id}/members``,
``GET/DELETE /chats/{id}/members/{membership-id}``, ``GET /users/{id|upn}``, ``GET /me``,
``GET /users/{id}/chats``, ``GET /me/chats`` (and ``.../chats/{id}[/members]`` under both),
``GET /organization`` (this tenant's id), ``GET /groups/{id}``,
``GET /groups?$filter=mail eq '...'``, ``GET /groups/{id}/transitiveMembers/microsoft.graph.user``,
``POST /$batch``. Any non-empty
``Authorization: Bearer <token>`` is accepted.

``embedded(data_path=".provision-emulator.json", **kw)`` runs one for a ``with`` block and
yields its URL (for ``plan``/``apply --emulator``).

Where the emulator decides what the docs leave open (clients must not depend on these):

* ``GET /chats`` lists the chats of ``/me``; the default page size of List chats is 20 (the
  doc fixes only the maximum, 50); ``$orderby`` and other query options are ignored.
* Adding a user who is already a member is ``400 BadRequest`` (the docs give no answer for
  it, and no 409: a client must decide from the member list); a user missing from the
  directory in a ``POST /chats`` body is ``404 Request_ResourceNotFound``; re-creating a
  soft-deleted oneOnOne chat revives it with the same id.
* The "5 requests per second per user" limit is applied to List chats only (Get chat has no
  user in app-only calls); ``x-ms-throttle-*`` headers are not sent.
* No chat messages, meeting chats, installed apps or tabs; ``/me`` also answers app-only
  calls (Graph refuses them). Refusals whose status Graph does not document (a delegated
  creation without the signed-in user: 400; another user's chats, delegated: 403).
* A chat's members show at once in a listing when they came with its creation; the lag
  applies to the chat in List chats and to members added or removed later.
"""

from __future__ import annotations

from provisioner.emulator.errors import EmulatorError
from provisioner.emulator.faults import FAULT_KINDS, FaultRule, parse_fault
from provisioner.emulator.model import ChatView, MemberView
from provisioner.emulator.server import DEFAULT_TENANT_ID, EmulatorServer, embedded
from provisioner.emulator.tenant import Counters, Tenant
from provisioner.emulator.throttle import parse_limits
from provisioner.emulator.users import Directory, User, made_up_user

__all__ = [
    "DEFAULT_TENANT_ID",
    "FAULT_KINDS",
    "ChatView",
    "Counters",
    "Directory",
    "EmulatorError",
    "EmulatorServer",
    "FaultRule",
    "MemberView",
    "Tenant",
    "User",
    "embedded",
    "made_up_user",
    "parse_fault",
    "parse_limits",
]
