"""The completion event: one JSON message per run on ``ARTIFACTS_EVENTS_QUEUE`` when every file has ended.

A contract for downstream consumers (documented in the README)::

    {"v": 1, "type": "artifacts.completed", "event_id": "evt_...", "response_id": "resp_...",
     "owner": "aad:..." | null, "status": "completed", "given_up": null, "complete": true, "sent_at": "...Z",
     "counts": {"pending": 0, "persisted": 2, "failed": 1},
     "warnings": [...],
     "artifacts": [{"file_id", "filename", "blob_name", "container_id", "state",
                    "size", "sha256", "url", "url_expires_at"} | {..., "state": "failed", "code", "reason"}]}

``url`` is a read-only download link that expires at ``url_expires_at`` (ARTIFACTS_LINK_MINUTES); a
consumer that needs a fresh one asks the status API.

It also carries the run's W3C ``traceparent`` (and ``tracestate``) when the app is traced.
``event_id`` is the same for every copy of one run's event (a consumer drops duplicates by it).
When the list would not fit in a queue message, ``artifacts`` is left out, ``artifacts_truncated``
is true and ``details_blob`` names the status-container blob holding the whole event.
"""

from __future__ import annotations

import json
from typing import Any

from shared.blob_store import utc_timestamp
from shared.messages import MAX_MESSAGE_BYTES, SCHEMA_VERSION
from shared.progress import artifact_states, count_states, with_links
from shared.run_record import RunRecord
from shared.runtime import Runtime
from shared.telemetry import current_trace_fields

EVENT_TYPE = "artifacts.completed"
_EVENT_FIELDS = (
    "file_id", "filename", "blob_name", "container_id", "state", "size", "sha256", "url", "url_expires_at", "code",
    "reason",
)


def build_event(runtime: Runtime, record: RunRecord) -> dict[str, Any]:
    states = artifact_states(runtime, record)
    counts = count_states(states)
    return {
        "v": SCHEMA_VERSION,
        "type": EVENT_TYPE,
        "event_id": record.event_id,
        "response_id": record.response_id,
        "owner": record.owner,
        "status": record.status,
        "given_up": record.given_up,
        "complete": is_complete(record, counts),
        "sent_at": utc_timestamp(),
        "counts": counts,
        "warnings": record.warnings,
        "artifacts": [
            {key: entry[key] for key in _EVENT_FIELDS if key in entry} for entry in with_links(runtime, states)
        ],
        **current_trace_fields(),  # a consumer can continue the run's trace
    }


def is_complete(record: RunRecord, counts: dict[str, int]) -> bool:
    """Every file found (discovery without warnings) and every one of them ended."""
    return record.phase != "running" and not record.warnings and record.given_up is None and counts["pending"] == 0


def send_event(runtime: Runtime, record: RunRecord) -> dict[str, Any]:
    """Send the run's event; returns what was sent."""
    event = build_event(runtime, record)
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        name = runtime.status.write_event_document(record.response_id, event)
        event = {key: value for key, value in event.items() if key != "artifacts"}
        event.update(artifacts_truncated=True, details_blob=f"{runtime.status.container_name}/{name}")
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    runtime.queues.send(runtime.settings.queues.events, text)
    return event
