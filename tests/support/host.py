"""A stand-in for the Functions host's invocation path, for tests and the demo.

It reads the app's function metadata the way the worker reports it (bindings as JSON), calls
the user functions with the same objects the Python worker builds (``func.HttpRequest``,
``azure.functions.queue.QueueMessage``, ``func.Out``), and moves queue output through a real
Storage queue, encoded as host.json's ``messageEncoding`` says, as the host's queue extension
does. Messages the app sends itself (with the Storage SDK, delays included) are read from the
same queues. A received message is leased (invisible) while its function runs; a failure makes it
visible again after a retry delay (host.json's ``visibilityTimeout``, shortened for tests), and
after ``maxDequeueCount`` deliveries it moves to ``{queue}-poison``, as the host does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage as WorkerQueueMessage
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.host_settings import DEFAULT_MAX_DEQUEUE_COUNT
from shared.settings import QueueNames

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class Out[T](func.Out[T]):
    """What the worker hands a function for an output binding."""

    def __init__(self) -> None:
        self._value: T | None = None
        self.was_set = False

    def set(self, val: T) -> None:
        self._value = val
        self.was_set = True

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


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
    call: Callable[..., Any]

    def binding(self, binding_type: str) -> Binding | None:
        return next((b for b in self.bindings if b.type == binding_type), None)


@dataclass
class Delivery:
    message_id: str
    dequeue_count: int
    error: BaseException | None
    result: Any = None


@dataclass
class HttpCall:
    response: func.HttpResponse
    queued: dict[str, list[str]] = field(default_factory=dict)  # queue name -> messages

    def json(self) -> Any:
        return json.loads(self.response.get_body())


def load_host_json() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "host.json").read_text())
    return document


class FunctionsHost:
    LEASE_SECONDS = 120  # how long a received message stays invisible while its function runs

    def __init__(self, app: func.FunctionApp, storage_connection_string: str, retry_delay: int = 1) -> None:
        self.functions = {
            str(fn.get_function_name()): FunctionInfo(
                name=str(fn.get_function_name()),
                bindings=[_binding(json.loads(raw)) for raw in fn.get_raw_bindings()],
                call=fn.get_user_function(),
            )
            for fn in app.get_functions()
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
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> HttpCall:
        """Invoke the HTTP function whose route and method match, then flush its queue outputs."""
        target, route_params = self._http_function(method, route)
        trigger = target.binding("httpTrigger")
        assert trigger is not None
        request = func.HttpRequest(
            method=method.upper(),
            url=f"http://localhost:7071/api/{route}",
            headers=headers or {"content-type": "application/json"},
            params=params or {},
            route_params=route_params,
            body=body,
        )
        outputs = {b.name: Out[Any]() for b in target.bindings if b.direction == "OUT" and b.type != "http"}
        response = target.call(**{trigger.name: request}, **outputs)
        call = HttpCall(response=response)
        for binding in target.bindings:
            out = outputs.get(binding.name)
            if binding.type == "queue" and out is not None and out.was_set:
                call.queued[binding.raw["queueName"]] = self._send(binding.raw["queueName"], out.get())
        return call

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
        content = received.content
        body = base64.b64decode(content) if self.base64 else content.encode("utf-8")
        message = WorkerQueueMessage(  # type: ignore[no-untyped-call]
            id=received.id,
            body=body,
            dequeue_count=received.dequeue_count,
            pop_receipt=received.pop_receipt,
        )
        try:
            result = target.call(**{trigger.name: message})
        except Exception as error:  # the host logs the failure and lets the message reappear
            if received.dequeue_count >= self.max_dequeue_count:
                self.queue(QueueNames.poison(queue.queue_name)).send_message(content)
                queue.delete_message(received)
            else:
                queue.update_message(received, visibility_timeout=self.retry_delay)
            return Delivery(received.id, received.dequeue_count, error)
        queue.delete_message(received)
        return Delivery(received.id, received.dequeue_count, None, result)

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

    def _send(self, queue_name: str, value: Any) -> list[str]:
        messages = [value] if isinstance(value, (str, bytes)) else list(value)
        queue = self.queue(queue_name)
        texts = [m.decode("utf-8") if isinstance(m, bytes) else str(m) for m in messages]
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
