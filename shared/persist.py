"""The queue function's work: download one container file, streaming, into Blob Storage.

Outcomes, so that every file either lands whole or is recorded:
- stored (or already stored whole by an earlier delivery: nothing is downloaded again);
- permanent failure (file or container gone, an unusable message, an upstream 4xx):
  recorded in the status container, and the message completes;
- transient failure (429, 5xx, a timeout, a body cut short, 401/403 until the credentials are
  fixed, a Storage error): retried a few times here, then raised so the host redelivers the
  message and, in the end, moves it to the poison queue.
"""

from __future__ import annotations

import logging

import httpx

from shared.blob_store import SizeMismatchError, StoredBlob
from shared.failure_records import Failure
from shared.messages import ArtifactMessage, InvalidMessage
from shared.naming import content_disposition, content_type_for, metadata_filename
from shared.openai_client import FileGoneError, TransientUpstreamError, UpstreamError
from shared.retry import RetryPolicy
from shared.runtime import Runtime

log = logging.getLogger(__name__)

_RETRYABLE = (TransientUpstreamError, httpx.TransportError, SizeMismatchError)
_GENERIC_TYPES = ("application/octet-stream", "binary/octet-stream")


def persist_message(
    runtime: Runtime,
    body: bytes,
    *,
    message_id: str | None = None,
    dequeue_count: int | None = None,
    retry: RetryPolicy | None = None,
) -> StoredBlob | None:
    """Store the artifact a queue message names; None when it was recorded as failed."""
    try:
        message = ArtifactMessage.from_json(body)
    except InvalidMessage as error:
        log.error("unusable queue message %s: %s", message_id, error)
        runtime.failures.record_invalid_message(
            Failure("invalid_message", str(error), dequeue_count or 1), _excerpt(body), message_id
        )
        return None

    existing = runtime.store.find_whole(message.blob_name)
    if existing is not None:
        log.info("%s is already stored whole; nothing to do", message.blob_name)
        return existing

    try:
        stored = _download_with_retries(runtime, message, retry or RetryPolicy())
    except FileGoneError as error:
        _record(runtime, message=message, message_id=message_id, attempts=dequeue_count, code="file_gone", error=error)
        return None
    except UpstreamError as error:
        if error.status in (401, 403):
            raise  # credentials or role assignment: fixable, so the message must survive
        _record(
            runtime, message=message, message_id=message_id, attempts=dequeue_count, code="upstream_error", error=error
        )
        return None
    log.info("stored %s (%d bytes, sha256 %s)", stored.blob_name, stored.size, stored.sha256)
    return stored


def _download_with_retries(runtime: Runtime, message: ArtifactMessage, retry: RetryPolicy) -> StoredBlob:
    for attempt in retry.retrying(*_RETRYABLE):
        with attempt:
            return _download(runtime, message)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _download(runtime: Runtime, message: ArtifactMessage) -> StoredBlob:
    metadata = {
        "response_id": message.response_id,
        "container_id": message.container_id,
        "file_id": message.file_id,
        "filename": metadata_filename(message.filename),
    }
    with runtime.openai.open_file_content(message.container_id, message.file_id) as answer:
        served_type = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        hint = message.mime_type or (served_type if served_type and served_type not in _GENERIC_TYPES else None)
        return runtime.store.write(
            message.blob_name,
            answer.iter_bytes(runtime.store.block_size),
            metadata=metadata,
            content_type=content_type_for(message.filename, hint),
            content_disposition=content_disposition(message.filename),
            expected_size=_announced_size(answer),
        )


def _record(
    runtime: Runtime,
    *,
    message: ArtifactMessage,
    message_id: str | None,
    attempts: int | None,
    code: str,
    error: UpstreamError,
) -> None:
    reason = str(error.detail.get("message") or error)
    log.warning("%s failed for good (%s): %s", message.blob_name, code, reason)
    artifact = {
        "response_id": message.response_id,
        "container_id": message.container_id,
        "file_id": message.file_id,
        "filename": message.filename,
        "blob_name": message.blob_name,
        "upstream_status": error.status,
    }
    runtime.failures.record_artifact(Failure(code, reason, attempts or 1), artifact, message_id)


def _is_identity(answer: httpx.Response) -> bool:
    encoding: str = answer.headers.get("content-encoding", "identity")
    return encoding.strip().lower() == "identity"


def _announced_size(answer: httpx.Response) -> int | None:
    """Content-Length counts the bytes on the wire, so it only checks an unencoded body."""
    raw = answer.headers.get("content-length")
    if raw is None or not raw.isdigit() or not _is_identity(answer):
        return None
    return int(raw)


def _excerpt(body: bytes) -> str:
    """The start of a broken message, for the record: enough to recognise it, bounded."""
    return body[:512].decode("utf-8", errors="replace")
