"""A fake Azure OpenAI v1 endpoint: real HTTP on loopback, standard library only.

It serves the few routes the app uses (``POST /openai/v1/responses`` and the container
file routes) and enforces the real endpoint's rules that have bitten us: the container
routes want ``api-version=preview`` and nothing else, an API key is never accepted as a
bearer token, the classic ``/openai/files/{id}/content`` route does not know container
files, and an expired container answers 400 "Container is expired.".

Tests describe what a run produced with a :class:`Scenario` and register it under the
prompt that triggers it; any other prompt gets :func:`demo_scenario`.
"""

from __future__ import annotations

import contextlib
import json
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "FakeAzureOpenAI",
    "FakeContainer",
    "FakeFile",
    "RecordedRequest",
    "Scenario",
    "demo_scenario",
    "png_bytes",
]

CiteMode = Literal["real", "placeholder", "both"]

CHUNK_SIZE = 64 * 1024
CONTAINER_API_VERSION = "preview"
# api-version values the v1 responses route tolerates; a dated one is refused.
RESPONSES_API_VERSIONS = frozenset({"preview", "v1"})
MAX_LIST_LIMIT = 100

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
    created_at: int = 0  # now when left 0

    @property
    def filename(self) -> str:
        return posixpath.basename(self.path)


@dataclass
class FakeContainer:
    files: list[FakeFile]
    container_id: str = ""  # "cntr_" + 32 hex when left empty
    expired: bool = False
    # The 2025 preview shape: the code_interpreter_call item carries
    # "results": [{"type": "files", "files": [...]}] and the message cites nothing.
    legacy_results: bool = False


@dataclass
class Scenario:
    containers: list[FakeContainer]
    output_text: str = "Here are your files."
    status: str = "completed"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass
class _Fault:
    path_contains: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    remaining: int


@dataclass
class _Cut:
    after_bytes: int
    remaining: int
    stall_seconds: float | None = None  # None: close the connection; else pause, then go on
    announce_length: bool = True


class _ApiError(Exception):
    """An error answer, raised anywhere below a route and sent by the handler."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _azure_error(status: int, code: str, message: str) -> _ApiError:
    return _ApiError(status, {"error": {"code": code, "message": message}})


def _invalid_request(message: str, param: str | None, code: str | None = "invalid_value") -> _ApiError:
    return _ApiError(
        400,
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}},
    )


def _not_found() -> _ApiError:
    return _azure_error(404, "404", "Resource not found")


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


def _fill_file(file: FakeFile) -> None:
    if not file.file_id:
        file.file_id = _new_id("cfile_")
    if not file.created_at:
        file.created_at = int(time.time())


def _fill_container(container: FakeContainer) -> None:
    if not container.container_id:
        container.container_id = _new_id("cntr_")
    for file in container.files:
        _fill_file(file)


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


class FakeAzureOpenAI:
    """The fake endpoint. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        api_key: str = "test-key",
        bearer_tokens: Iterable[str] = ("test-token",),
        page_size: int = 2,
        port: int = 0,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.api_key = api_key
        self.bearer_tokens = frozenset(bearer_tokens)
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        self.last_response_body: dict[str, Any] | None = None
        self._port = port
        self._lock = threading.Lock()
        self._scenarios: dict[str, Scenario] = {}
        self._containers: dict[str, FakeContainer] = {}
        self._faults: list[_Fault] = []
        self._cuts: list[_Cut] = []
        self._connections: set[socket.socket] = set()
        self._server: _FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeAzureOpenAI:
        if self._server is not None:
            raise RuntimeError("already started")
        server = _FakeHTTPServer(("127.0.0.1", self._port), _Handler, self)
        self._server = server
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

        Ids left empty are filled in now, so the test can read them before the run. The
        containers start to exist (for listing and downloads) once a response used them.
        """
        with self._lock:
            for container in scenario.containers:
                _fill_container(container)
            self._scenarios[prompt] = scenario

    def add_container(self, container: FakeContainer) -> FakeContainer:
        """Make ``container`` exist without any response (for download tests)."""
        with self._lock:
            _fill_container(container)
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

    def clear_faults(self) -> None:
        """Forget injected failures and cuts that no request has used up yet."""
        with self._lock:
            self._faults.clear()
            self._cuts.clear()

    def stall_next_download(self, after_bytes: int, seconds: float, times: int = 1) -> None:
        """The next ``times`` content downloads pause for ``seconds`` after ``after_bytes`` bytes
        of body, then send the rest (a slow body, for read timeouts)."""
        with self._lock:
            self._cuts.append(_Cut(after_bytes, times, seconds))

    # -- used by the handler ---------------------------------------------------------------

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
            raise _ApiError(
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
        limit = self.page_size
        if "limit" in query:
            try:
                requested = int(query["limit"])
            except ValueError:
                requested = 0
            if not 1 <= requested <= MAX_LIST_LIMIT:
                raise _invalid_request(f"'limit' must be between 1 and {MAX_LIST_LIMIT}.", "limit")
            limit = min(limit, requested)
        with self._lock:
            files = list(container.files)  # insertion order is creation order
        if order == "desc":
            files.reverse()
        start = 0
        after = query.get("after")
        if after:
            ids = [f.file_id for f in files]
            if after not in ids:
                raise _invalid_request(f"No file with id '{after}' in this container.", "after")
            start = ids.index(after) + 1
        page = files[start : start + limit]
        return {
            "object": "list",
            "data": [_file_object(container, f) for f in page],
            "first_id": page[0].file_id if page else None,
            "last_id": page[-1].file_id if page else None,
            "has_more": start + limit < len(files),
        }

    def _create_response(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid_request("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        request_input = body.get("input")
        if not isinstance(request_input, (str, list)):
            raise _invalid_request("Missing required parameter: 'input'.", "input", "missing_required_parameter")
        if body.get("stream"):
            raise _invalid_request("The fake does not stream; send stream: false.", "stream", "unsupported_value")
        file_ids = _code_interpreter_file_ids(body)

        prompts = _last_input_texts(request_input)
        with self._lock:
            scenario = next((self._scenarios[p] for p in prompts if p in self._scenarios), None)
        if scenario is None:
            scenario = demo_scenario()
        with self._lock:
            for container in scenario.containers:
                _fill_container(container)
                self._containers[container.container_id] = container
            if scenario.containers:
                first = scenario.containers[0]
                for input_id in file_ids:
                    path = f"/mnt/data/{input_id}.bin"
                    if not any(f.path == path for f in first.files):
                        user_file = FakeFile(content=b"user input", path=path, source="user", cite=None)
                        _fill_file(user_file)
                        first.files.append(user_file)
            return _response_object(body, model, scenario)


def _response_object(body: dict[str, Any], model: str, scenario: Scenario) -> dict[str, Any]:
    """The Response JSON for ``scenario``; the caller holds the lock (files may be appended)."""
    output: list[dict[str, Any]] = []
    text = scenario.output_text
    annotations: list[dict[str, Any]] = []
    for container in scenario.containers:
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
        output.append(call)
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
    incomplete = scenario.status == "incomplete"
    output.append(
        {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "status": "incomplete" if incomplete else "completed",
            "content": [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}],
        }
    )
    now = int(time.time())
    input_tokens = max(1, len(json.dumps(body.get("input"))) // 4)
    output_tokens = max(1, len(text) // 4)
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": now,
        "completed_at": now if scenario.status == "completed" else None,
        "status": scenario.status,
        "background": False,
        "error": ({"code": "server_error", "message": "The fake run failed."} if scenario.status == "failed" else None),
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": output,
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
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _seed_container(fake: FakeAzureOpenAI, body: bytes) -> dict[str, Any]:
    """Test set-up from another process (benchmarks): ``{"files": [{"path", "size"}]}``.

    Content is a random MiB repeated, so even a 1 GiB file is made in a moment.
    """
    try:
        specs = json.loads(body)["files"]
        sizes = [(str(spec["path"]), int(spec["size"])) for spec in specs]
    except (ValueError, KeyError, TypeError):
        raise _invalid_request("expected {\"files\": [{\"path\": str, \"size\": int}]}", None, None) from None
    pattern = os.urandom(1024 * 1024)
    files = [
        FakeFile(pattern * (size // len(pattern)) + pattern[: size % len(pattern)], path) for path, size in sizes
    ]
    container = fake.add_container(FakeContainer(files))
    return {
        "container_id": container.container_id,
        "files": [{"file_id": f.file_id, "path": f.path, "bytes": len(f.content)} for f in files],
    }


def _cited_filenames(file: FakeFile) -> list[str]:
    placeholder = file.file_id + posixpath.splitext(file.filename)[1]
    if file.cite == "real":
        return [file.filename]
    if file.cite == "placeholder":
        return [placeholder]
    if file.cite == "both":
        return [placeholder, file.filename]
    return []


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


_RESPONSES = re.compile(r"^/openai/v1/responses/?$")
_FILES = re.compile(r"^/openai/v1/containers/(?P<cid>[^/]+)/files/?$")
_FILE = re.compile(r"^/openai/v1/containers/(?P<cid>[^/]+)/files/(?P<fid>[^/]+)/?$")
_CONTENT = re.compile(r"^/openai/v1/containers/(?P<cid>[^/]+)/files/(?P<fid>[^/]+)/content/?$")


class _Handler(BaseHTTPRequestHandler):
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

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body = self._read_body()
        except _ApiError as error:
            self.close_connection = True  # the rest of the stream cannot be trusted
            self._send_json(error.status, error.body)
            return
        fake._record(RecordedRequest(method, path, query, headers, body))

        fault = fake._take_fault(path)
        if fault is not None:
            self._send_json(fault.status, fault.body, fault.headers)
            return
        if not fake._authorized(headers):
            self._send_json(401, {"error": {"code": "401", "message": ACCESS_DENIED}})
            return
        try:
            self._route(method, path, query, body)
        except _ApiError as error:
            self._send_json(error.status, error.body)
        except OSError:
            self.close_connection = True  # the client went away mid-answer
        except Exception:
            traceback.print_exc()
            self.close_connection = True
            self._send_json(500, {"error": {"code": "500", "message": "The fake failed; see its stderr."}})

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        fake = self.server.fake
        if method == "POST" and _RESPONSES.match(path):
            version = query.get("api-version")
            if version is not None and version not in RESPONSES_API_VERSIONS:
                raise _azure_error(400, "BadRequest", "API version not supported")
            try:
                parsed = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise _invalid_request("The request body is not valid JSON.", None, None) from None
            if not isinstance(parsed, dict):
                raise _invalid_request("The request body must be a JSON object.", None, None)
            with fake._lock:
                fake.last_response_body = parsed
            self._send_json(200, fake._create_response(parsed))
            return
        if method == "POST" and path == "/_fake/containers":
            self._send_json(200, _seed_container(fake, body))
            return
        if method != "GET":
            raise _not_found()
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

    def _write_range(self, view: memoryview, start: int, end: int) -> None:
        for offset in range(start, end, CHUNK_SIZE):
            self.wfile.write(view[offset : min(offset + CHUNK_SIZE, end)])
