"""One delivery of an artifact message, observed: its span (continuing the run's trace from the
message), the files and bytes persisted, the download's duration, and one log line per outcome
with the ids as dimensions. The work itself is ``shared.pipeline.persist``'s."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from shared.pipeline.persist import persist_message
from shared.runtime import Runtime
from shared.telemetry import annotate, bytes_persisted, context_from, download_duration, files_persisted, step_span

log = logging.getLogger(__name__)


def handle_artifact_message(
    runtime: Runtime, body: bytes, *, message_id: str | None, dequeue_count: int | None
) -> None:
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


def _ids(body: bytes) -> dict[str, Any]:
    """The message's ids and trace context for telemetry; an unusable message has none (persist says why)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str) and len(value) <= 512}
