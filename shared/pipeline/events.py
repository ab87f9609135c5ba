"""The completion event: one JSON message per run on ``ARTIFACTS_EVENTS_QUEUE`` when every file has ended.

A contract for downstream consumers (docs/contracts.md, "The completion event")::

    {"v": 1, "type": "artifacts.completed", "event_id": "evt_...", "response_id": "resp_...",
     "owner": "aad:..." | null, "status": "completed", "given_up": null, "complete": true, "sent_at": "...Z",
     "counts": {"pending": 0, "persisted": 2, "failed": 1},
     "warnings": [...],
     "artifacts": [{"file_id", "filename", "blob_name", "container_id" | null, "source", "state",
                    "size", "sha256", "url", "url_expires_at"} | {..., "state": "failed", "code", "reason"}]}

``url`` is a read-only download link that expires at ``url_expires_at`` (ARTIFACTS_LINK_MINUTES); a
consumer that needs a fresh one asks the status API.

It also carries the run's W3C ``traceparent`` (and ``tracestate``) when the app is traced.
``event_id`` is derived from the outcome: the run's id, owner and status, whether it was given up or is
complete, and each artifact's state with its sha256 (persisted) or failure code (failed). Every
copy of one run's event carries the same id, and so does the event of a re-import that changed
nothing (a consumer drops both by it); a repair that changed an outcome gets a new id.
When the list would not fit in a queue message, ``artifacts`` is left out, ``artifacts_truncated``
is true and ``details_blob`` names the status-container blob holding the whole event.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.clock import utc_timestamp
from shared.limits import MAX_MESSAGE_BYTES
from shared.pipeline.progress import artifact_states, count_states, with_links
from shared.runtime import Runtime
from shared.storage.messages import SCHEMA_VERSION
from shared.storage.run_records import RunRecord
from shared.telemetry import current_trace_fields

EVENT_TYPE = "artifacts.completed"
_EVENT_FIELDS = (
    "file_id", "filename", "blob_name", "container_id", "source", "state", "size", "sha256", "url", "url_expires_at",
    "code", "reason",
)


def _build_event(runtime: Runtime, record: RunRecord) -> dict[str, Any]:
    """The run's event, from the outcome frozen when it was marked complete (read now for a record
    from before outcomes were frozen)."""
    states = final_states(runtime, record)
    counts = count_states(states)
    complete = is_complete(record, counts)
    return {
        "v": SCHEMA_VERSION,
        "type": EVENT_TYPE,
        "event_id": record.event_id or _outcome_event_id(record, states, complete=complete),
        "response_id": record.response_id,
        "owner": record.owner,
        "status": record.status,
        "given_up": record.given_up,
        "complete": complete,
        "sent_at": utc_timestamp(),
        "counts": counts,
        "warnings": record.warnings,
        "artifacts": [
            {key: entry[key] for key in _EVENT_FIELDS if key in entry} for entry in with_links(runtime, states)
        ],
        **current_trace_fields(),  # a consumer can continue the run's trace
    }


def freeze_outcome(record: RunRecord, states: list[dict[str, Any]]) -> None:
    """Fix the outcome of a run being marked complete: its states, and the event id derived from them."""
    record.outcome = states
    record.event_id = _outcome_event_id(record, states, complete=is_complete(record, count_states(states)))


def final_states(runtime: Runtime, record: RunRecord) -> list[dict[str, Any]]:
    """Each artifact's state: as frozen when the run was marked complete, else as it stands now."""
    return record.outcome if record.outcome is not None else artifact_states(runtime, record)


def _outcome_event_id(record: RunRecord, states: list[dict[str, Any]], *, complete: bool) -> str:
    """The same for the same outcome, whoever sends it and however often; new when an outcome changes."""
    outcome = {
        "response_id": record.response_id,
        "owner": record.owner,  # routed by it: an adopted run's event is not a duplicate of the ownerless one
        "status": record.status,
        "given_up": record.given_up is not None,
        "complete": complete,
        "artifacts": sorted(
            (str(entry.get("file_id")), str(entry["state"]), str(entry.get("sha256") or entry.get("code") or ""))
            for entry in states
        ),
    }
    digest = hashlib.sha256(json.dumps(outcome, separators=(",", ":"), sort_keys=True).encode()).hexdigest()
    return f"evt_{digest[:32]}"


def is_complete(record: RunRecord, counts: dict[str, int]) -> bool:
    """Every file found (discovery without warnings) and every one of them ended."""
    return record.phase != "running" and not record.warnings and record.given_up is None and counts["pending"] == 0


def send_event(runtime: Runtime, record: RunRecord) -> dict[str, Any]:
    """Send the run's event; returns what was sent."""
    event = _build_event(runtime, record)
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        name = runtime.status_records.write_event_document(record.response_id, event)
        event = {key: value for key, value in event.items() if key != "artifacts"}
        event.update(artifacts_truncated=True, details_blob=f"{runtime.status_records.container_name}/{name}")
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    runtime.queues.send(runtime.settings.queues.events, text)
    return event
