"""``Idempotency-Key``: a POST retried with the same key returns the same run and starts no other.

A key is claimed by creating ``_idempotency/{sha256}.json`` in the status container only if it
does not exist (one conditional write, so of two racing requests exactly one wins). The winner
starts the run and writes its response id into the claim; a loser waits briefly for that id.
A claim whose run never started (the winner crashed) is taken over after the HTTP budget, and
every claim lapses after ``KEY_LIFETIME_SECONDS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContentSettings

from shared.blob_store import ContainerGuard

KEY_LIFETIME_SECONDS = 24 * 3600
MAX_KEY_CHARS = 255
_CLAIM_ABANDONED_SECONDS = 240.0  # past the 230 s an HTTP request may last: its run never started
_LOSER_WAIT_SECONDS = 20.0
_LOSER_POLL_SECONDS = 0.2
_JSON = ContentSettings(content_type="application/json")


class KeyReused(Exception):
    """The key was used for a request with another body (HTTP 422)."""


class KeyInFlight(Exception):
    """The request that holds this key is still starting its run (HTTP 409, try again)."""


@dataclass(frozen=True)
class Claim:
    """What a request holds for its key: either the right to start the run, or the run already started."""

    blob: BlobClient
    etag: str
    response_id: str | None  # set when an earlier request started the run


def check_key(value: str) -> str | None:
    """A problem with an ``Idempotency-Key`` header's value, or None if it is usable."""
    if not value or len(value) > MAX_KEY_CHARS or not value.isprintable() or not value.isascii():
        return f"must be 1-{MAX_KEY_CHARS} printable ASCII characters"
    return None


class IdempotencyClaims:
    def __init__(self, container: ContainerGuard) -> None:
        self._container = container

    def claim(self, key: str, scope: str, request_digest: str) -> Claim:
        """Claim ``key`` (within ``scope``, the caller) for a request whose body hashes to ``request_digest``."""
        name = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        blob = self._container.client.get_blob_client(f"_idempotency/{name}.json")
        deadline = time.monotonic() + _LOSER_WAIT_SECONDS
        while True:
            mine = _document(request_digest, None)
            self._container.ensure()
            try:
                result = blob.upload_blob(mine, overwrite=False, content_settings=_JSON)
                return Claim(blob, str(result["etag"]), None)
            except ResourceExistsError:
                pass
            try:
                downloader = blob.download_blob()
            except ResourceNotFoundError:
                continue  # released between our two calls: try to claim it again
            etag = str(downloader.properties.etag)
            held = json.loads(downloader.readall())
            age = time.time() - float(held.get("claimed_at", 0))
            started = held.get("response_id")
            if age > KEY_LIFETIME_SECONDS or (started is None and age > _CLAIM_ABANDONED_SECONDS):
                taken = self._take_over(blob, etag, mine)
                if taken is not None:
                    return taken
                continue
            if held.get("request") != request_digest:
                raise KeyReused(key)
            if isinstance(started, str):
                return Claim(blob, etag, started)
            if time.monotonic() > deadline:
                raise KeyInFlight(key)
            threading.Event().wait(_LOSER_POLL_SECONDS)  # the winner is creating the run right now

    def started(self, claim: Claim, request_digest: str, response_id: str) -> None:
        """Record the run the claim's request started, for the requests that retry it."""
        claim.blob.upload_blob(
            _document(request_digest, response_id),
            overwrite=True,
            content_settings=_JSON,
            etag=claim.etag,
            match_condition=MatchConditions.IfNotModified,
        )

    def release(self, claim: Claim) -> None:
        """The run was not started (the request failed): a retry may try again at once."""
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            claim.blob.delete_blob(etag=claim.etag, match_condition=MatchConditions.IfNotModified)

    @staticmethod
    def _take_over(blob: BlobClient, etag: str, mine: bytes) -> Claim | None:
        try:
            result = blob.upload_blob(
                mine, overwrite=True, content_settings=_JSON, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None  # another request took it over first
        return Claim(blob, str(result["etag"]), None)


def _document(request_digest: str, response_id: str | None) -> bytes:
    return json.dumps({"request": request_digest, "response_id": response_id, "claimed_at": time.time()}).encode()
