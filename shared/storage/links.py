"""Read-only download links to artifact blobs: one SAS per blob, forcing a download.

With an account key (Azurite, or a connection string to one's own account) a link is a service
SAS. Without one (a managed identity in Azure, where shared keys are off) it is a user delegation
SAS; the delegation key is fetched once and reused until a new link would outlive it, so links
cost no Storage call. Either way a link grants ``r`` only, on one blob, and overrides the
response's Content-Disposition (``rscd``) with ``attachment`` and the file's name.

Neither a key nor a link is ever logged: a link is a bearer credential until it expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from azure.storage.blob import BlobSasPermissions, BlobServiceClient, UserDelegationKey, generate_blob_sas

from shared.clock import utc_now
from shared.errors import ConfigError
from shared.limits import MAX_LINK_MINUTES, USER_DELEGATION_KEY_MAX_VALIDITY
from shared.storage.naming import content_disposition

log = logging.getLogger(__name__)

MAX_LIFETIME = timedelta(minutes=MAX_LINK_MINUTES)
# Storage refuses a user delegation key that expires later than this from its own clock.
KEY_MAX_VALIDITY = USER_DELEGATION_KEY_MAX_VALIDITY
# Our clock may be ahead of or behind Storage's: a key starts this far back, and ends this far
# short of that limit.
CLOCK_SKEW = timedelta(minutes=5)
# A key signs links for at most this long after it was fetched. After the account's delegation
# keys are revoked (an incident), links signed with the old key fail at once, and new links are
# signed with a new key within this time, on every instance, without a restart.
KEY_REUSE = timedelta(hours=1)
# A key lives this much longer than the last link it may sign, so no link outlives its key.
REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class DownloadLink:
    url: str = field(repr=False)  # carries the signature
    expires_at: datetime


class LinkSigner:
    """Signs read-only links to blobs in one container; safe to share between threads."""

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        lifetime: timedelta,
        account_key: str | None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise ValueError(f"a link lifetime must be more than 0 and at most {MAX_LIFETIME}")
        if not service.account_name:
            raise ValueError("the blob service client names no storage account to sign for")
        self._service = service
        self._account = service.account_name
        self._container = container
        self.lifetime = lifetime
        self._account_key = account_key
        self._clock = clock
        # Storage checks the protocol a link is used over: https-only wherever the account is.
        self._protocol = "https" if urlsplit(service.url).scheme == "https" else None
        # Long enough for every link signed while the key is in use to live its whole lifetime;
        # near 7 days that cannot be, and links signed late in the key's use end with it.
        self._key_validity = min(lifetime + KEY_REUSE + REFRESH_MARGIN, KEY_MAX_VALIDITY - CLOCK_SKEW)
        self._key: tuple[UserDelegationKey, datetime, datetime] | None = None  # key, its expiry, fetched at
        self._key_lock = threading.Lock()

    @property
    def user_delegation(self) -> bool:
        return self._account_key is None

    def __repr__(self) -> str:
        kind = "user delegation" if self.user_delegation else "account key"
        return f"LinkSigner(container={self._container!r}, lifetime={self.lifetime}, signed_with={kind!r})"

    def sign(self, blob_name: str, filename: str) -> DownloadLink:
        """A link that downloads ``blob_name`` as ``filename``; it ends within the lifetime."""
        now = self._now()
        expiry = now + self.lifetime
        credential: dict[str, Any]
        if self._account_key is not None:
            credential = {"account_key": self._account_key}
        else:
            key, key_expiry = self._delegation_key(now)
            expiry = min(expiry, key_expiry)  # a link never outlives the key that signed it
            credential = {"user_delegation_key": key}
        sas = generate_blob_sas(
            self._account,
            self._container,
            blob_name,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
            protocol=self._protocol,
            content_disposition=content_disposition(filename),
            **credential,
        )
        blob = self._service.get_blob_client(self._container, blob_name)
        return DownloadLink(f"{blob.url}?{sas}", expiry)

    def _now(self) -> datetime:
        # A SAS carries whole seconds: keep the reported expiry equal to the signed one.
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _delegation_key(self, now: datetime) -> tuple[UserDelegationKey, datetime]:
        cached = self._key
        if cached is None or now - cached[2] >= KEY_REUSE:
            with self._key_lock:  # one fetch however many threads find the key stale at once
                cached = self._key
                if cached is None or now - cached[2] >= KEY_REUSE:
                    cached = self._fetch_key(now)
                    self._key = cached
        return cached[0], cached[1]

    def _fetch_key(self, now: datetime) -> tuple[UserDelegationKey, datetime, datetime]:
        expiry = now + self._key_validity
        key = self._service.get_user_delegation_key(now - CLOCK_SKEW, expiry)
        log.info("fetched a user delegation key for download links, valid until %s", expiry.isoformat())
        return key, expiry, now


def link_signer(
    service: BlobServiceClient, container: str, lifetime: timedelta, *, clock: Callable[[], datetime] = utc_now
) -> LinkSigner:
    """A signer using what ``service`` authenticates with: its account key, else its identity."""
    credential = service.credential
    account_key = getattr(credential, "account_key", None)  # a shared key (connection string)
    if isinstance(account_key, str) and account_key:
        return LinkSigner(service, container, lifetime=lifetime, account_key=account_key, clock=clock)
    if hasattr(credential, "get_token"):  # an identity: it may ask for a user delegation key
        return LinkSigner(service, container, lifetime=lifetime, account_key=None, clock=clock)
    raise ConfigError(
        ["the artifacts storage credential can sign no download links: give it an account key or an identity"]
    )
