"""Caller headers as App Service Authentication (Easy Auth) sets them for a Microsoft Entra ID token.

The platform strips any ``X-MS-CLIENT-PRINCIPAL*`` header a client sends and sets its own: the
principal's id, name and identity provider, and ``X-MS-CLIENT-PRINCIPAL``, base64 JSON with the
token's claims (its app roles as ``roles`` claims).
"""

from __future__ import annotations

import base64
import json

from shared.settings import CALLER_ROLE, IMPORT_ROLE

CALLER = CALLER_ROLE.default
IMPORTER = IMPORT_ROLE.default


def easy_auth(principal_id: str, *roles: str, provider: str = "aad") -> dict[str, str]:
    """The headers for a principal with these app roles (by default, only the caller role)."""
    granted = roles or (CALLER,)
    claims = [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": principal_id},
              *({"typ": "roles", "val": role} for role in granted)]
    principal = {"auth_typ": provider, "claims": claims, "name_typ": "name",
                 "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
    return {
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(principal).encode()).decode(),
        "X-MS-CLIENT-PRINCIPAL-ID": principal_id,
        "X-MS-CLIENT-PRINCIPAL-NAME": f"{principal_id}@example.com",
        "X-MS-CLIENT-PRINCIPAL-IDP": provider,
    }
