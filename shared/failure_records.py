"""Durable records of artifacts that failed for good, so nothing is dropped silently.

One JSON blob per artifact in the status container, at ``{response_id}/{file_id}.json``;
a message too broken to trust goes to ``_invalid/{queue message id}.json``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.blob_store import ContainerGuard
from shared.ids import is_valid_id


@dataclass(frozen=True)
class Failure:
    code: str  # machine-readable: "file_gone", "invalid_message", "upstream_error"
    reason: str  # human-readable, free of secrets
    attempts: int


class FailureRecords:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container = ContainerGuard(service, container)

    def record_artifact(self, failure: Failure, artifact: dict[str, Any], message_id: str | None) -> str:
        """Record a failed artifact (its ids already validated) and return the record's blob name."""
        name = f"{artifact['response_id']}/{artifact['file_id']}.json"
        return self._write(name, failure, artifact, message_id)

    def record_invalid_message(self, failure: Failure, excerpt: str, message_id: str | None) -> str:
        key = message_id if is_valid_id(message_id) else uuid.uuid4().hex
        return self._write(f"_invalid/{key}.json", failure, {"message_excerpt": excerpt}, message_id)

    def _write(self, name: str, failure: Failure, subject: dict[str, Any], message_id: str | None) -> str:
        document = {
            "state": "failed",
            "code": failure.code,
            "reason": failure.reason,
            "attempts": failure.attempts,
            "failed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "queue_message_id": message_id,
            **subject,
        }
        self._container.ensure()
        self._container.client.get_blob_client(name).upload_blob(
            json.dumps(document, ensure_ascii=False).encode("utf-8"),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        return name
