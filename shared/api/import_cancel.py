"""``POST /api/responses/{id}/import`` and ``POST /api/responses/{id}/cancel``.

Import persists the files of a response made anywhere on the same Azure OpenAI resource (an
agent, a notebook, a POST whose answer was lost). Importing again is the repair for a run whose
files failed: it re-discovers and queues only what is not persisted yet.

Cancel asks Azure OpenAI to stop a background run; that is best-effort, and whatever the run
made before it stopped is still persisted.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time

import azure.functions as func
from azure.core.exceptions import AzureError

from shared.api.answers import (
    UPSTREAM_FAILURES,
    accepted,
    json_errors,
    route_response_id,
    runtime_or_refuse,
    storage_unavailable,
    unknown_run,
    upstream_refusal,
)
from shared.api.callers import Caller, caller_of
from shared.errors import RecordConflict, RecordMissing, Refusal, ResponseNotFound, UpstreamError
from shared.pipeline.watcher import send_first_step
from shared.runtime import Runtime
from shared.storage.messages import WatchMessage
from shared.storage.run_records import RunRecord, Stored, new_step_token

log = logging.getLogger(__name__)

_LOOKUP_SECONDS = 30.0
_RESTART_TRIES = 5  # conditional writes lost to a watcher step in progress before giving up


@json_errors
def import_response(req: func.HttpRequest) -> func.HttpResponse:
    response_id = route_response_id(req)
    runtime = runtime_or_refuse()
    caller = caller_of(req, runtime.settings)
    # Azure OpenAI is asked first, whoever's the run: another caller's run and an unknown id then
    # take the same path, and neither the answer nor its timing tells them apart.
    try:
        response = runtime.openai.get_response(response_id, deadline=time.monotonic() + _LOOKUP_SECONDS)
    except ResponseNotFound:
        raise _no_such_response(response_id) from None
    except UPSTREAM_FAILURES as error:
        raise upstream_refusal(error) from None
    if not _may_import(runtime, caller, response_id):
        raise _no_such_response(response_id)

    status = response.get("status")
    try:
        stored = _restart(runtime, response_id, status if isinstance(status, str) else None, caller)
    except AzureError as error:
        log.error("could not queue the import of %s: %s", response_id, type(error).__name__)
        raise Refusal(503, "not_queued", "the import could not be queued; try again", response_id=response_id) from None
    record = stored.record
    return accepted(req, response_id, {"status": record.status, "phase": record.phase, "generation": record.generation})


def _may_import(runtime: Runtime, caller: Caller, response_id: str) -> bool:
    """The caller's own run; with the import right, also a run nobody owns, one the app never
    recorded, or one whose record is damaged (its owner unknown). A run with an owner keeps it."""
    try:
        known = runtime.status_records.runs.read(response_id)
    except ValueError:
        return caller.may_import_any  # damaged: the import rebuilds it
    except AzureError as error:
        raise storage_unavailable(response_id, error) from None
    if known is None:
        return caller.may_import_any
    return caller.sees(known.record)


@json_errors
def cancel_response(req: func.HttpRequest) -> func.HttpResponse:
    response_id = route_response_id(req)
    runtime = runtime_or_refuse()
    caller = caller_of(req, runtime.settings)
    try:
        stored = runtime.status_records.runs.read(response_id)
    except ValueError:
        stored = None  # damaged: whose it is cannot be told, so it is nobody's to cancel here
    except AzureError as error:
        raise storage_unavailable(response_id, error) from None
    if stored is None or not caller.sees(stored.record):
        raise unknown_run(response_id)
    cancelled = True
    try:
        response = runtime.openai.cancel_response(response_id)
        status = response.get("status")
    except ResponseNotFound:
        raise unknown_run(response_id) from None
    except UpstreamError as error:
        if error.status != 400:
            raise upstream_refusal(error) from None
        # Azure refuses to cancel a run that has already ended: nothing to stop, say so.
        cancelled, status = False, stored.record.status
    except UPSTREAM_FAILURES as error:
        raise upstream_refusal(error) from None
    try:
        _wake(runtime, stored.record)  # the watcher sees the end now, not at its next poll
    except AzureError as error:
        log.warning("could not wake the watcher of %s: %s", response_id, type(error).__name__)
    return accepted(req, response_id, {"status": status, "cancel_requested": cancelled})


def _no_such_response(response_id: str) -> Refusal:
    return Refusal(404, "not_found", f"Azure OpenAI has no response with id {response_id!r} on this resource")


def _restart(runtime: Runtime, response_id: str, status: str | None, caller: Caller) -> Stored:
    """A new record, or the existing one set to follow the run again from the start.

    As a watcher step does, it sends the new generation's first message before it writes the
    record: an import whose message cannot be sent (AzureError) leaves the run exactly as it was,
    its live chain included, and a message whose write then loses is a stale duplicate, dropped.
    """
    for _ in range(_RESTART_TRIES):
        fresh = RunRecord.start(response_id, "import", status=status, owner=caller.owner,
                                step_token=new_step_token())
        try:
            stored = runtime.status_records.runs.read(response_id)
        except ValueError:
            stored = None
            damaged = runtime.status_records.runs.etag(response_id)
            if damaged is not None and not caller.may_import_any:
                raise _no_such_response(response_id) from None  # damaged meanwhile: its owner cannot be told
            if damaged is not None:
                log.warning("run %s: its record was damaged; the import writes a new one", response_id)
                send_first_step(runtime, fresh)
                with contextlib.suppress(RecordConflict, RecordMissing):
                    return runtime.status_records.runs.replace(fresh, damaged)
                continue
        if stored is None:
            if not caller.may_import_any:
                raise _no_such_response(response_id)  # gone meanwhile: only the import right records it anew
            send_first_step(runtime, fresh)
            created = runtime.status_records.runs.create(fresh)
            if created is not None:
                return created
            continue
        if not caller.sees(stored.record):
            raise _no_such_response(response_id)  # another caller recorded it meanwhile
        record = copy.deepcopy(stored.record)
        record.restart()
        if caller.may_adopt(record):
            record.owner = caller.owner  # a capture recorded it for nobody: the importer's now
        record.status = status or record.status
        send_first_step(runtime, record)
        try:
            return runtime.status_records.runs.replace(record, stored.etag)
        except (RecordConflict, RecordMissing):
            continue  # a watcher step landed in between (or the record went): start from what is there
    raise Refusal(409, "busy", "the run's record kept changing; try again")


def _wake(runtime: Runtime, record: RunRecord) -> None:
    """A wake-up naming the run's owner: were the record gone, it would be recorded for them again."""
    runtime.queues.send(runtime.settings.queues.runs, WatchMessage(record.response_id, owner=record.owner).to_json())
