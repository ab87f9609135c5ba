"""``Idempotency-Key``: a POST retried with the same key returns the same run and starts no other.

A key is claimed by creating ``_idempotency/{sha256}.json`` in the status container only if it
does not exist (one conditional write, so of two racing requests exactly one wins). The winner
starts the run and writes its response id into the claim; a loser waits briefly for that id.
The claim names its owner (the caller), so whoever learns its run records it for that caller.

A claim is released only when the create failed in a way that proves no run started (an answer
refusing it, or no connection at all). When the outcome is unknown (the request may have reached
Azure OpenAI and its answer was lost, or the request that held the claim died while creating)
the claim is kept: a retry is told so, and never starts a second paid run. With webhooks on, the
create carries the claim's tag in its ``metadata`` (``CLAIM_TAG_KEY``) and a marker under
``_idempotency/pending/`` says a tagged run may still announce itself; the webhook of that run
then gives the claim its response id (``resolve``). Every claim lapses after
``KEY_LIFETIME_SECONDS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from shared.errors import KeyInFlight, KeyOutcomeUnknown, KeyReused
from shared.limits import CLAIM_ABANDONED_SECONDS
from shared.storage.containers import JSON_CONTENT, ContainerGuard

log = logging.getLogger(__name__)

KEY_LIFETIME_SECONDS = 24 * 3600
MAX_KEY_CHARS = 255
CLAIM_TAG_KEY = "artifacts_claim"  # the create's metadata key carrying the claim's tag (reserved)
_LOSER_WAIT_SECONDS = 20.0
_LOSER_POLL_SECONDS = 0.2
_RESOLVE_TRIES = 5  # conditional writes lost to the claim's own request before giving up
_PENDING_PREFIX = "_idempotency/pending/"
_TAG = re.compile(r"(?P<name>[0-9a-f]{64})\.(?P<nonce>[0-9a-f]{32})")


@dataclass(frozen=True)
class Claim:
    """What a request holds for its key: either the right to start the run, or the run already started."""

    blob: BlobClient
    etag: str
    response_id: str | None  # set when an earlier request started the run
    owner: str | None = None  # the caller the key belongs to
    tag: str = ""  # "{claim name}.{nonce}": what a create may carry so its webhook finds this claim
    tagged: bool = False  # the create carries the tag (webhooks on): a pending marker exists


@dataclass(frozen=True)
class ClaimedRun:
    """A run matched to its claim by the tag its create carried: it belongs to ``owner``."""

    owner: str | None


def check_key(value: str) -> str | None:
    """A problem with an ``Idempotency-Key`` header's value, or None if it is usable."""
    if not value or len(value) > MAX_KEY_CHARS or not value.isprintable() or not value.isascii():
        return f"must be 1-{MAX_KEY_CHARS} printable ASCII characters"
    return None


class IdempotencyClaims:
    def __init__(self, container: ContainerGuard) -> None:
        self._container = container

    def claim(self, key: str, scope: str, request_digest: str, *, owner: str | None, tagged: bool = False) -> Claim:
        """Claim ``key`` (within ``scope``, the caller) for a request whose body hashes to
        ``request_digest``, on behalf of ``owner``. ``tagged``: its create will carry the claim's
        tag, so a marker tells the webhook receiver a tagged run may announce itself."""
        name = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        blob = self._container.client.get_blob_client(f"_idempotency/{name}.json")
        deadline = time.monotonic() + _LOSER_WAIT_SECONDS
        while True:
            mine = _ClaimDocument.new(request_digest, owner)
            self._container.ensure()
            try:
                result = blob.upload_blob(mine.to_json(), overwrite=False, content_settings=JSON_CONTENT)
                return self._won(blob, str(result["etag"]), mine, name, tagged)
            except ResourceExistsError:
                pass
            try:
                downloader = blob.download_blob()
            except ResourceNotFoundError:
                continue  # released between our two calls: try to claim it again
            etag = str(downloader.properties.etag)
            held = _ClaimDocument.from_json(downloader.readall())
            if held.age() > KEY_LIFETIME_SECONDS:  # lapsed: the key is free again
                taken = self._take_over(blob, etag, mine)
                if taken is not None:
                    return self._won(blob, taken, mine, name, tagged)
                continue
            if held.request != request_digest:
                raise KeyReused(key)
            if held.response_id is not None:
                return Claim(blob, etag, held.response_id, held.owner)
            # Never taken over: a holder that died while creating may have started the run.
            if held.outcome == "unknown" or held.age() > CLAIM_ABANDONED_SECONDS:
                raise KeyOutcomeUnknown(key)
            if time.monotonic() > deadline:
                raise KeyInFlight(key)
            threading.Event().wait(_LOSER_POLL_SECONDS)  # the winner is creating the run right now

    def started(self, claim: Claim, request_digest: str, response_id: str) -> None:
        """Record the run the claim's request started, for the requests that retry it."""
        document = _ClaimDocument(request_digest, response_id, time.time(), claim.owner, _nonce(claim), "started")
        try:
            claim.blob.upload_blob(document.to_json(), overwrite=True, content_settings=JSON_CONTENT,
                                   etag=claim.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            # The run's webhook found the claim first (``resolve``): fine if it named this run.
            held = _ClaimDocument.from_json(claim.blob.download_blob().readall())
            if held.response_id != response_id:
                raise
        self._clear_pending(claim)

    def outcome_unknown(self, claim: Claim) -> None:
        """The create may have started a run whose id nobody knows: keep the claim, say so to retries."""
        document = _ClaimDocument.from_json(claim.blob.download_blob().readall())
        document.outcome = "unknown"
        with contextlib.suppress(ResourceModifiedError):  # resolved meanwhile: retries get the run
            claim.blob.upload_blob(document.to_json(), overwrite=True, content_settings=JSON_CONTENT,
                                   etag=claim.etag, match_condition=MatchConditions.IfNotModified)

    def release(self, claim: Claim) -> None:
        """The run was not started (the request failed): a retry may try again at once."""
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            claim.blob.delete_blob(etag=claim.etag, match_condition=MatchConditions.IfNotModified)
        self._clear_pending(claim)

    def resolve(self, tag: object, response_id: str) -> ClaimedRun | None:
        """The claim whose tag a response's create carried, given that response's id; None when
        the tag names no live claim, or a claim whose run is another one."""
        match = _TAG.fullmatch(tag) if isinstance(tag, str) else None
        if match is None:
            return None
        blob = self._container.client.get_blob_client(f"_idempotency/{match['name']}.json")
        for _ in range(_RESOLVE_TRIES):
            try:
                downloader = blob.download_blob()
            except ResourceNotFoundError:
                return None
            held = _ClaimDocument.from_json(downloader.readall())
            if held.nonce != match["nonce"] or held.age() > KEY_LIFETIME_SECONDS:
                return None  # a claim made since for the same key, or lapsed
            if held.response_id not in (None, response_id):
                log.warning("run %s carries the tag of a claim already given run %s", response_id, held.response_id)
                return None
            held.response_id, held.outcome = response_id, "started"
            try:
                blob.upload_blob(held.to_json(), overwrite=True, content_settings=JSON_CONTENT,
                                 etag=str(downloader.properties.etag), match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # the claim's own request wrote first: read it again
            self._clear_pending_name(match["name"])
            return ClaimedRun(held.owner)
        log.warning("run %s: its claim kept changing; not matched this time", response_id)
        return None

    def any_pending(self) -> bool:
        """Whether a tagged run may still announce itself (its claim has no response id yet)."""
        try:
            for marker in self._container.client.list_blobs(name_starts_with=_PENDING_PREFIX):
                created = marker.creation_time.timestamp() if marker.creation_time else 0.0
                if time.time() - created <= KEY_LIFETIME_SECONDS:
                    return True
                with contextlib.suppress(ResourceNotFoundError):  # a claim long lapsed
                    self._container.client.delete_blob(marker.name)
        except ResourceNotFoundError:
            return False  # no status container yet
        return False

    def _won(self, blob: BlobClient, etag: str, document: _ClaimDocument, name: str, tagged: bool) -> Claim:
        tag = f"{name}.{document.nonce}"
        if tagged:
            try:
                self._container.client.upload_blob(f"{_PENDING_PREFIX}{name}", b"", overwrite=True)
            except Exception as error:  # the capture-all mode still matches the tag; started mode may not
                log.warning("could not mark an idempotency claim pending: %s", type(error).__name__)
        return Claim(blob, etag, None, document.owner, tag, tagged)

    def _clear_pending(self, claim: Claim) -> None:
        if claim.tagged:
            self._clear_pending_name(claim.tag.split(".")[0])

    def _clear_pending_name(self, name: str) -> None:
        try:
            self._container.client.delete_blob(f"{_PENDING_PREFIX}{name}")
        except ResourceNotFoundError:
            pass
        except Exception as error:  # a stale marker costs a GET per webhook, and lapses
            log.warning("could not clear an idempotency claim's pending marker: %s", type(error).__name__)

    @staticmethod
    def _take_over(blob: BlobClient, etag: str, mine: _ClaimDocument) -> str | None:
        """The new ETag, or None if another request took the lapsed claim over first."""
        try:
            result = blob.upload_blob(mine.to_json(), overwrite=True, content_settings=JSON_CONTENT,
                                      etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(result["etag"])


def _nonce(claim: Claim) -> str:
    return claim.tag.partition(".")[2]


@dataclass
class _ClaimDocument:
    """``_idempotency/{name}.json``: the key itself is never stored, only its hash (the name)."""

    request: str  # the SHA-256 of the request body
    response_id: str | None
    claimed_at: float
    owner: str | None
    nonce: str  # random: a tag naming an earlier claim for the same key matches nothing
    outcome: str = "pending"  # "pending" (being created), "unknown" (the create's answer was lost), "started"

    @classmethod
    def new(cls, request: str, owner: str | None) -> _ClaimDocument:
        return cls(request, None, time.time(), owner, secrets.token_hex(16))

    def age(self) -> float:
        return time.time() - self.claimed_at

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _ClaimDocument:
        held: dict[str, Any] = json.loads(data)
        response_id, owner = held.get("response_id"), held.get("owner")
        return cls(
            request=str(held.get("request")),
            response_id=response_id if isinstance(response_id, str) else None,
            claimed_at=float(held.get("claimed_at", 0)),
            owner=owner if isinstance(owner, str) else None,
            nonce=str(held.get("nonce", "")),
            outcome=str(held.get("outcome", "pending")),
        )
