"""The completion event as a consumer reads it: a CloudEvents 1.0 event in structured JSON mode.

``event_data`` checks the envelope (with azure-core's own CloudEvent parser, and the contract's
rules: ``id`` is ``data.event_id``, ``subject`` the response id) and returns ``data``: version 1's
event, which the tests read as before.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from azure.core.messaging import CloudEvent

from shared.pipeline.events import EVENT_TYPE

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ENVELOPE = {"specversion", "type", "source", "id", "subject", "time", "datacontenttype", "data"}
TRACE_EXTENSIONS = {"traceparent", "tracestate"}


def check_envelope(document: dict[str, Any]) -> dict[str, Any]:
    """Assert ``document`` is the app's CloudEvent; returns its data."""
    assert ENVELOPE <= set(document) <= ENVELOPE | TRACE_EXTENSIONS, sorted(document)
    parsed: CloudEvent[Any] = CloudEvent.from_dict(document)  # the SDK's reader: required attributes, extension names
    assert parsed.specversion == "1.0" and document["specversion"] == "1.0"
    assert parsed.type == EVENT_TYPE
    assert isinstance(parsed.source, str) and parsed.source
    assert document["datacontenttype"] == "application/json"
    assert RFC3339.match(document["time"]), document["time"]
    data = document["data"]
    assert isinstance(data, dict) and data["v"] == 1
    assert parsed.id == data["event_id"] and parsed.id.startswith("evt_")
    assert parsed.subject == data["response_id"]
    # The same instant (the queue's copy writes it as the app writes every time; the SDK its own way).
    assert parsed.time == datetime.fromisoformat(data["sent_at"]), (document["time"], data["sent_at"])
    for name in TRACE_EXTENSIONS & set(document):
        assert document[name] == data.get(name), name
    return data


def event_data(text: str | bytes) -> dict[str, Any]:
    """A queue message's event, checked as a CloudEvent: its data."""
    document = json.loads(text)
    assert isinstance(document, dict)
    return check_envelope(document)
