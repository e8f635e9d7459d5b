"""The emulated tenant's directory when no ``--users`` file is given: the users the README and
``examples/`` name, so the shipped examples run against the emulator as they are, and any
other user is ``404 Request_ResourceNotFound`` as on a real tenant (``user-get.md``).

UPN users get the object id an invented user would get (``made_up_user``), object ids a
made-up UPN. ``82af01c5-...`` is in-tenant in Graph's "Create chat" example 1 and federated
(another ``tenantId``) in example 5; a member given with another tenant's ``tenantId`` is never
looked up here, so listing it serves example 1 without changing example 5. The two guests
are those of example 4 (its id corrected, see ``examples/graph-docs/4-group-with-guest.yaml``)
and of ``examples/chats.yaml``.
"""

from __future__ import annotations

from dataclasses import replace

from provisioner.emulator.users import User, made_up_user

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
