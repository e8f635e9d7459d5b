"""Files that hold an app's client credential, read and checked before any sign-in: a
certificate (PEM or PFX, ``AZURE_CLIENT_CERTIFICATE_PATH``) and a federated token
(``AZURE_FEDERATED_TOKEN_FILE``). A wrong path, format or password is reported at once,
naming the variable, not on the first request; no secret reaches a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner.errors import AuthError
from provisioner.signin.msal_flows import first_line

CERTIFICATE = "AZURE_CLIENT_CERTIFICATE_PATH"
FEDERATED_TOKEN = "AZURE_FEDERATED_TOKEN_FILE"

_PEM_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----.+?-----END (?:[A-Z]+ )?PRIVATE KEY-----", re.S
)
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def certificate_credential(path: str, password: str | None) -> dict[str, Any]:
    """MSAL ``client_credential`` for a PEM (key + certificate) or PKCS#12 (PFX) file.

    The file is parsed here, with ``cryptography`` (which MSAL itself depends on), so that a
    wrong path, format or password is reported now, naming the variable, not on first use.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuthError(
            f"{CERTIFICATE} {path!r} cannot be read: {exc.strerror or exc}",
            hint=f"set {CERTIFICATE} to a PEM or PFX file with the certificate and its private key",
        ) from None
    pw = password.encode() if password else None
    if b"-----BEGIN" in data:
        credential = _pem_credential(data, path, password, pw)
    else:
        credential = _pfx_credential(data, path, password, pw)
    if pw is not None:
        credential["passphrase"] = password
    return credential


def _pem_credential(
    data: bytes, path: str, password: str | None, pw: bytes | None
) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key_block = _PEM_KEY.search(data)
    cert_block = _PEM_CERTIFICATE.search(data)
    if key_block is None or cert_block is None:
        missing = "private key" if key_block is None else "certificate"
        raise AuthError(
            f"{CERTIFICATE} {path!r} is a PEM file without a {missing}",
            hint="the PEM file must contain both the private key and the certificate",
        )
    try:
        serialization.load_pem_private_key(key_block.group(0), pw)
        x509.load_pem_x509_certificate(cert_block.group(0))
    except (TypeError, ValueError) as exc:
        raise _certificate_error(path, password, exc) from None
    return {
        "private_key": key_block.group(0).decode(),
        "public_certificate": cert_block.group(0).decode(),  # MSAL derives the thumbprint
    }


def _pfx_credential(
    data: bytes, path: str, password: str | None, pw: bytes | None
) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, pw)
    except (TypeError, ValueError) as exc:
        raise _certificate_error(path, password, exc) from None
    if key is None or cert is None:
        raise AuthError(
            f"{CERTIFICATE} {path!r} is a PFX file without a private key and certificate",
            hint="export the certificate with its private key",
        )
    return {"private_key_pfx_path": path}


def _certificate_error(path: str, password: str | None, exc: Exception) -> AuthError:
    text = str(exc).lower()
    if "password" in text or "decrypt" in text or "encrypted" in text:
        if password:
            return AuthError(
                f"AZURE_CLIENT_CERTIFICATE_PASSWORD does not decrypt {CERTIFICATE} {path!r}",
                hint="check AZURE_CLIENT_CERTIFICATE_PASSWORD",
            )
        return AuthError(
            f"{CERTIFICATE} {path!r} is encrypted and AZURE_CLIENT_CERTIFICATE_PASSWORD is not set",
            hint="set AZURE_CLIENT_CERTIFICATE_PASSWORD",
        )
    return AuthError(
        f"{CERTIFICATE} {path!r} is not a readable PEM or PFX certificate: {first_line(str(exc))}",
        hint=f"set {CERTIFICATE} to a PEM or PFX file with the certificate and its private key",
    )


def assertion_reader(path: str) -> Callable[[], str]:
    """A callable MSAL calls for every token request: the federated token file is re-read
    each time, because the platform (GitHub Actions OIDC, AKS workload identity) rotates it."""

    def read() -> str:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthError(
                f"{FEDERATED_TOKEN} {path!r} cannot be read: {exc.strerror or exc}",
                hint=f"set {FEDERATED_TOKEN} to the file the platform writes the OIDC token to",
            ) from None
        if not text:
            hint = "is the token mounted yet?"
            raise AuthError(f"{FEDERATED_TOKEN} {path!r} is empty", hint=hint)
        return text

    read()  # fail now, not at the first request
    return read
