"""The run watcher: follows one run from start to completion event, by delayed queue messages.

Each delivery takes one step and schedules the next by sending the run's queue a message that
becomes visible after a delay; nothing sleeps. The steps, by the record's phase:

``running``     GET the response. Still ``queued``/``in_progress``: look again later (the delay
                doubles from ARTIFACTS_POLL_MIN_SECONDS to ARTIFACTS_POLL_MAX_SECONDS). Ended,
                however it ended: find its files, record them, queue one message per file.
``persisting``  Look at the artifacts; once each is persisted or failed, send the event.
``complete``    Nothing, unless the event is still to be sent and this is the completing step's
                own message (a crash right before sending): see below.

A step sends its next message first and then advances the record with a conditional write, so
a crash between the two leaves a duplicate message (dropped by ``seq``), never a lost run.

One event per outcome: the step that completes the run sends, before its write, a delayed
message for the step after it (the safety net), marks the run complete, sends the event and
notes it sent. Only that step, or its safety net when it died before noting the event, sends
it; a wake-up (a webhook, a cancel, an import, a hand-written message) that finds the run
complete sends nothing, unless the completing step has long ended without noting its event.

A step's message that finds no record (deleted by hand) follows the run again from the start,
with a ``record_lost`` warning, so the run still ends with an event that says what happened.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from shared.clock import utc_timestamp
from shared.errors import (
    InvalidMessage,
    RecordConflict,
    RecordMissing,
    ResponseNotFound,
    UpstreamError,
)
from shared.host_settings import DEFAULT_FUNCTION_TIMEOUT_SECONDS
from shared.json_values import json_int
from shared.pipeline.discovery import output_text, used_code_interpreter
from shared.pipeline.events import freeze_outcome, publish_event, send_event
from shared.pipeline.fan_out import artifact_messages, fan_out
from shared.pipeline.input_cleanup import delete_inputs, not_deleted_warning
from shared.pipeline.progress import artifact_states, count_states
from shared.runtime import Runtime
from shared.settings import Settings
from shared.storage.idempotency import CLAIM_TAG_KEY
from shared.storage.messages import ArtifactMessage, WatchMessage
from shared.storage.run_records import RUNNING_STATUSES, WEBHOOK_CAPTURE, RunRecord, Stored, new_step_token
from shared.storage.status_records import Failure
from shared.telemetry import annotate, context_from, run_polls, runs_given_up, step_span, time_to_last_artifact

log = logging.getLogger(__name__)

STEP_SECONDS = 60.0  # the most one step spends on Azure OpenAI calls (the GET, the listings)
_EARLY_DELAY_SECONDS = 2  # a message that overtook its step's record write: look again shortly
# An early message whose step never saves the record (it failed for good): after functionTimeout
# that step has certainly ended, so the message is an orphan and is dropped.
MAX_EARLY_LOOKS = math.ceil(DEFAULT_FUNCTION_TIMEOUT_SECONDS / _EARLY_DELAY_SECONDS)
_CHECK_GROWTH = 1.5  # artifact checks start sooner and grow slower than run polls: files land fast
# The completing step's safety net: long after a completing step that runs normally has sent its
# event (a few Storage requests), so a slow step and its safety net do not both send. A completing
# step that finds itself past half of it leaves the event to the safety net.
EVENT_SAFETY_NET_SECONDS = 60
RECORD_LOST = "record_lost"  # the warning of a run whose record was deleted while it was followed


def handle_watch_message(runtime: Runtime, body: bytes, *, message_id: str | None, dequeue_count: int) -> None:
    try:
        message = WatchMessage.from_json(body)
    except InvalidMessage as error:
        log.error("unusable run message %s: %s", message_id, error)
        runtime.status_records.record_invalid_message(
            Failure("invalid_message", str(error), dequeue_count), body, message_id
        )
        return
    Watcher(runtime).handle(message)


def give_up_poisoned_run(runtime: Runtime, body: bytes, *, message_id: str | None) -> None:
    """A watch message moved to the poison queue: every delivery of that step failed. Unless the
    message was a stale duplicate, or names a run the app never recorded, stop following the run
    and send its event, saying why."""
    try:
        message = WatchMessage.from_json(body)
    except InvalidMessage as error:
        runtime.status_records.record_invalid_message(
            Failure("invalid_message", str(error), runtime.max_dequeue_count),
            body,
            message_id,
        )
        return
    reason = f"the run watcher failed {runtime.max_dequeue_count} times in a row; see the log for message {message_id}"
    Watcher(runtime).give_up(message, reason)


def _event_owed(record: RunRecord) -> bool:
    """The completed run's event is still to be sent on the queue or published to the topic."""
    return not record.event_sent or not record.event_published


def poll_delay(settings: Settings, looks: int, growth: float = 2.0) -> int:
    """Seconds before look number ``looks``: grows from the minimum to the maximum."""
    # The exponent is capped: past it every delay is the maximum anyway, and 2.0**1024 overflows.
    delay = settings.poll_min_seconds * growth ** min(max(looks - 1, 0), 40)
    return min(settings.poll_max_seconds, math.ceil(delay))


class Watcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def handle(self, message: WatchMessage) -> None:
        taken = self._record_for(message)
        if taken is None:
            return
        stored, response = taken
        record = stored.record
        if message.seq is not None and not _is_current_step(message, record):
            if message.seq == record.seq + 1 and record.phase != "complete" and message.looks < MAX_EARLY_LOOKS:
                # The step that sent it has not saved the record yet (or is about to fail and
                # be redelivered): come back rather than lose the chain.
                self._send(dataclasses.replace(message, looks=message.looks + 1), _EARLY_DELAY_SECONDS)
            else:
                log.info("run %s: dropping a duplicate watch message (seq %s, now %s)",
                         message.response_id, message.seq, record.seq)
            return
        if record.phase == "complete":
            if _event_owed(record) and self._may_send_event(message, record):
                self._send_event(stored)
            return
        woken_by = context_from(message.trace)
        with step_span("watch_run", parent=context_from(record.trace) or woken_by, link_to=[woken_by],
                       response_id=record.response_id, phase=record.phase, seq=record.seq) as span:
            try:
                if record.phase == "running":
                    self._follow_run(stored, response)
                else:
                    self._follow_artifacts(stored)
            except RecordConflict:
                annotate(span, outcome="duplicate_step")
                log.info("run %s: another instance took this step first", message.response_id)
            except RecordMissing:
                # The message this step sent first finds no record either, and follows the run again.
                annotate(span, outcome="record_missing")
                log.error("run %s: its record was deleted during a step", message.response_id)

    def _record_for(self, message: WatchMessage) -> tuple[Stored, dict[str, Any] | None] | None:
        """The run's record (and the response, when a capture fetched it); None: nothing to follow."""
        if message.capture:
            return self._capture(message)
        found = self.runtime.status_records.runs.read(message.response_id)
        if found is None and message.seq is not None:
            found = self._follow_again(message)  # the record was deleted under a live chain
        return (found if found is not None else self._load_or_start(message)), None

    def give_up(self, message: WatchMessage, reason: str) -> None:
        """Stop following a run (its watcher kept failing): record why and send its event."""
        response_id = message.response_id
        stored = self.runtime.status_records.runs.read(response_id)
        if stored is None:
            # Never recorded (a capture or a wake-up that kept failing): there is no run to give
            # up, and no caller waiting for its event. Importing it follows it.
            log.error("run %s: its watch message failed every delivery, and the app has no record of it; "
                      "nothing is recorded or sent", response_id)
            return
        if message.seq is not None and not _is_current_step(message, stored.record):
            return  # a duplicate of a step that has since been taken: the run is being followed
        if message.seq is None and stored.record.step_token is not None:
            # A wake-up (a webhook, a settled file, a cancel) failed for good, but the run has a
            # chain of its own that goes on: a wake-up only hurried it.
            log.error("run %s: a wake-up failed every delivery; the run's own watch chain goes on", response_id)
            return
        if stored.record.phase == "complete":
            if _event_owed(stored.record) and self._may_send_event(message, stored.record):
                self._send_event(stored)
            return
        record = copy.deepcopy(stored.record)
        record.given_up = reason
        try:
            self._complete(stored, record)
        except RecordConflict:
            log.info("run %s: moved on while being given up; its watcher goes on", response_id)

    # -- steps -------------------------------------------------------------------------------

    def _follow_run(self, stored: Stored, response: dict[str, Any] | None = None) -> None:
        """Look at the run (``response``: already fetched by this step) and act on its status."""
        record = copy.deepcopy(stored.record)
        rid = record.response_id
        if record.claim_to_note is not None:
            # Best effort: until it is noted, a retry of the POST answers 409, never a second run.
            with contextlib.suppress(AzureError):
                self.runtime.status_records.claims.resolve(record.claim_to_note, rid)
                record.claim_to_note = None
        try:
            if response is None:
                response = self.runtime.openai.get_response(rid, deadline=time.monotonic() + STEP_SECONDS / 2)
        except ResponseNotFound:
            record.given_up = "Azure OpenAI has no response with this id (deleted, never stored, or another resource)"
            self._complete(stored, record)
            return
        except (UpstreamError, httpx.TransportError, ClientAuthenticationError) as error:
            # Throttling, an outage, or a role assignment still propagating: look again later.
            log.warning("run %s: could not read the response (%s); looking again later", rid, _describe(error))
            record.polls += 1
            self._again_or_give_up(stored, record, poll_delay(self.runtime.settings, record.polls + 1))
            return

        record.polls += 1
        status = response.get("status")
        record.status = status if isinstance(status, str) else None
        if (created := json_int(response.get("created_at"))) is not None:
            record.response_created_at = created
        if record.status in RUNNING_STATUSES:
            self._again_or_give_up(stored, record, poll_delay(self.runtime.settings, record.polls + 1))
            return

        # Ended, whatever the ending: files made before a failure or a cancel are persisted too.
        record.ended_at = record.ended_at or utc_timestamp()
        delete_inputs(self.runtime.openai, record.input_blobs, rid)  # no longer read by the run
        record.set_output_text(output_text(response))
        record.error = _ending_details(response)
        found, warnings = artifact_messages(
            self.runtime, response, record.input_file_ids, deadline=time.monotonic() + STEP_SECONDS / 2
        )
        # A re-discovery (an import, often after the container expired) may see less than an earlier
        # one did: an artifact once known stays known, and one persisted stays persisted.
        messages = _known_first(record, found)
        record.artifacts = [message.describe() for message in messages]
        # Discovery's warnings are this discovery's; a lost record stays said until an import.
        record.warnings = [w for w in record.warnings if w.get("code") == RECORD_LOST] + warnings
        record.phase = "persisting"
        queued = fan_out(self.runtime, messages, generation=record.generation)
        log.info("run %s ended %s: %d file(s), %d queued", rid, record.status, len(messages), queued)
        if queued:
            self._advance(stored, record, poll_delay(self.runtime.settings, 1, _CHECK_GROWTH))
        else:
            self._follow_artifacts(stored, record)  # nothing to wait for: look now

    def _follow_artifacts(self, stored: Stored, record: RunRecord | None = None) -> None:
        record = copy.deepcopy(stored.record) if record is None else record
        delete_inputs(self.runtime.openai, record.input_blobs, record.response_id)  # any left from before
        states = artifact_states(self.runtime, record)
        counts = count_states(states)
        record.checks += 1
        if counts["pending"] == 0:
            self._complete(stored, record, states)
            return
        delay = poll_delay(self.runtime.settings, record.checks + 1, _CHECK_GROWTH)
        self._again_or_give_up(stored, record, delay, pending=counts["pending"])

    # -- transitions ---------------------------------------------------------------------------

    def _again_or_give_up(self, stored: Stored, record: RunRecord, delay: int, pending: int | None = None) -> None:
        followed = time.time() - record.followed_since
        if followed <= self.runtime.settings.run_max_seconds:
            self._advance(stored, record, delay)
            return
        hours = self.runtime.settings.run_max_seconds / 3600
        if pending is None:
            record.given_up = f"the run was still {record.status} after {hours:g} hours (ARTIFACTS_RUN_MAX_HOURS)"
        else:
            record.given_up = f"{pending} file(s) were still pending after {hours:g} hours (ARTIFACTS_RUN_MAX_HOURS)"
        self._complete(stored, record)

    def _advance(self, stored: Stored, record: RunRecord, delay: int) -> None:
        record.seq = stored.record.seq + 1
        record.step_token = new_step_token()
        self._send(step_message(record), delay)
        self.runtime.status_records.runs.replace(record, stored.etag)

    def _complete(self, stored: Stored, record: RunRecord, states: list[dict[str, Any]] | None = None) -> None:
        """Mark the run complete (one instance wins the write), then send its one event.

        The outcome is frozen in the same write (each artifact's state, and the event id derived
        from it): every copy of the event, and the status API, say the same until an import.
        The safety net goes first: if this delivery dies before it notes the event sent, the
        next step's message sends it; otherwise that message finds the event sent and ends."""
        if record.status not in RUNNING_STATUSES:  # ended (or gone): its uploaded inputs with it
            delete_inputs(self.runtime.openai, record.input_blobs, record.response_id)
        if (left := not_deleted_warning(record.input_blobs)) is not None:
            record.warnings = [*record.warnings, left]
        record.phase = "complete"
        record.completed_at = time.time()
        freeze_outcome(record, artifact_states(self.runtime, record) if states is None else states)
        record.event_sent = False
        record.event_published = self.runtime.event_grid is None  # owed to the topic, when there is one
        record.publish_attempts = 0
        record.seq = stored.record.seq + 1
        record.step_token = new_step_token()
        self._send(step_message(record), EVENT_SAFETY_NET_SECONDS)
        completed = self.runtime.status_records.runs.replace(record, stored.etag)
        _measure_run(record)
        if time.time() - record.completed_at > EVENT_SAFETY_NET_SECONDS / 2:
            log.warning("run %s: marked complete too slowly to race its safety net; it sends the event",
                        record.response_id)
            return
        self._send_event(completed)

    def _may_send_event(self, message: WatchMessage, record: RunRecord) -> bool:
        """Only the completing step's own message sends a run's event (the step is redelivered, or
        its safety net arrives): a wake-up would race the completing step and send a second copy.
        Once the completing step has certainly ended (functionTimeout) without noting the event,
        any message may send it."""
        if message.seq is not None:
            return True  # the current step's message (a stale one was dropped before)
        completed_at = record.completed_at or 0.0
        timeout = self.runtime.host.function_timeout_seconds or DEFAULT_FUNCTION_TIMEOUT_SECONDS
        return time.time() - completed_at > timeout

    def _send_event(self, stored: Stored) -> None:
        """Send the event on the queue unless noted sent, then publish it to the topic unless noted
        published. Each is noted by a conditional write after it succeeded: a step that dies before
        a note leaves it to the safety net (a duplicate with the same id at worst, never none)."""
        if not stored.record.event_sent:
            event = send_event(self.runtime, stored.record)
            counts = (event.data or {}).get("counts")
            log.info("run %s: sent event %s (%s)", stored.record.response_id, event.id, counts)
            record = copy.deepcopy(stored.record)
            record.event_sent = True
            # An import restarted the run meanwhile (its own event follows), or the record was deleted.
            try:
                stored = self.runtime.status_records.runs.replace(record, stored.etag)
            except (RecordConflict, RecordMissing):
                return
        if not stored.record.event_published:
            self._publish_event(stored)

    def _publish_event(self, stored: Stored) -> None:
        """Publish the event to the Event Grid topic. When the topic does not take it, the run's chain
        goes on: the next step's message (the delay growing to ARTIFACTS_POLL_MAX_SECONDS) tries
        again, as long as it takes; the queue's event is not sent again."""
        record = copy.deepcopy(stored.record)
        grid = self.runtime.event_grid
        if grid is None:
            log.warning("run %s: its event was owed to an Event Grid topic no longer set; not published",
                        record.response_id)
            record.event_published = True
        else:
            try:
                event = publish_event(self.runtime, grid, stored.record)
            except AzureError as error:
                record.publish_attempts += 1
                delay = poll_delay(self.runtime.settings, record.publish_attempts + 1)
                log.warning("run %s: the Event Grid topic did not take event %s (attempt %d: %s); trying again in %d s",
                            record.response_id, record.event_id, record.publish_attempts, _describe(error), delay)
                with contextlib.suppress(RecordConflict, RecordMissing):
                    self._advance(stored, record, delay)
                return
            log.info("run %s: published event %s to Event Grid", record.response_id, event.id)
            record.event_published = True
        with contextlib.suppress(RecordConflict, RecordMissing):
            self.runtime.status_records.runs.replace(record, stored.etag)

    def _follow_again(self, message: WatchMessage) -> Stored | None:
        """A step's message found no record. At step 0 the record was never written (the POST's or
        the import's write failed after it sent this message): the run starts here. Later, it was
        deleted while the run was followed: follow the run again from the start, taking this
        message's step, and say so in the record. None: another delivery recreated it first."""
        record = RunRecord.start(message.response_id, "watch", seq=message.seq, step_token=message.token,
                                 owner=message.owner)
        if message.seq != 0:
            log.error("run %s: its record is missing at step %s; following the run again from the start",
                      message.response_id, message.seq)
            record.warnings = [{"code": RECORD_LOST, "problem": (
                f"the run record was missing at step {message.seq}; the run was followed again from the start, "
                "so what the record held before (earlier warnings, the owner if the message had none) is lost")}]
        return self.runtime.status_records.runs.create(record)

    def _send(self, message: WatchMessage, delay: int) -> None:
        self.runtime.queues.send(self.runtime.settings.queues.runs, message.to_json(), delay_seconds=delay)

    def _capture(self, message: WatchMessage) -> tuple[Stored, dict[str, Any] | None] | None:
        """A run a webhook announced that has no record: recorded now for the caller whose
        idempotency claim its create's tag names (that POST never heard the create's answer), else
        (capture ``all``) for nobody if it used the code interpreter. None when there is nothing to
        follow (one GET, nothing recorded), or when the run cannot be read now: then it is looked
        at again later, as the watcher does, for at most ARTIFACTS_RUN_MAX_HOURS."""
        response_id = message.response_id
        stored = self.runtime.status_records.runs.read(response_id)
        if stored is not None:
            return stored, None
        settings = self.runtime.settings
        try:
            response = self.runtime.openai.get_response(response_id, deadline=time.monotonic() + STEP_SECONDS / 2)
        except ResponseNotFound:
            log.info("run %s: announced by a webhook, but Azure OpenAI has no such response", response_id)
            return None
        except (UpstreamError, httpx.TransportError, ClientAuthenticationError) as error:
            # Throttling, an outage, or a role assignment still propagating: look again later.
            looks = message.looks + 1
            waited = sum(max(poll_delay(settings, look), 1) for look in range(1, looks + 1))
            if waited <= settings.run_max_seconds:
                log.warning("run %s: announced by a webhook, but could not be read (%s); looking again later",
                            response_id, _describe(error))
                self._send(WatchMessage(response_id, capture=True, owner=message.owner, looks=looks),
                           poll_delay(settings, looks))
            else:
                log.error("run %s: announced by a webhook, but unreadable for %g hours (%s); not captured "
                          "(ARTIFACTS_RUN_MAX_HOURS): import it to persist its files",
                          response_id, settings.run_max_seconds / 3600, _describe(error))
            return None
        metadata = response.get("metadata")
        claimed = self.runtime.status_records.claims.resolve(
            metadata.get(CLAIM_TAG_KEY) if isinstance(metadata, dict) else None, response_id
        )
        if claimed is None and (settings.webhook_capture != "all" or not used_code_interpreter(response)):
            log.info("run %s: not captured: no claim of the app's names it, and it used no code interpreter or "
                     "ARTIFACTS_WEBHOOK_CAPTURE is not 'all'", response_id)
            return None
        with step_span("capture_run", parent=context_from(message.trace), response_id=response_id):
            record = RunRecord.start(
                response_id,
                WEBHOOK_CAPTURE,
                response_created_at=json_int(response.get("created_at")),
                owner=None if claimed is None else claimed.owner,
            )
        made = self.runtime.status_records.runs.create(record)
        if made is not None:
            return made, response
        again = self.runtime.status_records.runs.read(response_id)  # recorded meanwhile (its POST, another capture)
        if again is None:
            raise RecordConflict(response_id)  # deleted as soon as made: the delivery is tried again
        return again, None

    def _load_or_start(self, message: WatchMessage) -> Stored:
        """The run's record; a watch message for a run never recorded starts following it."""
        response_id = message.response_id
        stored = self.runtime.status_records.runs.read(response_id)
        if stored is not None:
            return stored
        with step_span("follow_run", parent=context_from(message.trace), response_id=response_id):
            started = RunRecord.start(response_id, "watch", owner=message.owner)  # the waking caller's run
        created = self.runtime.status_records.runs.create(started)
        if created is not None:
            return created
        again = self.runtime.status_records.runs.read(response_id)
        if again is None:
            raise RecordConflict(response_id)
        return again


def _measure_run(record: RunRecord) -> None:
    """A run's figures, once: only the instance whose write completed it gets here."""
    run_polls.record(record.polls)
    if record.given_up is not None:
        runs_given_up.add(1)
    if record.ended_at is not None:
        ended = datetime.fromisoformat(record.ended_at.replace("Z", "+00:00"))
        time_to_last_artifact.record(max(0.0, (datetime.now(UTC) - ended).total_seconds()))
    log.info("run %s complete: %d file(s), given up: %s", record.response_id, len(record.artifacts),
             record.given_up is not None,
             extra={"response_id": record.response_id, "outcome": "given_up" if record.given_up else "complete"})


def _is_current_step(message: WatchMessage, record: RunRecord) -> bool:
    """The message the record expects next (a record from before step tokens takes any token)."""
    return message.seq == record.seq and record.step_token in (None, message.token)


def send_first_step(runtime: Runtime, record: RunRecord) -> None:
    """Queue the step a new or restarted record expects, before the record is written (as every
    step is sent before its write). A run still queued or in progress is first looked at one poll
    delay from now; an ended one at once."""
    delay = poll_delay(runtime.settings, 1) if record.status in RUNNING_STATUSES else 0
    runtime.queues.send(runtime.settings.queues.runs, step_message(record).to_json(), delay_seconds=delay)


def step_message(record: RunRecord) -> WatchMessage:
    """The message for the step the record expects next; it carries the owner, since a message
    that finds the record deleted records the run again (and must not record it as nobody's)."""
    return WatchMessage(record.response_id, record.seq, record.step_token, owner=record.owner)


def _known_first(record: RunRecord, found: list[ArtifactMessage]) -> list[ArtifactMessage]:
    """Every artifact the record knew, then those found now for the first time (by file id)."""
    discovered = {message.file_id: message for message in found}
    merged: list[ArtifactMessage] = []
    for known in record.artifacts:
        file_id = str(known.get("file_id"))
        if file_id in discovered:
            merged.append(discovered.pop(file_id))
            continue
        try:  # from the app's own record; checked as any message is, all the same
            merged.append(ArtifactMessage.from_json(json.dumps({**known, "response_id": record.response_id})))
        except InvalidMessage as error:
            log.error("run %s: a known artifact's record is unusable (%s); it is left out", record.response_id, error)
    return merged + [message for message in found if message.file_id in discovered]


def _ending_details(response: dict[str, object]) -> dict[str, object] | None:
    for key in ("error", "incomplete_details"):
        value = response.get(key)
        if isinstance(value, dict) and value:
            return {str(k): v for k, v in list(value.items())[:8] if isinstance(v, (str, int, type(None)))}
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, UpstreamError):
        return f"Azure OpenAI answered {error.status}"
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return f"{type(error).__name__} {error.status_code}"
    return type(error).__name__
