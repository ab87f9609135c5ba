"""``GET /api/responses/{response_id}``: where a run and each of its artifacts stand.

Read from Storage on every call (the run record, one listing of the artifacts, one of the
failure records), never from process memory, so any instance answers the same.
"""

from __future__ import annotations

import logging

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.api.answers import json_errors, json_response, route_response_id, runtime_or_refuse, unknown_run
from shared.api.callers import caller_of
from shared.errors import Refusal
from shared.pipeline.events import final_states, is_complete
from shared.pipeline.progress import count_states, with_links

log = logging.getLogger(__name__)


@json_errors
def response_status(req: func.HttpRequest) -> func.HttpResponse:
    response_id = route_response_id(req)
    runtime = runtime_or_refuse()
    try:
        stored = runtime.status_records.runs.read(response_id)
        if stored is None or not caller_of(req, runtime.settings).owns(stored.record):
            raise unknown_run(response_id)
        record = stored.record
        states = final_states(runtime, record)  # a complete run says what its event said
    except AzureError as error:
        log.error("could not read the records of %s: %s", response_id, type(error).__name__)
        raise Refusal(503, "storage_unavailable", "the run's records could not be read; try again") from None
    except ValueError:
        log.error("the run record of %s is unreadable", response_id)
        raise Refusal(500, "record_unreadable", "the run's record is damaged; import the run to rebuild it") from None

    counts = count_states(states)
    return json_response(
        200,
        {
            "response_id": response_id,
            "status": record.status,
            "phase": record.phase,
            "complete": is_complete(record, counts),
            "created_at": record.created_at,
            "ended_at": record.ended_at,
            "output_text": record.output_text,
            "output_text_truncated": record.output_text_truncated,
            "error": record.error,
            "given_up": record.given_up,
            "warnings": record.warnings,
            "event_id": record.event_id if record.event_sent else None,
            "counts": counts,
            "artifacts": with_links(runtime, states),
        },
    )
