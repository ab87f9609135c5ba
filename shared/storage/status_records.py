"""Durable per-response records in the status container, so nothing is dropped silently.

``{response_id}/_run.json``         the run and every artifact it produced (see ``run_records``)
``{response_id}/_event.json``       a completion event too large for a queue message, whole
``{response_id}/{file_id}.json``    an artifact that failed for good, with the reason
``{response_id}/_settled.{generation}.log`` an append blob: one line per delivery that settled a
                                    file of that generation (stored, or failed for good)
``_invalid/{message id}.json``      a queue message too broken to name its artifact
``_webhooks/{sha256 of its id}.json`` a webhook delivery already handled (Azure retries deliveries)

Persisted artifacts need no record: a blob whose metadata carries its size and SHA-256 is the
proof. Ids start with a letter or digit, so ``_run`` can never be a file id. A failure record
carries its facts in blob metadata too, so one listing reads every failure of a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import quote, unquote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from shared.clock import utc_timestamp
from shared.ids import is_valid_id
from shared.limits import EXCERPT_BYTES
from shared.storage.containers import JSON_CONTENT, ContainerGuard
from shared.storage.idempotency import IdempotencyClaims
from shared.storage.run_records import RunStore
from shared.telemetry import files_failed

log = logging.getLogger(__name__)

EVENT_DOCUMENT = "_event.json"
SETTLE_LOG = "_settled.{generation}.log"  # not ".json": failures() skips it
_TEXT = ContentSettings(content_type="text/plain; charset=utf-8")
_MAX_REASON_CHARS = 1000  # well inside BLOB_METADATA_MAX_BYTES with the other metadata


# Why a file (or a message) failed for good: the ``code`` of a failure record, in the status API
# and the completion event, and the ``code`` dimension of ``artifacts.files.failed``.
FailureCode = Literal[
    "file_gone",  # the container or file no longer exists (404, or 400 "Container is expired.")
    "too_large",  # over ARTIFACTS_MAX_FILE_BYTES
    "upstream_error",  # Azure OpenAI refused the download for good (another 4xx, a 3xx)
    "retries_exhausted",  # every delivery failed; the reason names the last error
    "invalid_message",  # a queue message no step can use
]
FAILURE_CODES: tuple[FailureCode, ...] = get_args(FailureCode)


@dataclass(frozen=True)
class Failure:
    code: FailureCode
    reason: str  # human-readable, free of secrets
    attempts: int  # deliveries of the queue message so far


class StatusStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ContainerGuard(service, container)
        self.runs = RunStore(self._container)
        self.claims = IdempotencyClaims(self._container)
        self.container_name = container

    def record_failure(
        self, failure: Failure, artifact: dict[str, Any], message_id: str | None, *, keep_existing: bool = False
    ) -> bool:
        """Record a failed artifact (its ids already validated). With ``keep_existing`` an earlier
        record (more precise: written by the delivery that failed) is kept; returns whether written."""
        name = f"{artifact['response_id']}/{artifact['file_id']}.json"
        document = _failure_document(failure, artifact, message_id)
        written = self._put(name, document, metadata=_failure_metadata(document), overwrite=not keep_existing)
        if written:
            files_failed.add(1, {"code": failure.code})
            log.warning("artifact %s failed for good (%s)", artifact["file_id"], failure.code,
                        extra={"response_id": artifact["response_id"], "file_id": artifact["file_id"],
                               "container_id": artifact.get("container_id"), "outcome": "failed",
                               "code": failure.code})
        return written

    def failures(self, response_id: str) -> dict[str, dict[str, Any]]:
        """Every failure record of a run, by file id, from one listing (facts in metadata)."""
        found: dict[str, dict[str, Any]] = {}
        try:
            listed = list(self._container.client.list_blobs(name_starts_with=f"{response_id}/", include=["metadata"]))
        except ResourceNotFoundError:
            return found
        for blob in listed:
            leaf = blob.name[len(response_id) + 1 :]
            file_id = leaf[: -len(".json")]
            if "/" in leaf or not leaf.endswith(".json") or not is_valid_id(file_id):
                continue  # the run record, the event document, the settle logs
            meta = blob.metadata or {}
            if "code" not in meta:
                continue
            attempts = meta.get("attempts", "")
            found[file_id] = {
                "code": meta["code"],
                "reason": unquote(meta.get("reason", "")),
                "attempts": int(attempts) if attempts.isdigit() else None,
                "failed_at": meta.get("failed_at"),
                # The run generation whose delivery recorded it (None: a message from before
                # generations): an earlier generation's late record does not count for a later one.
                "generation": int(meta["generation"]) if meta.get("generation", "").isdigit() else None,
            }
        return found

    def open_settle_log(self, response_id: str, generation: int) -> None:
        """Create the run generation's settle log, unless it exists (a fan-out done again keeps its lines)."""
        self._container.ensure()
        with contextlib.suppress(ResourceExistsError):
            self._settle_log(response_id, generation).create_append_blob(
                content_settings=_TEXT, match_condition=MatchConditions.IfMissing
            )

    def note_settled(self, response_id: str, generation: int, file_id: str) -> int:
        """Append one line for a settled file; answers the lines now in the log, counted by Storage
        in the same request (its committed block count): a duplicate delivery counts twice."""
        log_blob = self._settle_log(response_id, generation)
        line = f"{file_id}\n".encode("ascii")
        try:
            appended = log_blob.append_block(line, length=len(line))
        except ResourceNotFoundError:  # not opened by the fan-out (deleted since, or an older fan-out's run)
            self.open_settle_log(response_id, generation)
            appended = log_blob.append_block(line, length=len(line))
        count = appended["blob_committed_block_count"]  # x-ms-blob-committed-block-count
        return count if isinstance(count, int) else int(str(count))

    def _settle_log(self, response_id: str, generation: int) -> BlobClient:
        return self._container.client.get_blob_client(f"{response_id}/{SETTLE_LOG.format(generation=generation)}")

    def clear_failure(self, response_id: str, file_id: str) -> None:
        """Forget a failure: the artifact is queued again (a repair by import)."""
        with contextlib.suppress(ResourceNotFoundError):
            self._container.client.delete_blob(f"{response_id}/{file_id}.json")

    def write_event_document(self, response_id: str, event: dict[str, Any]) -> str:
        """The whole completion event, for a consumer when the queue message had to leave out the list."""
        name = f"{response_id}/{EVENT_DOCUMENT}"
        self._put(name, event)
        return name

    def record_invalid_message(self, failure: Failure, body: bytes, message_id: str | None) -> str:
        """A queue message no step can use, with the start of its body (to recognise it, bounded)."""
        key = message_id if is_valid_id(message_id) else uuid.uuid4().hex
        name = f"_invalid/{key}.json"
        excerpt = body[:EXCERPT_BYTES].decode("utf-8", "replace")
        self._put(name, _failure_document(failure, {"message_excerpt": excerpt}, message_id))
        return name

    def webhook_handled(self, webhook_id: str) -> bool:
        try:
            self._container.client.get_blob_client(_webhook_blob(webhook_id)).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True

    def note_webhook(self, webhook_id: str, outcome: dict[str, Any]) -> None:
        """Remember a handled delivery, so the same ``webhook-id`` again does nothing twice."""
        self._put(_webhook_blob(webhook_id), {"handled_at": utc_timestamp(), **outcome}, overwrite=False)

    def _put(
        self, name: str, document: dict[str, Any], *, metadata: dict[str, str] | None = None, overwrite: bool = True
    ) -> bool:
        self._container.ensure()
        try:
            self._container.client.get_blob_client(name).upload_blob(
                json.dumps(document, ensure_ascii=False).encode("utf-8"),
                overwrite=overwrite,
                content_settings=JSON_CONTENT,
                metadata=metadata,
            )
        except ResourceExistsError:
            return False
        return True


def _webhook_blob(webhook_id: str) -> str:
    return f"_webhooks/{hashlib.sha256(webhook_id.encode('utf-8')).hexdigest()}.json"


def _failure_metadata(document: dict[str, Any]) -> dict[str, str]:
    """Blob metadata must be ASCII: the reason is percent-encoded and bounded."""
    metadata = {
        "code": str(document["code"]),
        "reason": quote(str(document["reason"])[:_MAX_REASON_CHARS], safe=" :,;()'/-_.=+"),
        "attempts": str(document["attempts"]),
        "failed_at": str(document["failed_at"]),
    }
    if document.get("generation") is not None:
        metadata["generation"] = str(document["generation"])
    return metadata


def _failure_document(failure: Failure, subject: dict[str, Any], message_id: str | None) -> dict[str, Any]:
    return {
        "state": "failed",
        "code": failure.code,
        "reason": failure.reason,
        "attempts": failure.attempts,
        "failed_at": utc_timestamp(),
        "queue_message_id": message_id,
        **subject,
    }
