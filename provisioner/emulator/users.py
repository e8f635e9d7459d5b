"""The emulated tenant's users directory.

Two modes:

* **A fixed directory** (the default, ``default_users`` below, or ``users=PATH``): exactly those
  users exist; anything else is ``404 Request_ResourceNotFound`` like ``GET /users/{id |
  userPrincipalName}`` on a real tenant (``api-reference/v1.0/api/user-get.md``: "If a user
  with the ID doesn't exist, this method returns a 404 Not Found error code").
* **Invented** (``invent=True``, ``--invent-users``, for load tests that name thousands of
  users): any GUID or UPN exists the first time it is seen, consistently: a UPN
  gets the deterministic GUID ``uuid5(namespace, upn.lower())``, a GUID gets a made-up UPN, and
  every user seen is remembered (and persisted by the tenant) so the GUID of a UPN maps back
  to that UPN later, across restarts too.

The users file is JSON: ``{"users": [{"id", "userPrincipalName", "displayName"?, "mail"?,
"userType"?: "Member" | "Guest"}]}`` (or just the list).
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from provisioner.emulator.errors import EmulatorError

GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
UPN_RE = re.compile(r"^[^@\s/()]+@[^@\s/'()]+\.[^@\s/'()]+$")  # Entra allows ' in the local part

MADE_UP_DOMAIN = "emulator.invalid"  # RFC 2606: can never be a real tenant's domain
USER_NAMESPACE = uuid.UUID("5b0d7a43-8c2e-4f7e-9a55-2f6e0b8d1c11")
USER_TYPES = ("Member", "Guest")


@dataclass(frozen=True)
class User:
    id: str
    user_principal_name: str
    display_name: str
    mail: str | None = None
    user_type: str = "Member"

    def to_graph(self) -> dict[str, object]:
        """The default property set of ``GET /users/{id}`` (``user-get.md``)."""
        given, _, surname = self.display_name.partition(" ")
        return {
            "businessPhones": [],
            "displayName": self.display_name,
            "givenName": given or None,
            "jobTitle": None,
            "mail": self.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": surname or None,
            "userPrincipalName": self.user_principal_name,
            "id": self.id,
        }

    def to_record(self) -> dict[str, object]:
        return {
            "id": self.id,
            "userPrincipalName": self.user_principal_name,
            "displayName": self.display_name,
            "mail": self.mail,
            "userType": self.user_type,
        }

    @classmethod
    def from_record(cls, rec: object, where: str) -> User:
        if not isinstance(rec, dict):
            raise EmulatorError(f"{where}: a user must be a JSON object")
        uid, upn = rec.get("id"), rec.get("userPrincipalName")
        if not isinstance(uid, str) or not GUID_RE.match(uid):
            raise EmulatorError(f"{where}: 'id' must be a GUID, got {uid!r}")
        if not isinstance(upn, str) or not UPN_RE.match(upn):
            raise EmulatorError(f"{where}: 'userPrincipalName' must be a UPN, got {upn!r}")
        name = rec.get("displayName") or _display_name(upn)
        mail = rec.get("mail", upn)
        user_type = rec.get("userType", "Member")
        if not isinstance(name, str) or not (mail is None or isinstance(mail, str)):
            raise EmulatorError(f"{where}: 'displayName' and 'mail' must be strings")
        if user_type not in USER_TYPES:
            raise EmulatorError(f"{where}: 'userType' must be Member or Guest, got {user_type!r}")
        return cls(uid.lower(), upn, name, mail, user_type)


def _display_name(upn: str) -> str:
    local = upn.split("@", 1)[0]
    words = [w for w in re.split(r"[._-]+", local) if w]
    return " ".join(w.capitalize() for w in words) or local


def made_up_user(ref: str) -> User:
    """The user a GUID or UPN stands for in made-up mode (pure, deterministic)."""
    if GUID_RE.match(ref):
        uid = ref.lower()
        upn = f"user-{uid[:8]}@{MADE_UP_DOMAIN}"
        return User(uid, upn, f"User {uid[:8]}", upn)
    uid = str(uuid.uuid5(USER_NAMESPACE, ref.lower()))
    return User(uid, ref, _display_name(ref), ref)


class Directory:
    """Resolves ``{id | userPrincipalName}`` to a ``User``; thread-safe."""

    def __init__(
        self,
        users: Iterable[User] | None = None,
        *,
        invent: bool = False,
        on_new_user: Callable[[User], None] | None = None,
    ) -> None:
        self.made_up = invent
        self._by_id: dict[str, User] = {}
        self._by_upn: dict[str, User] = {}
        self._lock = threading.Lock()
        self.on_new_user = on_new_user
        for user in users or ():
            self._add(user)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Directory:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise EmulatorError(f"cannot read users file {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise EmulatorError(f"users file {path} is not valid JSON: {exc}") from exc
        items = data.get("users") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise EmulatorError(
                f"users file {path}: expected a list of users or {{'users': [...]}}"
            )
        users = [User.from_record(rec, f"{path}: users[{i}]") for i, rec in enumerate(items)]
        return cls(users)

    def _add(self, user: User) -> None:
        self._by_id[user.id.lower()] = user
        self._by_upn[user.user_principal_name.lower()] = user

    def remove(self, ref: str) -> None:
        """Delete a user (by id or UPN): what happens to a leaver between a plan and an
        apply; Graph then answers 404 for them."""
        key = ref.strip().lower()
        with self._lock:
            user = self._by_id.get(key) or self._by_upn.get(key)
            if user is not None:
                del self._by_id[user.id.lower()]
                del self._by_upn[user.user_principal_name.lower()]

    def remember(self, user: User) -> None:
        """Load a user seen in an earlier run (made-up mode), without reporting it as new."""
        with self._lock:
            self._add(user)

    def resolve(self, ref: str) -> User | None:
        key = ref.strip().lower()
        with self._lock:
            found = self._by_id.get(key) or self._by_upn.get(key)
            if found or not self.made_up:
                return found
            if not (GUID_RE.match(key) or UPN_RE.match(key)):
                return None
            user = made_up_user(ref.strip())
            self._add(user)
        if self.on_new_user:
            self.on_new_user(user)
        return user

    def users(self) -> list[User]:
        with self._lock:
            return list(self._by_id.values())

    def first(self) -> User | None:
        with self._lock:
            return next(iter(self._by_id.values()), None)


# -- the default directory ------------------------------------------------------------------
# The emulated tenant's directory when no ``--users`` file is given: the users the README and
# ``examples/`` name, so the shipped examples run against the emulator as they are, and any
# other user is ``404 Request_ResourceNotFound`` as on a real tenant (``user-get.md``).
#
# UPN users get the object id an invented user would get (``made_up_user``), object ids a
# made-up UPN. ``82af01c5-...`` is in-tenant in Graph's "Create chat" example 1 and federated
# (another ``tenantId``) in example 5; a member given with another tenant's ``tenantId`` is never
# looked up here, so listing it serves example 1 without changing example 5. The two guests
# are those of example 4 (its id corrected, see ``examples/graph-docs/4-group-with-guest.yaml``)
# and of ``examples/chats.yaml``.

MEMBERS = (
    "megan.bowen@contoso.com",
    "alex.wilber@contoso.com",
    "nestor.wilke@contoso.com",
    "diego.siciliani@contoso.com",
    "jacob@contoso.com",
    "alex@contoso.com",
    "adele@contoso.com",
    "8b081ef6-4792-4def-b2c9-c363a1bf41d5",
    "82af01c5-f7cc-4a2e-a728-3a5df21afd9d",
    "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca",
    "82fe7758-5bb3-4f0d-a43f-e555fd399c6f",
    "3626a173-f2bc-4883-bcf7-01514c3bfb82",
)
GUESTS = (
    "8ba98af6-7fc2-4eb2-c7f2-aef9f21fd98a",
    "lee_fabrikam.com#EXT#@contoso.onmicrosoft.com",
)


def default_users() -> list[User]:
    """A fresh list of the default directory's users."""
    users = [made_up_user(ref) for ref in MEMBERS]
    users += [replace(made_up_user(ref), user_type="Guest") for ref in GUESTS]
    return users
