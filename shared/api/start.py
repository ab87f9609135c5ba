"""``POST /api/responses``: start a run, record it, queue its watcher, and answer at once.

The run is created in the background (``background: true, store: true``) unless
AZURE_OPENAI_BACKGROUND is false; either way the run watcher follows it from its queue, so the
answer never waits on the run unless the caller asks to (``wait``). A success answer is given
only once the watch message is queued; when that fails, the error answer still names the run
so it can be imported.

With an ``Idempotency-Key`` the request first claims the key (``shared.storage.idempotency``). A create
that fails in a way proving no run started frees the key; one whose outcome is unknown keeps it,
so no retry starts a second paid run. However the run comes to be recorded (this request, its
retry, a webhook capture that got there first), it is recorded for this caller or not at all.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import time
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError
from opentelemetry import trace

from shared.api.answers import (
    UPSTREAM_FAILURES,
    accepted,
    json_errors,
    runtime_or_refuse,
    status_url,
    storage_unavailable,
    unknown_run,
    upstream_refusal,
)
from shared.api.callers import Caller, caller_of
from shared.api.inputs import check_inputs, upload_inputs
from shared.api.run_request import RunRequest, parse_run_request
from shared.errors import (
    CreateOutcomeUnknown,
    InvalidRequest,
    KeyInFlight,
    KeyOutcomeUnknown,
    KeyReused,
    RecordConflict,
    Refusal,
)
from shared.ids import is_valid_id
from shared.json_values import json_int
from shared.limits import HTTP_BUDGET_SECONDS
from shared.pipeline.discovery import output_text
from shared.pipeline.fan_out import artifact_messages
from shared.pipeline.input_cleanup import delete_inputs
from shared.pipeline.watcher import send_first_step, step_message
from shared.runtime import Runtime
from shared.storage.idempotency import CLAIM_TAG_KEY, Claim, check_key
from shared.storage.messages import WatchMessage
from shared.storage.run_records import RUNNING_STATUSES, RunRecord, Stored, new_step_token
from shared.telemetry import annotate

log = logging.getLogger(__name__)

_MIN_LISTING_SECONDS = 5.0
_WAIT_POLL_SECONDS = (0.5, 3.0)  # the first and the largest pause between looks while ``wait`` runs
IDEMPOTENCY_HEADER = "Idempotency-Key"
_METADATA_MAX_PAIRS = 16  # the Responses API's limit: the claim's tag needs one of them
_RECORD_TRIES = 5  # conditional writes lost to a watcher step before the POST gives up


@json_errors
def start_run(req: func.HttpRequest) -> func.HttpResponse:
    started = time.monotonic()
    runtime = runtime_or_refuse()
    caller = caller_of(req, runtime.settings)  # 401/403 before the body is even read
    body = req.get_body() or b""  # the worker gives bytes; None when empty
    run = _parse(body, runtime.settings.allowed_models, runtime.settings.image_deployment)
    key = _idempotency_key(req)
    deadline = started + HTTP_BUDGET_SECONDS
    _check_references(caller, run)
    _check_previous_run(runtime, caller, run)
    blobs = check_inputs(runtime, caller, run.input_blobs)  # 4xx before any call goes out

    claim: Claim | None = None
    digest = hashlib.sha256(body).hexdigest()
    payload = run.to_payload(runtime.settings.deployment, background=runtime.settings.background)
    if key is not None:
        # With webhooks on, the create carries the claim's tag: the run's webhook can find the
        # claim even if this request never hears the create's answer.
        room = len(payload.get("metadata") or {}) < _METADATA_MAX_PAIRS
        tagged = runtime.settings.webhook_secret is not None and room
        claim = _claim(runtime, key, caller, digest, tagged=tagged)
        if claim.response_id is not None:
            return _replayed(runtime, req, run, claim.response_id, caller)
        if claim.tagged:
            payload["metadata"] = {**(payload.get("metadata") or {}), CLAIM_TAG_KEY: claim.tag}
    inputs: list[dict[str, Any]] = []
    if blobs:
        try:
            inputs = upload_inputs(runtime, blobs, deadline - 2 * _MIN_LISTING_SECONDS)
        except Refusal:
            if claim is not None:
                runtime.status_records.claims.release(claim)  # no run started
            raise
        # Mounted in the code interpreter's container beside the caller's own file ids.
        run = dataclasses.replace(run, file_ids=run.file_ids + tuple(entry["file_id"] for entry in inputs))
        payload["tools"] = run.to_payload(runtime.settings.deployment, background=False)["tools"]
    try:
        response = runtime.openai.create_response(
            payload, deadline=deadline - _MIN_LISTING_SECONDS,
            image_deployment=runtime.settings.image_deployment if run.image_generation is not None else None,
        )
    except CreateOutcomeUnknown as unknown:
        # The run may have started with the inputs, so they stay; nothing deletes them later: say which.
        if inputs:
            log.warning("the create's outcome is unknown: its uploaded inputs stay in Azure OpenAI's files: %s",
                        ", ".join(entry["file_id"] for entry in inputs))
        raise _outcome_unknown(runtime, claim, unknown.reason, timed_out=unknown.timed_out,
                               upstream=unknown.detail) from None
    except UPSTREAM_FAILURES as error:
        if claim is not None:
            runtime.status_records.claims.release(claim)  # refused, or never sent: no run started
        delete_inputs(runtime.openai, inputs, None)  # no run will read them
        raise upstream_refusal(error) from None

    response_id = response.get("id")
    if not is_valid_id(response_id):
        raise _outcome_unknown(runtime, claim, "Azure OpenAI answered without a usable response id", timed_out=False)
    annotate(trace.get_current_span(), response_id=response_id)
    unnoted = claim is not None and not _note_started(runtime, claim, digest, response_id)
    _record_and_watch(req, runtime, run, response, caller, claim_to_note=claim.tag if unnoted and claim else None,
                      inputs=inputs)

    if run.wait_seconds and response.get("status") in RUNNING_STATUSES:
        response = _wait_for_end(runtime, response, min(started + run.wait_seconds, deadline - _MIN_LISTING_SECONDS))
    return _accepted(req, runtime, response, deadline)


def _parse(body: bytes, allowed_models: tuple[str, ...], image_deployment: str = "") -> RunRequest:
    try:
        run = parse_run_request(body)
    except InvalidRequest as invalid:
        raise Refusal(
            invalid.status,
            "invalid_request" if invalid.status == 400 else "body_too_large",
            str(invalid),
            field=invalid.problems[0].field,
            details=[{"field": p.field, "problem": p.problem} for p in invalid.problems],
        ) from None
    if run.model is not None and run.model not in allowed_models:
        raise Refusal(400, "invalid_request",
                      f"model: must be one of the deployments this app may call ({', '.join(allowed_models)}); "
                      "the operator lists them in ARTIFACTS_ALLOWED_MODELS",
                      field="model", details=[{"field": "model", "problem": "is not an allowed deployment"}])
    if run.image_generation is not None and not image_deployment:
        raise Refusal(400, "invalid_request",
                      "image_generation: this app has no image model deployment to send the tool to; the operator "
                      "names one in AZURE_OPENAI_IMAGE_DEPLOYMENT",
                      field="image_generation",
                      details=[{"field": "image_generation", "problem": "is not configured"}])
    if CLAIM_TAG_KEY in (run.options.get("metadata") or {}):
        field = f"metadata.{CLAIM_TAG_KEY}"
        raise Refusal(400, "invalid_request", f"{field}: this metadata key is reserved by the app; use another",
                      field=field, details=[{"field": field, "problem": "is reserved"}])
    return run


def _idempotency_key(req: func.HttpRequest) -> str | None:
    value: str | None = req.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    problem = check_key(value)
    if problem:
        raise Refusal(400, "invalid_request", f"{IDEMPOTENCY_HEADER}: {problem}", field=IDEMPOTENCY_HEADER)
    return value


def _check_references(caller: Caller, run: RunRequest) -> None:
    """An ``item_reference`` input pulls items out of any stored response by id: that reads another's
    conversation as surely as ``previous_response_id`` does, so it is the import right's."""
    if caller.may_import_any or not isinstance(run.input, list):
        return
    for index, item in enumerate(run.input):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            field = f"input[{index}].type"
            raise Refusal(403, "forbidden",
                          f"{field}: an item reference reads items of other responses; it needs the import right "
                          "(the app role ARTIFACTS_IMPORT_ROLE)", field=field)


def _check_previous_run(runtime: Runtime, caller: Caller, run: RunRequest) -> None:
    """Continuing another owner's run would read its conversation: refused before any call goes out,
    as is continuing a response the app never recorded, unless the caller has the import right."""
    previous = run.options.get("previous_response_id")
    if not isinstance(previous, str):
        return
    try:
        stored = runtime.status_records.runs.read(previous)
    except ValueError:
        raise unknown_run(previous) from None  # damaged: whose it is cannot be told
    except AzureError as error:
        raise storage_unavailable(previous, error) from None
    if stored is None and not caller.may_import_any:
        raise unknown_run(previous)  # not started here for this caller: continuing it is the import right's
    if stored is not None and not caller.sees(stored.record):
        raise unknown_run(previous)


def _claim(runtime: Runtime, key: str, caller: Caller, digest: str, *, tagged: bool) -> Claim:
    try:
        return runtime.status_records.claims.claim(key, caller.scope, digest, owner=caller.owner, tagged=tagged)
    except KeyOutcomeUnknown:
        raise Refusal(
            409, "outcome_unknown",
            f"a request with this {IDEMPOTENCY_HEADER} may have started a run whose id is not known (Azure "
            "OpenAI's answer to it was lost), so it starts no other. " + _what_to_do(runtime), field=IDEMPOTENCY_HEADER,
        ) from None
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


def _what_to_do(runtime: Runtime) -> str:
    found = (
        "When the run ends, Azure OpenAI's webhook lets the app find it, and a retry with this key then "
        "answers with it: try again later. " if runtime.settings.webhook_secret is not None else ""
    )
    return (
        f"{found}To start a new run instead, send a new {IDEMPOTENCY_HEADER} (a run that did start is then "
        "not persisted unless imported by its id); this key lapses 24 hours after it was first used."
    )


def _outcome_unknown(runtime: Runtime, claim: Claim | None, reason: str, *, timed_out: bool,
                     upstream: dict[str, Any] | None = None) -> Refusal:
    """A create that may have started a run: its key (if any) stays claimed, and the caller is told."""
    log.error("the outcome of a create is unknown (%s): a run may have started", reason)
    if claim is None:
        advice = (f"Retrying starts another run; send an {IDEMPOTENCY_HEADER} header so that a retry never "
                  "starts a second one.")
    else:
        try:
            runtime.status_records.claims.outcome_unknown(claim)
        except Exception as error:  # the claim stays unreleased either way: retries never start a run
            log.error("could not mark an idempotency claim's outcome unknown: %s", type(error).__name__)
        advice = (f"Retrying with the same {IDEMPOTENCY_HEADER} never starts a second run: it answers 409 "
                  "outcome_unknown until the run is found. " + _what_to_do(runtime))
    extra: dict[str, Any] = {"upstream": upstream} if upstream else {}
    return Refusal(504 if timed_out else 502, "outcome_unknown",
                   f"{reason}; the run may have started, and its id is not known. {advice}", **extra)


def _note_started(runtime: Runtime, claim: Claim, digest: str, response_id: str) -> bool:
    """Whether the claim now names the run; when not, the run's record carries the claim's tag and
    the watcher's first step notes it, so retries get the run instead of 409 for a day."""
    try:
        runtime.status_records.claims.started(claim, digest, response_id)
    except Exception as error:  # the run exists: answering matters more than the key
        log.error("could not record the idempotency key of run %s: %s", response_id, type(error).__name__)
        return False
    return True


def _record_and_watch(
    req: func.HttpRequest, runtime: Runtime, run: RunRequest, response: dict[str, Any], caller: Caller,
    *, claim_to_note: str | None = None, inputs: list[dict[str, Any]] | None = None,
) -> None:
    """The run is recorded and its watcher queued, or the caller learns the run's id from the error."""
    response_id = str(response["id"])
    status = response.get("status")
    record = RunRecord.start(
        response_id,
        "post",
        status=status if isinstance(status, str) else None,
        response_created_at=json_int(response.get("created_at")),
        input_file_ids=list(run.file_ids),
        step_token=new_step_token(),
        owner=caller.owner,
        claim_to_note=claim_to_note,
        input_blobs=list(inputs or ()),
    )
    try:
        # The first step's message goes first, as every step's does: if the record's write then
        # fails, that message finds no record at step 0 and records the run, for this caller.
        send_first_step(runtime, record)
        if _record_for(runtime, record, caller) is None:
            # Recorded already (a webhook capture came first): its watcher goes on, woken now.
            wake = WatchMessage(response_id, owner=caller.owner)
            runtime.queues.send(runtime.settings.queues.runs, wake.to_json())
    except Refusal:
        raise
    except Exception as error:
        log.error("run %s was started but could not be queued: %s", response_id, type(error).__name__)
        raise Refusal(
            503,
            "not_queued",
            "the run was started but could not be queued for persisting; import it to persist its files",
            response_id=response_id,
            import_url=status_url(req, response_id) + "/import",
        ) from None


def _record_for(runtime: Runtime, record: RunRecord, caller: Caller) -> Stored | None:
    """Record the run for ``caller``: the new record, or None if a record of it exists and is theirs
    (adopted, if a webhook capture recorded it for nobody). Never leaves it recorded for another."""
    response_id = record.response_id
    for _ in range(_RECORD_TRIES):
        made = runtime.status_records.runs.create(record)
        if made is not None:
            return made
        stored = runtime.status_records.runs.read(response_id)
        if stored is None:
            continue  # deleted in between: create it again
        if stored.record.owner == caller.owner:
            return None
        if not caller.may_adopt(stored.record):
            log.error("run %s was started by a caller but is recorded for another", response_id)
            raise Refusal(
                409, "run_recorded_for_another_caller",
                "the run was started, but the app had already recorded it for another caller, so it is not "
                "followed for you; start a new run (with a new Idempotency-Key, if you sent one)",
                response_id=response_id,
            )
        adopted = copy.deepcopy(stored.record)
        adopted.owner = caller.owner
        adopted.input_file_ids = record.input_file_ids
        adopted.input_blobs = record.input_blobs
        if adopted.phase == "complete":
            # Its event went out naming nobody: follow it again, so the caller gets one naming them.
            adopted.restart()
            runtime.queues.send(runtime.settings.queues.runs, step_message(adopted).to_json())
        try:
            runtime.status_records.runs.replace(adopted, stored.etag)
        except RecordConflict:
            continue  # a watcher step wrote in between: read it again
        log.info("run %s: adopted the record a webhook capture made", response_id)
        return None
    raise RecordConflict(response_id)


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
        messages, warnings = artifact_messages(runtime, response, (), deadline=deadline)
        body["artifacts"] = [message.describe() for message in messages]
        if warnings:
            body["warnings"] = warnings
    return accepted(req, str(response["id"]), body)


def _replayed(
    runtime: Runtime, req: func.HttpRequest, run: RunRequest, response_id: str, caller: Caller
) -> func.HttpResponse:
    """The same request again: the same run, recorded for this caller if the first request could
    not record it, and its watcher woken in case the first answer was an error."""
    record = RunRecord.start(response_id, "post", input_file_ids=list(run.file_ids), step_token=new_step_token(),
                             owner=caller.owner)
    try:
        # The wake-up first: it records the run for this caller if the write below fails.
        runtime.queues.send(runtime.settings.queues.runs, WatchMessage(response_id, owner=caller.owner).to_json())
        stored = _record_for(runtime, record, caller) or runtime.status_records.runs.read(response_id)
    except Refusal:
        raise
    except Exception as error:
        log.error("could not queue run %s again: %s", response_id, type(error).__name__)
        raise Refusal(503, "not_queued", "the run could not be queued; try again", response_id=response_id) from None
    body = {"status": stored.record.status if stored is not None else None}
    return accepted(req, response_id, body, {"Idempotent-Replayed": "true"})
