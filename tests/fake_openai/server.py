"""A fake Azure OpenAI v1 endpoint: real HTTP on loopback, standard library only.

Routes (every one wants the ``api-key`` header or an accepted bearer token):

- ``POST /openai/v1/responses``: a run. Synchronous runs answer their final object;
  ``background: true`` runs answer ``queued`` at once (and need ``store`` not false).
  ``metadata`` (at most 16 string pairs, keys up to 64 characters, values up to 512) is
  stored with the response and answered by every retrieval, as the Responses API does.
  :meth:`FakeAzureOpenAI.lose_next_create_answer` and :meth:`FakeAzureOpenAI.hold_next_create_answer`
  make the run and then lose its answer (the connection dropped, or the answer held past the
  client's timeout): the client cannot tell whether the run started.
- ``GET /openai/v1/responses/{id}``: a stored response (``store`` not false) as it is now:
  a background run answers ``queued``, then ``in_progress``, for its scenario's
  ``polls_before_done`` GETs (or until its ``seconds_before_done`` have passed), then its
  final object.
- ``POST /openai/v1/responses/{id}/cancel``: stops a background run that is still going.
- ``GET /openai/v1/containers/{cid}/files[/{fid}[/content]]``: container files.
- ``POST /openai/v1/dashboard/webhook_endpoints``: register a webhook endpoint (``name``,
  ``url``, ``event_types``); the answer carries its ``signing_secret``, the only time it is shown.
  ``GET`` lists them (newest first, ``limit``/``after``), ``GET``/``POST``/``DELETE .../{id}``
  retrieve, update and delete one (see :mod:`tests.fake_openai.webhooks` for the wire format).
- ``POST /_fake/containers``: test set-up from another process (see :func:`_seed_container`).
- ``POST /_fake/scenarios``: register a scenario from another process (see :func:`_seed_scenario`).
- ``GET /_fake/webhooks/deliveries``: every webhook delivery attempt so far (benchmarks).

When a background run ends (its polls, :meth:`FakeAzureOpenAI.finish`, a cancel, or its
``seconds_before_done``), the fake sends ``response.<status>`` to every endpoint registered for
that type, signed with that endpoint's secret, from a thread of its own, retrying a failed
delivery a few times (see :mod:`tests.fake_openai.deliveries`). Tests register endpoints with
:meth:`FakeAzureOpenAI.register_webhook`, wait with :meth:`FakeAzureOpenAI.wait_for_deliveries`
and send hand-made (badly signed, stale, duplicate...) ones with
:meth:`FakeAzureOpenAI.send_webhook`.

It enforces the real endpoint's rules that have bitten us: the container routes want
``api-version=preview`` and nothing else (the responses routes take none, ``preview`` or
``v1``), an API key is never accepted as a bearer token, the classic
``/openai/files/{id}/content`` route does not know container files, an expired container
answers 400 "Container is expired.", and a run whose ``previous_response_id`` names a run
with containers adds its files to that run's first container instead of a new one.

Tests describe what a run produced with a :class:`Scenario` and register it under the
prompt that triggers it. Any other prompt gets the scenario it names (``fake:in-progress:5``
written in it; the names are in :mod:`tests.fake_openai.scenarios`), else the fake's
``default_scenario`` (:func:`demo_scenario`, the sales chart, unless told otherwise). A scenario
describes one run: its containers become the run's containers.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import math
import mimetypes
import os
import posixpath
import re
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from tests.fake_openai import scenarios
from tests.fake_openai.deliveries import Deliverer, RetryPolicy, WebhookDelivery
from tests.fake_openai.errors import FakeApiError, object_not_found
from tests.fake_openai.errors import azure_error as _azure_error
from tests.fake_openai.errors import invalid_request as _invalid_request
from tests.fake_openai.errors import not_found as _not_found
from tests.fake_openai.paging import MAX_LIST_LIMIT, cursor_page, requested_limit
from tests.fake_openai.webhooks import (
    RESPONSE_EVENT_TYPES,
    EndpointRegistry,
    new_webhook_id,
    signed_headers,
)
from tests.fake_openai.webhooks import event_body as webhook_event_body

__all__ = [
    "CreateFault",
    "FakeApiError",
    "FakeAzureOpenAI",
    "FakeContainer",
    "FakeFile",
    "FakeImage",
    "RecordedRequest",
    "Scenario",
    "SlowBody",
    "demo_scenario",
    "named_scenario",
    "png_bytes",
]

CiteMode = Literal["real", "placeholder", "both"]

CHUNK_SIZE = 64 * 1024
CONTAINER_API_VERSION = "preview"
# api-version values the v1 responses route tolerates; a dated one is refused.
RESPONSES_API_VERSIONS = frozenset({"preview", "v1"})
# How a run can end; a background run is "queued", then "in_progress", before that.
FINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})
METADATA_MAX_PAIRS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512
# running_left of a run that polls never end: no test polls this often.
_UNTIL_STOPPED = sys.maxsize

# Azure OpenAI routes the image_generation tool to the image model deployment this header names;
# a create with the tool and without it answers 400.
IMAGE_DEPLOYMENT_HEADER = "x-ms-oai-image-generation-deployment"
IMAGE_FORMATS = ("png", "webp", "jpeg", "gif", "svg")  # the SDK's ImageGenerationCall.output_format

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your resource."
)


@dataclass
class FakeFile:
    content: bytes
    path: str  # e.g. "/mnt/data/sales chart.png"; the filename is its basename
    source: str = "assistant"  # "assistant" or "user"
    # How the final message cites the file: "real" (annotation filename = basename),
    # "placeholder" (f"{file_id}{ext}", as Azure sometimes does), "both" (placeholder
    # first, then real), or None (not cited).
    cite: CiteMode | None = "real"
    file_id: str = ""  # "cfile_" + 32 hex when left empty
    # Unix seconds; when left 0, the creation time of the run that makes the file (or of
    # add_container), so a file is never older than its response.
    created_at: int = 0
    # Its content route answers this status every time (404: the file is gone; 429 or 5xx: the
    # service failing), while the file is listed and cited as usual. None: it downloads.
    download_error: int | None = None

    @property
    def filename(self) -> str:
        return posixpath.basename(self.path)


@dataclass
class UploadedFile:
    """A file uploaded through ``POST /openai/v1/files``, as received, byte for byte."""

    file_id: str
    filename: str
    purpose: str
    content: bytes
    content_type: str
    created_at: int
    chunks: int  # how many chunks the request body came in (0: it had a Content-Length)
    deleted: bool = False

    def view(self) -> dict[str, Any]:
        """As the files API answers it (the SDK's ``FileObject``)."""
        return {"id": self.file_id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


# Purposes the files API accepts on an upload.
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "evals", "user_data", "vision")


@dataclass
class FakeContainer:
    files: list[FakeFile]
    container_id: str = ""  # "cntr_" + 32 hex when left empty
    expired: bool = False
    # The 2025 preview shape: the code_interpreter_call item carries
    # "results": [{"type": "files", "files": [...]}] and the message cites nothing.
    legacy_results: bool = False
    # The tool that worked in it: "code_interpreter" (a code_interpreter_call item), or "shell"
    # (the hosted shell tool: a shell_call whose environment is a container_reference, and its
    # shell_call_output).
    tool: Literal["code_interpreter", "shell"] = "code_interpreter"


@dataclass
class FakeImage:
    """An image the image_generation tool made: an image_generation_call item, the image in ``result``
    as base64 (never a container file)."""

    content: bytes
    # On the item as the SDK types it; None leaves it out (the tool's config, else png, applies).
    output_format: str | None = "png"
    call_id: str = ""  # "ig_" + 32 hex when left empty
    revised_prompt: str = "A bar chart of sales by region, flat colours."
    status: str = "completed"  # "completed" with a result; "failed" or "generating" without one


@dataclass
class Scenario:
    containers: list[FakeContainer]
    output_text: str = "Here are your files."
    # The final status: "completed", "incomplete", "failed" or "cancelled". Every one keeps
    # the output items, since a run that stops after making files still made them.
    status: str = "completed"
    # Background runs only: how many GETs answer the run as still going (the first
    # "queued", the next ones "in_progress") before the final object.
    polls_before_done: int = 0
    # Background runs only: the run ends by itself this many seconds after it was created,
    # with nobody polling (its webhooks go out then). With polls_before_done also set, the
    # first to come ends it; with polls_before_done 0, only the time, finish() or a cancel.
    seconds_before_done: float | None = None
    # Images the image_generation tool made (the request must carry the tool and the header).
    images: list[FakeImage] = field(default_factory=list)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    chunks: int = 0  # how many chunks a chunked body came in (0: it had a Content-Length)


@dataclass
class _Fault:
    path_contains: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    remaining: int


@dataclass
class SlowBody:
    """One download the fake sends slowly (a trickle, or a pause until released), as it went.

    ``paused`` is set when a held body reaches its pause; ``ended`` once the body is sent whole
    (``whole``) or the client went away first; ``sent`` counts the body bytes written.
    """

    total: int = 0
    sent: int = 0
    whole: bool = False
    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let a held body go on."""
        self.resume.set()


HOLD_LIMIT_SECONDS = 60.0  # a held body the test never releases goes on by itself after this


@dataclass
class _Cut:
    after_bytes: int
    remaining: int
    stall_seconds: float | None = None  # None: close the connection; else pause, then go on
    announce_length: bool = True
    trickle_seconds: float | None = None  # send the body one byte at a time, this far apart
    slow: SlowBody | None = None  # a trickle's or a hold's record (a hold: no stall_seconds, no trickle)


class CreateFault:
    """A create request that reaches the fake and makes its run, whose answer is then lost.

    ``response_id`` is the run's id once it is made. A held answer waits for :meth:`release`
    (sent late: the client may have given up) or :meth:`drop` (the connection closes unanswered).
    """

    def __init__(self, held: bool) -> None:
        self.held = held
        self.response_id: str | None = None
        self._made = threading.Event()
        self._decided = threading.Event()
        self._answer = False  # a lost answer is dropped at once; a held one waits for release()

    def wait_made(self, timeout: float = 30.0) -> str:
        """The id of the run the create made; TimeoutError if no create came within ``timeout`` s."""
        if not self._made.wait(timeout) or self.response_id is None:
            raise TimeoutError("no create request reached the fake")
        return self.response_id

    def release(self) -> None:
        """Send the held answer now."""
        self._answer = True
        self._decided.set()

    def drop(self) -> None:
        """Close the held connection without an answer."""
        self._answer = False
        self._decided.set()

    def _note_made(self, response_id: str) -> None:
        self.response_id = response_id
        self._made.set()

    def _answers(self) -> bool:
        """Whether the handler sends the answer (after waiting for a held one's decision)."""
        if self.held and not self._decided.wait(_HELD_ANSWER_SECONDS):
            return False  # nobody decided: the client is long gone
        return self._answer


_HELD_ANSWER_SECONDS = 300.0  # a held answer nobody releases is dropped after this


@dataclass(frozen=True)
class _CreateRequest:
    """What a valid create request asks for."""

    model: str
    prompts: list[str]
    file_ids: list[str]
    background: bool
    stored: bool
    previous_response_id: str | None


@dataclass
class _Run:
    """A created response; the lock guards every field that changes."""

    response_id: str
    body: dict[str, Any]  # the request, for the fields a response echoes
    model: str
    created_at: int
    status: str  # the final status, from the scenario
    output: list[dict[str, Any]]  # the final output items, built once so their ids are stable
    usage: dict[str, Any]
    background: bool
    container_ids: list[str]
    running_left: int  # GETs still to answer "queued"/"in_progress"
    ended_at: int | None  # when the run stopped running (completed_at, if it completed)
    polls: int = 0  # GETs answered
    cancelled: bool = False
    ends_after: float | None = None  # seconds_before_done, for a background run
    announced: bool = False  # its webhook event has been handed to the deliverer


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _now() -> int:
    """Unix seconds: the fake's one clock, so a test can move it."""
    return int(time.time())


def _response_not_found(response_id: str) -> FakeApiError:
    return object_not_found(f"Response with id '{response_id}' not found.")


def _mime_type(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def png_bytes(width: int = 24, height: int = 16) -> bytes:
    """A small valid RGB PNG (a bar chart of sorts), built with zlib and struct."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bar_heights = [(3 + 5 * column) % height for column in range(width)]
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type "None" for this scanline
        for x in range(width):
            filled = height - 1 - y < bar_heights[x]
            rows += bytes((40, 110, 200)) if filled else bytes((255, 255, 255))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")
    )


def demo_scenario() -> Scenario:
    """What an unregistered prompt produces: a chart, a cited CSV, an uncited summary and an input."""
    return Scenario(
        containers=[
            FakeContainer(
                files=[
                    FakeFile(content=png_bytes(), path="/mnt/data/sales chart.png"),
                    FakeFile(
                        content=b"region,sales\nnorth,120\nsouth,95\n",
                        path="/mnt/data/sales_by_region.csv",
                    ),
                    FakeFile(
                        content=b"# Summary\n\nNorth outsold south.\n",
                        path="/mnt/data/summary.md",
                        cite=None,
                    ),
                    # An input the user uploaded: listed by the container, never to be persisted.
                    FakeFile(
                        content=b"region,sales\nnorth,120\nsouth,95\n",
                        path="/mnt/data/input_sales.csv",
                        source="user",
                        cite=None,
                    ),
                ]
            )
        ],
        output_text="Here is the sales chart and the data behind it.",
    )


def named_scenario(spec: str) -> Scenario:
    """The run a scenario name asks for (``scenarios.NAMES``), built afresh: new ids every time.
    ValueError for a name the fake does not know."""
    chosen = scenarios.parse(spec)
    scenario = demo_scenario()
    if chosen.name == "in-progress":
        scenario.polls_before_done = _UNTIL_STOPPED if chosen.number is None else chosen.number
    elif chosen.name == "no-files":
        scenario = Scenario([FakeContainer([])], output_text="I looked at the numbers; no file was needed.")
    elif chosen.name == "failing-file":
        status = 404 if chosen.number is None else chosen.number
        if not 400 <= status <= 599:
            raise ValueError("failing-file takes an HTTP error status, 400 to 599")
        scenario.containers[0].files.append(
            FakeFile(b"never delivered", "/mnt/data/forecast.xlsx", download_error=status)
        )
        scenario.output_text += " The forecast is in a spreadsheet."
    elif chosen.name == "expired":
        scenario.containers[0].expired = True
    elif chosen.name == "shell-file":
        report = FakeFile(b"%PDF-1.4\n% a fake report\n", "/mnt/data/report.pdf", cite=None)
        scenario = Scenario([FakeContainer([report], tool="shell")], output_text="The report is ready.")
    elif chosen.name == "generated-image":
        scenario.images.append(FakeImage(png_bytes(64, 48)))
        scenario.output_text += " I also drew a poster of the results."
    return scenario


def _fill_file(file: FakeFile, created_at: int | None = None) -> None:
    """Give ``file`` an id; and a creation time, once the moment that makes it is known.

    Registration passes no time: a scenario may wait long before its run, and a file must
    not look older than the response that made it.
    """
    if not file.file_id:
        file.file_id = _new_id("cfile_")
    if created_at is not None and not file.created_at:
        file.created_at = created_at


def _fill_container(container: FakeContainer, created_at: int | None = None) -> None:
    if not container.container_id:
        container.container_id = _new_id("cntr_")
    for file in container.files:
        _fill_file(file, created_at)


def _fill_images(scenario: Scenario) -> None:
    for image in scenario.images:
        if not image.call_id:
            image.call_id = _new_id("ig_")


def _add_input_files(
    container: FakeContainer, file_ids: list[str], created_at: int, uploads: dict[str, UploadedFile] | None = None,
) -> None:
    """The request's file_ids, as the user files the container was started with (``source: user``):
    an uploaded file with its name and bytes, any other id as a stand-in."""
    for input_id in file_ids:
        uploaded = (uploads or {}).get(input_id)
        path = f"/mnt/data/{uploaded.filename}" if uploaded else f"/mnt/data/{input_id}.bin"
        if not any(f.path == path for f in container.files):
            content = uploaded.content if uploaded else b"user input"
            user_file = FakeFile(content=content, path=path, source="user", cite=None)
            _fill_file(user_file, created_at)
            container.files.append(user_file)


def _check_scenario(scenario: Scenario) -> None:
    # Caught at registration, where the test's mistake is, not at a run in another thread.
    if scenario.status not in FINAL_STATUSES:
        raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, not {scenario.status!r}")
    if scenario.polls_before_done < 0:
        raise ValueError("polls_before_done must not be negative")
    seconds = scenario.seconds_before_done
    if seconds is not None and not 0 <= seconds < math.inf:
        raise ValueError("seconds_before_done must be None or a finite number of seconds, not negative")


def _file_object(container: FakeContainer, file: FakeFile) -> dict[str, Any]:
    return {
        "id": file.file_id,
        "object": "container.file",
        "bytes": len(file.content),
        "container_id": container.container_id,
        "created_at": file.created_at,
        "path": file.path,
        "source": file.source,
    }


def _last_input_texts(request_input: object) -> list[str]:
    """The texts a prompt may be matched against: the string input, or the last item's text."""
    if isinstance(request_input, str):
        return [request_input]
    if not isinstance(request_input, list) or not request_input:
        return []
    last = request_input[-1]
    if not isinstance(last, dict):
        return []
    content = last.get("content")
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        texts = [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
        if len(texts) > 1:
            texts.append("".join(texts))
    if isinstance(last.get("text"), str):
        texts.append(last["text"])
    return texts


def _code_interpreter_file_ids(body: dict[str, Any]) -> list[str]:
    """Validate the request's tools and include; return the container's file_ids."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        raise _invalid_request("Missing required parameter: 'tools'.", "tools", "missing_required_parameter")
    tool = next((t for t in tools if isinstance(t, dict) and t.get("type") == "code_interpreter"), None)
    if tool is None:
        raise _invalid_request("A 'code_interpreter' tool is required.", "tools", "missing_required_parameter")
    container = tool.get("container")
    if not isinstance(container, dict) or container.get("type") != "auto":
        raise _invalid_request(
            "The code_interpreter tool needs container {'type': 'auto'}.", "tools[].container", "invalid_value"
        )
    file_ids = container.get("file_ids", [])
    if file_ids is None:
        file_ids = []
    if not isinstance(file_ids, list) or not all(isinstance(fid, str) for fid in file_ids):
        raise _invalid_request("'file_ids' must be a list of strings.", "tools[].container.file_ids", "invalid_type")
    include = body.get("include")
    if not isinstance(include, list) or "code_interpreter_call.outputs" not in include:
        raise _invalid_request("'include' must contain 'code_interpreter_call.outputs'.", "include", "invalid_value")
    return list(file_ids)


def _storage_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """``(background, stored)``; a background run must be stored, or nobody could fetch it."""
    background = body.get("background")
    if background is not None and not isinstance(background, bool):
        raise _invalid_request("'background' must be a boolean.", "background", "invalid_type")
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise _invalid_request("'store' must be a boolean.", "store", "invalid_type")
    stored = store is not False
    if background and not stored:
        raise _invalid_request("Background mode requires 'store' to be true.", "store", "invalid_value")
    return bool(background), stored


def _check_metadata(metadata: object) -> None:
    """The Responses API's limits: at most 16 pairs, string keys up to 64 characters, string
    values up to 512."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise _invalid_request("Invalid type for 'metadata': expected an object.", "metadata", "invalid_type")
    if len(metadata) > METADATA_MAX_PAIRS:
        raise _invalid_request(
            f"Invalid 'metadata': too many properties. Expected an object with at most {METADATA_MAX_PAIRS} "
            f"properties, but got an object with {len(metadata)} properties instead.",
            "metadata", "object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY:
            raise _invalid_request(
                f"Invalid 'metadata': key too long. Expected keys of at most {METADATA_MAX_KEY} characters.",
                "metadata", "string_above_max_length",
            )
        if not isinstance(value, str):
            raise _invalid_request(f"Invalid type for 'metadata.{key}': expected a string.",
                                   f"metadata.{key}", "invalid_type")
        if len(value) > METADATA_MAX_VALUE:
            raise _invalid_request(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{METADATA_MAX_VALUE}, but got a string with length {len(value)} instead.",
                f"metadata.{key}", "string_above_max_length",
            )


def _parse_create(body: dict[str, Any]) -> _CreateRequest:
    """Validate a create request as the real endpoint does; nothing is changed yet."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid_request("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    request_input = body.get("input")
    if not isinstance(request_input, (str, list)):
        raise _invalid_request("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if body.get("stream"):
        raise _invalid_request("The fake does not stream; send stream: false.", "stream", "unsupported_value")
    file_ids = _code_interpreter_file_ids(body)
    _check_metadata(body.get("metadata"))
    background, stored = _storage_flags(body)
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise _invalid_request("'previous_response_id' must be a string.", "previous_response_id", "invalid_type")
    return _CreateRequest(model, _last_input_texts(request_input), file_ids, background, stored, previous)


class FakeAzureOpenAI:
    """The fake endpoint. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        api_key: str = "test-key",
        bearer_tokens: Iterable[str] = ("test-token",),
        page_size: int = 2,
        port: int = 0,
        *,
        webhook_retries: int = 3,
        webhook_backoff_seconds: float = 0.05,
        webhook_timeout_seconds: float = 10.0,
        default_scenario: str = scenarios.DEFAULT,
    ) -> None:
        """``default_scenario``: what a prompt that is neither registered nor names a scenario gets
        (a name from ``scenarios.NAMES``, e.g. ``in-progress:5``)."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if webhook_retries < 0 or webhook_backoff_seconds < 0 or webhook_timeout_seconds <= 0:
            raise ValueError("webhook retries and backoff must not be negative, the timeout must be positive")
        named_scenario(default_scenario)  # a name the fake does not know fails here, not at the first run
        self.default_scenario = default_scenario
        self.api_key = api_key
        self.bearer_tokens = frozenset(bearer_tokens)
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        self.last_response_body: dict[str, Any] | None = None
        self._port = port
        self._lock = threading.Lock()
        self._scenarios: dict[str, Scenario] = {}
        self._containers: dict[str, FakeContainer] = {}
        self._runs: dict[str, _Run] = {}  # stored responses only: store false ones are not kept
        self._created = 0
        self._faults: list[_Fault] = []
        self._cuts: list[_Cut] = []
        self._slow_bodies: list[SlowBody] = []  # held or trickling now: released when faults are cleared
        self._create_faults: list[CreateFault] = []  # creates whose answer is to be lost
        self._held_creates: list[CreateFault] = []  # taken by a create, answer still held
        self._connections: set[socket.socket] = set()
        self._server: _FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._webhook_endpoints = EndpointRegistry()
        self._deliverer = Deliverer(RetryPolicy(webhook_retries, webhook_backoff_seconds, webhook_timeout_seconds),
                                    self._webhook_endpoints.url_of)
        self._timers: dict[str, threading.Timer] = {}  # response id -> its seconds_before_done clock
        self.uploads: dict[str, UploadedFile] = {}  # POST /openai/v1/files, by file id (deleted ones kept, marked)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeAzureOpenAI:
        if self._server is not None:
            raise RuntimeError("already started")
        server = _FakeHTTPServer(("127.0.0.1", self._port), _Handler, self)
        self._server = server
        self._deliverer.open()
        # A short poll keeps stop() quick: shutdown() waits for the loop's next poll.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-azure-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        # Keep-alive connections keep their handler threads blocked on a read: end them.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join()
        with self._lock:
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()
            timer.join()  # a cancelled clock ends at once
        self._deliverer.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeAzureOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- test set-up -------------------------------------------------------------------------

    def register(self, prompt: str, scenario: Scenario) -> None:
        """Answer a response request whose prompt equals ``prompt`` with ``scenario``.

        Ids left empty are filled in now, so the test can read them before the run; a file's
        ``created_at`` left 0 is filled in by the run. The containers start to exist (for
        listing and downloads) once a response used them.
        """
        _check_scenario(scenario)
        with self._lock:
            for container in scenario.containers:
                _fill_container(container)
            _fill_images(scenario)
            self._scenarios[prompt] = scenario

    def add_container(self, container: FakeContainer) -> FakeContainer:
        """Make ``container`` exist without any response (for download tests)."""
        with self._lock:
            _fill_container(container, _now())
            self._containers[container.container_id] = container
        return container

    def expire(self, container_id: str) -> None:
        with self._lock:
            container = self._containers.get(container_id)
            if container is None:
                registered = (c for s in self._scenarios.values() for c in s.containers)
                container = next((c for c in registered if c.container_id == container_id), None)
            if container is None:
                raise KeyError(container_id)
            container.expired = True

    def fail_next(
        self,
        path_contains: str,
        status: int,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` requests whose path contains ``path_contains`` get this answer.

        Checked before authentication, so any request to a matching path consumes it.
        """
        if body is None:
            body = {"error": {"code": str(status), "message": f"Injected failure ({status})."}}
        with self._lock:
            self._faults.append(_Fault(path_contains, status, body, dict(headers or {}), times))

    def cut_next_download(self, after_bytes: int, times: int = 1, announce_length: bool = True) -> None:
        """The next ``times`` successful content downloads announce the full Content-Length
        but close the connection after ``after_bytes`` bytes of body (no cut if the file is
        not longer than that). With ``announce_length=False`` no length is sent at all: the
        body ends when the connection closes, so the client cannot tell it was cut."""
        if after_bytes < 0:
            raise ValueError("after_bytes must not be negative")
        with self._lock:
            self._cuts.append(_Cut(after_bytes, times, announce_length=announce_length))

    def lose_next_create_answer(self) -> CreateFault:
        """The next valid create request makes its run, then the connection closes without an
        answer (as a dropped connection or a gateway reset looks to the client)."""
        return self._add_create_fault(CreateFault(held=False))

    def hold_next_create_answer(self) -> CreateFault:
        """The next valid create request makes its run, and its answer waits until the test
        calls ``release()`` or ``drop()`` on the fault (past the client's timeout, if it likes)."""
        return self._add_create_fault(CreateFault(held=True))

    def _add_create_fault(self, fault: CreateFault) -> CreateFault:
        with self._lock:
            self._create_faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget injected failures and cuts that no request has used up yet; let held bodies go on."""
        with self._lock:
            self._faults.clear()
            for cut in self._cuts:
                if cut.slow is not None:
                    cut.slow.release()
            self._cuts.clear()
            for slow in self._slow_bodies:
                slow.release()
            self._slow_bodies.clear()
            held = self._create_faults + self._held_creates
            self._create_faults, self._held_creates = [], []
        for fault in held:
            fault.drop()  # a create whose answer is still held ends unanswered

    def stall_next_download(self, after_bytes: int, seconds: float, times: int = 1) -> None:
        """The next ``times`` content downloads pause for ``seconds`` after ``after_bytes`` bytes
        of body, then send the rest (a slow body, for read timeouts)."""
        with self._lock:
            self._cuts.append(_Cut(after_bytes, times, seconds))

    def trickle_next_download(self, byte_every_seconds: float) -> SlowBody:
        """The next content download announces its Content-Length, then sends the body one byte
        at a time, ``byte_every_seconds`` apart: every read gets data well inside any read
        timeout, yet the whole body takes ``size x byte_every_seconds``."""
        if byte_every_seconds <= 0:
            raise ValueError("byte_every_seconds must be positive")
        slow = SlowBody()
        with self._lock:
            self._cuts.append(_Cut(0, 1, trickle_seconds=byte_every_seconds, slow=slow))
        return slow

    def hold_next_download(self, after_bytes: int) -> SlowBody:
        """The next content download sends ``after_bytes`` bytes of body, then waits until the
        test calls ``release()`` on the answer (``paused`` tells it is waiting), then the rest."""
        if after_bytes < 0:
            raise ValueError("after_bytes must not be negative")
        slow = SlowBody()
        with self._lock:
            self._cuts.append(_Cut(after_bytes, 1, slow=slow))
        return slow

    # -- responses, in-process -----------------------------------------------------------------

    def create(self, body: dict[str, Any], *, image_deployment: str | None = None) -> dict[str, Any]:
        """Create a response exactly as ``POST /openai/v1/responses`` would, and answer its
        JSON (a run made "elsewhere"). Sets ``last_response_body`` as the route does; raises
        :class:`FakeApiError` where the route would answer an error. ``image_deployment``: the
        IMAGE_DEPLOYMENT_HEADER's value (a create with the image_generation tool needs it)."""
        with self._lock:
            self.last_response_body = body
            request = _parse_create(body)
            _check_image_generation(body, image_deployment)
            previous = self._previous_run(request.previous_response_id)
            scenario = next((self._scenarios[p] for p in request.prompts if p in self._scenarios), None)
            if scenario is None:
                scenario = self._unregistered_scenario(request.prompts)
            created_at = _now()
            self._open_containers(scenario, request.file_ids, created_at, previous)
            run = _new_run(body, request, scenario, created_at)
            self._created += 1
            if request.stored:
                self._runs[run.response_id] = run
            if run.background and not _running(run):
                self._announce(run)  # a background run that ended at once still sends its webhook
            elif run.ends_after is not None:
                self._start_clock(run)
            # A background run is only queued when the create call answers.
            answer = _envelope(run, "queued") if run.background else _view(run)
            return copy.deepcopy(answer)

    def _unregistered_scenario(self, prompts: list[str]) -> Scenario:
        """The scenario a prompt names (``fake:NAME``), else the fake's default."""
        named = scenarios.named_in(prompts)
        try:
            return named_scenario(named or self.default_scenario)
        except ValueError as error:
            raise _invalid_request(f"{error}", "input", "invalid_value") from None

    def response(self, response_id: str) -> dict[str, Any] | None:
        """The stored response as a GET would answer it now, without counting as a poll
        (None for an unknown id or a ``store: false`` response)."""
        with self._lock:
            run = self._runs.get(response_id)
            return None if run is None else copy.deepcopy(_view(run))

    def polls(self, response_id: str) -> int:
        """How many GETs the stored response has answered; KeyError if unknown."""
        with self._lock:
            return self._runs[response_id].polls

    def drop_output_items(self, response_id: str, item_type: str) -> None:
        """Take the run's output items of one type away (as if they were never there): the next GET
        answers the response without them."""
        with self._lock:
            run = self._stored_run(response_id)
            run.output = [item for item in run.output if item.get("type") != item_type]

    def finish(self, response_id: str) -> None:
        """The background run's next GET answers its final object; KeyError if unknown."""
        with self._lock:
            run = self._runs[response_id]
            if _running(run):
                _stop(run)
                self._announce(run)

    def response_ids(self, prompt: str | None = None) -> list[str]:
        """The stored responses' ids, in the order they were made; with ``prompt``, only those whose
        create request's input was that prompt (a test finds a run whose create answer it lost)."""
        with self._lock:
            return [rid for rid, run in self._runs.items() if prompt is None or run.body.get("input") == prompt]

    def created_count(self) -> int:
        """How many responses were created, stored or not, over HTTP or with :meth:`create`."""
        with self._lock:
            return self._created

    # -- webhooks, in-process --------------------------------------------------------------------

    def register_webhook(
        self, url: str, event_types: Iterable[str] | None = None, name: str = "test-webhook"
    ) -> tuple[str, str]:
        """Register a webhook endpoint as the registration route would (same validation;
        default: the four response events); answers ``(endpoint_id, signing_secret)``."""
        types = list(RESPONSE_EVENT_TYPES if event_types is None else event_types)
        endpoint = self._webhook_endpoints.create({"name": name, "url": url, "event_types": types})
        return endpoint.endpoint_id, endpoint.secret

    def webhook_endpoints(self) -> list[dict[str, Any]]:
        """The registered endpoints as the list route answers them (no secrets), newest first."""
        page: list[dict[str, Any]] = self._webhook_endpoints.list_page({"limit": str(MAX_LIST_LIMIT)})["data"]
        return page

    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every delivery attempt so far, automatic and hand-made, in the order they were made."""
        return self._deliverer.records()

    def wait_for_deliveries(
        self, count: int, timeout: float = 10.0, *, response_id: str | None = None
    ) -> list[WebhookDelivery]:
        """Wait until at least ``count`` attempts were made (for ``response_id``, if given) and
        answer them; TimeoutError after ``timeout`` seconds."""
        return self._deliverer.wait_for(count, timeout, response_id)

    def wait_for_webhooks_settled(self, timeout: float = 10.0) -> None:
        """Wait until every automatic message has made its last attempt (delivered, or out of
        retries). A run's messages are queued when it ends, so after this nothing more comes."""
        self._deliverer.wait_settled(timeout)

    def send_webhook(
        self,
        url: str,
        event_type: str,
        response_id: str,
        *,
        secret: str,
        webhook_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        body: bytes | str | None = None,
    ) -> int:
        """POST one hand-made delivery from the calling thread and answer the receiver's status.

        By default a well-formed, correctly signed event; each keyword spoils one part: another
        ``secret``, a reused ``webhook_id``, a stale ``timestamp``, a ``signature`` header as
        given, a ``body`` as given (signed with ``secret`` unless ``signature`` is given).
        Recorded in :meth:`webhook_deliveries`; OSError when ``url`` cannot be reached."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        if data is None:
            data = webhook_event_body(event_type, response_id)
        headers = signed_headers(
            secret, webhook_id or new_webhook_id(), int(time.time()) if timestamp is None else timestamp, data
        )
        if signature is not None:
            headers["webhook-signature"] = signature
        return self._deliverer.send(url, data, headers, event_type, response_id)

    def clear_webhooks(self) -> None:
        """Forget every registered endpoint and delivery record (messages under way still go)."""
        self._webhook_endpoints.clear()
        self._deliverer.clear()

    # -- used by the handler ---------------------------------------------------------------

    def upload(self, headers: dict[str, str], body: bytes, chunks: int) -> dict[str, Any]:
        """``POST /openai/v1/files``: a multipart body with ``purpose`` and ``file``."""
        fields = _multipart_fields(headers.get("content-type", ""), body)
        purpose = fields.get("purpose")
        if purpose is None or purpose[1] is not None:
            raise _invalid_request("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
        purpose_text = purpose[2].decode("utf-8", "replace")
        if purpose_text not in FILE_PURPOSES:
            raise _invalid_request(f"Invalid value for purpose: '{purpose_text}'.", "purpose")
        file = fields.get("file")
        if file is None or file[1] is None:
            raise _invalid_request("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        content_type, filename, content = file
        uploaded = UploadedFile(_new_id("file-"), filename or "upload", purpose_text, content,
                                content_type, _now(), chunks)
        with self._lock:
            self.uploads[uploaded.file_id] = uploaded
        return uploaded.view()

    def delete_upload(self, file_id: str) -> dict[str, Any]:
        """``DELETE /openai/v1/files/{id}``: the SDK's ``FileDeleted``; 404 once deleted."""
        with self._lock:
            uploaded = self.uploads.get(file_id)
            if uploaded is None or uploaded.deleted:
                raise object_not_found(f"No such File object: {file_id}")
            uploaded.deleted = True
        return {"id": file_id, "object": "file", "deleted": True}

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in path:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _take_create_fault(self) -> CreateFault | None:
        with self._lock:
            if not self._create_faults:
                return None
            fault = self._create_faults.pop(0)
            if fault.held:
                self._held_creates.append(fault)  # clear_faults() must still be able to end it
            return fault

    def _take_cut(self) -> _Cut | None:
        with self._lock:
            if not self._cuts:
                return None
            cut = self._cuts[0]
            cut.remaining -= 1
            if cut.remaining <= 0:
                self._cuts.pop(0)
            return cut

    def _authorized(self, headers: dict[str, str]) -> bool:
        # An api-key header, when present, decides on its own (as Azure does).
        if "api-key" in headers:
            return headers["api-key"] == self.api_key
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        # The API key is not a bearer token, even if a test listed it among the tokens.
        return token != self.api_key and token in self.bearer_tokens

    def _container(self, container_id: str) -> FakeContainer:
        with self._lock:
            container = self._containers.get(container_id)
        if container is None:
            raise _azure_error(404, "NotFound", f"Container with id '{container_id}' not found.")
        if container.expired:
            raise FakeApiError(
                400,
                {
                    "error": {
                        "code": "BadRequest",
                        "message": "Container is expired.",
                        "type": "invalid_request_error",
                        "param": None,
                    }
                },
            )
        return container

    def _file(self, container: FakeContainer, file_id: str) -> FakeFile:
        with self._lock:
            found = next((f for f in container.files if f.file_id == file_id), None)
        if found is None:
            raise _azure_error(404, "NotFound", f"File with id '{file_id}' not found.")
        return found

    def _list_page(self, container: FakeContainer, query: dict[str, str]) -> dict[str, Any]:
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _invalid_request("'order' must be 'asc' or 'desc'.", "order")
        requested = requested_limit(query)
        limit = min(self.page_size, requested) if requested is not None else self.page_size
        with self._lock:
            files = list(container.files)  # insertion order is creation order
        if order == "desc":
            files.reverse()
        return cursor_page(
            files, lambda f: f.file_id, lambda f: _file_object(container, f), after=query.get("after"), limit=limit,
            unknown_cursor="No file with id '{after}' in this container.",
        )

    def _poll(self, response_id: str) -> dict[str, Any]:
        """``GET /openai/v1/responses/{id}``: the response now; a running one moves on."""
        with self._lock:
            run = self._stored_run(response_id)
            answer = _view(run)
            run.polls += 1
            if _running(run):
                run.running_left -= 1
                if run.running_left == 0:
                    run.ended_at = _now()
                    self._announce(run)
            return copy.deepcopy(answer)

    def _cancel(self, response_id: str) -> dict[str, Any]:
        """``POST /openai/v1/responses/{id}/cancel``."""
        with self._lock:
            run = self._stored_run(response_id)
            if not run.background:
                raise _invalid_request("Only responses created with background=true can be cancelled.", None, None)
            if _running(run):
                run.cancelled = True
                _stop(run)
                self._announce(run)
            elif _final_status(run) != "cancelled":  # cancelling twice answers the same object
                raise _invalid_request("Cannot cancel a completed response.", None, None)
            return copy.deepcopy(_view(run))

    def _announce(self, run: _Run) -> None:
        """The background run has ended: its event goes to every endpoint that wants it, from
        other threads. Once per run; the lock is held."""
        if run.announced or not run.background:
            return
        run.announced = True
        timer = self._timers.pop(run.response_id, None)
        if timer is not None:
            timer.cancel()
        event_type = f"response.{_final_status(run)}"
        ended_at = run.ended_at if run.ended_at is not None else _now()
        for endpoint in self._webhook_endpoints.subscribed(event_type):
            self._deliverer.deliver(endpoint, event_type, run.response_id, ended_at)

    def _start_clock(self, run: _Run) -> None:
        """End ``run`` by itself after its ``seconds_before_done``; the lock is held."""
        assert run.ends_after is not None
        timer = threading.Timer(run.ends_after, self._time_up, args=(run.response_id,))
        timer.name = f"fake-run-clock-{run.response_id}"
        timer.daemon = True
        self._timers[run.response_id] = timer
        timer.start()

    def _time_up(self, response_id: str) -> None:
        with self._lock:
            self._timers.pop(response_id, None)
            run = self._runs[response_id]
            if _running(run):
                _stop(run)
                self._announce(run)

    def _stored_run(self, response_id: str) -> _Run:
        run = self._runs.get(response_id)
        if run is None:
            raise _response_not_found(response_id)
        return run

    def _previous_run(self, response_id: str | None) -> _Run | None:
        """The run a create request continues; like the real endpoint, only a stored one."""
        if response_id is None:
            return None
        run = self._runs.get(response_id)
        if run is None:
            raise _invalid_request(
                f"Previous response with id '{response_id}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )
        return run

    def _open_containers(self, scenario: Scenario, file_ids: list[str], created_at: int, previous: _Run | None) -> None:
        """Make the run's containers exist, with their files, from the moment it is created
        (a background run's files are listable while it still runs). The lock is held."""
        for container in scenario.containers:
            _fill_container(container, created_at)
        if not scenario.containers:
            return
        first = scenario.containers[0]
        _add_input_files(first, file_ids, created_at, self.uploads)
        new_containers = scenario.containers
        if previous is not None and previous.container_ids:
            _merge_into(self._containers[previous.container_ids[0]], first)
            new_containers = scenario.containers[1:]
        for container in new_containers:
            self._containers[container.container_id] = container


def _merge_into(reused: FakeContainer, container: FakeContainer) -> None:
    """A follow-up run works in its predecessor's container: its files join the earlier
    ones (keeping their ids), and ``container`` takes the reused id so that this run's
    output (and the test) name the container the files are really in."""
    known = {f.file_id for f in reused.files}
    reused.files.extend([f for f in container.files if f.file_id not in known])
    container.container_id = reused.container_id


def _running(run: _Run) -> bool:
    return not run.cancelled and run.running_left > 0


def _stop(run: _Run) -> None:
    run.running_left = 0
    run.ended_at = _now()


def _final_status(run: _Run) -> str:
    return "cancelled" if run.cancelled else run.status


def _view(run: _Run) -> dict[str, Any]:
    """The response as a GET answers it now (which does not change it)."""
    if _running(run):
        return _envelope(run, "queued" if run.polls == 0 else "in_progress")
    return _envelope(run, _final_status(run))


def _new_run(body: dict[str, Any], request: _CreateRequest, scenario: Scenario, created_at: int) -> _Run:
    """The lock is held: the containers' files are read."""
    output, text = _output_items(scenario, images=_has_tool(body, "image_generation"))
    running = scenario.polls_before_done if request.background else 0
    ends_after = scenario.seconds_before_done if request.background else None
    if ends_after is not None and running == 0:
        running = _UNTIL_STOPPED  # only the clock (or finish, or a cancel) ends it
    return _Run(
        response_id=_new_id("resp_"),
        body=copy.deepcopy(body),  # the caller may reuse its dict
        model=request.model,
        created_at=created_at,
        status=scenario.status,
        output=output,
        usage=_usage(body, text),
        background=request.background,
        container_ids=[c.container_id for c in scenario.containers],
        running_left=running,
        ended_at=None if running else created_at,
        ends_after=ends_after,
    )


def _has_tool(body: dict[str, Any], kind: str) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and any(isinstance(t, dict) and t.get("type") == kind for t in tools)


def _output_items(scenario: Scenario, *, images: bool = True) -> tuple[list[dict[str, Any]], str]:
    """The final output items for ``scenario`` and the message text (its images only when the
    request had the image_generation tool); the lock is held."""
    output: list[dict[str, Any]] = []
    text = scenario.output_text
    annotations: list[dict[str, Any]] = []
    for container in scenario.containers:
        if container.tool == "shell":
            output.extend(_shell_call(container))
        else:
            output.append(_code_interpreter_call(container))
        if container.legacy_results:
            continue  # the legacy shape never cites its files in the message
        for file in container.files:
            for filename in _cited_filenames(file):
                link = f"[{file.filename}](sandbox:{file.path})"
                text += " "
                start = len(text)
                text += link
                annotations.append(
                    {
                        "type": "container_file_citation",
                        "container_id": container.container_id,
                        "file_id": file.file_id,
                        "filename": filename,
                        "start_index": start,
                        "end_index": len(text),
                    }
                )
    _fill_images(scenario)
    if images:
        output.extend(_image_generation_call(image) for image in scenario.images)
    output.append(
        {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "status": "incomplete" if scenario.status == "incomplete" else "completed",
            "content": [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}],
        }
    )
    return output, text


def _code_interpreter_call(container: FakeContainer) -> dict[str, Any]:
    call: dict[str, Any] = {
        "id": _new_id("ci_"),
        "type": "code_interpreter_call",
        "status": "completed",
        "code": "import pandas as pd\n# ... build the files under /mnt/data ...",
        "container_id": container.container_id,
        "outputs": [{"type": "logs", "logs": f"wrote {len(container.files)} file(s)\n"}],
    }
    if container.legacy_results:
        assistant_files = [f for f in container.files if f.source == "assistant"]
        call["results"] = [
            {
                "type": "files",
                "files": [{"file_id": f.file_id, "mime_type": _mime_type(f.filename)} for f in assistant_files],
            }
        ]
    return call


def _shell_call(container: FakeContainer) -> list[dict[str, Any]]:
    """The hosted shell tool's call in ``container`` and its output (the SDK's
    ResponseFunctionShellToolCall and ResponseFunctionShellToolCallOutput)."""
    call_id = _new_id("call_")
    return [
        {
            "id": _new_id("sh_"),
            "type": "shell_call",
            "call_id": call_id,
            "status": "completed",
            "action": {"commands": ["python make_report.py"], "timeout_ms": 60000, "max_output_length": 4096},
            "environment": {"type": "container_reference", "container_id": container.container_id},
        },
        {
            "id": _new_id("sho_"),
            "type": "shell_call_output",
            "call_id": call_id,
            "status": "completed",
            "output": [{"stdout": f"wrote {len(container.files)} file(s)\n", "stderr": "",
                        "outcome": {"type": "exit", "exit_code": 0}}],
        },
    ]


def _image_generation_call(image: FakeImage) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": image.call_id,
        "type": "image_generation_call",
        "status": image.status,
        "result": base64.b64encode(image.content).decode("ascii") if image.status == "completed" else None,
        "revised_prompt": image.revised_prompt,
        "action": "generate",
        "background": "opaque",
        "quality": "medium",
        "size": "1024x1024",
    }
    if image.output_format is not None:
        item["output_format"] = image.output_format
    return item


def _check_image_generation(body: dict[str, Any], deployment: str | None) -> None:
    """A create with the image_generation tool must name the image model deployment in the header."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "image_generation":
            continue
        if not deployment:
            raise _invalid_request(
                "There was an issue with your request. Please check your inputs and try again",
                None, None,
            )
        output_format = tool.get("output_format")
        if output_format is not None and output_format not in IMAGE_FORMATS:
            raise _invalid_request(f"Invalid value: '{output_format}'.", "tools[].output_format", "invalid_value")


def _usage(body: dict[str, Any], text: str) -> dict[str, Any]:
    input_tokens = max(1, len(json.dumps(body.get("input"))) // 4)
    output_tokens = max(1, len(text) // 4)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _envelope(run: _Run, status: str) -> dict[str, Any]:
    """The Response JSON of ``run`` in ``status``; a running one has no output or usage yet."""
    body = run.body
    running = status not in FINAL_STATUSES
    return {
        "id": run.response_id,
        "object": "response",
        "created_at": run.created_at,
        "completed_at": run.ended_at if status == "completed" else None,
        "status": status,
        "background": run.background,
        "error": {"code": "server_error", "message": "The fake run failed."} if status == "failed" else None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": run.model,
        "output": [] if running else run.output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools"),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None if running else run.usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _seed_scenario(fake: FakeAzureOpenAI, body: bytes) -> dict[str, Any]:
    """Benchmarks: ``{"prompt": str, "files": [{"path", "size"}], "polls_before_done": int,
    "seconds_before_done": float}`` (the last two optional) makes the prompt's run write those
    (uncited) files into one container."""
    try:
        spec = json.loads(body)
        prompt = str(spec["prompt"])
        sizes = [(str(item["path"]), int(item["size"])) for item in spec["files"]]
        polls = int(spec.get("polls_before_done", 0))
        seconds = spec.get("seconds_before_done")
        seconds = None if seconds is None else float(seconds)
    except (ValueError, KeyError, TypeError):
        raise _invalid_request('expected {"prompt": str, "files": [{"path", "size"}]}', None, None) from None
    pattern = os.urandom(64 * 1024)
    files = [
        FakeFile(pattern * (size // len(pattern)) + pattern[: size % len(pattern)], path, cite=None)
        for path, size in sizes
    ]
    try:
        fake.register(prompt, Scenario([FakeContainer(files)], polls_before_done=polls, seconds_before_done=seconds))
    except ValueError as error:
        raise _invalid_request(str(error), None, None) from None
    return {"prompt": prompt, "files": len(files)}


def _seed_container(fake: FakeAzureOpenAI, body: bytes) -> dict[str, Any]:
    """Test set-up from another process (benchmarks): ``{"files": [{"path", "size"}]}``.

    Content is a random MiB repeated, so even a 1 GiB file is made in a moment.
    """
    try:
        specs = json.loads(body)["files"]
        sizes = [(str(spec["path"]), int(spec["size"])) for spec in specs]
    except (ValueError, KeyError, TypeError):
        raise _invalid_request('expected {"files": [{"path": str, "size": int}]}', None, None) from None
    pattern = os.urandom(1024 * 1024)
    files = [FakeFile(pattern * (size // len(pattern)) + pattern[: size % len(pattern)], path) for path, size in sizes]
    container = fake.add_container(FakeContainer(files))
    return {
        "container_id": container.container_id,
        "files": [{"file_id": f.file_id, "path": f.path, "bytes": len(f.content)} for f in files],
    }


def _delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    """A delivery record for another process (benchmarks); it carries no secret."""
    return {**vars(delivery), "ok": delivery.ok}


def _cited_filenames(file: FakeFile) -> list[str]:
    placeholder = file.file_id + posixpath.splitext(file.filename)[1]
    if file.cite == "real":
        return [file.filename]
    if file.cite == "placeholder":
        return [placeholder]
    if file.cite == "both":
        return [placeholder, file.filename]
    return []


def _multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str, str | None, bytes]]:
    """A multipart/form-data body's fields: name -> (content type, filename or None, bytes)."""
    match = re.match(r'multipart/form-data;\s*boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if match is None:
        raise _invalid_request("The request must be multipart/form-data.", None, "invalid_content_type")
    boundary = b"--" + match[1].encode("latin-1")
    fields: dict[str, tuple[str, str | None, bytes]] = {}
    for part in body.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = re.search(rb'name="([^"]*)"(?:;\s*filename="([^"]*)")?', head)
        if disposition is None:
            continue
        kind = re.search(rb"content-type:\s*([^\r\n]+)", head, re.IGNORECASE)
        filename = disposition[2].decode("utf-8") if disposition[2] is not None else None
        fields[disposition[1].decode("utf-8")] = (
            kind[1].decode("latin-1").strip() if kind else "text/plain", filename, data)
    return fields


class _AnswerLost(Exception):
    """A create's answer is lost on purpose: the handler closes the connection unanswered."""


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeAzureOpenAI) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A client that hangs up (or stop() closing a kept-alive connection) is not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def _download_error(file: FakeFile) -> FakeApiError:
    """The answer of a file whose download fails, worded as the service words that status."""
    status = file.download_error or 500
    if status == 404:
        return _azure_error(404, "NotFound", f"File with id '{file.file_id}' not found.")
    if status == 429:
        return _azure_error(429, "429", "Rate limit is exceeded. Try again in 1 seconds.")
    if status >= 500:
        return _azure_error(status, "InternalServerError", "The server had an error while processing your request.")
    return _azure_error(status, str(status), f"The download of file '{file.file_id}' failed.")


def _check_responses_version(query: dict[str, str]) -> None:
    version = query.get("api-version")
    if version is not None and version not in RESPONSES_API_VERSIONS:
        raise _azure_error(400, "BadRequest", "API version not supported")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _invalid_request("The request body is not valid JSON.", None, None) from None
    if not isinstance(parsed, dict):
        raise _invalid_request("The request body must be a JSON object.", None, None)
    return parsed


_RESPONSES = re.compile(r"^/openai/v1/responses/?$")
_RESPONSE = re.compile(r"^/openai/v1/responses/(?P<rid>[^/]+)/?$")
_CANCEL = re.compile(r"^/openai/v1/responses/(?P<rid>[^/]+)/cancel/?$")
_FILES = re.compile(r"^/openai/v1/containers/(?P<cid>[^/]+)/files/?$")
_FILE = re.compile(r"^/openai/v1/containers/(?P<cid>[^/]+)/files/(?P<fid>[^/]+)/?$")
_CONTENT = re.compile(r"^/openai/v1/containers/(?P<cid>[^/]+)/files/(?P<fid>[^/]+)/content/?$")
_UPLOADS = re.compile(r"^/openai/v1/files/?$")
_UPLOAD = re.compile(r"^/openai/v1/files/(?P<fid>[^/]+)/?$")
_WEBHOOKS = re.compile(r"^/openai/v1/dashboard/webhook_endpoints/?$")
_WEBHOOK = re.compile(r"^/openai/v1/dashboard/webhook_endpoints/(?P<wid>[^/]+)/?$")


class _Handler(BaseHTTPRequestHandler):
    _chunks = 0  # how many chunks the current request's body came in
    protocol_version = "HTTP/1.1"  # keep-alive, like the real endpoint
    server_version = "FakeAzureOpenAI/1.0"
    # Headers and body go out in separate writes; with Nagle on, the second one waits for
    # the client's delayed ACK (about 40 ms a request on Linux).
    disable_nagle_algorithm = True
    # BaseHTTPRequestHandler's own type for ``server`` is the generic socketserver base.
    server: _FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._chunks = 0
        try:
            body = self._read_body()
        except FakeApiError as error:
            self.close_connection = True  # the rest of the stream cannot be trusted
            self._send_json(error.status, error.body)
            return
        fake._record(RecordedRequest(method, path, query, headers, body, self._chunks))

        fault = fake._take_fault(path)
        if fault is not None:
            self._send_json(fault.status, fault.body, fault.headers)
            return
        if not fake._authorized(headers):
            self._send_json(401, {"error": {"code": "401", "message": ACCESS_DENIED}})
            return
        try:
            self._route(method, path, query, body)
        except _AnswerLost:
            self.close_connection = True  # the run is made; the client hears nothing
        except FakeApiError as error:
            self._send_json(error.status, error.body)
        except OSError:
            self.close_connection = True  # the client went away mid-answer
        except Exception:
            traceback.print_exc()
            self.close_connection = True
            self._send_json(500, {"error": {"code": "500", "message": "The fake failed; see its stderr."}})

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        fake = self.server.fake
        answer = self._responses_answer(method, path, query, body)
        if answer is None:
            answer = self._webhooks_answer(method, path, query, body)
        if answer is not None:
            self._send_json(200, answer)
            return
        if method == "POST" and _UPLOADS.match(path):
            _check_responses_version(query)
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._send_json(200, fake.upload(headers, body, self._chunks))
            return
        if method == "DELETE" and (match := _UPLOAD.match(path)):
            _check_responses_version(query)
            self._send_json(200, fake.delete_upload(match["fid"]))
            return
        if method == "POST" and path == "/_fake/containers":
            self._send_json(200, _seed_container(fake, body))
            return
        if method == "POST" and path == "/_fake/scenarios":
            self._send_json(200, _seed_scenario(fake, body))
            return
        if method == "GET" and path == "/_fake/webhooks/deliveries":
            self._send_json(200, {"data": [_delivery_json(d) for d in fake.webhook_deliveries()]})
            return
        if method != "GET":
            raise _not_found()
        self._container_route(path, query)

    def _responses_answer(self, method: str, path: str, query: dict[str, str], body: bytes) -> dict[str, Any] | None:
        """The answer of a responses route (create, retrieve, cancel); None for other paths."""
        fake = self.server.fake
        if method == "POST" and _RESPONSES.match(path):
            _check_responses_version(query)
            made = fake.create(_json_object(body), image_deployment=self.headers.get(IMAGE_DEPLOYMENT_HEADER))
            fault = fake._take_create_fault()
            if fault is not None:
                fault._note_made(str(made["id"]))
                if not fault._answers():
                    raise _AnswerLost
            return made
        if method == "GET" and (match := _RESPONSE.match(path)):
            _check_responses_version(query)  # other parameters (include, stream...) are ignored
            return fake._poll(match["rid"])
        if method == "POST" and (match := _CANCEL.match(path)):
            _check_responses_version(query)
            return fake._cancel(match["rid"])
        return None

    def _webhooks_answer(self, method: str, path: str, query: dict[str, str], body: bytes) -> dict[str, Any] | None:
        """The answer of a webhook endpoint route (create, list, retrieve, update, delete); None
        for other paths. Azure documents no api-version on them; the v1 ones are tolerated."""
        registry = self.server.fake._webhook_endpoints
        if match := _WEBHOOK.match(path):
            _check_responses_version(query)
            endpoint_id = match["wid"]
            if method == "GET":  # OpenAI documents retrieve; Azure is silent
                return registry.get(endpoint_id).view()
            if method == "POST":
                return registry.update(endpoint_id, _json_object(body)).view()
            if method == "DELETE":
                return registry.delete(endpoint_id)
        elif _WEBHOOKS.match(path):
            _check_responses_version(query)
            if method == "POST":
                return registry.create(_json_object(body)).view(with_secret=True)
            if method == "GET":
                return registry.list_page(query)
        return None

    def _container_route(self, path: str, query: dict[str, str]) -> None:
        fake = self.server.fake
        for pattern, kind in ((_CONTENT, "content"), (_FILE, "file"), (_FILES, "files")):
            match = pattern.match(path)
            if match is None:
                continue
            if query.get("api-version") != CONTAINER_API_VERSION:
                raise _azure_error(400, "BadRequest", "API version not supported")
            container = fake._container(match["cid"])
            if kind == "files":
                self._send_json(200, fake._list_page(container, query))
                return
            file = fake._file(container, match["fid"])
            if kind == "file":
                self._send_json(200, _file_object(container, file))
            elif file.download_error is not None:
                raise _download_error(file)
            else:
                self._send_content(file.content, fake._take_cut())
            return
        raise _not_found()  # including the classic /openai/files/{id}/content

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            pieces = bytearray()
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _azure_error(400, "BadRequest", "Malformed chunked body.") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(pieces)
                pieces += self.rfile.read(size)
                self._chunks += 1
                self.rfile.readline(1024)  # the CRLF after each chunk
        length_header = self.headers.get("Content-Length", "0")
        try:
            length = int(length_header)
        except ValueError:
            raise _azure_error(400, "BadRequest", "Invalid Content-Length.") from None
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload: dict[str, Any], extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "x-request-id": str(uuid.uuid4())}
        for name, value in (extra_headers or {}).items():
            # A caller's header replaces ours of the same name instead of doubling it.
            for existing in [h for h in headers if h.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value
        headers["Content-Length"] = str(len(data))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_content(self, content: bytes, cut: _Cut | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if cut is None or cut.announce_length:
            self.send_header("Content-Length", str(len(content)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        # memoryview slices share the content's buffer: a 1 GiB file is never copied.
        view = memoryview(content)
        if cut is not None and cut.slow is not None:
            self._send_slowly(view, cut, cut.slow)
            return
        end = len(content) if cut is None else min(cut.after_bytes, len(content))
        self._write_range(view, 0, end)
        if cut is None:
            return
        if cut.stall_seconds is None:
            self.close_connection = True  # the client sees EOF short of Content-Length
            return
        self.wfile.flush()
        threading.Event().wait(cut.stall_seconds)  # a slow server, as the client sees it
        self._write_range(view, end, len(content))

    def _send_slowly(self, view: memoryview, cut: _Cut, slow: SlowBody) -> None:
        """A trickle (one byte at a time) or a hold (a pause until released), recorded in ``slow``."""
        fake = self.server.fake
        slow.total = len(view)
        with fake._lock:
            fake._slow_bodies.append(slow)
        try:
            if cut.trickle_seconds is not None:
                for offset in range(len(view)):
                    self.wfile.write(view[offset : offset + 1])
                    self.wfile.flush()
                    slow.sent = offset + 1
                    if offset + 1 < len(view) and slow.resume.wait(cut.trickle_seconds):
                        self.close_connection = True  # released: the test is over, stop trickling
                        return
            else:
                end = min(cut.after_bytes, len(view))
                self._write_range(view, 0, end)
                self.wfile.flush()
                slow.sent = end
                slow.paused.set()
                slow.resume.wait(HOLD_LIMIT_SECONDS)
                self._write_range(view, end, len(view))
                self.wfile.flush()
                slow.sent = len(view)
            slow.whole = slow.sent == slow.total
        finally:
            slow.ended.set()  # whole, or the client went away (the write raised)
            with fake._lock:
                if slow in fake._slow_bodies:
                    fake._slow_bodies.remove(slow)

    def _write_range(self, view: memoryview, start: int, end: int) -> None:
        for offset in range(start, end, CHUNK_SIZE):
            self.wfile.write(view[offset : min(offset + CHUNK_SIZE, end)])
