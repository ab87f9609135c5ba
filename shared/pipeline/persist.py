"""The artifact queue step: download one container file, streaming, into Blob Storage.

Outcomes, so that every file either lands whole or is recorded:
- stored (or already stored whole by an earlier delivery: a redelivery, a message naming only
  the ids, or one for a file this process stored looks it up first and downloads nothing again;
  a first delivery of a small file skips that request, and its conditional write finds the
  blob instead);
- access refused (401/403: role assignments still propagating after a deployment): retried
  like any transient failure, but the last delivery, instead of failing into the poison queue,
  sends the message again to wait (a delay growing from a minute, AUTH_WAIT_SECONDS in all) and
  completes; once those waits are spent, a refusal ends like any transient failure below;
- throttled (429) on the last delivery: likewise sent again to wait, at least as long as the
  server's Retry-After asks, THROTTLE_WAIT_SECONDS in all, while the container still lives;
- permanent failure (file or container gone, over the size limit, an unusable message, an
  upstream 4xx): recorded in the status container, and the message completes;
- transient failure (429, 5xx, a timeout, a body cut short, 401/403 until the credentials are
  fixed, a Storage error): retried a few times here, then raised so the host redelivers the
  message. When the last delivery fails, its reason is recorded as it ends; the message then
  goes to the poison queue, whose trigger records any failure not yet recorded (a delivery that
  crashed or timed out), so the status API never shows a file pending for ever, nor failed
  while a delivery still runs.

A delivery that settles its file (stored, found stored, or recorded as failed; and the poison
queue's trigger) appends a line to the run generation's settle log; once the log holds as many
lines as the fan-out queued files, it wakes the run watcher, so the completion event follows the
last file at once instead of at the watcher's next scheduled check. A duplicate delivery adds a
line too: the count can reach the total early, and that wake only costs the watcher one check
(it finds files pending and goes on as scheduled); every later settle wakes it again, so the last
one always does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from shared.errors import (
    DeliveryTimeUp,
    FileGoneError,
    InvalidMessage,
    SizeMismatchError,
    TooLargeError,
    TransientError,
    TransientUpstreamError,
    UpstreamError,
)
from shared.host_settings import DEFAULT_FUNCTION_TIMEOUT_SECONDS
from shared.json_values import parse_json
from shared.retry import RetryPolicy
from shared.runtime import Runtime
from shared.storage.artifact_blobs import StoredBlob
from shared.storage.messages import ArtifactMessage, WatchMessage
from shared.storage.naming import content_disposition, content_type_for, metadata_filename, valid_mime_type
from shared.storage.status_records import Failure, FailureCode
from shared.telemetry import annotate, bytes_persisted, context_from, download_duration, files_persisted, step_span

log = logging.getLogger(__name__)

DELIVERY_SHARE_OF_TIMEOUT = 0.5  # a delivery ends well inside functionTimeout, or the host restarts the worker
# Right after a deployment, role assignments take minutes to reach Storage and Azure OpenAI, which
# refuse the app (401/403) meanwhile. When the host's deliveries are spent on that, the message
# waits it out on the queue, this long each time (30 minutes in all), instead of going to the
# poison queue.
AUTH_WAIT_SECONDS = (60, 120, 240, 480, 900)
# Sustained throttling (429) on the downloads. When the host's deliveries are spent on it, the message
# waits on the queue: the first wait this long, then each as long as all before it (doubling the
# total), never shorter than the server's Retry-After, THROTTLE_WAIT_SECONDS in all. A container
# expires about 20 minutes after its last use: the deliveries before the waits take ~3-8 minutes
# after the run ends, so the waits end while the container most likely still lives.
THROTTLE_FIRST_WAIT_SECONDS = 60
THROTTLE_WAIT_SECONDS = 600


_RETRYABLE = (TransientError, httpx.TransportError)  # DeliveryTimeUp, 429/5xx, short bodies, racing writes
_GENERIC_TYPES = ("application/octet-stream", "binary/octet-stream")


class _Permanent(Exception):
    def __init__(self, code: FailureCode, reason: str, upstream_status: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.upstream_status = upstream_status


def handle_artifact_message(
    runtime: Runtime, body: bytes, *, message_id: str | None, dequeue_count: int | None
) -> None:
    """One delivery of an artifact message, observed: its span (continuing the run's trace from the
    message), the files and bytes persisted, the download's duration, and one log line per outcome
    with the ids as dimensions."""
    ids = _ids(body)
    started = time.monotonic()
    with step_span("persist_artifact", parent=context_from(ids), delivery=dequeue_count,
                   response_id=ids.get("response_id"), container_id=ids.get("container_id"),
                   file_id=ids.get("file_id")) as span:
        stored = persist_message(runtime, body, message_id=message_id, dequeue_count=dequeue_count)
        if stored is None:
            outcome = "not_persisted"  # recorded as failed (its metric counted there), or waiting for access
        elif stored.already_present:
            outcome = "already_persisted"
        else:
            outcome = "persisted"
            files_persisted.add(1)
            bytes_persisted.add(stored.size)
            download_duration.record(time.monotonic() - started)
        annotate(span, outcome=outcome, bytes=stored.size if stored is not None else None)
        log.info("artifact %s: %s", ids.get("file_id"), outcome,
                 extra={**{key: ids.get(key) for key in ("response_id", "container_id", "file_id")},
                        "outcome": outcome, "bytes": stored.size if stored is not None else None})


def persist_message(
    runtime: Runtime,
    body: bytes,
    *,
    message_id: str | None = None,
    dequeue_count: int | None = None,
) -> StoredBlob | None:
    """Store the artifact a queue message names; None when it was recorded as failed, or sent again
    to wait for access."""
    deliveries = dequeue_count or 1
    try:
        message = ArtifactMessage.from_json(body)
    except InvalidMessage as error:
        log.error("unusable queue message %s: %s", message_id, error)
        runtime.status_records.record_invalid_message(
            Failure("invalid_message", str(error), deliveries), body, message_id
        )
        return None

    try:
        return _persist(runtime, message, message_id, deliveries)
    except Exception as error:
        if deliveries < runtime.max_dequeue_count:
            raise  # the host delivers it again
        if _refused(error) and _wait_for_access(runtime, message, error):
            return None
        if isinstance(error, TransientUpstreamError) and error.status == 429 and _wait_out_throttling(
            runtime, message, error
        ):
            return None
        # Over now: the message goes to the poison queue next.
        reason = f"gave up after {deliveries} deliveries: {_describe(error)}{_waited(message)}"
        with contextlib.suppress(Exception):  # the poison queue's trigger records it then
            _record(runtime, message, message_id, Failure("retries_exhausted", reason, deliveries), None)
        raise


def _persist(runtime: Runtime, message: ArtifactMessage, message_id: str | None, deliveries: int) -> StoredBlob | None:
    try:
        look_first = _may_be_stored(runtime, message, deliveries)
        if look_first:
            # By ids, not by name: a message naming only the ids of a stored file finds it too.
            existing = runtime.artifact_blobs.find_artifact(message.response_id, message.file_id)
            if existing is not None:
                log.info("%s is already stored whole; nothing to do", existing.blob_name)
                _settled(runtime, message)  # the delivery that stored it may have stopped before its own note
                return existing
        stored = _download_with_retries(runtime, message, runtime.download_retry)
    except _Permanent as failure:
        failed = Failure(failure.code, failure.reason, deliveries)
        _record(runtime, message, message_id, failed, failure.upstream_status)
        _settled(runtime, message)
        return None
    _settled(runtime, message)
    if stored.already_present:
        log.info("%s was already stored whole; nothing written", stored.blob_name)
    else:
        log.info("stored %s (%d bytes, sha256 %s)", stored.blob_name, stored.size, stored.sha256)
    return stored


def _may_be_stored(runtime: Runtime, message: ArtifactMessage, deliveries: int) -> bool:
    """Whether to look the artifact up before downloading it, at the cost of one request.

    A first delivery of a small file skips the look: the fan-out queued it because it was not
    stored, and the write that follows is conditional, so a duplicate still writes nothing. A
    redelivery looks (an earlier delivery may have stored it), as does a message without its
    blob name (the artifact may be stored under another), one for a file this process stored
    (a duplicate, most likely), and a large or unsized file (a needless download would cost
    far more than the look).
    """
    return (
        deliveries > 1
        or not message.names_blob
        or message.size is None
        or message.size > runtime.artifact_blobs.block_size
        or runtime.artifact_blobs.stored_here(message.response_id, message.file_id)
    )


def record_poisoned_artifact(runtime: Runtime, body: bytes, *, message_id: str | None) -> None:
    """An artifact message moved to the poison queue: its deliveries are over. Record the failure
    unless the file landed after all or its last delivery recorded a more precise reason."""
    try:
        message = ArtifactMessage.from_json(body)
    except InvalidMessage as error:
        runtime.status_records.record_invalid_message(
            Failure("invalid_message", str(error), runtime.max_dequeue_count), body, message_id
        )
        return
    if runtime.artifact_blobs.find_artifact(message.response_id, message.file_id) is None:
        deliveries = runtime.max_dequeue_count
        reason = f"all {deliveries} deliveries failed, timed out or were stopped"
        failure = Failure("retries_exhausted", reason, deliveries)
        _record(runtime, message, message_id, failure, None, keep_existing=True)
    _settled(runtime, message)  # its last delivery failed before noting anything


def _settled(runtime: Runtime, message: ArtifactMessage) -> None:
    """Note the file settled; wake the run's watcher once every file the fan-out queued has.

    Best effort: without the note or the wake-up, the watcher's next scheduled check finds the
    file all the same. A message that does not carry its fan-out's count notes nothing.
    """
    if message.queued is None or message.generation is None:
        return
    try:
        settled = runtime.status_records.note_settled(message.response_id, message.generation, message.file_id)
        if settled >= message.queued:
            runtime.queues.send(runtime.settings.queues.runs, WatchMessage(message.response_id).to_json())
    except Exception as error:
        log.warning("run %s: could not note file %s settled (%s); the watcher's next check finds it",
                    message.response_id, message.file_id, _describe(error))


def _download_with_retries(runtime: Runtime, message: ArtifactMessage, retry: RetryPolicy) -> StoredBlob:
    limit = runtime.settings.max_file_bytes
    if message.size is not None and message.size > limit:
        raise _Permanent("too_large", f"the file has {message.size} bytes, over the limit of {limit}")
    # The whole delivery (every attempt, and the bytes of the current one) ends by this deadline,
    # well inside functionTimeout: a timed-out invocation restarts the worker, and every other
    # invocation on the instance with it.
    deadline = time.monotonic() + _delivery_seconds(runtime)
    try:
        for attempt in retry.retrying(*_RETRYABLE, deadline=deadline):
            with attempt:
                return _download(runtime, message, deadline)
    except TransientError:
        raise  # retries spent (TransientUpstreamError included): the queue delivers the message again
    except FileGoneError as error:
        raise _Permanent("file_gone", _upstream_reason(error), error.status) from error
    except TooLargeError as error:
        raise _Permanent("too_large", str(error)) from error
    except UpstreamError as error:
        if error.status in (401, 403):
            raise  # credentials or role assignment: fixable, so the message must survive
        raise _Permanent("upstream_error", _upstream_reason(error), error.status) from error
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _delivery_seconds(runtime: Runtime) -> float:
    """How long one delivery may take: its share of the host's functionTimeout (Flex's default when unbounded)."""
    timeout = runtime.host.function_timeout_seconds or DEFAULT_FUNCTION_TIMEOUT_SECONDS
    return timeout * DELIVERY_SHARE_OF_TIMEOUT


def _blocks_until(reads: Iterator[bytes], block_size: int, deadline: float) -> Iterator[bytes]:
    """The body in blocks of ``block_size``, stopped at the delivery's deadline.

    ``reads`` are the body's network reads as they arrive (a few KiB each): the deadline is checked
    on every one, so a body that trickles in, a byte now and then, each read well inside the read
    timeout, still ends by the deadline instead of when its 4 MiB block would be full.
    """
    block = bytearray()
    for piece in reads:
        if time.monotonic() > deadline:
            raise DeliveryTimeUp("the delivery's share of functionTimeout ran out mid-download")
        block += piece
        while len(block) >= block_size:
            yield bytes(block[:block_size])
            del block[:block_size]
    if block:
        yield bytes(block)


def _download(runtime: Runtime, message: ArtifactMessage, deadline: float) -> StoredBlob:
    metadata = {
        "response_id": message.response_id,
        "file_id": message.file_id,
        "filename": metadata_filename(message.filename),
        "source": message.source,
    }
    if message.container_id is None:
        return _decode_image(runtime, message, metadata, deadline)
    metadata["container_id"] = message.container_id
    with runtime.openai.open_file_content(message.container_id, message.file_id, deadline=deadline) as answer:
        served = valid_mime_type(answer.headers.get("content-type"))
        hint = message.mime_type or (served if served not in _GENERIC_TYPES else None)
        return runtime.artifact_blobs.write(
            message.blob_name,
            _blocks_until(answer.iter_bytes(), runtime.artifact_blobs.block_size, deadline),
            metadata=metadata,
            content_type=content_type_for(message.filename, hint),
            content_disposition=content_disposition(message.filename),
            expected_size=_expected_size(answer, message.size),
            max_size=runtime.settings.max_file_bytes,
        )


def _decode_image(runtime: Runtime, message: ArtifactMessage, metadata: dict[str, str], deadline: float) -> StoredBlob:
    """A generated image: the response read again (a queue message cannot carry the bytes), the
    image_generation_call's base64 result decoded block by block into the same whole-or-nothing write."""
    response = runtime.openai.get_response(message.response_id, deadline=deadline)
    result = next(
        (item.get("result") for item in response.get("output") or []
         if isinstance(item, dict) and item.get("type") == "image_generation_call"
         and item.get("id") == message.file_id),
        None,
    )
    del response  # only the one item's base64 text is kept while it is decoded
    if not isinstance(result, str) or not result:
        raise FileGoneError(404, {"message": f"the response has no image_generation_call {message.file_id} "
                                             "with a result"})
    return runtime.artifact_blobs.write(
        message.blob_name,
        _blocks_until(_decoded_blocks(result, runtime.artifact_blobs.block_size), runtime.artifact_blobs.block_size,
                      deadline),
        metadata=metadata,
        content_type=content_type_for(message.filename, message.mime_type),
        content_disposition=content_disposition(message.filename),
        expected_size=message.size,
        max_size=runtime.settings.max_file_bytes,
    )


def _decoded_blocks(text: str, block_size: int) -> Iterator[bytes]:
    """The bytes of a base64 text, about ``block_size`` at a time: never the whole image decoded at once."""
    step = max(4, block_size // 3 * 4)  # whole 4-character quanta
    for start in range(0, len(text), step):
        try:
            yield base64.b64decode(text[start:start + step], validate=True)
        except binascii.Error as error:
            raise UpstreamError(422, {"message": f"the image's result is not base64: {error}"}) from None


def _record(
    runtime: Runtime,
    message: ArtifactMessage,
    message_id: str | None,
    failure: Failure,
    upstream_status: int | None,
    *,
    keep_existing: bool = False,
) -> None:
    log.warning("%s failed (%s): %s", message.blob_name, failure.code, failure.reason)
    artifact: dict[str, Any] = {
        "response_id": message.response_id,
        "container_id": message.container_id,
        "file_id": message.file_id,
        "filename": message.filename,
        "blob_name": message.blob_name,
        "source": message.source,
    }
    if upstream_status is not None:
        artifact["upstream_status"] = upstream_status
    if message.generation is not None:
        artifact["generation"] = message.generation
    runtime.status_records.record_failure(failure, artifact, message_id, keep_existing=keep_existing)


def _upstream_reason(error: UpstreamError) -> str:
    return f"Azure OpenAI answered {error.status}: {error.detail.get('message', '')}"


def _refused(error: BaseException) -> bool:
    """Access refused: Azure OpenAI's or Storage's 401/403, or no token for the managed identity."""
    if isinstance(error, UpstreamError):
        return error.status in (401, 403)
    if isinstance(error, HttpResponseError) and error.status_code in (401, 403):
        return True
    return isinstance(error, ClientAuthenticationError)  # a token that could not be had: no response at all


def _wait_for_access(runtime: Runtime, message: ArtifactMessage, error: BaseException) -> bool:
    """Send the message again to be delivered after the next wait; False when the waits are
    spent or the message cannot be sent (then the delivery fails as usual)."""
    waits = message.auth_waits
    if waits >= len(AUTH_WAIT_SECONDS):
        return False
    again = dataclasses.replace(message, auth_waits=waits + 1)
    if not _send_again(runtime, again, AUTH_WAIT_SECONDS[waits], "access"):
        return False
    log.warning("%s: %s; waiting %d s for access (wait %d of %d: role assignments may still be propagating)",
                message.blob_name, _describe(error), AUTH_WAIT_SECONDS[waits], waits + 1, len(AUTH_WAIT_SECONDS))
    return True


def throttle_wait(waited: int, retry_after: float | None) -> int | None:
    """Seconds the next throttling wait lasts, after ``waited`` in all so far; None once spent."""
    left = THROTTLE_WAIT_SECONDS - waited
    if left <= 0:
        return None
    wanted = max(THROTTLE_FIRST_WAIT_SECONDS, waited, math.ceil(retry_after or 0), 1)
    return min(wanted, left)


def _wait_out_throttling(runtime: Runtime, message: ArtifactMessage, error: TransientUpstreamError) -> bool:
    """Send the message again to be delivered after the next throttling wait; False when the
    waits are spent or the message cannot be sent (then the delivery fails as usual)."""
    wait = throttle_wait(message.throttle_waited, error.retry_after)
    if wait is None:
        return False
    waited = message.throttle_waited + wait
    if not _send_again(runtime, dataclasses.replace(message, throttle_waited=waited), wait, "throttling to clear"):
        return False
    log.warning("%s: %s; waiting %d s for throttling to clear (%d of %d s)",
                message.blob_name, _describe(error), wait, waited, THROTTLE_WAIT_SECONDS)
    return True


def _send_again(runtime: Runtime, message: ArtifactMessage, delay: int, waiting_for: str) -> bool:
    try:  # sent before returning: completing the delivery deletes the message it replaces
        runtime.queues.send(runtime.settings.queues.artifacts, message.to_json(), delay_seconds=delay)
    except Exception as send_error:
        log.warning("%s: could not queue a wait for %s (%s); the delivery fails instead",
                    message.blob_name, waiting_for, _describe(send_error))
        return False
    return True


def _waited(message: ArtifactMessage) -> str:
    waits = []
    if message.auth_waits:
        minutes = sum(AUTH_WAIT_SECONDS[: message.auth_waits]) / 60
        waits.append(f"after waiting {minutes:g} min for access: check the app's role assignments and key")
    if message.throttle_waited:
        waits.append(f"after waiting {message.throttle_waited} s for throttling to clear")
    return "".join(f" ({wait})" for wait in waits)


def _describe(error: BaseException) -> str:
    """A failure's kind and message, for a record: our own errors carry no secrets."""
    if isinstance(error, UpstreamError):
        return _upstream_reason(error)
    if isinstance(error, HttpResponseError) and error.status_code in (401, 403):
        # The code (AuthorizationPermissionMismatch, AuthenticationFailed...) names the cause; the
        # message may quote request details, so it stays out.
        code = getattr(error, "error_code", None)  # set by the storage SDK: a StorageErrorCode, text or None
        code = getattr(code, "value", code)
        return f"Storage refused access ({error.status_code}{f' {code}' if code else ''})"
    if isinstance(error, ClientAuthenticationError):
        return "no access token for the managed identity (ClientAuthenticationError)"
    if isinstance(error, (SizeMismatchError, httpx.TransportError)):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__  # e.g. a Storage error, whose text may name request details


def _expected_size(answer: httpx.Response, listed_size: int | None) -> int | None:
    """The size the stored bytes must have: Content-Length, or the listing's when the body is
    delimited only by the connection closing (then a cut would otherwise go unnoticed).
    A chunked body needs neither: httpx fails on a missing last chunk."""
    encoding: str = answer.headers.get("content-encoding", "identity")
    if encoding.strip().lower() != "identity":
        return None  # Content-Length would count encoded bytes
    raw = answer.headers.get("content-length")
    if raw is not None:
        return int(raw) if raw.isdigit() else None
    if "chunked" in answer.headers.get("transfer-encoding", "").lower():
        return None
    return listed_size


def _ids(body: bytes) -> dict[str, Any]:
    """The message's ids and trace context for telemetry; an unusable message has none (persist says why)."""
    try:
        data = parse_json(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str) and len(value) <= 512}
