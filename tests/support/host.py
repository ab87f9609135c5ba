"""A stand-in for the Functions host around the real Python worker, for tests, the demo and the benchmarks.

The host's part is played here: it reads the app's functions as the worker reports them to the
host (``RpcFunctionMetadata``, bindings as JSON), matches HTTP requests to routes, and moves queue
messages through a real Storage queue, encoded as host.json's ``messageEncoding`` says, as the
host's queue extension does. Messages the app sends itself (with the Storage SDK, delays
included) are read from the same queues. A received message is leased (invisible) while its
function runs; a failure makes it visible again after a retry delay (host.json's
``visibilityTimeout``, shortened for tests), and after ``maxDequeueCount`` deliveries it moves to
``{queue}-poison``, as the host does.

The worker's part is the worker itself: every invocation goes through the worker library's own
invocation handler (:mod:`tests.support.worker_invoker`), with the request the host would send,
and the answer is what the worker returns to the host. Creating a ``FunctionsHost`` starts the
worker on ``function_app.py`` under the current settings, as starting the host does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.host_settings import DEFAULT_MAX_DEQUEUE_COUNT
from shared.settings import QueueNames
from tests.support.worker_invoker import FunctionFailed, HostHttpRequest, HostQueueMessage, Worker, load_app

ROOT = Path(__file__).resolve().parents[2]
LOCAL_ORIGIN = "http://localhost:7071"  # where `func start` serves, and the URL the host passes on


@dataclass
class Binding:
    name: str
    type: str
    direction: str
    raw: dict[str, Any]


@dataclass
class FunctionInfo:
    name: str
    bindings: list[Binding]

    def binding(self, binding_type: str) -> Binding | None:
        return next((b for b in self.bindings if b.type == binding_type), None)


@dataclass
class Delivery:
    message_id: str
    dequeue_count: int
    error: FunctionFailed | None  # the function's exception, as the worker reports it
    result: Any = None  # the worker's return value (TypedData), if any


@dataclass
class HttpCall:
    response: func.HttpResponse  # as the host sends it: a failed function is a 500
    queued: dict[str, list[str]] = field(default_factory=dict)  # queue output binding -> messages
    error: FunctionFailed | None = None  # the function's exception, when it raised one

    def json(self) -> Any:
        return json.loads(self.response.get_body())


def load_host_json() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "host.json").read_text())
    return document


def route_prefix() -> str:
    """host.json's ``extensions.http.routePrefix`` (``api`` unless set)."""
    prefix = load_host_json().get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


def host_query(query_string: str) -> dict[str, str]:
    """A query string as the host's request object reads it: a name given twice is one entry with
    the values joined by commas, and names without a value are dropped."""
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return {name: ",".join(given) for name, given in values.items() if any(given)}


class FunctionsHost:
    LEASE_SECONDS = 120  # how long a received message stays invisible while its function runs

    def __init__(self, storage_connection_string: str, retry_delay: int = 1) -> None:
        self.worker: Worker = load_app()  # the worker imports function_app.py and indexes it
        self.functions = {
            name: FunctionInfo(name=name, bindings=[_binding(raw) for raw in registered.raw_bindings])
            for name, registered in self.worker.functions.items()
        }
        queues = load_host_json().get("extensions", {}).get("queues", {})
        self.base64 = str(queues.get("messageEncoding", "base64")).lower() == "base64"
        self.max_dequeue_count = int(queues.get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT))
        self.retry_delay = retry_delay
        self._queues = QueueServiceClient.from_connection_string(storage_connection_string)

    def queue(self, name: str) -> QueueClient:
        client = self._queues.get_queue_client(name)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        return client

    def http(
        self,
        method: str,
        route: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        query_string: str | None = None,
    ) -> HttpCall:
        """Invoke the HTTP function whose route and method match (``route`` below the route
        prefix, as in the URL), then send its queue outputs. The query is ``params`` or, as it
        came, ``query_string``."""
        target, route_params = self._http_function(method, route)
        raw_query = query_string if query_string is not None else urlencode(dict(params or {}))
        request = HostHttpRequest(
            method=method.upper(),
            url=f"{LOCAL_ORIGIN}/{route_prefix()}/{route}" + (f"?{raw_query}" if raw_query else ""),
            headers=dict(headers) if headers is not None else {"content-type": "application/json"},
            query=host_query(raw_query),
            route_params=route_params,
            body=body,
        )
        answer = self.worker.invoke_http(target.name, request)
        call = HttpCall(response=answer.http_response(), error=answer.error)
        for binding in target.bindings:
            data = answer.output_data.get(binding.name)
            if binding.type == "queue" and data is not None:
                call.queued[binding.raw["queueName"]] = self._send(binding.raw["queueName"], data)
        return call

    def timer(self, function_name: str, *, past_due: bool = False) -> Delivery:
        """Fire a timer-triggered function once, as its schedule would."""
        answer = self.worker.invoke_timer(function_name, past_due=past_due)
        return Delivery("", 0, answer.error, answer.return_value)

    def invoke_queue(self, function_name: str, text: str, *, message_id: str = "m", dequeue_count: int = 1) -> Delivery:
        """One delivery of ``text`` to a queue-triggered function, through the worker, as the host
        hands over a message it received ``dequeue_count`` times (no queue round trip: for a test
        that chooses the message, its delivery count, or several deliveries at once)."""
        message = HostQueueMessage.made(text, message_id=message_id, dequeue_count=dequeue_count)
        answer = self.worker.invoke_queue(function_name, message)
        return Delivery(message_id, dequeue_count, answer.error, answer.return_value)

    def deliver(self, function_name: str, *, max_rounds: int = 10, until_empty: bool = False) -> list[Delivery]:
        """Run the queue-triggered function on what its queue holds, for at most ``max_rounds``.

        With ``until_empty``, also wait for delayed or failed messages to become visible and
        deliver them (as the host does) until none is left.
        """
        target = self.functions[function_name]
        trigger = target.binding("queueTrigger")
        assert trigger is not None
        queue = self.queue(trigger.raw["queueName"])
        deliveries: list[Delivery] = []
        rounds = 0
        deadline = time.monotonic() + 120
        while rounds < max_rounds and time.monotonic() < deadline:
            batch = self._receive(queue)
            if batch:
                rounds += 1
                deliveries.extend(self._invoke_queue(target, trigger, queue, received) for received in batch)
                continue
            if not until_empty or queue.get_queue_properties().approximate_message_count == 0:
                break
            threading.Event().wait(0.1)  # invisible messages reappear after their delay
        return deliveries

    def run_until(
        self,
        done: Callable[[], bool],
        *,
        timeout: float = 60.0,
        only: tuple[str, ...] | None = None,
        workers: int = 1,
    ) -> list[Delivery]:
        """Deliver every queue-triggered function's messages (or ``only`` these functions'), as the
        host's listeners would, until ``done()`` holds; fails if it does not within ``timeout`` s.
        With ``workers`` > 1 each received batch runs that many invocations at once, as the host
        runs up to batchSize + newBatchThreshold per queue."""
        chosen = [info for name, info in self.functions.items() if only is None or name in only]
        triggered = [(info, info.binding("queueTrigger")) for info in chosen]
        listeners = [(info, binding, self.queue(binding.raw["queueName"])) for info, binding in triggered if binding]
        deliveries: list[Delivery] = []
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while not done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not done after {timeout} s and {len(deliveries)} deliveries")
                delivered = False
                for target, trigger, queue in listeners:
                    batch = self._receive(queue)
                    same = [(target, trigger, queue)] * len(batch)
                    deliveries += pool.map(self._invoke_queue, *zip(*same, strict=True), batch) if batch else []
                    delivered = delivered or bool(batch)
                if not delivered:
                    threading.Event().wait(0.05)  # delayed messages become visible on their own
        return deliveries

    def _receive(self, queue: QueueClient) -> list[Any]:
        lease = self.LEASE_SECONDS
        return list(queue.receive_messages(messages_per_page=32, visibility_timeout=lease, max_messages=32))

    def _invoke_queue(self, target: FunctionInfo, trigger: Binding, queue: QueueClient, received: Any) -> Delivery:
        try:
            message = HostQueueMessage.received(received, base64_encoded=self.base64)
        except ValueError as undecodable:  # not base64: the host poisons it at once, unrun
            self.queue(QueueNames.poison(queue.queue_name)).send_message(received.content)
            queue.delete_message(received)
            return Delivery(received.id, received.dequeue_count,
                            FunctionFailed(target.name, f"{type(undecodable).__name__}: {undecodable}", ""))
        answer = self.worker.invoke_queue(target.name, message)
        if answer.error is not None:  # the host logs the failure and lets the message reappear
            if received.dequeue_count >= self.max_dequeue_count:
                self.queue(QueueNames.poison(queue.queue_name)).send_message(received.content)
                queue.delete_message(received)
            else:
                queue.update_message(received, visibility_timeout=self.retry_delay)
            return Delivery(received.id, received.dequeue_count, answer.error)
        queue.delete_message(received)
        return Delivery(received.id, received.dequeue_count, None, answer.return_value)

    def decode(self, content: str) -> str:
        """A queue message's text, as the host's trigger hands it over (messageEncoding)."""
        return base64.b64decode(content).decode("utf-8") if self.base64 else content

    def peek(self, queue_name: str) -> list[str]:
        """The texts of the messages visible now, left where they are (at most 32)."""
        return [self.decode(m.content) for m in self.queue(queue_name).peek_messages(max_messages=32)]

    def messages(self, queue_name: str) -> list[str]:
        """Take every visible message off a queue (the app's events, for a test to read)."""
        queue = self.queue(queue_name)
        taken: list[str] = []
        while batch := self._receive(queue):
            for received in batch:
                taken.append(self.decode(received.content))
                queue.delete_message(received)
        return taken

    def _send(self, queue_name: str, data: Any) -> list[str]:
        """A queue output binding's value (TypedData: a string, bytes, or a JSON list), sent as the
        host sends it: one message per item."""
        kind = data.WhichOneof("data")
        value = getattr(data, kind) if kind else None
        items = json.loads(str(value)) if kind == "json" else [value]
        texts = [item.decode("utf-8") if isinstance(item, bytes) else item if isinstance(item, str)
                 else json.dumps(item) for item in items if item is not None]
        queue = self.queue(queue_name)
        for text in texts:
            encoded = base64.b64encode(text.encode("utf-8")).decode("ascii") if self.base64 else text
            queue.send_message(encoded)
        return texts

    def _http_function(self, method: str, route: str) -> tuple[FunctionInfo, dict[str, str]]:
        """The function whose route template matches, and the values of its ``{name}`` segments."""
        for info in self.functions.values():
            trigger = info.binding("httpTrigger")
            if trigger is None or method.upper() not in trigger.raw.get("methods", []):
                continue
            params = _match_route(str(trigger.raw.get("route")), route)
            if params is not None:
                return info, params
        raise LookupError(f"no HTTP function for {method} {route}")


def _match_route(template: str, path: str) -> dict[str, str] | None:
    wanted, given = template.strip("/").split("/"), path.strip("/").split("/")
    if len(wanted) != len(given):
        return None
    params: dict[str, str] = {}
    for pattern, value in zip(wanted, given, strict=True):
        if pattern.startswith("{") and pattern.endswith("}"):
            params[pattern[1:-1]] = unquote(value)
        elif pattern.lower() != value.lower():
            return None
    return params


def _binding(raw: dict[str, Any]) -> Binding:
    return Binding(name=raw["name"], type=raw["type"], direction=raw["direction"], raw=raw)
