"""The durable record of one run, ``{response_id}/_run.json`` in the status container.

It is the run watcher's state: every change is a conditional write on the blob's ETag, so two
instances handling the same run never both advance it, and any instance can pick a run up where
another left off. ``seq`` numbers the watcher's self-messages: only a message carrying the
current ``seq`` (or none, a wake-up) acts; older ones are duplicates and are dropped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from shared.clock import utc_timestamp
from shared.errors import RecordConflict, RecordMissing
from shared.storage.containers import JSON_CONTENT, ContainerGuard
from shared.telemetry import current_trace_fields

RUN_RECORD = "_run.json"
MAX_OUTPUT_TEXT_CHARS = 32 * 1024  # the record and the status answer stay bounded

Phase = Literal["running", "persisting", "complete"]
RUNNING_STATUSES = ("queued", "in_progress")
WEBHOOK_CAPTURE = "webhook"  # ``started_via`` of a run recorded because its webhook arrived (capture)


def new_step_token() -> str:
    """The token of the next watch message: only the message carrying it takes the step."""
    return uuid.uuid4().hex[:16]


@dataclass
class RunRecord:
    response_id: str
    started_via: str  # "post", "import", "webhook" or "watch" (a hand-written watch message)
    created_at: str  # when the app first recorded the run (UTC)
    followed_since: float  # Unix time the watcher started following (again): ARTIFACTS_RUN_MAX_HOURS counts from it
    phase: Phase = "running"
    seq: int = 0
    step_token: str | None = None  # the token of the watch message sent for step ``seq``
    generation: int = 1  # imports of the same run: each gets its own completion event
    status: str | None = None  # the model's, as last seen
    response_created_at: int | None = None  # the model's (Unix seconds): files older than this are earlier turns'
    ended_at: str | None = None  # when the watcher first saw the run ended
    polls: int = 0  # GETs of the response by the watcher
    checks: int = 0  # looks at the artifacts after the fan-out
    output_text: str | None = None
    output_text_truncated: bool = False
    error: dict[str, Any] | None = None  # the model's error or incomplete_details
    input_file_ids: list[str] = field(default_factory=list)  # the caller's uploads: never persisted
    # The input blobs the POST uploaded ({name, file_id, bytes, deleted}): never persisted, deleted
    # from Azure OpenAI once the run ends (their file ids are in input_file_ids too).
    input_blobs: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    given_up: str | None = None  # why the app stopped following the run before it ended
    completed_at: float | None = None  # Unix time the run was marked complete (its event follows)
    # Each artifact's state when the run was marked complete: the event and the status API say
    # this until an import, whatever lands or fails late (an overlapping delivery of an earlier
    # generation). None until then.
    outcome: list[dict[str, Any]] | None = None
    event_id: str | None = None  # derived from the outcome when the run is marked complete
    event_sent: bool = False
    # False while the event is owed to the Event Grid topic (ARTIFACTS_EVENT_GRID_ENDPOINT) and not yet
    # taken by it; True otherwise (no topic, published, or a record from before the topic existed).
    event_published: bool = True
    publish_attempts: int = 0  # failed publishes of this outcome's event: the retry's delay grows with it
    owner: str | None = None  # the caller who started or imported it (Easy Auth); None: every key holder
    # The tag of an Idempotency-Key claim the POST could not point at this run (a Storage error):
    # the watcher's next step does, then forgets it.
    claim_to_note: str | None = None
    trace: dict[str, str] = field(default_factory=dict)  # the run's W3C trace context: every step continues it

    @classmethod
    def start(cls, response_id: str, started_via: str, **known: Any) -> RunRecord:
        """A new record, its trace the current span's (the POST's, the import's, the capture's)."""
        return cls(response_id=response_id, started_via=started_via, created_at=utc_timestamp(),
                   followed_since=time.time(), trace=current_trace_fields(), **known)

    def restart(self) -> None:
        """Follow the run again from the start (an import): re-discover, re-queue, a new event.
        The artifacts stay: re-discovery adds to them, never forgets one."""
        self.phase = "running"
        self.seq += 1
        self.step_token = new_step_token()
        self.generation += 1
        self.followed_since = time.time()
        self.polls = self.checks = 0
        self.warnings = []
        self.given_up = None
        self.completed_at = None
        self.outcome = None
        self.event_id = None
        self.event_sent = False
        self.event_published = True  # the new outcome's completion says what it owes
        self.publish_attempts = 0
        self.trace = current_trace_fields()  # the new generation is the import's trace

    def set_output_text(self, text: str) -> None:
        self.output_text = text[:MAX_OUTPUT_TEXT_CHARS]
        self.output_text_truncated = len(text) > MAX_OUTPUT_TEXT_CHARS

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> RunRecord:
        document = json.loads(data)
        if not isinstance(document, dict) or not isinstance(document.get("response_id"), str):
            raise ValueError("the run record is not an object with a response_id")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{key: value for key, value in document.items() if key in known})
        except TypeError as error:  # a required field is missing
            raise ValueError(f"the run record is incomplete: {error}") from None


@dataclass(frozen=True)
class Stored:
    record: RunRecord
    etag: str


class RunStore:
    """Run records in the status container, read and written with ETags."""

    def __init__(self, container: ContainerGuard) -> None:
        self._container = container

    def read(self, response_id: str) -> Stored | None:
        blob = self._container.client.get_blob_client(f"{response_id}/{RUN_RECORD}")
        try:
            downloader = blob.download_blob()
        except ResourceNotFoundError:
            return None
        data = downloader.readall()
        return Stored(RunRecord.from_json(data), str(downloader.properties.etag))

    def etag(self, response_id: str) -> str | None:
        """The record blob's ETag, readable or not (an import overwrites a damaged record with it)."""
        blob = self._container.client.get_blob_client(f"{response_id}/{RUN_RECORD}")
        try:
            return str(blob.get_blob_properties().etag)
        except ResourceNotFoundError:
            return None

    def create(self, record: RunRecord) -> Stored | None:
        """Write a new record; None if one exists already (another request made it first)."""
        self._container.ensure()
        blob = self._container.client.get_blob_client(f"{record.response_id}/{RUN_RECORD}")
        try:
            result = blob.upload_blob(record.to_json(), overwrite=False, content_settings=JSON_CONTENT)
        except ResourceExistsError:
            return None
        return Stored(record, str(result["etag"]))

    def replace(self, record: RunRecord, etag: str) -> Stored:
        """Write ``record`` only if the blob is still at ``etag``; else RecordConflict, or
        RecordMissing when the blob is gone (a missing record is no conflict: nobody took the step)."""
        blob = self._container.client.get_blob_client(f"{record.response_id}/{RUN_RECORD}")
        try:
            result = blob.upload_blob(
                record.to_json(),
                overwrite=True,
                content_settings=JSON_CONTENT,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceNotFoundError as error:
            raise RecordMissing(record.response_id) from error
        except (ResourceModifiedError, ResourceExistsError) as error:
            raise RecordConflict(record.response_id) from error
        return Stored(record, str(result["etag"]))
