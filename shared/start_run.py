"""``POST /api/responses``: start a run, record it, queue its watcher, and answer at once.

The run is created in the background (``background: true, store: true``) unless
AZURE_OPENAI_BACKGROUND is false; either way the run watcher follows it from its queue, so the
answer never waits on the run unless the caller asks to (``wait``). A success answer is given
only once the watch message is queued; when that fails, the error answer still names the run
so it can be imported.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import azure.functions as func
from opentelemetry import trace

from shared.callers import Caller, caller_of
from shared.discovery import output_text
from shared.fan_out import discover
from shared.http_json import (
    UPSTREAM_FAILURES,
    Refusal,
    accepted,
    json_errors,
    runtime_or_refuse,
    status_url,
    unknown_run,
    upstream_refusal,
)
from shared.idempotency import Claim, KeyInFlight, KeyReused, check_key
from shared.ids import is_valid_id
from shared.messages import WatchMessage
from shared.run_record import RUNNING_STATUSES, RunRecord, new_step_token
from shared.run_request import InvalidRequest, RunRequest, parse_run_request
from shared.runtime import Runtime
from shared.telemetry import annotate
from shared.watcher import poll_delay

log = logging.getLogger(__name__)

HTTP_BUDGET_SECONDS = 225.0  # Azure's front end ends an HTTP request at 230 s
_MIN_LISTING_SECONDS = 5.0
_WAIT_POLL_SECONDS = (0.5, 3.0)  # the first and the largest pause between looks while ``wait`` runs
IDEMPOTENCY_HEADER = "Idempotency-Key"


@json_errors
def start_run(req: func.HttpRequest) -> func.HttpResponse:
    started = time.monotonic()
    body = req.get_body() or b""  # the worker gives bytes; None when empty
    run = _parse(body)
    key = _idempotency_key(req)
    runtime = runtime_or_refuse()
    caller = caller_of(req, runtime.settings)
    deadline = started + HTTP_BUDGET_SECONDS
    _check_previous_run(runtime, caller, run)

    claim: Claim | None = None
    digest = hashlib.sha256(body).hexdigest()
    if key is not None:
        claim = _claim(runtime, key, caller, digest)
        if claim.response_id is not None:
            return _replayed(runtime, req, claim.response_id)
    try:
        response = runtime.openai.create_response(
            run.to_payload(runtime.settings.deployment, background=runtime.settings.background),
            deadline=deadline - _MIN_LISTING_SECONDS,
        )
    except UPSTREAM_FAILURES as error:
        if claim is not None:
            runtime.status.claims.release(claim)  # no run started: a retry may start one
        raise upstream_refusal(error) from None

    response_id = response.get("id")
    if not is_valid_id(response_id):
        raise Refusal(502, "upstream_error", "Azure OpenAI answered without a usable response id")
    annotate(trace.get_current_span(), response_id=response_id)
    if claim is not None:
        _note_started(runtime, claim, digest, response_id)
    _record_and_watch(req, runtime, run, response, caller)

    if run.wait_seconds and response.get("status") in RUNNING_STATUSES:
        response = _wait_for_end(runtime, response, min(started + run.wait_seconds, deadline - _MIN_LISTING_SECONDS))
    return _accepted(req, runtime, response, deadline)


def _parse(body: bytes) -> RunRequest:
    try:
        return parse_run_request(body)
    except InvalidRequest as invalid:
        raise Refusal(
            invalid.status,
            "invalid_request" if invalid.status == 400 else "body_too_large",
            str(invalid),
            field=invalid.problems[0].field,
            details=[{"field": p.field, "problem": p.problem} for p in invalid.problems],
        ) from None


def _idempotency_key(req: func.HttpRequest) -> str | None:
    value: str | None = req.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    problem = check_key(value)
    if problem:
        raise Refusal(400, "invalid_request", f"{IDEMPOTENCY_HEADER}: {problem}", field=IDEMPOTENCY_HEADER)
    return value


def _check_previous_run(runtime: Runtime, caller: Caller, run: RunRequest) -> None:
    """Continuing another owner's run would read its conversation: refused before any call goes out."""
    previous = run.options.get("previous_response_id")
    if not isinstance(previous, str):
        return
    stored = runtime.status.runs.read(previous)
    if stored is not None and not caller.owns(stored.record):
        raise unknown_run(previous)


def _claim(runtime: Runtime, key: str, caller: Caller, digest: str) -> Claim:
    try:
        return runtime.status.claims.claim(key, caller.scope, digest)
    except KeyReused:
        raise Refusal(
            422, "idempotency_key_reused",
            f"{IDEMPOTENCY_HEADER} was already used for a request with another body", field=IDEMPOTENCY_HEADER,
        ) from None
    except KeyInFlight:
        raise Refusal(
            409, "idempotency_key_in_flight",
            f"a request with this {IDEMPOTENCY_HEADER} is still starting its run; try again shortly",
            field=IDEMPOTENCY_HEADER,
        ) from None


def _note_started(runtime: Runtime, claim: Claim, digest: str, response_id: str) -> None:
    try:
        runtime.status.claims.started(claim, digest, response_id)
    except Exception as error:  # the run exists: answering matters more than the key
        log.error("could not record the idempotency key of run %s: %s", response_id, type(error).__name__)


def _record_and_watch(
    req: func.HttpRequest, runtime: Runtime, run: RunRequest, response: dict[str, Any], caller: Caller
) -> None:
    """The run is recorded and its watcher queued, or the caller learns the run's id from the error."""
    response_id = str(response["id"])
    status = response.get("status")
    created = response.get("created_at")
    record = RunRecord.start(
        response_id,
        "post",
        status=status if isinstance(status, str) else None,
        response_created_at=created if isinstance(created, int) and not isinstance(created, bool) else None,
        input_file_ids=list(run.file_ids),
        step_token=new_step_token(),
        owner=caller.owner,
    )
    delay = poll_delay(runtime.settings, 1) if status in RUNNING_STATUSES else 0
    first_step = WatchMessage(response_id, record.seq, record.step_token)
    try:
        runtime.status.runs.create(record)
        runtime.queues.send(runtime.settings.queues.runs, first_step.to_json(), delay_seconds=delay)
    except Exception as error:
        log.error("run %s was started but could not be queued: %s", response_id, type(error).__name__)
        raise Refusal(
            503,
            "not_queued",
            "the run was started but could not be queued for persisting; import it to persist its files",
            response_id=response_id,
            import_url=status_url(req, response_id) + "/import",
        ) from None


def _wait_for_end(runtime: Runtime, response: dict[str, Any], until: float) -> dict[str, Any]:
    """Look at the run until it ends or the caller's ``wait`` is over, whichever comes first."""
    pause = _WAIT_POLL_SECONDS[0]
    while response.get("status") in RUNNING_STATUSES and time.monotonic() + pause < until:
        time.sleep(pause)  # the caller asked to wait for the run
        pause = min(pause * 2, _WAIT_POLL_SECONDS[1])
        try:
            response = runtime.openai.get_response(str(response["id"]), deadline=until)
        except UPSTREAM_FAILURES as error:
            log.warning("while waiting for run %s: %s", response.get("id"), type(error).__name__)
            break  # the watcher follows the run anyway; answer with what is known
    return response


def _accepted(req: func.HttpRequest, runtime: Runtime, response: dict[str, Any], deadline: float) -> func.HttpResponse:
    body: dict[str, Any] = {"status": response.get("status")}
    if response.get("status") not in RUNNING_STATUSES:
        # Ended in time: the files as the watcher will find them (it fans them out, not this request).
        body["output_text"] = output_text(response)
        messages, warnings = discover(runtime, response, (), deadline=deadline)
        body["artifacts"] = [message.describe() for message in messages]
        if warnings:
            body["warnings"] = warnings
    return accepted(req, str(response["id"]), body)


def _replayed(runtime: Runtime, req: func.HttpRequest, response_id: str) -> func.HttpResponse:
    """The same request again: the same run, its watcher woken in case the first answer was an error."""
    stored = runtime.status.runs.read(response_id)
    try:
        runtime.queues.send(runtime.settings.queues.runs, WatchMessage(response_id).to_json())
    except Exception as error:
        log.error("could not queue run %s again: %s", response_id, type(error).__name__)
        raise Refusal(503, "not_queued", "the run could not be queued; try again", response_id=response_id) from None
    body = {"status": stored.record.status if stored is not None else None}
    return accepted(req, response_id, body, {"Idempotent-Replayed": "true"})
