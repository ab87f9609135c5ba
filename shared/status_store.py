"""Durable per-response records in the status container, so nothing is dropped silently.

``{response_id}/_manifest.json``    every artifact the run produced (written before any is queued)
``{response_id}/{file_id}.json``    an artifact that failed for good, with the reason
``_invalid/{message id}.json``      a queue message too broken to name its artifact

Persisted artifacts need no record: a blob whose metadata carries its size and SHA-256 is the
proof. Ids start with a letter or digit, so ``_manifest`` can never be a file id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.blob_store import ContainerGuard, utc_timestamp
from shared.ids import is_valid_id

MANIFEST = "_manifest.json"
_JSON = ContentSettings(content_type="application/json")


@dataclass(frozen=True)
class Failure:
    code: str  # machine-readable: "file_gone", "too_large", "invalid_message", "upstream_error", ...
    reason: str  # human-readable, free of secrets
    attempts: int  # deliveries of the queue message so far


@dataclass(frozen=True)
class ResponseRecords:
    manifest: dict[str, Any]
    failures: dict[str, dict[str, Any]]  # file id -> failure record


class StatusStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ContainerGuard(service, container)

    def write_manifest(self, response_id: str, status: str | None, artifacts: Iterable[dict[str, Any]]) -> None:
        self._put(
            f"{response_id}/{MANIFEST}",
            {"response_id": response_id, "status": status, "created_at": utc_timestamp(), "artifacts": list(artifacts)},
        )

    def record_failure(self, failure: Failure, artifact: dict[str, Any], message_id: str | None) -> str:
        """Record a failed artifact (its ids already validated); returns the record's blob name."""
        name = f"{artifact['response_id']}/{artifact['file_id']}.json"
        self._put(name, _failure_document(failure, artifact, message_id))
        return name

    def record_invalid_message(self, failure: Failure, excerpt: str, message_id: str | None) -> str:
        key = message_id if is_valid_id(message_id) else uuid.uuid4().hex
        name = f"_invalid/{key}.json"
        self._put(name, _failure_document(failure, {"message_excerpt": excerpt}, message_id))
        return name

    def read(self, response_id: str) -> ResponseRecords | None:
        """The manifest and failure records of a response; None if no manifest exists."""
        container = self._container.client
        manifest: dict[str, Any] | None = None
        failures: dict[str, dict[str, Any]] = {}
        try:
            names = [blob.name for blob in container.list_blobs(name_starts_with=f"{response_id}/")]
        except ResourceNotFoundError:  # the container does not exist yet: nothing was ever recorded
            return None
        for name in names:
            leaf = name[len(response_id) + 1 :]
            try:
                document = json.loads(container.get_blob_client(name).download_blob().readall())
            except ResourceNotFoundError:
                continue
            if leaf == MANIFEST:
                manifest = document
            elif leaf.endswith(".json") and isinstance(document, dict):
                failures[leaf[: -len(".json")]] = document
        return ResponseRecords(manifest, failures) if manifest is not None else None

    def _put(self, name: str, document: dict[str, Any]) -> None:
        self._container.ensure()
        self._container.client.get_blob_client(name).upload_blob(
            json.dumps(document, ensure_ascii=False).encode("utf-8"), overwrite=True, content_settings=_JSON
        )


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
