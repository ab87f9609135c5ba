"""An Azurite that accepts Microsoft Entra tokens, for code that signs with a user delegation key.

Azurite checks bearer tokens only with ``--oauth basic``, and only over HTTPS, so this one gets a
throwaway self-signed certificate for 127.0.0.1. "basic" reads the token's claims and does not
check its signature: ``iat``/``nbf``/``exp`` must be present and hold now, ``iss`` must start
with an Entra issuer (``https://sts.windows.net/``) and ``aud`` must name Storage. The delegation
keys it hands out are derived from the token's ``oid`` and ``tid``, and it verifies user
delegation SAS with them, as Storage does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken

from tests.support.azurite import ACCOUNT, Azurite, start_azurite

STORAGE_AUDIENCE = "https://storage.azure.com"
TENANT_ID = str(uuid.uuid4())
OBJECT_ID = str(uuid.uuid4())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class EntraLikeCredential:
    """A TokenCredential whose JWTs have the claims Azurite's basic OAuth checks.

    Signed with a random key nobody verifies: Azurite does not, and the app never reads a token.
    """

    def __init__(self, lifetime_seconds: int = 3600) -> None:
        self._secret = os.urandom(32)
        self._lifetime = lifetime_seconds

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        now = int(time.time())
        expires = now + self._lifetime
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(
            json.dumps(
                {
                    "aud": STORAGE_AUDIENCE,
                    "iss": f"https://sts.windows.net/{TENANT_ID}/",
                    "iat": now - 60,
                    "nbf": now - 60,
                    "exp": expires,
                    "oid": OBJECT_ID,
                    "tid": TENANT_ID,
                }
            ).encode()
        )
        signature = _b64url(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return AccessToken(f"{header}.{payload}.{signature}", expires)


@dataclass
class OAuthAzurite:
    emulator: Azurite
    certificate: Path

    @property
    def blob_port(self) -> int:
        return self.emulator.blob_port

    @property
    def blob_url(self) -> str:
        return f"https://127.0.0.1:{self.blob_port}/{ACCOUNT}"

    def tls(self) -> ssl.SSLContext:
        """Trusts this emulator's certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def stop(self) -> None:
        self.emulator.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A one-day certificate for 127.0.0.1 and its key, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make the test certificate for Azurite over HTTPS")
    certificate, key = directory / "azurite-cert.pem", directory / "azurite-key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    return certificate, key


def start_oauth_azurite(directory: Path) -> OAuthAzurite:
    """Azurite on HTTPS with basic OAuth (the tests use its blob service); returns once it accepts connections."""
    certificate, key = self_signed_certificate(directory)
    started = start_azurite(extra=["--oauth", "basic", "--cert", str(certificate), "--key", str(key)])
    azurite = OAuthAzurite(started, certificate)
    return azurite
