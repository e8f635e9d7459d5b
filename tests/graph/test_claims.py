from __future__ import annotations

from lib.tokens import jwt

from provisioner.signin.claims import signed_in_user, token_claims


def test_delegated_tokens_name_the_signed_in_user() -> None:
    oid = "8B081EF6-4792-4DEF-B2C9-C363A1BF41D5"
    assert signed_in_user(jwt({"scp": "Chat.Create", "oid": oid, "tid": "t"})) == oid.lower()


def test_app_only_and_opaque_tokens_name_nobody() -> None:
    assert signed_in_user(jwt({"roles": ["Chat.Create"], "oid": "x"})) is None
    assert signed_in_user("emulator-token-0") is None
    assert token_claims("a.!!!.c") == {} and token_claims(jwt([1, 2])) == {}
    assert token_claims("a." + "b" * 70000 + ".c") == {}  # bounded
