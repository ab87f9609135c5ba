"""The Functions host's queue listeners, as the benchmarks need them: concurrency as the host runs it.

The host fetches up to ``batchSize`` messages, runs each on its own invocation, and fetches the
next batch once no more than ``newBatchThreshold`` are still running (so at most the sum runs at
once). An empty queue is polled again after a delay that doubles from 100 ms up to
``maxPollingInterval``. A message is deleted when its function returns; a failure makes it
visible again after ``visibilityTimeout``, and the ``maxDequeueCount``-th failure moves it to
``{queue}-poison``. The tests' host stand-in (tests/support/host.py) runs whole batches in
step, which is right for checking outcomes but not for measuring throughput: this one overlaps
batches as the host does. It invokes the app's functions as the worker does, and measures each
invocation's own CPU time (its thread's), so the host's work is never counted as the app's.
"""

from __future__ import annotations

import base64
import contextlib
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.functions.queue import QueueMessage as WorkerQueueMessage
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.host_settings import parse_timespan
from tests.support.host import FunctionInfo, load_host_json

_MIN_POLL_SECONDS = 0.1
_LEASE_SECONDS = 600  # the host leases a message for 10 minutes and renews it; invocations here are short


@dataclass(frozen=True)
class QueueSettings:
    batch_size: int
    new_batch_threshold: int
    max_polling_seconds: float
    visibility_timeout: int
    max_dequeue_count: int
    base64: bool

    @classmethod
    def from_host_json(cls) -> QueueSettings:
        queues: dict[str, Any] = load_host_json().get("extensions", {}).get("queues", {})
        return cls(
            batch_size=int(queues.get("batchSize", 16)),
            new_batch_threshold=int(queues.get("newBatchThreshold", 8)),
            max_polling_seconds=parse_timespan(str(queues.get("maxPollingInterval", "00:01:00"))) or 60.0,
            visibility_timeout=int(parse_timespan(str(queues.get("visibilityTimeout", "00:00:00"))) or 0),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            base64=str(queues.get("messageEncoding", "base64")).lower() == "base64",
        )

    def one_by_one(self) -> QueueSettings:
        """One invocation at a time: a batch of one, fetched when nothing runs."""
        return QueueSettings(1, 0, self.max_polling_seconds, self.visibility_timeout, self.max_dequeue_count,
                             self.base64)

    @property
    def concurrency(self) -> int:
        return self.batch_size + self.new_batch_threshold


@dataclass
class Tally:
    """What a listener has done so far."""

    succeeded: int = 0
    failed: int = 0
    user_seconds: float = 0.0  # the invocations' own threads' CPU, in user mode...
    system_seconds: float = 0.0  # ...and in the kernel (sockets, and waits for the GIL)
    switches: int = 0  # the invocations' threads' context switches (each wait for the GIL is one)
    invocation_seconds: float = 0.0  # wall time inside the function, summed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ok: bool, before: resource.struct_rusage, after: resource.struct_rusage, wall: float) -> None:
        with self.lock:
            self.succeeded += ok
            self.failed += not ok
            self.user_seconds += after.ru_utime - before.ru_utime
            self.system_seconds += after.ru_stime - before.ru_stime
            self.switches += (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
            self.invocation_seconds += wall


class QueueListener:
    """One queue-triggered function's listener; ``start()`` runs it on a thread until ``stop()``."""

    def __init__(self, function: FunctionInfo, service: QueueServiceClient, settings: QueueSettings) -> None:
        trigger = function.binding("queueTrigger")
        if trigger is None:
            raise ValueError(f"{function.name} is not queue-triggered")
        self.function = function
        self.argument = trigger.name
        self.queue: QueueClient = service.get_queue_client(trigger.raw["queueName"])
        self.poison: QueueClient = service.get_queue_client(f"{trigger.raw['queueName']}-poison")
        self.settings = settings
        self.tally = Tally()
        self._running = 0
        self._room = threading.Condition()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix=function.name)
        self._thread = threading.Thread(target=self._listen, name=f"listen-{function.name}", daemon=True)

    def start(self) -> QueueListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._room:
            self._room.notify_all()
        self._thread.join(timeout=60)
        self._pool.shutdown(wait=True)

    def _listen(self) -> None:
        poll = _MIN_POLL_SECONDS
        while not self._stopping.is_set():
            with self._room:
                while self._running > self.settings.new_batch_threshold and not self._stopping.is_set():
                    self._room.wait()
            if self._stopping.is_set():
                return
            batch = self._receive()
            if not batch:
                self._stopping.wait(poll)
                poll = min(poll * 2, self.settings.max_polling_seconds)
                continue
            poll = _MIN_POLL_SECONDS
            with self._room:
                self._running += len(batch)
            for received in batch:
                self._pool.submit(self._invoke, received)

    def _receive(self) -> list[Any]:
        pages = self.queue.receive_messages(
            messages_per_page=self.settings.batch_size, visibility_timeout=_LEASE_SECONDS
        ).by_page()
        try:
            return list(next(pages, []))  # one GetMessages request, as the host makes
        except ResourceNotFoundError:
            return []  # nothing was ever sent to it

    def _invoke(self, received: Any) -> None:
        try:
            content: str = received.content
            body = base64.b64decode(content) if self.settings.base64 else content.encode("utf-8")
            message = WorkerQueueMessage(  # type: ignore[no-untyped-call]
                id=received.id, body=body, dequeue_count=received.dequeue_count, pop_receipt=received.pop_receipt
            )
            start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_THREAD)
            try:
                self.function.call(**{self.argument: message})
                ok = True
            except Exception:  # the host logs it and lets the message come back
                ok = False
            self.tally.add(ok, before, resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter() - start)
            if ok:
                self.queue.delete_message(received)
            elif received.dequeue_count >= self.settings.max_dequeue_count:
                with contextlib.suppress(ResourceExistsError):
                    self.poison.create_queue()
                self.poison.send_message(content)
                self.queue.delete_message(received)
            else:
                self.queue.update_message(received, visibility_timeout=self.settings.visibility_timeout)
        finally:
            with self._room:
                self._running -= 1
                self._room.notify_all()


def host_queues(connection_string: str) -> QueueServiceClient:
    """The host's own queue client: one pool of kept-alive connections for all its invocations, as
    the host's (.NET) client keeps; requests' default of 10 would reconnect under load."""
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=64)
    session.mount("http://", adapter)
    transport = RequestsTransport(session=session, session_owner=False)
    return QueueServiceClient.from_connection_string(connection_string, transport=transport)


def listeners(functions: dict[str, FunctionInfo], service: QueueServiceClient,
              settings: QueueSettings, only: tuple[str, ...] | None = None) -> dict[str, QueueListener]:
    """A listener for every queue-triggered function (or ``only`` these), not started."""
    return {
        name: QueueListener(info, service, settings)
        for name, info in functions.items()
        if info.binding("queueTrigger") is not None and (only is None or name in only)
    }
