"""The queue messages between the app's steps: JSON objects, schema version 1.

The run watcher's message (queue ``ARTIFACTS_RUNS_QUEUE``)::

    {"v": 1, "response_id": "...", "seq": 3 | null, "token": "..." | null, "capture": false,
     "owner": "aad:..." (optional), "looks": 2 (optional)}

``seq`` and ``token`` name the watcher's own next step: only the message whose pair the run
record holds acts, so a step's leftover or duplicate message never starts a second chain. A
message without ``seq`` is a wake-up (an import, a cancel, a webhook, a hand-written message)
that acts on the run at once. ``capture`` (from a webhook in capture-all mode) asks the watcher
to follow a run it has no record of only if the run used the code interpreter; ``looks`` counts
the capture's earlier looks that could not read the run (it looks again later, as the watcher
does). ``owner`` is the caller a wake-up acts for: a run this message is the first to record is
recorded with that owner, so a wake-up never records someone's run as nobody's.

The artifact message (queue ``ARTIFACTS_QUEUE``), one per file::

    {"v": 1, "response_id": "...", "container_id": "...", "file_id": "...",
     "filename": "real name.png", "blob_name": "{response_id}/{file_id}/{safe name}",
     "mime_type": "image/png" | null, "size": 1234 | null}

A generated image (the image_generation tool's result, not a container file) carries
``"source": "image_generation"``, ``"container_id": null`` and its call id as ``file_id``; a
container file may carry ``"source": "container"`` (the default when it is left out).

Only the three ids are required (the container id only for a container file); ``v`` defaults
to 1, ``filename`` to the file id and ``blob_name`` to the one derived from the ids and the
filename. ``filename`` is read as the one stored name (``naming.display_name``), and a message
that names its blob is read with the blob name's last segment as its filename, so message, blob,
metadata, status and event carry one name. ``"auth_waits": 2`` appears only on a message the app
sent again while Storage or Azure OpenAI refused it access (see
``shared.pipeline.persist``): how many times it has waited so far; ``"throttle_waited": 180`` on one sent
again while Azure OpenAI kept throttling its download: the seconds it has waited so far.
``"queued": 50, "generation": 1`` (from the fan-out) say how many files it queued for that run
and which generation of the run (an import starts the next) they belong to: the delivery that
settles the last of them wakes the watcher (see ``shared.pipeline.persist``). Messages without them never do.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidMessage
from shared.ids import require_id
from shared.json_values import json_int_in, parse_json
from shared.limits import MAX_MESSAGE_BYTES, QUEUE_MAX_VISIBILITY_SECONDS
from shared.storage.naming import MAX_DISPLAY_NAME_CHARS, blob_name, display_name, safe_filename, valid_mime_type
from shared.telemetry import TRACE_FIELDS, current_trace_fields

SCHEMA_VERSION = 1

_MAX_COUNT = 1000  # far above any count the app writes
_MAX_RUN_NUMBER = 10**9  # a run's files queued, or its generation: far above any the app writes
_MAX_LOOKS = 100_000  # a capture's looks: one per poll interval for ARTIFACTS_RUN_MAX_HOURS
_MAX_OWNER_CHARS = 300  # "{identity provider}:{principal id}", each part bounded by shared.api.callers
_MAX_TEXT_BYTES = 4 * MAX_DISPLAY_NAME_CHARS + 64  # a bounded name (<= 4 UTF-8 bytes per char) or blob name
SOURCE_CONTAINER = "container"  # a file in a tool's container (code interpreter, hosted shell)
SOURCE_IMAGE_GENERATION = "image_generation"  # an image_generation_call's result, decoded from the response
SOURCES = (SOURCE_CONTAINER, SOURCE_IMAGE_GENERATION)


@dataclass(frozen=True)
class WatchMessage:
    response_id: str
    seq: int | None = None
    token: str | None = None
    capture: bool = False
    owner: str | None = None  # the caller a record made by this message belongs to (None: every key holder)
    looks: int = 0  # a capture's earlier looks that could not read the run
    trace: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # the sender's W3C context

    def to_json(self) -> str:
        data: dict[str, Any] = {"v": SCHEMA_VERSION, "response_id": self.response_id, "seq": self.seq,
                                "token": self.token, "capture": self.capture}
        if self.owner is not None:
            data["owner"] = self.owner
        if self.looks:
            data["looks"] = self.looks
        return json.dumps({**data, **current_trace_fields()}, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: bytes | str) -> WatchMessage:
        data = _object(body)
        try:
            seq = data.get("seq")
            if seq is not None and json_int_in(seq, 0) is None:
                raise ValueError("seq must be a non-negative integer or null")
            capture = data.get("capture", False)
            if not isinstance(capture, bool):
                raise ValueError("capture must be true or false")
            return cls(
                response_id=require_id(data.get("response_id"), "response_id"),
                seq=seq,
                token=_optional_text(data, "token"),
                capture=capture,
                owner=_owner(data),
                looks=_count(data, "looks", _MAX_LOOKS),
                trace=_trace(data),
            )
        except ValueError as error:
            raise InvalidMessage(str(error)) from None


def _owner(data: dict[str, Any]) -> str | None:
    value = data.get("owner")
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_OWNER_CHARS or not value.isprintable():
        raise ValueError(f"owner must be a printable string of at most {_MAX_OWNER_CHARS} characters, or null")
    return value


@dataclass(frozen=True)
class ArtifactMessage:
    response_id: str
    container_id: str | None  # None only for a generated image (no container)
    file_id: str
    filename: str
    blob_name: str
    mime_type: str | None = None
    size: int | None = None
    auth_waits: int = 0  # waits so far for access to be granted (role assignments propagating)
    throttle_waited: int = 0  # seconds waited so far on the queue for Azure OpenAI's throttling to clear
    queued: int | None = None  # files the fan-out queued for the run with this one (None: not from a fan-out)
    generation: int | None = None  # the run's generation that queued it (each import starts the next)
    # False when the message left out its blob name (a hand-written one with the ids): the artifact
    # may be stored under another name, so it is looked up by ids before anything is downloaded.
    names_blob: bool = field(default=True, compare=False)
    trace: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # the sender's W3C context
    source: str = SOURCE_CONTAINER  # one of SOURCES: where the bytes come from

    def to_json(self) -> str:
        data: dict[str, Any] = {"v": SCHEMA_VERSION, **self.describe(), "response_id": self.response_id}
        if not self.names_blob:
            del data["blob_name"]  # still derived from the ids when read, and still looked up by them
        if self.auth_waits:
            data["auth_waits"] = self.auth_waits
        if self.throttle_waited:
            data["throttle_waited"] = self.throttle_waited
        if self.queued is not None and self.generation is not None:
            data.update(queued=self.queued, generation=self.generation)
        data.update(current_trace_fields())
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    def describe(self) -> dict[str, Any]:
        """The artifact as the status API, the run record and the event name it."""
        return {
            "container_id": self.container_id,
            "file_id": self.file_id,
            "filename": self.filename,
            "blob_name": self.blob_name,
            "mime_type": self.mime_type,
            "size": self.size,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, body: bytes | str) -> ArtifactMessage:
        # A hand-written message (a replay, another producer) may leave out the version,
        # the filename and the blob name: they have safe defaults.
        data = _object(body)
        try:
            response_id = require_id(data.get("response_id"), "response_id")
            file_id = require_id(data.get("file_id"), "file_id")
            # The one stored name (a hand-written name is made safe the way discovery makes it).
            filename = display_name(_text(data, "filename"), file_id) if data.get("filename") is not None else file_id
            source = data.get("source", SOURCE_CONTAINER)
            if source not in SOURCES:
                raise ValueError(f"source must be one of {', '.join(SOURCES)}")
            if source == SOURCE_IMAGE_GENERATION and data.get("container_id") is not None:
                raise ValueError("container_id must be null for a generated image")
            message = cls(
                response_id=response_id,
                source=source,
                container_id=(
                    require_id(data.get("container_id"), "container_id") if source == SOURCE_CONTAINER else None
                ),
                file_id=file_id,
                filename=filename,
                blob_name=(
                    _text(data, "blob_name")
                    if data.get("blob_name") is not None
                    else blob_name(response_id, file_id, filename)
                ),
                mime_type=valid_mime_type(_optional_text(data, "mime_type")),
                size=_optional_size(data),
                auth_waits=_count(data, "auth_waits"),
                throttle_waited=_count(data, "throttle_waited", QUEUE_MAX_VISIBILITY_SECONDS),
                queued=_positive_or_none(data, "queued"),
                generation=_positive_or_none(data, "generation"),
                names_blob=data.get("blob_name") is not None,
                trace=_trace(data),
            )
        except ValueError as error:
            raise InvalidMessage(str(error)) from None
        message._check_blob_name()
        leaf = message.blob_name.rpartition("/")[2]
        if message.names_blob and message.filename != leaf:
            message = dataclasses.replace(message, filename=leaf)  # one name: the blob's, everywhere
        return message

    def _check_blob_name(self) -> None:
        """The blob name must stay inside this artifact's own folder: a message cannot aim elsewhere."""
        prefix = f"{self.response_id}/{self.file_id}/"
        leaf = self.blob_name[len(prefix):]
        if not self.blob_name.startswith(prefix) or not leaf or safe_filename(leaf, "") != leaf:
            raise InvalidMessage("blob_name must be '{response_id}/{file_id}/{safe filename}'")


def _object(body: bytes | str) -> dict[str, Any]:
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidMessage("message is too large")
    try:
        data = parse_json(body)
    except ValueError as error:  # not JSON, or nested too deep
        raise InvalidMessage(f"message {error}") from None
    if not isinstance(data, dict):
        raise InvalidMessage("message must be a JSON object")
    if data.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise InvalidMessage(f"message schema version must be {SCHEMA_VERSION}")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > _MAX_TEXT_BYTES:
        raise ValueError(f"{key} must be a non-empty string of bounded length")
    return value


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 255:
        raise ValueError(f"{key} must be a short string or null")
    return value


def _trace(data: dict[str, Any]) -> dict[str, str]:
    """The W3C trace context a message carries (ignored if malformed: it only links telemetry)."""
    return {key: value[:512] for key in TRACE_FIELDS if isinstance(value := data.get(key), str)}


def _count(data: dict[str, Any], key: str, most: int = _MAX_COUNT) -> int:
    value = data.get(key, 0)
    number = json_int_in(value, 0, most)
    if number is None:
        raise ValueError(f"{key} must be an integer from 0 to {most}")
    return number


def _positive_or_none(data: dict[str, Any], key: str) -> int | None:
    return _optional_int(data, key, 1, _MAX_RUN_NUMBER, f"an integer from 1 to {_MAX_RUN_NUMBER}")


def _optional_size(data: dict[str, Any]) -> int | None:
    return _optional_int(data, "size", 0, None, "a non-negative integer")


def _optional_int(data: dict[str, Any], key: str, least: int, most: int | None, what: str) -> int | None:
    """``data[key]``: null, or an integer (never a bool) from ``least`` to ``most`` (None: no bound)."""
    value = data.get(key)
    if value is None:
        return None
    number = json_int_in(value, least, most)
    if number is None:
        raise ValueError(f"{key} must be {what} or null")
    return number
