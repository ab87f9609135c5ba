"""Every function invocation through the real Python worker library, as the Functions host makes it.

On Python 3.13 the Functions host starts the worker as a small proxy that receives the host's gRPC
messages and hands each one to the worker library, ``azure_functions_runtime`` (the version
requirements.txt pins): a ``WorkerInitRequest`` (the library imports ``function_app.py`` and
indexes it), a ``FunctionsMetadataRequest`` (the functions and their bindings), a
``FunctionLoadRequest`` per function, then one ``InvocationRequest`` per invocation. This module
is that proxy, without the gRPC channel: it makes the same calls with the same messages
(:mod:`tests.support.worker_protos`) on an event loop of its own, and reads each answer from the
worker's ``InvocationResponse``. So the worker's converters build the ``QueueMessage``, the
``HttpRequest`` and the ``TimerRequest`` from what the host sends, the worker runs a synchronous
function on its thread pool (``PYTHON_THREADPOOL_THREAD_COUNT``), and a return value or an
exception reaches the caller only as the host would see it.

What the host puts in a request, as the host's code builds it (azure-functions-host,
``ScriptInvocationContextExtensions.ToRpcInvocationRequest`` and
``GrpcMessageConversionExtensions.ToRpc``):

- a queue trigger: the message text (after host.json's ``messageEncoding``) as a ``string``, and
  the queue extension's binding data as trigger metadata: ``Id``, ``PopReceipt`` and
  ``QueueTrigger`` as strings, ``DequeueCount`` and the three times (``InsertionTime``,
  ``ExpirationTime``, ``NextVisibleTime``) serialized as JSON (a number, ISO 8601 strings);
- an HTTP trigger: an ``RpcHttp`` with the method, the URL, the headers (names in lower case), the
  query (empty values left out), the route parameters and, since the worker asks for raw bytes,
  the body as ``bytes``; the answer is the ``RpcHttp`` the worker returns (a failure is a 500);
- a timer trigger: the ``TimerInfo`` JSON (``Schedule``, ``ScheduleStatus``, ``IsPastDue``).

One worker per process, as the host runs one worker process: the library keeps its state in
module globals. ``load()`` again (a test's new settings) re-imports the app and indexes it anew.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import resource
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import azure.functions as func
import azure_functions_runtime as runtime
from azure_functions_runtime import handle_event

from tests.support.worker_protos import protos

ROOT = Path(__file__).resolve().parents[2]
APP_MODULE = "function_app"  # the script the worker indexes (PYTHON_SCRIPT_FILE_NAME's default)
HOST_VERSION = "4.1037.0"  # the host version the requests say they come from
TIMEOUT_SECONDS = 900.0  # an invocation that has not answered by then is a bug in the caller's test


# The worker's declared capabilities that change how the host builds a request (its ToRpcHttp
# switches on them). The requests here are built for exactly this set: a worker upgrade that
# declares another must fail here, not pass on requests the real host would build otherwise.
_MODELLED_CAPABILITIES = frozenset({"RawHttpBodyBytes", "RpcHttpBodyOnly", "RpcHttpTriggerMetadataRemoved"})
_SHAPING_CAPABILITIES = _MODELLED_CAPABILITIES | {
    "UseNullableValueDictionaryForHttp", "IgnoreEmptyValuedRpcHttpHeaders", "HttpUri",
}


class WorkerLoadFailed(RuntimeError):
    """The worker refused the app at start-up: in Azure, no function would run."""


class FunctionFailed(Exception):
    """A function's exception, as the worker reports it to the host (``RpcException``): a message,
    ``"{type}: {text}"``, and the stack trace. Nothing else crosses to the host."""

    def __init__(self, function: str, message: str, stack_trace: str) -> None:
        super().__init__(f"{function} failed: {message}")
        self.function = function
        self.message = message
        self.stack_trace = stack_trace

    @property
    def exception_type(self) -> str:
        """The exception's class name, as the worker's message starts with it."""
        return self.message.partition(":")[0]


@dataclass(frozen=True)
class ThreadCpu:
    """What the invocation's thread (the worker's pool thread that ran the function) spent."""

    user: float
    system: float
    switches: int


@dataclass(frozen=True)
class Answer:
    """What the worker answered to one invocation (its ``InvocationResponse``)."""

    function: str
    invocation_id: str
    error: FunctionFailed | None
    return_value: Any  # the TypedData of ``$return``, or None
    output_data: dict[str, Any]  # output binding name -> TypedData
    wall_seconds: float
    cpu: ThreadCpu | None = None  # with ``measure_cpu``

    @property
    def ok(self) -> bool:
        return self.error is None

    def http_response(self) -> func.HttpResponse:
        """The HTTP response the host sends: the worker's ``RpcHttp``, or 500 when the function failed."""
        if self.error is not None or self.return_value is None:
            return func.HttpResponse(b"", status_code=500)
        kind = self.return_value.WhichOneof("data")
        if kind == "string":  # a function may return a str: the host answers 200 with it
            return func.HttpResponse(self.return_value.string, status_code=200)
        if kind != "http":
            raise TypeError(f"{self.function} returned {kind!r} for an HTTP binding")
        http = self.return_value.http
        headers = dict(http.headers)
        content_type = Message()
        content_type["content-type"] = next((v for k, v in headers.items() if k.lower() == "content-type"),
                                            "text/plain")
        body_kind = http.body.WhichOneof("data")
        body = getattr(http.body, body_kind) if body_kind else b""
        charset = content_type.get_param("charset")
        return func.HttpResponse(body, status_code=int(http.status_code or 200), headers=headers,
                                 mimetype=content_type.get_content_type(),
                                 charset=charset if isinstance(charset, str) else None)


@dataclass(frozen=True)
class HostQueueMessage:
    """A queue message as the host's queue trigger hands it to the worker."""

    id: str
    body: str  # the text, after host.json's messageEncoding
    dequeue_count: int
    insertion_time: datetime | None
    expiration_time: datetime | None
    next_visible_time: datetime | None
    pop_receipt: str

    @classmethod
    def received(cls, message: Any, *, base64_encoded: bool) -> HostQueueMessage:
        """From a message the Storage SDK received (``azure.storage.queue.QueueMessage``)."""
        content: str = message.content
        return cls(
            id=message.id,
            body=decode_message(content) if base64_encoded else content,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            next_visible_time=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )


    @classmethod
    def made(cls, body: str, *, message_id: str, dequeue_count: int = 1) -> HostQueueMessage:
        """One that no queue received (a warm-up call): times as a fresh message's would be."""
        now = datetime.now(UTC).replace(microsecond=0)
        return cls(id=message_id, body=body, dequeue_count=dequeue_count, insertion_time=now,
                   expiration_time=now + timedelta(days=7), next_visible_time=now + timedelta(minutes=10),
                   pop_receipt=uuid.uuid4().hex)


def decode_message(content: str) -> str:
    """A base64 queue message's text, as the host's queue extension reads it (messageEncoding
    ``base64``): bytes that are not UTF-8 become U+FFFD, as .NET decodes them. Raises ValueError
    when the content is not base64 at all: the extension moves such a message to the poison queue
    without running the function (QueueServiceClientProvider's MessageDecodingFailed handler)."""
    return base64.b64decode("".join(content.split()), validate=True).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class HostHttpRequest:
    """An HTTP request as the host's HTTP trigger hands it to the worker."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    route_params: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class RegisteredFunction:
    """One function as the worker reported it to the host (``RpcFunctionMetadata``)."""

    name: str
    function_id: str
    raw_bindings: list[dict[str, Any]] = field(default_factory=list)

    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.raw_bindings if b["direction"] == "IN" and b["type"].endswith("Trigger"))


@dataclass
class _WorkerRequest:
    """What the proxy hands the library: the host's message and, at start-up, the protos and host."""

    name: str
    request: Any
    properties: dict[str, Any] | None = None


class Worker:
    """The worker library in this process, driven as the host's proxy drives it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="functions-worker-loop", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()
        self._pool_started = False
        self._cpu: dict[str, ThreadCpu] = {}
        self.functions: dict[str, RegisteredFunction] = {}

    def measure_cpu(self) -> None:
        """From now on, record the CPU of the pool thread that runs each invocation (Answer.cpu)."""
        original = handle_event.run_sync_func
        if getattr(original, "measured", False):
            return
        cpu = self._cpu

        def measured(invocation_id: str, context: Any, function: Any, params: Any) -> Any:
            before = resource.getrusage(resource.RUSAGE_THREAD)
            try:
                return original(invocation_id, context, function, params)
            finally:
                after = resource.getrusage(resource.RUSAGE_THREAD)
                cpu[invocation_id] = ThreadCpu(
                    after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
                    (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw))

        measured.measured = True  # type: ignore[attr-defined]
        handle_event.run_sync_func = measured

    def load(self, app_dir: Path = ROOT) -> dict[str, RegisteredFunction]:
        """Start the worker on the app as the host does (init, metadata, one load per function),
        importing ``function_app.py`` anew under the current settings; its functions by name."""
        with self._lock:
            if str(app_dir) not in sys.path:
                sys.path.insert(0, str(app_dir))  # the worker runs with the app's folder on sys.path
            # A new worker process imports the app afresh: a loaded one is imported again.
            if APP_MODULE in sys.modules:
                importlib.reload(sys.modules[APP_MODULE])
            if not self._pool_started:
                runtime.start_threadpool_executor()  # the proxy starts it before the init request
                self._pool_started = True
            init = self._run(runtime.worker_init_request(_WorkerRequest(
                "WorkerInitRequest",
                protos.StreamingMessage(worker_init_request=protos.WorkerInitRequest(
                    host_version=HOST_VERSION, function_app_directory=str(app_dir), worker_directory=str(app_dir))),
                {"protos": protos, "host": "127.0.0.1"},
            )))
            if init.result.status != protos.StatusResult.Success:
                raise WorkerLoadFailed(init.result.exception.message)
            declared = {name for name, value in init.capabilities.items()
                        if name in _SHAPING_CAPABILITIES and (value.lower() == "true" or name == "HttpUri")}
            if declared != _MODELLED_CAPABILITIES:
                raise WorkerLoadFailed(
                    f"the worker declares {sorted(declared)}, but the requests here are built as the host "
                    f"builds them for {sorted(_MODELLED_CAPABILITIES)}: model the difference first")
            metadata = self._run(runtime.functions_metadata_request(_WorkerRequest(
                "WorkerMetadataRequest",
                protos.StreamingMessage(functions_metadata_request=protos.FunctionsMetadataRequest(
                    function_app_directory=str(app_dir))),
            )))
            functions = {}
            for meta in metadata.function_metadata_results:
                loaded = self._run(runtime.function_load_request(_WorkerRequest(
                    "FunctionLoadRequest",
                    protos.StreamingMessage(function_load_request=protos.FunctionLoadRequest(
                        function_id=meta.function_id, metadata=meta)),
                )))
                if loaded.result.status != protos.StatusResult.Success:
                    raise WorkerLoadFailed(f"{meta.name}: {loaded.result.exception.message}")
                functions[meta.name] = RegisteredFunction(
                    meta.name, meta.function_id, [json.loads(raw) for raw in meta.raw_bindings])
            self.functions = functions
            return dict(functions)

    # -- invocations --------------------------------------------------------------------------

    def invoke(self, function: str, inputs: Mapping[str, Any], trigger_metadata: Mapping[str, Any]) -> Answer:
        """One ``InvocationRequest``, answered: ``inputs`` are binding name -> TypedData,
        ``trigger_metadata`` name -> TypedData (the trigger's binding data)."""
        return self.submit(function, inputs, trigger_metadata).result(timeout=TIMEOUT_SECONDS)

    def submit(self, function: str, inputs: Mapping[str, Any], trigger_metadata: Mapping[str, Any]) -> Future[Answer]:
        """One ``InvocationRequest``, sent: its answer comes later, as the proxy's do."""
        target = self.functions[function]
        request = protos.InvocationRequest(
            invocation_id=str(uuid.uuid4()),
            function_id=target.function_id,
            input_data=[protos.ParameterBinding(name=name, data=data) for name, data in inputs.items()],
            trigger_metadata=dict(trigger_metadata),
            trace_context=protos.RpcTraceContext(trace_parent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"),
        )
        return asyncio.run_coroutine_threadsafe(self._invocation(function, request), self._loop)

    async def _invocation(self, function: str, request: Any) -> Answer:
        started = time.perf_counter()
        response = await runtime.invocation_request(
            _WorkerRequest("FunctionInvocationRequest", protos.StreamingMessage(invocation_request=request)))
        wall = time.perf_counter() - started
        error = None
        if response.result.status != protos.StatusResult.Success:
            exception = response.result.exception
            error = FunctionFailed(function, exception.message, exception.stack_trace)
        return Answer(
            function=function,
            invocation_id=request.invocation_id,
            error=error,
            return_value=response.return_value if response.HasField("return_value") else None,
            output_data={binding.name: binding.data for binding in response.output_data},
            wall_seconds=wall,
            cpu=self._cpu.pop(request.invocation_id, None),
        )

    def invoke_queue(self, function: str, message: HostQueueMessage) -> Answer:
        return self.submit_queue(function, message).result(timeout=TIMEOUT_SECONDS)

    def submit_queue(self, function: str, message: HostQueueMessage) -> Future[Answer]:
        trigger = self.functions[function].trigger()
        metadata = {
            "QueueTrigger": protos.TypedData(string=message.body),
            "Id": protos.TypedData(string=message.id),
            "PopReceipt": protos.TypedData(string=message.pop_receipt),
            "DequeueCount": protos.TypedData(json=json.dumps(message.dequeue_count)),
        }
        for name, moment in (("InsertionTime", message.insertion_time), ("ExpirationTime", message.expiration_time),
                             ("NextVisibleTime", message.next_visible_time)):
            if moment is not None:  # binding data that is null is left out
                metadata[name] = protos.TypedData(json=json.dumps(iso_8601(moment)))
        return self.submit(function, {trigger["name"]: protos.TypedData(string=message.body)}, metadata)

    def invoke_http(self, function: str, request: HostHttpRequest) -> Answer:
        trigger = self.functions[function].trigger()
        http = protos.RpcHttp(
            method=request.method.upper(),
            url=request.url,
            headers={name.lower(): value for name, value in request.headers.items()},
            query={name: value for name, value in request.query.items() if value},
            params=dict(request.route_params),
        )
        if request.body:
            http.body.bytes = request.body
        # The HTTP extension's binding data: the route parameters, and the query and headers as
        # JSON (the request object itself is left out: the worker says it does not need it).
        metadata = {name: protos.TypedData(string=value) for name, value in request.route_params.items()}
        metadata["Query"] = protos.TypedData(json=json.dumps(dict(http.query)))
        metadata["Headers"] = protos.TypedData(json=json.dumps(dict(http.headers)))
        return self.invoke(function, {trigger["name"]: protos.TypedData(http=http)}, metadata)

    def invoke_timer(self, function: str, *, past_due: bool = False) -> Answer:
        trigger = self.functions[function].trigger()
        # TimerInfo as the host serializes it; ScheduleStatus is null without useMonitor.
        info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due}
        return self.invoke(function, {trigger["name"]: protos.TypedData(json=json.dumps(info))}, {})

    def _run[T](self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=TIMEOUT_SECONDS)


def iso_8601(moment: datetime) -> str:
    """A DateTimeOffset as the host's JSON serializer writes it: seconds, a fraction without
    trailing zeros, the offset."""
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    offset = moment.strftime("%z")
    return f"{text}{offset[:3]}:{offset[3:]}"


_worker: Worker | None = None
_worker_lock = threading.Lock()


def worker() -> Worker:
    """This process's worker (started on first use)."""
    global _worker  # noqa: PLW0603 - one per process, as the library's own state is
    with _worker_lock:
        if _worker is None:
            _worker = Worker()
        return _worker


def load_app(app_dir: Path = ROOT) -> Worker:
    """This process's worker, with the app (re)loaded under the current settings."""
    loaded = worker()
    loaded.load(app_dir)
    return loaded

