"""Who is calling: the owner a run is recorded with, and the only caller who may see it.

With App Service Authentication (Easy Auth) on, the platform authenticates every request before
the app sees it, strips any ``X-MS-CLIENT-PRINCIPAL-*`` header a client sent, and sets its own.
The app knows Easy Auth is on because the platform sets ``WEBSITE_AUTH_ENABLED=True`` in the
app's environment; a request cannot change that. Only then are the headers trusted. Without
Easy Auth (function keys only, or ``func start``), the headers could be written by anyone, so
they are ignored and every key holder is the same caller (owner ``None``).

Another owner's run is answered exactly as a run that does not exist: its id is not confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass

import azure.functions as func

from shared.settings import Settings
from shared.storage.run_records import WEBHOOK_CAPTURE, RunRecord

PRINCIPAL_ID_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
PRINCIPAL_IDP_HEADER = "X-MS-CLIENT-PRINCIPAL-IDP"
_MAX_PART_CHARS = 128


@dataclass(frozen=True)
class Caller:
    owner: str | None  # "{identity provider}:{principal id}"; None: a function key holder

    def owns(self, record: RunRecord) -> bool:
        return record.owner == self.owner

    def may_adopt(self, record: RunRecord) -> bool:
        """A run a webhook capture recorded for nobody becomes the first identified caller's that
        starts or imports it: the POST whose create answer was lost, or its import (the repair).
        A record anyone else made keeps its owner."""
        return self.owner is not None and record.owner is None and record.started_via == WEBHOOK_CAPTURE

    @property
    def scope(self) -> str:
        """What keeps one caller's idempotency keys apart from another's."""
        return self.owner or ""


def caller_of(req: func.HttpRequest, settings: Settings) -> Caller:
    if not settings.easy_auth:
        return Caller(None)
    principal = _header(req, PRINCIPAL_ID_HEADER)
    if principal is None:
        return Caller(None)  # a route Easy Auth lets through unauthenticated
    return Caller(f"{_header(req, PRINCIPAL_IDP_HEADER) or 'unknown'}:{principal}")


def _header(req: func.HttpRequest, name: str) -> str | None:
    value = str(req.headers.get(name) or "").strip()
    if not value or len(value) > _MAX_PART_CHARS or not value.isprintable():
        return None
    return value
