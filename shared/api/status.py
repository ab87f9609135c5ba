"""``GET /api/responses/{response_id}``: where a run and each of its artifacts stand.

Read from Storage on every call (the run record, one listing of the artifacts, one of the
failure records), never from process memory, so any instance answers the same.
"""

from __future__ import annotations

import logging

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.api.answers import (
    json_errors,
    json_response,
    route_response_id,
    runtime_or_refuse,
    storage_unavailable,
    unknown_run,
)
from shared.api.callers import caller_of
from shared.pipeline.events import final_states, is_complete
from shared.pipeline.progress import count_states, with_links

log = logging.getLogger(__name__)


@json_errors
def response_status(req: func.HttpRequest) -> func.HttpResponse:
    response_id = route_response_id(req)
    runtime = runtime_or_refuse()
    caller = caller_of(req, runtime.settings)  # 401/403 before anything is read
    try:
        stored = runtime.status_records.runs.read(response_id)
    except AzureError as error:
        raise storage_unavailable(response_id, error) from None
    except ValueError:
        # Whose run it is cannot be told: answered as unknown to everyone. Importing it again
        # (with the import right) rebuilds the record.
        log.error("the run record of %s is unreadable", response_id)
        raise unknown_run(response_id) from None
    if stored is None or not caller.sees(stored.record):
        raise unknown_run(response_id)
    record = stored.record
    try:
        states = final_states(runtime, record)  # a complete run says what its event said
    except AzureError as error:
        raise storage_unavailable(response_id, error) from None

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
            # The input blobs given to the run (never persisted back): their uploads and whether deleted.
            "inputs": [{key: entry.get(key) for key in ("name", "file_id", "bytes", "deleted")}
                       for entry in record.input_blobs],
        },
    )
