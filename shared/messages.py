"""The queue messages between the app's steps: JSON objects, schema version 1.

The run watcher's message (queue ``ARTIFACTS_RUNS_QUEUE``)::

    {"v": 1, "response_id": "...", "seq": 3 | null, "token": "..." | null, "capture": false}

``seq`` and ``token`` name the watcher's own next step: only the message whose pair the run
record holds acts, so a step's leftover or duplicate message never starts a second chain. A
message without ``seq`` is a wake-up (an import, a cancel, a webhook, a hand-written message)
that acts on the run at once. ``capture`` (from a webhook in capture-all mode) asks the watcher
to follow a run it has no record of only if the run used the code interpreter.

The artifact message (queue ``ARTIFACTS_QUEUE``), one per file::

    {"v": 1, "response_id": "...", "container_id": "...", "file_id": "...",
     "filename": "real name.png", "blob_name": "{response_id}/{file_id}/{safe name}",
     "mime_type": "image/png" | null, "size": 1234 | null}

Only the three ids are required; ``v`` defaults to 1, ``filename`` to the file id and
``blob_name`` to the one derived from the ids and the filename.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from shared.ids import require_id
from shared.naming import MAX_DISPLAY_NAME_CHARS, blob_name, safe_filename, valid_mime_type

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 48 * 1024  # a Storage queue message is at most 64 KiB after base64
_MAX_TEXT_BYTES = 4 * MAX_DISPLAY_NAME_CHARS + 64  # a bounded name (<= 4 UTF-8 bytes per char) or blob name


class InvalidMessage(ValueError):
    """The message can never be processed: a permanent failure, recorded and not retried."""


@dataclass(frozen=True)
class WatchMessage:
    response_id: str
    seq: int | None = None
    token: str | None = None
    capture: bool = False

    def to_json(self) -> str:
        return json.dumps({"v": SCHEMA_VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: bytes | str) -> WatchMessage:
        data = _object(body)
        try:
            seq = data.get("seq")
            if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
                raise ValueError("seq must be a non-negative integer or null")
            capture = data.get("capture", False)
            if not isinstance(capture, bool):
                raise ValueError("capture must be true or false")
            return cls(
                response_id=require_id(data.get("response_id"), "response_id"),
                seq=seq,
                token=_optional_text(data, "token"),
                capture=capture,
            )
        except ValueError as error:
            raise InvalidMessage(str(error)) from None


@dataclass(frozen=True)
class ArtifactMessage:
    response_id: str
    container_id: str
    file_id: str
    filename: str
    blob_name: str
    mime_type: str | None = None
    size: int | None = None

    def to_json(self) -> str:
        return json.dumps({"v": SCHEMA_VERSION, **asdict(self)}, ensure_ascii=False, separators=(",", ":"))

    def describe(self) -> dict[str, Any]:
        """The artifact as the status API, the run record and the event name it."""
        return {key: value for key, value in asdict(self).items() if key != "response_id"}

    @classmethod
    def from_json(cls, body: bytes | str) -> ArtifactMessage:
        # A hand-written message (a replay, another producer) may leave out the version,
        # the filename and the blob name: they have safe defaults.
        data = _object(body)
        try:
            response_id = require_id(data.get("response_id"), "response_id")
            file_id = require_id(data.get("file_id"), "file_id")
            filename = _text(data, "filename") if data.get("filename") is not None else file_id
            message = cls(
                response_id=response_id,
                container_id=require_id(data.get("container_id"), "container_id"),
                file_id=file_id,
                filename=filename,
                blob_name=(
                    _text(data, "blob_name")
                    if data.get("blob_name") is not None
                    else blob_name(response_id, file_id, safe_filename(filename, file_id))
                ),
                mime_type=valid_mime_type(_optional_text(data, "mime_type")),
                size=_optional_size(data),
            )
        except ValueError as error:
            raise InvalidMessage(str(error)) from None
        message._check_blob_name()
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
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidMessage("message is not valid JSON") from None
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


def _optional_size(data: dict[str, Any]) -> int | None:
    value = data.get("size")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("size must be a non-negative integer or null")
    return value
