"""The completion event: one CloudEvent per run on ``ARTIFACTS_EVENTS_QUEUE`` when every file has ended.

A contract for downstream consumers (docs/contracts.md, "The completion event", version 2): a
CloudEvents 1.0 event in structured JSON mode, built with azure-core's ``CloudEvent``::

    {"specversion": "1.0", "type": "com.code-interpreter-artifacts.completed", "source": "/artifacts",
     "id": "evt_...", "subject": "resp_...", "time": "...Z", "datacontenttype": "application/json",
     "traceparent": "00-..." (when traced),
     "data": {"v": 1, "type": "artifacts.completed", "event_id": "evt_...", "response_id": "resp_...",
              "owner": "aad:..." | null, "status": "completed", "given_up": null, "complete": true,
              "sent_at": "...Z", "counts": {"pending": 0, "persisted": 2, "failed": 1}, "warnings": [...],
              "artifacts": [{"file_id", "filename", "blob_name", "container_id" | null, "source", "state",
                             "size", "sha256", "url", "url_expires_at"} | {..., "state": "failed", "code", "reason"}]}}

``data`` is version 1's whole event, unchanged: a consumer of version 1 reads ``data``. ``id`` is
``data.event_id``, ``subject`` the response id, ``source`` ARTIFACTS_EVENT_SOURCE.

``url`` is a read-only download link that expires at ``url_expires_at`` (ARTIFACTS_LINK_MINUTES); a
consumer that needs a fresh one asks the status API.

It also carries the run's W3C ``traceparent`` (and ``tracestate``) when the app is traced, in
``data`` and as the CloudEvents distributed-tracing extension attributes.
``event_id`` is derived from the outcome: the run's id, owner and status, whether it was given up or is
complete, and each artifact's state with its sha256 (persisted) or failure code (failed). Every
copy of one run's event carries the same id, and so does the event of a re-import that changed
nothing (a consumer drops both by it); a repair that changed an outcome gets a new id.
When the event would not fit in a queue message, ``data.artifacts`` is left out,
``data.artifacts_truncated`` is true and ``data.details_blob`` names the status-container blob
holding the whole event (the whole CloudEvent).

With ARTIFACTS_EVENT_GRID_ENDPOINT set, the same event (the same ``id``) is also published to
that Event Grid topic (``publish_event``); the watcher retries a failed publish (watcher.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.messaging import CloudEvent

from shared.clock import utc_now
from shared.limits import MAX_MESSAGE_BYTES
from shared.pipeline.progress import artifact_states, count_states, with_links
from shared.runtime import Runtime
from shared.storage.messages import SCHEMA_VERSION
from shared.storage.run_records import RunRecord
from shared.telemetry import current_trace_fields

if TYPE_CHECKING:
    from azure.eventgrid import EventGridPublisherClient

# The CloudEvents type: a reverse-DNS prefix naming who defines the event's meaning (this project,
# not a domain the app calls), as the CloudEvents spec recommends; fixed, so consumers filter on it.
EVENT_TYPE = "com.code-interpreter-artifacts.completed"
DATA_TYPE = "artifacts.completed"  # version 1's ``type``, kept in ``data``
CONTENT_TYPE = "application/json"
_TRACE_EXTENSIONS = ("traceparent", "tracestate")  # the CloudEvents distributed-tracing extension
_EVENT_FIELDS = (
    "file_id", "filename", "blob_name", "container_id", "source", "state", "size", "sha256", "url", "url_expires_at",
    "code", "reason",
)


def _build_data(runtime: Runtime, record: RunRecord, sent_at: datetime) -> dict[str, Any]:
    """The run's event data (version 1's whole event), from the outcome frozen when it was marked
    complete (read now for a record from before outcomes were frozen)."""
    states = final_states(runtime, record)
    counts = count_states(states)
    complete = is_complete(record, counts)
    return {
        "v": SCHEMA_VERSION,
        "type": DATA_TYPE,
        "event_id": record.event_id or _outcome_event_id(record, states, complete=complete),
        "response_id": record.response_id,
        "owner": record.owner,
        "status": record.status,
        "given_up": record.given_up,
        "complete": complete,
        "sent_at": _rfc3339(sent_at),
        "counts": counts,
        "warnings": record.warnings,
        "artifacts": [
            {key: entry[key] for key in _EVENT_FIELDS if key in entry} for entry in with_links(runtime, states)
        ],
        **current_trace_fields(),  # a consumer can continue the run's trace
    }


def _cloud_event(runtime: Runtime, data: dict[str, Any], sent_at: datetime) -> CloudEvent[dict[str, Any]]:
    """The envelope: azure-core's CloudEvent checks the attributes (names of extensions included)."""
    extensions = {name: data[name] for name in _TRACE_EXTENSIONS if isinstance(data.get(name), str)}
    return CloudEvent(
        source=runtime.settings.event_source,
        type=EVENT_TYPE,
        data=data,
        id=data["event_id"],
        subject=data["response_id"],
        time=sent_at,
        datacontenttype=CONTENT_TYPE,
        specversion="1.0",
        extensions=extensions or None,
    )


def structured(event: CloudEvent[dict[str, Any]]) -> dict[str, Any]:
    """The event in CloudEvents' structured JSON mode (what the queue message and _event.json hold)."""
    document: dict[str, Any] = {
        "specversion": event.specversion,
        "type": event.type,
        "source": event.source,
        "id": event.id,
        "subject": event.subject,
        "time": _rfc3339(event.time) if event.time is not None else None,
        "datacontenttype": event.datacontenttype,
        **(event.extensions or {}),
        "data": event.data,
    }
    return {key: value for key, value in document.items() if value is not None}


def _rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, with ``Z``: the form of every timestamp the app writes."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


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


def build_event(runtime: Runtime, record: RunRecord) -> CloudEvent[dict[str, Any]]:
    """The run's event as it is sent: the whole one stored as ``_event.json`` first when it would not
    fit a queue message, and the one sent then naming that blob instead of listing the artifacts."""
    sent_at = utc_now().replace(microsecond=0)  # to the second, as every time the app writes
    data = _build_data(runtime, record, sent_at)
    event = _cloud_event(runtime, data, sent_at)
    if len(_text(event).encode("utf-8")) > MAX_MESSAGE_BYTES:
        name = runtime.status_records.write_event_document(record.response_id, structured(event))
        data = {key: value for key, value in data.items() if key != "artifacts"}
        data.update(artifacts_truncated=True, details_blob=f"{runtime.status_records.container_name}/{name}")
        event = _cloud_event(runtime, data, sent_at)
    return event


def _text(event: CloudEvent[dict[str, Any]]) -> str:
    return json.dumps(structured(event), ensure_ascii=False, separators=(",", ":"))


def send_event(runtime: Runtime, record: RunRecord) -> CloudEvent[dict[str, Any]]:
    """Send the run's event on the events queue; returns what was sent."""
    event = build_event(runtime, record)
    runtime.queues.send(runtime.settings.queues.events, _text(event))
    return event


def publish_event(runtime: Runtime, grid: EventGridPublisherClient, record: RunRecord) -> CloudEvent[dict[str, Any]]:
    """Publish the run's event (the same id as the queue's) to the Event Grid topic; raises AzureError
    when the topic did not take it (the caller retries)."""
    event = build_event(runtime, record)
    grid.send(event)
    return event
