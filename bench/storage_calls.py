"""What one run costs in Storage transactions and function invocations, counted on the wire.

    .venv/bin/python -m bench.storage_calls [--output bench/RESULTS-storage-calls.md]

Each shape of run (1, 5 or 20 small files; a 10 MiB file; a run that stays in progress for a few
looks, with and without a webhook; and an idle app) goes through the whole pipeline in a *lane*
of its own: a process with the app's HTTP functions (``tests/support/host.py``), the queue
functions in a worker process behind the host stand-in's listeners (``bench/queue_host.py``:
host.json's batching and polling back-off), its own queues and containers, and its own fake
Azure OpenAI. The lanes run side by side against one Azurite, through one counting proxy
(``bench/latency_proxy.py`` with no delay) that classifies every request by its lane (the queue
or container it names), by who sent it (the app, or the host polling and settling its trigger
queues: each has a route of its own) and by its Storage operation (Put Blob, List Blobs, Put
Message, Get Messages...).

A lane starts its runs one after the other (each once the previous one's completion event is on
the queue), then waits until its queues are empty: the watcher's late messages (the completing
step's safety net, 60 s later; a scheduled look that a wake-up overtook) are part of a run's
cost. Per-run figures are the lane's totals divided by its runs. What a process does once
(Create Container) and the host's polls that found nothing (a cost of time, not of runs) are
reported apart. The production schedule applies (the watcher looks 2 s after the POST, then
after 4, 8, 16, 30 s; checks the files 2 s after the fan-out, growing 1.5x), as does host.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from bench.latency_proxy import Head, LatencyProxy
from bench.queue_host import FunctionWorker, QueueListener, QueueSettings, host_queues
from tests.support.azurite import Azurite, loopback_connection_string
from tests.support.host import FunctionsHost, HttpCall

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

    from tests.fake_openai import FakeAzureOpenAI

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "bench" / "RESULTS-storage-calls.md"
COMMAND = ".venv/bin/python -m bench.storage_calls"
KiB, MiB = 1024, 1024 * 1024
DEPLOYMENT = "bench"
HOST_STORAGE_ENV = "BENCH_HOST_STORAGE"  # the host stand-in's queues, through the proxy's host route
DIRECT_STORAGE_ENV = "BENCH_DIRECT_STORAGE"  # the lane's own look at its queues: around the proxy, uncounted
EVENT_TIMEOUT_SECONDS = 120.0
DRAIN_TIMEOUT_SECONDS = 120.0  # the safety net comes 60 s after a run completes
LANE_TIMEOUT_SECONDS = 600.0
WEBHOOK_ROUTE = "webhooks/azure-openai"
RESPONSE_ENDED = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
# A lane's queues and containers: "{tag}-{kind}".
QUEUE_KINDS = {"runs": "watcher queue", "files": "download queue", "events": "event queue",
               "runs-poison": "watcher poison queue", "files-poison": "download poison queue"}
CONTAINER_KINDS = {"art": "artifact", "status": "status"}
ONCE_PER_PROCESS = frozenset({"Create Container", "Create Queue"})  # not a run's cost
BACKED_OFF = 0.75  # a poll this share of maxPollingInterval after the last one or later: the back-off is done


@dataclass(frozen=True)
class Shape:
    name: str
    files: int = 1
    runs: int = 3
    run_seconds: float | None = None  # the run ends by itself this long after its create; None: at the first look
    webhook: bool = False  # the fake calls the app's webhook when the run ends
    file_bytes: int = 64 * KiB
    idle_seconds: float = 0.0  # a lane without runs: the host's polls at rest, then one monitor_queues


SHAPES = (
    Shape("1 file"),
    Shape("5 files", files=5),
    Shape("20 files", files=20),
    Shape("1 file of 10 MiB", file_bytes=10 * MiB, runs=2),
    Shape("1 file, run lasts 10 s, polling only", run_seconds=10.0, runs=2),
    Shape("1 file, run lasts 10 s, webhook on", run_seconds=10.0, runs=2, webhook=True),
    Shape("idle: no runs for 30 s, then one monitor_queues", runs=0, idle_seconds=30.0),
)


# -- classifying requests, in the proxy --------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Call:
    """One kind of Storage request: who sent it, to which service, which operation, on what."""

    caller: str  # "app" or "host"
    service: str  # "blob" or "queue"
    operation: str  # the Storage REST operation: "Put Blob", "Get Messages", ...
    target: str  # what it touched: "run record", "watcher queue", ...


def request_target(head: Head) -> tuple[str, dict[str, list[str]]]:
    """The request's path and its query (a head's ``path`` has no query)."""
    target = head.raw.split(b" ", 2)[1].decode("latin-1")
    parts = urlsplit(target)
    return parts.path, parse_qs(parts.query, keep_blank_values=True)


def classify(route: str, head: Head, lanes: Iterable[str]) -> tuple[str, Call] | None:
    """The lane and kind of a request on one of the proxy's routes (``blob``, ``queue``: the app's;
    ``host-queue``: the host's); None when it names no lane or no operation known here."""
    path, query = request_target(head)
    segments = path.split("/")[2:]  # "", the account (Azurite puts it in the path), then the resource
    if not segments or not segments[0]:
        return None
    resource, rest = segments[0], [s for s in segments[1:] if s]
    tag, _, kind = resource.partition("-")
    if tag not in lanes:
        return None
    caller = "host" if route == "host-queue" else "app"
    if route == "blob":
        found = _blob_call(head, query, kind, "/".join(rest))
    else:
        found = _queue_call(head.method, query, kind, rest)
    return None if found is None else (tag, Call(caller, found[0], found[1], found[2]))


def _blob_call(head: Head, query: dict[str, list[str]], kind: str, blob: str) -> tuple[str, str, str] | None:
    container = CONTAINER_KINDS.get(kind)
    if container is None:
        return None
    comp = query.get("comp", [""])[0]
    method = head.method
    if not blob:
        if query.get("restype", [""])[0] != "container":
            return None
        operation = {("PUT", ""): "Create Container", ("GET", "list"): "List Blobs",
                     ("GET", ""): "Get Container Properties", ("HEAD", ""): "Get Container Properties",
                     ("DELETE", ""): "Delete Container"}.get((method, comp))
        if operation is None:
            return None
        what = f"{container} container" if operation != "List Blobs" else (
            "artifact blobs (listing)" if container == "artifact" else "run's status blobs (listing)")
        return "blob", operation, what
    operation = {("PUT", ""): "Put Blob", ("PUT", "block"): "Put Block", ("PUT", "blocklist"): "Put Block List",
                 ("PUT", "appendblock"): "Append Block", ("PUT", "metadata"): "Set Blob Metadata",
                 ("PUT", "properties"): "Set Blob Properties", ("GET", ""): "Get Blob",
                 ("HEAD", ""): "Get Blob Properties", ("DELETE", ""): "Delete Blob"}.get((method, comp))
    if operation is None:
        return None
    if operation == "Put Blob" and b"\r\nx-ms-blob-type: appendblob" in head.raw.lower():
        operation = "Put Blob (append blob)"
    return "blob", operation, "artifact blob" if container == "artifact" else _status_blob(blob)


def _status_blob(name: str) -> str:
    """What a blob of the status container is, by its name (see shared/storage/status_records.py)."""
    for prefix, what in (("_webhooks/", "webhook receipt"), ("_idempotency/", "idempotency claim"),
                         ("_invalid/", "unusable message record")):
        if name.startswith(prefix):
            return what
    leaf = name.rpartition("/")[2]
    if leaf == "_run.json":
        return "run record"
    if leaf == "_event.json":
        return "event document"
    if leaf.startswith("_settled."):
        return "settle log"
    return "failure record" if leaf.endswith(".json") else "other status blob"


def _queue_call(method: str, query: dict[str, list[str]], kind: str, rest: list[str]) -> tuple[str, str, str] | None:
    queue = QUEUE_KINDS.get(kind)
    if queue is None:
        return None
    if not rest:
        comp = query.get("comp", [""])[0]
        operation = {("PUT", ""): "Create Queue", ("DELETE", ""): "Delete Queue",
                     ("GET", "metadata"): "Get Queue Metadata", ("HEAD", "metadata"): "Get Queue Metadata",
                     ("PUT", "metadata"): "Set Queue Metadata"}.get((method, comp))
    elif rest == ["messages"]:
        peek = query.get("peekonly", [""])[0].lower() == "true"
        operation = {"POST": "Put Message", "GET": "Peek Messages" if peek else "Get Messages",
                     "DELETE": "Clear Messages"}.get(method)
    elif len(rest) == 2 and rest[0] == "messages":
        operation = {"DELETE": "Delete Message", "PUT": "Update Message"}.get(method)
    else:
        operation = None
    return None if operation is None else ("queue", operation, queue)


class CallCounter:
    """The proxy's hook: counts every request by lane and kind, and keeps the ones it could not place."""

    def __init__(self, lanes: Iterable[str]) -> None:
        self.lanes = frozenset(lanes)
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[Call]] = {lane: Counter() for lane in self.lanes}
        self.unclassified: list[str] = []
        self.requests = 0

    def record(self, route: str, head: Head) -> None:
        placed = classify(route, head, self.lanes)
        with self._lock:
            self.requests += 1
            if placed is None:
                self.unclassified.append(f"{route}: {head.raw.split(b' HTTP/', 1)[0].decode('latin-1')}")
            else:
                self._counts[placed[0]][placed[1]] += 1

    def of(self, lane: str) -> Counter[Call]:
        with self._lock:
            return Counter(self._counts[lane])


# -- one lane, in its own process -----------------------------------------------------------------------


class _CountingHost(FunctionsHost):
    """The tests' host stand-in, counting the HTTP invocations it makes (the POSTs, the webhooks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invocations: Counter[str] = Counter()
        self._invocations_lock = threading.Lock()

    def http(self, method: str, route: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None,
             params: Mapping[str, str] | None = None, query_string: str | None = None) -> HttpCall:
        with self._invocations_lock:
            self.invocations[self._http_function(method, route)[0].name] += 1
        return super().http(method, route, body=body, headers=headers, params=params, query_string=query_string)


class _CountingListener(QueueListener):
    """The host's listener for one queue, counting its Get Messages: those that found messages, and
    the empty ones made while the back-off starts over after a message (the host looks again after
    100 ms, then ever later up to maxPollingInterval: a run's messages cost those polls too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.polls = 0
        self.found = 0
        self.received = 0
        self.backing_off = 0  # empty polls sooner than the longest interval, since a poll found messages
        self._after_found = False
        self._last_poll = time.monotonic()
        self._polls_lock = threading.Lock()

    def _receive(self) -> list[Any]:
        batch = super()._receive()
        now = time.monotonic()
        with self._polls_lock:
            self.polls += 1
            if batch:
                self.found += 1
                self.received += len(batch)
                self._after_found = True
            elif self._after_found and now - self._last_poll < BACKED_OFF * self.settings.max_polling_seconds:
                self.backing_off += 1
            else:
                self._after_found = False  # backed off all the way: idle polling from here on
            self._last_poll = now
        return batch

    def idle(self) -> bool:
        """Nothing received is still running."""
        with self._polls_lock:
            received = self.received
        return received == self.tally.succeeded + self.tally.failed


def run_lane(spec: dict[str, Any]) -> dict[str, Any]:
    """One lane, in this process (configured through its environment by :func:`measure`): the
    shape's runs one after the other, each until its completion event; then, with ``drain``, until
    the lane's queues are empty. Answers what the lane saw: its runs, events, invocations, polls."""
    from tests.support.http_front import FUNCTION_KEY, serve_http  # noqa: PLC0415

    shape = Shape(**spec["shape"])
    tag, fake, key = str(spec["tag"]), str(spec["fake"]), {"api-key": str(spec["api_key"])}
    started = time.monotonic()
    settings = QueueSettings.from_host_json()
    direct = os.environ[DIRECT_STORAGE_ENV]
    host = _CountingHost(direct)  # the worker loads function_app.py under the lane's environment
    events = _direct_queue(direct, f"{tag}-events")
    seen: Counter[str] = Counter()
    runs: list[str] = []
    with contextlib.ExitStack() as stack:
        if shape.webhook:
            base = stack.enter_context(serve_http(host))
            url = f"{base}/api/{WEBHOOK_ROUTE}?code={FUNCTION_KEY}"
            os.environ["AZURE_OPENAI_WEBHOOK_SECRET"] = _register_webhook(fake, key, url)
        worker = FunctionWorker(settings.concurrency)  # after the environment is complete: it inherits it
        stack.callback(worker.close)
        service = host_queues(os.environ[HOST_STORAGE_ENV])
        listeners = [_CountingListener(info, service, settings, worker)
                     for info in host.functions.values() if info.binding("queueTrigger") is not None]
        listening = time.monotonic()
        for listener in listeners:
            stack.callback(listener.stop)  # before the worker closes: the stack unwinds in reverse
            listener.start()
        monitor_calls = 0
        if shape.idle_seconds:
            time.sleep(shape.idle_seconds)  # the host polls its queues at rest
            assert host.timer("monitor_queues").error is None  # the timer's one firing, through the worker
            monitor_calls = 1
        for number in range(shape.runs):
            response_id = _start_run(host, fake, key, shape, f"{tag} run {number} {uuid.uuid4().hex}")
            runs.append(response_id)
            _wait_for_event(events, response_id, seen)
        drained = _wait_drained(listeners, [_direct_queue(direct, f"{tag}-{kind}") for kind in QUEUE_KINDS
                                            if kind != "events"]) if spec["drain"] else False
        for listener in listeners:
            listener.stop()
        listening = time.monotonic() - listening
    _take_events(events, seen)  # a late duplicate would show here
    return {
        "tag": tag,
        "runs": runs,
        "events": {rid: seen[rid] for rid in runs},
        "drained": drained,
        "invocations": dict(host.invocations + Counter({one.function.name: one.tally.succeeded for one in listeners})),
        "failed_invocations": {one.function.name: one.tally.failed for one in listeners if one.tally.failed},
        "monitor_calls": monitor_calls,
        "polls": {one.queue.queue_name.partition("-")[2]:
                  {"polls": one.polls, "found": one.found, "backing_off": one.backing_off} for one in listeners},
        "max_polling_seconds": settings.max_polling_seconds,
        "listening_seconds": listening,
        "seconds": time.monotonic() - started,
    }


def _direct_queue(connection_string: str, name: str) -> QueueClient:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy  # noqa: PLC0415

    return QueueClient.from_connection_string(connection_string, name, message_decode_policy=TextBase64DecodePolicy())


def _register_webhook(fake: str, key: dict[str, str], url: str) -> str:
    """Register the lane's webhook URL at its fake, as scripts/register_webhook.py does; the secret."""
    import httpx  # noqa: PLC0415

    answer = httpx.post(f"{fake}/openai/v1/dashboard/webhook_endpoints", headers=key, timeout=30,
                        json={"name": "bench-storage-calls", "url": url, "event_types": list(RESPONSE_ENDED)})
    answer.raise_for_status()
    return str(answer.json()["signing_secret"])


def _start_run(host: FunctionsHost, fake: str, key: dict[str, str], shape: Shape, prompt: str) -> str:
    """POST /api/responses for a prompt the fake answers with the shape's files (uncited: the
    watcher lists the container); the run's id."""
    import httpx  # noqa: PLC0415

    scenario: dict[str, Any] = {
        "prompt": prompt,
        "files": [{"path": f"/mnt/data/file{i}.bin", "size": shape.file_bytes} for i in range(shape.files)],
    }
    if shape.run_seconds is not None:
        scenario["seconds_before_done"] = shape.run_seconds
    httpx.post(f"{fake}/_fake/scenarios", json=scenario, headers=key, timeout=60).raise_for_status()
    call = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode())
    if call.response.status_code != 202:
        raise RuntimeError(f"POST /api/responses answered {call.response.status_code}: {call.response.get_body()!r}")
    return str(call.json()["response_id"])


def _take_events(events: QueueClient, seen: Counter[str]) -> None:
    """Take the events off the lane's event queue (around the proxy), counting them by run."""
    from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415

    with contextlib.suppress(ResourceNotFoundError):
        for message in events.receive_messages(messages_per_page=32, visibility_timeout=60):
            seen[str(json.loads(message.content)["subject"])] += 1  # a CloudEvent: its subject is the run
            events.delete_message(message)


def _wait_for_event(events: QueueClient, response_id: str, seen: Counter[str]) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_SECONDS
    while not seen[response_id]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {response_id}: no completion event within {EVENT_TIMEOUT_SECONDS:g} s")
        time.sleep(0.2)  # polling the event queue, with a deadline
        _take_events(events, seen)


def _wait_drained(listeners: Sequence[_CountingListener], queues: Sequence[QueueClient]) -> bool:
    """Until the lane's trigger queues hold nothing, delayed or leased, and nothing runs (three looks
    in a row, half a second apart); False if that did not happen in time."""
    from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415

    def empty(queue: QueueClient) -> bool:
        try:
            return not queue.get_queue_properties().approximate_message_count
        except ResourceNotFoundError:
            return True

    deadline, quiet = time.monotonic() + DRAIN_TIMEOUT_SECONDS, 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if all(one.idle() for one in listeners) and all(empty(q) for q in queues) else 0
        if quiet >= 3:
            return True
        time.sleep(0.5)  # the safety net's message is still invisible: polling, with a deadline
    return False


# -- the lanes side by side, from the parent -----------------------------------------------------------


@dataclass
class LaneResult:
    shape: Shape
    tag: str
    report: dict[str, Any]
    calls: Counter[Call]
    openai: Counter[str]

    @property
    def runs(self) -> int:
        return len(self.report["runs"])

    def host_polls(self) -> tuple[int, int, int]:
        """The host's Get Messages: that found messages, that found none while backing off after one,
        and the rest (idle polling at maxPollingInterval, and the back-off when the listeners started)."""
        polls = self.report["polls"].values()
        found = sum(int(p["found"]) for p in polls)
        backing_off = sum(int(p["backing_off"]) for p in polls)
        total = sum(n for call, n in self.calls.items() if call.caller == "host" and call.operation == "Get Messages")
        return found, backing_off, total - found - backing_off

    def run_calls(self) -> Counter[Call]:
        """The requests a run costs: the lane's, less each process's one-offs and the host's idle polls.
        The host's Get Messages that found messages, and the empty ones of the back-off that each of
        them starts again, stay, each under its own name."""
        kept = Counter({call: n for call, n in self.calls.items()
                        if call.operation not in ONCE_PER_PROCESS
                        and not (call.caller == "host" and call.operation == "Get Messages")})
        for kind, polls in self.report["polls"].items():
            for what, key in (("Get Messages (found messages)", "found"),
                              (BACK_OFF_POLLS, "backing_off")):
                if int(polls[key]):
                    kept[Call("host", "queue", what, QUEUE_KINDS[kind])] = int(polls[key])
        return kept

    def once_per_process(self) -> Counter[Call]:
        return Counter({call: n for call, n in self.calls.items() if call.operation in ONCE_PER_PROCESS})

    def invocations(self) -> Counter[str]:
        return Counter({name: int(n) for name, n in self.report["invocations"].items() if n})


@dataclass
class Measurement:
    lanes: list[LaneResult]
    unclassified: list[str]
    requests: int  # every request the proxy saw
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    notes: list[str] = field(default_factory=list)


def lane_env(tag: str, fake: FakeAzureOpenAI, app_storage: str, host_storage: str, direct: str) -> dict[str, str]:
    """The lane process's environment: the parent's, less any app setting, plus the lane's."""
    dropped = ("ARTIFACTS_", "AZURE_OPENAI_", "AzureWebJobs", "AzureFunctionsJobHost", "WEBSITE_",
               "APPLICATIONINSIGHTS_", "OTEL_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    env.update({
        "AZURE_OPENAI_ENDPOINT": fake.endpoint,
        "AZURE_OPENAI_API_KEY": fake.api_key,
        "AZURE_OPENAI_DEPLOYMENT": DEPLOYMENT,
        "AzureWebJobsStorage": app_storage,
        "ARTIFACTS_QUEUE": f"{tag}-files",
        "ARTIFACTS_RUNS_QUEUE": f"{tag}-runs",
        "ARTIFACTS_EVENTS_QUEUE": f"{tag}-events",
        "ARTIFACTS_CONTAINER": f"{tag}-art",
        "ARTIFACTS_STATUS_CONTAINER": f"{tag}-status",
        HOST_STORAGE_ENV: host_storage,
        DIRECT_STORAGE_ENV: direct,
        "PYTHONPATH": str(ROOT),
    })
    return env


def _create_lane_storage(connection_string: str, tag: str) -> None:
    """The lane's queues and containers, made around the proxy: a deployed app finds them there
    (the run's own first requests would otherwise include a failed send and a Create Queue)."""
    from azure.core.exceptions import ResourceExistsError  # noqa: PLC0415
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415
    from azure.storage.queue import QueueServiceClient  # noqa: PLC0415

    queues = QueueServiceClient.from_connection_string(connection_string)
    blobs = BlobServiceClient.from_connection_string(connection_string)
    for kind in QUEUE_KINDS:
        with contextlib.suppress(ResourceExistsError):
            queues.create_queue(f"{tag}-{kind}")
    for kind in CONTAINER_KINDS:
        with contextlib.suppress(ResourceExistsError):
            blobs.create_container(f"{tag}-{kind}")


_OPENAI_ROUTES = (
    ("POST", re.compile(r"/openai/v1/responses/?"), "create response"),
    ("GET", re.compile(r"/openai/v1/responses/[^/]+/?"), "get response"),
    ("GET", re.compile(r"/openai/v1/containers/[^/]+/files/?"), "list container files"),
    ("GET", re.compile(r"/openai/v1/containers/[^/]+/files/[^/]+/content/?"), "download file"),
    ("GET", re.compile(r"/openai/v1/containers/[^/]+/files/[^/]+/?"), "get container file"),
)


def openai_calls(requests: Iterable[Any]) -> Counter[str]:
    """The app's calls to Azure OpenAI among a fake's recorded requests (set-up routes left out)."""
    counted: Counter[str] = Counter()
    for request in requests:
        for method, pattern, name in _OPENAI_ROUTES:
            if request.method == method and pattern.fullmatch(request.path):
                counted[name] += 1
                break
    return counted


def measure(plans: Sequence[tuple[Shape, FakeAzureOpenAI]], azurite: Azurite, *, drain: bool = True) -> Measurement:
    """Every plan's lane at once, against ``azurite`` through one counting proxy. Give each lane a fake
    of its own: its Azure OpenAI calls are the requests the fake records while the lanes run."""
    load_before = os.getloadavg()
    started = time.monotonic()
    tags = [f"sc{index}{uuid.uuid4().hex[:5]}" for index in range(len(plans))]
    counter = CallCounter(tags)
    upstreams = {"blob": ("127.0.0.1", azurite.blob_port), "queue": ("127.0.0.1", azurite.queue_port),
                 "host-queue": ("127.0.0.1", azurite.queue_port)}
    reports: dict[str, dict[str, Any]] = {}
    marks = {tag: len(fake.requests) for tag, (_, fake) in zip(tags, plans, strict=True)}
    with LatencyProxy(upstreams, delay_ms=0, on_request=counter.record) as proxy, \
            tempfile.TemporaryDirectory(prefix="bench-storage-calls-") as scratch:
        app_storage = loopback_connection_string(proxy.port("blob"), proxy.port("queue"), azurite.table_port)
        host_storage = loopback_connection_string(proxy.port("blob"), proxy.port("host-queue"), azurite.table_port)
        lanes: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
        try:
            for tag, (shape, fake) in zip(tags, plans, strict=True):
                _create_lane_storage(azurite.connection_string, tag)
                spec = {"tag": tag, "shape": asdict(shape), "fake": fake.endpoint, "api_key": fake.api_key,
                        "drain": drain}
                out, err = Path(scratch, f"{tag}.out"), Path(scratch, f"{tag}.err")
                with out.open("wb") as stdout, err.open("wb") as stderr:
                    lanes[tag] = (subprocess.Popen(
                        [sys.executable, "-m", "bench.storage_calls", "--lane", json.dumps(spec)], cwd=ROOT,
                        env=lane_env(tag, fake, app_storage, host_storage, azurite.connection_string),
                        stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr), out, err)
            deadline = time.monotonic() + LANE_TIMEOUT_SECONDS
            for tag, (process, out, err) in lanes.items():
                code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
                if code != 0:
                    raise RuntimeError(f"lane {tag} failed ({code}):\n{err.read_text(errors='replace')[-4000:]}")
                reports[tag] = json.loads(out.read_text().strip().splitlines()[-1])
        finally:
            for process, _, _ in lanes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
    results = [
        LaneResult(shape, tag, reports[tag], counter.of(tag), openai_calls(fake.requests[marks[tag]:]))
        for tag, (shape, fake) in zip(tags, plans, strict=True)
    ]
    return Measurement(results, list(counter.unclassified), counter.requests, time.monotonic() - started,
                       load_before, os.getloadavg())


# -- the report ---------------------------------------------------------------------------------------


def _per_run(value: float, runs: int) -> str:
    per = value / runs
    return f"{per:.0f}" if per == int(per) else f"{per:.2f}"


BACK_OFF_POLLS = "Get Messages (empty, backing off after one)"


def _totals(calls: Counter[Call]) -> dict[str, int]:
    return {
        "app blob": sum(n for c, n in calls.items() if c.caller == "app" and c.service == "blob"),
        "app queue": sum(n for c, n in calls.items() if c.caller == "app" and c.service == "queue"),
        "host deliveries": sum(n for c, n in calls.items() if c.caller == "host" and c.operation != BACK_OFF_POLLS),
        "host back-off": sum(n for c, n in calls.items() if c.caller == "host" and c.operation == BACK_OFF_POLLS),
    }


def summary_rows(lanes: Sequence[LaneResult]) -> list[str]:
    rows = []
    for lane in lanes:
        if not lane.runs:
            continue
        totals = _totals(lane.run_calls())
        everything = sum(totals.values())
        rows.append(
            f"| {lane.shape.name} | {lane.runs} | {_per_run(totals['app blob'], lane.runs)} | "
            f"{_per_run(totals['app queue'], lane.runs)} | {_per_run(totals['host deliveries'], lane.runs)} | "
            f"{_per_run(totals['host back-off'], lane.runs)} | **{_per_run(everything, lane.runs)}** | "
            f"{_per_run(sum(lane.invocations().values()), lane.runs)} | "
            f"{_per_run(sum(lane.openai.values()), lane.runs)} |"
        )
    return rows


def lane_section(lane: LaneResult) -> list[str]:
    runs = lane.runs
    idle = lane.host_polls()[2]
    minutes = float(lane.report["listening_seconds"]) / 60
    lines = [f"## {lane.shape.name}", ""]
    if runs:
        lines += [
            f"{runs} run(s), one after the other; {lane.shape.files} file(s) of {_size(lane.shape.file_bytes)} each; "
            + ("the run ends at the watcher's first look" if lane.shape.run_seconds is None
               else f"the run ends {lane.shape.run_seconds:g} s after its create")
            + ("; the fake calls the app's webhook when it ends" if lane.shape.webhook else "; no webhook") + ". "
            f"Events per run: {sorted(set(lane.report['events'].values()))}; queues drained after the last: "
            f"{'yes' if lane.report['drained'] else 'no'}.",
            "",
            "| by | service | operation | on | per run |",
            "|---|---|---|---|---:|",
        ]
        for call, n in sorted(lane.run_calls().items()):
            lines.append(f"| {call.caller} | {call.service} | {call.operation} | {call.target} | {_per_run(n, runs)} |")
        totals = _totals(lane.run_calls())
        lines += [
            f"| | | | **all** | **{_per_run(sum(totals.values()), runs)}** |",
            "",
            "| function invoked | per run |",
            "|---|---:|",
            *[f"| `{name}` | {_per_run(n, runs)} |" for name, n in sorted(lane.invocations().items())],
            "",
            "Azure OpenAI calls per run: "
            + (", ".join(f"{name} {_per_run(n, runs)}" for name, n in sorted(lane.openai.items())) or "none") + ".",
            "",
        ]
    else:
        lines += [f"No runs; the host stand-in listened for {lane.report['listening_seconds']:.0f} s, then "
                  f"`monitor_queues` ran {lane.report['monitor_calls']} time(s).", ""]
        lines += ["| by | service | operation | on | count |", "|---|---|---|---|---:|"]
        for call, n in sorted(lane.calls.items()):
            if call.operation not in ONCE_PER_PROCESS:
                lines.append(f"| {call.caller} | {call.service} | {call.operation} | {call.target} | {n} |")
        lines.append("")
    once = lane.once_per_process()
    interval = float(lane.report["max_polling_seconds"])
    queues = len(lane.report["polls"])
    lines.append(
        f"The host's idle polls (not per run): {idle} Get Messages that found nothing in "
        f"{lane.report['listening_seconds']:.0f} s of listening, {idle / minutes:.0f} a minute on {queues} trigger "
        f"queues, the back-off of the listeners' start included; at rest, one poll per queue every "
        f"{interval:g} s (maxPollingInterval) is {queues * 60 / interval:.0f} a minute. "
        "Once per process, not per run: "
        + (", ".join(f"{c.operation} ({c.target}) {n}" for c, n in sorted(once.items())) or "nothing") + "."
    )
    return [*lines, ""]


def _size(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def render(measured: Measurement, *, machine: str, command: str = COMMAND) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Storage transactions and function invocations per run (measured)",
        "",
        f"Command: `{command}`; {when}; took {measured.seconds / 60:.1f} min.",
        f"Machine: {machine}; load average (1, 5, 15 min) before {_load(measured.load_before)}, "
        f"after {_load(measured.load_after)}.",
        "",
        "Every request the app and the host stand-in made to Storage (Azurite), counted at a proxy and "
        "classified by Storage operation; the function invocations each lane's host stand-in made. How: "
        "the docstring of `bench/storage_calls.py`. **app** is what the app's code sends; **host** is "
        "what the Functions host sends to run the queue triggers: its *deliveries* are the Get Messages "
        "that brought messages and the Delete Message when a function returns (an Update Message when "
        "one fails); its *back-off polls* are the empty Get Messages it makes because a message came: "
        "after each, it looks again at once and then ever later (100 ms doubling) until it is back at "
        "maxPollingInterval. Those depend on how the run's messages fall in time (one run at a time here: "
        "the most; runs side by side share them). The host's polls of an idle queue, at maxPollingInterval, "
        "are a cost of time, not of runs: they are given per minute under each shape. Not counted here: "
        "the host's own blob leases and the platform's scale controller (both there whatever the app does).",
        "",
        "## Per run, every shape",
        "",
        "| shape | runs | app: blob | app: queue | host: deliveries | host: back-off polls | Storage requests | "
        "invocations | Azure OpenAI calls |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *summary_rows(measured.lanes),
        "",
    ]
    for lane in measured.lanes:
        lines += lane_section(lane)
    lines += [
        "## Checks",
        "",
        f"- Requests the proxy saw: {measured.requests}; not placed in a lane and an operation: "
        f"{len(measured.unclassified)}.",
        *[f"- {note}" for note in measured.notes],
        "",
    ]
    return "\n".join(lines)


def consistency_notes(measured: Measurement) -> list[str]:
    """Cross-checks between what the proxy counted and what the lanes saw; empty when all agree."""
    problems = []
    for lane in measured.lanes:
        polls = sum(int(p["polls"]) for p in lane.report["polls"].values())
        gets = sum(n for c, n in lane.calls.items() if c.caller == "host" and c.operation == "Get Messages")
        if polls != gets:
            problems.append(f"{lane.shape.name}: the listeners polled {polls} times, the proxy saw {gets} Get Messages")
        deletes = sum(n for c, n in lane.calls.items() if c.caller == "host" and c.operation == "Delete Message")
        queue_invocations = sum(n for name, n in lane.invocations().items()
                                if name not in ("start_run", "azure_openai_webhook"))
        if deletes != queue_invocations:
            problems.append(f"{lane.shape.name}: {queue_invocations} queue invocations, {deletes} Delete Message")
        if any(count != 1 for count in lane.report["events"].values()):
            problems.append(f"{lane.shape.name}: events per run {lane.report['events']}")
    return problems


def _load(load: Sequence[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


@contextlib.contextmanager
def _fakes(count: int) -> Iterator[list[FakeAzureOpenAI]]:
    from tests.fake_openai import FakeAzureOpenAI  # noqa: PLC0415

    # Pages of 100, as the real service serves them (the fake's default of 2 exercises paging in tests).
    fakes = [FakeAzureOpenAI(api_key=f"bench-key-{uuid.uuid4().hex}", page_size=100).start() for _ in range(count)]
    try:
        yield fakes
    finally:
        for fake in fakes:
            fake.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--lane", help=argparse.SUPPRESS)  # a lane's spec: run it here (what measure() starts)
    args = parser.parse_args(argv)
    if args.lane:
        print(json.dumps(run_lane(json.loads(args.lane))), flush=True)
        return 0
    from bench.run import machine  # noqa: PLC0415
    from tests.support.azurite import start_azurite  # noqa: PLC0415

    azurite = start_azurite()
    try:
        with _fakes(len(SHAPES)) as fakes:
            measured = measure(list(zip(SHAPES, fakes, strict=True)), azurite)
    finally:
        azurite.stop()
    measured.notes = consistency_notes(measured) or [
        "For every lane, the host's Get Messages at the proxy equal its listeners' polls, its Delete Message "
        "equal the queue invocations that returned, and every run has exactly one completion event."
    ]
    text = render(measured, machine=machine())
    args.output.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.output}")
    return 1 if measured.unclassified else 0


if __name__ == "__main__":
    raise SystemExit(main())
