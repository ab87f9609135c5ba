"""The Functions host and its Python worker, as the benchmarks need them: concurrency as the host runs it.

The host fetches up to ``batchSize`` messages, runs each on its own invocation, and fetches the
next batch once no more than ``newBatchThreshold`` are still running (so at most the sum runs at
once). An empty queue is polled again after a delay that doubles from 100 ms up to
``maxPollingInterval``. A message is deleted when its function returns; a failure makes it
visible again after ``visibilityTimeout``, and the ``maxDequeueCount``-th failure moves it to
``{queue}-poison``. The tests' host stand-in (tests/support/host.py) runs whole batches in step,
which is right for checking outcomes but not for measuring throughput: this one overlaps
batches as the host does.

The lease is the host's too: a received message stays invisible for ``lease_seconds`` and the
listener renews that lease while its function runs, so a process that stops (killed, paused)
lets its messages reappear once the lease runs out, and a message seen more than
``maxDequeueCount`` times (its earlier deliveries died with their process) goes to the poison
queue without being run. The fault-injection harness (tests/harness/) runs the same listener
with a short lease and an in-process invoker; the benchmarks keep a long one.

As in Azure, the host's own work (its queue requests) runs in another process than the app: the
app runs in a worker process (:class:`FunctionWorker`) that receives invocations over a pipe, as
the Python worker receives them over gRPC. There the real worker library runs them
(tests/support/worker_invoker.py: the host's ``InvocationRequest`` with the message and its trigger
metadata), each on a thread of the worker's own pool (``PYTHON_THREADPOOL_THREAD_COUNT``), and
each invocation's own CPU is measured on that thread (user and kernel, with its context switches).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import os
import resource
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any, Protocol

import requests
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.host_settings import DEFAULT_MAX_DEQUEUE_COUNT, host_settings, parse_timespan
from shared.settings import QueueNames
from tests.support.host import FunctionInfo, load_host_json
from tests.support.worker_invoker import Answer, HostQueueMessage

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
            max_dequeue_count=int(queues.get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT)),
            base64=str(queues.get("messageEncoding", "base64")).lower() == "base64",
        )

    @classmethod
    def from_host(cls) -> QueueSettings:
        """host.json's, with the app settings that override them as the host reads them
        (``AzureFunctionsJobHost__extensions__queues__visibilityTimeout``, ``...maxDequeueCount``,
        ``...messageEncoding``: ``shared.host_settings``, which the app reads too)."""
        overridden = host_settings()
        return replace(cls.from_host_json(), visibility_timeout=int(overridden.visibility_timeout_seconds),
                       max_dequeue_count=overridden.max_dequeue_count, base64=overridden.base64_messages)

    def one_by_one(self) -> QueueSettings:
        """One invocation at a time: a batch of one, fetched when nothing runs."""
        return QueueSettings(1, 0, self.max_polling_seconds, self.visibility_timeout, self.max_dequeue_count,
                             self.base64)

    @property
    def concurrency(self) -> int:
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class Invocation:
    ok: bool
    user: float  # CPU seconds of the invocation's thread, in user mode...
    system: float  # ...and in the kernel (sockets, and waits for the GIL)
    switches: int  # the thread's context switches (each wait for the GIL is one)
    wall: float

    @classmethod
    def of(cls, answer: Answer) -> Invocation:
        """From the worker's answer (with the CPU it measured on the invocation's thread)."""
        cpu = answer.cpu
        return cls(answer.ok, cpu.user if cpu else 0.0, cpu.system if cpu else 0.0, cpu.switches if cpu else 0,
                   answer.wall_seconds)


@dataclass
class Tally:
    """What a listener's invocations have done so far."""

    succeeded: int = 0
    failed: int = 0
    user_seconds: float = 0.0
    system_seconds: float = 0.0
    switches: int = 0
    invocation_seconds: float = 0.0  # wall time inside the function, summed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, invocation: Invocation) -> None:
        with self.lock:
            self.succeeded += invocation.ok
            self.failed += not invocation.ok
            self.user_seconds += invocation.user
            self.system_seconds += invocation.system
            self.switches += invocation.switches
            self.invocation_seconds += invocation.wall


class Invoker(Protocol):
    """Runs one queue-triggered function on one message, as the host hands it to the worker: a
    worker process, or the worker in this process."""

    def invoke(self, function: str, message: HostQueueMessage) -> Invocation: ...


class ListenerObserver(Protocol):
    """Told when a delivery's lease is lost: its message may be (or has been) delivered again."""

    def lease_lost(self, function: str, message_id: str, dequeue_count: int, why: str) -> None: ...


class _Lease:
    """A received message's current pop receipt: each renewal hands out a new one."""

    def __init__(self, received: Any) -> None:
        self.message_id: str = received.id
        self.receipt: str = received.pop_receipt
        self.dequeue_count: int = received.dequeue_count
        self.lost = False
        self.lock = threading.Lock()


class FunctionWorker:
    """The app's worker in a process of its own, with ``threads`` threads in its pool."""

    def __init__(self, threads: int) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter, as the worker is
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, threads), name="function-worker", daemon=True)
        self._process.start()
        child.close()
        self._send_lock = threading.Lock()
        self._waiting: dict[int, Future[Any]] = {}
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, name="worker-replies", daemon=True)
        self._reader.start()

    def invoke(self, function: str, message: HostQueueMessage) -> Invocation:
        answer: Invocation = self._call("invoke", function, message)
        return answer

    def cpu_seconds(self) -> float:
        """The worker process's CPU so far (user + kernel), every thread included."""
        seconds: float = self._call("cpu")
        return seconds

    def close(self) -> None:
        with self._send_lock:
            self._conn.send(None)
        self._process.join(timeout=30)
        self._conn.close()

    def _call(self, *request: Any) -> Any:
        future: Future[Any] = Future()
        with self._send_lock:
            call = next(self._ids)
            self._waiting[call] = future
            self._conn.send((call, *request))
        return future.result(timeout=600)

    def _read(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                call, answer = self._conn.recv()
                self._waiting.pop(call).set_result(answer)


def _serve(conn: Connection, threads: int) -> None:
    """The worker process: the worker library started on the app as the host starts it (the pool
    sized as infra/ sizes it in Azure), each invocation handed to it as it arrives."""
    from tests.support.worker_invoker import load_app  # noqa: PLC0415 - in the worker process

    os.environ["PYTHON_THREADPOOL_THREAD_COUNT"] = str(threads)
    worker = load_app()
    worker.measure_cpu()
    replies = threading.Lock()

    def reply(call: int, answer: Any) -> None:
        with replies:
            conn.send((call, answer))

    def answered(call: int, done: Future[Answer]) -> None:
        reply(call, Invocation.of(done.result()))

    while (request := conn.recv()) is not None:
        call, kind, *args = request
        if kind == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            reply(call, usage.ru_utime + usage.ru_stime)
        else:
            function, message = args
            worker.submit_queue(function, message).add_done_callback(functools.partial(answered, call))


class QueueListener:
    """One queue-triggered function's listener; ``start()`` runs it on a thread until ``stop()``."""

    def __init__(self, function: FunctionInfo, service: QueueServiceClient, settings: QueueSettings,
                 worker: Invoker, *, lease_seconds: int = _LEASE_SECONDS,
                 observer: ListenerObserver | None = None) -> None:
        """``lease_seconds``: how long a received message stays invisible; renewed every third of
        it while its function runs (the host renews at half its 10-minute lease; a third leaves
        room for a busy machine)."""
        trigger = function.binding("queueTrigger")
        if trigger is None:
            raise ValueError(f"{function.name} is not queue-triggered")
        self.function = function
        self.queue: QueueClient = service.get_queue_client(trigger.raw["queueName"])
        self.poison: QueueClient = service.get_queue_client(QueueNames.poison(trigger.raw['queueName']))
        self.settings = settings
        self.worker = worker
        self.lease_seconds = max(1, int(lease_seconds))
        self.observer = observer
        self.tally = Tally()
        self._leases: dict[str, _Lease] = {}
        self._leases_lock = threading.Lock()
        self._running = 0
        self._room = threading.Condition()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix=function.name)
        self._thread = threading.Thread(target=self._listen, name=f"listen-{function.name}", daemon=True)
        self._renewer = threading.Thread(target=self._renew, name=f"renew-{function.name}", daemon=True)

    def start(self) -> QueueListener:
        self._thread.start()
        self._renewer.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._room:
            self._room.notify_all()
        self._thread.join(timeout=60)
        self._pool.shutdown(wait=True)
        self._renewer.join(timeout=60)

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
            messages_per_page=self.settings.batch_size, visibility_timeout=self.lease_seconds
        ).by_page()
        try:
            return list(next(pages, []))  # one GetMessages request, as the host makes
        except ResourceNotFoundError:
            return []  # nothing was ever sent to it
        except AzureError:
            return []  # Storage failing: the host logs it and polls again after its back-off

    def _renew(self) -> None:
        """Keep every running delivery's message invisible, as the host renews its leases."""
        interval = self.lease_seconds / 3
        while not self._stopping.wait(interval):
            with self._leases_lock:
                leases = list(self._leases.values())
            for lease in leases:
                with lease.lock:
                    if lease.lost:
                        continue
                    try:
                        updated = self.queue.update_message(lease.message_id, lease.receipt,
                                                            visibility_timeout=self.lease_seconds)
                        lease.receipt = updated.pop_receipt or lease.receipt
                    except HttpResponseError as error:
                        if error.status_code in (400, 404):  # MessageNotFound, PopReceiptMismatch
                            self._lose(lease, "renewal refused: the lease had run out")
                        # else: Storage failing; tried again next round, the lease may still run out
                    except AzureError:
                        pass  # no answer: tried again next round

    def _lose(self, lease: _Lease, why: str) -> None:
        lease.lost = True
        if self.observer is not None:
            self.observer.lease_lost(self.function.name, lease.message_id, lease.dequeue_count, why)

    def _settle(self, lease: _Lease, received: Any, ok: bool) -> None:
        """Delete, release or poison the message with the lease's current receipt, as the host does
        when a function returns; a lease already lost means another delivery owns the message."""
        with lease.lock:
            if lease.lost:
                return
            try:
                if ok:
                    self.queue.delete_message(lease.message_id, lease.receipt)
                elif received.dequeue_count >= self.settings.max_dequeue_count:
                    self._poison(received.content)
                    self.queue.delete_message(lease.message_id, lease.receipt)
                else:
                    self.queue.update_message(lease.message_id, lease.receipt,
                                              visibility_timeout=self.settings.visibility_timeout)
            except ResourceNotFoundError:
                self._lose(lease, "settling refused: the lease had run out")
            except AzureError as error:
                # The host logs it; the message reappears once the lease runs out.
                self._lose(lease, f"settling failed: {type(error).__name__}")

    def _poison(self, content: str) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.poison.create_queue()
        self.poison.send_message(content)

    def _invoke(self, received: Any) -> None:
        lease = _Lease(received)
        with self._leases_lock:
            self._leases[lease.message_id] = lease
        try:
            content: str = received.content
            if received.dequeue_count > self.settings.max_dequeue_count:
                # Delivered more often than allowed: earlier deliveries died with their process
                # (or timed out). The host moves it to the poison queue without running it.
                with lease.lock:
                    self._poison(content)
                    self.queue.delete_message(lease.message_id, lease.receipt)
                return
            try:
                message = HostQueueMessage.received(received, base64_encoded=self.settings.base64)
            except ValueError:  # not base64: the host moves it to the poison queue unrun
                with lease.lock:
                    self._poison(content)
                    self.queue.delete_message(lease.message_id, lease.receipt)
                return
            invocation = self.worker.invoke(self.function.name, message)
            self.tally.add(invocation)
            self._settle(lease, received, invocation.ok)
        except AzureError as error:
            self._lose(lease, f"poisoning failed: {type(error).__name__}")
        finally:
            with self._leases_lock:
                self._leases.pop(lease.message_id, None)
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


def listeners(functions: dict[str, FunctionInfo], service: QueueServiceClient, settings: QueueSettings,
              worker: Invoker, only: tuple[str, ...] | None = None, *, lease_seconds: int = _LEASE_SECONDS,
              observer: ListenerObserver | None = None) -> dict[str, QueueListener]:
    """A listener for every queue-triggered function (or ``only`` these), not started."""
    return {
        name: QueueListener(info, service, settings, worker, lease_seconds=lease_seconds, observer=observer)
        for name, info in functions.items()
        if info.binding("queueTrigger") is not None and (only is None or name in only)
    }
