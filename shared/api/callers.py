"""Who is calling, what they may do, and which runs they see. Fails closed.

With App Service Authentication (Easy Auth) on, the platform authenticates every request before
the app sees it, strips any ``X-MS-CLIENT-PRINCIPAL*`` header a client sent, and sets its own:
the principal's id and identity provider, and ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON with the
token's claims, its app roles among them). The app knows Easy Auth is on because the platform
sets ``WEBSITE_AUTH_ENABLED=True`` in the app's environment; a request cannot change that.

Under Easy Auth:

- a request without a usable principal (missing, empty, non-printable or over-long id or
  provider, unreadable claims) is answered 401 before anything is read or called, whatever the
  run: it cannot tell a run that exists from one that does not;
- a principal without the app role ``ARTIFACTS_CALLER_ROLE`` is answered 403, likewise;
- each run belongs to the principal that started (or first imported) it; a run a webhook
  captured has no owner, and only principals with ``ARTIFACTS_IMPORT_ROLE`` see it, import it,
  or import any response the app did not start for them.

Without Easy Auth (function keys only, or ``func start``) the headers could be written by anyone,
so they are ignored: every key holder is the same caller (owner ``None``), with every right, as
the function key is the only credential.

Another owner's run is answered exactly as a run that does not exist: its id is not confirmed.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

import azure.functions as func

from shared.errors import Refusal
from shared.json_values import parse_json
from shared.settings import Settings
from shared.storage.run_records import WEBHOOK_CAPTURE, RunRecord

PRINCIPAL_ID_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
PRINCIPAL_IDP_HEADER = "X-MS-CLIENT-PRINCIPAL-IDP"
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"  # base64 JSON: {"auth_typ", "claims": [{"typ", "val"}], "role_typ", ...}
_MAX_PART_CHARS = 128
_MAX_PRINCIPAL_CHARS = 32 * 1024  # a token's claims, base64: far more than any real one
log = logging.getLogger(__name__)
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


@dataclass(frozen=True)
class Caller:
    owner: str | None  # "{identity provider}:{principal id}"; None: a function key holder (no Easy Auth)
    may_import_any: bool = False  # import what the app did not start for them; see ownerless runs

    def sees(self, record: RunRecord) -> bool:
        """The caller's own run, or (with the import right) a run nobody owns."""
        return record.owner == self.owner or (record.owner is None and self.may_import_any)

    def may_adopt(self, record: RunRecord) -> bool:
        """A run a webhook capture recorded for nobody becomes the first identified caller's that
        starts it (the POST whose create answer was lost) or, with the import right, imports it.
        A record anyone else made keeps its owner."""
        return self.owner is not None and record.owner is None and record.started_via == WEBHOOK_CAPTURE

    @property
    def scope(self) -> str:
        """What keeps one caller's idempotency keys apart from another's."""
        return self.owner or ""


def caller_of(req: func.HttpRequest, settings: Settings) -> Caller:
    """The caller, or a Refusal: 401 without a usable principal, 403 without the caller role."""
    if not settings.easy_auth:
        if settings.require_easy_auth:
            log.error("refused a caller: ARTIFACTS_REQUIRE_EASY_AUTH is true but the platform reports Easy Auth off")
            raise Refusal(503, "easy_auth_off", "this app requires App Service Authentication, which is off: its "
                          "operator turns it back on (ARTIFACTS_REQUIRE_EASY_AUTH)")
        return Caller(None, may_import_any=True)
    principal, provider = _header(req, PRINCIPAL_ID_HEADER), _header(req, PRINCIPAL_IDP_HEADER)
    roles = _roles(req)
    if principal is None or provider is None or roles is None:
        log.warning("refused a caller: no usable principal (%s)", "id or provider" if roles is not None else "claims")
        raise Refusal(401, "unauthenticated", "this API needs a Microsoft Entra ID token (Easy Auth)")
    if settings.caller_role not in roles:
        log.warning("refused %s:%s: the token lacks the app role %r", provider, principal, settings.caller_role)
        raise Refusal(403, "forbidden",
                      f"the token lacks the app role {settings.caller_role!r}: ask the app's owner to assign it")
    return Caller(f"{provider}:{principal}", may_import_any=settings.import_role in roles)


def _header(req: func.HttpRequest, name: str) -> str | None:
    value = str(req.headers.get(name) or "").strip()
    if not value or len(value) > _MAX_PART_CHARS or not value.isprintable():
        return None
    return value


def _roles(req: func.HttpRequest) -> frozenset[str] | None:
    """The app roles in the principal's claims (none is an empty set); None if the claims are unreadable."""
    encoded = str(req.headers.get(PRINCIPAL_HEADER) or "").strip()
    if not encoded or len(encoded) > _MAX_PRINCIPAL_CHARS:
        return None
    try:
        principal = parse_json(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):  # not base64, not UTF-8, not JSON, too deep
        return None
    claims = principal.get("claims") if isinstance(principal, dict) else None
    if not isinstance(claims, list):
        return None
    role_types = {*_ROLE_CLAIMS, str(principal.get("role_typ") or "")}
    return frozenset(
        claim["val"] for claim in claims
        if isinstance(claim, dict) and claim.get("typ") in role_types and isinstance(claim.get("val"), str)
    )
